// Command pushsim runs the APNs and FCM simulators for the demo, end-to-end
// tests and benchmarks, with an admin HTTP endpoint to read counts and
// inject faults while it runs.
//
//	pushsim -dir /tmp/pushsim [-apns-addr 127.0.0.1:8443] [-fcm-addr 127.0.0.1:8444] [-admin-addr 127.0.0.1:8445]
//
// It writes (or, with -apns-key / -fcm-service-account, loads) the
// credentials a sender needs, prints where they are, and writes
// {dir}/pushsim.env with the same as shell variables. With
// -fcm-service-account the Firebase project is the file's project_id unless
// -fcm-project names it (and then the two must agree). The fault flags are
// checked as the admin API checks its parameters. Admin endpoints:
// /apns/... and /fcm/... (see providers/internal/simcore.AdminHandler):
//
//	GET  counts, duplicates, fault
//	POST fault?rate503=1&for=10s   replace the fault; an unknown parameter is refused (400)
//	POST goaway, drop              act on every live connection
//	POST reset                     forget the request counts (requests, accepted, rejected,
//	                               devices, duplicates); connection and GOAWAY counts, the
//	                               fault, token rules and auth state stay
//
// and GET /apns/jwt (a valid provider token) and GET /fcm/access-token (a
// valid access token), for h2load.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sideshow/apns2/token"

	"github.com/pushlane/pushlane/providers/apnssim"
	"github.com/pushlane/pushlane/providers/fcmsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if code := exitCode(err); code != 0 {
		fmt.Fprintln(os.Stderr, "pushsim:", err)
		os.Exit(code)
	}
}

// exitCode is the process's exit status after run returned err. -h prints
// the usage and asks for nothing that could fail: 0, as the other commands.
func exitCode(err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 1
}

type options struct {
	dir, apnsAddr, fcmAddr, adminAddr, env, topics, project string
	apnsKey, apnsKeyID, apnsTeamID, fcmAccount              string
	allowTokenUpdates                                       bool
	fault                                                   apnssim.Fault
}

// defaultProject is -fcm-project's default, for a generated service account
// or a loaded one without project_id.
const defaultProject = "pushlane-demo"

// run starts the simulators and serves until ctx is done.
func run(ctx context.Context, args []string, out io.Writer) error {
	var o options
	fs := flag.NewFlagSet("pushsim", flag.ContinueOnError)
	fs.StringVar(&o.dir, "dir", "", "directory for the written key, service account and TLS certificates (default: a new temporary directory)")
	fs.StringVar(&o.apnsAddr, "apns-addr", "127.0.0.1:8443", "APNs simulator listen address")
	fs.StringVar(&o.fcmAddr, "fcm-addr", "127.0.0.1:8444", "FCM simulator listen address")
	fs.StringVar(&o.adminAddr, "admin-addr", "127.0.0.1:8445", "admin HTTP listen address")
	fs.StringVar(&o.env, "apns-env", "development", "APNs environment: development or production")
	fs.StringVar(&o.topics, "topics", "com.example.app", "comma-separated bundle IDs the APNs team may push to")
	fs.StringVar(&o.project, "fcm-project", defaultProject, "Firebase project (default with -fcm-service-account: the file's project_id)")
	fs.StringVar(&o.apnsKey, "apns-key", "", "existing .p8 key to accept instead of generating one (with -apns-key-id, -apns-team-id)")
	fs.StringVar(&o.apnsKeyID, "apns-key-id", "", "key ID of -apns-key")
	fs.StringVar(&o.apnsTeamID, "apns-team-id", "", "team ID of -apns-key")
	fs.StringVar(&o.fcmAccount, "fcm-service-account", "", "existing service-account JSON to accept instead of generating one")
	fs.BoolVar(&o.allowTokenUpdates, "apns-allow-token-updates", false, "let a connection change its provider token more often than every 20 minutes (TooManyProviderTokenUpdates off)")
	fs.Float64Var(&o.fault.Rate429, "rate429", 0, "fraction of sends answered 429")
	fs.Float64Var(&o.fault.Rate503, "rate503", 0, "fraction of sends answered 503")
	fs.DurationVar(&o.fault.Latency, "latency", 0, "latency added to every answer")
	fs.Int64Var(&o.fault.GoAwayAfter, "goaway-after", 0, "send GOAWAY on each connection after this many requests")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := o.fault.Check(faultFlag); err != nil {
		return err
	}
	projectSet := false
	fs.Visit(func(f *flag.Flag) { projectSet = projectSet || f.Name == "fcm-project" })
	var loaded *serviceAccount
	if o.fcmAccount != "" {
		sa, err := loadAccount(o.fcmAccount)
		if err != nil {
			return err
		}
		if o.project, err = accountProject(o.project, projectSet, sa); err != nil {
			return err
		}
		loaded = sa
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if o.dir == "" {
		d, err := os.MkdirTemp("", "pushsim-")
		if err != nil {
			return err
		}
		o.dir = d
	} else if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}

	// APNs: the key.
	var key *ecdsa.PrivateKey
	keyID, teamID, keyFile := o.apnsKeyID, o.apnsTeamID, o.apnsKey
	if keyFile != "" {
		if keyID == "" || teamID == "" {
			return errors.New("flag -apns-key needs -apns-key-id and -apns-team-id")
		}
		k, err := token.AuthKeyFromFile(keyFile)
		if err != nil {
			return fmt.Errorf("flag -apns-key: %w", err)
		}
		key = k
	} else {
		tk, err := apnssim.NewTestKey()
		if err != nil {
			return err
		}
		if keyFile, err = tk.WriteFile(o.dir); err != nil {
			return err
		}
		key, keyID, teamID = tk.Private, tk.KeyID, tk.TeamID
	}
	apns, err := apnssim.New(apnssim.Config{Keys: map[string]*ecdsa.PublicKey{keyID: &key.PublicKey}, TeamID: teamID,
		Topics: strings.Split(o.topics, ","), Environment: o.env, AllowFrequentTokenUpdates: o.allowTokenUpdates, Logger: logger})
	if err != nil {
		return err
	}
	if err := apns.Start(o.apnsAddr); err != nil {
		return err
	}
	defer apns.Close()

	// FCM: the simulator must listen before the account's token_uri can name it.
	ln, err := net.Listen("tcp", o.fcmAddr)
	if err != nil {
		return fmt.Errorf("flag -fcm-addr: %w", err)
	}
	fcmURL := "https://" + ln.Addr().String()
	_ = ln.Close()
	var email, acctFile string
	var pub *rsa.PublicKey
	if loaded != nil {
		email, acctFile, pub = loaded.email, o.fcmAccount, loaded.pub
	} else {
		a, err := fcmsim.NewTestServiceAccount(o.project, fcmURL+"/token")
		if err != nil {
			return err
		}
		if acctFile, err = a.WriteFile(o.dir); err != nil {
			return err
		}
		email, pub = a.ClientEmail, &a.Private.PublicKey
	}
	fcm, err := fcmsim.New(fcmsim.Config{Accounts: map[string]fcmsim.Account{email: {ProjectID: o.project, PublicKey: pub}}, Logger: logger})
	if err != nil {
		return err
	}
	if err := fcm.Start(ln.Addr().String()); err != nil {
		return err
	}
	defer fcm.Close()
	apns.SetFault(o.fault)
	fcm.SetFault(o.fault)

	apnsCA, fcmCA := filepath.Join(o.dir, "apns-ca.pem"), filepath.Join(o.dir, "fcm-ca.pem")
	if err := os.WriteFile(apnsCA, apns.CertPEM(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(fcmCA, fcm.CertPEM(), 0o644); err != nil {
		return err
	}

	mux := http.NewServeMux()
	apns.Admin(mux, "/apns")
	fcm.Admin(mux, "/fcm")
	mux.HandleFunc("GET /apns/jwt", func(w http.ResponseWriter, _ *http.Request) {
		jwt, err := apnssim.SignJWT(key, keyID, teamID, time.Now())
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		_, _ = io.WriteString(w, jwt)
	})
	mux.HandleFunc("GET /fcm/access-token", func(w http.ResponseWriter, _ *http.Request) {
		t, err := fcm.IssueAccessToken(email)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		_, _ = io.WriteString(w, t)
	})
	admin := &http.Server{Addr: o.adminAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	adminLn, err := net.Listen("tcp", o.adminAddr)
	if err != nil {
		return fmt.Errorf("flag -admin-addr: %w", err)
	}
	go func() { _ = admin.Serve(adminLn) }()
	defer admin.Close()

	vars := [][2]string{
		{"PUSHSIM_APNS_URL", apns.URL()}, {"PUSHSIM_APNS_CA", apnsCA}, {"PUSHSIM_APNS_KEY", keyFile},
		{"PUSHSIM_APNS_KEY_ID", keyID}, {"PUSHSIM_APNS_TEAM_ID", teamID}, {"PUSHSIM_APNS_TOPIC", strings.Split(o.topics, ",")[0]},
		{"PUSHSIM_FCM_URL", fcm.URL()}, {"PUSHSIM_FCM_CA", fcmCA}, {"PUSHSIM_FCM_SERVICE_ACCOUNT", acctFile},
		{"PUSHSIM_FCM_PROJECT", o.project}, {"PUSHSIM_ADMIN_URL", "http://" + adminLn.Addr().String()},
	}
	var env strings.Builder
	for _, v := range vars {
		fmt.Fprintf(out, "%s=%s\n", v[0], v[1])
		fmt.Fprintf(&env, "%s=%q\n", v[0], v[1])
	}
	if err := os.WriteFile(filepath.Join(o.dir, "pushsim.env"), []byte(env.String()), 0o644); err != nil {
		return err
	}
	logger.Info("simulators running", slog.String("apns", apns.URL()), slog.String("fcm", fcm.URL()),
		slog.String("admin", "http://"+adminLn.Addr().String()), slog.String("fault", o.fault.String()))
	<-ctx.Done()
	logger.Info("stopping", slog.Any("apns", apns.Counts()), slog.Any("fcm", fcm.Counts()))
	return nil
}

// faultFlag names a fault setting by its flag, for simcore.Fault.Check.
func faultFlag(param string) string {
	return "flag -" + strings.ReplaceAll(param, "_", "-")
}

// serviceAccount is what the simulator needs of a -fcm-service-account file.
type serviceAccount struct {
	email, project string
	pub            *rsa.PublicKey
}

// loadAccount reads a service-account file.
func loadAccount(path string) (*serviceAccount, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("flag -fcm-service-account: %w", err)
	}
	var sa struct {
		ProjectID   string `json:"project_id"`
		ClientEmail string `json:"client_email"`
		PrivateKey  string `json:"private_key"`
	}
	if err := json.Unmarshal(raw, &sa); err != nil {
		return nil, fmt.Errorf("flag -fcm-service-account: %w", err)
	}
	block, _ := pem.Decode([]byte(sa.PrivateKey))
	if block == nil {
		return nil, errors.New("flag -fcm-service-account: private_key holds no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("flag -fcm-service-account: private_key: %w", err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("flag -fcm-service-account: private_key is not RSA")
	}
	return &serviceAccount{email: sa.ClientEmail, project: sa.ProjectID, pub: &rk.PublicKey}, nil
}

// accountProject is the project to serve for a loaded service account: a
// sender takes the file's project_id, so the simulator must serve that one;
// -fcm-project may only repeat it.
func accountProject(flagProject string, flagSet bool, sa *serviceAccount) (string, error) {
	switch {
	case sa.project == "":
		return flagProject, nil
	case !flagSet:
		return sa.project, nil
	case flagProject != sa.project:
		return "", fmt.Errorf("flag -fcm-project %q does not match project_id %q of flag -fcm-service-account", flagProject, sa.project)
	}
	return flagProject, nil
}
