package fcm

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/pushlane/pushlane/providers"
)

// DefaultEndpoint is Google's FCM host.
const DefaultEndpoint = "https://fcm.googleapis.com"

// Scope is the OAuth scope for sending.
const Scope = "https://www.googleapis.com/auth/firebase.messaging"

// Config configures one Sender: one app, one Firebase project.
type Config struct {
	// App names the app in metrics, logs and the Halt registry. Required.
	App string
	// ProjectID is the Firebase project; default the service account's
	// project_id.
	ProjectID string

	// The service account: a file or its JSON. Required unless TokenSource is
	// set.
	ServiceAccountFile string
	ServiceAccountJSON []byte
	// TokenSource replaces the service account (tests, workload identity).
	TokenSource oauth2.TokenSource
	// TokenURL overrides the service account's token_uri.
	TokenURL string

	// Endpoint is the base URL; requests go to
	// {Endpoint}/v1/projects/{ProjectID}/messages:send. Default
	// DefaultEndpoint.
	Endpoint string
	// RootCAs trusts the endpoint's and token URL's certificates (the
	// simulator's). Default: the system pool.
	RootCAs *x509.CertPool
	// HTTPClient replaces the HTTP/2 transport the sender builds (for the
	// token endpoint too). Its Timeout should be zero: RequestTimeout applies.
	HTTPClient *http.Client
	// Connections is the most HTTP/2 connections to open; the next is
	// dialled only when the open ones carry as many streams as the server
	// allows. Default 2.
	Connections int

	// Concurrency bounds requests in flight. Default 200.
	Concurrency int
	// QuotaPerMinute is the project's quota. Default 600,000.
	QuotaPerMinute int
	// Quota shares one bucket between the senders of one project; when set,
	// QuotaPerMinute is ignored.
	Quota *Quota

	// RequestTimeout bounds one send when the caller's context has no earlier
	// deadline, to within a sixteenth (sends that start close together share
	// one deadline). Default 30s; negative disables.
	RequestTimeout time.Duration
	// ConnRetries is how often a send is re-sent after its connection failed.
	// Default 2.
	ConnRetries int
	// LowLatency turns Nagle's algorithm off (TCP_NODELAY). Off by default:
	// coalescing small frames doubles throughput under load, at up to 40 ms
	// per send when sends are sparse (see providers.DialTLS).
	LowLatency bool

	// Clock drives the quota bucket, and is the time a message's lifetime
	// is measured from (at Prepare, and again at each send of a message
	// with an expiration); default time.Now.
	Clock func() time.Time
	// Sleep waits for the bucket; default a timer. Tests that move Clock
	// pass a Sleep that advances it.
	Sleep func(ctx context.Context, d time.Duration) error
	// Halt, if set, is told about credential failures (under HaltKey),
	// and sends while the app is halted for FCM fail at once, as do its
	// sends to Apple devices while its sends through APNs are halted
	// (providers.FCMviaAPNs); a probe's excepted, see providers.WithProbe.
	Halt *providers.Halt
}

// Validate checks the config without reading files or dialing; the error
// names the field.
func (c *Config) Validate() error {
	if c.App == "" {
		return fmt.Errorf("fcm: config App: required")
	}
	creds := 0
	for _, set := range []bool{c.ServiceAccountFile != "", len(c.ServiceAccountJSON) > 0, c.TokenSource != nil} {
		if set {
			creds++
		}
	}
	if creds != 1 {
		return fmt.Errorf("fcm: config ServiceAccountFile/ServiceAccountJSON/TokenSource: exactly one is required, got %d", creds)
	}
	if c.TokenSource != nil && c.ProjectID == "" {
		return fmt.Errorf("fcm: config ProjectID: required with TokenSource")
	}
	if c.Concurrency < 0 {
		return fmt.Errorf("fcm: config Concurrency: must not be negative, got %d", c.Concurrency)
	}
	if c.QuotaPerMinute < 0 || c.QuotaPerMinute == 1 {
		return fmt.Errorf("fcm: config QuotaPerMinute: must be at least 2, got %d", c.QuotaPerMinute)
	}
	if c.Connections < 0 || c.Connections > 64 {
		return fmt.Errorf("fcm: config Connections: must be 1–64, got %d", c.Connections)
	}
	if c.ConnRetries < 0 {
		return fmt.Errorf("fcm: config ConnRetries: must not be negative, got %d", c.ConnRetries)
	}
	return nil
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.Endpoint == "" {
		out.Endpoint = DefaultEndpoint
	}
	if out.Connections == 0 {
		out.Connections = 2
	}
	if out.Concurrency == 0 {
		out.Concurrency = 200
	}
	if out.QuotaPerMinute == 0 {
		out.QuotaPerMinute = DefaultQuotaPerMinute
	}
	if out.RequestTimeout == 0 {
		out.RequestTimeout = 30 * time.Second
	}
	if out.ConnRetries == 0 {
		out.ConnRetries = 2
	}
	if out.Clock == nil {
		out.Clock = time.Now
	}
	if out.Sleep == nil {
		out.Sleep = sleep
	}
	return out
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
