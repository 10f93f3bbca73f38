package planner

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// checkpoint is the progress of a campaign after a committed chunk. It is
// stored as the metadata of the campaign partition's committed offset, in
// the same transaction as the chunk's batches (see doc.go).
type checkpoint struct {
	Campaign string   `json:"c"`
	Version  int      `json:"v"`
	Offset   int64    `json:"o"` // the campaign record's offset
	Start    int64    `json:"t"` // planning start, unix ms
	Chunks   int      `json:"k"` // chunks committed so far
	After    [2]int64 `json:"a"`
	Scanned  [2]int64 `json:"s"`
	// Waves are [offset, seq, sent, done part, done id].
	Waves  [][5]int64 `json:"w"`
	Totals [6]int64   `json:"n"` // devices, batches, invalid, expired, first, last send-at
	// Final marks the checkpoint of the chunk holding the last batches:
	// only the MySQL row and the offset past the record are left to do.
	Final bool `json:"f,omitempty"`
}

// checkpointPrefix marks metadata written by this code, so metadata from
// other tools (franz-go writes the member id) is never mistaken for a
// checkpoint.
const checkpointPrefix = "pushlane-planner/1 "

// maxCheckpointBytes stays under Kafka's default offset.metadata.max.bytes
// (4096). A local-time campaign has at most a few dozen waves (distinct UTC
// offsets since 1970), about 40 bytes each.
const maxCheckpointBytes = 4000

func posArr(p Position) [2]int64 { return [2]int64{int64(p.Part), p.ID} }
func arrPos(a [2]int64) Position { return Position{Part: int(a[0]), ID: a[1]} }

func (c *checkpoint) encode() (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	s := checkpointPrefix + string(b)
	if len(s) > maxCheckpointBytes {
		return "", fmt.Errorf("checkpoint of %d bytes (%d waves) exceeds %d", len(s), len(c.Waves), maxCheckpointBytes)
	}
	return s, nil
}

// decodeCheckpoint parses offset metadata; ok is false when it is not a
// planner checkpoint.
func decodeCheckpoint(meta string) (c checkpoint, ok bool) {
	rest, found := strings.CutPrefix(meta, checkpointPrefix)
	if !found {
		return c, false
	}
	if err := json.Unmarshal([]byte(rest), &c); err != nil {
		return c, false
	}
	return c, true
}

func (c *checkpoint) waveStates() []waveState {
	out := make([]waveState, len(c.Waves))
	for i, w := range c.Waves {
		out[i] = waveState{Offset: int32(w[0]), Seq: int(w[1]), Sent: w[2], Done: Position{Part: int(w[3]), ID: w[4]}}
	}
	return out
}

func (c *checkpoint) totals() totals {
	n := c.Totals
	return totals{Devices: n[0], Batches: n[1], Invalid: n[2], Expired: n[3], FirstSendAt: n[4], LastSendAt: n[5]}
}

func (c *checkpoint) start() time.Time { return time.UnixMilli(c.Start).UTC() }

// newCheckpoint captures an engine's state after a chunk.
func newCheckpoint(id string, version int, offset int64, start time.Time, chunks int, e *engine) checkpoint {
	after, scanned, waves, t := e.state()
	c := checkpoint{
		Campaign: id, Version: version, Offset: offset, Start: start.UnixMilli(), Chunks: chunks,
		After: posArr(after), Scanned: posArr(scanned),
		Totals: [6]int64{t.Devices, t.Batches, t.Invalid, t.Expired, t.FirstSendAt, t.LastSendAt},
	}
	for _, w := range waves {
		c.Waves = append(c.Waves, [5]int64{int64(w.Offset), int64(w.Seq), w.Sent, int64(w.Done.Part), w.Done.ID})
	}
	return c
}
