// Package fcmsim is an FCM HTTP v1 simulator: the OAuth 2.0 token endpoint a
// service account signs in at, and POST /v1/projects/{project}/messages:send,
// over HTTP/2 with TLS, answering with Google's status codes and error bodies
// ({"error": {"code", "message", "status", "details": [FcmError{errorCode},
// BadRequest{fieldViolations}]}}).
//
// # Auth, as Google does it
//
// POST /token takes grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
// and an RS256 assertion signed by a configured service account: iss is the
// account's client_email, aud the token URL, scope must include
// https://www.googleapis.com/auth/firebase.messaging (or cloud-platform),
// exp − iat at most one hour, now within [iat − 5 min, exp]. Failures answer
// 400 {"error": "invalid_grant" | "invalid_scope", "error_description"}.
// Success issues an opaque access token valid for Config.AccessTokenTTL
// (default 1 h). messages:send wants "Authorization: Bearer <that token>"
// (401 UNAUTHENTICATED otherwise) and only the account's own project (403
// PERMISSION_DENIED).
//
// # Message checks
//
// The body must be JSON that maps onto SendMessageRequest {validate_only,
// message} and the Message resource, every documented field under its proto
// name or its lowerCamelCase JSON name, values of the field's type. Anything
// else is refused as Google's parser refuses it: 400 INVALID_ARGUMENT with
// no FcmError and one google.rpc.BadRequest field violation per problem,
// e.g. for android.priorty the message and description
// `Invalid JSON payload received. Unknown name "priorty" at
// 'message.android': Cannot find field.` with field "message.android".
// Then: exactly one of token, topic, condition;
// no reserved data keys (from, gcm, message_type, google.*, gcm.*);
// android.ttl a duration of 0–2,419,200 s; android.priority normal or high;
// data plus notification title and body at most 4096 bytes; an apns config
// at apns-priority 10 only with a notification or an aps alert, sound or
// badge (Google refuses data messages to Apple devices at 10).
//
// # Outcomes by token
//
// After the checks, an explicit per-token rule (Config.Tokens,
// SetTokenRule) or the first matching Config.Rules (default DefaultRules):
//
//	prefix dead        → 404 NOT_FOUND, UNREGISTERED
//	prefix bad         → 400 INVALID_ARGUMENT, "The registration token is not a valid FCM registration token"
//	prefix other       → 403 PERMISSION_DENIED, SENDER_ID_MISMATCH
//	prefix throttled   → 429 RESOURCE_EXHAUSTED, QUOTA_EXCEEDED
//	prefix unavailable → 503 UNAVAILABLE, UNAVAILABLE
//	prefix internal    → 500 INTERNAL, INTERNAL
//	prefix apnsauth    → 401 UNAUTHENTICATED, THIRD_PARTY_AUTH_ERROR
//
// apnsauth stands for Apple refusing the APNs key in the Firebase project,
// which Google reports on iOS devices only: give it to iOS devices' tokens.
// Every other token is accepted: {"name": "projects/{p}/messages/{id}"}.
// Faults, counts and the admin endpoints are the same as apnssim's: only a
// send that passed every check and would be accepted meets an injected
// 429/503 (and uses up its Count); Reset forgets the request counts only.
package fcmsim
