package schemas

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// APNs takes a background push only at priority 5, "normal" (which an
// empty priority means for one); "high" (10) and "low" (1) are refused,
// so a campaign or batch asking for them is refused before it is planned
// or sent. Batches carry their campaign's options, so both kinds apply it.
func TestBackgroundPushPriority(t *testing.T) {
	campaign := func(options string) []byte {
		return []byte(`{"schema_version":1,"id":"c1","app":"shop","audience":{"type":"segment"},"content":{"data":{"refresh":"1"}},` +
			`"schedule":{"mode":"at"},"options":` + options + `}`)
	}
	batch := func(options string) []byte {
		return []byte(`{"schema_version":1,"id":"b","campaign_id":"c1","campaign_version":1,"app":"shop","seq":0,"attempt":1,` +
			`"send_at":"2026-03-29T10:00:00Z","content":{"data":{"refresh":"1"}},"options":` + options +
			`,"devices":[{"token":"x","platform":"ios"}]}`)
	}
	for _, c := range []struct {
		priority string
		problem  string // "" when accepted
	}{
		{"", ""},
		{"normal", ""},
		{"high", `/options/priority: push_type "background" must not use priority "high" (APNs requires 5)`},
		{"low", `/options/priority: push_type "background" must not use priority "low" (APNs requires 5)`},
	} {
		options := `{"push_type":"background","content_available":true}`
		if c.priority != "" {
			options = `{"push_type":"background","content_available":true,"priority":"` + c.priority + `"}`
		}
		for _, k := range []struct {
			kind string
			data []byte
		}{{KindCampaign, campaign(options)}, {KindBatch, batch(options)}} {
			_, err := Decode(k.kind, k.data)
			switch {
			case c.problem == "" && err != nil:
				t.Errorf("%s with priority %q: %v", k.kind, c.priority, err)
			case c.problem != "" && (err == nil || err.Error() != "invalid "+k.kind+": "+c.problem):
				t.Errorf("%s with priority %q:\n got %v\nwant invalid %s: %s", k.kind, c.priority, err, k.kind, c.problem)
			}
		}
	}
	// Other push types keep every priority.
	if _, err := DecodeCampaign(campaign(`{"push_type":"alert","priority":"low","content_available":true}`)); err != nil {
		t.Errorf("alert with priority low: %v", err)
	}
}

// The schemas' descriptions tell producers how to key each event; the
// control and result keys are the ones the code writes (pipeline/control
// Key, pipeline/dispatcher resultRecords), where they once said
// "keyed by campaign_id" and "keyed by token".
func TestSchemasDescribeTheRecordKeys(t *testing.T) {
	for file, want := range map[string][]string{
		"campaign-control.v1.schema.json": {
			"A pause or a resume is keyed by campaign_id alone",
			"a cancel is keyed <campaign_id>/cancel",
			"compaction never replaces it with a later pause or resume",
		},
		"result.v1.schema.json": {`keyed <app>/<token> (the app, \"/\", the token)`},
	} {
		raw, err := os.ReadFile(filepath.Join("json", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(string(raw), w) {
				t.Errorf("%s does not say %q", file, w)
			}
		}
		for _, stale := range []string{"keyed by campaign_id.", "keyed by token"} {
			if strings.Contains(string(raw), stale) {
				t.Errorf("%s still says %q", file, stale)
			}
		}
	}
}
