package main

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/config"
)

// offsetRange is [start, end) of one partition.
type offsetRange struct{ start, end int64 }

// partitionRanges returns every partition's [log start, last stable
// offset): what a read_committed reader can read now.
func (c *cli) partitionRanges(ctx context.Context, cfg *config.Config, topic string) (map[int32]offsetRange, error) {
	cl, adm, err := c.admin(cfg)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	if err := starts.Error(); err != nil {
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("topic %s does not exist (pushctl topics creates it)", topic)
		}
		return nil, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	out := map[int32]offsetRange{}
	for p, s := range starts[topic] {
		e, ok := ends.Lookup(topic, p)
		if !ok {
			return nil, fmt.Errorf("no end offset for %s/%d", topic, p)
		}
		out[p] = offsetRange{start: s.Offset, end: e.Offset}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("topic %s does not exist (pushctl topics creates it)", topic)
	}
	return out, nil
}

// readTopic returns the committed records of topic within ranges (nil:
// every partition from its start to its last stable offset), in partition
// then offset order.
func (c *cli) readTopic(ctx context.Context, cfg *config.Config, topic string, ranges map[int32]offsetRange) ([]*kgo.Record, error) {
	var out []*kgo.Record
	if err := c.scanTopic(ctx, cfg, topic, ranges, func(r *kgo.Record) bool { out = append(out, r); return true }); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Partition != out[j].Partition {
			return out[i].Partition < out[j].Partition
		}
		return out[i].Offset < out[j].Offset
	})
	return out, nil
}

// scanTopic hands each committed record of topic within ranges (nil: every
// partition from its start to its last stable offset) to fn as it is
// fetched, in offset order within a partition, and keeps none: a results
// topic of millions of records is read in the memory of one fetch. fn
// returning false ends the scan early. Transaction markers are read and
// dropped, so a partition ending in a marker still ends.
func (c *cli) scanTopic(ctx context.Context, cfg *config.Config, topic string, ranges map[int32]offsetRange, fn func(*kgo.Record) bool) error {
	if ranges == nil {
		var err error
		if ranges, err = c.partitionRanges(ctx, cfg, topic); err != nil {
			return err
		}
	}
	want := map[int32]kgo.Offset{}
	remaining := map[int32]int64{} // partition → last offset still to see
	for p, r := range ranges {
		if r.end > r.start {
			want[p] = kgo.NewOffset().At(r.start)
			remaining[p] = r.end - 1
		}
	}
	if len(want) == 0 {
		return nil
	}
	cl, err := c.kafkaClient(cfg,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: want}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %s: %w (still waiting for partitions %v)", topic, err, pending(remaining))
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("%s/%d: %w", t, p, err))
		})
		if ferr != nil {
			return fmt.Errorf("read %s: %w", topic, ferr)
		}
		stop := false
		fs.EachRecord(func(r *kgo.Record) {
			last, ok := remaining[r.Partition]
			if !ok || stop {
				return
			}
			if r.Offset <= last && !r.Attrs.IsControl() && r.Offset >= ranges[r.Partition].start {
				stop = !fn(r)
			}
			// Past the last offset wanted (compaction may have removed
			// it): the partition is done.
			if r.Offset >= last {
				delete(remaining, r.Partition)
			}
		})
		if stop {
			break
		}
	}
	return nil
}

func pending(m map[int32]int64) []int32 {
	out := make([]int32, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
