package migrate

import (
	"context"
	"database/sql"
	"io/fs"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/schemas"
)

func TestSplit(t *testing.T) {
	got := Split(`-- a comment; with a semicolon;
CREATE TABLE IF NOT EXISTS a (
  id INT, -- trailing comment stays with its line
  note VARCHAR(10) DEFAULT 'x;y'
);

  -- indented comment
CREATE TABLE IF NOT EXISTS b (id INT);
INSERT INTO b VALUES (1)`)
	want := []string{
		"CREATE TABLE IF NOT EXISTS a (\n  id INT, -- trailing comment stays with its line\n  note VARCHAR(10) DEFAULT 'x;y'\n)",
		"CREATE TABLE IF NOT EXISTS b (id INT)",
		"INSERT INTO b VALUES (1)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Split:\n got %q\nwant %q", got, want)
	}
	if got := Split("\n-- only comments\n\n"); len(got) != 0 {
		t.Errorf("Split of comments: %q", got)
	}
}

// migrationNames lists the embedded migrations the way migrate names them.
func migrationNames(t *testing.T, fsys fs.FS) []string {
	t.Helper()
	files, err := list(fsys)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.name)
	}
	if len(names) == 0 {
		t.Fatal("no migrations embedded")
	}
	return names
}

var createStmt = regexp.MustCompile(`(?is)^\s*CREATE\s+(TABLE|DATABASE|VIEW|MATERIALIZED\s+VIEW|INDEX|UNIQUE\s+INDEX)\s`)

// TestFilesKeepTheirPromises checks the DDL files' form: numbered names,
// statements that split cleanly, and every CREATE guarded by IF NOT
// EXISTS, which is what makes a re-run after a crash harmless.
func TestFilesKeepTheirPromises(t *testing.T) {
	name := regexp.MustCompile(`^[0-9]{4}_[a-z0-9_]+$`)
	for store, fsys := range map[string]fs.FS{"mysql": schemas.MySQLMigrations(), "clickhouse": schemas.ClickHouseMigrations()} {
		files, err := list(fsys)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, f := range files {
			if !name.MatchString(f.name) {
				t.Errorf("%s/%s.sql: want NNNN_lower_snake.sql", store, f.name)
			}
			if seen[f.name[:4]] {
				t.Errorf("%s: two migrations numbered %s", store, f.name[:4])
			}
			seen[f.name[:4]] = true
			if len(f.statements) == 0 {
				t.Errorf("%s/%s.sql has no statement", store, f.name)
			}
			for i, stmt := range f.statements {
				if createStmt.MatchString(stmt) && !strings.Contains(strings.ToUpper(stmt), "IF NOT EXISTS") {
					t.Errorf("%s/%s.sql statement %d creates without IF NOT EXISTS: %.60s", store, f.name, i+1, stmt)
				}
				if store == "clickhouse" && !strings.Contains(stmt, "${database}") {
					t.Errorf("clickhouse/%s.sql statement %d does not name ${database}: %.60s", f.name, i+1, stmt)
				}
			}
		}
	}
}

func recorded(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMySQLTwiceAppliesOnce(t *testing.T) {
	_, db := testenv.MySQL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	all := migrationNames(t, schemas.MySQLMigrations())

	applied, err := MySQL(ctx, db)
	if err != nil {
		t.Fatalf("first run: %v (applied %v)", err, applied)
	}
	if !slices.Equal(applied, all) {
		t.Errorf("first run applied %v, want every migration %v", applied, all)
	}
	applied, err = MySQL(ctx, db)
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if len(applied) != 0 {
		t.Errorf("second run applied %v, want nothing", applied)
	}
	if got := recorded(t, db); !slices.Equal(got, all) {
		t.Errorf("schema_migrations %v, want %v", got, all)
	}
	// The devices table the planner reads is there, with its keys.
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.statistics
		WHERE table_schema = DATABASE() AND table_name = 'devices' AND index_name IN ('PRIMARY', 'uq_app_token', 'ix_audience')`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n < 3 {
		t.Errorf("devices has %d of its index columns, want at least 3", n)
	}
}

// TestMySQLRerunAfterCrash forgets what was recorded, as a crash between a
// file's DDL and its record would, and runs again: every statement must
// run a second time without error.
func TestMySQLRerunAfterCrash(t *testing.T) {
	_, db := testenv.MySQL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	all := migrationNames(t, schemas.MySQLMigrations())
	if _, err := MySQL(ctx, db); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `DELETE FROM schema_migrations`); err != nil {
		t.Fatal(err)
	}
	applied, err := MySQL(ctx, db)
	if err != nil {
		t.Fatalf("re-running the DDL on an existing schema: %v", err)
	}
	if !slices.Equal(applied, all) {
		t.Errorf("re-run applied %v, want %v", applied, all)
	}
}

// TestMySQLConcurrentRuns: every stage may migrate at start-up, so several
// may run at once on an empty database.
func TestMySQLConcurrentRuns(t *testing.T) {
	_, db := testenv.MySQL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	all := migrationNames(t, schemas.MySQLMigrations())
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = MySQL(ctx, db)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("run %d: %v", i, err)
		}
	}
	if got := recorded(t, db); !slices.Equal(got, all) {
		t.Errorf("schema_migrations %v, want each of %v once", got, all)
	}
}

func TestMySQLHonoursCancellation(t *testing.T) {
	_, db := testenv.MySQL(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	applied, err := MySQL(ctx, db)
	if err == nil || !strings.HasPrefix(err.Error(), "migrate mysql: create schema_migrations: ") || len(applied) != 0 {
		t.Errorf("cancelled run: %v %v", applied, err)
	}
}

func TestClickHouseTwiceAppliesOnce(t *testing.T) {
	_, database, conn := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	all := migrationNames(t, schemas.ClickHouseMigrations())

	applied, err := ClickHouse(ctx, conn, database)
	if err != nil {
		t.Fatalf("first run: %v (applied %v)", err, applied)
	}
	if !slices.Equal(applied, all) {
		t.Errorf("first run applied %v, want %v", applied, all)
	}
	applied, err = ClickHouse(ctx, conn, database)
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if len(applied) != 0 {
		t.Errorf("second run applied %v, want nothing", applied)
	}
	rows, err := conn.Query(ctx, "SELECT version FROM "+database+".schema_migrations FINAL ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	rows.Close()
	if !slices.Equal(got, all) {
		t.Errorf("schema_migrations %v, want %v", got, all)
	}

	// Forget the record, as a crash before it would: the DDL re-runs.
	if err := conn.Exec(ctx, "DROP TABLE "+database+".schema_migrations"); err != nil {
		t.Fatal(err)
	}
	applied, err = ClickHouse(ctx, conn, database)
	if err != nil {
		t.Fatalf("re-running the DDL on existing tables: %v", err)
	}
	if !slices.Equal(applied, all) {
		t.Errorf("re-run applied %v, want %v", applied, all)
	}
	var tables []string
	trows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ?", database)
	if err != nil {
		t.Fatal(err)
	}
	for trows.Next() {
		var n string
		if err := trows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	trows.Close()
	sort.Strings(tables)
	if !slices.Contains(tables, "schema_migrations") || len(tables) < 2 {
		t.Errorf("tables after migrating: %v", tables)
	}
}

func TestClickHouseRefusesBadDatabaseNames(t *testing.T) {
	for _, name := range []string{"", "a.b", "a;DROP", "a b", "`x`"} {
		_, err := ClickHouse(context.Background(), nil, name)
		if want := `migrate clickhouse: invalid database name "` + name + `"`; err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %s", name, err, want)
		}
	}
}
