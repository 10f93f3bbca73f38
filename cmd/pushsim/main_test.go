package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pushlane/pushlane/providers/fcmsim"
)

// Bad fault flags stop pushsim before it listens anywhere, naming the flag,
// with the checks the admin API applies to its parameters.
func TestFaultFlagsAreCheckedAtStartUp(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"-rate429", "1.5"}, []string{"flag -rate429", "[0, 1]"}},
		{[]string{"-rate503", "-0.1"}, []string{"flag -rate503"}},
		{[]string{"-rate429", "0.6", "-rate503", "0.5"}, []string{"flag -rate429", "flag -rate503", "exceed 1"}},
		{[]string{"-goaway-after", "-1"}, []string{"flag -goaway-after", "negative"}},
		{[]string{"-latency", "-1s"}, []string{"flag -latency", "negative"}},
	} {
		// An address nothing can listen on: had the flags passed, start-up
		// would fail there instead of naming them.
		args := append([]string{"-dir", t.TempDir(), "-apns-addr", "256.0.0.1:1"}, c.args...)
		err := run(context.Background(), args, io.Discard)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %v, want it to say %q", c.args, err, w)
			}
		}
	}
}

func writeAccount(t *testing.T, project string) string {
	t.Helper()
	a, err := fcmsim.NewTestServiceAccount(project, "https://127.0.0.1/token")
	if err != nil {
		t.Fatal(err)
	}
	path, err := a.WriteFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// A loaded service account names the project a sender will use, so the
// simulator serves that one; -fcm-project may only agree with it.
func TestServiceAccountNamesTheProject(t *testing.T) {
	acct := writeAccount(t, "acct-project")
	err := run(context.Background(), []string{"-dir", t.TempDir(), "-apns-addr", "256.0.0.1:1",
		"-fcm-service-account", acct, "-fcm-project", "other-project"}, io.Discard)
	for _, w := range []string{"-fcm-project", `"other-project"`, "-fcm-service-account", `"acct-project"`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("mismatch: error %v, want it to say %s", err, w)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-dir", t.TempDir(), "-apns-addr", "127.0.0.1:0", "-fcm-addr", "127.0.0.1:0",
			"-admin-addr", "127.0.0.1:0", "-fcm-service-account", acct}, pw)
		_ = pw.Close()
	}()
	vars := map[string]string{}
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		vars[k] = v
		if k == "PUSHSIM_ADMIN_URL" {
			break
		}
	}
	if got := vars["PUSHSIM_FCM_PROJECT"]; got != "acct-project" {
		t.Errorf("PUSHSIM_FCM_PROJECT = %q, want the account's project_id (output %v)", got, vars)
	}
	if vars["PUSHSIM_ADMIN_URL"] != "" {
		resp, err := http.Post(vars["PUSHSIM_ADMIN_URL"]+"/fcm/fault?rate_503=1", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(body), "rate_503") {
			t.Errorf("admin fault with an unknown parameter: %d %s", resp.StatusCode, body)
		}
	}
	cancel()
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if p, err := accountProject("acct-project", true, &serviceAccount{project: "acct-project"}); p != "acct-project" || err != nil {
		t.Errorf("agreeing -fcm-project: %q, %v", p, err)
	}
	if p, err := accountProject(defaultProject, false, &serviceAccount{}); p != defaultProject || err != nil {
		t.Errorf("account without project_id: %q, %v", p, err)
	}
}

// -h prints the usage and exits 0, as the other commands do; a failure to
// start exits 1.
func TestHelpExitsZero(t *testing.T) {
	err := run(context.Background(), []string{"-h"}, io.Discard)
	if code := exitCode(err); code != 0 {
		t.Errorf("-h: run returned %v, exit %d, want 0", err, code)
	}
	err = run(context.Background(), []string{"-dir", t.TempDir(), "-apns-addr", "256.0.0.1:1"}, io.Discard)
	if code := exitCode(err); err == nil || code != 1 {
		t.Errorf("an address nothing can listen on: run returned %v, exit %d, want an error and 1", err, code)
	}
}
