package planner

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// stubDB is a database/sql driver whose statements answer any audience
// query with one row: enough for MySQLStore's statement cache, no MySQL.
type stubDB struct{ open atomic.Int64 } // statements prepared and not closed

func (d *stubDB) Connect(context.Context) (driver.Conn, error) { return &stubConn{db: d}, nil }
func (d *stubDB) Driver() driver.Driver                        { return nil }

type stubConn struct{ db *stubDB }

func (c *stubConn) Prepare(query string) (driver.Stmt, error) {
	c.db.open.Add(1)
	return &stubStmt{db: c.db, ids: strings.HasPrefix(query, "SELECT id FROM")}, nil
}
func (c *stubConn) Close() error              { return nil }
func (c *stubConn) Begin() (driver.Tx, error) { return nil, errors.New("stub: no transactions") }

type stubStmt struct {
	db  *stubDB
	ids bool
}

func (s *stubStmt) Close() error  { s.db.open.Add(-1); return nil }
func (s *stubStmt) NumInput() int { return -1 }
func (s *stubStmt) Exec([]driver.Value) (driver.Result, error) {
	return nil, errors.New("stub: no exec")
}
func (s *stubStmt) Query([]driver.Value) (driver.Rows, error) { return &stubRows{ids: s.ids}, nil }

type stubRows struct {
	ids  bool
	done bool
}

func (r *stubRows) Columns() []string {
	if r.ids {
		return []string{"id"}
	}
	return []string{"id", "user_id", "platform", "token", "locale", "timezone"}
}
func (r *stubRows) Close() error { return nil }
func (r *stubRows) Next(dest []driver.Value) error {
	if r.done {
		return io.EOF
	}
	r.done = true
	dest[0] = int64(1)
	if !r.ids {
		copy(dest[1:], []driver.Value{[]byte("u"), []byte("ios"), []byte("ab"), []byte("en"), []byte("UTC")})
	}
	return nil
}

// userList is a list part of n user ids: its query is a shape of its own.
func userList(n int) AudienceQuery {
	q := AudienceQuery{App: "app"}
	for i := range n {
		q.UserIDs = append(q.UserIDs, fmt.Sprint("u", i))
	}
	return q
}

// The statement cache is cleared when it reaches maxStmts shapes, while
// other readers of the store (the segment reader's id goroutine, its row
// workers) may hold one of its statements: none may be closed under them,
// and every statement is closed once out of the cache and released.
func TestStatementCacheEvictionSparesStatementsInUse(t *testing.T) {
	stub := &stubDB{}
	db := sql.OpenDB(stub)
	defer db.Close()
	s := NewMySQLStore(db)
	ctx := context.Background()
	var page Page
	for n := 1; n <= maxStmts; n++ {
		if _, _, err := s.ReadDevices(ctx, userList(n), 0, 0, 100, &page); err != nil {
			t.Fatal(err)
		}
	}

	const readers, reads = 8, 5000
	var wg sync.WaitGroup
	errs := make(chan error, readers+1)
	stop := make(chan struct{})
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := AudienceQuery{App: "app", Platforms: []string{"ios"}}
			for range reads {
				var pg Page
				var err error
				if i%2 == 0 {
					_, _, _, err = s.SegmentIDs(ctx, q, 0, 100)
				} else {
					err = s.SegmentRows(ctx, q, 0, 1, 100, 100, &pg)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// New shapes meanwhile, each maxStmts of them clearing the cache.
	var churn sync.WaitGroup
	churn.Add(1)
	go func() {
		defer churn.Done()
		for n := maxStmts + 1; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, _, err := s.ReadDevices(ctx, userList(n%(4*maxStmts)+1), 0, 0, 100, &page); err != nil {
				errs <- fmt.Errorf("new shape: %w", err)
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	churn.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := stub.open.Load(); n != 0 {
		t.Errorf("%d prepared statements left open after Close", n)
	}
}

// The same, without depending on a scheduler's interleaving: a statement
// taken before the cache is cleared still runs, and is closed once
// released.
func TestStatementCacheClosesAHeldStatementOnRelease(t *testing.T) {
	stub := &stubDB{}
	db := sql.OpenDB(stub)
	defer db.Close()
	s := NewMySQLStore(db)
	ctx := context.Background()
	st, release, err := s.stmt(ctx, idsSQL)
	if err != nil {
		t.Fatal(err)
	}
	var page Page
	for n := 1; n <= maxStmts; n++ { // the last one clears the cache
		if _, _, err := s.ReadDevices(ctx, userList(n), 0, 0, 100, &page); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := st.QueryContext(ctx, "app", 0, 100)
	if err != nil {
		t.Fatalf("statement held across the cache's clear: %v", err)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	release()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := stub.open.Load(); n != 0 {
		t.Errorf("%d prepared statements left open after release and Close", n)
	}
}
