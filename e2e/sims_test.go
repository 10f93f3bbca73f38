package e2e

import (
	"crypto/ecdsa"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pushlane/pushlane/providers/apnssim"
	"github.com/pushlane/pushlane/providers/fcmsim"
	"github.com/pushlane/pushlane/schemas"
)

// bundleID is the APNs topic of every test app.
const bundleID = "dev.pushlane.e2e"

// appSims are one app's APNs and FCM simulators, in the test process, so
// every accepted send is counted per token; the credentials a dispatcher
// needs are written to files, as real ones would be.
type appSims struct {
	App  string
	APNs *apnssim.Server
	FCM  *fcmsim.Server
	Key  *apnssim.TestKey
	// Files of the app's config.
	KeyFile, APNsCA, ServiceAccountFile, FCMCA string
	Project, ClientEmail                       string
}

// startSims starts the simulators of app with credentials in a new
// directory. They stop at cleanup.
func startSims(t testing.TB, app string) *appSims {
	t.Helper()
	dir := t.TempDir()
	s := &appSims{App: app, Project: "e2e-" + app}
	key, err := apnssim.NewTestKey()
	if err != nil {
		t.Fatal(err)
	}
	s.Key = key
	if s.KeyFile, err = key.WriteFile(dir); err != nil {
		t.Fatal(err)
	}
	// Several dispatcher processes (restarts, two instances) each sign their
	// own provider token with the one key; Apple's 20-minute update limit is
	// the providers' tests' business, not this package's.
	s.APNs, err = apnssim.New(apnssim.Config{
		Keys:        map[string]*ecdsa.PublicKey{key.KeyID: key.Public()},
		TeamID:      key.TeamID,
		Topics:      []string{bundleID},
		Environment: "development",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.APNs.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("e2e: start APNs simulator: %v", err)
	}
	t.Cleanup(func() { s.APNs.Close() })
	s.APNsCA = filepath.Join(dir, "apns-ca.pem")
	if err := os.WriteFile(s.APNsCA, s.APNs.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}

	// The account must be known to the simulator before it starts, and its
	// token_uri must name the running simulator: generate, start, rewrite.
	acct, err := fcmsim.NewTestServiceAccount(s.Project, "https://127.0.0.1/token")
	if err != nil {
		t.Fatal(err)
	}
	s.ClientEmail = acct.ClientEmail
	s.FCM, err = fcmsim.New(fcmsim.Config{Accounts: map[string]fcmsim.Account{acct.ClientEmail: acct.Account()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.FCM.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("e2e: start FCM simulator: %v", err)
	}
	t.Cleanup(func() { s.FCM.Close() })
	var sa map[string]any
	if err := json.Unmarshal(acct.JSON, &sa); err != nil {
		t.Fatal(err)
	}
	sa["token_uri"] = s.FCM.TokenURL()
	if acct.JSON, err = json.Marshal(sa); err != nil {
		t.Fatal(err)
	}
	if s.ServiceAccountFile, err = acct.WriteFile(dir); err != nil {
		t.Fatal(err)
	}
	s.FCMCA = filepath.Join(dir, "fcm-ca.pem")
	if err := os.WriteFile(s.FCMCA, s.FCM.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// appConfig is the app's section of a stage config.
func (s *appSims) appConfig() map[string]any {
	return map[string]any{
		"concurrency": 200,
		"apns": map[string]any{
			"environment": "development", "topic": bundleID,
			"key_file": s.KeyFile, "key_id": s.Key.KeyID, "team_id": s.Key.TeamID,
			"endpoint": s.APNs.URL(), "ca_file": s.APNsCA, "connections": 2,
		},
		"fcm": map[string]any{
			"project_id": s.Project, "service_account_file": s.ServiceAccountFile,
			"endpoint": s.FCM.URL(), "ca_file": s.FCMCA,
		},
	}
}

// accepted is how many sends the simulators accepted in total.
func (s *appSims) accepted() int64 {
	return s.APNs.Counts().Accepted + s.FCM.Counts().Accepted
}

// acceptedFor is how often the device's own provider accepted its token,
// and how often the other provider did (which must be never).
func (s *appSims) acceptedFor(d seededDevice) (own, other int) {
	if d.Platform == schemas.PlatformIOS {
		return s.APNs.AcceptedFor(d.Token), s.FCM.AcceptedFor(d.Token)
	}
	return s.FCM.AcceptedFor(d.Token), s.APNs.AcceptedFor(d.Token)
}

// setFault sets f on both simulators.
func (s *appSims) setFault(f apnssim.Fault) {
	s.APNs.SetFault(f)
	s.FCM.SetFault(f)
}

// deliveryTally is the simulators' truth about one population.
type deliveryTally struct {
	Live, Delivered     int // live devices, and those accepted at least once
	Lost                []string
	Duplicated          map[string]int // token → accepts, for accepts > 1
	DuplicateSends      int            // accepts beyond the first
	NotLiveAccepted     []string       // dead, suspect or invalid tokens accepted (never allowed)
	WrongProvider       []string       // tokens accepted by the other platform's provider
	TotalAccepted       int64          // everything the simulators accepted
	AcceptedOutsidePops int64          // accepted sends of tokens not in the population
}

// tally checks every device of pop against the simulators.
func (s *appSims) tally(pop *population) deliveryTally {
	tl := deliveryTally{Duplicated: map[string]int{}}
	var sum int64
	for _, d := range pop.Devices {
		own, other := s.acceptedFor(d)
		sum += int64(own + other)
		if other > 0 {
			tl.WrongProvider = append(tl.WrongProvider, d.Token)
		}
		if d.Kind != kindLive {
			if own > 0 {
				tl.NotLiveAccepted = append(tl.NotLiveAccepted, d.Token)
			}
			continue
		}
		tl.Live++
		switch {
		case own == 0:
			tl.Lost = append(tl.Lost, d.Token)
		case own > 1:
			tl.Duplicated[d.Token] = own
			tl.DuplicateSends += own - 1
			tl.Delivered++
		default:
			tl.Delivered++
		}
	}
	tl.TotalAccepted = s.accepted()
	tl.AcceptedOutsidePops = tl.TotalAccepted - sum
	return tl
}

// acceptWatch samples a simulator pair's accepted total often, so a test
// can tell when sends happened (the simulators keep counts, not times).
type acceptWatch struct {
	mu      sync.Mutex
	samples []acceptSample
	stop    chan struct{}
	done    chan struct{}
}

type acceptSample struct {
	At       time.Time
	Accepted int64
}

// watchAccepts samples every interval until stopped (at cleanup at the latest).
func watchAccepts(t testing.TB, s *appSims, interval time.Duration) *acceptWatch {
	w := &acceptWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		last := int64(-1)
		for {
			n := s.accepted()
			if n != last {
				w.mu.Lock()
				w.samples = append(w.samples, acceptSample{At: time.Now(), Accepted: n})
				w.mu.Unlock()
				last = n
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(w.Stop)
	return w
}

// Stop ends the sampling.
func (w *acceptWatch) Stop() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// First is when the count was first seen above zero (zero time if never).
func (w *acceptWatch) First() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.samples {
		if s.Accepted > 0 {
			return s.At
		}
	}
	return time.Time{}
}

// Last is when the count was last seen to change, and its value then.
func (w *acceptWatch) Last() acceptSample {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.samples) == 0 {
		return acceptSample{}
	}
	return w.samples[len(w.samples)-1]
}

// At returns the count as last sampled at or before t.
func (w *acceptWatch) At(t time.Time) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var n int64
	for _, s := range w.samples {
		if s.At.After(t) {
			break
		}
		n = s.Accepted
	}
	return n
}

// After returns the samples taken after t.
func (w *acceptWatch) After(t time.Time) []acceptSample {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []acceptSample
	for _, s := range w.samples {
		if s.At.After(t) {
			out = append(out, s)
		}
	}
	return out
}
