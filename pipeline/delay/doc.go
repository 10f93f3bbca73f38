// Package delay builds delayed delivery on Kafka, which has none: a ladder
// of fixed-delay topics (tier k waits 2^k seconds) feeding the ready topic.
// See the package documentation in forwarder.go for the design and bounds.
package delay
