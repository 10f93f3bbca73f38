package embedded

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Broker is franz-go's in-process Kafka (kfake): one broker on a loopback
// port, with transactions, consumer groups and compaction, enough for the
// whole pipeline.
type Broker struct {
	c *kfake.Cluster
}

// StartBroker starts a one-broker cluster on a free loopback port.
func StartBroker() (*Broker, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(1))
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	return &Broker{c: c}, nil
}

// Addrs are the seed brokers.
func (b *Broker) Addrs() []string { return b.c.ListenAddrs() }

// Close stops the broker.
func (b *Broker) Close() { b.c.Close() }
