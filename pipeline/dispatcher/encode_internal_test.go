package dispatcher

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

// appendResult writes exactly what encoding/json writes for a result.
func TestAppendResultMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 3, 20, 9, 0, 4, 250_000_000, time.UTC)
	full := schemas.Result{SchemaVersion: 1, ID: "0123abcd", CampaignID: "c1", CampaignVersion: 2, BatchID: "c1:v2:all:7#a2",
		App: "shop", Provider: "apns", DeviceID: 42, UserID: "u-1", Token: "c0ffee", Platform: "ios", Locale: "de-AT",
		Timezone: "Europe/Vienna", Wave: "+01:00", Outcome: "token_dead", Status: 410, Reason: "Unregistered",
		ProviderID: "8f3b1c2e-1111-2222-3333-444455556666", ProviderTimestamp: at.Add(-time.Hour), Attempt: 2,
		SendAt: at, At: at.Add(1234567 * time.Nanosecond), LatencyMs: 1.234567, LatenessMs: -0.5}
	cases := []schemas.Result{
		full,
		{SchemaVersion: 1, ID: "x", CampaignID: "c", CampaignVersion: 1, BatchID: "b", App: "a", Token: "t", Platform: "android", Outcome: "expired", At: at},
		{SchemaVersion: 1, ID: "x", CampaignID: "c", CampaignVersion: 1, BatchID: "b", App: "a", Token: "t\"\\\n\r\t\b\f\x01\x7f<>&\u2028\u2029é\xff", Platform: "ios",
			Outcome: "failed", Reason: "app a has no provider for platform ios", At: at.In(time.FixedZone("x", 3600)), LatencyMs: 12345678.9},
	}
	for range 200 {
		r := full
		r.Token = randomString()
		r.Reason = randomString()
		r.LatencyMs = rand.Float64() * 1000
		r.LatenessMs = (rand.Float64() - 0.5) * 1e6
		r.At = time.Unix(0, rand.Int64N(1<<62)).UTC()
		cases = append(cases, r)
	}
	for _, r := range cases {
		want, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		got := appendResult(nil, &r)
		if !bytes.Equal(got, want) {
			t.Fatalf("appendResult\n%s\nencoding/json\n%s", got, want)
		}
		if _, err := schemas.DecodeResult(got); err != nil && r.Token != "" {
			t.Fatalf("does not match the schema: %v", err)
		}
	}
}

func randomString() string {
	const alphabet = "ab\"\\\n\b\f\x00\x1f\x7f<>&é€\u2028"
	rs := []rune(alphabet)
	var b []byte
	for range rand.IntN(20) + 1 {
		if rand.IntN(10) == 0 {
			b = append(b, 0xff) // invalid UTF-8
			continue
		}
		b = append(b, string(rs[rand.IntN(len(rs))])...)
	}
	return string(b)
}

func BenchmarkAppendResult(b *testing.B) {
	r := schemas.Result{SchemaVersion: 1, ID: "0123456789abcdef0123456789abcdef", CampaignID: "c1", CampaignVersion: 1, BatchID: "bench", App: "app1",
		Provider: "apns", DeviceID: 7, Token: "c0de00000000000000000000000000000000000000000000000000000000beef", Platform: "ios",
		Outcome: "delivered", Status: 200, ProviderID: "8f3b1c2e-1111-2222-3333-444455556666", Attempt: 1, SendAt: time.Now(), At: time.Now(), LatencyMs: 1.2, LatenessMs: 3.4}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendResult(buf[:0], &r)
	}
}

// resultRecords gives each result its own key, value and headers, whatever
// the sizes (the shared buffer grows mid-call here) and batch ids.
func TestResultRecordsEncodeEachResultApart(t *testing.T) {
	at := time.Date(2026, 3, 20, 9, 0, 4, 0, time.UTC)
	var results []schemas.Result
	for i := range 7 {
		r := schemas.Result{SchemaVersion: 1, ID: fmt.Sprint("id", i), CampaignID: "c", CampaignVersion: 1,
			BatchID: fmt.Sprint("b", i/3), App: "shop", Token: fmt.Sprint("tok", i), Platform: "ios", Outcome: "delivered", At: at}
		if i == 4 {
			r.Reason = strings.Repeat("long ", 1000) // past the 512 bytes a result is given
		}
		results = append(results, r)
	}
	recs := resultRecords("results", results)
	if len(recs) != len(results) {
		t.Fatalf("%d records for %d results", len(recs), len(results))
	}
	for i, rec := range recs {
		r := &results[i]
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Topic != "results" || string(rec.Key) != "shop/"+r.Token || !bytes.Equal(rec.Value, want) {
			t.Errorf("record %d: topic %q key %q value %s, want key shop/%s value %s", i, rec.Topic, rec.Key, rec.Value, r.Token, want)
		}
		if len(rec.Headers) != 2 || rec.Headers[0].Key != kafka.HeaderSchema || string(rec.Headers[0].Value) != "result.v1" ||
			rec.Headers[1].Key != kafka.HeaderBatchID || string(rec.Headers[1].Value) != r.BatchID {
			t.Errorf("record %d headers %+v, want schema result.v1 and batch %s", i, rec.Headers, r.BatchID)
		}
		if cap(rec.Key) != len(rec.Key) || cap(rec.Value) != len(rec.Value) || cap(rec.Headers) != 2 {
			t.Errorf("record %d: an append to its key, value or headers could reach the next record's", i)
		}
	}
}
