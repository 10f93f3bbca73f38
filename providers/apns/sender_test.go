package apns_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/pushlane/pushlane/providers"
)

func TestDeliveredSetsEveryField(t *testing.T) {
	e := setup(t)
	badge := 3
	m := &providers.Message{
		Platform: providers.PlatformIOS, Title: "Sale", Body: "50% \"off\"\n", Badge: &badge, Sound: "chime.caf",
		Data: map[string]string{"campaign": "c1", "deep": "app://x"}, Priority: providers.PriorityHigh,
		CollapseID: "sale-1", ThreadID: "promo", Category: "BUY", MutableContent: true, ContentAvailable: true,
		InterruptionLevel: "time-sensitive", Expiration: time.Now().Add(time.Hour).Truncate(time.Second),
	}
	m.Token = tok("abc", 1)
	r := e.sender.Send(context.Background(), m, 1)
	if r.Outcome != providers.Delivered || r.Status != 200 || r.ProviderID == "" || r.Attempt != 1 || r.Err != nil {
		t.Fatalf("result = %+v", r)
	}
	rec, ok := e.sim.Last(m.Token)
	if !ok {
		t.Fatal("simulator recorded nothing")
	}
	wantHeaders := map[string]string{
		"Apns-Topic": topic, "Apns-Push-Type": "alert", "Apns-Priority": "10", "Apns-Collapse-Id": "sale-1",
		"Apns-Expiration": itoa(m.Expiration.Unix()),
	}
	for k, v := range wantHeaders {
		if got := rec.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body, &got); err != nil {
		t.Fatalf("payload %s: %v", rec.Body, err)
	}
	want := `{"aps":{"alert":{"body":"50% \"off\"\n","title":"Sale"},"badge":3,"category":"BUY","content-available":1,"interruption-level":"time-sensitive","mutable-content":1,"sound":"chime.caf","thread-id":"promo"},"campaign":"c1","deep":"app://x"}`
	gotJSON, _ := json.Marshal(got)
	if string(gotJSON) != want {
		t.Errorf("payload\n got %s\nwant %s", gotJSON, want)
	}
	if c := e.sim.Counts(); c.Accepted != 1 || c.Devices != 1 || c.Duplicates != 0 {
		t.Errorf("counts = %+v", c)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }
