// Package providers holds what the APNs and FCM senders share: the
// provider-neutral Message, the Result of one send with its single Outcome,
// the retry policy (Backoff) and the Halt registry that parks an app's sends
// through a provider that refused its credentials (per app and provider,
// and for FCM's sends to iOS devices through APNs: FCMviaAPNs).
//
// Every send ends in exactly one Outcome:
//
//   - delivered: APNs 200, or an FCM message name.
//   - token_dead: APNs 410 Unregistered (Result.Timestamp keeps Apple's
//     last-valid time) or ExpiredToken; FCM UNREGISTERED, and INVALID_ARGUMENT
//     only when Google says the registration token is invalid.
//   - token_suspect: APNs BadDeviceToken, DeviceTokenNotForTopic or
//     MissingDeviceToken; FCM SENDER_ID_MISMATCH. Often a sandbox/production
//     or project mix-up that every token of the app reports at once:
//     quarantine, do not delete.
//   - retryable: APNs 429, 500, 503 (ServiceUnavailable, Shutdown),
//     IdleTimeout, TooManyProviderTokenUpdates; FCM QUOTA_EXCEEDED (at
//     least a minute later when Google sends no Retry-After), UNAVAILABLE,
//     INTERNAL; transport errors. The dispatcher waits
//     Backoff(attempt, Result.RetryAfter) and tries again, at most MaxAttempts
//     times.
//   - payload_rejected: the content is wrong. Never retried, never blamed on
//     the token. Senders validate before sending, so most of these never reach
//     the provider (Result.Status is then 0); so does a request whose headers
//     are over the server's SETTINGS_MAX_HEADER_LIST_SIZE (HeaderListTooLarge).
//     One refusal is not about the content: a send that reached its request
//     after the message's expiration sends nothing, refused with ErrExpired
//     in Result.Err, which the dispatcher records as expired.
//   - credential_failure: the app's key, certificate or service account was
//     refused. Retrying would burn the campaign: park the app with Halt.
//     FCM's THIRD_PARTY_AUTH_ERROR (APNS_AUTH_ERROR) on an iOS device is
//     the APNs key in the Firebase project refused: it halts only the
//     app's FCM sends to iOS devices (FCMviaAPNs), not its Android ones.
//
// The senders do the retries that must happen inside one call (a refreshed
// APNs provider token after ExpiredProviderToken, a re-send on a fresh
// connection after GOAWAY or a dead connection); everything that needs a wait
// comes back as retryable.
//
// A send whose caller gave it a gate (WithSendGate) and that the gate
// withdrew, after one of the sender's own waits (its concurrency, FCM's
// quota, an access token) or right before a request, is no send: nothing
// reached the provider, the sender counts and halts nothing, and its
// Result (Withdrawn: retryable, Err ErrWithdrawn) is for the caller to
// drop; the dispatcher leaves the device without a result. A request
// already written is never withdrawn.
package providers
