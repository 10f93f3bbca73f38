package apns

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/pushlane/pushlane/providers"
)

// Environments.
const (
	Development = "development"
	Production  = "production"
)

// Apple's hosts.
const (
	HostDevelopment = "https://api.sandbox.push.apple.com"
	HostProduction  = "https://api.push.apple.com"
)

// Config configures one Sender: one app (bundle ID) with one credential.
type Config struct {
	// App names the app in metrics, logs and the Halt registry. Required.
	App string
	// Environment is Development or Production. Required.
	Environment string
	// Topic is the app's bundle ID. Push types that need a topic suffix get
	// it appended (".voip", ...). Required.
	Topic string

	// Token auth: the .p8 key (KeyFile or KeyPEM), its KeyID and the TeamID.
	KeyFile string
	KeyPEM  []byte
	KeyID   string
	TeamID  string
	// Token shares one provider token between Senders that use the same key
	// (several apps of one team). Optional; when set, the key fields above
	// are ignored.
	Token *ProviderToken
	// TokenRefresh is the provider token's age at which it is re-signed:
	// between 20 and 55 minutes. Default 45 minutes.
	TokenRefresh time.Duration

	// Certificate auth: a .p12 or .pem file (by extension), or PEM bytes.
	CertFile     string
	CertPEM      []byte
	CertPassword string

	// Endpoint overrides Apple's host (the simulator's URL). Default: the
	// environment's host.
	Endpoint string
	// RootCAs trusts the endpoint's certificate (the simulator's). Default:
	// the system pool.
	RootCAs *x509.CertPool

	// Connections is the most HTTP/2 connections to open; the next is
	// dialled only when the open ones carry as many streams as the server
	// allows. Default 2.
	Connections int
	// Concurrency bounds sends in flight. Default 1000.
	Concurrency int
	// PingInterval: a connection silent this long is pinged. Default 15s.
	PingInterval time.Duration
	// PingTimeout: a ping unanswered this long closes the connection.
	// Default 15s.
	PingTimeout time.Duration
	// RequestTimeout bounds one send (immediate retries included) when the
	// caller's context has no earlier deadline; sends starting within a
	// sixteenth of it share one deadline, so a send gets between
	// RequestTimeout and 17/16 of it. Default 30s; negative disables.
	RequestTimeout time.Duration
	// ConnRetries is how often one send is re-sent after its connection
	// failed. Default 2.
	ConnRetries int
	// LowLatency turns Nagle's algorithm off (TCP_NODELAY). Off by default:
	// coalescing small frames doubles throughput under load, at up to 40 ms
	// per send when sends are sparse (see providers.DialTLS).
	LowLatency bool

	// Clock is the time provider tokens are issued and aged by, and that
	// message expirations (at Prepare and at each send), TTLs and the
	// certificate's expiry are measured against. Default time.Now.
	Clock func() time.Time
	// Halt, if set, is told about credential failures, and sends while
	// the app is halted for APNs fail at once without calling Apple (a
	// probe's excepted, see providers.WithProbe).
	Halt *providers.Halt
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.TokenRefresh == 0 {
		out.TokenRefresh = 45 * time.Minute
	}
	if out.Connections == 0 {
		out.Connections = 2
	}
	if out.Concurrency == 0 {
		out.Concurrency = 1000
	}
	if out.PingInterval == 0 {
		out.PingInterval = 15 * time.Second
	}
	if out.PingTimeout == 0 {
		out.PingTimeout = 15 * time.Second
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
	if out.Endpoint == "" {
		if out.Environment == Production {
			out.Endpoint = HostProduction
		} else {
			out.Endpoint = HostDevelopment
		}
	}
	return out
}

// Validate checks the config without reading files or dialing; the error
// names the field.
func (c *Config) Validate() error {
	if c.App == "" {
		return fmt.Errorf("apns: config App: required")
	}
	if c.Environment != Development && c.Environment != Production {
		return fmt.Errorf("apns: config Environment: must be %q or %q, got %q", Development, Production, c.Environment)
	}
	if c.Topic == "" {
		return fmt.Errorf("apns: config Topic: required (the app's bundle ID)")
	}
	token := c.Token != nil || c.KeyFile != "" || len(c.KeyPEM) > 0
	cert := c.CertFile != "" || len(c.CertPEM) > 0
	switch {
	case token && cert:
		return fmt.Errorf("apns: config KeyFile/KeyPEM and CertFile/CertPEM: choose token or certificate auth, not both")
	case !token && !cert:
		return fmt.Errorf("apns: config KeyFile/KeyPEM or CertFile/CertPEM: one credential is required")
	}
	if c.Token == nil && token {
		if c.KeyFile != "" && len(c.KeyPEM) > 0 {
			return fmt.Errorf("apns: config KeyFile and KeyPEM: set one, not both")
		}
		if len(c.KeyID) != 10 || !alnum(c.KeyID) {
			return fmt.Errorf("apns: config KeyID: must be Apple's 10-character key ID, got %q", c.KeyID)
		}
		if len(c.TeamID) != 10 || !alnum(c.TeamID) {
			return fmt.Errorf("apns: config TeamID: must be Apple's 10-character team ID, got %q", c.TeamID)
		}
	}
	if cert && c.CertFile != "" && len(c.CertPEM) > 0 {
		return fmt.Errorf("apns: config CertFile and CertPEM: set one, not both")
	}
	if c.TokenRefresh != 0 && (c.TokenRefresh < MinTokenRefresh || c.TokenRefresh > 55*time.Minute) {
		return fmt.Errorf("apns: config TokenRefresh: must be between 20m and 55m (Apple refuses tokens updated more often than every 20 minutes and expires them after 60), got %s", c.TokenRefresh)
	}
	if c.Connections < 0 || c.Connections > 64 {
		return fmt.Errorf("apns: config Connections: must be 1–64, got %d", c.Connections)
	}
	if c.Concurrency < 0 {
		return fmt.Errorf("apns: config Concurrency: must not be negative, got %d", c.Concurrency)
	}
	if c.PingInterval < 0 || c.PingTimeout < 0 {
		return fmt.Errorf("apns: config PingInterval/PingTimeout: must not be negative")
	}
	if c.ConnRetries < 0 {
		return fmt.Errorf("apns: config ConnRetries: must not be negative, got %d", c.ConnRetries)
	}
	return nil
}

func alnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}
