package apnssim_test

import (
	"crypto/ecdsa"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/pushlane/pushlane/providers/apnssim"
)

// Raw requests, as a sender that gets things wrong would make them.
func TestSimulatorChecksLikeApple(t *testing.T) {
	key, _ := apnssim.NewTestKey()
	other, _ := apnssim.NewTestKey()
	sim, err := apnssim.New(apnssim.Config{Keys: map[string]*ecdsa.PublicKey{key.KeyID: key.Public()}, TeamID: key.TeamID, Topics: []string{"com.example.app"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	client := &http.Client{Transport: &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: sim.CertPool()}}}
	good, _ := key.JWT(time.Now())
	old, _ := key.JWT(time.Now().Add(-61 * time.Minute))
	foreign, _ := other.JWT(time.Now())
	wrongTeam, _ := apnssim.SignJWT(key.Private, key.KeyID, "OTHERTEAM1", time.Now())
	tampered := good[:len(good)-4] + "AAAA"
	token := strings.Repeat("ab", 32)
	cases := []struct {
		name, method, path, auth, body string
		hdr                            map[string]string
		status                         int
		reason                         string
	}{
		{"ok", "POST", "/3/device/" + token, good, `{"aps":{}}`, nil, 200, ""},
		{"get", "GET", "/3/device/" + token, good, ``, nil, 405, "MethodNotAllowed"},
		{"path", "POST", "/2/device/" + token, good, `{}`, nil, 404, "BadPath"},
		{"no token", "POST", "/3/device/", good, `{}`, nil, 400, "MissingDeviceToken"},
		{"no auth", "POST", "/3/device/" + token, "", `{}`, nil, 403, "MissingProviderToken"},
		{"expired jwt", "POST", "/3/device/" + token, old, `{}`, nil, 403, "ExpiredProviderToken"},
		{"unknown kid", "POST", "/3/device/" + token, foreign, `{}`, nil, 403, "InvalidProviderToken"},
		{"wrong team", "POST", "/3/device/" + token, wrongTeam, `{}`, nil, 403, "InvalidProviderToken"},
		{"bad signature", "POST", "/3/device/" + token, tampered, `{}`, nil, 403, "InvalidProviderToken"},
		{"no topic", "POST", "/3/device/" + token, good, `{}`, map[string]string{"apns-topic": ""}, 400, "MissingTopic"},
		{"other topic", "POST", "/3/device/" + token, good, `{}`, map[string]string{"apns-topic": "com.other"}, 400, "TopicDisallowed"},
		{"voip topic", "POST", "/3/device/" + token, good, `{}`, map[string]string{"apns-push-type": "voip"}, 400, "BadTopic"},
		{"push type", "POST", "/3/device/" + token, good, `{}`, map[string]string{"apns-push-type": "fax"}, 400, "InvalidPushType"},
		{"priority", "POST", "/3/device/" + token, good, `{}`, map[string]string{"apns-priority": "7"}, 400, "BadPriority"},
		{"background 10", "POST", "/3/device/" + token, good, `{}`, map[string]string{"apns-push-type": "background", "apns-priority": "10"}, 400, "BadPriority"},
		{"expiration", "POST", "/3/device/" + token, good, `{}`, map[string]string{"apns-expiration": "soon"}, 400, "BadExpirationDate"},
		{"collapse", "POST", "/3/device/" + token, good, `{}`, map[string]string{"apns-collapse-id": strings.Repeat("c", 65)}, 400, "BadCollapseId"},
		{"apns-id", "POST", "/3/device/" + token, good, `{}`, map[string]string{"apns-id": "nope"}, 400, "BadMessageId"},
		{"token hex", "POST", "/3/device/" + strings.Repeat("zz", 32), good, `{}`, nil, 400, "BadDeviceToken"},
		{"empty", "POST", "/3/device/" + token, good, ``, nil, 400, "PayloadEmpty"},
		{"large", "POST", "/3/device/" + token, good, strings.Repeat("x", 4097), nil, 413, "PayloadTooLarge"},
		{"voip large ok", "POST", "/3/device/" + token, good, strings.Repeat("x", 5000), map[string]string{"apns-push-type": "voip", "apns-topic": "com.example.app.voip"}, 200, ""},
		{"dead", "POST", "/3/device/dead" + token[4:], good, `{}`, nil, 410, "Unregistered"},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, sim.URL()+c.path, strings.NewReader(c.body))
		req.Header.Set("apns-topic", "com.example.app")
		if c.auth != "" {
			req.Header.Set("authorization", "bearer "+c.auth)
		}
		for k, v := range c.hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var eb struct {
			Reason    string `json:"reason"`
			Timestamp int64  `json:"timestamp"`
		}
		if len(body) > 0 {
			_ = json.Unmarshal(body, &eb)
		}
		if resp.StatusCode != c.status || eb.Reason != c.reason || resp.Header.Get("apns-id") == "" {
			t.Errorf("%s: %d %s (apns-id %q), want %d %s", c.name, resp.StatusCode, body, resp.Header.Get("apns-id"), c.status, c.reason)
		}
		if c.status == 410 && eb.Timestamp == 0 {
			t.Errorf("%s: 410 without timestamp", c.name)
		}
	}
	// HTTP/1.1 is refused: APNs speaks HTTP/2 only.
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: sim.CertPool()}, ForceAttemptHTTP2: false, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	if _, err := h1.Post(sim.URL()+"/3/device/"+token, "application/json", strings.NewReader("{}")); err == nil {
		t.Error("HTTP/1.1 request answered")
	}
	if c := sim.Counts(); c.Accepted != 2 {
		t.Errorf("accepted = %d, want 2", c.Accepted)
	}
}
