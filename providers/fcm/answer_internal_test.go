package fcm

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/providers"
)

// jsonName is what the sender did before the fast path: encoding/json.
func jsonName(raw []byte) string {
	var ok struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(raw, &ok) != nil {
		return ""
	}
	return ok.Name
}

var answers = []string{
	`{"name":"projects/p/messages/0:1%70"}`,
	"{\n  \"name\": \"projects/myproject-b5ae1/messages/0:1500415314455276%31bd1c9631bd1c96\"\n}\n",
	` { "name" : "x" } `,
	`{"name":""}`,
	`{"name":"a\"b"}`,
	`{"name":"a\\u00e9"}`,
	`{"name":"caf` + "\xc3\xa9" + `"}`,
	`{"name":"bad` + "\xff" + `"}`,
	`{"name":"tab` + "\t" + `"}`,
	`{"NAME":"case-insensitive in encoding/json"}`,
	`{"name":"a","name":"b"}`,
	`{"name":"a","extra":1}`,
	`{"extra":1,"name":"a"}`,
	`{"name":"a"} trailing`,
	`{"name":"a"}}`,
	`{"name":"unterminated}`,
	`{"name":1}`,
	`{"name":null}`,
	`[]`,
	``,
	`{}`,
	`{"name"`,
	`{"name":"a"`,
}

func TestMessageNameAgreesWithEncodingJSON(t *testing.T) {
	fast := 0
	for _, a := range answers {
		if got, want := messageName([]byte(a)), jsonName([]byte(a)); got != want {
			t.Errorf("messageName(%q) = %q, encoding/json says %q", a, got, want)
		}
		if _, ok := plainMessageName([]byte(a)); ok {
			fast++
		}
	}
	// The first four are the forms FCM and the simulator send: no
	// reflection for them.
	for _, a := range answers[:4] {
		if _, ok := plainMessageName([]byte(a)); !ok {
			t.Errorf("%q not read by the fast path", a)
		}
	}
	if fast != 4 {
		t.Errorf("fast path took %d answers, want exactly the 4 plain ones", fast)
	}
}

func FuzzMessageName(f *testing.F) {
	for _, a := range answers {
		f.Add([]byte(a))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if got, want := messageName(raw), jsonName(raw); got != want {
			t.Fatalf("messageName(%q) = %q, encoding/json says %q", raw, got, want)
		}
	})
}

// oneByteReader hands out its content a byte at a time, then err.
type oneByteReader struct {
	s   string
	err error
}

func (r *oneByteReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, r.err
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

func TestReadAnswer(t *testing.T) {
	long := `{"name":"` + strings.Repeat("n", 2000) + `"}`
	for _, c := range []struct {
		r       io.Reader
		want    string
		wantErr error
	}{
		{&oneByteReader{s: `{"name":"x"}`, err: io.EOF}, `{"name":"x"}`, nil},
		{strings.NewReader(long), long, nil},
		{&oneByteReader{s: long, err: io.EOF}, long, nil},
		// A connection lost mid-answer: the transport says
		// io.ErrUnexpectedEOF, and that is no answer.
		{&oneByteReader{s: `{"name":"x`, err: io.ErrUnexpectedEOF}, "", io.ErrUnexpectedEOF},
		{&oneByteReader{s: "", err: io.ErrUnexpectedEOF}, "", io.ErrUnexpectedEOF},
		{&oneByteReader{s: long, err: io.ErrUnexpectedEOF}, "", io.ErrUnexpectedEOF},
	} {
		var buf [512]byte
		got, err := readAnswer(c.r, buf[:])
		if err != c.wantErr || string(got) != c.want {
			t.Errorf("readAnswer = %.40q…, %v; want %.40q…, %v", got, err, c.want, c.wantErr)
		}
	}
}

func TestAnswerWithoutMessageNameIsDelivered(t *testing.T) {
	// FCM took the message: a retry would send it twice.
	if r := answer(200, []byte(`{}`), ""); r.Outcome != providers.Delivered || r.ProviderID != "" || r.Err != nil {
		t.Errorf("200 {} = %+v, want delivered", r)
	}
}

func TestQuotaWithoutRetryAfterWaitsAMinute(t *testing.T) {
	quota := []byte(`{"error":{"code":429,"message":"Quota exceeded.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"QUOTA_EXCEEDED"}]}}`)
	bare := []byte(`{"error":{"code":429,"message":"Too many requests.","status":"RESOURCE_EXHAUSTED"}}`)
	unavailable := []byte(`{"error":{"code":503,"message":"Unavailable.","status":"UNAVAILABLE","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNAVAILABLE"}]}}`)
	for _, c := range []struct {
		name   string
		status int
		body   []byte
		header string
		want   time.Duration
	}{
		{"QUOTA_EXCEEDED without Retry-After", 429, quota, "", QuotaRetryAfter},
		{"429 without a code or Retry-After", 429, bare, "", QuotaRetryAfter},
		{"QUOTA_EXCEEDED with Retry-After", 429, quota, "7", 7 * time.Second},
		{"QUOTA_EXCEEDED with Retry-After 0", 429, quota, "0", 0},
		{"UNAVAILABLE without Retry-After", 503, unavailable, "", 0},
	} {
		r := answer(c.status, c.body, c.header)
		if r.Outcome != providers.Retryable || r.RetryAfter != c.want {
			t.Errorf("%s: %s after %v, want retryable after %v", c.name, r.Outcome, r.RetryAfter, c.want)
		}
	}
}
