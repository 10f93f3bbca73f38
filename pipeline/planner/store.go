package planner

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/pipeline/kafka"
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
	// ReadDevices adds to page up to limit active devices matching q with
	// id > afterID, in id order, each tagged with part.
	ReadDevices(ctx context.Context, q AudienceQuery, part int, afterID int64, limit int, page *Page) error
	// SaveCampaign upserts rec; writing the same record twice is harmless.
	SaveCampaign(ctx context.Context, rec CampaignRecord) error
}

// MySQLStore reads devices (migration 0001) and writes campaigns (0002).
type MySQLStore struct {
	db *sql.DB

	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

// NewMySQLStore wraps db.
func NewMySQLStore(db *sql.DB) *MySQLStore {
	return &MySQLStore{db: db, stmts: map[string]*sql.Stmt{}}
}

// maxStmts bounds the statement cache: query shapes vary with the number
// of filter values, and a campaign uses at most a few.
const maxStmts = 64

// stmt returns a prepared statement for query, prepared once: a keyset
// page is then a single round trip, whatever the DSN's interpolateParams.
func (s *MySQLStore) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.stmts[query]; ok {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if len(s.stmts) >= maxStmts {
		for q, old := range s.stmts {
			_ = old.Close()
			delete(s.stmts, q)
		}
	}
	s.stmts[query] = st
	return st, nil
}

// Close releases the prepared statements (not the database).
func (s *MySQLStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for q, st := range s.stmts {
		errs = append(errs, st.Close())
		delete(s.stmts, q)
	}
	return errors.Join(errs...)
}

// audienceSQL builds the keyset page query of q. A segment walks the
// (app, active, id) index in id order, so each page is a range read that
// starts where the last ended, whatever the audience size: never OFFSET,
// never the whole table. A list part is small and goes through the
// (app, user_id) or (app, token) index.
func audienceSQL(q AudienceQuery) (string, []any) {
	var b strings.Builder
	args := make([]any, 0, 4+len(q.Platforms)+2*len(q.Locales)+len(q.UserIDs)+len(q.Tokens))
	b.WriteString("SELECT id, user_id, platform, token, locale, timezone FROM devices")
	if len(q.UserIDs) == 0 && len(q.Tokens) == 0 {
		b.WriteString(" FORCE INDEX (ix_audience)")
	}
	b.WriteString(" WHERE app = ? AND active = 1 AND id > ?")
	args = append(args, q.App, nil) // id bound per page
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
	b.WriteString(" ORDER BY id LIMIT ?")
	args = append(args, nil) // limit bound per page
	return b.String(), args
}

func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// ReadDevices implements Store.
func (s *MySQLStore) ReadDevices(ctx context.Context, q AudienceQuery, part int, afterID int64, limit int, page *Page) error {
	query, args := audienceSQL(q)
	args[1] = afterID
	args[len(args)-1] = limit
	st, err := s.stmt(ctx, query)
	if err != nil {
		return fmt.Errorf("prepare audience query: %w", err)
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return fmt.Errorf("read devices after id %d: %w", afterID, err)
	}
	defer rows.Close()
	var (
		id                                    int64
		userID, platform, token, locale, zone sql.RawBytes
	)
	for rows.Next() {
		if err := rows.Scan(&id, &userID, &platform, &token, &locale, &zone); err != nil {
			return fmt.Errorf("scan device: %w", err)
		}
		page.Add(part, id, userID, token, platform, locale, zone)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read devices after id %d: %w", afterID, err)
	}
	return nil
}

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
	_, err := s.db.ExecContext(ctx, `INSERT INTO campaigns
		(id, version, app, status, reason, planned_devices, planned_batches, invalid_tokens, expired_devices,
		 first_send_at, last_send_at, expires_at, started_at, finished_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE app = VALUES(app), status = VALUES(status), reason = VALUES(reason),
		 planned_devices = VALUES(planned_devices), planned_batches = VALUES(planned_batches),
		 invalid_tokens = VALUES(invalid_tokens), expired_devices = VALUES(expired_devices),
		 first_send_at = VALUES(first_send_at), last_send_at = VALUES(last_send_at), expires_at = VALUES(expires_at),
		 started_at = VALUES(started_at), finished_at = VALUES(finished_at)`,
		r.ID, r.Version, r.App, r.Status, nullString(r.Reason), r.Devices, r.Batches, r.InvalidTokens, r.ExpiredDevices,
		nullTime(r.FirstSendAt), nullTime(r.LastSendAt), nullTime(r.ExpiresAt), r.StartedAt.UTC(), r.FinishedAt.UTC())
	if err != nil {
		return fmt.Errorf("save campaign %s v%d: %w", r.ID, r.Version, err)
	}
	return nil
}

// OpenMySQL opens the device store of cfg: parseTime and UTC added, TLS
// from cfg.TLS, the pool bounded by max_open_conns.
func OpenMySQL(cfg config.MySQL) (*sql.DB, error) {
	dc, err := mysql.ParseDSN(cfg.DSN)
	if err != nil {
		return nil, errors.New("mysql.dsn: not a valid DSN") // the parser's error can quote the password
	}
	dc.ParseTime = true
	dc.Loc = time.UTC
	if cfg.TLS.Enabled {
		tc, err := kafka.TLSConfig(cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("mysql.tls: %w", err)
		}
		dc.TLS = tc
	}
	conn, err := mysql.NewConnector(dc)
	if err != nil {
		return nil, fmt.Errorf("planner: mysql connector: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(max(cfg.MaxOpenConns, 2))
	db.SetMaxIdleConns(max(cfg.MaxOpenConns, 2))
	db.SetConnMaxLifetime(time.Hour)
	return db, nil
}
