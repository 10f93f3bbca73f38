package embedded

import (
	"context"
	"database/sql/driver"
	"regexp"
)

// primaryIndexHint matches a MySQL index hint naming the primary key, e.g.
// "FORCE INDEX (PRIMARY)". MySQL and MariaDB accept it; go-mysql-server
// v0.20.0's parser does not ("syntax error ... near 'PRIMARY'"), and it
// parses a prepared statement before any server hook sees it. A hint never
// changes a result, only a plan, and the embedded store scans anyway, so
// the store's clients drop such hints (see compatConn). Hints naming other
// indexes parse and are kept.
var primaryIndexHint = regexp.MustCompile(`(?i)\s+(?:FORCE|USE|IGNORE)\s+(?:INDEX|KEY)(?:\s+FOR\s+(?:JOIN|ORDER\s+BY|GROUP\s+BY))?\s*\(\s*PRIMARY\s*\)`)

// compatSQL rewrites a statement of the pipeline into what the embedded
// store parses.
func compatSQL(q string) string {
	return primaryIndexHint.ReplaceAllString(q, "")
}

// compatConnector opens connections whose statements pass through
// compatSQL.
type compatConnector struct{ inner driver.Connector }

func (c compatConnector) Connect(ctx context.Context) (driver.Conn, error) {
	cn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return compatConn{cn}, nil
}

func (c compatConnector) Driver() driver.Driver { return c.inner.Driver() }

// compatConn forwards every optional interface database/sql looks for, so
// the driver behaves exactly as without the wrapper, statements rewritten.
type compatConn struct{ driver.Conn }

func (c compatConn) Prepare(q string) (driver.Stmt, error) { return c.Conn.Prepare(compatSQL(q)) }

func (c compatConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, compatSQL(q))
	}
	return c.Conn.Prepare(compatSQL(q))
}

func (c compatConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	if e, ok := c.Conn.(driver.ExecerContext); ok {
		return e.ExecContext(ctx, compatSQL(q), args)
	}
	return nil, driver.ErrSkip
}

func (c compatConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	if e, ok := c.Conn.(driver.QueryerContext); ok {
		return e.QueryContext(ctx, compatSQL(q), args)
	}
	return nil, driver.ErrSkip
}

func (c compatConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if b, ok := c.Conn.(driver.ConnBeginTx); ok {
		return b.BeginTx(ctx, opts)
	}
	return c.Conn.Begin() //nolint:staticcheck // the fallback database/sql itself uses
}

func (c compatConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c compatConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c compatConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c compatConn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.Conn.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}
