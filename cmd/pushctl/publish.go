package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

// listFlag is a comma-separated list flag that may also be repeated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// repeatFlag collects every occurrence of a flag verbatim.
type repeatFlag []string

func (r *repeatFlag) String() string     { return strings.Join(*r, " ") }
func (r *repeatFlag) Set(v string) error { *r = append(*r, v); return nil }

// publishFlags are the flags that describe a campaign.
type publishFlags struct {
	file   string
	dryRun bool

	id, app           string
	version           int
	title, body       string
	badge             int
	sound             string
	data              repeatFlag
	localized         repeatFlag
	fallbackLocale    string
	segment           bool
	platforms         listFlag
	locales           listFlag
	users             listFlag
	tokens            string
	at                string
	localTime         string
	localDate         string
	timezone          string
	expires           string
	ttl               time.Duration
	priority          string
	pushType          string
	collapseID        string
	threadID          string
	category          string
	contentAvailable  bool
	mutableContent    bool
	interruptionLevel string
	androidChannel    string
	batchSize         int
	throttle          int
}

// contentFlagsSet reports which campaign-describing flags were given, to
// refuse mixing them with -f.
func contentFlagsSet(fs *flag.FlagSet) []string {
	var set []string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "f", "dry-run":
		default:
			set = append(set, "-"+f.Name)
		}
	})
	return set
}

func publishCommand() *command {
	return &command{
		name:    "publish",
		args:    "(-f FILE | -app APP (-segment | -tokens T1,T2) [content and schedule flags])",
		summary: "Validate a campaign and publish it to the campaigns topic; prints its id",
		details: `
The campaign comes from a JSON file (-f, "-" for stdin; see schemas/examples/campaign/)
or from flags. A file without "id" gets a generated one, like a campaign from flags
without -id; "created_at" is set when absent. The campaign is validated with the
same rules the planner applies (schemas.DecodeCampaign) before anything is sent:
an invalid campaign exits 3 and is not published.

An audience must be chosen explicitly: -segment sends to every active device of the
app (narrowed by -platforms, -locales, -users), -tokens to the listed tokens only.

Times (-at, -expires) are RFC 3339 ("2026-03-20T09:00:00Z"), "now", or "+DURATION"
from now ("+90m"). -local-time sends at that wall-clock time on -local-date in each
device's own time zone (-timezone for devices without one).

stdout gets the campaign id alone, so a script can capture it.`,
		examples: []string{
			`pushctl publish -f spring-sale.json`,
			`pushctl publish -app shop -segment -platforms ios -title "Spring sale" -body "20% off" -at 2026-03-20T09:00:00Z`,
			`pushctl publish -app shop -tokens 7f3c…,c0ff… -title "Order shipped" -priority high`,
			`pushctl publish -app news -segment -title "Digest" -local-time 09:00 -local-date 2026-03-29 -timezone Europe/Berlin -ttl 3h`,
			`pushctl publish -app shop -segment -push-type background -content-available -priority normal -data refresh=catalog`,
			`id=$(pushctl publish -f campaign.json) && pushctl cancel "$id"`,
		},
		flags: func(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
			var p publishFlags
			fs.StringVar(&p.file, "f", "", "campaign JSON `file`; \"-\" reads stdin")
			fs.BoolVar(&p.dryRun, "dry-run", false, "validate and print the campaign JSON; send nothing")
			fs.StringVar(&p.id, "id", "", "campaign `id`; generated when absent (<app>-<UTC time>-<random>)")
			fs.StringVar(&p.app, "app", "", "the `app` (a key of apps in the configuration)")
			fs.IntVar(&p.version, "version", 0, "campaign `version`; bump it to re-publish a changed campaign (default 1)")
			fs.StringVar(&p.title, "title", "", "notification `title`")
			fs.StringVar(&p.body, "body", "", "notification `body`")
			fs.IntVar(&p.badge, "badge", -1, "app icon badge `number`; 0 clears it")
			fs.StringVar(&p.sound, "sound", "", "`sound` name, e.g. default")
			fs.Var(&p.data, "data", "custom data `key=value`; repeat for more")
			fs.Var(&p.localized, "localized", "localized text `locale=title|body`; repeat per locale")
			fs.StringVar(&p.fallbackLocale, "fallback-locale", "", "`locale` of the -localized text for devices matching none")
			fs.BoolVar(&p.segment, "segment", false, "audience: every active device of the app (narrow with -platforms, -locales, -users)")
			fs.Var(&p.platforms, "platforms", "segment filter: `ios,android`")
			fs.Var(&p.locales, "locales", "segment filter: device `locales` (de-DE,fr)")
			fs.Var(&p.users, "users", "segment filter: `user ids`")
			fs.StringVar(&p.tokens, "tokens", "", "audience: `tokens` T1,T2 or @FILE with one token per line")
			fs.StringVar(&p.at, "at", "now", "send `time`: RFC 3339, now, or +DURATION")
			fs.StringVar(&p.localTime, "local-time", "", "send at this `HH:MM` in each device's time zone (needs -local-date)")
			fs.StringVar(&p.localDate, "local-date", "", "the `YYYY-MM-DD` of -local-time")
			fs.StringVar(&p.timezone, "timezone", "", "IANA `zone` for devices without one (with -local-time)")
			fs.StringVar(&p.expires, "expires", "", "send nothing after this `time`: RFC 3339 or +DURATION")
			fs.DurationVar(&p.ttl, "ttl", 0, "each batch's life after its send time, also the provider TTL")
			fs.StringVar(&p.priority, "priority", "", "high, normal or low")
			fs.StringVar(&p.pushType, "push-type", "", "APNs push `type`: alert, background, voip, ...")
			fs.StringVar(&p.collapseID, "collapse-id", "", "APNs collapse id / FCM collapse key (at most 64 bytes)")
			fs.StringVar(&p.threadID, "thread-id", "", "APNs thread `id`")
			fs.StringVar(&p.category, "category", "", "APNs `category`")
			fs.BoolVar(&p.contentAvailable, "content-available", false, "silent/background push")
			fs.BoolVar(&p.mutableContent, "mutable-content", false, "let the app's notification service extension modify it")
			fs.StringVar(&p.interruptionLevel, "interruption-level", "", "passive, active, time-sensitive or critical")
			fs.StringVar(&p.androidChannel, "android-channel", "", "Android notification `channel` id")
			fs.IntVar(&p.batchSize, "batch-size", 0, "`N` devices per batch (default 1000)")
			fs.IntVar(&p.throttle, "throttle", 0, "spread the campaign's batches to `N` sends per second on average from each start (batches held by a pause go out together on resume); 0 = unthrottled")
			return func(ctx context.Context, args []string) error {
				if len(args) > 0 {
					return usagef("unexpected argument %q", args[0])
				}
				var raw []byte
				var err error
				if p.file != "" {
					if set := contentFlagsSet(fs); len(set) > 0 {
						return usagef("-f cannot be combined with %s: put them in the file", strings.Join(set, ", "))
					}
					raw, err = c.campaignFromFile(p.file)
				} else {
					var camp *schemas.Campaign
					camp, err = campaignFromFlags(&p, c.now(), c.readTokens)
					if err == nil {
						raw, err = json.Marshal(camp)
					}
				}
				if err != nil {
					return err
				}
				camp, err := schemas.DecodeCampaign(raw)
				if err != nil {
					return invalid(err)
				}
				// Publish the decoded form: defaults applied, fields in
				// schema order, nothing the schema would not accept.
				value, err := json.Marshal(camp)
				if err != nil {
					return fmt.Errorf("encode campaign %s: %w", camp.ID, err)
				}
				if p.dryRun {
					var out bytes.Buffer
					if err := json.Indent(&out, value, "", "  "); err != nil {
						return err
					}
					out.WriteByte('\n')
					_, err := c.stdout.Write(out.Bytes())
					return err
				}
				cfg, err := c.loadConfig()
				if err != nil {
					return err
				}
				if _, ok := cfg.Apps[camp.App]; !ok && len(cfg.Apps) > 0 {
					return invalid(fmt.Errorf("app %q is not configured (apps: %s)", camp.App, strings.Join(appNames(cfg.Apps), ", ")))
				}
				cl, err := c.kafkaClient(cfg)
				if err != nil {
					return err
				}
				defer cl.Close()
				rec := &kgo.Record{
					Topic:   cfg.Kafka.Topics.Campaigns.Name,
					Key:     []byte(camp.ID),
					Value:   value,
					Headers: []kgo.RecordHeader{{Key: kafka.HeaderSchema, Value: []byte("campaign.v1")}, {Key: kafka.HeaderCampaignID, Value: []byte(camp.ID)}},
				}
				if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
					return fmt.Errorf("produce campaign %s to %s: %w", camp.ID, rec.Topic, err)
				}
				fmt.Fprintln(c.stdout, camp.ID)
				return nil
			}
		},
	}
}

// campaignFromFile reads a campaign file and fills in id and created_at
// when absent. Everything else is the author's and is validated as is.
func (c *cli) campaignFromFile(path string) ([]byte, error) {
	var raw []byte
	var err error
	if path == "-" {
		raw, err = io.ReadAll(c.stdin)
	} else {
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read campaign: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		// Let the validator word it, with the byte offset.
		return raw, nil
	}
	if _, ok := doc["id"]; ok {
		if _, ok := doc["created_at"]; ok {
			return raw, nil
		}
	}
	if _, ok := doc["id"]; !ok {
		app, _ := doc["app"].(string)
		doc["id"] = newCampaignID(app, c.now())
	}
	if _, ok := doc["created_at"]; !ok {
		doc["created_at"] = c.now().UTC().Format(time.RFC3339Nano)
	}
	return json.Marshal(doc)
}

// readTokens reads "@file" token lists: one token per line, blank lines and
// lines starting with # ignored.
func (c *cli) readTokens(path string) ([]string, error) {
	var r io.Reader
	if path == "-" {
		r = c.stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, usagef("-tokens: %v", err)
		}
		defer f.Close()
		r = f
	}
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" && !strings.HasPrefix(t, "#") {
			out = append(out, t)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read tokens from %s: %w", path, err)
	}
	return out, nil
}

// newCampaignID makes an id from the app, the time and 24 random bits:
// readable in listings, unique without coordination.
func newCampaignID(app string, now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	prefix := "campaign"
	if app != "" && strings.Trim(app, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == "" {
		prefix = app
	}
	return fmt.Sprintf("%s-%s-%s", prefix, now.UTC().Format("20060102-150405"), hex.EncodeToString(b[:]))
}

// parseWhen reads "now", "+DURATION" or an RFC 3339 time. "now" is the zero
// time: the schema's "send now".
func parseWhen(flagName, v string, now time.Time) (time.Time, error) {
	switch {
	case v == "" || v == "now":
		return time.Time{}, nil
	case strings.HasPrefix(v, "+"):
		d, err := time.ParseDuration(v[1:])
		if err != nil || d <= 0 {
			return time.Time{}, usagef("-%s %q: want RFC 3339, now, or +DURATION such as +90m", flagName, v)
		}
		return now.Add(d).UTC().Truncate(time.Second), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, usagef("-%s %q: want RFC 3339 (2026-03-20T09:00:00Z), now, or +DURATION", flagName, v)
	}
	return t, nil
}

// campaignFromFlags builds the campaign the flags describe. Flag mistakes
// are usage errors; what the schema checks is left to it.
func campaignFromFlags(p *publishFlags, now time.Time, readTokens func(string) ([]string, error)) (*schemas.Campaign, error) {
	if p.app == "" {
		return nil, usagef("-app is required (or give the campaign as -f FILE)")
	}
	c := &schemas.Campaign{
		SchemaVersion: schemas.SchemaVersion,
		ID:            p.id,
		Version:       p.version,
		App:           p.app,
		CreatedAt:     now.UTC(),
	}
	if c.ID == "" {
		c.ID = newCampaignID(p.app, now)
	}

	switch {
	case p.segment && p.tokens != "":
		return nil, usagef("-segment and -tokens exclude each other: choose one audience")
	case p.segment:
		c.Audience = schemas.Audience{Type: schemas.AudienceSegment, Platforms: p.platforms, Locales: p.locales, UserIDs: p.users}
	case p.tokens != "":
		var tokens []string
		if path, ok := strings.CutPrefix(p.tokens, "@"); ok {
			var err error
			if tokens, err = readTokens(path); err != nil {
				return nil, err
			}
		} else {
			var l listFlag
			_ = l.Set(p.tokens)
			tokens = l
		}
		if len(tokens) == 0 {
			return nil, usagef("-tokens %s: no tokens", p.tokens)
		}
		c.Audience = schemas.Audience{Type: schemas.AudienceTokens, Platforms: p.platforms, Locales: p.locales, UserIDs: p.users, Tokens: tokens}
	default:
		return nil, usagef("choose the audience: -segment (every active device of the app) or -tokens T1,T2")
	}

	c.Content = schemas.Content{Title: p.title, Body: p.body, Sound: p.sound, FallbackLocale: p.fallbackLocale}
	if p.badge >= 0 {
		badge := p.badge
		c.Content.Badge = &badge
	}
	for _, kv := range p.data {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("-data %q: want key=value", kv)
		}
		if c.Content.Data == nil {
			c.Content.Data = map[string]string{}
		}
		c.Content.Data[k] = v
	}
	for _, l := range p.localized {
		locale, text, ok := strings.Cut(l, "=")
		if !ok || locale == "" {
			return nil, usagef("-localized %q: want locale=title|body", l)
		}
		title, body, _ := strings.Cut(text, "|")
		if c.Content.Localized == nil {
			c.Content.Localized = map[string]schemas.LocalizedText{}
		}
		c.Content.Localized[locale] = schemas.LocalizedText{Title: title, Body: body}
	}

	if p.localTime != "" || p.localDate != "" {
		if p.at != "now" {
			return nil, usagef("-at and -local-time exclude each other")
		}
		if p.localTime == "" || p.localDate == "" {
			return nil, usagef("-local-time and -local-date go together: the wall-clock time and its day")
		}
		c.Schedule = schemas.Schedule{Mode: schemas.DeliverLocalTime, LocalTime: p.localTime, LocalDate: p.localDate, DefaultTimezone: p.timezone}
	} else {
		if p.timezone != "" {
			return nil, usagef("-timezone only applies with -local-time")
		}
		at, err := parseWhen("at", p.at, now)
		if err != nil {
			return nil, err
		}
		c.Schedule = schemas.Schedule{Mode: schemas.DeliverAt, SendAt: at}
	}
	if p.expires != "" {
		exp, err := parseWhen("expires", p.expires, now)
		if err != nil {
			return nil, err
		}
		if exp.IsZero() {
			return nil, usagef("-expires now would send nothing")
		}
		c.Schedule.ExpiresAt = exp
	}

	if p.ttl < 0 || (p.ttl > 0 && p.ttl < time.Second) {
		return nil, usagef("-ttl %s: want whole seconds or more", p.ttl)
	}
	c.Options = schemas.Options{
		Priority:          p.priority,
		PushType:          p.pushType,
		CollapseID:        p.collapseID,
		ThreadID:          p.threadID,
		Category:          p.category,
		MutableContent:    p.mutableContent,
		ContentAvailable:  p.contentAvailable,
		InterruptionLevel: p.interruptionLevel,
		AndroidChannel:    p.androidChannel,
		TTLSeconds:        int(p.ttl / time.Second),
		BatchSize:         p.batchSize,
		ThrottlePerSecond: p.throttle,
	}
	return c, nil
}
