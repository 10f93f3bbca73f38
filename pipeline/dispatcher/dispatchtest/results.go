package dispatchtest

import (
	"testing"

	"github.com/pushlane/pushlane/schemas"
)

// ByToken groups results by device token.
func ByToken(rs []schemas.Result) map[string][]schemas.Result {
	out := map[string][]schemas.Result{}
	for _, r := range rs {
		out[r.Token] = append(out[r.Token], r)
	}
	return out
}

// CountOutcome checks that every token has exactly one result and counts
// the tokens whose (first) result has outcome.
func CountOutcome(t testing.TB, rs []schemas.Result, outcome string) int {
	t.Helper()
	n := 0
	for tok, r := range ByToken(rs) {
		if len(r) != 1 {
			t.Errorf("%s: %d results", tok, len(r))
		}
		if r[0].Outcome == outcome {
			n++
		}
	}
	return n
}
