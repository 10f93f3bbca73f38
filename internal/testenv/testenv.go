// Package testenv gives integration tests the real Kafka, MariaDB and ClickHouse
// started by deploy/local, each test isolated in its own topic or database.
//
// The services are found through environment variables (printed by
// deploy/local/env). When one is unset the test is skipped, unless
// PUSHLANE_TEST_REQUIRE=1 (as in CI), where it fails instead: a missing service
// must never pass silently.
//
// Tests that stop or restart a service through StackCtl get the stack to
// themselves: see lock.go.
//
// ClickHouse is 18.16 (Debian bookworm). With clickhouse-go v2 against it, insert
// through PrepareBatch with an explicit column list ("INSERT INTO t (a, b)");
// without the list the server returns an empty header, and Exec of
// "INSERT ... VALUES" waits for data the driver never sends.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/go-sql-driver/mysql"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Environment variables read by this package; deploy/local/env prints them.
const (
	EnvRequire        = "PUSHLANE_TEST_REQUIRE"
	EnvKafkaBrokers   = "PUSHLANE_TEST_KAFKA_BROKERS"
	EnvMySQLDSN       = "PUSHLANE_TEST_MYSQL_DSN"
	EnvClickHouseAddr = "PUSHLANE_TEST_CLICKHOUSE_ADDR"
	EnvStackCtl       = "PUSHLANE_TEST_STACK_CTL"
)

// setupTimeout bounds each call that prepares or tears down a test's resources.
const setupTimeout = 60 * time.Second

// Required reports whether a missing service must fail the test (PUSHLANE_TEST_REQUIRE=1).
func Required() bool {
	return os.Getenv(EnvRequire) == "1"
}

// lookup returns the variable's value, or skips (fails when Required) the test.
func lookup(t testing.TB, name string) string {
	t.Helper()
	v := strings.TrimSpace(os.Getenv(name))
	if v != "" {
		stack.share(t)
		return v
	}
	if Required() {
		t.Fatalf("integration: %s=1 but %s is unset (deploy/local/env)", EnvRequire, name)
	}
	t.Skipf("integration: set %s (deploy/local/env)", name)
	return ""
}

// KafkaBrokers returns the seed brokers from PUSHLANE_TEST_KAFKA_BROKERS.
func KafkaBrokers(t testing.TB) []string {
	t.Helper()
	var brokers []string
	for _, b := range strings.Split(lookup(t, EnvKafkaBrokers), ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	if len(brokers) == 0 {
		t.Fatalf("integration: %s lists no broker", EnvKafkaBrokers)
	}
	return brokers
}

// MySQLDSN returns the server-level DSN from PUSHLANE_TEST_MYSQL_DSN (no database).
func MySQLDSN(t testing.TB) string {
	t.Helper()
	return lookup(t, EnvMySQLDSN)
}

// ClickHouseAddr returns the native-protocol address from PUSHLANE_TEST_CLICKHOUSE_ADDR.
func ClickHouseAddr(t testing.TB) string {
	t.Helper()
	return lookup(t, EnvClickHouseAddr)
}

// KafkaClient returns a client seeded with the test brokers plus opts, closed at cleanup.
func KafkaClient(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	all := append([]kgo.Opt{kgo.SeedBrokers(KafkaBrokers(t)...)}, opts...)
	cl, err := kgo.NewClient(all...)
	if err != nil {
		t.Fatalf("testenv: kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// KafkaAdmin returns an admin client on the test brokers, closed at cleanup.
func KafkaAdmin(t testing.TB) *kadm.Client {
	t.Helper()
	return kadm.NewClient(KafkaClient(t))
}

var topicBase = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,200}$`)

// Topic creates a topic named base-<hash of the test name>-<random> with the
// given partitions (replication factor 1) and topic configs, waits until every
// partition has a leader and answers offset requests, and deletes it at cleanup.
func Topic(t testing.TB, base string, partitions int32, configs map[string]*string) string {
	t.Helper()
	if !topicBase.MatchString(base) {
		t.Fatalf("testenv: topic base %q: want 1-200 of [a-zA-Z0-9._-]", base)
	}
	if partitions < 1 {
		t.Fatalf("testenv: topic %s: partitions %d, want at least 1", base, partitions)
	}
	brokers := KafkaBrokers(t)
	name := fmt.Sprintf("%s-%s-%s", base, nameHash(t.Name()), randomHex(t, 4))

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatalf("testenv: kafka admin client: %v", err)
	}
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()

	resp, err := adm.CreateTopic(ctx, partitions, 1, configs, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		cl.Close()
		t.Fatalf("testenv: create topic %s (%d partitions): %v", name, partitions, err)
	}
	// Registered before waiting, so a topic that never becomes usable is still removed.
	t.Cleanup(func() {
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		resps, err := adm.DeleteTopics(ctx, name)
		if err == nil {
			var r kadm.DeleteTopicResponse
			if r, err = resps.On(name, nil); err == nil {
				err = r.Err
			}
		}
		if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
			t.Errorf("testenv: delete topic %s: %v", name, err)
		}
	})
	if err := waitTopicUsable(ctx, adm, name, partitions); err != nil {
		t.Fatalf("testenv: topic %s: %v", name, err)
	}
	return name
}

// waitTopicUsable polls until metadata shows every partition with a leader and
// the leaders answer ListOffsets: creation is acknowledged by the controller
// before the broker has loaded the partitions.
func waitTopicUsable(ctx context.Context, adm *kadm.Client, name string, partitions int32) error {
	var last error
	for {
		last = topicUsable(ctx, adm, name, partitions)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not usable before timeout: %w", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func topicUsable(ctx context.Context, adm *kadm.Client, name string, partitions int32) error {
	md, err := adm.Metadata(ctx, name)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	td, ok := md.Topics[name]
	if !ok {
		return errors.New("absent from metadata")
	}
	if td.Err != nil {
		return fmt.Errorf("metadata: %w", td.Err)
	}
	if int32(len(td.Partitions)) != partitions {
		return fmt.Errorf("metadata lists %d of %d partitions", len(td.Partitions), partitions)
	}
	for p, pd := range td.Partitions {
		if pd.Err != nil || pd.Leader < 0 {
			return fmt.Errorf("partition %d has no leader yet (%v)", p, pd.Err)
		}
	}
	offs, err := adm.ListEndOffsets(ctx, name)
	if err != nil {
		return fmt.Errorf("list end offsets: %w", err)
	}
	if err := offs.Error(); err != nil {
		return fmt.Errorf("list end offsets: %w", err)
	}
	if n := len(offs[name]); int32(n) != partitions {
		return fmt.Errorf("end offsets for %d of %d partitions", n, partitions)
	}
	return nil
}

// MySQL creates a fresh database t_<random> on the test server and returns a DSN
// for it (parseTime=true, multiStatements=true, loc=UTC) and an open handle. The
// handle is closed and the database dropped at cleanup.
func MySQL(t testing.TB) (dsn string, db *sql.DB) {
	t.Helper()
	base := MySQLDSN(t)
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatalf("testenv: parse %s: %v", EnvMySQLDSN, err)
	}
	if cfg.DBName != "" {
		t.Fatalf("testenv: %s names database %q; it must name none (each test gets its own)", EnvMySQLDSN, cfg.DBName)
	}
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatalf("testenv: open mysql: %v", err)
	}
	name := "t_" + randomHex(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"); err != nil {
		admin.Close()
		t.Fatalf("testenv: create mysql database %s: %v", name, err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Errorf("testenv: drop mysql database %s: %v", name, err)
		}
	})

	cfg.DBName = name
	cfg.ParseTime = true
	cfg.MultiStatements = true
	cfg.Loc = time.UTC
	dsn = cfg.FormatDSN()
	db, err = sql.Open("mysql", dsn)
	if err != nil {
		t.Fatalf("testenv: open mysql database %s: %v", name, err)
	}
	// Registered after the drop, so it runs first: no open connection holds the database.
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("testenv: ping mysql database %s: %v", name, err)
	}
	return dsn, db
}

// ClickHouse creates a fresh database t_<random> on the test server and returns
// the address, the database name and a native connection that uses it by
// default. The connection is closed and the database dropped at cleanup.
func ClickHouse(t testing.TB) (addr, database string, conn driver.Conn) {
	t.Helper()
	addr = ClickHouseAddr(t)
	admin, err := clickhouse.Open(clickhouseOptions(addr, "default"))
	if err != nil {
		t.Fatalf("testenv: open clickhouse %s: %v", addr, err)
	}
	database = "t_" + randomHex(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := admin.Exec(ctx, "CREATE DATABASE "+database); err != nil {
		admin.Close()
		t.Fatalf("testenv: create clickhouse database %s on %s: %v", database, addr, err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+database); err != nil {
			t.Errorf("testenv: drop clickhouse database %s: %v", database, err)
		}
	})

	conn, err = clickhouse.Open(clickhouseOptions(addr, database))
	if err != nil {
		t.Fatalf("testenv: open clickhouse database %s: %v", database, err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("testenv: ping clickhouse database %s: %v", database, err)
	}
	return addr, database, conn
}

func clickhouseOptions(addr, database string) *clickhouse.Options {
	return &clickhouse.Options{
		Addr:        []string{addr},
		Auth:        clickhouse.Auth{Database: database, Username: "default"},
		DialTimeout: 10 * time.Second,
		// A hung statement fails the test in a minute instead of at go test's timeout.
		ReadTimeout: time.Minute,
	}
}

// StackCtl runs the deploy/local/stack script with args (for example "restart",
// "kafka") and fails the test if it fails. start and restart return once the
// service answers again.
//
// stop and restart first wait until no other test process uses the stack, and
// keep it to the calling test until its cleanup, which starts the services it
// touched again (so a failed test cannot leave a service down for the others).
func StackCtl(t testing.TB, args ...string) {
	t.Helper()
	path := lookup(t, EnvStackCtl)
	if len(args) > 0 && (args[0] == "stop" || args[0] == "restart") {
		stack.exclude(t)
		service := "all"
		if len(args) > 1 {
			service = args[1]
		}
		t.Cleanup(func() {
			if out, err := runStackCtl(path, "start", service); err != nil {
				t.Errorf("testenv: restoring %s after the test: %s start %s: %v\n%s", service, path, service, err, out)
			}
		})
	}
	start := time.Now()
	if out, err := runStackCtl(path, args...); err != nil {
		t.Fatalf("testenv: %s %s: %v\n%s", path, strings.Join(args, " "), err, out)
	}
	t.Logf("testenv: %s %s (%s)", path, strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
}

func runStackCtl(path string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	// The script's services run detached with their own output files; this only
	// guards against a child that keeps the pipe open.
	cmd.WaitDelay = 10 * time.Second
	return cmd.CombinedOutput()
}

func nameHash(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	return fmt.Sprintf("%08x", h.Sum32())
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testenv: random name: %v", err)
	}
	return hex.EncodeToString(b)
}
