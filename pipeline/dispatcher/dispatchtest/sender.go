package dispatchtest

import (
	"context"
	"sync"
	"time"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/fcm"
)

// Sender is an in-memory providers.Sender that counts accepted sends per
// token and answers by rule: the unit-test twin of the simulators.
type Sender struct {
	App string
	// Provider is the provider this fake stands in for ("apns", "fcm"):
	// the one it halts at a credential failure and whose halt refuses its
	// sends, as a real sender halts and asks for its own. "" stands in for
	// both, as an app configured with both routes them (an iOS device's
	// send is APNs's, any other FCM's), so a fake that is an app's APNs
	// and FCM sender at once (APNS: s, FCM: s) acts as two senders would.
	Provider string
	Latency  time.Duration
	// Halt, if set, is told about credential failures and refuses the
	// sends of the app while their provider is halted for it (a probe's
	// send excepted: providers.IsProbe), as the real senders do: as FCM,
	// it halts and asks providers.FCMviaAPNs for iOS devices too
	// (fcm.HaltKey).
	Halt *providers.Halt

	mu       sync.Mutex
	rule     func(token string, attempt int) providers.Result
	accepted map[string]int
	sent     []Sent
	inFlight int
	maxIn    int
}

// Sent is one send the fake saw.
type Sent struct {
	Token   string
	Attempt int
	Title   string
	Start   time.Time // Send was called
	At      time.Time // Send answered
}

// NewSender returns a fake that delivers everything.
func NewSender(app string) *Sender {
	return &Sender{App: app, accepted: map[string]int{}}
}

// SetRule replaces how tokens are answered; nil delivers everything.
func (s *Sender) SetRule(rule func(token string, attempt int) providers.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rule = rule
}

// Send implements providers.Sender.
func (s *Sender) Send(ctx context.Context, m *providers.Message, attempt int) providers.Result {
	start := time.Now()
	provider := s.providerOf(m)
	if s.Halt != nil && s.halted(provider, m.Platform) && !providers.IsProbe(ctx) {
		return providers.Result{Outcome: providers.CredentialFailure, Attempt: attempt, Err: providers.ErrHalted}
	}
	s.mu.Lock()
	s.inFlight++
	s.maxIn = max(s.maxIn, s.inFlight)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()
	if s.Latency > 0 {
		select {
		case <-time.After(s.Latency):
		case <-ctx.Done():
			return providers.Result{Outcome: providers.Retryable, Attempt: attempt, Err: ctx.Err()}
		}
	}
	s.mu.Lock()
	rule := s.rule
	s.mu.Unlock()
	r := providers.Result{Outcome: providers.Delivered, Status: 200, ProviderID: "fake"}
	if rule != nil {
		r = rule(m.Token, attempt)
	}
	r.Attempt = attempt
	r.Latency = time.Since(start)
	s.mu.Lock()
	s.sent = append(s.sent, Sent{Token: m.Token, Attempt: attempt, Title: m.Title, Start: start, At: time.Now()})
	if r.Outcome == providers.Delivered {
		s.accepted[m.Token]++
	}
	s.mu.Unlock()
	if r.Outcome == providers.CredentialFailure && s.Halt != nil {
		key := provider
		if provider == "fcm" {
			key = fcm.HaltKey(m.Platform, r.Reason) // the APNs key's refusal halts iOS devices only
		}
		s.Halt.Halt(s.App, key, r.Reason, r.Err)
	}
	return r
}

// halted reports whether a halt refuses a send through provider to a
// device of platform, as the real senders decide: FCM's sends to iOS
// devices are refused by the halt of its sends through APNs too.
func (s *Sender) halted(provider, platform string) bool {
	if _, halted := s.Halt.Halted(s.App, provider); halted {
		return true
	}
	if provider == "fcm" && platform == providers.PlatformIOS {
		_, halted := s.Halt.Halted(s.App, providers.FCMviaAPNs)
		return halted
	}
	return false
}

// providerOf returns the provider m's send stands for (see Provider).
func (s *Sender) providerOf(m *providers.Message) string {
	switch {
	case s.Provider != "":
		return s.Provider
	case m.Platform == providers.PlatformIOS:
		return "apns"
	default:
		return "fcm"
	}
}

// Close implements providers.Sender.
func (s *Sender) Close() error { return nil }

// Accepted returns how often token was delivered.
func (s *Sender) Accepted(token string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted[token]
}

// Devices returns the number of distinct tokens delivered and the number
// delivered more than once.
func (s *Sender) Devices() (devices, duplicates int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.accepted {
		devices++
		if n > 1 {
			duplicates++
		}
	}
	return devices, duplicates
}

// MaxInFlight returns the most sends that were in progress at once.
func (s *Sender) MaxInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxIn
}

// Sends returns every send seen, in order.
func (s *Sender) Sends() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sent(nil), s.sent...)
}
