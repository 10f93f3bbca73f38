package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/testenv"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestMissingServiceSkipsOrFails(t *testing.T) {
	// Runs a child test with every variable unset, once without and once with
	// PUSHLANE_TEST_REQUIRE=1, and checks the child's outcome.
	if os.Getenv("TESTENV_CHILD") == "1" {
		testenv.KafkaBrokers(t)
		t.Fatal("KafkaBrokers returned although PUSHLANE_TEST_KAFKA_BROKERS is unset")
	}
	for _, tc := range []struct {
		require string
		want    []string
	}{
		{"", []string{"--- SKIP: TestMissingServiceSkipsOrFails", "integration: set PUSHLANE_TEST_KAFKA_BROKERS (deploy/local/env)"}},
		{"1", []string{"--- FAIL: TestMissingServiceSkipsOrFails", "integration: PUSHLANE_TEST_REQUIRE=1 but PUSHLANE_TEST_KAFKA_BROKERS is unset (deploy/local/env)"}},
	} {
		t.Run("require="+tc.require, func(t *testing.T) {
			out, err := runChild(t, map[string]string{
				"TESTENV_CHILD":           "1",
				testenv.EnvRequire:        tc.require,
				testenv.EnvKafkaBrokers:   "",
				testenv.EnvMySQLDSN:       "",
				testenv.EnvClickHouseAddr: "",
				testenv.EnvStackCtl:       "",
			})
			if tc.require == "1" && err == nil {
				t.Fatalf("child passed with %s=1; output:\n%s", testenv.EnvRequire, out)
			}
			if tc.require == "" && err != nil {
				t.Fatalf("child failed without %s: %v; output:\n%s", testenv.EnvRequire, err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Fatalf("child output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestKafkaTopicProduceConsume(t *testing.T) {
	topic := testenv.Topic(t, "testenv", 3, map[string]*string{"retention.ms": kadm.StringPtr("3600000")})
	if !regexp.MustCompile(`^testenv-[0-9a-f]{8}-[0-9a-f]{8}$`).MatchString(topic) {
		t.Fatalf("topic name %q does not have the form testenv-<hash>-<random>", topic)
	}
	ctx := ctxFor(t, time.Minute)

	adm := testenv.KafkaAdmin(t)
	cfgs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatalf("describe configs of %s: %v", topic, err)
	}
	rc, err := cfgs.On(topic, nil)
	if err != nil || rc.Err != nil {
		t.Fatalf("describe configs of %s: %v / %v", topic, err, rc.Err)
	}
	var retention string
	for _, c := range rc.Configs {
		if c.Key == "retention.ms" {
			retention = c.MaybeValue()
		}
	}
	if retention != "3600000" {
		t.Fatalf("retention.ms of %s = %q, want 3600000", topic, retention)
	}

	producer := testenv.KafkaClient(t, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	const perPartition = 5
	var sent []*kgo.Record
	for i := 0; i < 3*perPartition; i++ {
		sent = append(sent, &kgo.Record{
			Partition: int32(i % 3),
			Key:       []byte(fmt.Sprintf("k%d", i)),
			Value:     []byte(fmt.Sprintf("v%d", i)),
		})
	}
	if err := producer.ProduceSync(ctx, sent...).FirstErr(); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}

	consumer := testenv.KafkaClient(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := map[int32][]string{}
	for n := 0; n < len(sent); {
		fs := consumer.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records before timeout: %v", n, len(sent), got)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			got[r.Partition] = append(got[r.Partition], string(r.Key)+"="+string(r.Value))
			n++
		})
	}
	for p := int32(0); p < 3; p++ {
		var want []string
		for i := int(p); i < len(sent); i += 3 {
			want = append(want, fmt.Sprintf("k%d=v%d", i, i))
		}
		if strings.Join(got[p], ",") != strings.Join(want, ",") {
			t.Errorf("partition %d: got %v, want %v (in order)", p, got[p], want)
		}
	}
}

func TestKafkaTransactionsReadCommitted(t *testing.T) {
	topic := testenv.Topic(t, "testenv-txn", 1, nil)
	ctx := ctxFor(t, 2*time.Minute)
	txid := "testenv-" + topic
	producer := testenv.KafkaClient(t, kgo.DefaultProduceTopic(topic), kgo.TransactionalID(txid))

	produceTxn := func(commit bool, values ...string) {
		t.Helper()
		if err := producer.BeginTransaction(); err != nil {
			t.Fatalf("begin transaction: %v", err)
		}
		for _, v := range values {
			if err := producer.ProduceSync(ctx, kgo.StringRecord(v)).FirstErr(); err != nil {
				t.Fatalf("produce %q in transaction: %v", v, err)
			}
		}
		if err := producer.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("end transaction (commit=%v): %v", commit, err)
		}
	}
	produceTxn(true, "a1", "a2")
	produceTxn(false, "aborted")
	produceTxn(true, "b1")

	consumer := testenv.KafkaClient(t, kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	var got []string
	for len(got) < 3 {
		fs := consumer.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read committed got %v before timeout", got)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if strings.Join(got, ",") != "a1,a2,b1" {
		t.Fatalf("read committed consumer got %v, want [a1 a2 b1]", got)
	}
}

func TestTopicNamesAreUniqueAndDeletedAtCleanup(t *testing.T) {
	var names []string
	t.Run("inner", func(t *testing.T) {
		names = append(names, testenv.Topic(t, "same", 1, nil), testenv.Topic(t, "same", 1, nil))
		if names[0] == names[1] {
			t.Fatalf("two Topic calls returned the same name %s", names[0])
		}
		if a, b := names[0][:len("same-")+8], names[1][:len("same-")+8]; a != b {
			t.Fatalf("same test, different hash parts: %s vs %s", a, b)
		}
	})
	if len(names) != 2 {
		t.Fatal("inner test did not create both topics")
	}
	ctx := ctxFor(t, time.Minute)
	adm := testenv.KafkaAdmin(t)
	for {
		topics, err := adm.ListTopics(ctx)
		if err != nil {
			t.Fatalf("list topics: %v", err)
		}
		if !topics.Has(names[0]) && !topics.Has(names[1]) {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("topics %v still exist after the inner test's cleanup", names)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestMySQLDatabase(t *testing.T) {
	var dbName string
	t.Run("inner", func(t *testing.T) {
		dsn, db := testenv.MySQL(t)
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatalf("parse returned dsn %q: %v", dsn, err)
		}
		dbName = cfg.DBName
		if !regexp.MustCompile(`^t_[0-9a-f]{16}$`).MatchString(dbName) || !cfg.ParseTime || !cfg.MultiStatements || cfg.Loc != time.UTC {
			t.Fatalf("dsn %q: want database t_<hex>, parseTime, multiStatements, loc=UTC", dsn)
		}
		ctx := ctxFor(t, time.Minute)
		var current string
		if err := db.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&current); err != nil || current != dbName {
			t.Fatalf("SELECT DATABASE() = %q, %v; want %q", current, err, dbName)
		}
		// Two statements in one Exec proves multiStatements.
		if _, err := db.ExecContext(ctx, `
			CREATE TABLE devices (id BIGINT PRIMARY KEY, token VARCHAR(200) NOT NULL, seen_at DATETIME(3) NOT NULL);
			INSERT INTO devices VALUES (1, 'tok-a', '2026-01-02 03:04:05.678'), (2, 'tok-b', '2026-01-02 03:04:06.000');`); err != nil {
			t.Fatalf("create and insert: %v", err)
		}
		rows, err := db.QueryContext(ctx, "SELECT id, token, seen_at FROM devices ORDER BY id")
		if err != nil {
			t.Fatalf("select: %v", err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var id int64
			var token string
			var seen time.Time
			if err := rows.Scan(&id, &token, &seen); err != nil {
				t.Fatalf("scan: %v", err)
			}
			got = append(got, fmt.Sprintf("%d %s %s", id, token, seen.Format(time.RFC3339Nano)))
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("rows: %v", err)
		}
		want := "1 tok-a 2026-01-02T03:04:05.678Z|2 tok-b 2026-01-02T03:04:06Z"
		if strings.Join(got, "|") != want {
			t.Fatalf("rows = %q, want %q", strings.Join(got, "|"), want)
		}
		_, other := testenv.MySQL(t)
		var otherName string
		if err := other.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&otherName); err != nil || otherName == dbName {
			t.Fatalf("second MySQL database %q (%v), want one different from %q", otherName, err, dbName)
		}
	})
	if dbName == "" {
		t.Fatal("inner test did not get a database")
	}
	// After the inner test's cleanup the database is gone.
	_, db := testenv.MySQL(t)
	var n int
	err := db.QueryRowContext(ctxFor(t, time.Minute),
		"SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?", dbName).Scan(&n)
	if err != nil || n != 0 {
		t.Fatalf("database %s after cleanup: count %d, err %v; want dropped", dbName, n, err)
	}
}

func TestClickHouseDatabase(t *testing.T) {
	var dbName string
	t.Run("inner", func(t *testing.T) {
		addr, database, conn := testenv.ClickHouse(t)
		if addr == "" || !regexp.MustCompile(`^t_[0-9a-f]{16}$`).MatchString(database) {
			t.Fatalf("ClickHouse() = %q, %q; want an address and t_<hex>", addr, database)
		}
		dbName = database
		ctx := ctxFor(t, time.Minute)
		if err := conn.Exec(ctx, `CREATE TABLE sends (campaign String, token String, status UInt16, at DateTime)
			ENGINE = MergeTree ORDER BY (campaign, at)`); err != nil {
			t.Fatalf("create table in %s: %v", database, err)
		}
		// The explicit column list is what ClickHouse 18.16 needs (see the package doc).
		batch, err := conn.PrepareBatch(ctx, "INSERT INTO sends (campaign, token, status, at)")
		if err != nil {
			t.Fatalf("prepare batch: %v", err)
		}
		at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		for i, status := range []uint16{200, 410, 200} {
			if err := batch.Append("c1", fmt.Sprintf("tok-%d", i), status, at.Add(time.Duration(i)*time.Second)); err != nil {
				t.Fatalf("append row %d: %v", i, err)
			}
		}
		if err := batch.Send(); err != nil {
			t.Fatalf("send batch: %v", err)
		}
		rows, err := conn.Query(ctx, "SELECT status, count() AS n, max(at) FROM sends WHERE campaign = 'c1' GROUP BY status ORDER BY status")
		if err != nil {
			t.Fatalf("select: %v", err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var status uint16
			var n uint64
			var last time.Time
			if err := rows.Scan(&status, &n, &last); err != nil {
				t.Fatalf("scan: %v", err)
			}
			got = append(got, fmt.Sprintf("%d:%d:%s", status, n, last.UTC().Format(time.RFC3339)))
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("rows: %v", err)
		}
		want := "200:2:2026-01-02T03:04:07Z|410:1:2026-01-02T03:04:06Z"
		if strings.Join(got, "|") != want {
			t.Fatalf("rows = %q, want %q", strings.Join(got, "|"), want)
		}
	})
	if dbName == "" {
		t.Fatal("inner test did not get a database")
	}
	_, _, conn := testenv.ClickHouse(t)
	var n uint64
	if err := conn.QueryRow(ctxFor(t, time.Minute), "SELECT count() FROM system.databases WHERE name = '"+dbName+"'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("database %s after cleanup: count %d, err %v; want dropped", dbName, n, err)
	}
}

func TestStackCtlStatus(t *testing.T) {
	// status disturbs nothing, and while this process uses the stack no other
	// test process can be between a stop and a start, so all three are running.
	testenv.StackCtl(t, "status", "all")
}

func TestStackCtlStopIsUndoneAtCleanup(t *testing.T) {
	addr := testenv.ClickHouseAddr(t)
	t.Run("stops clickhouse and forgets to start it", func(t *testing.T) {
		testenv.StackCtl(t, "stop", "clickhouse")
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s still accepts connections after stop clickhouse", addr)
		}
	})
	// The subtest's cleanup started it again and waited for it.
	_, _, conn := testenv.ClickHouse(t)
	var one uint8
	if err := conn.QueryRow(ctxFor(t, time.Minute), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 after the cleanup: %d, %v", one, err)
	}
}

func TestTopicRejectsBadBase(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "1" {
		testenv.Topic(t, "bad/name", 1, nil)
		t.Fatal("Topic accepted the base bad/name")
	}
	testenv.KafkaBrokers(t) // a configured broker, so the failure below is about the name
	out, err := runChild(t, map[string]string{"TESTENV_CHILD": "1"})
	if err == nil || !strings.Contains(out, `testenv: topic base "bad/name": want 1-200 of [a-zA-Z0-9._-]`) {
		t.Fatalf("Topic with base bad/name: err %v, output:\n%s", err, out)
	}
}

// runChild re-runs this test binary on the calling test's name with env changes.
func runChild(t *testing.T, env map[string]string) (string, error) {
	t.Helper()
	name := strings.SplitN(t.Name(), "/", 2)[0]
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.v")
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, drop := env[k]; !drop {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		if v != "" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run child test: %v", err)
	}
	return string(out), err
}
