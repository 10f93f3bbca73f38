package apns

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"

	"github.com/sideshow/apns2"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/internal/h2post"
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
	if o, ok := classifyReason(reason); ok {
		return o
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

// classifyReason is the outcome of one of Apple's reasons; false for a
// reason it does not know.
func classifyReason(reason string) (providers.Outcome, bool) {
	switch reason {
	case apns2.ReasonUnregistered, apns2.ReasonExpiredToken:
		return providers.TokenDead, true
	case apns2.ReasonBadDeviceToken, apns2.ReasonDeviceTokenNotForTopic, apns2.ReasonMissingDeviceToken:
		return providers.TokenSuspect, true
	case apns2.ReasonTooManyRequests, apns2.ReasonInternalServerError, apns2.ReasonServiceUnavailable,
		apns2.ReasonShutdown, apns2.ReasonIdleTimeout, apns2.ReasonTooManyProviderTokenUpdates:
		return providers.Retryable, true
	case apns2.ReasonBadCertificate, apns2.ReasonBadCertificateEnvironment, apns2.ReasonExpiredProviderToken,
		apns2.ReasonForbidden, apns2.ReasonInvalidProviderToken, apns2.ReasonMissingProviderToken,
		apns2.ReasonTopicDisallowed, ReasonUnrelatedKeyIDInToken, ReasonBadEnvironmentKeyInToken:
		return providers.CredentialFailure, true
	case apns2.ReasonBadCollapseID, apns2.ReasonBadExpirationDate, apns2.ReasonBadMessageID, apns2.ReasonBadPriority,
		apns2.ReasonBadTopic, apns2.ReasonDuplicateHeaders, apns2.ReasonInvalidPushType, apns2.ReasonMissingTopic,
		apns2.ReasonPayloadEmpty, apns2.ReasonPayloadTooLarge, apns2.ReasonBadPath, apns2.ReasonMethodNotAllowed:
		return providers.PayloadRejected, true
	}
	return "", false
}

// goAwayReason is the reason APNs gave in the debug data of a GOAWAY that
// failed a request ({"reason":"BadCertificate"}), "" if none.
func goAwayReason(err error) string {
	var ga *h2post.GoAwayError
	if !errors.As(err, &ga) || len(ga.DebugData) == 0 {
		return ""
	}
	var eb errorBody
	if json.Unmarshal(ga.DebugData, &eb) != nil {
		return ""
	}
	return eb.Reason
}

// certAlertReason is the reason for a TLS alert (RFC 8446 6.2) from the
// server refusing the client certificate, during the handshake or, with TLS
// 1.3, on the first read after it; "" for any other error.
func certAlertReason(err error) string {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "remote error" || oe.Err == nil {
		return ""
	}
	// crypto/tls reports a received alert as an unexported type whose
	// text is that of the exported AlertError of the same number.
	switch oe.Err.Error() {
	case tls.AlertError(42).Error():
		return "TLSBadCertificate"
	case tls.AlertError(43).Error():
		return "TLSUnsupportedCertificate"
	case tls.AlertError(44).Error():
		return "TLSCertificateRevoked"
	case tls.AlertError(45).Error():
		return "TLSCertificateExpired"
	case tls.AlertError(46).Error():
		return "TLSCertificateUnknown"
	case tls.AlertError(48).Error():
		return "TLSCertificateUnknownCA"
	case tls.AlertError(116).Error():
		return "TLSCertificateRequired"
	}
	return ""
}
