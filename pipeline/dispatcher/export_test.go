package dispatcher

// DecodeBatch exposes the dispatcher's batch decoding to the benchmarks.
var DecodeBatch = decodeBatch
