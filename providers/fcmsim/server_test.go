package fcmsim_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/api/option"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/fcm"
	"github.com/pushlane/pushlane/providers/fcmsim"
)

const project = "pushlane-sim"

type fixture struct {
	sim    *fcmsim.Server
	acct   *fcmsim.TestServiceAccount
	client *http.Client
	bearer string
}

func start(t *testing.T) fixture {
	t.Helper()
	// The account's token_uri must name the simulator, which has no address
	// before it starts: the key first, the file's token_uri afterwards.
	acct, err := fcmsim.NewTestServiceAccount(project, "https://127.0.0.1/token")
	if err != nil {
		t.Fatal(err)
	}
	sim, err := fcmsim.New(fcmsim.Config{Accounts: map[string]fcmsim.Account{acct.ClientEmail: acct.Account()}, Record: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	var sa map[string]any
	if err := json.Unmarshal(acct.JSON, &sa); err != nil {
		t.Fatal(err)
	}
	sa["token_uri"] = sim.TokenURL()
	if acct.JSON, err = json.Marshal(sa); err != nil {
		t.Fatal(err)
	}
	bearer, err := sim.IssueAccessToken(acct.ClientEmail)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: sim.CertPool()}, ForceAttemptHTTP2: true}}
	t.Cleanup(client.CloseIdleConnections)
	return fixture{sim: sim, acct: acct, client: client, bearer: bearer}
}

type apiError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type            string `json:"@type"`
			ErrorCode       string `json:"errorCode"`
			FieldViolations []struct {
				Field       *string `json:"field"`
				Description string  `json:"description"`
			} `json:"fieldViolations"`
		} `json:"details"`
	} `json:"error"`
}

// post sends body to messages:send as a raw client would.
func (f fixture) post(t *testing.T, body string) (int, apiError, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.sim.URL()+"/v1/projects/"+project+"/messages:send", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.bearer)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var e apiError
	if resp.StatusCode != http.StatusOK {
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatalf("error body %s: %v", raw, err)
		}
	}
	return resp.StatusCode, e, string(raw)
}

// sdkClient is firebase-admin-go sending to the simulator with the
// fixture's access token.
func (f fixture) sdkClient(t *testing.T) *messaging.Client {
	t.Helper()
	hc := &http.Client{Transport: bearerTransport{bearer: f.bearer, next: f.client.Transport}}
	app, err := firebase.NewApp(context.Background(), &firebase.Config{ProjectID: project},
		option.WithHTTPClient(hc), option.WithEndpoint(f.sim.URL()+"/v1"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := app.Messaging(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type bearerTransport struct {
	bearer string
	next   http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.bearer)
	return b.next.RoundTrip(r)
}

// Everything the sender can put in a message, for every platform, is
// accepted by the strict decoder: the sender's encoding is
// firebase-admin-go's, and the SDK's encoding of a message that sets every
// option it has is accepted too (a field the simulator does not know would
// come back 400 INVALID_ARGUMENT).
func TestSenderEncodingOfEveryOptionIsAccepted(t *testing.T) {
	f := start(t)
	s, err := fcm.New(fcm.Config{App: "demo", ServiceAccountJSON: f.acct.JSON, Endpoint: f.sim.URL(), RootCAs: f.sim.CertPool()},
		nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	badge := 7
	every := func(platform string) *providers.Message {
		return &providers.Message{Platform: platform, Title: "title", Body: "body", Badge: &badge, Sound: "chime",
			Data: map[string]string{"k": "v", "notification": "x"}, PushType: "alert", Priority: providers.PriorityHigh,
			CollapseID: "c1", ThreadID: "th", Category: "cat", MutableContent: true, ContentAvailable: true,
			InterruptionLevel: "time-sensitive", TTL: 90 * time.Minute, AndroidChannel: "promo"}
	}
	msgs := map[string]*providers.Message{
		"android": every(providers.PlatformAndroid),
		"ios":     every(providers.PlatformIOS),
		"web":     every(providers.PlatformWeb),
		"low":     {Platform: providers.PlatformWeb, Title: "t", Priority: providers.PriorityLow, Expiration: time.Now().Add(time.Hour)},
		"data":    {Platform: providers.PlatformAndroid, Data: map[string]string{"only": "data"}, Priority: providers.PriorityNormal},
	}
	for name, m := range msgs {
		m.Token = "live-" + name
		if r := s.Send(context.Background(), m, 1); r.Outcome != providers.Delivered {
			t.Errorf("%s: %+v", name, r)
		}
	}

	count, ts := 3, time.Unix(1_800_000_000, 0)
	full := &messaging.Message{
		Token:        "live-sdk",
		Data:         map[string]string{"k": "v"},
		Notification: &messaging.Notification{Title: "t", Body: "b", ImageURL: "https://example.com/i.png"},
		Android: &messaging.AndroidConfig{
			CollapseKey: "c", Priority: "high", TTL: new(time.Hour), RestrictedPackageName: "com.example.app",
			Data: map[string]string{"a": "b"}, DirectBootOK: true,
			FCMOptions: &messaging.AndroidFCMOptions{AnalyticsLabel: "label"},
			Notification: &messaging.AndroidNotification{
				Title: "t", Body: "b", Icon: "ic", Color: "#112233", Sound: "s", Tag: "tag", ClickAction: "OPEN",
				BodyLocKey: "bk", BodyLocArgs: []string{"1"}, TitleLocKey: "tk", TitleLocArgs: []string{"2"},
				ChannelID: "ch", ImageURL: "https://example.com/a.png", Ticker: "tick", Sticky: true, EventTimestamp: &ts,
				LocalOnly: true, Priority: messaging.PriorityHigh, VibrateTimingMillis: []int64{100, 200},
				DefaultVibrateTimings: true, DefaultSound: true, DefaultLightSettings: true,
				LightSettings:     &messaging.LightSettings{Color: "#AABBCC", LightOnDurationMillis: 100, LightOffDurationMillis: 200},
				Visibility:        messaging.VisibilityPublic,
				NotificationCount: &count,
				Proxy:             messaging.ProxyDeny,
			},
		},
		Webpush: &messaging.WebpushConfig{
			Headers: map[string]string{"TTL": "60"}, Data: map[string]string{"w": "x"},
			Notification: &messaging.WebpushNotification{Title: "t", Body: "b", Icon: "i", Badge: "bd", Direction: "ltr",
				Image: "im", Language: "en", Renotify: true, RequireInteraction: true, Silent: true, Tag: "tg",
				Vibrate:    []int{1, 2},
				Actions:    []*messaging.WebpushNotificationAction{{Action: "a", Title: "t", Icon: "i"}},
				CustomData: map[string]any{"custom": 1}},
			FCMOptions: &messaging.WebpushFCMOptions{Link: "https://example.com"},
		},
		APNS: &messaging.APNSConfig{
			Headers: map[string]string{"apns-priority": "10"},
			Payload: &messaging.APNSPayload{
				Aps: &messaging.Aps{Alert: &messaging.ApsAlert{Title: "t", SubTitle: "s", Body: "b"}, Badge: &badge,
					CriticalSound:    &messaging.CriticalSound{Critical: true, Name: "n", Volume: 0.5},
					ContentAvailable: true, MutableContent: true, Category: "c", ThreadID: "th",
					CustomData: map[string]any{"interruption-level": "active"}},
				CustomData: map[string]any{"top": "level"},
			},
			FCMOptions:        &messaging.APNSFCMOptions{AnalyticsLabel: "l", ImageURL: "https://example.com/x.png"},
			LiveActivityToken: "live-activity",
		},
		FCMOptions: &messaging.FCMOptions{AnalyticsLabel: "label"},
	}
	sdk := f.sdkClient(t)
	if _, err := sdk.Send(context.Background(), full); err != nil {
		t.Fatalf("firebase-admin-go message with every option: %v", err)
	}
	if _, err := sdk.SendDryRun(context.Background(), full); err != nil {
		t.Fatalf("validate_only: %v", err)
	}
	if c := f.sim.Counts(); c.Accepted != int64(len(msgs))+1 || len(c.Rejected) != 0 {
		t.Fatalf("counts = %+v", c)
	}
}

// A field FCM does not know is refused the way Google's JSON parser refuses
// it, wherever it is, and whatever case-insensitive match encoding/json
// would have made of it; proto names and lowerCamel names are both fine.
func TestUnknownFieldsAreRefusedLikeFCM(t *testing.T) {
	f := start(t)
	type want struct {
		message, field string // field "" = no field in the violation
	}
	for _, c := range []struct {
		name, body string
		want       []want
	}{
		{"misspelt android field", `{"message":{"token":"live-1","android":{"priorty":"high"}}}`,
			[]want{{`Invalid JSON payload received. Unknown name "priorty" at 'message.android': Cannot find field.`, "message.android"}}},
		{"wrong case", `{"message":{"token":"live-1","Android":{}}}`,
			[]want{{`Invalid JSON payload received. Unknown name "Android" at 'message': Cannot find field.`, "message"}}},
		{"top level", `{"mesage":{"token":"live-1"}}`,
			[]want{{`Invalid JSON payload received. Unknown name "mesage": Cannot find field.`, ""}}},
		{"deep and twice", `{"message":{"token":"live-1","android":{"notification":{"light_settings":{"colour":{}}}},"apns":{"fcmOptions":{"label":"x"}}}}`,
			[]want{
				{`Invalid JSON payload received. Unknown name "colour" at 'message.android.notification.light_settings': Cannot find field.`, "message.android.notification.light_settings"},
				{`Invalid JSON payload received. Unknown name "label" at 'message.apns.fcmOptions': Cannot find field.`, "message.apns.fcmOptions"},
			}},
		{"wrong type", `{"message":{"token":"live-1","android":{"direct_boot_ok":"yes"}}}`,
			[]want{{`Invalid value at 'message.android.direct_boot_ok' (TYPE_BOOL), "yes"`, "message.android.direct_boot_ok"}}},
		{"data value not a string", `{"message":{"token":"live-1","data":{"a":"1","b":2}}}`,
			[]want{{`Invalid value at 'message.data[1].value' (TYPE_STRING), 2`, "message.data[1].value"}}},
	} {
		status, e, raw := f.post(t, c.body)
		if status != 400 || e.Error.Code != 400 || e.Error.Status != "INVALID_ARGUMENT" {
			t.Errorf("%s: %d %s, want 400 INVALID_ARGUMENT", c.name, status, raw)
			continue
		}
		var msgs []string
		for _, w := range c.want {
			msgs = append(msgs, w.message)
		}
		if e.Error.Message != strings.Join(msgs, "\n") {
			t.Errorf("%s: message %q, want %q", c.name, e.Error.Message, strings.Join(msgs, "\n"))
		}
		if len(e.Error.Details) != 1 || e.Error.Details[0].Type != "type.googleapis.com/google.rpc.BadRequest" {
			t.Errorf("%s: details %s, want one BadRequest and no FcmError", c.name, raw)
			continue
		}
		fv := e.Error.Details[0].FieldViolations
		if len(fv) != len(c.want) {
			t.Errorf("%s: %d field violations, want %d: %s", c.name, len(fv), len(c.want), raw)
			continue
		}
		// Order of the violations is not part of the contract.
		for _, w := range c.want {
			found := false
			for _, v := range fv {
				field := ""
				if v.Field != nil {
					field = *v.Field
				}
				if v.Description == w.message && field == w.field && (v.Field != nil) == (w.field != "") {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: no violation {field %q, description %q} in %s", c.name, w.field, w.message, raw)
			}
		}
	}
	for _, body := range []string{
		`{"validateOnly":true,"message":{"token":"live-2","fcmOptions":{"analyticsLabel":"l"},"android":{"collapseKey":"c","directBootOk":true,"restrictedPackageName":"p","ttl":"3.5s","notification":{"channelId":"ch","notificationPriority":"PRIORITY_HIGH","lightSettings":{"color":{"red":1},"lightOnDuration":"1s"}}}}}`,
		`{"validate_only":false,"message":{"token":"live-2","apns":{"live_activity_token":"x","fcm_options":{"image":"i"}},"webpush":{"fcm_options":{"link":"https://e.com"},"notification":{"anything":{"goes":[1]}}}}}`,
		`{"message":{"topic":"news","name":"ignored","notification":null}}`,
	} {
		if status, _, raw := f.post(t, body); status != 200 {
			t.Errorf("%s: %d %s", body, status, raw)
		}
	}
	if status, e, raw := f.post(t, `{"message":{"token":"x"`); status != 400 || len(e.Error.Details) != 1 || e.Error.Details[0].ErrorCode != "" {
		t.Errorf("truncated JSON: %d %s", status, raw)
	}
	if c := f.sim.Counts(); c.Accepted != 2 || c.Rejected["INVALID_ARGUMENT"] != 7 {
		t.Errorf("counts = %+v", c)
	}
}

// An injected fault's Count is spent only on sends that would have been
// accepted: a send refused for its token keeps its own answer and leaves the
// fault for the next good one.
func TestFaultCountIsSpentOnlyOnAcceptableSends(t *testing.T) {
	f := start(t)
	f.sim.SetFault(fcmsim.Fault{Rate503: 1, Count: 1, RetryAfter: 2 * time.Second})
	send := func(token string) (int, apiError) {
		status, e, _ := f.post(t, `{"message":{"token":"`+token+`","data":{"k":"v"}}}`)
		return status, e
	}
	if status, e := send("dead-1"); status != 404 || e.Error.Details[0].ErrorCode != "UNREGISTERED" {
		t.Fatalf("dead token: %d %+v, want 404 UNREGISTERED", status, e)
	}
	if status, _, raw := f.post(t, `{"message":{"token":"live-0","android":{"priorty":"high"}}}`); status != 400 {
		t.Fatalf("bad JSON: %d %s", status, raw)
	}
	if status, e := send("live-1"); status != 503 || e.Error.Details[0].ErrorCode != "UNAVAILABLE" {
		t.Fatalf("live token: %d %+v, want the injected 503", status, e)
	}
	if status, _ := send("live-2"); status != 200 {
		t.Fatalf("after the fault's count: %d", status)
	}
}

// A token rule breaks one token and a rule without a Status mends it, as in
// apnssim (a test refuses credentials, then fixes them). It answered with
// HTTP status 0, which panicked the handler: the send got no answer.
func TestTokenRuleWithoutStatusAcceptsAgain(t *testing.T) {
	f := start(t)
	send := func() (int, apiError) {
		status, e, _ := f.post(t, `{"message":{"token":"live-7","data":{"k":"v"}}}`)
		return status, e
	}
	f.sim.SetTokenRule("live-7", fcmsim.Rule{Status: 401, Code: "UNAUTHENTICATED", Message: "Request had invalid authentication credentials."})
	if status, e := send(); status != 401 || e.Error.Status != "UNAUTHENTICATED" {
		t.Fatalf("with the rule: %d %+v, want 401 UNAUTHENTICATED", status, e)
	}
	f.sim.SetTokenRule("live-7", fcmsim.Rule{})
	if status, e := send(); status != 200 {
		t.Fatalf("rule cleared: %d %+v, want 200", status, e)
	}
}

// A data message to an Apple device at apns-priority 10 is refused, as
// Google documents; with a notification, an aps alert, sound or badge, or
// at 5, it goes.
func TestDataMessageToAppleAtPriority10IsRefused(t *testing.T) {
	f := start(t)
	for _, c := range []struct {
		body   string
		status int
	}{
		{`{"message":{"token":"t1","data":{"k":"v"},"apns":{"headers":{"apns-priority":"10"},"payload":{"aps":{"content-available":1}}}}}`, 400},
		{`{"message":{"token":"t2","data":{"k":"v"},"apns":{"headers":{"apns-priority":"10"}}}}`, 400},
		{`{"message":{"token":"t3","data":{"k":"v"},"apns":{"headers":{"apns-priority":"5"},"payload":{"aps":{"content-available":1}}}}}`, 200},
		{`{"message":{"token":"t4","notification":{"title":"t"},"apns":{"headers":{"apns-priority":"10"}}}}`, 200},
		{`{"message":{"token":"t5","apns":{"headers":{"apns-priority":"10"},"payload":{"aps":{"sound":"s"}}}}}`, 200},
		{`{"message":{"token":"t6","data":{"k":"v"},"android":{"priority":"high"}}}`, 200},
	} {
		status, e, _ := f.post(t, c.body)
		if status != c.status {
			t.Errorf("%s: %d %+v, want %d", c.body, status, e, c.status)
			continue
		}
		if status == 400 && (e.Error.Status != "INVALID_ARGUMENT" || !strings.Contains(e.Error.Message, "apns-priority 5")) {
			t.Errorf("%s: %+v, want INVALID_ARGUMENT asking for apns-priority 5", c.body, e)
		}
	}
}
