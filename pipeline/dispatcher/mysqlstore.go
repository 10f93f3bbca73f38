package dispatcher

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pushlane/pushlane/internal/config"
	"github.com/pushlane/pushlane/internal/mysqldb"
	"github.com/pushlane/pushlane/internal/utf8cut"
)

// MySQLStore is the Store on the tables of schemas/mysql/0003_dispatch.sql.
type MySQLStore struct {
	db *sql.DB
}

// NewMySQLStore uses db (opened with parseTime and loc=UTC, as OpenMySQL
// does).
func NewMySQLStore(db *sql.DB) *MySQLStore { return &MySQLStore{db: db} }

// OpenMySQL opens the database of cfg with parseTime and UTC, TLS from
// cfg.TLS and the pool bounded by max_open_conns.
func OpenMySQL(cfg config.MySQL) (*sql.DB, error) { return mysqldb.Open(cfg, 4) }

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// Progress implements Store.
func (s *MySQLStore) Progress(ctx context.Context, id string) (Progress, error) {
	var p Progress
	var ms int64
	var fin sql.NullTime
	err := s.db.QueryRowContext(ctx,
		`SELECT done, retry, retry_after_ms, finished_at FROM dispatch_progress WHERE batch_id = ?`, id).
		Scan(&p.Done, &p.Retry, &ms, &fin)
	if errors.Is(err, sql.ErrNoRows) {
		return Progress{}, nil
	}
	if err != nil {
		return Progress{}, fmt.Errorf("dispatcher: read progress of %s: %w", id, err)
	}
	p.RetryAfter = time.Duration(ms) * time.Millisecond
	p.Finished = fin.Valid
	return p, nil
}

// SaveProgress implements Store.
func (s *MySQLStore) SaveProgress(ctx context.Context, id string, p Progress) error {
	done, retry := p.Done, p.Retry
	if done == nil {
		done = Bitmap{}
	}
	if retry == nil {
		retry = Bitmap{}
	}
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO dispatch_progress (batch_id, done, retry, retry_after_ms, updated_at) VALUES (?, ?, ?, ?, ?)
		 ON DUPLICATE KEY UPDATE done = VALUES(done), retry = VALUES(retry), retry_after_ms = VALUES(retry_after_ms), updated_at = VALUES(updated_at)`,
		id, []byte(done), []byte(retry), p.RetryAfter.Milliseconds(), time.Now().UTC())
	if err != nil {
		return fmt.Errorf("dispatcher: save progress of %s: %w", id, err)
	}
	return nil
}

// Finish implements Store.
func (s *MySQLStore) Finish(ctx context.Context, id string, at time.Time) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO dispatch_progress (batch_id, done, retry, retry_after_ms, finished_at, updated_at) VALUES (?, '', '', 0, ?, ?)
		 ON DUPLICATE KEY UPDATE finished_at = VALUES(finished_at), updated_at = VALUES(updated_at)`,
		id, at.UTC(), at.UTC())
	if err != nil {
		return fmt.Errorf("dispatcher: finish %s: %w", id, err)
	}
	return nil
}

// Park implements Store.
func (s *MySQLStore) Park(ctx context.Context, p Parked) error {
	h, err := json.Marshal(p.Headers)
	if err != nil {
		return fmt.Errorf("dispatcher: park %s: %w", p.BatchID, err)
	}
	_, err = s.db.ExecContext(ctx,
		`INSERT INTO dispatch_parked (batch_id, app, campaign_id, reason, send_at, expires_at, record_key, headers, value, parked_at)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		 ON DUPLICATE KEY UPDATE reason = VALUES(reason), record_key = VALUES(record_key), headers = VALUES(headers), value = VALUES(value), parked_at = VALUES(parked_at)`,
		p.BatchID, p.App, p.CampaignID, p.Reason, p.SendAt.UTC(), nullTime(p.ExpiresAt), p.Key, h, p.Value, p.ParkedAt.UTC())
	if err != nil {
		return fmt.Errorf("dispatcher: park %s: %w", p.BatchID, err)
	}
	return nil
}

// ListParked implements Store.
func (s *MySQLStore) ListParked(ctx context.Context, afterAt time.Time, afterID string, limit int) ([]Parked, error) {
	const cols = `SELECT batch_id, app, campaign_id, reason, send_at, expires_at, parked_at FROM dispatch_parked `
	var (
		rows *sql.Rows
		err  error
	)
	if afterAt.IsZero() {
		rows, err = s.db.QueryContext(ctx, cols+`ORDER BY parked_at, batch_id LIMIT ?`, limit)
	} else {
		at := afterAt.UTC()
		rows, err = s.db.QueryContext(ctx, cols+`WHERE parked_at > ? OR (parked_at = ? AND batch_id > ?) ORDER BY parked_at, batch_id LIMIT ?`,
			at, at, afterID, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("dispatcher: list parked: %w", err)
	}
	defer rows.Close()
	var out []Parked
	for rows.Next() {
		var p Parked
		var exp sql.NullTime
		if err := rows.Scan(&p.BatchID, &p.App, &p.CampaignID, &p.Reason, &p.SendAt, &exp, &p.ParkedAt); err != nil {
			return nil, fmt.Errorf("dispatcher: list parked: %w", err)
		}
		if exp.Valid {
			p.ExpiresAt = exp.Time
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dispatcher: list parked: %w", err)
	}
	return out, nil
}

// LoadParked implements Store.
func (s *MySQLStore) LoadParked(ctx context.Context, id string) (Parked, bool, error) {
	var p Parked
	var exp sql.NullTime
	var h []byte
	err := s.db.QueryRowContext(ctx,
		`SELECT batch_id, app, campaign_id, reason, send_at, expires_at, record_key, headers, value, parked_at FROM dispatch_parked WHERE batch_id = ?`, id).
		Scan(&p.BatchID, &p.App, &p.CampaignID, &p.Reason, &p.SendAt, &exp, &p.Key, &h, &p.Value, &p.ParkedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Parked{}, false, nil
	}
	if err != nil {
		return Parked{}, false, fmt.Errorf("dispatcher: load parked %s: %w", id, err)
	}
	if exp.Valid {
		p.ExpiresAt = exp.Time
	}
	if err := json.Unmarshal(h, &p.Headers); err != nil {
		return Parked{}, false, fmt.Errorf("dispatcher: load parked %s: headers: %w", id, err)
	}
	return p, true, nil
}

// Unpark implements Store.
func (s *MySQLStore) Unpark(ctx context.Context, id string, parkedAt time.Time) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM dispatch_parked WHERE batch_id = ? AND parked_at = ?`, id, parkedAt.UTC()); err != nil {
		return fmt.Errorf("dispatcher: unpark %s: %w", id, err)
	}
	return nil
}

// Halts implements Store.
func (s *MySQLStore) Halts(ctx context.Context) ([]Halt, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT app, provider, reason, since, probe_at FROM dispatch_halts ORDER BY app`)
	if err != nil {
		return nil, fmt.Errorf("dispatcher: list halts: %w", err)
	}
	defer rows.Close()
	var out []Halt
	for rows.Next() {
		var h Halt
		if err := rows.Scan(&h.App, &h.Provider, &h.Reason, &h.Since, &h.ProbeAt); err != nil {
			return nil, fmt.Errorf("dispatcher: list halts: %w", err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dispatcher: list halts: %w", err)
	}
	return out, nil
}

// SetHalt implements Store.
func (s *MySQLStore) SetHalt(ctx context.Context, h Halt) error {
	reason := utf8cut.Prefix(h.Reason, 256) // the column's VARCHAR(256)
	_, err := s.db.ExecContext(ctx,
		`INSERT IGNORE INTO dispatch_halts (app, provider, reason, since, probe_at) VALUES (?, ?, ?, ?, ?)`,
		h.App, h.Provider, reason, h.Since.UTC(), h.ProbeAt.UTC())
	if err != nil {
		return fmt.Errorf("dispatcher: halt %s: %w", h.App, err)
	}
	return nil
}

// ClaimProbe implements Store.
func (s *MySQLStore) ClaimProbe(ctx context.Context, app string, now, next time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx,
		`UPDATE dispatch_halts SET probe_at = ? WHERE app = ? AND probe_at <= ?`, next.UTC(), app, now.UTC())
	if err != nil {
		return false, fmt.Errorf("dispatcher: claim probe of %s: %w", app, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("dispatcher: claim probe of %s: %w", app, err)
	}
	return n == 1, nil
}

// ClearHalt implements Store.
func (s *MySQLStore) ClearHalt(ctx context.Context, app string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM dispatch_halts WHERE app = ?`, app); err != nil {
		return fmt.Errorf("dispatcher: clear halt of %s: %w", app, err)
	}
	return nil
}

// DeleteFinishedBefore implements Store, in slices so no statement holds
// many locks.
func (s *MySQLStore) DeleteFinishedBefore(ctx context.Context, t time.Time) (int64, error) {
	var total int64
	for {
		res, err := s.db.ExecContext(ctx, `DELETE FROM dispatch_progress WHERE finished_at < ? LIMIT 5000`, t.UTC())
		if err != nil {
			return total, fmt.Errorf("dispatcher: delete old progress: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
		if n < 5000 {
			return total, nil
		}
	}
}
