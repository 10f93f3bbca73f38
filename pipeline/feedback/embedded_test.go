package feedback

import (
	"context"
	"database/sql"
	"testing"

	"github.com/pushlane/pushlane/internal/embedded"
)

// embeddedDB starts a fresh go-mysql-server store with every migration.
func embeddedDB(t *testing.T) *sql.DB {
	t.Helper()
	s, err := embedded.StartStore(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s.DB
}
