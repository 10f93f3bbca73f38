package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/memory"
	"github.com/dolthub/go-mysql-server/server"
	gmssql "github.com/dolthub/go-mysql-server/sql"
	"github.com/go-sql-driver/mysql"
	"github.com/sirupsen/logrus"

	"github.com/pushlane/pushlane/internal/migrate"
)

// StoreDatabase is the database name of the embedded store.
const StoreDatabase = "pushlane"

// Store is an in-memory MySQL-protocol server (go-mysql-server) on a
// loopback port, with the real migrations applied.
type Store struct {
	srv *server.Server
	// Addr is the host:port the store listens on.
	Addr string
	// DSN reaches the store with go-sql-driver/mysql (parseTime, UTC).
	DSN string
	// DB is the one pool every user of the store must share: it is limited
	// to a single connection because go-mysql-server's memory engine loses
	// concurrent writes (a commit replaces the whole table with the
	// session's copy, so the last writer wins).
	DB *sql.DB
	// Migrations lists the migrations applied at start.
	Migrations []string
	// DroppedIndexes lists the secondary indexes removed after the
	// migrations (WithoutDeviceIndexes).
	DroppedIndexes []string
}

// StoreOption changes how StartStore sets the store up.
type StoreOption func(*storeOptions)

type storeOptions struct{ dropDeviceIndexes bool }

// WithoutDeviceIndexes drops the secondary indexes of the devices table
// (devicesIndexes) after migrating, for speed; see devicesIndexes for the
// cost and what is lost. The demo uses it; tests of SQL semantics must
// not.
func WithoutDeviceIndexes() StoreOption {
	return func(o *storeOptions) { o.dropDeviceIndexes = true }
}

// devicesIndexes are the secondary indexes of the devices table
// (schemas/mysql/0001_devices.sql) that WithoutDeviceIndexes drops after
// migrating. go-mysql-server v0.20.0's memory engine keeps rows and every
// index as sorted slices and re-sorts them on each write with a swap that
// walks every index entry (memory/table.go partitionssort.Swap, "worse than
// cubic" in its own comment), and it checks a unique key by scanning the
// table: on 2,000 devices, deactivating 6 of them took 3.7 s with these
// indexes and 0.1 s without, and seeding 2,000 took 3.8 s and 1.3 s. The
// store answers the same queries without them (it scans anyway); what is
// lost is the enforcement of (app, token) uniqueness, which the demo's
// seed guarantees itself, and with it INSERT … ON DUPLICATE KEY UPDATE on
// (app, token) (feedback's registrations, not part of the demo). Real
// MySQL/MariaDB keep every index.
var devicesIndexes = []string{"uq_app_token", "ix_audience", "ix_app_user"}

// StartStore starts the store on 127.0.0.1 (a free port), opens the shared
// pool and applies internal/migrate's MySQL migrations.
func StartStore(ctx context.Context, opts ...StoreOption) (*Store, error) {
	var o storeOptions
	for _, opt := range opts {
		opt(&o)
	}
	// go-mysql-server logs every query through the logrus standard logger
	// at info level; that global is its only knob, and the demo's output
	// must stay readable.
	logrus.SetLevel(logrus.ErrorLevel)
	logrus.SetOutput(io.Discard)

	db := memory.NewDatabase(StoreDatabase)
	db.BaseDatabase.EnablePrimaryKeyIndexes()
	pro := memory.NewDBProvider(db)
	eng := sqle.NewDefault(pro)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("embedded store: listen: %w", err)
	}
	srv, err := server.NewServer(server.Config{Protocol: "tcp", Listener: ln, Address: ln.Addr().String()},
		eng, gmssql.NewContext, memory.NewSessionBuilder(pro), nil)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("embedded store: new server: %w", err)
	}
	go func() { _ = srv.Start() }()

	dsn := mysql.NewConfig()
	dsn.User = "root"
	dsn.Net = "tcp"
	dsn.Addr = ln.Addr().String()
	dsn.DBName = StoreDatabase
	dsn.ParseTime = true
	s := &Store{srv: srv, Addr: ln.Addr().String(), DSN: dsn.FormatDSN()}
	s.DB, err = openSerialized(dsn)
	if err != nil {
		srv.Close()
		return nil, err
	}
	if err := s.DB.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("embedded store: ping: %w", err)
	}
	applied, err := migrate.MySQL(ctx, s.DB)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	s.Migrations = applied
	if !o.dropDeviceIndexes {
		return s, nil
	}
	for _, ix := range devicesIndexes {
		if _, err := s.DB.ExecContext(ctx, "ALTER TABLE devices DROP INDEX "+ix); err != nil {
			s.Close()
			return nil, fmt.Errorf("embedded store: drop index %s: %w", ix, err)
		}
		s.DroppedIndexes = append(s.DroppedIndexes, ix)
	}
	return s, nil
}

// openSerialized opens the store as a pool of exactly one connection, the
// only safe way to use go-mysql-server's memory engine, with statements
// made parseable by it (compatSQL).
func openSerialized(cfg *mysql.Config) (*sql.DB, error) {
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedded store: open: %w", err)
	}
	db := sql.OpenDB(compatConnector{conn})
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	return db, nil
}

// Close closes the pool and stops the server.
func (s *Store) Close() error {
	var errs []error
	if s.DB != nil {
		errs = append(errs, s.DB.Close())
	}
	if s.srv != nil {
		errs = append(errs, s.srv.Close())
	}
	return errors.Join(errs...)
}
