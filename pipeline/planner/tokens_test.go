package planner

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"testing"

	"github.com/pushlane/pushlane/schemas"
)

// A token list may name tokens no device can have: not ASCII, or longer
// than devices.token. They are left out of the audience query, whose
// MariaDB and MySQL 8 would refuse a non-ASCII value against the ascii_bin
// column (error 1270) on every retry, and returned to be reported.
func testUnstoredTokensAreNotQueried(t *testing.T, db *sql.DB) {
	ctx := context.Background()
	for _, tok := range []string{"tok1", "tok2", strings.Repeat("x", 512)} {
		if _, err := db.ExecContext(ctx, `INSERT INTO devices (app, platform, token) VALUES ('shop', 'android', ?)`, tok); err != nil {
			t.Fatal(err)
		}
	}
	s := NewMySQLStore(db)
	t.Cleanup(func() { _ = s.Close() })
	long := strings.Repeat("x", 513)
	c := &schemas.Campaign{ID: "c", App: "shop", Audience: schemas.Audience{Type: schemas.AudienceTokens,
		Tokens: []string{"tok1", "café", long, "tok2", "日本", "café", strings.Repeat("x", 512), "\u0080"}}}
	read := func(parts []AudienceQuery) []string {
		t.Helper()
		var got []string
		for i, q := range parts {
			var page Page
			if _, _, err := s.ReadDevices(ctx, q, i, 0, 100, &page); err != nil {
				t.Fatalf("part %d: %v", i, err)
			}
			for _, d := range page.Devices {
				got = append(got, string(d.Token))
			}
		}
		return got
	}
	parts, unstored := audienceParts(c)
	if got, want := read(parts), []string{"tok1", "tok2", strings.Repeat("x", 512)}; !slices.Equal(got, want) {
		t.Errorf("devices %q, want %q", got, want)
	}
	if want := []string{"café", long, "日本", "\u0080"}; !slices.Equal(unstored, want) {
		t.Errorf("unstored %q, want %q", unstored, want)
	}
	// A list of nothing but such tokens has no part: not the whole app.
	c.Audience.Tokens = []string{"café", long}
	parts, unstored = audienceParts(c)
	if len(parts) != 0 || len(unstored) != 2 {
		t.Errorf("all unstored: %d parts, %d unstored", len(parts), len(unstored))
	}
}

func TestUnstoredTokensAreNotQueried(t *testing.T) { onEachMySQL(t, testUnstoredTokensAreNotQueried) }

func TestTokenSample(t *testing.T) {
	got := tokenSample([]string{strings.Repeat("é", 30), "a", "b", "c"})
	want := []string{strings.Repeat("é", 24) + "...", "a", "b"}
	if !slices.Equal(got, want) {
		t.Errorf("%q, want %q", got, want)
	}
}
