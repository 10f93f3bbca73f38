package main

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// defaultTopicNames are the configuration's default topic names, by key.
var defaultTopicNames = map[string]string{
	"campaigns": "pushlane.campaigns", "control": "pushlane.campaign-control", "delay": "pushlane.delay", "ready": "pushlane.ready",
	"results": "pushlane.results", "dead_letter": "pushlane.dead-letter", "registrations": "pushlane.device-registrations",
}

// newStack starts a private in-process Kafka for one test.
func newStack(t *testing.T, environ ...string) *stack {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return newStackOn(t, c.ListenAddrs(), func(topic string) string { return defaultTopicNames[topic] }, "pushlane", environ...)
}
