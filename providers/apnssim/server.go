package apnssim

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushlane/pushlane/providers/internal/simcore"
)

// Fault is what the simulator does wrong on purpose; see simcore.Fault.
type Fault = simcore.Fault

// Counts is a snapshot of what the simulator saw.
type Counts = simcore.Counts

// Recorded is the last accepted request of one token (Config.Record).
type Recorded = simcore.Recorded

// Rule is how the simulator answers a device token.
type Rule struct {
	Prefix, Suffix string    // matched against the lower-case hex token; both empty matches only via Config.Tokens
	Status         int       // HTTP status
	Reason         string    // Apple's reason string
	Timestamp      time.Time // 410 Unregistered: the token's last-valid time; zero = now
}

// DefaultRules is the token convention documented in the package doc.
func DefaultRules() []Rule {
	return []Rule{
		{Prefix: "dead", Status: 410, Reason: "Unregistered"},
		{Prefix: "deaf", Status: 410, Reason: "ExpiredToken"},
		{Prefix: "0bad", Status: 400, Reason: "BadDeviceToken"},
		{Prefix: "0ff7", Status: 400, Reason: "DeviceTokenNotForTopic"},
		{Prefix: "0429", Status: 429, Reason: "TooManyRequests"},
		{Prefix: "0500", Status: 500, Reason: "InternalServerError"},
		{Prefix: "0503", Status: 503, Reason: "ServiceUnavailable"},
		{Prefix: "05d0", Status: 503, Reason: "Shutdown"},
	}
}

// Config configures a Server.
type Config struct {
	// Keys are the token-auth keys by key ID; all belong to TeamID.
	Keys   map[string]*ecdsa.PublicKey
	TeamID string
	// Topics are the bundle IDs the team (or a certificate) may push to;
	// empty allows any.
	Topics []string
	// Environment is "development" (default) or "production"; it decides
	// apns-unique-id and which certificates are accepted.
	Environment string
	// ClientCAs, if set, enables certificate auth: client certificates are
	// verified against it during the TLS handshake.
	ClientCAs *x509.CertPool
	// Rules decide outcomes by token; nil means DefaultRules. Tokens are
	// explicit per-token rules and win over Rules.
	Rules  []Rule
	Tokens map[string]Rule
	// AllowFrequentTokenUpdates turns off the 20-minute provider token update
	// limit (TooManyProviderTokenUpdates): a connection may then change its
	// token at any time.
	AllowFrequentTokenUpdates bool
	// Record keeps the last accepted request of each token (Last).
	Record bool
	// MaxConcurrentStreams per connection; default 1000.
	MaxConcurrentStreams uint32
	// MaxHeaderBytes limits request headers (SETTINGS_MAX_HEADER_LIST_SIZE
	// is this plus 320); default net/http's 1 MiB.
	MaxHeaderBytes int
	// Clock is the time the token checks use; default time.Now. Tests that
	// move a sender's clock move this one too.
	Clock  func() time.Time
	Logger *slog.Logger
}

// Server is a running APNs simulator.
type Server struct {
	cfg     Config
	h2      *simcore.H2Server
	cert    *simcore.ServerCert
	faults  *simcore.Faults
	counter *simcore.Counter
	topics  map[string]bool

	rulesMu    sync.RWMutex
	tokenRules map[string]Rule

	authMu      sync.Mutex
	verified    map[string]*verifiedToken     // by bearer
	expiredTill map[string]int64              // key ID → tokens with iat < this answer ExpiredProviderToken
	iats        map[string]map[int64]struct{} // key ID → iats of the tokens accepted

	idPrefix [8]byte
	idSeq    atomic.Uint64
	bodies   sync.Pool // *[]byte of maxBody+1
}

type verifiedToken struct {
	keyID  string
	iat    int64
	reason string // "" if valid
	status int
	// counted is set once the token was accepted and its iat added to
	// Server.iats.
	counted bool
}

// connToken is the provider token a connection has in use: the bearer it
// last had accepted, and that token's iat. Guarded by Server.authMu.
type connToken struct {
	bearer string
	iat    int64
}

// New validates cfg and returns a server that is not listening yet.
func New(cfg Config) (*Server, error) {
	if len(cfg.Keys) == 0 && cfg.ClientCAs == nil {
		return nil, fmt.Errorf("apnssim: config Keys: need at least one key (or ClientCAs for certificate auth)")
	}
	if len(cfg.Keys) > 0 && cfg.TeamID == "" {
		return nil, fmt.Errorf("apnssim: config TeamID: required with Keys")
	}
	switch cfg.Environment {
	case "":
		cfg.Environment = "development"
	case "development", "production":
	default:
		return nil, fmt.Errorf("apnssim: config Environment: must be development or production, got %q", cfg.Environment)
	}
	if cfg.Rules == nil {
		cfg.Rules = DefaultRules()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cert, err := simcore.NewServerCert()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:         cfg,
		cert:        cert,
		counter:     simcore.NewCounter(cfg.Record),
		topics:      make(map[string]bool),
		tokenRules:  make(map[string]Rule),
		verified:    make(map[string]*verifiedToken),
		expiredTill: make(map[string]int64),
		iats:        make(map[string]map[int64]struct{}),
	}
	for _, t := range cfg.Topics {
		s.topics[t] = true
	}
	for tok, r := range cfg.Tokens {
		s.tokenRules[strings.ToLower(tok)] = r
	}
	_, _ = rand.Read(s.idPrefix[:])
	s.bodies.New = func() any { b := make([]byte, maxBody+1); return &b }
	s.faults = simcore.NewFaults()
	s.h2 = simcore.NewH2Server(simcore.H2Config{
		Name: "apns", Cert: cert, MaxConcurrentStreams: cfg.MaxConcurrentStreams, MaxHeaderBytes: cfg.MaxHeaderBytes,
		ClientCAs: cfg.ClientCAs, Logger: cfg.Logger,
		GoAwayAfter: func() int64 { return s.faults.GoAwayAfter(time.Now()) },
	}, http.HandlerFunc(s.serveHTTP))
	return s, nil
}

// Start listens on addr ("127.0.0.1:0" picks a free port).
func (s *Server) Start(addr string) error { return s.h2.Start(addr) }

// URL is the base URL to give a sender as its endpoint.
func (s *Server) URL() string { return s.h2.URL() }

// CertPool trusts the simulator's TLS certificate.
func (s *Server) CertPool() *x509.CertPool { return s.cert.Pool }

// CertPEM is the simulator's TLS certificate, for other processes.
func (s *Server) CertPEM() []byte { return s.cert.CertPEM }

// Close stops the server.
func (s *Server) Close() error { return s.h2.Close() }

// SetFault replaces the injected fault.
func (s *Server) SetFault(f Fault) { s.faults.Set(f, time.Now()) }

// Fault is the fault in force.
func (s *Server) Fault() Fault { return s.faults.Get(time.Now()) }

// GoAwayAll sends a graceful GOAWAY on every live connection.
func (s *Server) GoAwayAll() int { return s.h2.GoAwayAll() }

// DropAll closes every live connection without GOAWAY.
func (s *Server) DropAll() int { return s.h2.DropAll() }

// Counts returns the totals.
func (s *Server) Counts() Counts {
	c := s.counter.Snapshot()
	c.Conns = s.h2.Accepted.Load()
	c.GoAways = s.h2.GoAways.Load()
	return c
}

// AcceptedFor is how many times token was accepted.
func (s *Server) AcceptedFor(token string) int { return s.counter.AcceptedFor(strings.ToLower(token)) }

// Duplicates maps tokens accepted more than once to their counts.
func (s *Server) Duplicates() map[string]int { return s.counter.DuplicateTokens() }

// Last is the last accepted request of token (Config.Record only).
func (s *Server) Last(token string) (Recorded, bool) { return s.counter.Last(strings.ToLower(token)) }

// Reset forgets the request counts: requests, accepted, rejected, devices,
// duplicates and recorded requests. Connection and GOAWAY counts, the
// fault, token rules, keys and provider-token state (TokenUpdates included)
// stay.
func (s *Server) Reset() { s.counter.Reset() }

// SetTokenRule makes token answer with r from now on.
func (s *Server) SetTokenRule(token string, r Rule) {
	s.rulesMu.Lock()
	s.tokenRules[strings.ToLower(token)] = r
	s.rulesMu.Unlock()
}

// ExpireProviderTokens makes every provider token issued before now answer
// ExpiredProviderToken, as Apple does for a token older than an hour.
func (s *Server) ExpireProviderTokens() {
	now := s.cfg.Clock().Unix()
	s.authMu.Lock()
	for kid := range s.cfg.Keys {
		s.expiredTill[kid] = now
	}
	s.authMu.Unlock()
}

// TokenUpdates is how many distinct provider tokens (by iat) the simulator
// accepted for keyID: 1 means the sender never refreshed.
func (s *Server) TokenUpdates(keyID string) int {
	s.authMu.Lock()
	defer s.authMu.Unlock()
	return len(s.iats[keyID])
}

// Admin registers the admin endpoints under prefix on mux (see
// simcore.AdminHandler).
func (s *Server) Admin(mux *http.ServeMux, prefix string) {
	simcore.AdminHandler(mux, prefix, s)
}

const maxBody = 5120

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.counter.Request()
	if c := simcore.ConnFrom(r.Context()); c != nil {
		defer c.Served()
	}
	if latency := s.faults.Latency(time.Now()); latency > 0 {
		time.Sleep(latency)
	}
	bp := s.bodies.Get().(*[]byte)
	defer s.bodies.Put(bp)
	body, st, reason, ts := s.check(r, *bp)
	if st == 0 {
		// Only a request that would be delivered meets the injected fault,
		// so a refused one neither hides its reason nor uses up Count.
		status, retryAfter := s.faults.Decide(time.Now())
		if status != 0 {
			st = status
			if status == 429 {
				reason = "TooManyRequests"
			} else {
				reason = "ServiceUnavailable"
			}
			// Apple does not document Retry-After on 429 or 503 answers;
			// the simulator sends it so a sender's Retry-After handling
			// (which FCM does exercise) can be tested against APNs too.
			if retryAfter > 0 {
				w.Header()["Retry-After"] = []string{strconv.Itoa(int((retryAfter + time.Second - 1) / time.Second))}
			}
		}
	}
	id := r.Header.Get("apns-id")
	if id == "" {
		id = s.newID()
	}
	h := w.Header()
	h["Apns-Id"] = []string{id}
	if s.cfg.Environment == "development" {
		// Apple's own identifier for the delivery log, not an echo of
		// apns-id.
		h["Apns-Unique-Id"] = []string{s.newID()}
	}
	if st != 0 {
		s.counter.Reject(reason)
		h["Content-Type"] = []string{"application/json"}
		w.WriteHeader(st)
		if st == 410 {
			_, _ = fmt.Fprintf(w, `{"reason":%q,"timestamp":%d}`, reason, ts.UnixMilli())
		} else {
			_, _ = io.WriteString(w, `{"reason":"`+reason+`"}`)
		}
		return
	}
	token := strings.ToLower(strings.TrimPrefix(r.URL.Path, "/3/device/"))
	s.counter.Accept(token, r, body)
	w.WriteHeader(http.StatusOK)
}

// check applies Apple's checks and the token rules in order. A zero status
// means accept.
func (s *Server) check(r *http.Request, buf []byte) (body []byte, status int, reason string, ts time.Time) {
	if r.Method != http.MethodPost {
		return nil, 405, "MethodNotAllowed", ts
	}
	if !strings.HasPrefix(r.URL.Path, "/3/device/") {
		return nil, 404, "BadPath", ts
	}
	token := r.URL.Path[len("/3/device/"):]
	if token == "" {
		return nil, 400, "MissingDeviceToken", ts
	}
	for k, v := range r.Header {
		if len(v) > 1 && (strings.HasPrefix(k, "Apns-") || k == "Authorization") {
			return nil, 400, "DuplicateHeaders", ts
		}
	}
	topic := r.Header.Get("apns-topic")
	if st, rs := s.authorize(r, topic); st != 0 {
		return nil, st, rs, ts
	}
	pushType := r.Header.Get("apns-push-type")
	if pushType == "" {
		pushType = "alert"
	}
	suffix, known := topicSuffix(pushType)
	if !known {
		return nil, 400, "InvalidPushType", ts
	}
	if topic == "" {
		return nil, 400, "MissingTopic", ts
	}
	if pushType != "mdm" {
		base, ok := strings.CutSuffix(topic, suffix)
		if !ok || (suffix == "" && hasKnownSuffix(topic)) {
			return nil, 400, "BadTopic", ts
		}
		if len(s.topics) > 0 && !s.topics[base] {
			return nil, 400, "TopicDisallowed", ts
		}
	}
	if p := r.Header.Get("apns-priority"); p != "" {
		if p != "10" && p != "5" && p != "1" {
			return nil, 400, "BadPriority", ts
		}
		if pushType == "background" && p != "5" {
			return nil, 400, "BadPriority", ts
		}
	}
	if e := r.Header.Get("apns-expiration"); e != "" {
		if v, err := strconv.ParseInt(e, 10, 64); err != nil || v < 0 {
			return nil, 400, "BadExpirationDate", ts
		}
	}
	if len(r.Header.Get("apns-collapse-id")) > 64 {
		return nil, 400, "BadCollapseId", ts
	}
	if id := r.Header.Get("apns-id"); id != "" && !isUUID(id) {
		return nil, 400, "BadMessageId", ts
	}
	if !validToken(token) {
		return nil, 400, "BadDeviceToken", ts
	}
	n, err := io.ReadFull(r.Body, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, 400, "PayloadEmpty", ts
	}
	body = buf[:n]
	if n == 0 {
		return nil, 400, "PayloadEmpty", ts
	}
	limit := 4096
	if pushType == "voip" {
		limit = 5120
	}
	if n > limit {
		return nil, 413, "PayloadTooLarge", ts
	}
	if rule, ok := s.ruleFor(strings.ToLower(token)); ok {
		ts = rule.Timestamp
		if ts.IsZero() {
			ts = s.cfg.Clock()
		}
		return body, rule.Status, rule.Reason, ts
	}
	return body, 0, "", ts
}

func (s *Server) ruleFor(token string) (Rule, bool) {
	s.rulesMu.RLock()
	r, ok := s.tokenRules[token]
	s.rulesMu.RUnlock()
	if ok {
		return r, true
	}
	for _, r := range s.cfg.Rules {
		if (r.Prefix != "" || r.Suffix != "") && strings.HasPrefix(token, r.Prefix) && strings.HasSuffix(token, r.Suffix) {
			return r, true
		}
	}
	return Rule{}, false
}

// authorize checks the provider token or the client certificate.
func (s *Server) authorize(r *http.Request, topic string) (int, string) {
	auth := r.Header.Get("authorization")
	if auth == "" {
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && s.cfg.ClientCAs != nil {
			bundle, dev, prod := certIdentity(r.TLS.PeerCertificates[0])
			if bundle == "" {
				return 403, "BadCertificate"
			}
			if (s.cfg.Environment == "production" && !prod) || (s.cfg.Environment == "development" && !dev) {
				return 403, "BadCertificateEnvironment"
			}
			if topic != "" {
				if base := stripSuffix(topic); base != bundle {
					return 400, "TopicDisallowed"
				}
			}
			return 0, ""
		}
		return 403, "MissingProviderToken"
	}
	bearer, ok := strings.CutPrefix(auth, "bearer ")
	if !ok {
		return 403, "InvalidProviderToken"
	}
	at := s.cfg.Clock()
	now := at.Unix()
	s.authMu.Lock()
	defer s.authMu.Unlock()
	v := s.verified[bearer]
	if v == nil {
		v = s.verify(bearer, now)
		if len(s.verified) > 4096 {
			clear(s.verified)
		}
		s.verified[bearer] = v
	}
	if v.reason != "" {
		return v.status, v.reason
	}
	if now-v.iat > 3600 || v.iat < s.expiredTill[v.keyID] {
		return 403, "ExpiredProviderToken"
	}
	if c := simcore.ConnFrom(r.Context()); c != nil {
		ct := c.Local(func() any { return new(connToken) }).(*connToken)
		if ct.bearer != bearer {
			// Apple limits how often a connection's token is re-created,
			// not how many tokens a key has: processes that each sign
			// their own token, on their own connections, are fine. The
			// interval is between the tokens' iats, not since the
			// connection first used the old one: a connection opened
			// late in a token's life takes its regular refresh.
			gap := time.Duration(max(v.iat-ct.iat, ct.iat-v.iat)) * time.Second
			if ct.bearer != "" && gap < tokenUpdateInterval && !s.cfg.AllowFrequentTokenUpdates {
				return 429, "TooManyProviderTokenUpdates"
			}
			ct.bearer, ct.iat = bearer, v.iat
		}
	}
	if !v.counted {
		v.counted = true
		iats := s.iats[v.keyID]
		if iats == nil {
			iats = make(map[int64]struct{})
			s.iats[v.keyID] = iats
		}
		iats[v.iat] = struct{}{}
	}
	return 0, ""
}

// tokenUpdateInterval: a connection may change to a token issued at least
// this long before or after the one it has (TooManyProviderTokenUpdates).
const tokenUpdateInterval = 20 * time.Minute

// verify checks a bearer the simulator has not seen; called with authMu held.
func (s *Server) verify(bearer string, now int64) *verifiedToken {
	h, err := parseJWT(bearer, s.cfg.Keys)
	if err != nil {
		s.cfg.Logger.Debug("provider token refused", slog.Any("error", err))
		return &verifiedToken{status: 403, reason: "InvalidProviderToken"}
	}
	if h.iss != s.cfg.TeamID {
		return &verifiedToken{status: 403, reason: "InvalidProviderToken"}
	}
	if h.iat > now+60 {
		return &verifiedToken{status: 403, reason: "InvalidProviderToken"}
	}
	return &verifiedToken{keyID: h.kid, iat: h.iat}
}

func (s *Server) newID() string {
	var b [16]byte
	copy(b[:8], s.idPrefix[:])
	binary.BigEndian.PutUint64(b[8:], s.idSeq.Add(1))
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return strings.ToUpper(string(out[:]))
}

// topicSuffix is the topic suffix Apple requires for a push type.
func topicSuffix(pushType string) (string, bool) {
	switch pushType {
	case "alert", "background", "mdm":
		return "", true
	case "voip":
		return ".voip", true
	case "complication":
		return ".complication", true
	case "fileprovider":
		return ".pushkit.fileprovider", true
	case "liveactivity":
		return ".push-type.liveactivity", true
	case "pushtotalk":
		return ".voip-ptt", true
	case "location":
		return ".location-query", true
	}
	return "", false
}

func hasKnownSuffix(topic string) bool {
	return stripSuffix(topic) != topic
}

func stripSuffix(topic string) string {
	for _, pt := range []string{"voip", "complication", "fileprovider", "liveactivity", "pushtotalk", "location"} {
		sfx, _ := topicSuffix(pt)
		if b, ok := strings.CutSuffix(topic, sfx); ok {
			return b
		}
	}
	return topic
}

func validToken(t string) bool {
	if len(t) < 64 || len(t) > 200 || len(t)%2 != 0 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
