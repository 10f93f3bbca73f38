package planner

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/pushlane/pushlane/internal/embedded"
	"github.com/pushlane/pushlane/internal/migrate"
	"github.com/pushlane/pushlane/internal/testenv"
)

// A replay of a campaign event after the campaign expired or was cancelled
// records a plan of nothing; it must not wipe the row of the plan that ran
// (its devices and batches, which pushctl stats and the feedback summary
// read). A record that planned something still replaces the row.
func testSaveCampaignKeepsThePlan(t *testing.T, db *sql.DB) {
	ctx := context.Background()
	s := NewMySQLStore(db)
	t.Cleanup(func() { _ = s.Close() })
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	planned := CampaignRecord{ID: "c", Version: 1, App: "shop", Status: StatusPlanned, Devices: 900, Batches: 9, InvalidTokens: 3,
		FirstSendAt: at, LastSendAt: at.Add(time.Minute), StartedAt: at, FinishedAt: at.Add(time.Second)}
	read := func() CampaignRecord {
		t.Helper()
		var r CampaignRecord
		if err := db.QueryRowContext(ctx, `SELECT status, planned_devices, planned_batches, invalid_tokens FROM campaigns WHERE id = 'c' AND version = 1`).
			Scan(&r.Status, &r.Devices, &r.Batches, &r.InvalidTokens); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if err := s.SaveCampaign(ctx, planned); err != nil {
		t.Fatal(err)
	}
	replay := CampaignRecord{ID: "c", Version: 1, App: "shop", Status: StatusExpired, Reason: "expired before planning",
		StartedAt: at.Add(time.Hour), FinishedAt: at.Add(time.Hour)}
	if err := s.SaveCampaign(ctx, replay); err != nil {
		t.Fatal(err)
	}
	if r := read(); r.Status != StatusPlanned || r.Devices != 900 || r.Batches != 9 || r.InvalidTokens != 3 {
		t.Errorf("after an empty replay: %+v, want the plan (planned, 900 devices, 9 batches, 3 invalid)", r)
	}
	// The same plan again, or a cancel part-way with what it planned,
	// is written.
	partial := planned
	partial.Status, partial.Devices, partial.Batches = StatusCancelled, 400, 4
	if err := s.SaveCampaign(ctx, partial); err != nil {
		t.Fatal(err)
	}
	if r := read(); r.Status != StatusCancelled || r.Devices != 400 || r.Batches != 4 {
		t.Errorf("after a cancel with totals: %+v, want cancelled, 400, 4", r)
	}
	// A campaign that never planned anything takes the later record.
	empty := replay
	empty.ID = "e"
	if err := s.SaveCampaign(ctx, empty); err != nil {
		t.Fatal(err)
	}
	empty.Status = StatusCancelled
	if err := s.SaveCampaign(ctx, empty); err != nil {
		t.Fatal(err)
	}
	var status string
	if err := db.QueryRowContext(ctx, `SELECT status FROM campaigns WHERE id = 'e'`).Scan(&status); err != nil || status != StatusCancelled {
		t.Errorf("empty campaign status %q (%v), want cancelled", status, err)
	}
}

func TestSaveCampaignKeepsThePlan(t *testing.T) { onEachMySQL(t, testSaveCampaignKeepsThePlan) }

// onEachMySQL runs fn on the embedded go-mysql-server (the demo's store)
// and on the MariaDB of deploy/local, each migrated.
func onEachMySQL(t *testing.T, fn func(t *testing.T, db *sql.DB)) {
	t.Run("go-mysql-server", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := embedded.StartStore(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		fn(t, st.DB)
	})
	t.Run("mariadb", func(t *testing.T) {
		_, db := testenv.MySQL(t)
		if _, err := migrate.MySQL(context.Background(), db); err != nil {
			t.Fatal(err)
		}
		fn(t, db)
	})
}

// LatestCampaign is how the planner tells a replayed campaign record from
// a new one: the newest row at or above the record's version, through the
// primary key, on every server the planner runs against.
func testLatestCampaign(t *testing.T, db *sql.DB) {
	ctx := context.Background()
	s := NewMySQLStore(db)
	t.Cleanup(func() { _ = s.Close() })
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for _, r := range []CampaignRecord{
		{ID: "a", Version: 1, App: "shop", Status: StatusPlanned, Devices: 9, Batches: 1, StartedAt: at, FinishedAt: at},
		{ID: "a", Version: 3, App: "shop", Status: StatusCancelled, StartedAt: at, FinishedAt: at},
		{ID: "ab", Version: 7, App: "shop", Status: StatusFailed, StartedAt: at, FinishedAt: at},
	} {
		if err := s.SaveCampaign(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		id      string
		version int
		want    StoredCampaign
		found   bool
	}{
		{"a", 1, StoredCampaign{3, StatusCancelled}, true}, // superseded by v3
		{"a", 2, StoredCampaign{3, StatusCancelled}, true},
		{"a", 3, StoredCampaign{3, StatusCancelled}, true},
		{"a", 4, StoredCampaign{}, false},
		{"ab", 1, StoredCampaign{7, StatusFailed}, true},
		{"b", 1, StoredCampaign{}, false},
		{"A", 1, StoredCampaign{}, false}, // ids are ascii_bin: case matters
	} {
		got, found, err := s.LatestCampaign(ctx, tc.id, tc.version)
		if err != nil || found != tc.found || got != tc.want {
			t.Errorf("LatestCampaign(%q, %d) = %+v, %v, %v; want %+v, %v", tc.id, tc.version, got, found, err, tc.want, tc.found)
		}
	}
}

func TestLatestCampaign(t *testing.T) { onEachMySQL(t, testLatestCampaign) }
