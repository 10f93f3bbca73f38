package fcm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2/hpack"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"
	"golang.org/x/time/rate"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/internal/deadline"
	"github.com/pushlane/pushlane/providers/internal/h2post"
)

// Sender sends to FCM for one app. Safe for concurrent use.
type Sender struct {
	cfg     Config
	logger  *slog.Logger
	metrics *providers.SenderMetrics
	quota   *Quota
	// conns are the sender's own HTTP/2 connections; client is
	// Config.HTTPClient instead, used through Do.
	conns  *h2post.Pool
	client *http.Client
	sem    chan struct{}
	url    *url.URL
	tokens *tokenCache
	closed atomic.Bool

	deadlines *deadline.Shared

	sdk    *sdkEncoder
	header http.Header // the SDK's request headers but Authorization
	auth   atomic.Pointer[authHeader]
}

// authHeader is the request header for one access token, as a map for
// Config.HTTPClient and as fields for the sender's connections; requests
// only read them, so one serves every request until the token changes.
type authHeader struct {
	token  string
	header http.Header
	fields []hpack.HeaderField
}

var (
	_ providers.Sender      = (*Sender)(nil)
	_ providers.BatchSender = (*Sender)(nil)
)

// ErrClosed is the error of a send after Close.
var ErrClosed = errors.New("fcm: sender closed")

type serviceAccount struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

// New validates cfg, reads the service account and returns a Sender. It does
// not dial.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Sender{cfg: cfg, sem: make(chan struct{}, cfg.Concurrency), deadlines: deadline.New(cfg.RequestTimeout)}

	tokenClient := cfg.HTTPClient
	if cfg.HTTPClient != nil {
		s.client = cfg.HTTPClient
	} else {
		tlsCfg := &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
		var err error
		s.conns, err = h2post.New(h2post.Config{
			Endpoint:     strings.TrimSuffix(cfg.Endpoint, "/"),
			TLS:          tlsCfg,
			Dial:         providers.DialTLS(cfg.LowLatency),
			Connections:  cfg.Connections,
			PingInterval: 15 * time.Second,
			PingTimeout:  15 * time.Second,
			// Error answers are read up to 64 KiB, as before.
			MaxResponseBody: 64 << 10,
		})
		if err != nil {
			return nil, fmt.Errorf("fcm: config Endpoint: %w", err)
		}
		// The access token is fetched about once an hour: net/http's own
		// transport (HTTP/2 by ALPN) does.
		tokenClient = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg.Clone(), ForceAttemptHTTP2: true,
			IdleConnTimeout: time.Minute}}
	}
	if tokenClient != nil && tokenClient.Timeout == 0 {
		// oauth2's Token takes no context: without a timeout a token
		// endpoint that accepts and never answers would hold every send
		// (they all wait on the one fetch) for ever.
		c := *tokenClient
		c.Timeout = tokenFetchTimeout
		tokenClient = &c
	}

	src := cfg.TokenSource
	var fresh func() oauth2.TokenSource
	if src == nil {
		raw := cfg.ServiceAccountJSON
		field := "ServiceAccountJSON"
		if cfg.ServiceAccountFile != "" {
			field = "ServiceAccountFile"
			var err error
			if raw, err = os.ReadFile(cfg.ServiceAccountFile); err != nil {
				return nil, fmt.Errorf("fcm: config ServiceAccountFile: %w", err)
			}
		}
		var sa serviceAccount
		if err := json.Unmarshal(raw, &sa); err != nil {
			return nil, fmt.Errorf("fcm: config %s: not service-account JSON: %w", field, err)
		}
		if sa.Type != "service_account" || sa.ClientEmail == "" || sa.PrivateKey == "" {
			return nil, fmt.Errorf("fcm: config %s: want type service_account with client_email and private_key", field)
		}
		if s.cfg.ProjectID == "" {
			s.cfg.ProjectID = sa.ProjectID
		}
		tokenURL := sa.TokenURI
		if cfg.TokenURL != "" {
			tokenURL = cfg.TokenURL
		}
		if tokenURL == "" {
			tokenURL = "https://oauth2.googleapis.com/token"
		}
		jc := &jwt.Config{Email: sa.ClientEmail, PrivateKey: []byte(sa.PrivateKey), PrivateKeyID: sa.PrivateKeyID,
			Scopes: []string{Scope}, TokenURL: tokenURL}
		if err := checkRSAKey(sa.PrivateKey); err != nil {
			return nil, fmt.Errorf("fcm: config %s: private_key: %w", field, err)
		}
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, tokenClient)
		fresh = func() oauth2.TokenSource { return jc.TokenSource(ctx) }
		src = fresh()
	}
	if s.cfg.ProjectID == "" {
		return nil, fmt.Errorf("fcm: config ProjectID: required (the service account has no project_id)")
	}
	s.tokens = &tokenCache{src: src, fresh: fresh}
	u, err := url.Parse(strings.TrimSuffix(cfg.Endpoint, "/") + "/v1/projects/" + url.PathEscape(s.cfg.ProjectID) + "/messages:send")
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("fcm: config Endpoint: want an http(s) URL, got %q", cfg.Endpoint)
	}
	s.url = u
	if s.sdk, err = newSDKEncoder(s.cfg.ProjectID); err != nil {
		return nil, err
	}
	if s.header, err = s.sdk.headers(); err != nil {
		return nil, err
	}

	s.quota = cfg.Quota
	if s.quota == nil {
		if s.quota, err = NewQuota(cfg.QuotaPerMinute, cfg.Clock); err != nil {
			return nil, fmt.Errorf("fcm: config QuotaPerMinute: %w", err)
		}
	}
	s.logger = logger.With(slog.String("provider", "fcm"), slog.String("app", cfg.App), slog.String("project", s.cfg.ProjectID))
	m, err := providers.NewSenderMetrics(reg, "fcm", cfg.App)
	if err != nil {
		return nil, fmt.Errorf("fcm: register metrics: %w", err)
	}
	s.metrics = m
	return s, nil
}

func checkRSAKey(pemText string) error {
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		return errors.New("no PEM block")
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		return nil
	}
	_, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	return err
}

// tokenFetchTimeout bounds one access-token fetch.
const tokenFetchTimeout = 30 * time.Second

// tokenCache hands out the access token and can drop one FCM refused.
type tokenCache struct {
	mu    sync.Mutex
	src   oauth2.TokenSource
	cur   *oauth2.Token             // the last token fetched from src
	fresh func() oauth2.TokenSource // nil: the source cannot be forced to re-fetch
	// fetching is the fetch under way, which every send that needs a
	// token waits for: one per source, however many sends come while a
	// token endpoint hangs.
	fetching *tokenFetch
}

// tokenFetch is one call of a source's Token; done is closed once t and
// err are set.
type tokenFetch struct {
	src  oauth2.TokenSource
	done chan struct{}
	t    *oauth2.Token
	err  error
}

// token returns the access token. A valid one is handed out at once; a
// fetch (about once an hour) runs on its own goroutine, because oauth2's
// Token takes no context: ctx then bounds the send's wait, and the fetch,
// bounded by tokenFetchTimeout for the sender's own source, still serves
// the sends after it.
func (c *tokenCache) token(ctx context.Context) (string, error) {
	c.mu.Lock()
	if c.cur.Valid() {
		at := c.cur.AccessToken
		c.mu.Unlock()
		return at, nil
	}
	f := c.fetching
	if f == nil || f.src != c.src {
		f = &tokenFetch{src: c.src, done: make(chan struct{})}
		c.fetching = f
		go c.fetch(f)
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		if f.err != nil {
			return "", f.err
		}
		return f.t.AccessToken, nil
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for the token endpoint: %w", ctx.Err())
	}
}

func (c *tokenCache) fetch(f *tokenFetch) {
	t, err := f.src.Token()
	if err == nil && t == nil {
		err = errors.New("token source returned no token")
	}
	c.mu.Lock()
	f.t, f.err = t, err
	if err == nil && c.src == f.src {
		c.cur = t
	}
	if c.fetching == f {
		c.fetching = nil
	}
	c.mu.Unlock()
	close(f.done)
}

// invalidate makes the next token() ask the source again (a new source of
// our own, so it fetches), unless a token already replaced rejected.
func (c *tokenCache) invalidate(rejected string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil || c.cur.AccessToken != rejected {
		return
	}
	c.cur = nil
	if c.fresh != nil {
		c.src = c.fresh()
	}
}

// Quota is the bucket the sender waits on.
func (s *Sender) Quota() *Quota { return s.quota }

// Send validates, encodes and sends m to m.Token.
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
	if s.conns != nil {
		_ = s.conns.Close()
	}
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
	return nil
}

func (s *Sender) sendPrepared(ctx context.Context, p *Prepared, tok string, attempt int) providers.Result {
	start := time.Now()
	r := s.send(ctx, p, tok)
	r.Attempt = attempt
	if r.Err != nil && errors.Is(r.Err, providers.ErrWithdrawn) {
		// No send: nothing to count, nothing the provider said.
		r.Latency = time.Since(start)
		return r
	}
	if ae := (*APIError)(nil); errors.As(r.Err, &ae) && ae.quotaWait {
		// Google's advice for an exceeded quota that names no time is
		// exponential backoff from a minute: 1, 2, 4 ... 64 minutes by
		// attempt. A flat minute gave up on a device after about seven
		// minutes of a quota storm, and brought every throttled device
		// back at once a minute later.
		r.RetryAfter = QuotaRetryAfter << min(max(attempt-1, 0), 6)
	}
	r.Latency = time.Since(start)
	s.metrics.Observe(&r)
	return r
}

// haltOnRefusal halts the app in Config.Halt if r is the provider's
// refusal of its credentials (not the registry's own refusal). The APNs
// key refused on an iOS device halts the app's sends through APNs only;
// anything else, all of its FCM sends.
func (s *Sender) haltOnRefusal(p *Prepared, r *providers.Result) {
	if r.Outcome == providers.CredentialFailure && s.cfg.Halt != nil && !errors.Is(r.Err, providers.ErrHalted) {
		s.cfg.Halt.Halt(s.cfg.App, HaltKey(p.platform, r.Reason), r.Reason, r.Err)
	}
}

// halted returns the halt that refuses a send of p, if any: the app's
// FCM halt (its service account refused) refuses every send, the halt of
// its sends through APNs (providers.FCMviaAPNs: the APNs key in the
// Firebase project refused) only those to Apple devices, which need that
// key as well as the service account.
func (s *Sender) halted(p *Prepared) (providers.HaltInfo, bool) {
	if info, ok := s.cfg.Halt.Halted(s.cfg.App, "fcm"); ok {
		return info, true
	}
	if p.platform == providers.PlatformIOS {
		return s.cfg.Halt.Halted(s.cfg.App, providers.FCMviaAPNs)
	}
	return providers.HaltInfo{}, false
}

// refusedByHalt returns the Result of a send of p that a halt refuses, if
// one does.
func (s *Sender) refusedByHalt(ctx context.Context, p *Prepared) (providers.Result, bool) {
	if s.cfg.Halt == nil {
		return providers.Result{}, false
	}
	// Only this provider's halts refuse: the app's other provider has its
	// own credentials. A probe's send goes through, to learn whether the
	// credentials work again.
	if info, halted := s.halted(p); halted && !providers.IsProbe(ctx) {
		return providers.Result{Outcome: providers.CredentialFailure, Reason: info.Reason,
			Err: fmt.Errorf("fcm: %s: %w (%s: %s)", s.cfg.App, providers.ErrHalted, info.Provider, info.Reason)}, true
	}
	return providers.Result{}, false
}

// gateRecheck: a send waiting for the project's quota asks its gate this
// often, so a send withdrawn meanwhile gives its place in the quota back
// and ends within a tenth of a second, not when the quota would have let
// it go (seconds, in a quota storm: longer than a stop may take).
const gateRecheck = 100 * time.Millisecond

// send sends p to tok. The halt and the send's gate (providers.SendGate)
// are asked again after each wait (a slot of Concurrency, the quota) and
// the gate right before each request: a send can wait here long after
// its caller decided to make it, behind Concurrency sends as slow as the
// request timeout, and what it waited through may have ended its reason
// to go (a halt after a refusal of the app's credentials by a send ahead
// of it, a cancelled campaign, a stopping dispatcher).
func (s *Sender) send(ctx context.Context, p *Prepared, tok string) (r providers.Result) {
	if s.closed.Load() {
		return providers.Result{Outcome: providers.Retryable, Reason: "SenderClosed", Err: ErrClosed}
	}
	if r, refused := s.refusedByHalt(ctx, p); refused {
		return r
	}
	if tok == "" {
		return providers.Result{Outcome: providers.TokenSuspect, Reason: "MissingToken", Err: errors.New("fcm: empty registration token")}
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
		if r, refused := s.refusedByHalt(ctx, p); refused {
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
	defer s.haltOnRefusal(p, &r)
	if wait, rsv := s.quota.reserve(); wait > 0 {
		if res, ended := s.waitQuota(ctx, gate, wait, rsv); ended {
			return res
		}
	}
	// The deadline is shared with the sends of the same caller context
	// that start close by: of the context under the gate, one per
	// dispatcher rather than per batch.
	ctx, cancel := s.deadlines.Context(providers.WithoutSendGate(ctx), time.Now())
	defer cancel()
	var body []byte
	reauthed := false
	connFailures, notProcessed := 0, 0
	for {
		at, err := s.tokens.token(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return providers.Result{Outcome: providers.Retryable, Reason: "Canceled", Err: fmt.Errorf("fcm: access token: %w", err)}
			}
			return tokenFetchResult(err)
		}
		// The body is made after the waits for the quota and the access
		// token, and again for each re-send of a message with an
		// expiration: the lifetime it carries is what is left at this
		// request, and none goes once the expiration has passed (the
		// dispatcher bars sends after it, but one can start just before).
		if body == nil || !p.expires.IsZero() {
			if body, err = p.bodyAt(tok, s.cfg.Clock()); err != nil {
				return providers.Rejected(err, 0)
			}
		}
		// Last: the wait for the access token is behind it, and a
		// re-send is a new request.
		if gate != nil {
			if err := gate(); err != nil {
				return providers.Withdrawn(err)
			}
		}
		r, err := s.roundTrip(ctx, body, at)
		if err != nil {
			if ctx.Err() != nil {
				return providers.Result{Outcome: providers.Retryable, Reason: "Canceled", Err: fmt.Errorf("fcm: send: %w", ctx.Err())}
			}
			if errors.Is(err, h2post.ErrHeaderListTooLarge) {
				// Every connection to this server refuses it alike.
				return providers.Rejected(&providers.RejectError{Provider: "fcm", Reason: "HeaderListTooLarge", Detail: err.Error()}, 0)
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
				continue
			}
			return providers.Result{Outcome: providers.Retryable, Reason: "TransportError",
				Err: fmt.Errorf("fcm: send after %d connection failures: %w", connFailures+notProcessed+1, err)}
		}
		var ae *APIError
		if r.Status == 401 && errors.As(r.Err, &ae) && ae.ErrorCode == "" && !reauthed {
			reauthed = true
			s.tokens.invalidate(at)
			continue
		}
		return r
	}
}

// waitQuota waits wait for the quota's reservation r. With a gate it
// waits in steps of gateRecheck and asks the gate after each: a send
// withdrawn meanwhile gives the reservation back. ended reports that the
// send ends here, with res.
func (s *Sender) waitQuota(ctx context.Context, gate func() error, wait time.Duration, r *rate.Reservation) (res providers.Result, ended bool) {
	for wait > 0 {
		step := wait
		if gate != nil {
			step = min(wait, gateRecheck)
		}
		if err := s.cfg.Sleep(ctx, step); err != nil {
			s.quota.cancel(r)
			return providers.Result{Outcome: providers.Retryable, Reason: "Canceled", Err: fmt.Errorf("fcm: waiting for quota: %w", err)}, true
		}
		wait -= step
		if gate != nil {
			if err := gate(); err != nil {
				s.quota.cancel(r)
				return providers.Withdrawn(err), true
			}
		}
	}
	return providers.Result{}, false
}

// MaxSendTime is the longest a send goes on once its gate has closed
// (providers.SendTimeBound): RequestTimeout and the sixteenth its shared
// deadlines add; 0 without a RequestTimeout.
func (s *Sender) MaxSendTime() time.Duration {
	return s.deadlines.Max()
}

// maxNotProcessed bounds the re-sends of one request the server did not
// process (GOAWAY, REFUSED_STREAM): each goes over a new connection, so
// only a server that refuses everything reaches it.
const maxNotProcessed = 8

// tokenFetchResult classifies a failed access-token fetch: the token
// endpoint refusing the service account is a credential failure; anything
// else (network, 5xx) is retryable.
func tokenFetchResult(err error) providers.Result {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		code := re.ErrorCode
		if code == "" {
			var body struct {
				Error string `json:"error"`
			}
			if json.Unmarshal(re.Body, &body) == nil {
				code = body.Error
			}
		}
		if code == "" && re.Response != nil {
			code = strconv.Itoa(re.Response.StatusCode)
		}
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		if status == 400 || status == 401 || status == 403 {
			return providers.Result{Outcome: providers.CredentialFailure, Status: status, Reason: "oauth:" + code,
				Err: fmt.Errorf("fcm: service account refused by the token endpoint: %w", err)}
		}
		// Status stays 0: the send never reached FCM. The token
		// endpoint's 5xx is no answer about the app's credentials (a
		// halt probe counting it as one lifted the halt).
		return providers.Result{Outcome: providers.Retryable, Reason: "oauth:" + code,
			Err: fmt.Errorf("fcm: fetch access token: %w", err)}
	}
	return providers.Result{Outcome: providers.Retryable, Reason: "TokenFetch", Err: fmt.Errorf("fcm: fetch access token: %w", err)}
}

type errorBody struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type            string `json:"@type"`
			ErrorCode       string `json:"errorCode"`
			FieldViolations []struct {
				Field string `json:"field"`
			} `json:"fieldViolations"`
		} `json:"details"`
	} `json:"error"`
}

// headerFor is the request header for access token at.
func (s *Sender) headerFor(at string) *authHeader {
	if a := s.auth.Load(); a != nil && a.token == at {
		return a
	}
	h := make(http.Header, len(s.header)+1)
	for k, v := range s.header {
		h[k] = v
	}
	h["authorization"] = []string{"Bearer " + at}
	fields := make([]hpack.HeaderField, 0, len(h))
	fields = append(fields, hpack.HeaderField{Name: "authorization", Value: "Bearer " + at})
	keys := make([]string, 0, len(s.header))
	for k := range s.header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range s.header[k] {
			fields = append(fields, hpack.HeaderField{Name: k, Value: v})
		}
	}
	a := &authHeader{token: at, header: h, fields: fields}
	s.auth.Store(a)
	return a
}

// bodyReader is a request body that can be read again through GetBody (the
// HTTP/2 transport re-sends a request after GOAWAY with it).
type bodyReader struct {
	b   []byte
	off int
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

func (r *bodyReader) Close() error { return nil }

func (r *bodyReader) again() (io.ReadCloser, error) { return &bodyReader{b: r.b}, nil }

// answerBuf holds a success answer ({"name": "projects/p/messages/..."},
// about 80 bytes) while it is parsed.
var answerBuf = sync.Pool{New: func() any { return new([512]byte) }}

// roundTrip sends once. A non-nil error means no HTTP answer came back.
func (s *Sender) roundTrip(ctx context.Context, body []byte, at string) (providers.Result, error) {
	if s.client != nil {
		return s.do(ctx, body, at)
	}
	resp, err := s.conns.Post(ctx, s.url.EscapedPath(), s.headerFor(at).fields, body)
	if err != nil {
		return providers.Result{}, err
	}
	return answer(resp.Status, resp.Body, resp.Get("retry-after")), nil
}

// do sends once through Config.HTTPClient.
func (s *Sender) do(ctx context.Context, body []byte, at string) (providers.Result, error) {
	rb := &bodyReader{b: body}
	tmpl := http.Request{Method: http.MethodPost, URL: s.url, Host: s.url.Host,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: s.headerFor(at).header, Body: rb, GetBody: rb.again, ContentLength: int64(len(body))}
	resp, err := s.client.Do(tmpl.WithContext(ctx))
	if err != nil {
		return providers.Result{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		buf := answerBuf.Get().(*[512]byte)
		defer answerBuf.Put(buf)
		// A 200 whose body is cut short is still FCM taking the
		// message: failed, it would be sent again (answer's rule).
		raw, _ := readAnswer(resp.Body, buf[:])
		return answer(200, raw, ""), nil
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return providers.Result{}, fmt.Errorf("read answer: %w", err)
	}
	return answer(resp.StatusCode, raw, resp.Header.Get("Retry-After")), nil
}

// answer classifies an answer: status, body and Retry-After value.
func answer(status int, raw []byte, retry string) providers.Result {
	if status == http.StatusOK {
		// A 200 is FCM taking the message, name or not: retrying one
		// without a name would send it twice.
		return providers.Result{Outcome: providers.Delivered, Status: 200, ProviderID: messageName(raw)}
	}
	ae := parseError(status, raw)
	ae.RetryAfter = retryAfter(retry, time.Now())
	if retry == "" && (ae.ErrorCode == "QUOTA_EXCEEDED" || ae.ErrorCode == "" && status == http.StatusTooManyRequests) {
		// Google's advice for an exceeded quota that names no time:
		// "exponential backoff with a minimum initial delay of 1 minute".
		// The quota is per minute, so sooner only earns another 429.
		ae.RetryAfter = QuotaRetryAfter
		ae.quotaWait = true
	}
	return providers.Result{Outcome: Classify(ae), Status: status, Reason: ae.Reason(),
		RetryAfter: ae.RetryAfter, Err: ae}
}

// readAnswer reads body to its end into buf, or past buf when it is longer
// (at most 64 KiB). Only io.EOF ends it: the HTTP/2 transport reports a
// connection lost mid-answer as io.ErrUnexpectedEOF.
func readAnswer(body io.Reader, buf []byte) ([]byte, error) {
	n := 0
	for n < len(buf) {
		m, err := body.Read(buf[n:])
		n += m
		if err == io.EOF {
			return buf[:n], nil
		}
		if err != nil {
			return nil, err
		}
	}
	rest, err := io.ReadAll(io.LimitReader(body, 64<<10-int64(n)))
	if err != nil {
		return nil, err
	}
	return append(buf[:n:n], rest...), nil
}

// messageName is the "name" of a success answer, "" if there is none. The
// usual answer, one "name" member whose value has no escapes, is read
// directly; anything else goes through encoding/json, with the same result.
func messageName(raw []byte) string {
	if name, ok := plainMessageName(raw); ok {
		return name
	}
	var ok struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(raw, &ok) != nil {
		return ""
	}
	return ok.Name
}

// plainMessageName reads {"name":"..."} with optional JSON whitespace and a
// value of printable ASCII without escapes; ok false means "ask
// encoding/json".
func plainMessageName(raw []byte) (name string, ok bool) {
	i := 0
	ws := func() {
		for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r') {
			i++
		}
	}
	lit := func(l string) bool {
		ws()
		if len(raw)-i < len(l) || string(raw[i:i+len(l)]) != l {
			return false
		}
		i += len(l)
		return true
	}
	if !lit("{") || !lit(`"name"`) || !lit(":") || !lit(`"`) {
		return "", false
	}
	start := i
	for ; i < len(raw) && raw[i] != '"'; i++ {
		if c := raw[i]; c < 0x20 || c > 0x7e || c == '\\' {
			return "", false
		}
	}
	if i == len(raw) {
		return "", false
	}
	name = string(raw[start:i])
	i++
	if !lit("}") {
		return "", false
	}
	ws()
	return name, i == len(raw)
}

func parseError(status int, raw []byte) *APIError {
	ae := &APIError{Status: status}
	var eb errorBody
	if json.Unmarshal(raw, &eb) != nil {
		ae.Message = strings.TrimSpace(string(raw))
		return ae
	}
	ae.GRPCStatus, ae.Message = eb.Error.Status, eb.Error.Message
	for _, d := range eb.Error.Details {
		switch d.Type {
		case "type.googleapis.com/google.firebase.fcm.v1.FcmError":
			ae.ErrorCode = d.ErrorCode
		case "type.googleapis.com/google.rpc.BadRequest":
			for _, fv := range d.FieldViolations {
				if fv.Field == "message.token" {
					ae.TokenField = true
				}
			}
		}
	}
	return ae
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
