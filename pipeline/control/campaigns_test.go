package control_test

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/pipeline/control"
	"github.com/pushlane/pushlane/schemas"
)

func controlRecord(t *testing.T, id, action string) *kgo.Record {
	t.Helper()
	c := schemas.CampaignControl{SchemaVersion: schemas.SchemaVersion, CampaignID: id, Action: action, Reason: action, At: time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC)}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Key: []byte(control.Key(c)), Value: b}
}

func fold(recs []*kgo.Record) *control.Campaigns {
	cs := control.NewCampaigns()
	for _, r := range recs {
		_, _ = cs.Apply(r)
	}
	return cs
}

type campaignState struct{ ok, cancelled, paused bool }

func stateOf(cs *control.Campaigns, id string) campaignState {
	st, ok := cs.State(id)
	return campaignState{ok, st.Cancelled, st.Paused}
}

// A view that read every record as written and one started after
// compaction (the latest record of each key, tombstones kept or already
// removed) hold the same state, over random histories of one campaign's
// pauses, resumes, cancels and tombstones on either key.
func TestCampaignsAgreeWithCompaction(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 2000 {
		var recs []*kgo.Record
		var history []string
		for range 1 + rng.IntN(8) {
			switch rng.IntN(10) {
			case 0:
				recs, history = append(recs, controlRecord(t, "c", schemas.ControlPause)), append(history, "pause")
			case 1:
				recs, history = append(recs, controlRecord(t, "c", schemas.ControlResume)), append(history, "resume")
			case 2:
				recs, history = append(recs, controlRecord(t, "c", schemas.ControlCancel)), append(history, "cancel")
			case 3:
				recs, history = append(recs, &kgo.Record{Key: []byte("c")}), append(history, "tombstone c")
			case 4:
				recs, history = append(recs, &kgo.Record{Key: []byte("c/cancel")}), append(history, "tombstone c/cancel")
			case 5:
				recs, history = append(recs, &kgo.Record{Key: []byte("c"), Value: []byte(`{"campaign_id":"c"}`)}), append(history, "invalid c")
			case 6:
				recs, history = append(recs, &kgo.Record{Key: []byte("c/cancel"), Value: []byte(`not json`)}), append(history, "invalid c/cancel")
			// The zero-length key, which Kafka takes on a compacted
			// topic and compaction treats as one key. (No cancel under
			// it: a pause or resume reusing a cancel's key is the one
			// case the fold and compaction disagree on, by design.)
			case 7:
				action := []string{schemas.ControlPause, schemas.ControlResume}[rng.IntN(2)]
				r := controlRecord(t, "c", action)
				r.Key = []byte{}
				recs, history = append(recs, r), append(history, action+` under ""`)
			case 8:
				recs, history = append(recs, &kgo.Record{Key: []byte{}}), append(history, `tombstone ""`)
			case 9:
				recs, history = append(recs, &kgo.Record{Key: []byte{}, Value: []byte(`{}`)}), append(history, `invalid ""`)
			}
		}
		last := map[string]int{}
		for i, r := range recs {
			last[string(r.Key)] = i
		}
		var kept, keptLive []*kgo.Record
		for i, r := range recs {
			if last[string(r.Key)] == i {
				kept = append(kept, r)
				if r.Value != nil {
					keptLive = append(keptLive, r)
				}
			}
		}
		running := stateOf(fold(recs), "c")
		for name, after := range map[string][]*kgo.Record{"compacted": kept, "compacted, tombstones removed": keptLive} {
			if got := stateOf(fold(after), "c"); got != running {
				t.Fatalf("history %d %v: running view %+v, view started %s %+v", n, history, running, name, got)
			}
		}
	}
}

// Cases the random histories above reach, spelled out.
func TestCampaignsTombstoneForgetsItsOwnKey(t *testing.T) {
	cancel := func() *kgo.Record { return controlRecord(t, "c", schemas.ControlCancel) }
	pause := func() *kgo.Record { return controlRecord(t, "c", schemas.ControlPause) }
	resume := func() *kgo.Record { return controlRecord(t, "c", schemas.ControlResume) }
	tomb := func(key string) *kgo.Record { return &kgo.Record{Key: []byte(key)} }
	for _, c := range []struct {
		name string
		recs []*kgo.Record
		want campaignState
	}{
		{"cancel, tombstone on the pause key", []*kgo.Record{cancel(), tomb("c")}, campaignState{true, true, false}},
		{"pause, cancel, tombstone on the cancel key", []*kgo.Record{pause(), cancel(), tomb("c/cancel")}, campaignState{true, false, true}},
		{"cancel, resume, pause: cancel is final", []*kgo.Record{cancel(), resume(), pause()}, campaignState{true, true, false}},
		{"cancel, pause, tombstone on the cancel key", []*kgo.Record{cancel(), pause(), tomb("c/cancel")}, campaignState{true, false, true}},
		{"both keys retired", []*kgo.Record{pause(), cancel(), tomb("c"), tomb("c/cancel")}, campaignState{}},
		{"an invalid record replaces its key's cancel", []*kgo.Record{cancel(), {Key: []byte("c/cancel"), Value: []byte(`{}`)}}, campaignState{}},
		{"an invalid record on the pause key leaves the cancel", []*kgo.Record{pause(), cancel(), {Key: []byte("c"), Value: []byte(`{}`)}}, campaignState{true, true, false}},
		{"another campaign's tombstones", []*kgo.Record{pause(), tomb("d"), tomb("d/cancel"), tomb("")}, campaignState{true, false, true}},
	} {
		if got := stateOf(fold(c.recs), "c"); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
	// A key reused by another campaign's record drops the first's, as
	// compaction would.
	misc := controlRecord(t, "c", schemas.ControlPause)
	misc.Key = []byte("misc")
	other := controlRecord(t, "d", schemas.ControlPause)
	other.Key = []byte("misc")
	if got := stateOf(fold([]*kgo.Record{misc, other}), "c"); got != (campaignState{}) {
		t.Errorf("c's record under a key d's record replaced: %+v, want no state", got)
	}
	if got := fold([]*kgo.Record{misc, other}).Len(); got != 1 {
		t.Errorf("%d campaigns, want 1", got)
	}
}

// The zero-length key is a key: a tombstone or an invalid record under it
// forgets what it held, as compaction drops it. A record with a null key
// (which a compacted topic refuses) replaces nothing and is replaced by
// nothing. Before, a tombstone under "" left the campaign paused in
// running views while views started after compaction knew nothing of it.
func TestCampaignsZeroLengthKeyIsAKey(t *testing.T) {
	under := func(action string) func(string, []byte) *kgo.Record {
		return func(id string, key []byte) *kgo.Record {
			r := controlRecord(t, id, action)
			r.Key = key
			return r
		}
	}
	pause, resume, cancel := under(schemas.ControlPause), under(schemas.ControlResume), under(schemas.ControlCancel)
	tomb := func(key []byte) *kgo.Record { return &kgo.Record{Key: key} }
	invalid := func(key []byte) *kgo.Record { return &kgo.Record{Key: key, Value: []byte(`{}`)} }
	empty := []byte{}
	for _, c := range []struct {
		name string
		recs []*kgo.Record
		want campaignState
	}{
		{`pause under "", tombstone under ""`, []*kgo.Record{pause("c", empty), tomb(empty)}, campaignState{}},
		{`cancel under "", tombstone under ""`, []*kgo.Record{cancel("c", empty), tomb(empty)}, campaignState{}},
		{`pause under "", invalid under ""`, []*kgo.Record{pause("c", empty), invalid(empty)}, campaignState{}},
		{`pause under "", another campaign's pause under ""`, []*kgo.Record{pause("c", empty), pause("d", empty)}, campaignState{}},
		{`pause under "", tombstone under "", pause under ""`, []*kgo.Record{pause("c", empty), tomb(empty), pause("c", empty)}, campaignState{true, false, true}},
		{`pause under c, tombstone under ""`, []*kgo.Record{pause("c", []byte("c")), tomb(empty)}, campaignState{true, false, true}},
		// No key: nothing replaces it, and it replaces nothing.
		{"pause without a key, tombstone without a key", []*kgo.Record{pause("c", nil), tomb(nil)}, campaignState{true, false, true}},
		{"cancel without a key, invalid without a key", []*kgo.Record{cancel("c", nil), invalid(nil)}, campaignState{true, true, false}},
		{`pause without a key, tombstone under ""`, []*kgo.Record{pause("c", nil), tomb(empty)}, campaignState{true, false, true}},
		{`pause under "", tombstone without a key`, []*kgo.Record{pause("c", empty), tomb(nil)}, campaignState{true, false, true}},
		{`pause under "", another campaign's pause without a key`, []*kgo.Record{pause("c", empty), pause("d", nil)}, campaignState{true, false, true}},
		{"pause, then resume, without a key", []*kgo.Record{pause("c", nil), resume("c", nil)}, campaignState{true, false, false}},
		{"cancel, then resume, without a key: cancel is final", []*kgo.Record{cancel("c", nil), resume("c", nil)}, campaignState{true, true, false}},
	} {
		if got := stateOf(fold(c.recs), "c"); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}
