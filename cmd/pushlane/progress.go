package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sys/unix"

	"github.com/pushlane/pushlane/pipeline/feedback"
	"github.com/pushlane/pushlane/schemas"
)

// tracker follows the results topic with a plain consumer (no group, so it
// never disturbs the stages) from the offsets the topic had before the
// campaigns were published, and counts each result id once per campaign.
type tracker struct {
	cl        *kgo.Client
	campaigns map[string]bool

	mu      sync.Mutex
	acc     *feedback.Accumulator
	final   map[string]map[string]string // campaign → app/token → final outcome
	results int
	bad     int // records that do not decode: the dispatcher would be broken
	changed chan struct{}
}

// startTracker lists the results topic's end offsets now, so every result
// of a campaign published afterwards is read, and nothing older.
func startTracker(ctx context.Context, opts []kgo.Opt, topic string, campaigns []string) (*tracker, error) {
	admCl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("progress: client: %w", err)
	}
	ends, err := kadm.NewClient(admCl).ListEndOffsets(ctx, topic)
	admCl.Close()
	if err != nil {
		return nil, fmt.Errorf("progress: list end offsets of %s: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("progress: list end offsets of %s: %w", topic, err)
	}
	start := map[string]map[int32]kgo.Offset{topic: {}}
	ends.Each(func(o kadm.ListedOffset) { start[topic][o.Partition] = kgo.NewOffset().At(o.Offset) })
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), opts...),
		kgo.ConsumePartitions(start),
		// The dispatcher may write results in transactions; an aborted
		// one must not be counted.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return nil, fmt.Errorf("progress: consumer: %w", err)
	}
	t := &tracker{cl: cl, campaigns: map[string]bool{}, acc: feedback.NewAccumulator(),
		final: map[string]map[string]string{}, changed: make(chan struct{}, 1)}
	for _, c := range campaigns {
		t.campaigns[c] = true
		t.final[c] = map[string]string{}
	}
	return t, nil
}

// run consumes until ctx ends.
func (t *tracker) run(ctx context.Context) {
	defer t.cl.Close()
	for {
		fs := t.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		var rows []feedback.Row
		fs.EachRecord(func(r *kgo.Record) {
			res, err := feedback.DecodeResult(r.Value)
			if err != nil {
				t.mu.Lock()
				t.bad++
				t.mu.Unlock()
				return
			}
			if !t.campaigns[res.CampaignID] {
				return
			}
			rows = append(rows, feedback.RowFromResult(res))
			if res.Outcome != schemas.OutcomeRetryable {
				t.mu.Lock()
				t.final[res.CampaignID][res.App+"/"+res.Token] = res.Outcome
				t.mu.Unlock()
			}
		})
		if len(rows) > 0 {
			_ = t.acc.Write(ctx, rows) // in memory: cannot fail
			t.mu.Lock()
			t.results += len(rows)
			t.mu.Unlock()
			select {
			case t.changed <- struct{}{}:
			default:
			}
		}
	}
}

// counts is what the progress line shows.
type counts struct {
	Planned     int64 // devices the planner batched (-1 while planning)
	PlannedPart int64 // while planning: those of the campaigns already planned
	Final       int   // devices with a final outcome
	Sent        uint64
	Delivered   uint64
	Dead        uint64
	Suspect     uint64
	Retried     uint64
	Failed      uint64 // failed, payload rejected, credential failure, invalid token
	Other       uint64 // expired, cancelled
	Bad         int
}

func (t *tracker) snapshot(planned int64) counts {
	t.mu.Lock()
	c := counts{Planned: planned, Bad: t.bad}
	for _, f := range t.final {
		c.Final += len(f)
	}
	t.mu.Unlock()
	for id := range t.campaigns {
		s, err := t.acc.Summary(id)
		if errors.Is(err, feedback.ErrNoResults) {
			continue
		}
		c.Sent += s.Sent
		c.Delivered += s.Delivered
		c.Dead += s.TokenDead
		c.Suspect += s.Suspect
		c.Retried += s.Retried
		c.Failed += s.Failed + s.PayloadRejected + s.CredentialFailure + s.InvalidToken
		c.Other += s.Expired + s.Cancelled
	}
	return c
}

// display draws progress: a single rewritten line with a bar on a terminal,
// otherwise one plain line per interval (for logs and CI).
type display struct {
	w        io.Writer
	terminal bool
	width    int // terminal columns
	start    time.Time
	last     time.Time
	lastLine string
}

const barWidth = 30

func (d *display) line(c counts) string {
	planned := "planning…"
	switch {
	case c.Planned >= 0:
		planned = fmt.Sprintf("planned %d", c.Planned)
	case c.PlannedPart > 0:
		planned = fmt.Sprintf("planned %d+", c.PlannedPart)
	}
	return fmt.Sprintf("%s  sent %d  delivered %d  dead %d  suspect %d  retried %d  failed %d  %.1fs",
		planned, c.Sent, c.Delivered, c.Dead, c.Suspect, c.Retried, c.Failed, time.Since(d.start).Seconds())
}

func (d *display) update(c counts, force bool) {
	now := time.Now()
	if d.terminal {
		frac := 0.0
		if c.Planned > 0 {
			frac = min(float64(c.Final)/float64(c.Planned), 1)
		}
		n := int(frac * barWidth)
		bar := strings.Repeat("█", n) + strings.Repeat("░", barWidth-n)
		// One line only: a line longer than the terminal would wrap, and
		// the carriage return would then redraw only its last part.
		fmt.Fprintf(d.w, "\r\033[K%s", clip(fmt.Sprintf("%s %3.0f%%  %s", bar, frac*100, d.line(c)), d.width-1))
		d.last = now
		return
	}
	if !force && now.Sub(d.last) < time.Second {
		return
	}
	l := d.line(c)
	if l == d.lastLine && !force {
		return
	}
	fmt.Fprintln(d.w, l)
	d.last, d.lastLine = now, l
}

// finish ends the progress line.
func (d *display) finish(c counts) {
	d.update(c, true)
	if d.terminal {
		fmt.Fprintln(d.w)
	}
}

// clip cuts s to at most n runes.
func clip(s string, n int) string {
	if n <= 0 {
		return s
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}

// terminalWidth is the width of the terminal on f, or 80 if unknown.
func terminalWidth(f *os.File) int {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return 80
	}
	return int(ws.Col)
}
