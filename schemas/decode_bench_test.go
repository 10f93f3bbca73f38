package schemas

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The Decode* functions are the floor of every stage's per-record cost
// (the planner per campaign, feedback per result when its fast path is
// unsure, the dispatcher per batch envelope); these keep an eye on what
// the integer handling adds to events written as most producers write
// them: plain integers.

func BenchmarkDecodeCampaign(b *testing.B) {
	raw := []byte(`{"schema_version":1,"id":"spring-sale-2026","version":3,"app":"shop","audience":{"type":"segment","platforms":["ios","android"],"locales":["de-DE","en-US"]},` +
		`"content":{"title":"Spring sale","body":"20% off everything","badge":1,"sound":"default","data":{"deeplink":"shop://sale"}},` +
		`"schedule":{"mode":"at","send_at":"2026-04-01T09:00:00Z"},"options":{"priority":"high","ttl_seconds":3600,"batch_size":500,"throttle_per_second":2000}}`)
	benchDecode(b, raw, func(v []byte) error { _, err := DecodeCampaign(v); return err })
}

func BenchmarkDecodeResult(b *testing.B) {
	at := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	raw, err := json.Marshal(Result{SchemaVersion: 1, ID: "0123456789abcdef0123456789abcdef", CampaignID: "spring-sale-2026", CampaignVersion: 3,
		BatchID: "b-0001", App: "shop", Provider: "apns", DeviceID: 123456, UserID: "user-123456", Token: strings.Repeat("f0", 32),
		Platform: PlatformIOS, Locale: "de-DE", Timezone: "Europe/Berlin", Outcome: OutcomeDelivered, Status: 200,
		ProviderID: "7C3A2B1E-1111-2222-3333-444455556666", Attempt: 1, SendAt: at, At: at.Add(time.Second), LatencyMs: 12.5, LatenessMs: 830})
	if err != nil {
		b.Fatal(err)
	}
	benchDecode(b, raw, func(v []byte) error { _, err := DecodeResult(v); return err })
}

func BenchmarkDecodeBatch100(b *testing.B) {
	at := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	bt := Batch{SchemaVersion: 1, ID: "b-0001", CampaignID: "spring-sale-2026", CampaignVersion: 3, App: "shop", Seq: 7, Attempt: 1, SendAt: at,
		Content: Content{Title: "Spring sale", Body: "20% off everything"}, Options: Options{Priority: PriorityHigh}}
	for i := range 100 {
		bt.Devices = append(bt.Devices, BatchDevice{DeviceID: int64(1000 + i), UserID: fmt.Sprint("user-", i), Token: strings.Repeat("ab", 32),
			Platform: PlatformIOS, Locale: "de-DE", Timezone: "Europe/Berlin"})
	}
	raw, err := json.Marshal(bt)
	if err != nil {
		b.Fatal(err)
	}
	benchDecode(b, raw, func(v []byte) error { _, err := DecodeBatch(v); return err })
}

func benchDecode(b *testing.B, raw []byte, decode func([]byte) error) {
	b.Helper()
	if err := decode(raw); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if err := decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}
