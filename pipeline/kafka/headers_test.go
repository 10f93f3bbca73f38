package kafka

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestHeaders(t *testing.T) {
	r := &kgo.Record{Headers: []kgo.RecordHeader{{Key: HeaderBatchID, Value: []byte("b-1")}, {Key: HeaderBatchID, Value: []byte("second")}}}
	if v, ok := Header(r, HeaderBatchID); !ok || v != "b-1" {
		t.Errorf("Header = %q %v, want the first", v, ok)
	}
	if v, ok := Header(r, HeaderHop); ok || v != "" {
		t.Errorf("missing header = %q %v", v, ok)
	}
	SetHeader(r, HeaderHop, "1")
	SetHeader(r, HeaderHop, "2")
	SetHeader(r, HeaderBatchID, "b-2")
	if len(r.Headers) != 3 {
		t.Fatalf("headers %v: SetHeader must replace, not append", r.Headers)
	}
	if v, _ := Header(r, HeaderHop); v != "2" {
		t.Errorf("hop = %q", v)
	}
	if v, _ := Header(r, HeaderBatchID); v != "b-2" {
		t.Errorf("batch id = %q", v)
	}
}

func TestTimeHeaders(t *testing.T) {
	at := time.Date(2026, 3, 29, 7, 0, 0, 123_456_789, time.UTC)
	if got := UnixMillis(at); got != "1774767600123" {
		t.Errorf("UnixMillis = %s", got)
	}
	r := &kgo.Record{}
	SetHeader(r, HeaderSendAt, UnixMillis(at))
	got, ok := TimeHeader(r, HeaderSendAt)
	if !ok || !got.Equal(at.Truncate(time.Millisecond)) {
		t.Errorf("TimeHeader = %v %v, want %v", got, ok, at.Truncate(time.Millisecond))
	}
	if _, ok := TimeHeader(r, HeaderExpiresAt); ok {
		t.Error("absent header read as a time")
	}
	SetHeader(r, HeaderExpiresAt, "2026-03-29T07:00:00Z")
	if _, ok := TimeHeader(r, HeaderExpiresAt); ok {
		t.Error("a non-integer header read as a time")
	}
}
