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
// the campaign key. Cancel stays final: a later pause or resume never
// replaces a cancel, even under the cancel's own key.
//
// Not safe for concurrent use; View holds it under its lock, and pushctl
// folds a topic it read with it to say what the stages' views hold.
type Campaigns struct {
	byID  map[string]*campaign
	byKey map[string]string // record key → campaign of the latest record under it
	seq   uint64
}

type campaign struct {
	cancels map[string]mark // by record key
	pauses  map[string]mark // by record key: the latest pause or resume
}

type mark struct {
	paused bool
	reason string
	at     time.Time
	seq    uint64 // order applied
}

// NewCampaigns returns an empty fold.
func NewCampaigns() *Campaigns {
	return &Campaigns{byID: map[string]*campaign{}, byKey: map[string]string{}}
}

// Apply folds r in and says what it was: "tombstone", "invalid" (with the
// decode error), "ignored_after_cancel", or the record's action.
func (cs *Campaigns) Apply(r *kgo.Record) (string, error) {
	key := string(r.Key)
	if r.Value == nil {
		if id, ok := cs.byKey[key]; ok && key != "" {
			cs.forget(id, key)
		}
		delete(cs.byKey, key)
		return "tombstone", nil
	}
	c, err := schemas.DecodeCampaignControl(r.Value)
	if err != nil {
		return "invalid", err
	}
	if prev, ok := cs.byKey[key]; ok && prev != c.CampaignID {
		// Compaction drops the other campaign's record under this key.
		cs.forget(prev, key)
	}
	cs.byKey[key] = c.CampaignID
	camp := cs.byID[c.CampaignID]
	if camp == nil {
		camp = &campaign{cancels: map[string]mark{}, pauses: map[string]mark{}}
		cs.byID[c.CampaignID] = camp
	}
	cs.seq++
	m := mark{paused: c.Action == schemas.ControlPause, reason: c.Reason, at: c.At, seq: cs.seq}
	if c.Action == schemas.ControlCancel {
		if _, ok := camp.cancels[key]; !ok {
			camp.cancels[key] = m
		}
		delete(camp.pauses, key)
		return c.Action, nil
	}
	label := c.Action
	if len(camp.cancels) > 0 {
		label = "ignored_after_cancel"
	}
	if _, ok := camp.cancels[key]; !ok {
		// Kept though a cancel hides it: a tombstone on the cancel key
		// brings back this key's latest pause or resume, as a view
		// started after compaction would find it.
		camp.pauses[key] = m
	}
	return label, nil
}

func (cs *Campaigns) forget(id, key string) {
	camp := cs.byID[id]
	if camp == nil {
		return
	}
	delete(camp.cancels, key)
	delete(camp.pauses, key)
	if len(camp.cancels) == 0 && len(camp.pauses) == 0 {
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
	var first *mark
	for _, m := range camp.cancels {
		if first == nil || m.seq < first.seq {
			first = &m
		}
	}
	if first != nil {
		return State{Cancelled: true, Reason: first.reason, At: first.at}, true
	}
	var latest *mark
	for _, m := range camp.pauses {
		if latest == nil || m.seq > latest.seq {
			latest = &m
		}
	}
	return State{Paused: latest.paused, Reason: latest.reason, At: latest.at}, true
}

// Len is the number of campaigns with a state.
func (cs *Campaigns) Len() int { return len(cs.byID) }
