package mysqldb

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/testenv"
)

func TestOpenHidesThePasswordOfABadDSN(t *testing.T) {
	_, err := Open(config.MySQL{DSN: "user:s3cret@tcp(127.0.0.1:3306"}, 1)
	if err == nil || err.Error() != "mysql.dsn: not a valid DSN" {
		t.Fatalf("err = %v, want the DSN error without details", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatal("the password leaked into the error")
	}
}

func TestOpenNamesTheTLSKey(t *testing.T) {
	_, err := Open(config.MySQL{DSN: "u:p@tcp(127.0.0.1:3306)/db", TLS: config.TLS{Enabled: true, CAFile: "/nonexistent/ca.pem"}}, 1)
	if err == nil || !strings.HasPrefix(err.Error(), "mysql.tls: ca_file: ") {
		t.Fatalf("err = %v, want it to name mysql.tls", err)
	}
}

func TestOpenParsesTimesAsUTC(t *testing.T) {
	dsn, _ := testenv.MySQL(t)
	db, err := Open(config.MySQL{DSN: dsn, MaxOpenConns: 3}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := db.Stats().MaxOpenConnections; got != 3 {
		t.Errorf("max open connections = %d, want 3", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var at time.Time
	if err := db.QueryRowContext(ctx, "SELECT CAST('2026-03-29 01:30:00' AS DATETIME)").Scan(&at); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC); !at.Equal(want) || at.Location() != time.UTC {
		t.Errorf("scanned %v, want %v in UTC", at, want)
	}
}

// A DSN that names another zone is overridden: every time the stages
// write and compare is UTC, and so must be the column defaults.
func TestOpenRunsTheSessionInUTC(t *testing.T) {
	dsn, _ := testenv.MySQL(t)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	// Other spellings of the name were sent beside ours, in map order:
	// some connections ran at -05:00 (which, by map order).
	for _, param := range []string{"time_zone", "TIME_ZONE", "@@session.time_zone", "@@time_zone"} {
		db, err := Open(config.MySQL{DSN: dsn + sep + param + "=%27-05%3A00%27"}, 1)
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxIdleConns(0) // a new connection, and a new SET, per query
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for range 32 {
			var zone string
			var now time.Time
			if err := db.QueryRowContext(ctx, "SELECT @@session.time_zone, CURRENT_TIMESTAMP(3)").Scan(&zone, &now); err != nil {
				t.Fatal(err)
			}
			if zone != "+00:00" {
				t.Errorf("%s: session time zone %q, want +00:00", param, zone)
				break
			}
			if d := time.Since(now); d < -time.Minute || d > time.Minute {
				t.Errorf("%s: CURRENT_TIMESTAMP read as %v, %v from now: the session is not in UTC", param, now, d)
				break
			}
		}
		cancel()
		db.Close()
	}
}

// openTestMySQL opens the test server with Open's defaults; both are
// closed at cleanup.
func openTestMySQL(t *testing.T) (*sql.DB, context.Context) {
	t.Helper()
	dsn, _ := testenv.MySQL(t)
	db, err := Open(config.MySQL{DSN: dsn}, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return db, ctx
}

// Times go out cut to the millisecond, what DATETIME(3) holds: the server
// sees the same literal whether it would round (MySQL 8) or truncate
// (MariaDB) a longer one.
func TestOpenSendsTimesToTheMillisecond(t *testing.T) {
	db, ctx := openTestMySQL(t)
	var sent string
	at := time.Date(2026, 3, 29, 10, 0, 0, 999_600_000, time.UTC)
	if err := db.QueryRowContext(ctx, "SELECT CAST(? AS CHAR)", at).Scan(&sent); err != nil {
		t.Fatal(err)
	}
	if sent != "2026-03-29 10:00:00.999" {
		t.Errorf("the server received %q, want 2026-03-29 10:00:00.999", sent)
	}
}

// Statements with arguments go out as one query: the server prepares
// nothing, and binary arguments and times arrive intact.
func TestOpenSendsArgumentsInTheQuery(t *testing.T) {
	db, ctx := openTestMySQL(t)
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	prepared := func() int {
		var name string
		var n int
		if err := conn.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Com_stmt_prepare'").Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := prepared()
	blob := []byte{0, '\'', '\\', 0xff, '\n'}
	at := time.Date(2026, 11, 27, 3, 4, 5, 600_000_000, time.UTC)
	var gotBlob []byte
	var gotAt time.Time
	if err := conn.QueryRowContext(ctx, "SELECT ?, CAST(? AS DATETIME(3))", blob, at).Scan(&gotBlob, &gotAt); err != nil {
		t.Fatal(err)
	}
	if string(gotBlob) != string(blob) || !gotAt.Equal(at) {
		t.Errorf("read back %q %v, want %q %v", gotBlob, gotAt, blob, at)
	}
	if n := prepared() - before; n != 0 {
		t.Errorf("%d statements prepared for one query with arguments, want 0", n)
	}
}

// Open escapes arguments in the client, which gbk, sjis, big5 and the like
// undo; the driver itself refuses only an unsafe collation, not a charset,
// so Open refuses both, whether or not the DSN passed config validation.
func TestOpenRefusesCharsetsUnsafeForClientSideArguments(t *testing.T) {
	reason := "arguments are escaped in the client (interpolateParams), and in those charsets a quote so escaped can end a string"
	for _, c := range []struct{ params, want string }{
		{"charset=gbk", "mysql.dsn: charset must not be big5, cp932, gb2312, gbk, gb18030 or sjis: " + reason},
		{"charset=utf8mb4,sjis", "mysql.dsn: charset must not be big5, cp932, gb2312, gbk, gb18030 or sjis: " + reason},
		{"collation=gbk_chinese_ci", "mysql.dsn: collation must not belong to big5, cp932, gb2312, gbk, gb18030 or sjis: " + reason},
		{"character_set_client=big5", "mysql.dsn: character_set_client must not be big5, cp932, gb2312, gbk, gb18030 or sjis: " + reason},
	} {
		db, err := Open(config.MySQL{DSN: "u:s3cret@tcp(127.0.0.1:3306)/db?" + c.params}, 1)
		if err == nil {
			db.Close()
		}
		if err == nil || err.Error() != c.want {
			t.Errorf("%s:\n got  %v\nwant %s", c.params, err, c.want)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the password leaked into the error", c.params)
		}
	}
	db, err := Open(config.MySQL{DSN: "u:s3cret@tcp(127.0.0.1:3306)/db?charset=utf8mb4&collation=utf8mb4_unicode_ci"}, 1)
	if err != nil {
		t.Fatalf("a utf8mb4 DSN: %v", err)
	}
	db.Close()
}
