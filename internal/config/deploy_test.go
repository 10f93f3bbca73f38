package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The deploy manifests cannot run here (no container engine), so these
// tests hold them to the code: the configuration they carry loads with
// the variables they set, the files it names are mounted, the probes and
// scrape annotations point at the ops endpoint, and every stage can drain.

// yamlDocs reads every document of a (multi-document) YAML file.

// stopBounds is how long each stage may take, at the configuration the
// manifests ship (all defaults), from SIGTERM to exit; its pod's
// terminationGracePeriodSeconds must be at least this. The stage packages
// import this one, so the figures are written out here with where they come
// from; a change to any of those timeouts must change its line.
var stopBounds = map[string]int{
	// An APNs/FCM send in flight, up to its request timeout (30 s) plus the
	// shared deadline's sixteenth (providers/internal/deadline); then that
	// chunk's results and progress, FinishTimeout (30 s) counted from the
	// end of those sends (pipeline/dispatcher/batch.go saveClock); the
	// final commit (10 s, dispatcher.go); the ops server (5 s,
	// internal/service opsShutdownTimeout).
	"dispatcher": 32 + 30 + 10 + 5,
	// The campaign's status row (up to 10 s, campaign.go finish), then
	// ending the transaction of the chunk in flight: its records' delivery,
	// up to TransactionTimeout (40 s, the client's delivery timeout), then
	// End, TransactionTimeout + 30 s (pipeline/planner/campaign.go endCtx);
	// the ops server (5 s).
	"planner": 10 + 40 + 40 + 30 + 5,
	// The last flush and commit, DrainTimeout (30 s,
	// pipeline/feedback/feedback.go); the ops server (5 s).
	"feedback": 30 + 5,
}

func yamlDocs(t *testing.T, file string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var out []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if doc != nil {
			out = append(out, doc)
		}
	}
}

// at walks a YAML value by map keys and list indexes.
func at(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// dummySecret is what a pod gets for a secretKeyRef in these tests: a
// value valid for the variable's key.
func dummySecret(name string) string {
	if name == "PUSHLANE_MYSQL__DSN" {
		return "pushlane:from-secret@tcp(mysql:3306)/pushlane"
	}
	return "from-secret"
}

// workload is one pod template of the k8s manifests.
type workload struct {
	kind, name string
	doc        map[string]any
	pod        map[string]any // the pod template
}

func (w workload) container() map[string]any {
	c, _ := at(w.pod, "spec", "containers", 0).(map[string]any)
	return c
}

// environ is the container's PUSHLANE_ variables, secrets as dummies.
func (w workload) environ(t *testing.T) []string {
	t.Helper()
	var env []string
	list, _ := at(w.container(), "env").([]any)
	for _, e := range list {
		name := str(at(e, "name"))
		if !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		switch {
		case at(e, "value") != nil:
			env = append(env, name+"="+str(at(e, "value")))
		case at(e, "valueFrom", "secretKeyRef", "key") != nil:
			if at(e, "valueFrom", "secretKeyRef", "name") == nil {
				t.Errorf("%s %s: %s refers to a Secret without a name", w.kind, w.name, name)
			}
			env = append(env, name+"="+dummySecret(name))
		default:
			t.Errorf("%s %s: %s has neither a value nor a secretKeyRef", w.kind, w.name, name)
		}
	}
	return env
}

// files lists what the pod's volumes put where: mount path → the files a
// Secret or ConfigMap projects there (item paths, or its keys).
func (w workload) files(t *testing.T, configMaps map[string]map[string]any) map[string]bool {
	t.Helper()
	volumes := map[string]any{}
	vl, _ := at(w.pod, "spec", "volumes").([]any)
	for _, v := range vl {
		volumes[str(at(v, "name"))] = v
	}
	out := map[string]bool{}
	ml, _ := at(w.container(), "volumeMounts").([]any)
	for _, m := range ml {
		mount := str(at(m, "mountPath"))
		v, ok := volumes[str(at(m, "name"))]
		if !ok {
			t.Errorf("%s %s mounts undeclared volume %v", w.kind, w.name, at(m, "name"))
			continue
		}
		var items []any
		var keys []string
		switch {
		case at(v, "secret") != nil:
			items, _ = at(v, "secret", "items").([]any)
		case at(v, "configMap") != nil:
			items, _ = at(v, "configMap", "items").([]any)
			for k := range configMaps[str(at(v, "configMap", "name"))] {
				keys = append(keys, k)
			}
		}
		for _, it := range items {
			out[path.Join(mount, str(at(it, "path")))] = true
		}
		if len(items) == 0 {
			for _, k := range keys {
				out[path.Join(mount, k)] = true
			}
		}
	}
	return out
}

// configFiles lists the *_file values of a configuration loaded by
// loadDeployedIn, with the paths it moved into dir put back.
func configFiles(cfg *Config, dir string) map[string]string {
	out := map[string]string{}
	var walk func(v reflect.Value, key string)
	walk = func(v reflect.Value, key string) {
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return
			}
			v = v.Elem()
		}
		switch v.Kind() {
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				walk(v.Field(i), strings.TrimPrefix(key+"."+v.Type().Field(i).Tag.Get("koanf"), "."))
			}
		case reflect.Map:
			for _, k := range v.MapKeys() {
				walk(v.MapIndex(k), key+"."+k.String())
			}
		case reflect.String:
			if strings.HasSuffix(key, "_file") && v.String() != "" {
				out[key] = strings.Replace(v.String(), dir+"/", "/etc/pushlane/", 1)
			}
		}
	}
	walk(reflect.ValueOf(*cfg), "")
	return out
}

func k8sManifests(t *testing.T) (workloads []workload, pdbs []map[string]any, configMaps map[string]map[string]any) {
	t.Helper()
	files, err := os.ReadDir("../../deploy/k8s")
	if err != nil {
		t.Fatal(err)
	}
	configMaps = map[string]map[string]any{}
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), ".yaml") || f.Name() == "secrets.example.yaml" || f.Name() == "kustomization.yaml" {
			continue
		}
		for _, doc := range yamlDocs(t, "../../deploy/k8s/"+f.Name()) {
			kind, name := str(doc["kind"]), str(at(doc, "metadata", "name"))
			if ns := str(at(doc, "metadata", "namespace")); kind != "Namespace" && ns != "pushlane" {
				t.Errorf("%s %s is in namespace %q, want pushlane", kind, name, ns)
			}
			switch kind {
			case "Deployment", "StatefulSet", "Job":
				pod, _ := at(doc, "spec", "template").(map[string]any)
				workloads = append(workloads, workload{kind: kind, name: name, doc: doc, pod: pod})
			case "PodDisruptionBudget":
				pdbs = append(pdbs, doc)
			case "ConfigMap":
				data, _ := doc["data"].(map[string]any)
				configMaps[name] = data
			}
		}
	}
	return workloads, pdbs, configMaps
}

func TestK8sManifestsMatchTheConfig(t *testing.T) {
	workloads, pdbs, configMaps := k8sManifests(t)
	yamlText, _ := configMaps["pushlane-config"]["pushlane.yaml"].(string)
	if yamlText == "" {
		t.Fatal("deploy/k8s: no ConfigMap pushlane-config with pushlane.yaml")
	}
	var names []string
	for _, w := range workloads {
		names = append(names, w.kind+"/"+w.name)
	}
	sort.Strings(names)
	want := []string{"Deployment/dispatcher", "Deployment/feedback", "Job/pushctl-migrate", "Job/pushctl-topics", "StatefulSet/planner"}
	if !slices.Equal(names, want) {
		t.Fatalf("workloads %v, want %v", names, want)
	}

	images := map[string]bool{}
	for _, w := range workloads {
		t.Run(w.kind+"/"+w.name, func(t *testing.T) {
			c := w.container()
			images[str(c["image"])] = true
			var args []string
			for _, a := range c["args"].([]any) {
				args = append(args, str(a))
			}
			i := slices.Index(args, "-config")
			if i < 0 || i+1 >= len(args) {
				t.Fatalf("args %v: no -config", args)
			}
			files := w.files(t, configMaps)
			if !files[args[i+1]] {
				t.Errorf("-config %s is not mounted from the ConfigMap (mounted: %v)", args[i+1], files)
			}
			cfg, dir, err := loadDeployedIn(t, yamlText, w.environ(t))
			if err != nil {
				t.Fatalf("the ConfigMap's pushlane.yaml with this pod's variables does not load: %v", err)
			}
			if cfg.Kafka.SASL.Password != "from-secret" || cfg.MySQL.DSN == "" {
				t.Errorf("secrets not passed: sasl %q, dsn %q", cfg.Kafka.SASL.Password, cfg.MySQL.DSN)
			}
			for key, file := range configFiles(cfg, dir) {
				if !files[file] {
					t.Errorf("%s: %s is not mounted in the pod", key, file)
				}
			}
			if w.kind == "Job" {
				cmd := args[len(args)-1]
				if str(at(c, "command", 0)) != "/usr/local/bin/pushctl" || (cmd != "migrate" && cmd != "topics") {
					t.Errorf("job runs %v %v", c["command"], args)
				}
				if w.name == "pushctl-migrate" && (cfg.Require("mysql.dsn", "clickhouse.addr") != nil || cfg.ClickHouse.Password != "from-secret") {
					t.Errorf("migrate job lacks the database settings: %+v", cfg.ClickHouse)
				}
				return
			}

			// A stage: ops endpoint, probes, scraping, draining, a PDB.
			if str(at(c, "command", 0)) != "/usr/local/bin/"+w.name {
				t.Errorf("command %v", c["command"])
			}
			port := strings.TrimPrefix(cfg.HTTP.Addr, ":")
			if str(at(c, "ports", 0, "containerPort")) != port || str(at(c, "ports", 0, "name")) != "ops" {
				t.Errorf("container port %v, want %s named ops (http.addr %q)", at(c, "ports"), port, cfg.HTTP.Addr)
			}
			for probe, p := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
				if str(at(c, probe, "httpGet", "path")) != p || str(at(c, probe, "httpGet", "port")) != "ops" {
					t.Errorf("%s = %v, want GET %s on ops", probe, at(c, probe), p)
				}
			}
			ann, _ := at(w.pod, "metadata", "annotations").(map[string]any)
			if str(ann["prometheus.io/scrape"]) != "true" || str(ann["prometheus.io/port"]) != port || str(ann["prometheus.io/path"]) != "/metrics" {
				t.Errorf("scrape annotations %v", ann)
			}
			grace, _ := at(w.pod, "spec", "terminationGracePeriodSeconds").(int)
			if floor, ok := stopBounds[w.name]; !ok {
				t.Errorf("no stop bound known for stage %q: add it to stopBounds", w.name)
			} else if grace < floor {
				t.Errorf("terminationGracePeriodSeconds %d: shorter than the stage's stop bound, %d s; SIGKILL would cut the drain short", grace, floor)
			}
			if at(c, "resources", "requests", "cpu") == nil || at(c, "resources", "requests", "memory") == nil || at(c, "resources", "limits", "memory") == nil {
				t.Errorf("resources %v: want cpu and memory requests and a memory limit", at(c, "resources"))
			}
			labels, _ := at(w.pod, "metadata", "labels").(map[string]any)
			selector, _ := at(w.doc, "spec", "selector", "matchLabels").(map[string]any)
			for k, v := range selector {
				if labels[k] != v {
					t.Errorf("selector %s=%v does not match the pod labels %v", k, v, labels)
				}
			}
			covered := false
			for _, pdb := range pdbs {
				sel, _ := at(pdb, "spec", "selector", "matchLabels").(map[string]any)
				matches := len(sel) > 0
				for k, v := range sel {
					matches = matches && labels[k] == v
				}
				covered = covered || matches
			}
			if !covered {
				t.Errorf("no PodDisruptionBudget selects %v", labels)
			}
		})
	}
	if len(images) != 1 {
		t.Errorf("the workloads use %d images, want the one image: %v", len(images), images)
	}
}

// TestComposeMatchesTheConfig loads deploy/compose/pushlane.yaml with each
// Pushlane service's variables and checks that the files it names are
// mounted and each service runs its binary with that config.
func TestComposeMatchesTheConfig(t *testing.T) {
	docs := yamlDocs(t, "../../deploy/compose/compose.yaml")
	if len(docs) != 1 {
		t.Fatalf("%d documents", len(docs))
	}
	raw, err := os.ReadFile("../../deploy/compose/pushlane.yaml")
	if err != nil {
		t.Fatal(err)
	}
	services, _ := docs[0]["services"].(map[string]any)
	wantBinary := map[string]string{"planner": "planner", "dispatcher": "dispatcher", "feedback": "feedback", "migrate": "pushctl", "topics": "pushctl", "pushctl": "pushctl"}
	for name, binary := range wantBinary {
		t.Run(name, func(t *testing.T) {
			svc, ok := services[name].(map[string]any)
			if !ok {
				t.Fatalf("no service %s", name)
			}
			cmd := at(svc, "command")
			if name == "pushctl" {
				cmd = at(svc, "entrypoint")
			}
			if str(at(cmd, 0)) != "/usr/local/bin/"+binary || str(at(cmd, 1)) != "-config" || str(at(cmd, 2)) != "/etc/pushlane/pushlane.yaml" {
				t.Errorf("runs %v", cmd)
			}
			if floor, ok := stopBounds[name]; ok {
				// Compose's default is 10 s before SIGKILL.
				grace, err := time.ParseDuration(str(svc["stop_grace_period"]))
				if err != nil || grace < time.Duration(floor)*time.Second {
					t.Errorf("stop_grace_period %q: shorter than the stage's stop bound, %d s, or not set (%v)", str(svc["stop_grace_period"]), floor, err)
				}
			}
			mounts := map[string]string{}
			vols, _ := svc["volumes"].([]any)
			for _, v := range vols {
				src, dst, _ := strings.Cut(strings.TrimSuffix(str(v), ":ro"), ":")
				mounts[dst] = src
			}
			if mounts["/etc/pushlane/pushlane.yaml"] != "./pushlane.yaml" {
				t.Errorf("config not mounted: %v", mounts)
			}
			var env []string
			envMap, _ := svc["environment"].(map[string]any)
			for k, v := range envMap {
				env = append(env, k+"="+str(v))
			}
			sort.Strings(env)
			// Compose keeps the key files in ./keys (not committed); the
			// test puts dummies where the config says.
			cfg, dir, err := loadDeployedIn(t, string(raw), env)
			if err != nil {
				t.Fatalf("deploy/compose/pushlane.yaml with the service's variables does not load: %v", err)
			}
			for key, file := range configFiles(cfg, dir) {
				if !strings.HasPrefix(file, "/etc/pushlane/keys/") || mounts["/etc/pushlane/keys"] != "./keys" {
					t.Errorf("%s: %s is not under the mounted ./keys", key, file)
				}
			}
			if err := cfg.Require("mysql.dsn", "clickhouse.addr"); err != nil || cfg.ClickHouse.Password == "" {
				t.Errorf("service lacks database settings: %v", err)
			}
		})
	}
}
