package fcm_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/fcm"
)

// BenchmarkSend measures sends per second and CPU per send. With
// PUSHSIM_FCM_URL (see cmd/pushsim) it drives that external simulator;
// without, one in this process.
func BenchmarkSend(b *testing.B) {
	s := benchSender(b)
	p, err := s.Prepare(&providers.Message{Platform: providers.PlatformAndroid, Title: "Benchmark",
		Body: "A notification of ordinary size for a campaign.", Data: map[string]string{"campaign": "bench"},
		Priority: providers.PriorityHigh, TTL: time.Hour, AndroidChannel: "promo"})
	if err != nil {
		b.Fatal(err)
	}
	tokens := make([]string, b.N)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("bench-%0140d", i) // FCM tokens are about 150 characters
	}
	if r := p.Send(context.Background(), "warm-up", 1); r.Outcome != providers.Delivered {
		b.Fatal(r)
	}
	var next, failed atomic.Int64
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
				if r := p.Send(context.Background(), tokens[i], 1); r.Outcome != providers.Delivered {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d sends not delivered", n)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "sends/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/send")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchSender(b *testing.B) *fcm.Sender {
	url := os.Getenv("PUSHSIM_FCM_URL")
	if url == "" {
		sim, acct := startSim(b, nil)
		return newSender(b, sim, acct, func(c *fcm.Config) { c.App = "bench" })
	}
	ca, err := os.ReadFile(os.Getenv("PUSHSIM_FCM_CA"))
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	s, err := fcm.New(fcm.Config{App: "bench", ServiceAccountFile: os.Getenv("PUSHSIM_FCM_SERVICE_ACCOUNT"),
		Endpoint: url, RootCAs: pool}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}
