// Package fcm sends notifications through Firebase Cloud Messaging's HTTP v1
// API (POST /v1/projects/{project}/messages:send), one request per device,
// authenticated as a service account (OAuth 2.0 JWT bearer grant).
//
// firebase-admin-go (firebase.google.com/go/v4) defines the messages: Prepare
// maps a providers.Message onto messaging.Message and hands it, once per
// batch, to the SDK's own messaging.Client.Send over a transport that keeps
// the request instead of sending it (encode.go). So every message passes the
// SDK's validation, and the body is byte for byte what the SDK would send;
// each device's token is spliced into it, escaped as encoding/json does. The
// SDK's X-Goog-Api-Format-Version: 2 header, which asks FCM for the detailed
// errors whose FcmError codes Classify reads, is sent with every request.
//
// Sending does not go through Client.Send. Per message it validates and
// JSON-encodes again, builds a new request with its own header map, reads
// the answer with io.ReadAll and json.Unmarshal, and runs a retry layer that
// retries 503 by itself with waits of up to two minutes inside the call,
// where the dispatcher needs the answer back to schedule the retry. Measured
// against the FCM simulator (docs/benchmarks.md):
// SendEach over the SDK's default transport reached 50–55% of the h2load
// ceiling, Send per message over an http2.Transport wrapped in
// oauth2.Transport about 80%; the sender here, which posts the spliced body
// over providers/internal/h2post (one batched write for every request
// queued on a connection) and reads the usual {"name": ...} answer without
// reflection, costs less client CPU per send than either. A request the
// server certainly did not process (above a GOAWAY's last stream, refused)
// is re-sent without counting against Config.ConnRetries.
//
// Every sender waits on a per-project token bucket (Quota) that keeps the
// project under its messages-per-minute quota (Google's default 600,000),
// and bounds its requests in flight (Config.Concurrency). A send given a
// gate (providers.WithSendGate) asks it after those waits and right
// before each request, and sends nothing if it has closed.
//
// Apple devices: the push type and priority follow Apple's rules as the
// APNs sender applies them (schemas/apnspush), plus FCM's own: a push
// that shows nothing is refused at priority high whatever its push type
// (Google refuses data messages to Apple devices at apns-priority 10),
// and sent at 5 when it names no priority.
//
// Lifetime: a message with a TTL or an Expiration is sent with android.ttl
// (webpush's TTL header) of its TTL or what is left until its Expiration,
// whichever is shorter, in whole seconds and at most four weeks (MaxTTL).
// FCM keeps no message longer, so an expiration further out (campaigns may
// run 30 days) is sent as four weeks rather than refused; an explicit TTL
// over it is refused. A prepared message with an expiration writes the
// lifetime left at each send into its body, spliced in like the token, so
// a batch sent in chunks over minutes does not outlive its expiry; under a
// second left is sent as 0 s ("now or never"), never left out (FCM's
// default is four weeks), and a send that starts at or after the
// expiration sends nothing: it is payload_rejected (INVALID_ARGUMENT), as
// Prepare refuses it. The APNs override's apns-expiration is absolute,
// Prepare's time plus that lifetime: a later send keeps it, which shortens
// the message's life, never lengthens it.
//
// Outcomes: see Classify. A 401 without an FCM error code means the access
// token was refused: it is fetched anew once and the send retried. A
// credential failure halts the app in Config.Halt under HaltKey: all of
// its FCM sends, but for THIRD_PARTY_AUTH_ERROR on an iOS device (the
// APNs key in the Firebase project refused), which halts only its sends
// to iOS devices (providers.FCMviaAPNs).
package fcm
