package planner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/schemas"
)

// memStore is an in-memory Store: the devices table and the campaigns
// table, with injectable read failures.
type memStore struct {
	mu        sync.Mutex
	devices   []memDevice // by id
	campaigns map[string]CampaignRecord
	saves     int

	reads     atomic.Int64
	failFrom  int64 // reads numbered from 1; reads in [failFrom, failFrom+failCount) fail
	failCount int64
	// failLatest: how many LatestCampaign calls fail from now.
	failLatest int
	// failWritten: how many SaveCampaign calls from now write the row
	// and still fail, as a timeout after the server committed does.
	failWritten int
}

type memDevice struct {
	row
	app    string
	active bool
}

func newMemStore() *memStore { return &memStore{campaigns: map[string]CampaignRecord{}} }

func (s *memStore) add(app string, r row) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devices = append(s.devices, memDevice{row: r, app: app, active: true})
	sort.Slice(s.devices, func(i, j int) bool { return s.devices[i].id < s.devices[j].id })
}

func (s *memStore) ReadDevices(ctx context.Context, q AudienceQuery, part int, afterID int64, limit int, page *Page) (int64, bool, error) {
	n := s.reads.Add(1)
	if s.failCount > 0 && n >= s.failFrom && n < s.failFrom+s.failCount {
		return afterID, false, errors.New("dial tcp 127.0.0.1:3306: connect: connection refused")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in := func(v string, set []string) bool { return len(set) == 0 || slices.Contains(set, v) }
	for _, d := range s.devices {
		if d.id <= afterID || d.app != q.App || !d.active || !in(d.platform, q.Platforms) {
			continue
		}
		if len(q.Locales) > 0 {
			ok := false
			for _, l := range q.Locales {
				if strings.EqualFold(d.locale, l) || !strings.ContainsAny(l, "-_") &&
					(strings.HasPrefix(strings.ToLower(d.locale), strings.ToLower(l)+"-") || strings.HasPrefix(strings.ToLower(d.locale), strings.ToLower(l)+"_")) {
					ok = true
				}
			}
			if !ok {
				continue
			}
		}
		if len(q.UserIDs) > 0 && !slices.Contains(q.UserIDs, d.user) || len(q.Tokens) > 0 && !slices.Contains(q.Tokens, d.token) {
			continue
		}
		page.Add(part, d.id, []byte(d.user), []byte(d.token), []byte(d.platform), []byte(d.locale), []byte(d.zone))
		if len(page.Devices) >= limit {
			return d.id, false, nil
		}
	}
	return afterID, true, nil
}

func (s *memStore) SaveCampaign(_ context.Context, r CampaignRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saves++
	s.campaigns[fmt.Sprintf("%s/v%d", r.ID, r.Version)] = r
	if s.failWritten > 0 {
		s.failWritten--
		return errors.New("read tcp 127.0.0.1:3306: i/o timeout")
	}
	return nil
}

func (s *memStore) LatestCampaign(_ context.Context, id string, version int) (StoredCampaign, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failLatest > 0 {
		s.failLatest--
		return StoredCampaign{}, false, errors.New("dial tcp 127.0.0.1:3306: connect: connection refused")
	}
	var latest StoredCampaign
	found := false
	for _, r := range s.campaigns {
		if r.ID == id && r.Version >= version && (!found || r.Version > latest.Version) {
			latest, found = StoredCampaign{Version: r.Version, Status: r.Status}, true
		}
	}
	return latest, found, nil
}

func (s *memStore) campaign(id string, version int) (CampaignRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.campaigns[fmt.Sprintf("%s/v%d", id, version)]
	return r, ok
}

// flagControls cancels the campaigns in its set.
type flagControls struct {
	mu        sync.Mutex
	cancelled map[string]bool
}

func (f *flagControls) cancel(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cancelled == nil {
		f.cancelled = map[string]bool{}
	}
	f.cancelled[id] = true
}

func (f *flagControls) Cancelled(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cancelled[id]
}

func (f *flagControls) WaitFresh(context.Context, time.Time) error { return nil }

// campaignJSON encodes c as published.
func campaignJSON(t testing.TB, c *schemas.Campaign) []byte {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := schemas.DecodeCampaign(b); err != nil {
		t.Fatalf("test campaign is invalid: %v\n%s", err, b)
	}
	return b
}

// output is what the planner committed, read back read_committed.
type output struct {
	batches     map[string]*schemas.Batch // by id
	batchTopics map[string]string
	dupBatches  []string
	results     []*schemas.Result
	deadLetters []*schemas.DeadLetter
	raw         []*kgo.Record
}

// readCommitted reads every committed record of topics, up to their end
// offsets as listed now (the planner must be done: no open transaction).
func readCommitted(t testing.TB, brokers []string, topics ...string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			if want[o.Topic] == nil {
				want[o.Topic] = map[int32]int64{}
			}
			want[o.Topic][o.Partition] = o.Offset
		}
	})
	var out []*kgo.Record
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading %v: still waiting for %v", topics, want)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			if end, ok := want[r.Topic][r.Partition]; ok && r.Offset+1 >= end {
				delete(want[r.Topic], r.Partition)
				if len(want[r.Topic]) == 0 {
					delete(want, r.Topic)
				}
			}
		})
	}
	return out
}

// countAll counts every data record of topics, committed or not.
func countAll(t testing.TB, brokers []string, topics ...string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	n := int64(0)
	ends.Each(func(o kadm.ListedOffset) {
		s, _ := starts.Lookup(o.Topic, o.Partition)
		n += o.Offset - s.Offset
	})
	return int(n) // includes transaction markers
}

func decodeOutput(t testing.TB, recs []*kgo.Record, resultsTopic, dlqTopic string) *output {
	t.Helper()
	o := &output{batches: map[string]*schemas.Batch{}, batchTopics: map[string]string{}, raw: recs}
	for _, r := range recs {
		switch r.Topic {
		case resultsTopic:
			res, err := schemas.DecodeResult(r.Value)
			if err != nil {
				t.Fatalf("result: %v", err)
			}
			o.results = append(o.results, res)
		case dlqTopic:
			dl, err := schemas.DecodeDeadLetter(r.Value)
			if err != nil {
				t.Fatalf("dead letter: %v", err)
			}
			o.deadLetters = append(o.deadLetters, dl)
		default:
			b, err := schemas.DecodeBatch(r.Value)
			if err != nil {
				t.Fatalf("batch on %s: %v", r.Topic, err)
			}
			if string(r.Key) != b.ID {
				t.Fatalf("batch %s keyed %q", b.ID, r.Key)
			}
			if _, dup := o.batches[b.ID]; dup {
				o.dupBatches = append(o.dupBatches, b.ID)
			}
			o.batches[b.ID] = b
			o.batchTopics[b.ID] = r.Topic
		}
	}
	return o
}

// devicesOf lists the device ids of a campaign's batches, sorted, with
// repeats kept so duplicates show.
func (o *output) devicesOf(campaign string) []int64 {
	var ids []int64
	for _, b := range o.batches {
		if b.CampaignID == campaign {
			for _, d := range b.Devices {
				ids = append(ids, d.DeviceID)
			}
		}
	}
	slices.Sort(ids)
	return ids
}

func (o *output) batchesOf(campaign string) []*schemas.Batch {
	var out []*schemas.Batch
	for _, b := range o.batches {
		if b.CampaignID == campaign {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Wave != out[j].Wave {
			return out[i].Wave < out[j].Wave
		}
		return out[i].Seq < out[j].Seq
	})
	return out
}

func jsonMarshal(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// segStore is a segment of n consecutive ids read in two steps, with
// random delays on the row reads so parallel pages finish out of order.
type segStore struct {
	memStore
	n        int64
	failRows int64 // the row read of the page starting at this id fails
}

func (s *segStore) SegmentIDs(_ context.Context, q AudienceQuery, afterID int64, limit int) (int64, int64, int, error) {
	if afterID >= s.n {
		return 0, 0, 0, nil
	}
	last := min(afterID+int64(limit), s.n)
	return afterID + 1, last, int(last - afterID), nil
}

func (s *segStore) SegmentRows(ctx context.Context, q AudienceQuery, part int, first, last int64, n int, page *Page) error {
	time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
	if first == s.failRows {
		return errors.New("connection reset by peer")
	}
	for id := first; id <= last; id++ {
		page.Add(part, id, nil, []byte(iosToken(id)), []byte("ios"), nil, nil)
	}
	return nil
}

func (s *segStore) ReadDevices(ctx context.Context, q AudienceQuery, part int, afterID int64, limit int, page *Page) (int64, bool, error) {
	return readSegmentPage(ctx, s, q, part, afterID, limit, page)
}
