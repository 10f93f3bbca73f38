package planner

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/mysqldb"
)

// AudienceQuery selects active devices of one app. Empty filters select
// everything. At most one of UserIDs and Tokens is set, already cut to one
// part of the campaign's list.
type AudienceQuery struct {
	App       string
	Platforms []string
	// Locales match a device locale equal to an entry (case-insensitively,
	// by the column's collation) or, for a bare language such as "de",
	// any locale of that language ("de-AT", "de_CH").
	Locales []string
	UserIDs []string
	Tokens  []string
}

// CampaignRecord is the planner's bookkeeping of one campaign version
// (table campaigns, migration 0002), written once planning ends.
type CampaignRecord struct {
	ID             string
	Version        int
	App            string
	Status         string // planned, cancelled, expired, failed
	Reason         string
	Devices        int64
	Batches        int64
	InvalidTokens  int64
	ExpiredDevices int64
	FirstSendAt    time.Time
	LastSendAt     time.Time
	ExpiresAt      time.Time
	StartedAt      time.Time
	FinishedAt     time.Time
}

// Campaign statuses.
const (
	StatusPlanned   = "planned"
	StatusCancelled = "cancelled"
	StatusExpired   = "expired"
	StatusFailed    = "failed"
)

// Store is the planner's MySQL: the devices it reads and the bookkeeping
// it writes. MySQLStore is the real one; tests may use a fake.
type Store interface {
	// ReadDevices reads the next page of the audience part q after
	// afterID: it adds to page, in id order and tagged with part, every
	// active device matching q with an id in (afterID, next], reading about
	// limit devices, and reports whether the part has nothing after next.
	ReadDevices(ctx context.Context, q AudienceQuery, part int, afterID int64, limit int, page *Page) (next int64, done bool, err error)
	// SaveCampaign upserts rec; writing the same record twice is harmless.
	SaveCampaign(ctx context.Context, rec CampaignRecord) error
	// LatestCampaign reads the row of campaign id with the highest
	// version at or above version; found is false when there is none.
	LatestCampaign(ctx context.Context, id string, version int) (row StoredCampaign, found bool, err error)
}

// StoredCampaign is what the planner needs of a campaigns row to tell a
// replayed campaign record from a new one.
type StoredCampaign struct {
	Version int
	Status  string
}

// MySQLStore reads devices (migration 0001) and writes campaigns (0002).
type MySQLStore struct {
	db *sql.DB

	mu    sync.Mutex
	stmts map[string]*cachedStmt
}

// cachedStmt is a prepared statement of the cache and its users: readers
// of one campaign (the segment reader's id goroutine and its workers) run
// statements at once, and closing one under its user fails its query with
// "sql: statement is closed", a MySQL retry for a healthy campaign.
type cachedStmt struct {
	st      *sql.Stmt
	users   int
	evicted bool // out of the cache: its last user closes it
}

// NewMySQLStore wraps db.
func NewMySQLStore(db *sql.DB) *MySQLStore {
	return &MySQLStore{db: db, stmts: map[string]*cachedStmt{}}
}

// maxStmts bounds the statement cache: query shapes vary with the number
// of filter values, and a campaign uses at most a few.
const maxStmts = 64

// stmt returns a prepared statement for query, prepared once: a keyset
// page is then a single round trip, whatever the DSN's interpolateParams.
// The caller runs it (a *sql.Stmt is safe for concurrent use) and calls
// release once its rows are closed; until then the cache does not close it.
func (s *MySQLStore) stmt(ctx context.Context, query string) (st *sql.Stmt, release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.stmts[query]
	if !ok {
		prepared, err := s.db.PrepareContext(ctx, query)
		if err != nil {
			return nil, nil, err
		}
		if len(s.stmts) >= maxStmts {
			for q, old := range s.stmts {
				_ = s.evict(q, old)
			}
		}
		c = &cachedStmt{st: prepared}
		s.stmts[query] = c
	}
	c.users++
	return c.st, func() { s.release(c) }, nil
}

// evict takes c out of the cache; s.mu is held. A statement still in use
// is closed by its last release, and one not in use now.
func (s *MySQLStore) evict(query string, c *cachedStmt) error {
	delete(s.stmts, query)
	c.evicted = true
	if c.users > 0 {
		return nil
	}
	return c.st.Close()
}

func (s *MySQLStore) release(c *cachedStmt) {
	s.mu.Lock()
	c.users--
	last := c.evicted && c.users == 0
	s.mu.Unlock()
	if last {
		_ = c.st.Close()
	}
}

// Close releases the prepared statements (not the database); those still
// in use are closed when their users release them.
func (s *MySQLStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for q, c := range s.stmts {
		errs = append(errs, s.evict(q, c))
	}
	return errors.Join(errs...)
}

const deviceColumns = "SELECT id, user_id, platform, token, locale, timezone FROM devices"

// filterSQL appends q's filters (platforms, locales, the list part) to b.
func filterSQL(b *strings.Builder, q AudienceQuery, args []any) []any {
	in := func(col string, vals []string) {
		b.WriteString(" AND ")
		b.WriteString(col)
		b.WriteString(" IN (")
		for i, v := range vals {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString("?")
			args = append(args, v)
		}
		b.WriteString(")")
	}
	if len(q.Platforms) > 0 {
		in("platform", q.Platforms)
	}
	if len(q.Locales) > 0 {
		b.WriteString(" AND (locale IN (")
		for i, l := range q.Locales {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString("?")
			args = append(args, l)
		}
		b.WriteString(")")
		for _, l := range q.Locales {
			if strings.ContainsAny(l, "-_") {
				continue
			}
			b.WriteString(` OR locale LIKE ? OR locale LIKE ?`)
			esc := likeEscape(l)
			args = append(args, esc+"-%", esc+`\_%`)
		}
		b.WriteString(")")
	}
	if len(q.UserIDs) > 0 {
		in("user_id", q.UserIDs)
	}
	if len(q.Tokens) > 0 {
		in("token", q.Tokens)
	}
	return args
}

// Reading a segment. The (app, active, id) index gives the page's ids in
// id order without touching a row, but fetching each row through it costs
// one primary-key descent per row, about 8 times a walk along the primary
// key. So a page is read in two steps: the next limit ids from the index
// (covering, cheap), then the rows of that id range along the primary key,
// when the app's ids are dense there (at most densityLimit ids per row of
// the app: one app per table, or a dominant one). Sparse ranges, where the
// walk would read mostly other apps' rows, fetch through the index. Either
// way a page is a bounded range read that starts where the last ended.
const densityLimit = 2

const (
	idsSQL        = "SELECT id FROM devices FORCE INDEX (ix_audience) WHERE app = ? AND active = 1 AND id > ? ORDER BY id LIMIT ?"
	denseRowsSQL  = deviceColumns + " FORCE INDEX (PRIMARY) WHERE id >= ? AND id <= ? AND app = ? AND active = 1"
	sparseRowsSQL = deviceColumns + " FORCE INDEX (ix_audience) WHERE app = ? AND active = 1 AND id >= ? AND id <= ?"
	listPrefixSQL = deviceColumns + " WHERE app = ? AND active = 1 AND id > ?"
	orderSQL      = " ORDER BY id"
	orderLimitSQL = " ORDER BY id LIMIT ?"
)

// segmentRowsSQL is the second step's query for the id range [first, last]
// holding n ids of the app.
func segmentRowsSQL(q AudienceQuery, first, last int64, n int) (string, []any) {
	var b strings.Builder
	var args []any
	if last-first+1 <= int64(densityLimit*n) {
		b.WriteString(denseRowsSQL)
		args = append(args, first, last, q.App)
	} else {
		b.WriteString(sparseRowsSQL)
		args = append(args, q.App, first, last)
	}
	args = filterSQL(&b, q, args)
	b.WriteString(orderSQL)
	return b.String(), args
}

// listSQL is the page query of a list part: the (app, user_id) or (app,
// token) index finds the part's few devices.
func listSQL(q AudienceQuery, afterID int64, limit int) (string, []any) {
	var b strings.Builder
	b.WriteString(listPrefixSQL)
	args := filterSQL(&b, q, []any{q.App, afterID})
	b.WriteString(orderLimitSQL)
	return b.String(), append(args, limit)
}

func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// ReadDevices implements Store.
func (s *MySQLStore) ReadDevices(ctx context.Context, q AudienceQuery, part int, afterID int64, limit int, page *Page) (int64, bool, error) {
	if len(q.UserIDs) > 0 || len(q.Tokens) > 0 {
		query, args := listSQL(q, afterID, limit)
		n, last, err := s.scanRows(ctx, query, args, part, page)
		if err != nil {
			return afterID, false, err
		}
		if n < limit {
			return afterID, true, nil
		}
		return last, false, nil
	}
	return readSegmentPage(ctx, s, q, part, afterID, limit, page)
}

// readSegmentPage is ReadDevices for a segment, in segmentStore's two
// steps, one after the other.
func readSegmentPage(ctx context.Context, s segmentStore, q AudienceQuery, part int, afterID int64, limit int, page *Page) (int64, bool, error) {
	first, last, n, err := s.SegmentIDs(ctx, q, afterID, limit)
	if err != nil || n == 0 {
		return afterID, err == nil, err
	}
	if err := s.SegmentRows(ctx, q, part, first, last, n, page); err != nil {
		return afterID, false, err
	}
	return last, n < limit, nil
}

// SegmentIDs is a segment page's first step: the first and last of the
// next (at most limit) ids of the app's active devices after afterID, and
// how many there are.
func (s *MySQLStore) SegmentIDs(ctx context.Context, q AudienceQuery, afterID int64, limit int) (first, last int64, n int, err error) {
	st, release, err := s.stmt(ctx, idsSQL)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("prepare audience ids query: %w", err)
	}
	defer release()
	rows, err := st.QueryContext(ctx, q.App, afterID, limit)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("read device ids after %d: %w", afterID, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(&last); err != nil {
			return 0, 0, 0, fmt.Errorf("scan device id: %w", err)
		}
		if n == 0 {
			first = last
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return 0, 0, 0, fmt.Errorf("read device ids after %d: %w", afterID, err)
	}
	return first, last, n, nil
}

// SegmentRows is a segment page's second step: the devices matching q
// with ids in [first, last], a range holding n of the app's active ids.
func (s *MySQLStore) SegmentRows(ctx context.Context, q AudienceQuery, part int, first, last int64, n int, page *Page) error {
	query, args := segmentRowsSQL(q, first, last, n)
	_, _, err := s.scanRows(ctx, query, args, part, page)
	return err
}

// scanRows runs a device query into page.
func (s *MySQLStore) scanRows(ctx context.Context, query string, args []any, part int, page *Page) (n int, last int64, err error) {
	st, release, err := s.stmt(ctx, query)
	if err != nil {
		return 0, 0, fmt.Errorf("prepare audience query: %w", err)
	}
	defer release()
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return 0, 0, fmt.Errorf("read devices: %w", err)
	}
	defer rows.Close()
	var userID, platform, token, locale, zone sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&last, &userID, &platform, &token, &locale, &zone); err != nil {
			return n, last, fmt.Errorf("scan device: %w", err)
		}
		page.Add(part, last, userID, token, platform, locale, zone)
		n++
	}
	if err := rows.Err(); err != nil {
		return n, last, fmt.Errorf("read devices: %w", err)
	}
	return n, last, nil
}

// saveCampaignSQL upserts a campaign's row. A replayed record of a
// finished version is skipped before it is planned (see LatestCampaign),
// so it writes nothing; as a second line, a record that planned nothing
// (no batch, no invalid token, no expired device) never replaces a row
// that planned something, and the row keeps what the plan did. Every
// assignment keeps the row or takes the record as a whole: when it takes
// the record, the guard, read again on the updated columns, is false for
// every later column too, so the outcome is the same whether the server
// assigns left to right (MySQL, MariaDB) or all at once.
const saveCampaignSQL = `INSERT INTO campaigns
		(id, version, app, status, reason, planned_devices, planned_batches, invalid_tokens, expired_devices,
		 first_send_at, last_send_at, expires_at, started_at, finished_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE app = IF(` + keptRow + `, app, VALUES(app)),
		 reason = IF(` + keptRow + `, reason, VALUES(reason)),
		 planned_devices = IF(` + keptRow + `, planned_devices, VALUES(planned_devices)),
		 invalid_tokens = IF(` + keptRow + `, invalid_tokens, VALUES(invalid_tokens)),
		 expired_devices = IF(` + keptRow + `, expired_devices, VALUES(expired_devices)),
		 first_send_at = IF(` + keptRow + `, first_send_at, VALUES(first_send_at)),
		 last_send_at = IF(` + keptRow + `, last_send_at, VALUES(last_send_at)),
		 expires_at = IF(` + keptRow + `, expires_at, VALUES(expires_at)),
		 started_at = IF(` + keptRow + `, started_at, VALUES(started_at)),
		 finished_at = IF(` + keptRow + `, finished_at, VALUES(finished_at)),
		 status = IF(` + keptRow + `, status, VALUES(status)),
		 planned_batches = IF(` + keptRow + `, planned_batches, VALUES(planned_batches))`

// keptRow: the stored row planned something and the record nothing.
const keptRow = `(planned_batches + invalid_tokens + expired_devices > 0 AND VALUES(planned_batches) + VALUES(invalid_tokens) + VALUES(expired_devices) = 0)`

// SaveCampaign implements Store.
func (s *MySQLStore) SaveCampaign(ctx context.Context, r CampaignRecord) error {
	nullTime := func(t time.Time) any {
		if t.IsZero() {
			return nil
		}
		return t.UTC()
	}
	nullString := func(v string) any {
		if v == "" {
			return nil
		}
		return v
	}
	_, err := s.db.ExecContext(ctx, saveCampaignSQL,
		r.ID, r.Version, r.App, r.Status, nullString(r.Reason), r.Devices, r.Batches, r.InvalidTokens, r.ExpiredDevices,
		nullTime(r.FirstSendAt), nullTime(r.LastSendAt), nullTime(r.ExpiresAt), r.StartedAt.UTC(), r.FinishedAt.UTC())
	if err != nil {
		return fmt.Errorf("save campaign %s v%d: %w", r.ID, r.Version, err)
	}
	return nil
}

// latestCampaignSQL finds the newest row at or above a version through
// the primary key (id, version).
const latestCampaignSQL = `SELECT version, status FROM campaigns WHERE id = ? AND version >= ? ORDER BY version DESC LIMIT 1`

// LatestCampaign implements Store.
func (s *MySQLStore) LatestCampaign(ctx context.Context, id string, version int) (StoredCampaign, bool, error) {
	var row StoredCampaign
	err := s.db.QueryRowContext(ctx, latestCampaignSQL, id, version).Scan(&row.Version, &row.Status)
	if errors.Is(err, sql.ErrNoRows) {
		return row, false, nil
	}
	if err != nil {
		return row, false, fmt.Errorf("read campaign %s from v%d: %w", id, version, err)
	}
	return row, true, nil
}

// OpenMySQL opens the device store of cfg: parseTime and UTC added, TLS
// from cfg.TLS, the pool bounded by max_open_conns.
func OpenMySQL(cfg config.MySQL) (*sql.DB, error) { return mysqldb.Open(cfg, 2) }
