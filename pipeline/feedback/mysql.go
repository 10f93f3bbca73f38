package feedback

import (
	"database/sql"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/mysqldb"
)

// OpenMySQL opens the device store from cfg with parseTime and UTC, as
// internal/config promises, and TLS when enabled. It does not connect.
func OpenMySQL(cfg config.MySQL) (*sql.DB, error) { return mysqldb.Open(cfg, 1) }
