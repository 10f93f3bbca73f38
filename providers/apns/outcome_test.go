package apns_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/apns"
	"github.com/pushlane/pushlane/providers/apnssim"
)

// Every reason Apple documents, answered by the simulator over HTTP/2, and
// the outcome the sender gives it.
func TestEveryAppleReasonOverTheWire(t *testing.T) {
	e := setup(t)
	cases := []struct {
		status  int
		reason  string
		outcome providers.Outcome
	}{
		{400, "BadCollapseId", providers.PayloadRejected},
		{400, "BadDeviceToken", providers.TokenSuspect},
		{400, "BadExpirationDate", providers.PayloadRejected},
		{400, "BadMessageId", providers.PayloadRejected},
		{400, "BadPriority", providers.PayloadRejected},
		{400, "BadTopic", providers.PayloadRejected},
		{400, "DeviceTokenNotForTopic", providers.TokenSuspect},
		{400, "DuplicateHeaders", providers.PayloadRejected},
		{400, "IdleTimeout", providers.Retryable},
		{400, "InvalidPushType", providers.PayloadRejected},
		{400, "MissingDeviceToken", providers.TokenSuspect},
		{400, "MissingTopic", providers.PayloadRejected},
		{400, "PayloadEmpty", providers.PayloadRejected},
		{400, "TopicDisallowed", providers.CredentialFailure},
		{403, "BadCertificate", providers.CredentialFailure},
		{403, "BadCertificateEnvironment", providers.CredentialFailure},
		{403, "ExpiredProviderToken", providers.CredentialFailure}, // token is young: not re-signed (see token tests)
		{403, "Forbidden", providers.CredentialFailure},
		{403, "InvalidProviderToken", providers.CredentialFailure},
		{403, "MissingProviderToken", providers.CredentialFailure},
		{403, "UnrelatedKeyIdInToken", providers.CredentialFailure},
		{403, "BadEnvironmentKeyInToken", providers.CredentialFailure},
		{404, "BadPath", providers.PayloadRejected},
		{405, "MethodNotAllowed", providers.PayloadRejected},
		{410, "ExpiredToken", providers.TokenDead},
		{410, "Unregistered", providers.TokenDead},
		{413, "PayloadTooLarge", providers.PayloadRejected},
		{429, "TooManyProviderTokenUpdates", providers.Retryable},
		{429, "TooManyRequests", providers.Retryable},
		{500, "InternalServerError", providers.Retryable},
		{503, "ServiceUnavailable", providers.Retryable},
		{503, "Shutdown", providers.Retryable},
	}
	p, err := e.sender.Prepare(alert())
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		t.Run(c.reason, func(t *testing.T) {
			token := tok("ab", 1000+i)
			e.sim.SetTokenRule(token, apnssim.Rule{Status: c.status, Reason: c.reason})
			r := p.Send(context.Background(), token, 2)
			if r.Outcome != c.outcome || r.Status != c.status || r.Reason != c.reason || r.Attempt != 2 {
				t.Fatalf("got outcome=%s status=%d reason=%q attempt=%d, want %s %d %q", r.Outcome, r.Status, r.Reason, r.Attempt, c.outcome, c.status, c.reason)
			}
			if r.ProviderID == "" {
				t.Error("no apns-id")
			}
			if !strings.Contains(r.Err.Error(), c.reason) {
				t.Errorf("error %q does not name the reason", r.Err)
			}
			if got := apns.Classify(c.status, c.reason); got != c.outcome {
				t.Errorf("Classify = %s", got)
			}
		})
	}
}

func TestClassifyUnknownReasonsByStatus(t *testing.T) {
	for _, c := range []struct {
		status int
		want   providers.Outcome
	}{
		{200, providers.Delivered}, {400, providers.PayloadRejected}, {403, providers.CredentialFailure},
		{410, providers.TokenDead}, {413, providers.PayloadRejected}, {429, providers.Retryable},
		{500, providers.Retryable}, {502, providers.Retryable}, {503, providers.Retryable},
	} {
		if got := apns.Classify(c.status, "SomethingNew"); got != c.want {
			t.Errorf("Classify(%d, SomethingNew) = %s, want %s", c.status, got, c.want)
		}
	}
}

func TestDefaultTokenRules(t *testing.T) {
	e := setup(t)
	p, err := e.sender.Prepare(alert())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		prefix  string
		reason  string
		outcome providers.Outcome
	}{
		{"dead", "Unregistered", providers.TokenDead},
		{"deaf", "ExpiredToken", providers.TokenDead},
		{"0bad", "BadDeviceToken", providers.TokenSuspect},
		{"0ff7", "DeviceTokenNotForTopic", providers.TokenSuspect},
		{"0429", "TooManyRequests", providers.Retryable},
		{"0500", "InternalServerError", providers.Retryable},
		{"0503", "ServiceUnavailable", providers.Retryable},
		{"05d0", "Shutdown", providers.Retryable},
		{"a11", "", providers.Delivered},
	} {
		r := p.Send(context.Background(), tok(c.prefix, 1), 1)
		if r.Outcome != c.outcome || r.Reason != c.reason {
			t.Errorf("prefix %s: outcome %s reason %q, want %s %q", c.prefix, r.Outcome, r.Reason, c.outcome, c.reason)
		}
	}
	if c := e.sim.Counts(); c.Accepted != 1 || c.Requests != 9 || c.Rejected["Unregistered"] != 1 {
		t.Errorf("counts = %+v", c)
	}
}

func TestUnregisteredKeepsApplesMillisecondTimestamp(t *testing.T) {
	e := setup(t)
	last := time.UnixMilli(1_700_000_000_123)
	token := tok("dead", 7)
	e.sim.SetTokenRule(token, apnssim.Rule{Status: 410, Reason: "Unregistered", Timestamp: last})
	m := alert()
	m.Token = token
	r := e.sender.Send(context.Background(), m, 1)
	if r.Outcome != providers.TokenDead || !r.Timestamp.Equal(last) {
		t.Fatalf("outcome %s timestamp %v, want token_dead %v", r.Outcome, r.Timestamp, last)
	}
}

func TestRetryAfterIsReported(t *testing.T) {
	e := setup(t)
	e.sim.SetFault(apnssim.Fault{Rate429: 1, Count: 1, RetryAfter: 7 * time.Second})
	m := alert()
	m.Token = tok("a1", 1)
	r := e.sender.Send(context.Background(), m, 3)
	if r.Outcome != providers.Retryable || r.Status != 429 || r.RetryAfter != 7*time.Second || r.Reason != "TooManyRequests" {
		t.Fatalf("result = %+v", r)
	}
	if d := providers.Backoff(r.Attempt, r.RetryAfter); d < 7*time.Second {
		t.Errorf("Backoff = %s, below Retry-After", d)
	}
	// The fault was for one request only.
	if r := e.sender.Send(context.Background(), m, 4); r.Outcome != providers.Delivered {
		t.Fatalf("second send = %+v", r)
	}
}

func TestFaultForADurationThenHealthy(t *testing.T) {
	e := setup(t)
	m := alert()
	m.Token = tok("a2", 1)
	// The connection and the provider token first: the window below must
	// not be spent on a handshake (over 200 ms under -race).
	if r := e.sender.Send(context.Background(), m, 1); r.Outcome != providers.Delivered {
		t.Fatalf("before the fault: %+v", r)
	}
	e.sim.SetFault(apnssim.Fault{Rate503: 1, For: 2 * time.Second})
	if r := e.sender.Send(context.Background(), m, 1); r.Outcome != providers.Retryable || r.Reason != "ServiceUnavailable" {
		t.Fatalf("during fault: %+v", r)
	}
	for deadline := time.Now().Add(10 * time.Second); e.sim.Fault() != (apnssim.Fault{}); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the 2 s fault is still in force after 10 s: %+v", e.sim.Fault())
		}
	}
	if r := e.sender.Send(context.Background(), m, 2); r.Outcome != providers.Delivered {
		t.Fatalf("after fault: %+v", r)
	}
}
