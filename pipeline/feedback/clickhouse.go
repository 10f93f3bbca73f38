package feedback

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/go-sql-driver/mysql"

	"github.com/pushlane/pushlane/internal/config"
	pkafka "github.com/pushlane/pushlane/pipeline/kafka"
)

// resultColumns are listed in every INSERT: clickhouse-go cannot prepare a
// batch without a column list against ClickHouse 18.16.
const resultColumns = `result_id, at, app, campaign_id, campaign_version, batch_id, device_id, user_id, token,
	platform, provider, outcome, status, reason, attempt, send_at, latency_ms, lateness_ms,
	locale, timezone, wave, provider_timestamp, version`

// ClickHouseSink inserts rows into <database>.results with one native
// batch per Write. The table is a ReplacingMergeTree(version) ordered by
// (campaign_id, result_id) and partitioned by the month of the result's
// time, which is part of the result: a replayed row lands in the same
// partition with the same key, so merges keep one, and the queries count
// distinct result ids until they do. The version is derived from the row
// (Row.version), never from when or by whom it was inserted.
type ClickHouseSink struct {
	conn     driver.Conn
	database string
}

// NewClickHouseSink writes into database through conn.
func NewClickHouseSink(conn driver.Conn, database string) (*ClickHouseSink, error) {
	if err := checkIdent(database); err != nil {
		return nil, err
	}
	return &ClickHouseSink{conn: conn, database: database}, nil
}

// Write inserts rows as one batch. A failed Write inserted nothing or
// everything the server acknowledged; either way the retry of the whole
// batch is deduplicated by result id.
func (s *ClickHouseSink) Write(ctx context.Context, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.database+".results ("+resultColumns+")", driver.WithReleaseConnection())
	if err != nil {
		return fmt.Errorf("feedback: clickhouse prepare insert: %w", err)
	}
	defer b.Close()
	for i := range rows {
		r := &rows[i]
		if err := b.Append(r.ResultID, r.At, r.App, r.CampaignID, r.CampaignVersion, r.BatchID, r.DeviceID, r.UserID, r.Token,
			r.Platform, r.Provider, r.Outcome, r.Status, r.Reason, r.Attempt, clampTime(r.SendAt), r.LatencyMs, r.LatenessMs,
			r.Locale, r.Timezone, r.Wave, clampTime(r.ProviderTimestamp), r.version()); err != nil {
			return fmt.Errorf("feedback: clickhouse append result %s: %w", r.ResultID, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("feedback: clickhouse insert %d rows: %w", len(rows), err)
	}
	return nil
}

// clampTime maps the zero time (no send-at, no provider timestamp) to the
// epoch, which is DateTime's zero.
func clampTime(t time.Time) time.Time {
	if t.Before(time.Unix(0, 0)) {
		return time.Unix(0, 0).UTC()
	}
	return t
}

// OpenClickHouse opens a native-protocol connection from cfg. Only integer
// settings are passed: ClickHouse 18.16 rejects string-valued settings
// from clickhouse-go.
func OpenClickHouse(cfg config.ClickHouse) (driver.Conn, error) {
	var tc *tls.Config
	if cfg.TLS.Enabled {
		var err error
		if tc, err = pkafka.TLSConfig(cfg.TLS); err != nil {
			return nil, fmt.Errorf("clickhouse.tls: %w", err)
		}
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        cfg.Addr,
		Auth:        clickhouse.Auth{Database: "default", Username: cfg.Username, Password: cfg.Password},
		TLS:         tc,
		Compression: &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		DialTimeout: 5 * time.Second,
		ReadTimeout: 60 * time.Second,
		Settings:    clickhouse.Settings{"max_execution_time": 60},
	})
	if err != nil {
		return nil, fmt.Errorf("feedback: open clickhouse: %w", err)
	}
	return conn, nil
}

// checkIdent guards the database name spliced into SQL text.
func checkIdent(name string) error {
	if name == "" || strings.ContainsAny(name, "`'\" ;.\\") {
		return fmt.Errorf("feedback: invalid database name %q", name)
	}
	return nil
}

// isNoSuchTable reports MySQL's "table doesn't exist" (1146), as MariaDB,
// MySQL and the embedded go-mysql-server report it.
func isNoSuchTable(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1146
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "doesn't exist") || strings.Contains(msg, "table not found")
}
