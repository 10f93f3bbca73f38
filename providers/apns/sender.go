package apns

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/certificate"
	"github.com/sideshow/apns2/token"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/internal/deadline"
	"github.com/pushlane/pushlane/providers/internal/h2post"
)

// Sender sends to APNs for one app. Safe for concurrent use.
type Sender struct {
	cfg     Config
	logger  *slog.Logger
	metrics *providers.SenderMetrics
	token   *ProviderToken // nil with certificate auth
	conns   *h2post.Pool
	sem     chan struct{}
	timeout *deadline.Shared
	base    string // "/3/device/"
	closed  atomic.Bool
}

var (
	_ providers.Sender      = (*Sender)(nil)
	_ providers.BatchSender = (*Sender)(nil)
)

// New validates cfg, loads the credential and returns a Sender. It does not
// dial: connections open on the first send.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With(slog.String("provider", "apns"), slog.String("app", cfg.App))
	s := &Sender{cfg: cfg, logger: logger, sem: make(chan struct{}, cfg.Concurrency),
		timeout: deadline.New(cfg.RequestTimeout), base: "/3/device/"}

	tlsCfg := &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	switch {
	case cfg.Token != nil:
		s.token = cfg.Token
	case cfg.KeyFile != "" || len(cfg.KeyPEM) > 0:
		key, err := loadKey(cfg)
		if err != nil {
			return nil, err
		}
		s.token, err = NewProviderToken(key, cfg.KeyID, cfg.TeamID, cfg.TokenRefresh, cfg.Clock)
		if err != nil {
			return nil, err
		}
	default:
		cert, err := loadCert(cfg)
		if err != nil {
			return nil, err
		}
		tlsCfg.Certificates = []tls.Certificate{cert}
	}

	m, err := providers.NewSenderMetrics(reg, "apns", cfg.App)
	if err != nil {
		return nil, fmt.Errorf("apns: register metrics: %w", err)
	}
	s.metrics = m
	if s.token != nil && s.token.onRefresh == nil {
		refreshes, err := providers.RegisterCollector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushlane_apns_token_refreshes_total",
			Help: "APNs provider tokens signed, by key ID. Apple refuses a connection's new token issued less than 20 minutes after its last one (TooManyProviderTokenUpdates); the sender signs one per key every TokenRefresh (45 minutes by default).",
		}, []string{"key_id"}))
		if err != nil {
			return nil, fmt.Errorf("apns: register metrics: %w", err)
		}
		c := refreshes.WithLabelValues(s.token.keyID)
		s.token.onRefresh = c.Inc
	}

	s.conns, err = h2post.New(h2post.Config{
		Endpoint:     strings.TrimSuffix(cfg.Endpoint, "/"),
		TLS:          tlsCfg,
		Dial:         providers.DialTLS(cfg.LowLatency),
		Connections:  cfg.Connections,
		PingInterval: cfg.PingInterval,
		PingTimeout:  cfg.PingTimeout,
		// Apple's error bodies are {"reason": ..., "timestamp": ...}.
		MaxResponseBody: 4096,
	})
	if err != nil {
		return nil, fmt.Errorf("apns: config Endpoint: %w", err)
	}
	return s, nil
}

func loadKey(cfg Config) (*ecdsa.PrivateKey, error) {
	if cfg.KeyFile != "" {
		k, err := token.AuthKeyFromFile(cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("apns: config KeyFile: read %s: %w", cfg.KeyFile, err)
		}
		return k, nil
	}
	k, err := token.AuthKeyFromBytes(cfg.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("apns: config KeyPEM: %w", err)
	}
	return k, nil
}

func loadCert(cfg Config) (tls.Certificate, error) {
	var (
		c   tls.Certificate
		err error
	)
	switch {
	case len(cfg.CertPEM) > 0:
		c, err = certificate.FromPemBytes(cfg.CertPEM, cfg.CertPassword)
		if err != nil {
			return c, fmt.Errorf("apns: config CertPEM: %w", err)
		}
	case strings.EqualFold(filepath.Ext(cfg.CertFile), ".p12"):
		c, err = certificate.FromP12File(cfg.CertFile, cfg.CertPassword)
	default:
		c, err = certificate.FromPemFile(cfg.CertFile, cfg.CertPassword)
	}
	if err != nil {
		return c, fmt.Errorf("apns: config CertFile: read %s: %w", cfg.CertFile, err)
	}
	field := "CertFile"
	if len(cfg.CertPEM) > 0 {
		field = "CertPEM"
	}
	leaf := c.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return c, fmt.Errorf("apns: config %s: parse the certificate: %w", field, err)
		}
	}
	// APNs would refuse it in the TLS handshake on every connection: say
	// so now, not as a halt after the first send.
	if now := cfg.Clock(); !now.Before(leaf.NotAfter) {
		return c, fmt.Errorf("apns: config %s: certificate %q expired on %s",
			field, leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return c, nil
}

// Token is the provider token the Sender signs with (nil with certificate
// auth); pass it as Config.Token to share it with another app of the team.
func (s *Sender) Token() *ProviderToken { return s.token }

// Send validates, encodes and sends m to m.Token. For many devices with one
// content, Prepare once and call Prepared.Send per device.
func (s *Sender) Send(ctx context.Context, m *providers.Message, attempt int) providers.Result {
	p, err := s.prepare(m)
	if err != nil {
		r := providers.Rejected(err, attempt)
		s.metrics.Observe(&r)
		return r
	}
	return s.sendPrepared(ctx, p, m.Token, attempt)
}

// Close closes the connections once the sends in flight finish.
func (s *Sender) Close() error {
	s.closed.Store(true)
	return s.conns.Close()
}

// ErrClosed is the error of a send after Close.
var ErrClosed = errors.New("apns: sender closed")

func (s *Sender) sendPrepared(ctx context.Context, p *Prepared, tok string, attempt int) providers.Result {
	start := time.Now()
	r := s.send(ctx, p, tok)
	r.Attempt = attempt
	r.Latency = time.Since(start)
	if r.Err != nil && errors.Is(r.Err, providers.ErrWithdrawn) {
		// No send: nothing to count, nothing the provider said.
		return r
	}
	s.metrics.Observe(&r)
	return r
}

// haltOnRefusal halts the app's APNs in Config.Halt if r is Apple's
// refusal of its credentials (not the registry's own refusal).
func (s *Sender) haltOnRefusal(r *providers.Result) {
	if r.Outcome == providers.CredentialFailure && s.cfg.Halt != nil && !errors.Is(r.Err, providers.ErrHalted) {
		s.cfg.Halt.Halt(s.cfg.App, "apns", r.Reason, r.Err)
	}
}

// refusedByHalt returns the Result of a send that the app's APNs halt
// refuses, if it stands.
func (s *Sender) refusedByHalt(ctx context.Context) (providers.Result, bool) {
	if s.cfg.Halt == nil {
		return providers.Result{}, false
	}
	// Only this provider's halt refuses: the app's other provider has its
	// own credentials. A probe's send goes through, to learn whether the
	// credentials work again.
	if info, halted := s.cfg.Halt.Halted(s.cfg.App, "apns"); halted && !providers.IsProbe(ctx) {
		return providers.Result{Outcome: providers.CredentialFailure, Reason: info.Reason,
			Err: fmt.Errorf("apns: %s: %w (%s)", s.cfg.App, providers.ErrHalted, info.Reason)}, true
	}
	return providers.Result{}, false
}

// send sends p to tok. The halt and the send's gate (providers.SendGate)
// are asked again after a wait for a slot of Concurrency, and the gate
// right before each request (the wait for a provider token, if another
// send is signing one, is behind it; a re-send is a new request): what
// the send waited through may have ended its caller's reason to make it.
func (s *Sender) send(ctx context.Context, p *Prepared, tok string) (r providers.Result) {
	if s.closed.Load() {
		return providers.Result{Outcome: providers.Retryable, Reason: "SenderClosed", Err: ErrClosed}
	}
	if r, refused := s.refusedByHalt(ctx); refused {
		return r
	}
	if tok == "" {
		return providers.Result{Outcome: providers.TokenSuspect, Reason: apns2.ReasonMissingDeviceToken,
			Err: errors.New("apns: empty device token")}
	}
	if !hexToken(tok) {
		return providers.Result{Outcome: providers.TokenSuspect, Reason: apns2.ReasonBadDeviceToken,
			Err: fmt.Errorf("apns: device token is not hexadecimal (%d characters)", len(tok))}
	}
	gate := providers.SendGate(ctx)
	select {
	case s.sem <- struct{}{}:
	default:
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return providers.Result{Outcome: providers.Retryable, Reason: "Canceled", Err: ctx.Err()}
		}
		if r, refused := s.refusedByHalt(ctx); refused {
			<-s.sem
			return r
		}
		if gate != nil {
			if err := gate(); err != nil {
				<-s.sem
				return providers.Withdrawn(err)
			}
		}
	}
	defer func() { <-s.sem }()
	// Deferred after the slot's release, so it runs before it: a send
	// that waited for the slot sees the halt this one's refusal makes.
	defer s.haltOnRefusal(&r)
	// The deadline is shared with the sends of the same caller context
	// that start close by: of the context under the gate, one per
	// dispatcher rather than per batch.
	ctx, cancel := s.timeout.Context(providers.WithoutSendGate(ctx), time.Now())
	defer cancel()

	refreshed := false
	connFailures, notProcessed := 0, 0
	for {
		var b *Bearer
		if s.token != nil {
			var err error
			if b, err = s.token.Current(); err != nil {
				return providers.Result{Outcome: providers.CredentialFailure, Reason: "ProviderTokenSigning", Err: err}
			}
		}
		// Checked at each request, re-sends included: a send that waited
		// (for a slot, a connection) past the expiration sends nothing.
		if !p.expiration.IsZero() {
			if err := checkExpiration(p.expiration, s.cfg.Clock()); err != nil {
				return providers.Rejected(err, 0)
			}
		}
		if gate != nil {
			if err := gate(); err != nil {
				return providers.Withdrawn(err)
			}
		}
		resp, err := s.roundTrip(ctx, p, tok, b)
		if err != nil {
			if reason := s.refusedCredential(err); reason != "" {
				if reason != apns2.ReasonExpiredProviderToken || b == nil || refreshed {
					return providers.Result{Outcome: providers.CredentialFailure, Reason: reason,
						Err: fmt.Errorf("apns: connection refused the credential (%s): %w", reason, err)}
				}
				// As answered to a request: re-sign once, then the
				// request is re-sent by the rules below.
				refreshed = true
				if _, rerr := s.token.RefreshAfterExpired(b); rerr != nil {
					return providers.Result{Outcome: providers.CredentialFailure, Reason: reason,
						Err: fmt.Errorf("apns: connection refused the credential (%s): %w; not re-signed: %w", reason, err, rerr)}
				}
			}
			if ctx.Err() != nil {
				return providers.Result{Outcome: providers.Retryable, Reason: "Canceled",
					Err: fmt.Errorf("apns: send: %w", ctx.Err())}
			}
			if errors.Is(err, h2post.ErrHeaderListTooLarge) {
				// Every connection to this server refuses it alike.
				return providers.Rejected(reject("HeaderListTooLarge", err.Error()), 0)
			}
			if errors.Is(err, h2post.ErrRedialBackoff) {
				// No connection works and none will be dialled before the
				// deadline: a re-send now would fail alike.
				return providers.Result{Outcome: providers.Retryable, Reason: "TransportError",
					Err: fmt.Errorf("apns: send after %d connection failures: %w", connFailures+notProcessed+1, err)}
			}
			// A request the server certainly did not process (above a
			// GOAWAY's last stream, refused) is re-sent without counting
			// against ConnRetries: it cannot be delivered twice.
			if errors.Is(err, h2post.ErrNotProcessed) && notProcessed < maxNotProcessed {
				notProcessed++
				continue
			}
			if connFailures < s.cfg.ConnRetries {
				connFailures++
				s.logger.Debug("connection failed; re-sending on another connection", slog.Any("error", err))
				continue
			}
			return providers.Result{Outcome: providers.Retryable, Reason: "TransportError",
				Err: fmt.Errorf("apns: send after %d connection failures: %w", connFailures+notProcessed+1, err)}
		}
		if resp.Reason == apns2.ReasonExpiredProviderToken && b != nil && !refreshed {
			refreshed = true
			if _, err := s.token.RefreshAfterExpired(b); err != nil {
				resp.Err = fmt.Errorf("%s; not re-signed: %w", resp.Err.Error(), err)
				resp.Outcome = providers.CredentialFailure
				return resp
			}
			continue
		}
		return resp
	}
}

// MaxSendTime is the longest a send goes on once its gate has closed
// (providers.SendTimeBound): RequestTimeout and the sixteenth its shared
// deadlines add; 0 without a RequestTimeout.
func (s *Sender) MaxSendTime() time.Duration {
	return s.timeout.Max()
}

// refusedCredential is the reason APNs gave for refusing the credential on
// the connection behind a failed request, or "": a GOAWAY whose debug data
// names a credential-failure reason (classified like an answer's), or with
// certificate auth a TLS alert refusing the certificate. Nothing else
// counts: the connection, not the request, was judged, so a per-request
// reason (BadDeviceToken, say) in a GOAWAY says nothing about this
// request, and a retryable one changes nothing.
func (s *Sender) refusedCredential(err error) string {
	if reason := goAwayReason(err); reason != "" {
		if o, ok := classifyReason(reason); ok && o == providers.CredentialFailure {
			return reason
		}
		return ""
	}
	// With token auth no certificate of ours is involved: a server asking
	// for one is not Apple's token endpoint.
	if s.token == nil {
		return certAlertReason(err)
	}
	return ""
}

// maxNotProcessed bounds the re-sends of one request the server did not
// process (GOAWAY, REFUSED_STREAM): each goes over a new connection, so
// only a server that refuses everything reaches it.
const maxNotProcessed = 8

type errorBody struct {
	Reason    string `json:"reason"`
	Timestamp int64  `json:"timestamp"`
}

// roundTrip sends once. A non-nil error means no HTTP answer came back.
func (s *Sender) roundTrip(ctx context.Context, p *Prepared, tok string, b *Bearer) (providers.Result, error) {
	resp, err := s.conns.Post(ctx, s.base+tok, p.header(b, s.cfg.Clock()), p.Payload)
	if err != nil {
		return providers.Result{}, err
	}
	r := providers.Result{Status: resp.Status, ProviderID: resp.Get("apns-id")}
	if resp.Status == http.StatusOK {
		r.Outcome = providers.Delivered
		return r, nil
	}
	body := resp.Body
	var eb errorBody
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &eb); err != nil {
			eb.Reason = ""
		}
	}
	r.Reason = eb.Reason
	if eb.Timestamp > 0 {
		r.Timestamp = time.UnixMilli(eb.Timestamp)
	}
	r.RetryAfter = retryAfter(resp.Get("retry-after"), time.Now())
	r.Outcome = Classify(resp.Status, eb.Reason)
	reason := eb.Reason
	if reason == "" {
		reason = strings.TrimSpace(string(body))
	}
	r.Err = fmt.Errorf("apns: %d %s", resp.Status, reason)
	return r, nil
}

// retryAfter reads a Retry-After value as seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func hexToken(t string) bool {
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
