package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/pipeline/kafka"
)

// defaultTopicNames are the configuration's default topic names, by key.
var defaultTopicNames = map[string]string{
	"campaigns": "pushlane.campaigns", "control": "pushlane.campaign-control", "delay": "pushlane.delay", "ready": "pushlane.ready",
	"results": "pushlane.results", "dead_letter": "pushlane.dead-letter", "registrations": "pushlane.device-registrations",
}

// stackFactory gives a test a Kafka of one kind.
type stackFactory func(t *testing.T, environ ...string) *stack

// onEachKafka runs a test on kfake (in process, always) and on the real
// broker of deploy/local (through internal/testenv, which skips it without
// the stack unless PUSHLANE_TEST_REQUIRE=1): the same assertions hold on
// both.
func onEachKafka(t *testing.T, test func(t *testing.T, newStack stackFactory)) {
	t.Run("kfake", func(t *testing.T) { test(t, fakeStack) })
	t.Run("kafka", func(t *testing.T) { test(t, realStack) })
}

// fakeStack starts a private in-process Kafka for one test, with the
// default topic names.
func fakeStack(t *testing.T, environ ...string) *stack {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return newStackOn(t, c.ListenAddrs(), func(topic string) string { return defaultTopicNames[topic] }, "pushlane", environ...)
}

// realStack points pushctl at the shared test broker with topic names and
// a group prefix of its own, and deletes the topics and groups at cleanup.
func realStack(t *testing.T, environ ...string) *stack {
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(b[:])
	s := newStackOn(t, brokers, func(topic string) string {
		return "pushctl-" + id + "." + strings.ReplaceAll(topic, "_", "-")
	}, "pushctl-"+id, environ...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var names []string
		for _, spec := range kafka.Layout(s.cfg) {
			names = append(names, spec.Name)
		}
		resps, err := s.adm.DeleteTopics(ctx, names...)
		if err != nil {
			t.Errorf("delete test topics: %v", err)
		}
		for _, r := range resps {
			if r.Err != nil && !errors.Is(r.Err, kerr.UnknownTopicOrPartition) {
				t.Errorf("delete topic %s: %v", r.Topic, r.Err)
			}
		}
		groups, err := s.adm.ListGroups(ctx)
		if err != nil {
			t.Errorf("list groups: %v", err)
			return
		}
		for _, g := range groups.Groups() {
			if strings.HasPrefix(g, s.cfg.Kafka.GroupPrefix) {
				if _, err := s.adm.DeleteGroup(ctx, g); err != nil {
					t.Errorf("delete group %s: %v", g, err)
				}
			}
		}
	})
	return s
}

// waitUsable waits until every topic of the layout answers offset
// requests on every partition: a created topic is acknowledged before its
// partitions have leaders.
func (s *stack) waitUsable(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, spec := range kafka.Layout(s.cfg) {
		for {
			offs, err := s.adm.ListEndOffsets(ctx, spec.Name)
			if err == nil {
				err = offs.Error()
			}
			if err == nil && int32(len(offs[spec.Name])) != spec.Partitions {
				err = fmt.Errorf("%d of %d partitions", len(offs[spec.Name]), spec.Partitions)
			}
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("topic %s not usable: %v", spec.Name, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}
