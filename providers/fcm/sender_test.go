package fcm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/fcm"
	"github.com/pushlane/pushlane/providers/fcmsim"
	"github.com/pushlane/pushlane/providers/internal/sendtest"
)

func TestDeliveredWithServiceAccountAndEveryField(t *testing.T) {
	sim, acct := startSim(t, nil)
	s := newSender(t, sim, acct, nil)
	m := &providers.Message{Platform: providers.PlatformAndroid, Token: "tok-1", Title: "Sale", Body: "50%",
		Data: map[string]string{"campaign": "c1"}, Priority: providers.PriorityHigh, CollapseID: "sale",
		TTL: 90 * time.Minute, AndroidChannel: "promo", Sound: "chime"}
	r := s.Send(context.Background(), m, 1)
	if r.Outcome != providers.Delivered || r.Status != 200 || !strings.HasPrefix(r.ProviderID, "projects/"+project+"/messages/") {
		t.Fatalf("result = %+v", r)
	}
	if sim.TokenRequests() != 1 {
		t.Errorf("token requests = %d", sim.TokenRequests())
	}
	rec, _ := sim.Last("tok-1")
	var got map[string]any
	if err := json.Unmarshal(rec.Body, &got); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	want := `{"message":{"android":{"collapse_key":"sale","notification":{"channel_id":"promo","sound":"chime"},"priority":"high","ttl":"5400s"},"data":{"campaign":"c1"},"notification":{"body":"50%","title":"Sale"},"token":"tok-1"}}`
	if string(b) != want {
		t.Errorf("body\n got %s\nwant %s", b, want)
	}
	if rec.Header.Get("Authorization") == "" || !strings.HasPrefix(rec.Header.Get("Authorization"), "Bearer ya29.sim-") {
		t.Errorf("authorization = %q", rec.Header.Get("Authorization"))
	}
}

func TestAPNsAndWebpushOverrides(t *testing.T) {
	sim, acct := startSim(t, nil)
	s := newSender(t, sim, acct, nil)
	badge := 2
	ios := &providers.Message{Platform: providers.PlatformIOS, Token: "ios-1", Title: "t", Badge: &badge, Sound: "s",
		ThreadID: "th", Category: "cat", MutableContent: true, InterruptionLevel: "passive", Priority: providers.PriorityNormal,
		CollapseID: "c", PushType: "alert"}
	web := &providers.Message{Platform: providers.PlatformWeb, Token: "web-1", Title: "t", Body: "b", TTL: time.Minute, Priority: providers.PriorityLow}
	for _, m := range []*providers.Message{ios, web} {
		if r := s.Send(context.Background(), m, 1); r.Outcome != providers.Delivered {
			t.Fatalf("%s: %+v", m.Token, r)
		}
	}
	check := func(token, want string) {
		rec, _ := sim.Last(token)
		var got map[string]any
		_ = json.Unmarshal(rec.Body, &got)
		b, _ := json.Marshal(got["message"].(map[string]any)[want[:strings.Index(want, "=")]])
		if string(b) != want[strings.Index(want, "=")+1:] {
			t.Errorf("%s\n got %s\nwant %s", token, b, want)
		}
	}
	check("ios-1", `apns={"headers":{"apns-collapse-id":"c","apns-priority":"5","apns-push-type":"alert"},"payload":{"aps":{"badge":2,"category":"cat","interruption-level":"passive","mutable-content":1,"sound":"s","thread-id":"th"}}}`)
	check("web-1", `webpush={"headers":{"TTL":"60","Urgency":"low"},"notification":{"body":"b","title":"t"}}`)
}

// What Apple requires of the priority and the push type holds when a push
// reaches it through FCM: a push that shows nothing goes at apns-priority
// 5 (FCM refuses data messages to Apple devices at its default of 10, on
// every iOS device of a campaign), a background one is spelled out, and
// what Apple or FCM would refuse is refused before anything is sent.
func TestAPNsPriorityOfPushesThatShowNothing(t *testing.T) {
	sim, acct := startSim(t, nil)
	s := newSender(t, sim, acct, nil)
	data := map[string]string{"k": "v"}
	for _, c := range []struct {
		name string
		m    providers.Message
		want string // the apns override's headers, or "refused: <detail fragment>"
	}{
		{"data only", providers.Message{Data: data}, `{"apns-priority":"5"}`},
		{"content-available", providers.Message{Data: data, ContentAvailable: true}, `{"apns-priority":"5","apns-push-type":"background"}`},
		{"background asked", providers.Message{Data: data, ContentAvailable: true, PushType: "background", Priority: providers.PriorityNormal}, `{"apns-priority":"5","apns-push-type":"background"}`},
		{"alert with a title", providers.Message{Title: "t"}, `{}`},
		{"alert, high", providers.Message{Body: "b", Priority: providers.PriorityHigh}, `{"apns-priority":"10"}`},
		{"data only, low", providers.Message{Data: data, Priority: providers.PriorityLow}, `{"apns-priority":"1"}`},
		{"data only, high", providers.Message{Data: data, Priority: providers.PriorityHigh}, "refused: FCM refuses data messages to Apple devices at apns-priority 10"},
		{"background, high", providers.Message{Data: data, ContentAvailable: true, Priority: providers.PriorityHigh}, "refused: background pushes must use priority normal"},
		{"background, low", providers.Message{Data: data, PushType: "background", Priority: providers.PriorityLow}, "refused: background pushes must use priority normal"},
		{"background with a sound", providers.Message{Sound: "s", PushType: "background"}, "refused: a background push carries no title"},
	} {
		m := c.m
		m.Platform, m.Token = providers.PlatformIOS, "ios-"+strings.ReplaceAll(c.name, " ", "-")
		r := s.Send(context.Background(), &m, 1)
		if detail, refused := strings.CutPrefix(c.want, "refused: "); refused {
			if r.Outcome != providers.PayloadRejected || r.Err == nil || !strings.Contains(r.Err.Error(), detail) {
				t.Errorf("%s: %+v, want payload_rejected saying %q", c.name, r, detail)
			}
			if _, sent := sim.Last(m.Token); sent {
				t.Errorf("%s: sent to the simulator, want refused before sending", c.name)
			}
			continue
		}
		if r.Outcome != providers.Delivered {
			t.Fatalf("%s: %+v", c.name, r)
		}
		rec, _ := sim.Last(m.Token)
		var got struct {
			Message struct {
				APNS struct {
					Headers map[string]string `json:"headers"`
				} `json:"apns"`
			} `json:"message"`
		}
		if err := json.Unmarshal(rec.Body, &got); err != nil {
			t.Fatal(err)
		}
		h := got.Message.APNS.Headers
		if h == nil {
			h = map[string]string{}
		}
		if b, _ := json.Marshal(h); string(b) != c.want {
			t.Errorf("%s: apns headers %s, want %s", c.name, b, c.want)
		}
	}
}

// An expiry less than a second away is sent as a lifetime of 0, never
// left out: without one FCM keeps the message for four weeks.
func TestExpiryUnderASecondIsSentAsZero(t *testing.T) {
	sim, acct := startSim(t, nil)
	// A fixed clock: the lifetime is measured again when the request goes,
	// after the access-token fetch, which a loaded machine can stretch past
	// the 500 ms.
	clk := newFakeClock()
	s := newSender(t, sim, acct, func(c *fcm.Config) { c.Clock, c.Sleep = clk.Now, clk.Sleep })
	for _, c := range []struct {
		platform, token, field, want string
	}{
		{providers.PlatformAndroid, "and-0", "android", `{"ttl":"0s"}`},
		{providers.PlatformIOS, "ios-0", "apns", `{"headers":{"apns-expiration":"0","apns-priority":"5"},"payload":{"aps":{}}}`},
		{providers.PlatformWeb, "web-0", "webpush", `{"headers":{"TTL":"0"}}`},
	} {
		m := &providers.Message{Platform: c.platform, Token: c.token, Data: map[string]string{"k": "v"}, Expiration: clk.Now().Add(500 * time.Millisecond)}
		if r := s.Send(context.Background(), m, 1); r.Outcome != providers.Delivered {
			t.Fatalf("%s: %+v", c.token, r)
		}
		rec, _ := sim.Last(c.token)
		var got map[string]map[string]any
		if err := json.Unmarshal(rec.Body, &got); err != nil {
			t.Fatal(err)
		}
		if b, _ := json.Marshal(got["message"][c.field]); string(b) != c.want {
			t.Errorf("%s: %s = %s, want %s", c.token, c.field, b, c.want)
		}
	}
	// "notification" is not reserved: FCM takes it as a data key.
	m := &providers.Message{Platform: providers.PlatformAndroid, Token: "and-1", Data: map[string]string{"notification": "x"}}
	if r := s.Send(context.Background(), m, 1); r.Outcome != providers.Delivered {
		t.Errorf("data key notification: %+v", r)
	}
}

// Every error code Google documents for FCM v1, answered over the wire.
func TestEveryFCMErrorOverTheWire(t *testing.T) {
	sim, acct := startSim(t, nil)
	s := newSender(t, sim, acct, nil)
	cases := []struct {
		rule    fcmsim.Rule
		outcome providers.Outcome
	}{
		{fcmsim.Rule{Status: 404, Code: "UNREGISTERED", Message: "Requested entity was not found."}, providers.TokenDead},
		{fcmsim.Rule{Status: 403, Code: "SENDER_ID_MISMATCH", Message: "SenderId mismatch"}, providers.TokenSuspect},
		{fcmsim.Rule{Status: 400, Code: "INVALID_ARGUMENT", Message: "The registration token is not a valid FCM registration token"}, providers.TokenDead},
		{fcmsim.Rule{Status: 400, Code: "INVALID_ARGUMENT", Message: "Invalid value at 'message.android.ttl'"}, providers.PayloadRejected},
		{fcmsim.Rule{Status: 429, Code: "QUOTA_EXCEEDED", Message: "Quota exceeded."}, providers.Retryable},
		{fcmsim.Rule{Status: 503, Code: "UNAVAILABLE", Message: "The service is currently unavailable."}, providers.Retryable},
		{fcmsim.Rule{Status: 500, Code: "INTERNAL", Message: "Internal error encountered."}, providers.Retryable},
		{fcmsim.Rule{Status: 401, Code: "THIRD_PARTY_AUTH_ERROR", Message: "Auth error from APNS or Web Push Service"}, providers.CredentialFailure},
		{fcmsim.Rule{Status: 401, Code: "APNS_AUTH_ERROR", Message: "APNs auth error"}, providers.CredentialFailure},
		{fcmsim.Rule{Status: 500, Code: "UNSPECIFIED_ERROR", Message: "No more information."}, providers.Retryable},
		{fcmsim.Rule{Status: 400, Code: "UNSPECIFIED_ERROR", Message: "No more information."}, providers.PayloadRejected},
	}
	p, err := s.Prepare(note())
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%s_%d", c.rule.Code, c.rule.Status), func(t *testing.T) {
			token := fmt.Sprintf("case-%d", i)
			sim.SetTokenRule(token, c.rule)
			r := p.Send(context.Background(), token, 3)
			if r.Outcome != c.outcome || r.Status != c.rule.Status || r.Reason != c.rule.Code || r.Attempt != 3 {
				t.Fatalf("got %s %d %q, want %s %d %q", r.Outcome, r.Status, r.Reason, c.outcome, c.rule.Status, c.rule.Code)
			}
			var ae *fcm.APIError
			if !errors.As(r.Err, &ae) || !strings.Contains(r.Err.Error(), c.rule.Message) || !strings.Contains(r.Err.Error(), c.rule.Code) {
				t.Fatalf("error %v", r.Err)
			}
		})
	}
}

func TestDefaultTokenRules(t *testing.T) {
	sim, acct := startSim(t, nil)
	s := newSender(t, sim, acct, nil)
	p, _ := s.Prepare(note())
	for _, c := range []struct {
		token, reason string
		outcome       providers.Outcome
	}{
		{"dead-1", "UNREGISTERED", providers.TokenDead},
		{"bad-1", "INVALID_ARGUMENT", providers.TokenDead},
		{"other-1", "SENDER_ID_MISMATCH", providers.TokenSuspect},
		{"throttled-1", "QUOTA_EXCEEDED", providers.Retryable},
		{"unavailable-1", "UNAVAILABLE", providers.Retryable},
		{"internal-1", "INTERNAL", providers.Retryable},
		{"apnsauth-1", "THIRD_PARTY_AUTH_ERROR", providers.CredentialFailure},
		{"fine-1", "", providers.Delivered},
	} {
		if r := p.Send(context.Background(), c.token, 1); r.Outcome != c.outcome || r.Reason != c.reason {
			t.Errorf("%s: %s %q, want %s %q", c.token, r.Outcome, r.Reason, c.outcome, c.reason)
		}
	}
}

func TestClassifyWithoutFCMCode(t *testing.T) {
	for _, c := range []struct {
		e    fcm.APIError
		want providers.Outcome
	}{
		{fcm.APIError{Status: 401, GRPCStatus: "UNAUTHENTICATED"}, providers.CredentialFailure},
		{fcm.APIError{Status: 403, GRPCStatus: "PERMISSION_DENIED"}, providers.CredentialFailure},
		{fcm.APIError{Status: 404, GRPCStatus: "NOT_FOUND"}, providers.CredentialFailure},
		{fcm.APIError{Status: 429, GRPCStatus: "RESOURCE_EXHAUSTED"}, providers.Retryable},
		{fcm.APIError{Status: 502}, providers.Retryable},
		{fcm.APIError{Status: 400, GRPCStatus: "INVALID_ARGUMENT", Message: "Request contains an invalid argument."}, providers.PayloadRejected},
		{fcm.APIError{Status: 400, GRPCStatus: "INVALID_ARGUMENT", TokenField: true}, providers.TokenDead},
	} {
		if got := fcm.Classify(&c.e); got != c.want {
			t.Errorf("Classify(%+v) = %s, want %s", c.e, got, c.want)
		}
	}
}

func TestRetryAfterAndFaultWindow(t *testing.T) {
	sim, acct := startSim(t, nil)
	s := newSender(t, sim, acct, nil)
	sim.SetFault(fcmsim.Fault{Rate429: 1, Count: 1, RetryAfter: 12 * time.Second})
	m := note()
	m.Token = "t-1"
	r := s.Send(context.Background(), m, 1)
	if r.Outcome != providers.Retryable || r.Reason != "QUOTA_EXCEEDED" || r.RetryAfter != 12*time.Second {
		t.Fatalf("result = %+v", r)
	}
	// A window long enough for a send on a slow machine; the send after it
	// waits until the simulator says the window is over, not a fixed time.
	sim.SetFault(fcmsim.Fault{Rate503: 1, For: 2 * time.Second})
	if r := s.Send(context.Background(), m, 2); r.Outcome != providers.Retryable || r.Reason != "UNAVAILABLE" {
		t.Fatalf("during 503 window: %+v", r)
	}
	for deadline := time.Now().Add(10 * time.Second); sim.Fault() != (fcmsim.Fault{}); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the 2 s fault is still in force after 10 s: %+v", sim.Fault())
		}
	}
	if r := s.Send(context.Background(), m, 3); r.Outcome != providers.Delivered {
		t.Fatalf("after the window: %+v", r)
	}
}

func TestValidationRejectsWithoutCallingGoogle(t *testing.T) {
	sim, acct := startSim(t, nil)
	s := newSender(t, sim, acct, nil)
	for _, c := range []struct {
		m    providers.Message
		want string
	}{
		{providers.Message{Data: map[string]string{"from": "x"}}, `data key "from" is reserved`},
		{providers.Message{Data: map[string]string{"google.x": "x"}}, `data key "google.x" is reserved`},
		{providers.Message{Data: map[string]string{"gcm": "x"}}, `data key "gcm" is reserved`},
		{providers.Message{Data: map[string]string{"gcm.n.e": "x"}}, `data key "gcm.n.e" is reserved`},
		{providers.Message{Data: map[string]string{"message_type": "x"}}, `data key "message_type" is reserved`},
		{providers.Message{Body: strings.Repeat("b", 4097)}, "4097 bytes, limit 4096"},
		{providers.Message{Title: "t", TTL: 29 * 24 * time.Hour}, "outside 0–2419200 s"},
		{providers.Message{Title: "t", Priority: "asap"}, `got "asap"`},
		{providers.Message{Title: "t", Expiration: time.Now().Add(-time.Second)}, "has passed"},
		{providers.Message{Title: "t", CollapseID: strings.Repeat("c", 65)}, "65 bytes, limit 64"},
	} {
		m := c.m
		m.Token = "t"
		r := s.Send(context.Background(), &m, 1)
		if r.Outcome != providers.PayloadRejected || r.Reason != "INVALID_ARGUMENT" || r.Err == nil || !strings.Contains(r.Err.Error(), c.want) {
			t.Errorf("got %s %q %v, want payload_rejected containing %q", r.Outcome, r.Reason, r.Err, c.want)
		}
	}
	if r := s.Send(context.Background(), &providers.Message{Title: "t"}, 1); r.Outcome != providers.TokenSuspect || r.Reason != "MissingToken" {
		t.Errorf("empty token: %+v", r)
	}
	if n := sim.Counts().Requests; n != 0 || sim.TokenRequests() != 0 {
		t.Fatalf("simulator saw %d sends and %d token requests, want 0", n, sim.TokenRequests())
	}
}

func TestRefusedAccessTokenIsFetchedAgainOnce(t *testing.T) {
	sim, acct := startSim(t, nil)
	s := newSender(t, sim, acct, nil)
	m := note()
	m.Token = "t-1"
	if r := s.Send(context.Background(), m, 1); r.Outcome != providers.Delivered {
		t.Fatal(r)
	}
	sim.RevokeAccessTokens()
	if r := s.Send(context.Background(), m, 1); r.Outcome != providers.Delivered {
		t.Fatalf("after revocation: %+v", r)
	}
	if n := sim.TokenRequests(); n != 2 {
		t.Fatalf("token requests = %d, want 2", n)
	}
}

func TestFakeTokenSourceRefusedIsACredentialFailure(t *testing.T) {
	sim, _ := startSim(t, nil)
	s, err := fcm.New(fcm.Config{App: "x", ProjectID: project, Endpoint: sim.URL(), RootCAs: sim.CertPool(),
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "made-up", Expiry: time.Now().Add(time.Hour)})}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := note()
	m.Token = "t"
	r := s.Send(context.Background(), m, 1)
	if r.Outcome != providers.CredentialFailure || r.Status != 401 || r.Reason != "UNAUTHENTICATED" {
		t.Fatalf("result = %+v", r)
	}
	if n := sim.Counts().Requests; n != 2 {
		t.Fatalf("requests = %d, want 2 (one retry after the 401)", n)
	}
}

func TestServiceAccountRefusedHaltsTheApp(t *testing.T) {
	sim, _ := startSim(t, nil)
	stranger, err := fcmsim.NewTestServiceAccount(project, sim.TokenURL()) // same email, a key the simulator does not know
	if err != nil {
		t.Fatal(err)
	}
	halt, _ := providers.NewHalt(nil, nil)
	s := newSender(t, sim, stranger, func(c *fcm.Config) { c.Halt = halt; c.App = "shop" })
	m := note()
	m.Token = "t"
	r := s.Send(context.Background(), m, 1)
	if r.Outcome != providers.CredentialFailure || r.Reason != "oauth:invalid_grant" || !strings.Contains(r.Err.Error(), "Invalid JWT Signature") {
		t.Fatalf("result = %+v", r)
	}
	if _, halted := halt.Halted("shop", "fcm"); !halted {
		t.Fatal("app not halted")
	}
	for range 10 {
		if r := s.Send(context.Background(), m, 1); !errors.Is(r.Err, providers.ErrHalted) {
			t.Fatalf("send while halted: %+v", r)
		}
	}
	if sim.TokenRequests() != 1 || sim.Counts().Requests != 0 {
		t.Fatalf("token requests %d, sends %d", sim.TokenRequests(), sim.Counts().Requests)
	}
}

func TestWrongProjectIsACredentialFailure(t *testing.T) {
	sim, acct := startSim(t, nil)
	s := newSender(t, sim, acct, func(c *fcm.Config) { c.ProjectID = "someone-else" })
	m := note()
	m.Token = "t"
	r := s.Send(context.Background(), m, 1)
	if r.Outcome != providers.CredentialFailure || r.Status != 403 || !strings.Contains(r.Err.Error(), "cloudmessaging.messages.create") {
		t.Fatalf("result = %+v", r)
	}
}

func TestGoAwayAndDropsMidLoad(t *testing.T) {
	sim, acct := startSim(t, func(c *fcmsim.Config) { c.Record = false })
	s := newSender(t, sim, acct, nil)
	sim.SetFault(fcmsim.Fault{GoAwayAfter: 100})
	const n = 1500
	failed := sendtest.Load(t, prepared(t, s), n, 48, loadToken, nil)
	if len(failed) > 0 {
		t.Fatalf("%d failed, first %+v", len(failed), failed[0])
	}
	c := sim.Counts()
	if c.Accepted != n || c.Devices != n || c.Duplicates != 0 || c.GoAways < 5 {
		t.Fatalf("counts = %+v", c)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, c := range []struct {
		cfg  fcm.Config
		want string
	}{
		{fcm.Config{ServiceAccountJSON: []byte("{}")}, "config App"},
		{fcm.Config{App: "a"}, "config ServiceAccountFile/ServiceAccountJSON/TokenSource"},
		{fcm.Config{App: "a", ServiceAccountJSON: []byte("nope")}, "config ServiceAccountJSON: not service-account JSON"},
		{fcm.Config{App: "a", ServiceAccountFile: "/nonexistent.json"}, "config ServiceAccountFile"},
		{fcm.Config{App: "a", ServiceAccountJSON: []byte(`{"type":"service_account","client_email":"a@b","private_key":"junk","project_id":"p"}`)}, "private_key"},
		{fcm.Config{App: "a", TokenSource: oauth2.StaticTokenSource(&oauth2.Token{})}, "config ProjectID"},
		{fcm.Config{App: "a", ProjectID: "p", TokenSource: oauth2.StaticTokenSource(&oauth2.Token{}), QuotaPerMinute: 1}, "config QuotaPerMinute"},
		{fcm.Config{App: "a", ProjectID: "p", TokenSource: oauth2.StaticTokenSource(&oauth2.Token{}), Concurrency: -1}, "config Concurrency"},
	} {
		_, err := fcm.New(c.cfg, nil, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want %q", err, c.want)
		}
	}
}

// A token endpoint that fails (5xx) says nothing of the service account:
// the send is retryable and, never having reached FCM, has no status, so a
// halt probe does not take it for an answer (it lifted the halt).
func TestTokenEndpointFailureIsNoAnswer(t *testing.T) {
	sim, _ := startSim(t, nil)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"error":"backend_error"}`, http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	acct, err := fcmsim.NewTestServiceAccount(project, down.URL+"/token")
	if err != nil {
		t.Fatal(err)
	}
	s := newSender(t, sim, acct, nil)
	m := note()
	m.Token = "t"
	r := s.Send(providers.WithProbe(context.Background()), m, 1)
	if r.Outcome != providers.Retryable || r.Status != 0 || !strings.HasPrefix(r.Reason, "oauth:") {
		t.Fatalf("result = %+v, want retryable with no status and an oauth: reason", r)
	}
	if n := sim.Counts().Requests; n != 0 {
		t.Errorf("FCM saw %d requests, want none", n)
	}
}

// An exceeded quota that names no wait is retried after a minute doubling
// with the attempt, to 64 minutes (Google: exponential backoff from a
// minute); a flat minute gave up on a device after about seven minutes of
// a quota storm.
func TestQuotaWaitGrowsWithTheAttempt(t *testing.T) {
	sim, acct := startSim(t, nil)
	s := newSender(t, sim, acct, nil)
	m := &providers.Message{Platform: providers.PlatformAndroid, Token: "throttled-1", Title: "t"}
	for attempt, want := range map[int]time.Duration{1: time.Minute, 2: 2 * time.Minute, 3: 4 * time.Minute, 7: 64 * time.Minute, 8: 64 * time.Minute} {
		r := s.Send(context.Background(), m, attempt)
		if r.Outcome != providers.Retryable || r.Reason != "QUOTA_EXCEEDED" || r.RetryAfter != want {
			t.Errorf("attempt %d: %s %s, retry after %s; want retryable QUOTA_EXCEEDED after %s", attempt, r.Outcome, r.Reason, r.RetryAfter, want)
		}
	}
}
