package planner

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"
)

// A reason longer than the campaigns table's column is cut at a character
// and marked: half a character is invalid UTF-8, which a strict MySQL
// refuses, and the campaign's record would be retried for ever.
func TestSaveCutsALongReasonAtACharacter(t *testing.T) {
	s := newMemStore()
	p := &Planner{store: s}
	reason := strings.Repeat("x", 1020) + strings.Repeat("é", 10)
	if err := p.save(context.Background(), CampaignRecord{ID: "c", Version: 1, Reason: reason}); err != nil {
		t.Fatal(err)
	}
	r, _ := s.campaign("c", 1)
	if want := strings.Repeat("x", 1020) + "..."; r.Reason != want || !utf8.ValidString(r.Reason) || len(r.Reason) > 1024 {
		t.Errorf("saved reason %q (%d bytes), want the 1020 x and ...", r.Reason[1010:], len(r.Reason))
	}
}
