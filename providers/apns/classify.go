package apns

import (
	"github.com/sideshow/apns2"

	"github.com/pushlane/pushlane/providers"
)

// Reasons Apple added after apns2 v0.25.0 named its constants.
const (
	ReasonUnrelatedKeyIDInToken    = "UnrelatedKeyIdInToken"
	ReasonBadEnvironmentKeyInToken = "BadEnvironmentKeyInToken"
)

// Classify maps an APNs answer to its outcome. Unknown reasons fall back on
// the status: 2xx delivered, 403 credential, 410 token dead, 429/5xx
// retryable, any other 4xx payload rejected.
func Classify(status int, reason string) providers.Outcome {
	switch reason {
	case apns2.ReasonUnregistered, apns2.ReasonExpiredToken:
		return providers.TokenDead
	case apns2.ReasonBadDeviceToken, apns2.ReasonDeviceTokenNotForTopic, apns2.ReasonMissingDeviceToken:
		return providers.TokenSuspect
	case apns2.ReasonTooManyRequests, apns2.ReasonInternalServerError, apns2.ReasonServiceUnavailable,
		apns2.ReasonShutdown, apns2.ReasonIdleTimeout, apns2.ReasonTooManyProviderTokenUpdates:
		return providers.Retryable
	case apns2.ReasonBadCertificate, apns2.ReasonBadCertificateEnvironment, apns2.ReasonExpiredProviderToken,
		apns2.ReasonForbidden, apns2.ReasonInvalidProviderToken, apns2.ReasonMissingProviderToken,
		apns2.ReasonTopicDisallowed, ReasonUnrelatedKeyIDInToken, ReasonBadEnvironmentKeyInToken:
		return providers.CredentialFailure
	case apns2.ReasonBadCollapseID, apns2.ReasonBadExpirationDate, apns2.ReasonBadMessageID, apns2.ReasonBadPriority,
		apns2.ReasonBadTopic, apns2.ReasonDuplicateHeaders, apns2.ReasonInvalidPushType, apns2.ReasonMissingTopic,
		apns2.ReasonPayloadEmpty, apns2.ReasonPayloadTooLarge, apns2.ReasonBadPath, apns2.ReasonMethodNotAllowed:
		return providers.PayloadRejected
	}
	switch {
	case status >= 200 && status < 300:
		return providers.Delivered
	case status == 403:
		return providers.CredentialFailure
	case status == 410:
		return providers.TokenDead
	case status == 429 || status >= 500:
		return providers.Retryable
	}
	return providers.PayloadRejected
}
