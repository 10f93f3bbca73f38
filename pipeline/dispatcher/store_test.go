package dispatcher_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/internal/migrate"
	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/pipeline/dispatcher"
)

func TestBitmap(t *testing.T) {
	var b dispatcher.Bitmap
	for _, i := range []int{0, 7, 8, 9999} {
		b = b.Set(i)
	}
	b = b.Set(7)
	if b.Count() != 4 || len(b) != 1250 {
		t.Errorf("count %d len %d, want 4 and 1250", b.Count(), len(b))
	}
	for i := range 10000 {
		want := i == 0 || i == 7 || i == 8 || i == 9999
		if b.Has(i) != want {
			t.Fatalf("Has(%d) = %v", i, b.Has(i))
		}
	}
	if dispatcher.Bitmap(nil).Has(3) {
		t.Error("empty bitmap has 3")
	}
}

// storeSuite is what every Store must do.
func storeSuite(t *testing.T, s dispatcher.Store) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)

	p, err := s.Progress(ctx, "unknown")
	if err != nil || p.Finished || p.Done.Count() != 0 {
		t.Fatalf("unknown batch: %+v, %v", p, err)
	}
	want := dispatcher.Progress{Done: dispatcher.Bitmap{}.Set(0).Set(9).Set(9999), Retry: dispatcher.Bitmap{}.Set(9), RetryAfter: 1500 * time.Millisecond}
	if err := s.SaveProgress(ctx, "b1", want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Progress(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Done, want.Done) || !bytes.Equal(got.Retry, want.Retry) || got.RetryAfter != want.RetryAfter || got.Finished {
		t.Errorf("progress %+v, want %+v", got, want)
	}
	if err := s.Finish(ctx, "b1", now.Add(-48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, "b2", now); err != nil { // finished without progress (all cancelled at once)
		t.Fatal(err)
	}
	for _, id := range []string{"b1", "b2"} {
		if got, _ := s.Progress(ctx, id); !got.Finished {
			t.Errorf("%s not finished", id)
		}
	}
	if got, _ := s.Progress(ctx, "b1"); got.Done.Count() != 3 {
		t.Errorf("finish lost the progress: %+v", got)
	}
	n, err := s.DeleteFinishedBefore(ctx, now.Add(-24*time.Hour))
	if err != nil || n != 1 {
		t.Errorf("DeleteFinishedBefore: %d, %v; want 1", n, err)
	}
	if got, _ := s.Progress(ctx, "b1"); got.Finished {
		t.Error("b1 still known after its retention")
	}

	parked := dispatcher.Parked{BatchID: "p1", App: "app1", CampaignID: "c1", Reason: dispatcher.ParkPaused,
		SendAt: now, ExpiresAt: now.Add(time.Hour), Key: []byte("p1"), Value: []byte(`{"x":1}`),
		Headers: map[string]string{"pushlane-send-at": "123"}, ParkedAt: now}
	if err := s.Park(ctx, parked); err != nil {
		t.Fatal(err)
	}
	later := parked
	later.BatchID, later.Reason, later.ExpiresAt, later.ParkedAt = "p2", dispatcher.ParkHalted, time.Time{}, now.Add(time.Second)
	if err := s.Park(ctx, later); err != nil {
		t.Fatal(err)
	}
	if err := s.Park(ctx, parked); err != nil { // parking again replaces
		t.Fatal(err)
	}
	// A record without a key (franz-go's nil for a null key) is refused:
	// record_key is NOT NULL. MemStore must refuse it too, or a test
	// parks what production retries for ever.
	keyless := parked
	keyless.BatchID, keyless.Key = "p-keyless", nil
	if err := s.Park(ctx, keyless); err == nil || !strings.Contains(err.Error(), "record_key") {
		t.Errorf("parking a batch without a record key: %v, want record_key refused", err)
	}
	if _, ok, _ := s.LoadParked(ctx, "p-keyless"); ok {
		t.Error("a batch without a record key was parked")
	}
	list, err := s.ListParked(ctx, time.Time{}, "", 10)
	if err != nil || len(list) != 2 || list[0].BatchID != "p1" || list[1].BatchID != "p2" || list[1].Reason != dispatcher.ParkHalted ||
		!list[1].ExpiresAt.IsZero() || !list[0].ExpiresAt.Equal(now.Add(time.Hour)) || list[0].Value != nil {
		t.Fatalf("ListParked: %+v, %v", list, err)
	}
	// Pages: three more batches parked in the same millisecond as p2, so
	// the page boundary falls inside a tie of parked_at.
	for _, id := range []string{"p2a", "p2c", "p2b"} {
		tie := later
		tie.BatchID = id
		if err := s.Park(ctx, tie); err != nil {
			t.Fatal(err)
		}
	}
	var paged []string
	var afterAt time.Time
	afterID := ""
	for range 10 {
		page, err := s.ListParked(ctx, afterAt, afterID, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page {
			paged = append(paged, p.BatchID)
		}
		if len(page) < 2 {
			break
		}
		afterAt, afterID = page[1].ParkedAt, page[1].BatchID
	}
	if got := strings.Join(paged, " "); got != "p1 p2 p2a p2b p2c" {
		t.Fatalf("ListParked in pages of 2: %s, want p1 p2 p2a p2b p2c", got)
	}
	for _, id := range []string{"p2a", "p2b", "p2c"} {
		if err := s.Unpark(ctx, id, later.ParkedAt); err != nil {
			t.Fatal(err)
		}
	}
	full, ok, err := s.LoadParked(ctx, "p1")
	if err != nil || !ok || string(full.Value) != `{"x":1}` || string(full.Key) != "p1" || full.Headers["pushlane-send-at"] != "123" {
		t.Fatalf("LoadParked: %+v %v %v", full, ok, err)
	}
	if err := s.Unpark(ctx, "p1", now.Add(-time.Millisecond)); err != nil { // parked again since: kept
		t.Fatal(err)
	}
	if _, ok, _ := s.LoadParked(ctx, "p1"); !ok {
		t.Error("p1 unparked by a stale release")
	}
	if err := s.Unpark(ctx, "p1", full.ParkedAt); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.LoadParked(ctx, "p1"); ok {
		t.Error("p1 still parked")
	}

	h := dispatcher.Halt{App: "app1", Provider: "apns", Reason: "InvalidProviderToken", Since: now, ProbeAt: now.Add(time.Second)}
	if err := s.SetHalt(ctx, h); err != nil {
		t.Fatal(err)
	}
	h2 := h
	h2.Reason = "later"
	if err := s.SetHalt(ctx, h2); err != nil { // the first halt stays
		t.Fatal(err)
	}
	halts, err := s.Halts(ctx)
	if err != nil || len(halts) != 1 || halts[0].Reason != "InvalidProviderToken" {
		t.Fatalf("Halts: %+v, %v", halts, err)
	}
	if ok, _ := s.ClaimProbe(ctx, "app1", now, now.Add(time.Minute)); ok {
		t.Error("probe claimed before probe_at")
	}
	if ok, _ := s.ClaimProbe(ctx, "app1", now.Add(time.Second), now.Add(time.Minute)); !ok {
		t.Error("probe not claimed at probe_at")
	}
	if ok, _ := s.ClaimProbe(ctx, "app1", now.Add(2*time.Second), now.Add(time.Minute)); ok {
		t.Error("probe claimed twice")
	}
	// Given back the way an unanswered probe gives its claim back (its
	// ProbeAt, with sub-millisecond digits the column may round, plus
	// 1 ms): due again at once.
	until := now.Add(5*time.Minute + 600*time.Microsecond)
	if ok, _ := s.ClaimProbe(ctx, "app1", now.Add(2*time.Minute), until); !ok {
		t.Error("probe not claimed after the claim's ProbeAt")
	}
	if ok, _ := s.ClaimProbe(ctx, "app1", until.Add(time.Millisecond), now); !ok {
		t.Error("a claim could not be given back")
	}
	if ok, _ := s.ClaimProbe(ctx, "app1", now.Add(time.Millisecond), now.Add(time.Minute)); !ok {
		t.Error("probe not claimed after the claim was given back")
	}
	if err := s.ClearHalt(ctx, "app1"); err != nil {
		t.Fatal(err)
	}
	if halts, _ := s.Halts(ctx); len(halts) != 0 {
		t.Errorf("halts after clear: %+v", halts)
	}
}

func TestMemStore(t *testing.T) { storeSuite(t, dispatcher.NewMemStore()) }

func TestMySQLStore(t *testing.T) {
	t.Parallel()
	_, db := testenv.MySQL(t)
	if _, err := migrate.MySQL(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	storeSuite(t, dispatcher.NewMySQLStore(db))
}
