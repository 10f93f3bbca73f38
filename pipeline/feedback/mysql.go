package feedback

import (
	"database/sql"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/pushlane/pushlane/internal/config"
	pkafka "github.com/pushlane/pushlane/pipeline/kafka"
)

// OpenMySQL opens the device store from cfg with parseTime and UTC, as
// internal/config promises, and TLS when enabled. It does not connect.
func OpenMySQL(cfg config.MySQL) (*sql.DB, error) {
	dc, err := mysql.ParseDSN(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("mysql.dsn: not a valid DSN") // the error could echo the password
	}
	dc.ParseTime = true
	dc.Loc = time.UTC
	if cfg.TLS.Enabled {
		tc, err := pkafka.TLSConfig(cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("mysql.tls: %w", err)
		}
		dc.TLS = tc
	}
	conn, err := mysql.NewConnector(dc)
	if err != nil {
		return nil, fmt.Errorf("feedback: mysql connector: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(max(cfg.MaxOpenConns, 1))
	db.SetMaxIdleConns(max(cfg.MaxOpenConns, 1))
	db.SetConnMaxLifetime(time.Hour)
	return db, nil
}
