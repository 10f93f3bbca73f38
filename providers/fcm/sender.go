package fcm

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"

	"github.com/pushlane/pushlane/providers"
)

// Sender sends to FCM for one app. Safe for concurrent use.
type Sender struct {
	cfg     Config
	logger  *slog.Logger
	metrics *providers.SenderMetrics
	quota   *Quota
	clients []*http.Client
	next    atomic.Uint64
	sem     chan struct{}
	url     string
	tokens  *tokenCache
	closed  atomic.Bool
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
	s := &Sender{cfg: cfg, sem: make(chan struct{}, cfg.Concurrency)}

	if cfg.HTTPClient != nil {
		s.clients = []*http.Client{cfg.HTTPClient}
	} else {
		for range cfg.Connections {
			s.clients = append(s.clients, &http.Client{Transport: &http2.Transport{
				TLSClientConfig: &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
				DialTLSContext:  providers.DialTLS(cfg.LowLatency),
				ReadIdleTimeout: 15 * time.Second,
				PingTimeout:     15 * time.Second,
				IdleConnTimeout: 5 * time.Minute,
			}})
		}
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
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, s.clients[0])
		fresh = func() oauth2.TokenSource { return jc.TokenSource(ctx) }
		src = fresh()
	}
	if s.cfg.ProjectID == "" {
		return nil, fmt.Errorf("fcm: config ProjectID: required (the service account has no project_id)")
	}
	s.tokens = &tokenCache{src: src, fresh: fresh}
	s.url = strings.TrimSuffix(cfg.Endpoint, "/") + "/v1/projects/" + s.cfg.ProjectID + "/messages:send"

	s.quota = cfg.Quota
	if s.quota == nil {
		var err error
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

// tokenCache hands out the access token and can drop one FCM refused.
type tokenCache struct {
	mu    sync.Mutex
	src   oauth2.TokenSource
	fresh func() oauth2.TokenSource // nil: the source cannot be forced to re-fetch
}

func (c *tokenCache) token() (string, error) {
	c.mu.Lock()
	src := c.src
	c.mu.Unlock()
	t, err := src.Token()
	if err != nil {
		return "", err
	}
	return t.AccessToken, nil
}

// invalidate makes the next token() fetch a new access token, unless one
// already replaced rejected.
func (c *tokenCache) invalidate(rejected string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fresh == nil {
		return
	}
	if t, err := c.src.Token(); err == nil && t.AccessToken != rejected {
		return
	}
	c.src = c.fresh()
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

// Close closes idle connections; sends in flight finish.
func (s *Sender) Close() error {
	s.closed.Store(true)
	for _, c := range s.clients {
		c.CloseIdleConnections()
	}
	return nil
}

func (s *Sender) sendPrepared(ctx context.Context, p *Prepared, tok string, attempt int) providers.Result {
	start := time.Now()
	r := s.send(ctx, p, tok)
	r.Attempt = attempt
	r.Latency = time.Since(start)
	s.metrics.Observe(&r)
	if r.Outcome == providers.CredentialFailure && s.cfg.Halt != nil && !errors.Is(r.Err, providers.ErrHalted) {
		s.cfg.Halt.Halt(s.cfg.App, "fcm", r.Reason, r.Err)
	}
	return r
}

func (s *Sender) send(ctx context.Context, p *Prepared, tok string) providers.Result {
	if s.closed.Load() {
		return providers.Result{Outcome: providers.Retryable, Reason: "SenderClosed", Err: ErrClosed}
	}
	if s.cfg.Halt != nil {
		if info, halted := s.cfg.Halt.Halted(s.cfg.App); halted {
			return providers.Result{Outcome: providers.CredentialFailure, Reason: info.Reason,
				Err: fmt.Errorf("fcm: %s: %w (%s)", s.cfg.App, providers.ErrHalted, info.Reason)}
		}
	}
	if tok == "" {
		return providers.Result{Outcome: providers.TokenSuspect, Reason: "MissingToken", Err: errors.New("fcm: empty registration token")}
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return providers.Result{Outcome: providers.Retryable, Reason: "Canceled", Err: ctx.Err()}
	}
	defer func() { <-s.sem }()
	if wait, cancel := s.quota.Reserve(); wait > 0 {
		if err := s.cfg.Sleep(ctx, wait); err != nil {
			cancel()
			return providers.Result{Outcome: providers.Retryable, Reason: "Canceled", Err: fmt.Errorf("fcm: waiting for quota: %w", err)}
		}
	}
	if s.cfg.RequestTimeout > 0 {
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > s.cfg.RequestTimeout {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, s.cfg.RequestTimeout)
			defer cancel()
		}
	}
	body := p.Body(tok)
	reauthed := false
	connFailures := 0
	for {
		at, err := s.tokens.token()
		if err != nil {
			return tokenFetchResult(err)
		}
		r, err := s.roundTrip(ctx, p, body, at)
		if err != nil {
			if ctx.Err() != nil {
				return providers.Result{Outcome: providers.Retryable, Reason: "Canceled", Err: fmt.Errorf("fcm: send: %w", ctx.Err())}
			}
			if connFailures < s.cfg.ConnRetries {
				connFailures++
				continue
			}
			return providers.Result{Outcome: providers.Retryable, Reason: "TransportError",
				Err: fmt.Errorf("fcm: send after %d connection failures: %w", connFailures+1, err)}
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
		return providers.Result{Outcome: providers.Retryable, Status: status, Reason: "oauth:" + code,
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

func (s *Sender) roundTrip(ctx context.Context, p *Prepared, body []byte, at string) (providers.Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return providers.Result{}, err
	}
	req.Header = p.header(at)
	c := s.clients[s.next.Add(1)%uint64(len(s.clients))]
	resp, err := c.Do(req)
	if err != nil {
		return providers.Result{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return providers.Result{}, fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode == http.StatusOK {
		var ok struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(raw, &ok); err != nil || ok.Name == "" {
			return providers.Result{Outcome: providers.Retryable, Status: 200, Reason: "BadAnswer",
				Err: fmt.Errorf("fcm: 200 without a message name: %q", raw)}, nil
		}
		return providers.Result{Outcome: providers.Delivered, Status: 200, ProviderID: ok.Name}, nil
	}
	ae := parseError(resp.StatusCode, raw)
	ae.RetryAfter = retryAfter(resp.Header, time.Now())
	return providers.Result{Outcome: Classify(ae), Status: resp.StatusCode, Reason: ae.Reason(),
		RetryAfter: ae.RetryAfter, Err: ae}, nil
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

func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
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
