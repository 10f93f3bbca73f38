package fcm_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"golang.org/x/net/http2"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"
	"google.golang.org/api/option"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/fcm"
)

// benchMessage is the notification every benchmark sends.
func benchMessage() *providers.Message {
	return &providers.Message{Platform: providers.PlatformAndroid, Title: "Benchmark",
		Body: "A notification of ordinary size for a campaign.", Data: map[string]string{"campaign": "bench"},
		Priority: providers.PriorityHigh, TTL: time.Hour, AndroidChannel: "promo"}
}

// BenchmarkSend measures sends per second and CPU per send of the sender:
// the message prepared once, then sent to a distinct token each time from
// 200 goroutines. With PUSHSIM_FCM_URL (see cmd/pushsim) it drives that
// external simulator, so scripts/bench-providers can pin the simulator and
// the sender to separate cores; without, one in this process (then CPU per
// send includes the simulator's).
func BenchmarkSend(b *testing.B) { benchSend(b, benchMessage()) }

// benchSend prepares m once and sends it to the benchmark's devices.
func benchSend(b *testing.B, m *providers.Message) {
	env := benchTarget(b)
	s, err := fcm.New(fcm.Config{App: "bench", ServiceAccountJSON: env.account, Endpoint: env.url, RootCAs: env.pool,
		QuotaPerMinute: benchQuota}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	p, err := s.Prepare(m)
	if err != nil {
		b.Fatal(err)
	}
	runBench(b, func(ctx context.Context, token string) error {
		if r := p.Send(ctx, token, 1); r.Outcome != providers.Delivered {
			return fmt.Errorf("%s %s: %v", r.Outcome, r.Reason, r.Err)
		}
		return nil
	})
}

// BenchmarkSendSDK is the same load through firebase-admin-go's
// messaging.Client.Send, one call per device, the way the SDK is meant to
// be used at its fastest (docs/benchmarks.md): its HTTP client is two
// http2.Transports, Nagle on as the sender's, under oauth2.Transport with
// the service account's token source.
func BenchmarkSendSDK(b *testing.B) {
	env := benchTarget(b)
	var sa struct {
		ClientEmail  string `json:"client_email"`
		PrivateKey   string `json:"private_key"`
		PrivateKeyID string `json:"private_key_id"`
		TokenURI     string `json:"token_uri"`
	}
	if err := json.Unmarshal(env.account, &sa); err != nil {
		b.Fatal(err)
	}
	var conns roundRobin
	for range 2 {
		conns.ts = append(conns.ts, &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: env.pool},
			DialTLSContext: providers.DialTLS(false)})
	}
	jc := &jwt.Config{Email: sa.ClientEmail, PrivateKey: []byte(sa.PrivateKey), PrivateKeyID: sa.PrivateKeyID,
		Scopes: []string{fcm.Scope}, TokenURL: sa.TokenURI}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: &conns})
	hc := &http.Client{Transport: &oauth2.Transport{Source: jc.TokenSource(ctx), Base: &conns}}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: env.project}, option.WithHTTPClient(hc),
		option.WithEndpoint(env.url+"/v1"))
	if err != nil {
		b.Fatal(err)
	}
	mc, err := app.Messaging(ctx)
	if err != nil {
		b.Fatal(err)
	}
	ttl := time.Hour
	msg := messaging.Message{Data: map[string]string{"campaign": "bench"},
		Notification: &messaging.Notification{Title: "Benchmark", Body: "A notification of ordinary size for a campaign."},
		Android: &messaging.AndroidConfig{Priority: "high", TTL: &ttl,
			Notification: &messaging.AndroidNotification{ChannelID: "promo"}}}
	runBench(b, func(ctx context.Context, token string) error {
		m := msg
		m.Token = token
		_, err := mc.Send(ctx, &m)
		return err
	})
}

type roundRobin struct {
	ts   []*http2.Transport
	next atomic.Uint64
}

func (r *roundRobin) RoundTrip(req *http.Request) (*http.Response, error) {
	return r.ts[r.next.Add(1)%uint64(len(r.ts))].RoundTrip(req)
}

// runBench warms up with one send, then sends b.N distinct tokens from 200
// goroutines and reports sends/s and the process's CPU µs per send.
func runBench(b *testing.B, send func(ctx context.Context, token string) error) {
	tokens := make([]string, b.N)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("bench-%0140d", i) // FCM tokens are about 150 characters
	}
	if err := send(context.Background(), "warm-up"); err != nil {
		b.Fatal(err)
	}
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(tokens)) {
					return
				}
				if err := send(context.Background(), tokens[i]); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d sends not delivered, first: %v", n, firstErr.Load())
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "sends/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/send")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchQuota lifts the project quota out of the way: the default, 600,000
// a minute, would cap the sender at 10,000 sends/s, below what the
// simulator can take on a quiet machine, and the benchmark measures the
// sender, not the quota. The bucket is still consulted on every send.
const benchQuota = 600_000_000

type benchEnv struct {
	url, project string
	pool         *x509.CertPool
	account      []byte // service-account JSON
}

func benchTarget(b *testing.B) benchEnv {
	url := os.Getenv("PUSHSIM_FCM_URL")
	if url == "" {
		sim, acct := startSim(b, nil)
		return benchEnv{url: sim.URL(), project: project, pool: sim.CertPool(), account: acct.JSON}
	}
	ca, err := os.ReadFile(os.Getenv("PUSHSIM_FCM_CA"))
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	acct, err := os.ReadFile(os.Getenv("PUSHSIM_FCM_SERVICE_ACCOUNT"))
	if err != nil {
		b.Fatal(err)
	}
	return benchEnv{url: url, project: os.Getenv("PUSHSIM_FCM_PROJECT"), pool: pool, account: acct}
}
