// Package simcore is what the APNs and FCM simulators share: an HTTP/2-only
// TLS server that can send GOAWAY on, or drop, its live connections; run-time
// fault injection; and exact per-token accounting of accepted sends.
package simcore
