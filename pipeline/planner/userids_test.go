package planner

import (
	"context"
	"database/sql"
	"testing"
)

// A user id matches its own bytes only: "bob" is not "Bob" nor "bob ".
// With a case-insensitive column a campaign for one user reached another,
// and a list naming both (in different 500-id parts) sent to the same
// devices twice.
func testUserIDsMatchExactly(t *testing.T, db *sql.DB) {
	ctx := context.Background()
	for i, u := range []string{"bob", "Bob", "bob ", "BOB", "bób"} {
		if _, err := db.ExecContext(ctx, `INSERT INTO devices (app, platform, token, user_id) VALUES ('shop', 'ios', ?, ?)`,
			"tok"+string(rune('a'+i)), u); err != nil {
			t.Fatal(err)
		}
	}
	s := NewMySQLStore(db)
	t.Cleanup(func() { _ = s.Close() })
	for _, ids := range [][]string{{"bob"}, {"Bob"}, {"bob", "BOB"}} {
		var page Page
		if _, _, err := s.ReadDevices(ctx, AudienceQuery{App: "shop", UserIDs: ids}, 0, 0, 100, &page); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range page.Devices {
			got = append(got, string(d.UserID))
		}
		if len(got) != len(ids) {
			t.Errorf("user ids %q matched devices of %q", ids, got)
		}
	}
}

func TestUserIDsMatchExactly(t *testing.T) { onEachMySQL(t, testUserIDsMatchExactly) }
