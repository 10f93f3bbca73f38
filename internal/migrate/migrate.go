// Package migrate applies the embedded MySQL and ClickHouse DDL of package
// schemas, idempotently: each numbered file runs once per database, recorded
// in a schema_migrations table, so every service may run it at start-up and
// `pushctl migrate` may run it any number of times.
package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/pushlane/pushlane/schemas"
)

// Applied lists the migrations a call applied (not those already there).
type Applied []string

// MySQL applies schemas.MySQLMigrations to db.
func MySQL(ctx context.Context, db *sql.DB) (Applied, error) {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version VARCHAR(128) NOT NULL PRIMARY KEY,
		applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))`); err != nil {
		return nil, fmt.Errorf("migrate mysql: create schema_migrations: %w", err)
	}
	files, err := list(schemas.MySQLMigrations())
	if err != nil {
		return nil, err
	}
	var applied Applied
	for _, f := range files {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, f.name).Scan(&n); err != nil {
			return applied, fmt.Errorf("migrate mysql: check %s: %w", f.name, err)
		}
		if n > 0 {
			continue
		}
		for i, stmt := range f.statements {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				return applied, fmt.Errorf("migrate mysql: %s statement %d: %w", f.name, i+1, err)
			}
		}
		// MySQL commits DDL implicitly, so a crash between the DDL and this
		// insert re-runs the file: every statement must be re-runnable
		// (IF NOT EXISTS), which the files promise.
		if _, err := db.ExecContext(ctx, `INSERT IGNORE INTO schema_migrations (version) VALUES (?)`, f.name); err != nil {
			return applied, fmt.Errorf("migrate mysql: record %s: %w", f.name, err)
		}
		applied = append(applied, f.name)
	}
	return applied, nil
}

// ClickHouse applies schemas.ClickHouseMigrations to database. ClickHouse
// 18.16 has no transactions; every statement is IF NOT EXISTS, and
// versions are recorded in ${database}.schema_migrations.
func ClickHouse(ctx context.Context, conn driver.Conn, database string) (Applied, error) {
	if database == "" || strings.ContainsAny(database, "`'\" ;.") {
		return nil, fmt.Errorf("migrate clickhouse: invalid database name %q", database)
	}
	files, err := list(schemas.ClickHouseMigrations())
	if err != nil {
		return nil, err
	}
	subst := func(s string) string { return strings.ReplaceAll(s, "${database}", database) }
	if err := conn.Exec(ctx, subst("CREATE DATABASE IF NOT EXISTS ${database}")); err != nil {
		return nil, fmt.Errorf("migrate clickhouse: create database: %w", err)
	}
	if err := conn.Exec(ctx, subst(`CREATE TABLE IF NOT EXISTS ${database}.schema_migrations
		(version String, applied_at DateTime DEFAULT now()) ENGINE = ReplacingMergeTree ORDER BY version`)); err != nil {
		return nil, fmt.Errorf("migrate clickhouse: create schema_migrations: %w", err)
	}
	var applied Applied
	for _, f := range files {
		var n uint64
		if err := conn.QueryRow(ctx, subst("SELECT count() FROM ${database}.schema_migrations WHERE version = ?"), f.name).Scan(&n); err != nil {
			return applied, fmt.Errorf("migrate clickhouse: check %s: %w", f.name, err)
		}
		if n > 0 {
			continue
		}
		for i, stmt := range f.statements {
			if err := conn.Exec(ctx, subst(stmt)); err != nil {
				return applied, fmt.Errorf("migrate clickhouse: %s statement %d: %w", f.name, i+1, err)
			}
		}
		if err := recordClickHouse(ctx, conn, subst("INSERT INTO ${database}.schema_migrations (version)"), f.name); err != nil {
			return applied, fmt.Errorf("migrate clickhouse: record %s: %w", f.name, err)
		}
		applied = append(applied, f.name)
	}
	return applied, nil
}

// recordClickHouse inserts one version through a native batch: ClickHouse
// 18.16 never answers an INSERT … VALUES sent through conn.Exec by
// clickhouse-go v2 (the client waits for a packet the server does not send
// until the read timeout), while PrepareBatch with a column list works.
func recordClickHouse(ctx context.Context, conn driver.Conn, insert, version string) error {
	b, err := conn.PrepareBatch(ctx, insert)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.Append(version); err != nil {
		return err
	}
	return b.Send()
}

type file struct {
	name       string
	statements []string
}

func list(fsys fs.FS) ([]file, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("migrate: list: %w", err)
	}
	sort.Strings(names)
	out := make([]file, 0, len(names))
	for _, n := range names {
		raw, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, fmt.Errorf("migrate: read %s: %w", n, err)
		}
		out = append(out, file{name: strings.TrimSuffix(n, ".sql"), statements: Split(string(raw))})
	}
	return out, nil
}

// Split cuts a file into statements at semicolons that end a line, after
// dropping "--" comment lines. The DDL files keep to that form.
func Split(sqlText string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(sqlText, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteString("\n")
		if strings.HasSuffix(t, ";") {
			s := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")
			out = append(out, s)
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}
