package fcm_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/oauth2"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/fcm"
	"github.com/pushlane/pushlane/providers/fcmsim"
	"github.com/pushlane/pushlane/providers/internal/sendtest"
)

// prepared is the notification prepared once, as the dispatcher sends it.
func prepared(t *testing.T, s *fcm.Sender) providers.Prepared {
	t.Helper()
	p, err := s.Prepare(note())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func loadToken(i int) string { return fmt.Sprintf("dev-%05d", i) }

// Graceful GOAWAYs, per connection and to every connection at once, while
// hundreds of requests are in flight: each device exactly once. Requests
// the server did not take are re-sent; none it took is.
func TestGoAwayAllMidLoadLosesAndDuplicatesNothing(t *testing.T) {
	sim, acct := startSim(t, func(c *fcmsim.Config) { c.Record = false })
	s := newSender(t, sim, acct, nil)
	sim.SetFault(fcmsim.Fault{GoAwayAfter: 150})
	sendtest.GoAwayMidLoad(t, sim, prepared(t, s), loadToken, 3000, 200)
}

func TestDeadConnectionsAreReSentNotDropped(t *testing.T) {
	sim, acct := startSim(t, func(c *fcmsim.Config) { c.Record = false })
	s := newSender(t, sim, acct, nil)
	sendtest.DropsMidLoad(t, sim, prepared(t, s), loadToken, 1500, 100, 300)
}

func TestUnreachableEndpointIsRetryableTransportError(t *testing.T) {
	sim, acct := startSim(t, nil)
	// The access token comes from the simulator; the sends go nowhere.
	s := newSender(t, sim, acct, func(c *fcm.Config) { c.Endpoint = "https://127.0.0.1:1" })
	m := note()
	m.Token = "t-1"
	r := s.Send(context.Background(), m, 4)
	if r.Outcome != providers.Retryable || r.Reason != "TransportError" || r.Attempt != 4 || r.Err == nil {
		t.Fatalf("result = %+v", r)
	}
}

func TestCanceledContextAndRequestTimeout(t *testing.T) {
	sim, acct := startSim(t, nil)
	s := newSender(t, sim, acct, func(c *fcm.Config) { c.RequestTimeout = 100 * time.Millisecond })
	m := note()
	m.Token = "t-1"
	// Fetch the access token and open the connection first; on a slow
	// machine (-race) that alone can take longer than RequestTimeout.
	for i := 0; ; i++ {
		r := s.Send(context.Background(), m, 1)
		if r.Outcome == providers.Delivered {
			break
		}
		if i == 20 {
			t.Fatal(r)
		}
	}
	sim.SetFault(fcmsim.Fault{Latency: 3 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := s.Send(ctx, m, 1)
	if r.Outcome != providers.Retryable || r.Reason != "Canceled" || time.Since(start) > 2*time.Second {
		t.Fatalf("caller's deadline: %+v after %s", r, time.Since(start))
	}
	start = time.Now()
	r = s.Send(context.Background(), m, 1)
	if r.Outcome != providers.Retryable || r.Reason != "Canceled" || !strings.Contains(r.Err.Error(), "deadline exceeded") ||
		time.Since(start) > 2*time.Second {
		t.Fatalf("RequestTimeout: %+v after %s", r, time.Since(start))
	}
}

// Config.HTTPClient replaces the sender's own connections, for the token
// endpoint too.
func TestOwnHTTPClient(t *testing.T) {
	sim, acct := startSim(t, nil)
	var dials atomic.Int32
	hc := &http.Client{Transport: &http2.Transport{
		TLSClientConfig: &tls.Config{RootCAs: sim.CertPool()},
		DialTLSContext: func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
			dials.Add(1)
			return (&tls.Dialer{Config: cfg}).DialContext(ctx, network, addr)
		},
	}}
	s := newSender(t, sim, acct, func(c *fcm.Config) { c.HTTPClient = hc; c.RootCAs = nil })
	p, err := s.Prepare(note())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if r := p.Send(context.Background(), fmt.Sprintf("own-%d", i), 1); r.Outcome != providers.Delivered {
			t.Fatalf("send %d: %+v", i, r)
		}
	}
	if dials.Load() == 0 || sim.TokenRequests() != 1 || sim.Counts().Accepted != 5 {
		t.Fatalf("dials %d, token requests %d, accepted %d", dials.Load(), sim.TokenRequests(), sim.Counts().Accepted)
	}
}

// A token endpoint that accepts and never answers holds a send no longer
// than the send's context: oauth2 fetches without a context, so the fetch
// runs aside and the send stops waiting for it.
func TestSilentTokenEndpointDoesNotOutlastTheSend(t *testing.T) {
	sim, acct := startSim(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	s := newSender(t, sim, acct, func(c *fcm.Config) {
		c.TokenURL = "http://" + ln.Addr().String() + "/token"
		c.RequestTimeout = time.Second
	})
	m := note()
	m.Token = "t-1"
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := s.Send(ctx, m, 1)
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Send returned %s after its 500ms context", took.Round(time.Millisecond))
	}
	if r.Outcome != providers.Retryable || r.Reason != "Canceled" || !strings.Contains(r.Err.Error(), "token endpoint") {
		t.Fatalf("send while the token endpoint is silent: %+v", r)
	}
	if n := sim.Counts().Requests; n != 0 {
		t.Errorf("%d requests reached FCM without an access token", n)
	}
}

// blockingSource is a token source whose Token waits for release and
// counts its calls.
type blockingSource struct {
	calls   atomic.Int32
	release chan struct{}
}

func (b *blockingSource) Token() (*oauth2.Token, error) {
	b.calls.Add(1)
	<-b.release
	return &oauth2.Token{AccessToken: "ya29.released", Expiry: time.Now().Add(time.Hour)}, nil
}

// While the token source hangs, every send waits for the one fetch under
// way: sends that give up do not leave a fetch each behind them.
func TestSendsWaitForOneTokenFetch(t *testing.T) {
	sim, acct := startSim(t, nil)
	src := &blockingSource{release: make(chan struct{})}
	s := newSender(t, sim, acct, func(c *fcm.Config) { c.ServiceAccountJSON, c.TokenSource, c.ProjectID = nil, src, project })
	m := note()
	m.Token = "t-1"
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			defer cancel()
			if r := s.Send(ctx, m, 1); r.Outcome != providers.Retryable || r.Reason != "Canceled" {
				t.Errorf("send while the source hangs: %+v", r)
			}
		}()
	}
	wg.Wait()
	if n := src.calls.Load(); n != 1 {
		t.Errorf("%d calls of the token source, want 1", n)
	}
	if grown := runtime.NumGoroutine() - before; grown > 10 {
		t.Errorf("%d goroutines left behind by 500 sends that gave up", grown)
	}
	close(src.release)
	// The fetch ends; the next send uses its token (the simulator does not
	// know it, so FCM answers 401 and the sender asks the source again).
	s.Send(context.Background(), m, 1)
	if n := src.calls.Load(); n > 3 {
		t.Errorf("%d calls of the token source after the release", n)
	}
}

// cutBody gives the first bytes of a body, then fails, as a connection
// lost in the middle of an answer.
type cutBody struct {
	r    io.ReadCloser
	left int
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errors.New("connection reset in the middle of the answer")
	}
	n, err := b.r.Read(p[:min(len(p), b.left)])
	b.left -= n
	return n, err
}

func (b *cutBody) Close() error { return b.r.Close() }

type cutAnswers struct{ next http.RoundTripper }

func (c cutAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err == nil && strings.HasSuffix(r.URL.Path, ":send") {
		resp.Body = &cutBody{r: resp.Body, left: 10}
	}
	return resp, err
}

// Through Config.HTTPClient too, a 200 whose body is cut short is FCM
// taking the message: delivered, not failed and sent again.
func TestOwnHTTPClientSuccessCutShortIsDelivered(t *testing.T) {
	sim, acct := startSim(t, nil)
	hc := &http.Client{Transport: cutAnswers{next: &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: sim.CertPool()}}}}
	s := newSender(t, sim, acct, func(c *fcm.Config) { c.HTTPClient = hc; c.RootCAs = nil })
	p, err := s.Prepare(note())
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Send(context.Background(), "cut-1", 1); r.Outcome != providers.Delivered || r.Status != 200 {
		t.Fatalf("send: %+v, want delivered", r)
	}
	if c := sim.Counts(); c.Requests != 1 || c.Accepted != 1 {
		t.Errorf("simulator: %d requests, %d accepted; want 1 and 1 (no re-send)", c.Requests, c.Accepted)
	}
}
