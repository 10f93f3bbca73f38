package dispatcher_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/pushlane/pushlane/pipeline/dispatcher"
	"github.com/pushlane/pushlane/schemas"
)

func BenchmarkDecodeBatch1000(b *testing.B) {
	bt := batch("bench", "c1", "app1", 1000, time.Now())
	v, _ := json.Marshal(bt)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := schemas.DecodeBatch(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBatch1000Fast(b *testing.B) {
	bt := batch("bench", "c1", "app1", 1000, time.Now())
	v, _ := json.Marshal(bt)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dispatcher.DecodeBatch(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeResult(b *testing.B) {
	r := schemas.Result{SchemaVersion: 1, ID: "0123456789abcdef0123456789abcdef", CampaignID: "c1", CampaignVersion: 1, BatchID: "bench", App: "app1",
		Provider: "apns", DeviceID: 7, Token: "c0de00000000000000000000000000000000000000000000000000000000beef", Platform: "ios",
		Outcome: "delivered", Status: 200, ProviderID: "8f3b1c2e-1111-2222-3333-444455556666", Attempt: 1, SendAt: time.Now(), At: time.Now(), LatencyMs: 1.2, LatenessMs: 3.4}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(&r); err != nil {
			b.Fatal(err)
		}
	}
}
