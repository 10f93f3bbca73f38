package control

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/schemas"
)

// Campaigns folds control records, in the order a partition holds them,
// into each campaign's State. It keeps what compaction keeps, the latest
// record of each key, so a view that read the topic as it was written and
// one started after compaction agree: a tombstone forgets what its own key
// held and nothing else. A tombstone on a campaign's pause key leaves its
// cancel standing (it used to forget both, so running views sent a
// cancelled campaign that a view started after compaction still held
// cancelled), and one on the cancel key leaves the pause or resume under
// the campaign key. A record that is not a control event replaces its
// key's record too, as compaction does. Cancel stays final: a later pause
// or resume never replaces a cancel, even under the cancel's own key; that
// is the one case where compaction disagrees (a cancel under a key other
// than Key's, which a later pause or resume reuses: cancelled here, gone
// for a view started after compaction), and why a cancel has a key of its
// own.
//
// The zero-length key is a key like any other (a tombstone under it used
// to forget nothing, so running views held a campaign paused that a view
// started after compaction knew nothing of). A record with no key at all,
// which a compacted topic refuses, replaces and is replaced by no other:
// it sets its campaign's state, and a tombstone or invalid record without
// a key forgets nothing.
//
// Not safe for concurrent use; View holds it under its lock, and pushctl
// folds a topic it read with it to say what the stages' views hold.
type Campaigns struct {
	byID  map[string]*campaign
	byKey map[string]string // record key → campaign of the latest record under it; records with a key only
	seq   uint64
}

// campaign holds the marks of a campaign's keys: usually one or two (its
// id and its cancel key), so a slice, not maps (a view keeps every
// campaign ever cancelled until it is retired).
type campaign struct {
	marks []mark
}

// recordKey is a record's key; null for a record without one, which no
// key, the zero-length one included, is the same as.
type recordKey struct {
	s    string
	null bool
}

type mark struct {
	key    recordKey
	cancel bool
	paused bool
	reason string
	at     time.Time
	seq    uint64 // order applied
}

func (c *campaign) find(key recordKey, cancel bool) int {
	for i, m := range c.marks {
		if m.key == key && m.cancel == cancel {
			return i
		}
	}
	return -1
}

func (c *campaign) remove(key recordKey, cancel bool) {
	if i := c.find(key, cancel); i >= 0 {
		c.marks = append(c.marks[:i], c.marks[i+1:]...)
	}
}

// dropKey forgets what key held, as compaction does once a record that
// holds no state (a tombstone, an invalid record) replaces it under key.
func (cs *Campaigns) dropKey(key recordKey) {
	if id, ok := cs.byKey[key.s]; ok && !key.null {
		cs.forget(id, key)
		delete(cs.byKey, key.s)
	}
}

// NewCampaigns returns an empty fold.
func NewCampaigns() *Campaigns {
	return &Campaigns{byID: map[string]*campaign{}, byKey: map[string]string{}}
}

// Apply folds r in and says what it was: "tombstone", "invalid" (with the
// decode error), "ignored_after_cancel", or the record's action.
func (cs *Campaigns) Apply(r *kgo.Record) (string, error) {
	// A zero-length key is a key like any other: Kafka takes it on a
	// compacted topic, and compaction keeps the latest record under it.
	// Only a null key is none (the franz-go reader gives nil for it and
	// an empty slice for a zero-length key): a compacted topic refuses
	// it, and compaction would never replace it, so nothing replaces it
	// here either.
	keyed := r.Key != nil
	key := recordKey{s: string(r.Key), null: !keyed}
	if r.Value == nil {
		cs.dropKey(key)
		return "tombstone", nil
	}
	c, err := schemas.DecodeCampaignControl(r.Value)
	if err != nil {
		cs.dropKey(key)
		return "invalid", err
	}
	if keyed {
		if prev, ok := cs.byKey[key.s]; ok && prev != c.CampaignID {
			// Compaction drops the other campaign's record under this key.
			cs.forget(prev, key)
		}
		cs.byKey[key.s] = c.CampaignID
	}
	camp := cs.byID[c.CampaignID]
	if camp == nil {
		camp = &campaign{}
		cs.byID[c.CampaignID] = camp
	}
	cs.seq++
	m := mark{key: key, paused: c.Action == schemas.ControlPause, reason: c.Reason, at: c.At, seq: cs.seq}
	if c.Action == schemas.ControlCancel {
		if camp.find(key, true) < 0 {
			m.cancel = true
			camp.marks = append(camp.marks, m)
		}
		camp.remove(key, false)
		return c.Action, nil
	}
	label := c.Action
	if camp.cancelled() {
		label = "ignored_after_cancel"
	}
	if camp.find(key, true) < 0 {
		// Kept though a cancel hides it: a tombstone on the cancel key
		// brings back this key's latest pause or resume, as a view
		// started after compaction would find it.
		camp.remove(key, false)
		camp.marks = append(camp.marks, m)
	}
	return label, nil
}

func (c *campaign) cancelled() bool {
	for _, m := range c.marks {
		if m.cancel {
			return true
		}
	}
	return false
}

func (cs *Campaigns) forget(id string, key recordKey) {
	camp := cs.byID[id]
	if camp == nil {
		return
	}
	camp.remove(key, true)
	camp.remove(key, false)
	if len(camp.marks) == 0 {
		delete(cs.byID, id)
	}
}

// State returns campaign id's state and whether there is one. A cancelled
// campaign gives its first cancel's reason and time; otherwise the latest
// pause or resume says whether it is paused.
func (cs *Campaigns) State(id string) (State, bool) {
	camp := cs.byID[id]
	if camp == nil {
		return State{}, false
	}
	var first, latest *mark
	for i := range camp.marks {
		m := &camp.marks[i]
		switch {
		case m.cancel && (first == nil || m.seq < first.seq):
			first = m
		case !m.cancel && (latest == nil || m.seq > latest.seq):
			latest = m
		}
	}
	if first != nil {
		return State{Cancelled: true, Reason: first.reason, At: first.at}, true
	}
	return State{Paused: latest.paused, Reason: latest.reason, At: latest.at}, true
}

// Len is the number of campaigns with a state.
func (cs *Campaigns) Len() int { return len(cs.byID) }
