// Package apns sends notifications to Apple's APNs provider API over a pool
// of long-lived HTTP/2 connections, with token (.p8, ES256) or certificate
// (.p12/.pem) auth, per app, in the development or production environment.
//
// It sends each request itself over providers/internal/h2post, an HTTP/2
// client for this one request shape on golang.org/x/net/http2's framer and
// HPACK, and uses
// sideshow/apns2 for what that library gets right: loading .p8 keys and
// .p12/.pem certificates, the reason and push-type names. apns2's Client is
// not used for the send because it hides response headers (Retry-After),
// truncates the 410 timestamp to seconds, re-encodes the payload on every
// push, and refreshes its JWT on its own wall clock at 50 minutes without
// reacting to ExpiredProviderToken.
//
// Provider token: one ProviderToken per key, shared by every goroutine (and
// by every Sender given the same Config.Token). It is re-signed once it is
// Config.TokenRefresh old (20–55 minutes, default 45), never more often than
// every 20 minutes: after an ExpiredProviderToken it is re-signed once and
// the send retried, unless the rejected token is younger than 20 minutes
// (then the clocks disagree, and the answer is a credential failure).
//
// Connections: up to Config.Connections HTTP/2 connections, filled in
// order (the next is dialled only when the open ones carry as many streams
// as the server allows, 1,000 on APNs), each pinged after
// Config.PingInterval of silence. A request the server
// certainly did not process (above a GOAWAY's last stream, refused with
// REFUSED_STREAM, never written) is re-sent on a new connection without
// counting against Config.ConnRetries; any other connection failure is
// re-sent up to Config.ConnRetries times, so nothing is dropped (a request
// lost with its connection may have been delivered: that rare re-send can
// duplicate). A connection slot whose connections fail before answering
// anything (refused, or told GOAWAY at once by a draining server) is
// redialled after 100 ms doubling to 30 s, never in a loop: Apple treats
// rapid connecting and disconnecting as a denial-of-service attack. A send
// that would have to wait past its deadline for that is retryable at once
// (TransportError).
//
// Credentials refused on the connection rather than in an answer are
// credential failures too: a TLS alert refusing the client certificate
// (bad, expired, revoked, unknown CA) and a GOAWAY whose debug data names a
// credential reason such as BadCertificate. New refuses a certificate past
// its NotAfter and a .p8 key that is not on P-256. The provider token ages
// on the monotonic clock, so a wall clock stepped back does not keep an old
// token in use.
//
// Prepare validates and encodes a message once for all devices of a batch:
// payload ≤ 4096 bytes (5120 for voip), priority suited to the push type
// (background must be 5), topic suffix matching the push type, collapse id ≤
// 64 bytes, known interruption level, expiration not past. A refused message
// is payload_rejected without calling Apple.
//
// apns-expiration is the earlier of the message's Expiration and the
// request's time plus its TTL: TTL is the lifetime after the send, whether
// or not there is an expiration too. Each request of a prepared message
// computes it (the header slice is rebuilt once a second at most), so a
// chunk sent minutes after Prepare still gets its whole TTL, never past the
// Expiration. A send that starts at or after
// the Expiration (the dispatcher bars those, but one can start just before)
// sends nothing: it is payload_rejected (BadExpirationDate), as Prepare
// refuses it.
package apns
