// Package mysqldb opens the device store the way every stage needs it:
// times parsed and sessions run in UTC, TLS from config, a bounded pool, and DSN errors that
// never echo the password.
package mysqldb

import (
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/pipeline/kafka"
)

// Open returns a pool for cfg with at least minConns connections allowed
// (cfg.MaxOpenConns when larger). It does not connect.
func Open(cfg config.MySQL, minConns int) (*sql.DB, error) {
	dc, err := mysql.ParseDSN(cfg.DSN)
	if err != nil {
		return nil, errors.New("mysql.dsn: not a valid DSN") // the parser's error can quote the password
	}
	dc.ParseTime = true
	dc.Loc = time.UTC
	// The session works in UTC too, whatever the server's default or the
	// DSN says: a DATETIME has no zone, so a device inserted through our
	// connections without registered_at (its default is
	// CURRENT_TIMESTAMP(3), in the session's zone) would otherwise be read
	// back hours off, and a 410 compared with it could deactivate a token
	// registered after Apple's timestamp.
	if dc.Params == nil {
		dc.Params = map[string]string{}
	}
	// The driver sends the parameters in one SET in map order: a
	// TIME_ZONE or @@session.time_zone left beside ours would win on some
	// connections and not on others (and @@global.time_zone would change
	// the server's).
	for param := range dc.Params {
		if config.SessionVariable(param) == "time_zone" {
			delete(dc.Params, param)
		}
	}
	dc.Params["time_zone"] = "'+00:00'"
	// Every time column is DATETIME(3). Sent with nanoseconds, a time is
	// rounded by MySQL 8 and truncated by MariaDB when stored, but compared
	// whole: a registration stored as 10:00:01.000 on MySQL is later than
	// an unregister at 10:00:00.9996 that it equalled. Cut to the
	// millisecond here, every server stores and compares the same value.
	if err := dc.Apply(mysql.TimeTruncate(time.Millisecond)); err != nil {
		return nil, fmt.Errorf("mysql.dsn: %w", err)
	}
	// Statements with arguments are sent as one query rather than
	// prepare, execute and close: a third of the round trips and no
	// server-side statement per call (the dispatcher saves progress after
	// every chunk). The driver escapes the arguments itself then, which
	// multibyte charsets such as gbk and sjis undo; it refuses only a
	// collation on its list of unsafe ones, not a charset=gbk. Config
	// validation refuses them, and so does Open, for a DSN that never went
	// through validation.
	if err := config.CheckMySQLCharsets(dc); err != nil {
		return nil, fmt.Errorf("mysql.dsn: %w", err)
	}
	dc.InterpolateParams = true
	if cfg.TLS.Enabled {
		tc, err := kafka.TLSConfig(cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("mysql.tls: %w", err)
		}
		dc.TLS = tc
	}
	conn, err := mysql.NewConnector(dc)
	if err != nil {
		return nil, fmt.Errorf("mysql.dsn: %w", err)
	}
	db := sql.OpenDB(conn)
	n := max(cfg.MaxOpenConns, minConns, 1)
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxLifetime(time.Hour)
	return db, nil
}
