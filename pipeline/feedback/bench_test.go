package feedback

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/pushlane/pushlane/schemas"
)

func benchResultBytes(b testing.TB) []byte {
	r := result("0123456789abcdef0123456789abcdef", "app", "f0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff", schemas.OutcomeDelivered, "", t0)
	r.Provider, r.ProviderID, r.UserID, r.Locale, r.Timezone = "apns", "7C3A2B1E-1111-2222-3333-444455556666", "user-123456", "en-US", "Europe/Berlin"
	r.DeviceID, r.Status, r.SendAt, r.LatencyMs, r.LatenessMs = 123456, 200, t0.Add(-time.Second), 12.5, 830
	v, err := json.Marshal(r)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkDecodeResult is the per-record CPU cost of schema validation
// plus unmarshalling, the floor of feedback's consume rate on one core.
func BenchmarkDecodeResult(b *testing.B) {
	v := benchResultBytes(b)
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := schemas.DecodeResult(v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeResultFast is DecodeResult on a valid event: the fast
// path feedback takes for every well-formed result.
func BenchmarkDecodeResultFast(b *testing.B) {
	v := benchResultBytes(b)
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeResult(v); err != nil {
			b.Fatal(err)
		}
	}
}
