// Package apnssim is an APNs provider API simulator: HTTP/2 over TLS only,
// speaking Apple's paths, headers, status codes and JSON bodies, for tests,
// the demo and the benchmarks.
//
// # What it checks, as Apple does
//
//   - POST only (405 MethodNotAllowed), path /3/device/<hex token> (404
//     BadPath, 400 MissingDeviceToken, 400 BadDeviceToken for a token that
//     is not 64–200 hex digits), repeated apns-* headers (400
//     DuplicateHeaders).
//   - Token auth: header {alg: ES256, kid}, claims {iss: team ID, iat}, the
//     ES256 signature against Config.Keys[kid] (403 InvalidProviderToken),
//     iat older than one hour (403 ExpiredProviderToken), no authorization
//     and no client certificate (403 MissingProviderToken). A connection
//     that presents a token other than the one it last had accepted, issued
//     (iat) less than 20 minutes from that one's, gets 429
//     TooManyProviderTokenUpdates (the first token on a connection is always
//     fine, so processes signing their own tokens with one key each keep
//     their own connections working; Config.AllowFrequentTokenUpdates turns
//     the limit off). Verified tokens are cached, as signature checks per
//     request would make the simulator, not the sender, the thing measured.
//   - Certificate auth (Config.ClientCAs): the certificate's UID is the
//     bundle ID it may push to (400 TopicDisallowed otherwise); Apple's
//     development/production extensions must match Config.Environment (403
//     BadCertificateEnvironment).
//   - apns-topic present (400 MissingTopic), its bundle ID among
//     Config.Topics (400 TopicDisallowed), and its suffix matching
//     apns-push-type (".voip", ".complication", ".pushkit.fileprovider",
//     ".push-type.liveactivity", ".voip-ptt", ".location-query"; 400
//     BadTopic); apns-push-type known (400 InvalidPushType); apns-priority 1,
//     5 or 10 and 5 for background (400 BadPriority); apns-expiration an
//     integer (400 BadExpirationDate); apns-collapse-id at most 64 bytes (400
//     BadCollapseId); apns-id a UUID (400 BadMessageId); payload not empty
//     (400 PayloadEmpty) and at most 4096 bytes, 5120 for voip (413
//     PayloadTooLarge).
//
// Answers carry apns-id (the request's, or a new UUID), apns-unique-id (a
// UUID of its own) in development, and for errors a body {"reason": "..."};
// 410 adds "timestamp" in milliseconds.
//
// # Outcomes by token
//
// After the checks above, the first matching rule decides: an explicit
// per-token rule (Config.Tokens, SetTokenRule), then Config.Rules, which
// default to DefaultRules, matched on the lower-case hex token:
//
//	prefix dead → 410 Unregistered (timestamp: now)
//	prefix deaf → 410 ExpiredToken
//	prefix 0bad → 400 BadDeviceToken
//	prefix 0ff7 → 400 DeviceTokenNotForTopic
//	prefix 0429 → 429 TooManyRequests (a throttled device)
//	prefix 0500 → 500 InternalServerError
//	prefix 0503 → 503 ServiceUnavailable
//	prefix 05d0 → 503 Shutdown
//
// Every other token is accepted and counted.
//
// # Faults and counts
//
// SetFault injects 429/503 at a rate, for a time or a number of requests,
// added latency, and GOAWAY after every N requests on a connection. Only a
// request that passed every check above and would be accepted meets an
// injected 429/503 (and uses up its Count): a refused one keeps its own
// answer. Injected answers carry Retry-After if the fault sets it, which
// Apple does not document. GoAwayAll and DropAll act on the live
// connections now. ExpireProviderTokens makes every token seen so far answer
// ExpiredProviderToken. Counts, AcceptedFor and Duplicates give exact
// per-token accept counts; Reset forgets those counts only. Admin serves the
// same over HTTP (see cmd/pushsim).
package apnssim
