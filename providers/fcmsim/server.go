package fcmsim

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
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

// Account is a service account the token endpoint accepts.
type Account struct {
	ProjectID string
	PublicKey *rsa.PublicKey
}

// Rule is how the simulator answers a registration token.
type Rule struct {
	Prefix, Suffix string
	Status         int    // HTTP status
	Code           string // FcmError errorCode
	Message        string
	// Field, if set, adds a google.rpc.BadRequest field violation naming it
	// (Google names "message.token" for an invalid registration token).
	Field string
}

// DefaultRules is the token convention documented in the package doc.
func DefaultRules() []Rule {
	return []Rule{
		{Prefix: "dead", Status: 404, Code: "UNREGISTERED", Message: "Requested entity was not found."},
		{Prefix: "bad", Status: 400, Code: "INVALID_ARGUMENT", Message: "The registration token is not a valid FCM registration token", Field: "message.token"},
		{Prefix: "other", Status: 403, Code: "SENDER_ID_MISMATCH", Message: "SenderId mismatch"},
		{Prefix: "throttled", Status: 429, Code: "QUOTA_EXCEEDED", Message: "Sending limit exceeded for the message target."},
		{Prefix: "unavailable", Status: 503, Code: "UNAVAILABLE", Message: "The service is currently unavailable."},
		{Prefix: "internal", Status: 500, Code: "INTERNAL", Message: "Internal error encountered."},
		{Prefix: "apnsauth", Status: 401, Code: "THIRD_PARTY_AUTH_ERROR", Message: "Auth error from APNS or Web Push Service"},
	}
}

// Config configures a Server.
type Config struct {
	// Accounts are the service accounts by client_email.
	Accounts map[string]Account
	// Rules decide outcomes by token; nil means DefaultRules. Tokens are
	// explicit per-token rules and win over Rules.
	Rules  []Rule
	Tokens map[string]Rule
	// AccessTokenTTL is how long issued access tokens are valid; default 1h.
	AccessTokenTTL time.Duration
	Record         bool
	// MaxConcurrentStreams per connection; default 1000.
	MaxConcurrentStreams uint32
	Clock                func() time.Time
	Logger               *slog.Logger
}

// Server is a running FCM simulator.
type Server struct {
	cfg     Config
	h2      *simcore.H2Server
	cert    *simcore.ServerCert
	faults  *simcore.Faults
	counter *simcore.Counter

	rulesMu    sync.RWMutex
	tokenRules map[string]Rule

	authMu   sync.RWMutex
	access   map[string]accessToken
	tokenReq atomic.Int64
	idSeq    atomic.Uint64

	schema *schema
}

type accessToken struct {
	email, project string
	expires        time.Time
}

// New validates cfg and returns a server that is not listening yet.
func New(cfg Config) (*Server, error) {
	if len(cfg.Accounts) == 0 {
		return nil, fmt.Errorf("fcmsim: config Accounts: need at least one service account")
	}
	for email, a := range cfg.Accounts {
		if a.PublicKey == nil || a.ProjectID == "" {
			return nil, fmt.Errorf("fcmsim: config Accounts[%s]: needs PublicKey and ProjectID", email)
		}
	}
	if cfg.Rules == nil {
		cfg.Rules = DefaultRules()
	}
	if cfg.AccessTokenTTL == 0 {
		cfg.AccessTokenTTL = time.Hour
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
	s := &Server{cfg: cfg, cert: cert, counter: simcore.NewCounter(cfg.Record), faults: simcore.NewFaults(),
		tokenRules: make(map[string]Rule), access: make(map[string]accessToken), schema: newSchema()}
	for t, r := range cfg.Tokens {
		s.tokenRules[t] = r
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", s.serveToken)
	mux.HandleFunc("/v1/projects/", s.serveSend)
	s.h2 = simcore.NewH2Server(simcore.H2Config{Name: "fcm", Cert: cert, MaxConcurrentStreams: cfg.MaxConcurrentStreams, Logger: cfg.Logger,
		GoAwayAfter: func() int64 { return s.faults.GoAwayAfter(time.Now()) }}, mux)
	return s, nil
}

// Start listens on addr.
func (s *Server) Start(addr string) error { return s.h2.Start(addr) }

// URL is the base URL: a sender's endpoint (it appends /v1/projects/...).
func (s *Server) URL() string { return s.h2.URL() }

// TokenURL is the OAuth token endpoint (a service account's token_uri).
func (s *Server) TokenURL() string { return s.h2.URL() + "/token" }

// CertPool trusts the simulator's TLS certificate.
func (s *Server) CertPool() *x509.CertPool { return s.cert.Pool }

// CertPEM is the simulator's TLS certificate.
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

// Counts returns the totals (messages:send only; TokenRequests counts the
// token endpoint).
func (s *Server) Counts() Counts {
	c := s.counter.Snapshot()
	c.Conns = s.h2.Accepted.Load()
	c.GoAways = s.h2.GoAways.Load()
	return c
}

// TokenRequests is how many access tokens were asked for.
func (s *Server) TokenRequests() int64 { return s.tokenReq.Load() }

// AcceptedFor is how many times token was accepted.
func (s *Server) AcceptedFor(token string) int { return s.counter.AcceptedFor(token) }

// Duplicates maps tokens accepted more than once to their counts.
func (s *Server) Duplicates() map[string]int { return s.counter.DuplicateTokens() }

// Last is the last accepted request of token (Config.Record only).
func (s *Server) Last(token string) (Recorded, bool) { return s.counter.Last(token) }

// Reset forgets the request counts: requests, accepted, rejected, devices,
// duplicates and recorded requests. Connection and GOAWAY counts,
// TokenRequests, the fault, token rules and access tokens stay.
func (s *Server) Reset() { s.counter.Reset() }

// SetTokenRule makes token answer with r from now on; a Rule without a
// Status accepts token (as apnssim's, whatever prefix rule it matches),
// which a test uses to fix what a rule broke. It answered with HTTP status
// 0, which panicked the handler.
func (s *Server) SetTokenRule(token string, r Rule) {
	s.rulesMu.Lock()
	s.tokenRules[token] = r
	s.rulesMu.Unlock()
}

// RevokeAccessTokens invalidates every access token issued so far.
func (s *Server) RevokeAccessTokens() {
	s.authMu.Lock()
	clear(s.access)
	s.authMu.Unlock()
}

// IssueAccessToken issues an access token for a configured account without
// the OAuth exchange, for load generators such as h2load.
func (s *Server) IssueAccessToken(email string) (string, error) {
	a, ok := s.cfg.Accounts[email]
	if !ok {
		return "", fmt.Errorf("fcmsim: no account %s", email)
	}
	return s.issue(email, a.ProjectID), nil
}

// Admin registers the admin endpoints under prefix on mux.
func (s *Server) Admin(mux *http.ServeMux, prefix string) { simcore.AdminHandler(mux, prefix, s) }

func (s *Server) issue(email, project string) string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	tok := "ya29.sim-" + base64.RawURLEncoding.EncodeToString(b[:])
	s.authMu.Lock()
	s.access[tok] = accessToken{email: email, project: project, expires: s.cfg.Clock().Add(s.cfg.AccessTokenTTL)}
	s.authMu.Unlock()
	return tok
}

func oauthError(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	s.tokenReq.Add(1)
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, "invalid_request", "Malformed request body.")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthError(w, "unsupported_grant_type", "Invalid grant_type: "+gt)
		return
	}
	parts := strings.Split(r.PostForm.Get("assertion"), ".")
	if len(parts) != 3 {
		oauthError(w, "invalid_grant", "Invalid JWT: Malformed assertion.")
		return
	}
	enc := base64.RawURLEncoding
	var hdr struct {
		Alg string `json:"alg"`
	}
	var cl struct {
		Iss   string `json:"iss"`
		Scope string `json:"scope"`
		Aud   string `json:"aud"`
		Iat   int64  `json:"iat"`
		Exp   int64  `json:"exp"`
	}
	hb, err1 := enc.DecodeString(parts[0])
	cb, err2 := enc.DecodeString(parts[1])
	sig, err3 := enc.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(hb, &hdr) != nil || json.Unmarshal(cb, &cl) != nil {
		oauthError(w, "invalid_grant", "Invalid JWT: Malformed assertion.")
		return
	}
	acct, ok := s.cfg.Accounts[cl.Iss]
	if !ok {
		oauthError(w, "invalid_grant", "Invalid grant: account not found")
		return
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if hdr.Alg != "RS256" || rsa.VerifyPKCS1v15(acct.PublicKey, crypto.SHA256, sum[:], sig) != nil {
		oauthError(w, "invalid_grant", "Invalid JWT Signature.")
		return
	}
	if cl.Aud != s.TokenURL() {
		oauthError(w, "invalid_grant", "Invalid JWT: Failed audience check. The expected audience is "+s.TokenURL()+".")
		return
	}
	now := s.cfg.Clock().Unix()
	if cl.Exp-cl.Iat > 3600 || cl.Exp < now || cl.Iat > now+300 {
		oauthError(w, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
		return
	}
	scoped := false
	for _, sc := range strings.Fields(cl.Scope) {
		if sc == "https://www.googleapis.com/auth/firebase.messaging" || sc == "https://www.googleapis.com/auth/cloud-platform" {
			scoped = true
		}
	}
	if !scoped {
		oauthError(w, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
		return
	}
	tok := s.issue(cl.Iss, acct.ProjectID)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": tok, "expires_in": int(s.cfg.AccessTokenTTL/time.Second) - 1, "token_type": "Bearer",
	})
}

func grpcStatus(code int) string {
	switch code {
	case 400:
		return "INVALID_ARGUMENT"
	case 401:
		return "UNAUTHENTICATED"
	case 403:
		return "PERMISSION_DENIED"
	case 404:
		return "NOT_FOUND"
	case 429:
		return "RESOURCE_EXHAUSTED"
	case 500:
		return "INTERNAL"
	case 503:
		return "UNAVAILABLE"
	}
	return "UNKNOWN"
}

// apiError writes Google's error body. fcmCode "" leaves out the FcmError
// detail (auth and project errors have none); field adds a BadRequest
// field violation.
func (s *Server) apiError(w http.ResponseWriter, status int, fcmCode, msg, field string, retryAfter time.Duration) {
	var vs []violation
	if field != "" {
		vs = []violation{{Field: field, Description: msg}}
	}
	s.writeError(w, status, fcmCode, msg, vs, retryAfter)
}

// badJSON answers a request body FCM cannot map onto a SendMessageRequest:
// 400 INVALID_ARGUMENT with one BadRequest violation per problem and no
// FcmError, as Google's JSON parser, not FCM, refuses it.
func (s *Server) badJSON(w http.ResponseWriter, vs []violation) {
	msgs := make([]string, len(vs))
	for i, v := range vs {
		msgs[i] = v.Description
	}
	s.writeError(w, 400, "", strings.Join(msgs, "\n"), vs, 0)
}

func (s *Server) writeError(w http.ResponseWriter, status int, fcmCode, msg string, vs []violation, retryAfter time.Duration) {
	reason := fcmCode
	if reason == "" {
		reason = grpcStatus(status)
	}
	s.counter.Reject(reason)
	details := []map[string]any{}
	if fcmCode != "" {
		details = append(details, map[string]any{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcmCode})
	}
	if len(vs) > 0 {
		fv := make([]map[string]string, len(vs))
		for i, v := range vs {
			fv[i] = map[string]string{"description": v.Description}
			if v.Field != "" {
				fv[i]["field"] = v.Field
			}
		}
		details = append(details, map[string]any{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": fv})
	}
	e := map[string]any{"code": status, "message": msg, "status": grpcStatus(status)}
	if len(details) > 0 {
		e["details"] = details
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json; charset=UTF-8"}
	if retryAfter > 0 {
		h["Retry-After"] = []string{strconv.Itoa(int((retryAfter + time.Second - 1) / time.Second))}
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": e})
}

func (s *Server) serveSend(w http.ResponseWriter, r *http.Request) {
	s.counter.Request()
	if c := simcore.ConnFrom(r.Context()); c != nil {
		defer c.Served()
	}
	if latency := s.faults.Latency(time.Now()); latency > 0 {
		time.Sleep(latency)
	}
	project, ok := strings.CutPrefix(r.URL.Path, "/v1/projects/")
	if project, ok = strings.CutSuffix(project, "/messages:send"); !ok || project == "" || strings.Contains(project, "/") {
		s.apiError(w, 404, "", "Requested entity was not found.", "", 0)
		return
	}
	if r.Method != http.MethodPost {
		s.apiError(w, 405, "", "Method not allowed.", "", 0)
		return
	}
	bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.authMu.RLock()
	at, ok := s.access[bearer]
	s.authMu.RUnlock()
	if !ok || !s.cfg.Clock().Before(at.expires) {
		s.apiError(w, 401, "", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.", "", 0)
		return
	}
	if at.project != project {
		s.apiError(w, 403, "", "Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/"+project+"' (or it may not exist).", "", 0)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		s.badJSON(w, []violation{{Description: "Invalid JSON payload received. Unexpected end of string."}})
		return
	}
	var req sendRequest
	if vs := s.schema.decode(body, &req); len(vs) > 0 {
		s.badJSON(w, vs)
		return
	}
	if req.Message == nil {
		s.apiError(w, 400, "INVALID_ARGUMENT", "Request contains an invalid argument.", "message", 0)
		return
	}
	m := req.Message
	targets := 0
	for _, t := range []string{m.Token, m.Topic, m.Condition} {
		if t != "" {
			targets++
		}
	}
	if targets != 1 {
		s.apiError(w, 400, "INVALID_ARGUMENT", "Exactly one of token, topic or condition must be specified.", "message", 0)
		return
	}
	size := 0
	for k, v := range m.Data {
		// Google's lists: "from", "message_type", "google.*" and "gcm.*"
		// (the Message reference), "gcm" (INVALID_ARGUMENT in the error
		// codes). "notification", in older documents only, is accepted.
		if k == "from" || k == "gcm" || k == "message_type" || strings.HasPrefix(k, "google.") || strings.HasPrefix(k, "gcm.") {
			s.apiError(w, 400, "INVALID_ARGUMENT", "Invalid data payload key: "+k, "message.data", 0)
			return
		}
		size += len(k) + len(v)
	}
	if n := m.Notification; n != nil {
		size += len(n.Title) + len(n.Body)
	}
	if size > 4096 {
		s.apiError(w, 400, "INVALID_ARGUMENT", "Message is too big. The maximum payload size is 4096 bytes.", "message", 0)
		return
	}
	if a := m.Android; a != nil {
		if a.TTL != "" {
			secs, ok := parseSeconds(a.TTL)
			if !ok || secs < 0 || secs > 2419200 {
				s.apiError(w, 400, "INVALID_ARGUMENT", "Invalid value at 'message.android.ttl' ("+a.TTL+"): TTL must be between 0 and 2419200 seconds.", "message.android.ttl", 0)
				return
			}
		}
		if p := strings.ToLower(a.Priority); p != "" && p != "normal" && p != "high" {
			s.apiError(w, 400, "INVALID_ARGUMENT", "Invalid value at 'message.android.priority' ("+a.Priority+").", "message.android.priority", 0)
			return
		}
	}
	// Google: "When sending data messages to Apple devices, the priority
	// must be set to 5 ... Messages sent with high priority are rejected
	// by the FCM backend with the error INVALID_ARGUMENT."
	if a := m.APNS; a != nil && a.Headers["apns-priority"] == "10" && m.Notification == nil && !apsVisible(a.Payload) {
		s.apiError(w, 400, "INVALID_ARGUMENT", "Invalid value at 'message.apns.headers' (apns-priority 10): data messages to Apple devices must use apns-priority 5.", "message.apns.headers", 0)
		return
	}
	if m.Token != "" {
		if rule, ok := s.ruleFor(m.Token); ok && rule.Status != 0 {
			s.apiError(w, rule.Status, rule.Code, rule.Message, rule.Field, 0)
			return
		}
	}
	// Only a request that would be accepted meets the injected fault, so a
	// refused one neither hides its reason nor uses up Count (as apnssim).
	switch status, retryAfter := s.faults.Decide(time.Now()); status {
	case 429:
		s.apiError(w, 429, "QUOTA_EXCEEDED", "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute' of service 'fcm.googleapis.com'.", "", retryAfter)
		return
	case 503:
		s.apiError(w, 503, "UNAVAILABLE", "The service is currently unavailable.", "", retryAfter)
		return
	}
	if req.ValidateOnly {
		writeName(w, "projects/"+project+"/messages/fake_message_id")
		return
	}
	target := m.Token
	if target == "" {
		target = "topic:" + m.Topic + m.Condition
	}
	s.counter.Accept(target, r, body)
	writeName(w, "projects/"+project+"/messages/0:"+strconv.FormatUint(s.idSeq.Add(1), 10)+"%"+hex.EncodeToString([]byte(project))[:min(8, 2*len(project))])
}

// apsVisible reports whether an APNs payload shows the user something: an
// alert, a sound or a badge in its aps dictionary.
func apsVisible(payload map[string]any) bool {
	aps, _ := payload["aps"].(map[string]any)
	for _, k := range []string{"alert", "sound", "badge"} {
		if _, ok := aps[k]; ok {
			return true
		}
	}
	return false
}

func writeName(w http.ResponseWriter, name string) {
	w.Header()["Content-Type"] = []string{"application/json; charset=UTF-8"}
	_, _ = io.WriteString(w, `{"name":"`+name+`"}`)
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

// parseSeconds reads a protobuf Duration in JSON form ("3.5s").
func parseSeconds(s string) (float64, bool) {
	v, ok := strings.CutSuffix(s, "s")
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(v, 64)
	return f, err == nil
}
