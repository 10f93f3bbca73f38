package schemas

import (
	"embed"
	"io/fs"
)

//go:embed mysql/*.sql clickhouse/*.sql
var ddlFiles embed.FS

// MySQLMigrations holds the numbered MySQL migrations (NNNN_name.sql),
// applied in order by internal/migrate.
func MySQLMigrations() fs.FS { return mustSub(ddlFiles, "mysql") }

// ClickHouseMigrations holds the numbered ClickHouse migrations; they refer
// to the target database as ${database}.
func ClickHouseMigrations() fs.FS { return mustSub(ddlFiles, "clickhouse") }

func mustSub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return s
}
