// Command kafkaready exits 0 when a Kafka cluster answers metadata requests with
// at least one broker and an active controller, and 1 otherwise. deploy/local
// polls it after the port opens: an open port alone does not mean the broker
// has finished joining the KRaft quorum.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	timeout := flag.Duration("timeout", 5*time.Second, "time allowed for the check")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	summary, err := check(ctx, strings.Split(*brokers, ","))
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafkaready:", err)
		os.Exit(1)
	}
	fmt.Println(summary)
}

func check(ctx context.Context, seeds []string) (string, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		// One quick attempt per call: the caller loops, and a hung retry would
		// only hide the state we are asked about.
		kgo.RequestRetries(0),
		kgo.RetryTimeout(0),
	)
	if err != nil {
		return "", fmt.Errorf("client for %v: %w", seeds, err)
	}
	defer cl.Close()

	if err := cl.Ping(ctx); err != nil {
		return "", fmt.Errorf("ping %v: %w", seeds, err)
	}
	meta, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		return "", fmt.Errorf("metadata from %v: %w", seeds, err)
	}
	if len(meta.Brokers) == 0 {
		return "", errors.New("metadata lists no brokers")
	}
	if meta.Controller < 0 {
		return "", errors.New("metadata names no active controller")
	}
	return fmt.Sprintf("cluster %s, %d broker(s), controller %d", meta.Cluster, len(meta.Brokers), meta.Controller), nil
}
