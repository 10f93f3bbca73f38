package dispatcher

import "time"

// DecodeBatch exposes the dispatcher's batch decoding to the benchmarks.
var DecodeBatch = decodeBatch

// ResultsLingerOf is the linger the dispatcher's producer is built with.
func ResultsLingerOf(c Config) time.Duration {
	c.defaults()
	return c.ResultsLinger
}
