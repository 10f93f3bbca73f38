// Package mysqldb opens the device store the way every stage needs it:
// times parsed as UTC, TLS from config, a bounded pool, and DSN errors that
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
	// Statements with arguments are sent as one query rather than
	// prepare, execute and close: a third of the round trips and no
	// server-side statement per call (the dispatcher saves progress after
	// every chunk). The driver refuses it for the multibyte charsets where
	// client-side escaping is unsafe, so those DSNs fail at start-up.
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
