package apns

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// MinTokenRefresh is Apple's limit: a provider token updated more often is
// refused with TooManyProviderTokenUpdates.
const MinTokenRefresh = 20 * time.Minute

// MaxTokenAge is when Apple answers ExpiredProviderToken.
const MaxTokenAge = 60 * time.Minute

// ErrTokenTooYoung is returned when APNs calls a provider token expired that
// is younger than MinTokenRefresh: re-signing would trip Apple's update limit
// and not help, because the clocks disagree.
var ErrTokenTooYoung = errors.New("APNs says the provider token expired although it is younger than 20 minutes; check the clock")

// Bearer is one signed provider token.
type Bearer struct {
	Header   string    // "bearer <jwt>", the authorization header value
	IssuedAt time.Time // the iat claim: whole seconds, wall clock
	// issued is the same instant as the clock read it, monotonic reading
	// kept (time.Now's): the token is aged by it, so that a wall clock
	// stepped back cannot keep it past Apple's hour.
	issued time.Time
}

// issuedAt is the time to age b by.
func (b *Bearer) issuedAt() time.Time {
	if b.issued.IsZero() { // a Bearer made outside this package
		return b.IssuedAt
	}
	return b.issued
}

// ProviderToken is the APNs JWT of one key, shared by all goroutines and
// Senders that use that key.
type ProviderToken struct {
	key           *ecdsa.PrivateKey
	keyID, teamID string
	refreshAfter  time.Duration
	clock         func() time.Time

	mu        sync.Mutex // serialises signing
	cur       atomic.Pointer[Bearer]
	refreshes atomic.Int64
	onRefresh func()
}

// NewProviderToken returns a token source for key. refreshAfter must be
// between MinTokenRefresh and 55 minutes; clock nil means time.Now.
func NewProviderToken(key *ecdsa.PrivateKey, keyID, teamID string, refreshAfter time.Duration, clock func() time.Time) (*ProviderToken, error) {
	if key == nil {
		return nil, errors.New("apns: provider token: no key")
	}
	if key.Curve != elliptic.P256() {
		// ES256 signatures are two 32-byte P-256 numbers; another curve's
		// would not fit them, and Apple would refuse them anyway.
		curve := "unknown"
		if key.Curve != nil && key.Curve.Params() != nil {
			curve = key.Curve.Params().Name
		}
		return nil, fmt.Errorf("apns: provider token: key is on curve %s; APNs .p8 keys are P-256 (ES256)", curve)
	}
	if refreshAfter < MinTokenRefresh || refreshAfter > 55*time.Minute {
		return nil, fmt.Errorf("apns: provider token: refresh interval %s outside 20m–55m", refreshAfter)
	}
	if clock == nil {
		clock = time.Now
	}
	return &ProviderToken{key: key, keyID: keyID, teamID: teamID, refreshAfter: refreshAfter, clock: clock}, nil
}

// Current returns the token to send with, signing a new one when there is
// none or the current one is refreshAfter old.
func (t *ProviderToken) Current() (*Bearer, error) {
	now := t.clock()
	if b := t.cur.Load(); b != nil && now.Sub(b.issuedAt()) < t.refreshAfter {
		return b, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if b := t.cur.Load(); b != nil && now.Sub(b.issuedAt()) < t.refreshAfter {
		return b, nil
	}
	return t.signLocked(now)
}

// RefreshAfterExpired is called when APNs answered ExpiredProviderToken to
// rejected. If another goroutine already replaced it, the replacement is
// returned; if rejected is younger than MinTokenRefresh, ErrTokenTooYoung.
func (t *ProviderToken) RefreshAfterExpired(rejected *Bearer) (*Bearer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if b := t.cur.Load(); b != nil && b != rejected {
		return b, nil
	}
	now := t.clock()
	if age := now.Sub(rejected.issuedAt()); age < MinTokenRefresh {
		return nil, fmt.Errorf("%w (issued %s ago)", ErrTokenTooYoung, age.Round(time.Second))
	}
	return t.signLocked(now)
}

// Refreshes counts signed tokens, the first included.
func (t *ProviderToken) Refreshes() int64 { return t.refreshes.Load() }

func (t *ProviderToken) signLocked(now time.Time) (*Bearer, error) {
	jwt, err := signES256(t.key, t.keyID, t.teamID, now.Unix())
	if err != nil {
		return nil, fmt.Errorf("apns: sign provider token: %w", err)
	}
	// Apple reads iat in whole seconds: age from that instant too. Add,
	// unlike time.Unix or Truncate, keeps the monotonic reading.
	iat := time.Unix(now.Unix(), 0)
	b := &Bearer{Header: "bearer " + jwt, IssuedAt: iat, issued: now.Add(iat.Sub(now))}
	t.cur.Store(b)
	t.refreshes.Add(1)
	if t.onRefresh != nil {
		t.onRefresh()
	}
	return b, nil
}

func signES256(key *ecdsa.PrivateKey, keyID, teamID string, iat int64) (string, error) {
	enc := base64.RawURLEncoding
	header := `{"alg":"ES256","kid":"` + keyID + `"}`
	claims := `{"iss":"` + teamID + `","iat":` + strconv.FormatInt(iat, 10) + `}`
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + enc.EncodeToString(sig), nil
}
