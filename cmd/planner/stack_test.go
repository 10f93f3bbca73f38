package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/pushlane/pushlane/internal/migrate"
	"github.com/pushlane/pushlane/internal/testenv"
)

func writeFile(t testing.TB, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// plannerStack is the real stack as one test's planner command sees it:
// its own migrated database and topics, one delay tier, and the config
// file naming them. The campaign topic's name is also the group prefix,
// so the planner's group is <campaigns>-planner.
type plannerStack struct {
	db         *sql.DB
	campaigns  string
	ready      string
	configPath string
}

// newPlannerStack creates topics named after name, with campaignPartitions
// and readyPartitions partitions. app is the YAML flow mapping of app
// "shop", with one %q for a credentials file the stack writes; extra is
// YAML appended to the config.
func newPlannerStack(t testing.TB, name string, campaignPartitions, readyPartitions int32, app, extra string) *plannerStack {
	t.Helper()
	brokers := testenv.KafkaBrokers(t)
	dsn, db := testenv.MySQL(t)
	if _, err := migrate.MySQL(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	s := &plannerStack{
		db:        db,
		campaigns: testenv.Topic(t, name+"-campaigns", campaignPartitions, nil),
		ready:     testenv.Topic(t, name+"-ready", readyPartitions, nil),
	}
	results := testenv.Topic(t, name+"-results", 1, nil)
	dlq := testenv.Topic(t, name+"-dlq", 1, nil)
	ctl := testenv.Topic(t, name+"-control", 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")})
	tierPrefix := s.campaigns + ".delay"
	adm := testenv.KafkaAdmin(t)
	if _, err := adm.CreateTopic(context.Background(), 1, 1, nil, tierPrefix+".t00"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = adm.DeleteTopics(context.Background(), tierPrefix+".t00") })

	dir := t.TempDir()
	credentials := writeFile(t, dir, "sa.json", "{}")
	dc, _ := mysql.ParseDSN(dsn)
	s.configPath = writeFile(t, dir, "pushlane.yaml", fmt.Sprintf(`
kafka:
  brokers: [%q]
  group_prefix: %q
  topics:
    campaigns: {name: %q}
    ready: {name: %q}
    results: {name: %q}
    dead_letter: {name: %q}
    control: {name: %q}
    delay: {name: %q}
delay:
  tiers: 1
mysql:
  dsn: %q
apps:
  shop: %s
http:
  addr: "127.0.0.1:0"
%s`, brokers[0], s.campaigns, s.campaigns, s.ready, results, dlq, ctl, tierPrefix, dc.FormatDSN(), fmt.Sprintf(app, credentials), extra))
	return s
}
