package dispatcher_test

import (
	"testing"
	"time"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/pipeline/dispatcher"
)

// dispatcher.results_linger reaches the results producer: unset is the
// default, 0 sends at once (Config's zero would be the default), and any
// other value is kept.
func TestConfigFromResultsLinger(t *testing.T) {
	for _, c := range []struct {
		env  []string
		want time.Duration
	}{
		{nil, 20 * time.Millisecond},
		{[]string{"PUSHLANE_DISPATCHER__RESULTS_LINGER=0s"}, 0},
		{[]string{"PUSHLANE_DISPATCHER__RESULTS_LINGER=5ms"}, 5 * time.Millisecond},
	} {
		cfg, err := config.Load("", c.env)
		if err != nil {
			t.Fatalf("%v: %v", c.env, err)
		}
		if got := dispatcher.ResultsLingerOf(dispatcher.ConfigFrom(cfg)); got != c.want {
			t.Errorf("%v: linger %v, want %v", c.env, got, c.want)
		}
	}
}
