// Package fcm sends notifications through Firebase Cloud Messaging's HTTP v1
// API (POST /v1/projects/{project}/messages:send), one request per device,
// authenticated as a service account (OAuth 2.0 JWT bearer grant).
//
// Messages are expressed with the firebase-admin-go v4 types
// (messaging.Message, AndroidConfig, APNSConfig, WebpushConfig) and encoded
// with their JSON marshalling, once per batch in Prepare; the token is spliced
// into the pre-encoded body for each device. The SDK's Client.Send is not on
// the hot path: it re-encodes every message, and its transport stack plus
// retry layer cost about a quarter of the throughput the simulator allows
// (see docs/benchmarks.md); it also retries 503 on its own with waits of up to
// two minutes inside the call, where the dispatcher needs the answer back.
//
// Every sender waits on a per-project token bucket (Quota) that keeps the
// project under its messages-per-minute quota (Google's default 600,000), and
// bounds its requests in flight (Config.Concurrency).
//
// Outcomes: see Classify. A 401 without an FCM error code means the access
// token was refused: it is fetched anew once and the send retried.
package fcm
