package apns_test

import (
	"context"
	"crypto/x509"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pushlane/pushlane/providers"
	"github.com/pushlane/pushlane/providers/apns"
)

// BenchmarkSend measures sends per second and CPU per send of the sender.
// With PUSHSIM_APNS_URL (and the other PUSHSIM_* variables cmd/pushsim
// writes) it drives that external simulator, so scripts/bench-providers can
// pin the simulator and the sender to separate cores; without, it starts one
// in this process (then CPU per send includes the simulator's).
func BenchmarkSend(b *testing.B) {
	s := benchSender(b)
	badge := 1
	p, err := s.Prepare(&providers.Message{Title: "Benchmark", Body: "A notification of ordinary size for a campaign.",
		Badge: &badge, Sound: "default", Data: map[string]string{"campaign": "bench"}})
	if err != nil {
		b.Fatal(err)
	}
	workers := 200
	tokens := make([]string, b.N)
	for i := range tokens {
		tokens[i] = tok("b", i)
	}
	// Open the connections before timing.
	if r := p.Send(context.Background(), tok("e", 0), 1); r.Outcome != providers.Delivered {
		b.Fatal(r)
	}
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range workers {
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

func benchSender(b *testing.B) *apns.Sender {
	url := os.Getenv("PUSHSIM_APNS_URL")
	if url == "" {
		sim, key := startSim(b, nil)
		b.Cleanup(func() { _ = sim.Close() })
		s, err := apns.New(apns.Config{App: "bench", Environment: apns.Development, Topic: topic, KeyPEM: key.PEM,
			KeyID: key.KeyID, TeamID: key.TeamID, Endpoint: sim.URL(), RootCAs: sim.CertPool()}, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	ca, err := os.ReadFile(os.Getenv("PUSHSIM_APNS_CA"))
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	s, err := apns.New(apns.Config{App: "bench", Environment: apns.Development, Topic: os.Getenv("PUSHSIM_APNS_TOPIC"),
		KeyFile: os.Getenv("PUSHSIM_APNS_KEY"), KeyID: os.Getenv("PUSHSIM_APNS_KEY_ID"), TeamID: os.Getenv("PUSHSIM_APNS_TEAM_ID"),
		Endpoint: url, RootCAs: pool}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}
