package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/migrate"
	"github.com/pushlane/pushlane/internal/mysqldb"
	"github.com/pushlane/pushlane/pipeline/kafka"
)

func migrateCommand() *command {
	return &command{
		name:    "migrate",
		args:    "[-mysql] [-clickhouse]",
		summary: "Apply the MySQL and ClickHouse migrations that are not applied yet",
		details: `
Applies the numbered DDL files embedded in pushctl (schemas/mysql, schemas/clickhouse)
that the database has not recorded in its schema_migrations table, in order, and
prints each one applied. Safe to run any number of times and from several places at
once: every statement is re-runnable.

Without flags, migrates MySQL when mysql.dsn is set and ClickHouse when
clickhouse.addr is set. -mysql or -clickhouse migrates only that one and requires its
configuration.

A migration can take minutes on a large table (one that rebuilds an index of
devices), so migrate has no overall deadline unless the global -timeout is given:
a deadline would end the command while the server goes on altering, and the
migration would not be recorded. Connecting still gives up after 30s (MySQL) or
5s (ClickHouse).`,
		unbounded: true,
		examples: []string{
			"pushctl -config /etc/pushlane/pushlane.yaml migrate",
			"PUSHLANE_MYSQL__DSN='pushlane:secret@tcp(db:3306)/pushlane' pushctl migrate -mysql",
		},
		flags: func(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
			onlyMySQL := fs.Bool("mysql", false, "migrate MySQL (requires mysql.dsn)")
			onlyCH := fs.Bool("clickhouse", false, "migrate ClickHouse (requires clickhouse.addr)")
			return func(ctx context.Context, args []string) error {
				if len(args) > 0 {
					return usagef("unexpected argument %q", args[0])
				}
				cfg, err := c.loadConfig()
				if err != nil {
					return err
				}
				doMySQL, doCH := *onlyMySQL, *onlyCH
				if !doMySQL && !doCH {
					doMySQL, doCH = cfg.MySQL.DSN != "", len(cfg.ClickHouse.Addr) > 0
					if !doMySQL && !doCH {
						return usagef("nothing to migrate: set mysql.dsn and/or clickhouse.addr")
					}
				}
				var need []string
				if doMySQL {
					need = append(need, "mysql.dsn")
				}
				if doCH {
					need = append(need, "clickhouse.addr")
				}
				if err := cfg.Require(need...); err != nil {
					return &exitError{code: exitUsage, err: err}
				}
				if doMySQL {
					if err := c.migrateMySQL(ctx, cfg.MySQL); err != nil {
						return err
					}
				}
				if doCH {
					if err := c.migrateClickHouse(ctx, cfg.ClickHouse); err != nil {
						return err
					}
				}
				return nil
			}
		},
	}
}

// report prints what was applied, also before a failure (it is applied),
// and "up to date" only when a run succeeded without applying anything.
func report(c *cli, store string, applied migrate.Applied, err error) {
	for _, name := range applied {
		fmt.Fprintf(c.stdout, "%s: applied %s\n", store, name)
	}
	if err == nil && len(applied) == 0 {
		fmt.Fprintf(c.stdout, "%s: up to date\n", store)
	}
}

// connectTimeout bounds migrate's connection to MySQL; a variable so tests
// can shorten it.
var connectTimeout = 30 * time.Second

func (c *cli) migrateMySQL(ctx context.Context, cfg config.MySQL) error {
	db, err := mysqldb.Open(cfg, 2) // as the stages open it: parseTime, UTC, TLS when enabled
	if err != nil {
		return err
	}
	defer db.Close()
	// migrate has no deadline of its own (see its help): an unreachable or
	// silent server must still fail the command rather than hang it.
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	err = db.PingContext(cctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil && cctx.Err() != nil {
			err = fmt.Errorf("no answer within %s: %w", connectTimeout, err)
		}
		return fmt.Errorf("migrate mysql: connect: %w", err)
	}
	applied, err := migrate.MySQL(ctx, db)
	report(c, "mysql", applied, err)
	return err
}

func (c *cli) migrateClickHouse(ctx context.Context, cfg config.ClickHouse) error {
	conn, err := openClickHouse(cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	applied, err := migrate.ClickHouse(ctx, conn, cfg.Database)
	report(c, "clickhouse", applied, err)
	return err
}

// openClickHouse connects to the server's default database: migrate
// creates the configured one.
func openClickHouse(cfg config.ClickHouse) (driver.Conn, error) {
	var tc *tls.Config
	if cfg.TLS.Enabled {
		var err error
		if tc, err = kafka.TLSConfig(cfg.TLS); err != nil {
			return nil, fmt.Errorf("clickhouse.tls: %w", err)
		}
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        cfg.Addr,
		Auth:        clickhouse.Auth{Database: "default", Username: cfg.Username, Password: cfg.Password},
		TLS:         tc,
		DialTimeout: 5 * time.Second,
		ReadTimeout: 60 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("open clickhouse %v: %w", cfg.Addr, err)
	}
	return conn, nil
}
