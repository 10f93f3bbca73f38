package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pushlane/pushlane/internal/embedded"
	pkafka "github.com/pushlane/pushlane/pipeline/kafka"
	"github.com/pushlane/pushlane/schemas"
)

// demoContent is the demo's message in the seeded locales; devices in
// en-GB get "en" (language fallback), any other locale the fallback.
func demoContent(campaignID string) schemas.Content {
	badge := 1
	return schemas.Content{
		Title: "Your weekly summary is ready",
		Body:  "See what happened this week.",
		Badge: &badge,
		Sound: "default",
		Data:  map[string]string{"campaign": campaignID, "screen": "summary"},
		Localized: map[string]schemas.LocalizedText{
			"en":    {Title: "Your weekly summary is ready", Body: "See what happened this week."},
			"de":    {Title: "Deine Wochenübersicht ist da", Body: "Sieh dir an, was diese Woche passiert ist."},
			"fr":    {Title: "Votre résumé hebdomadaire est prêt", Body: "Découvrez ce qui s'est passé cette semaine."},
			"es":    {Title: "Tu resumen semanal está listo", Body: "Mira lo que pasó esta semana."},
			"ja":    {Title: "今週のまとめが届きました", Body: "今週の出来事をチェックしましょう。"},
			"pt-BR": {Title: "Seu resumo semanal está pronto", Body: "Veja o que aconteceu nesta semana."},
		},
		FallbackLocale: "en",
	}
}

// part is one campaign the demo publishes.
type part struct {
	Campaign schemas.Campaign
	Label    string // what the console says about it
}

// demoParts builds the demo's campaigns: one to everyone except the
// Japanese locale, sent now, and, when delayed > 0, one to the Japanese
// locale due delayed later, to show scheduling through the delay ladder.
// The audiences are disjoint, so every device gets exactly one push.
func demoParts(now time.Time, delayed time.Duration, batchSize int) []part {
	id := "demo-" + now.UTC().Format("20060102-150405.000")
	mk := func(suffix string, locales []string, sendAt time.Time) schemas.Campaign {
		cid := id + "-" + suffix
		return schemas.Campaign{
			SchemaVersion: schemas.SchemaVersion,
			ID:            cid,
			Version:       1,
			App:           embedded.DemoApp,
			Audience:      schemas.Audience{Type: schemas.AudienceSegment, Locales: locales},
			Content:       demoContent(cid),
			Schedule:      schemas.Schedule{Mode: schemas.DeliverAt, SendAt: sendAt, ExpiresAt: now.Add(time.Hour)},
			Options:       schemas.Options{Priority: schemas.PriorityHigh, PushType: "alert", TTLSeconds: 3600, BatchSize: batchSize},
			CreatedAt:     now.UTC(),
		}
	}
	if delayed <= 0 {
		return []part{{Campaign: mk("all", nil, time.Time{}), Label: "every device, now"}}
	}
	sendAt := now.Add(delayed).Truncate(time.Millisecond)
	return []part{
		{Campaign: mk("now", []string{"en", "de", "fr", "es", "pt"}, time.Time{}), Label: "en de fr es pt devices, now"},
		{Campaign: mk("later", []string{"ja"}, sendAt), Label: fmt.Sprintf("ja devices, at %s (+%s)",
			sendAt.Local().Format("15:04:05.000"), delayed)},
	}
}

// publish writes c to the campaigns topic as `pushctl publish` does
// (cmd/pushctl/publish.go): checked with schemas.DecodeCampaign (the
// planner's own decoding), the decoded form encoded again, keyed by
// campaign id with the schema and campaign-id headers, and acknowledged by
// the broker.
func publish(ctx context.Context, cl *kgo.Client, topic string, c schemas.Campaign) error {
	raw, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("publish %s: encode: %w", c.ID, err)
	}
	camp, err := schemas.DecodeCampaign(raw)
	if err != nil {
		return fmt.Errorf("publish %s: %w", c.ID, err)
	}
	if raw, err = json.Marshal(camp); err != nil {
		return fmt.Errorf("publish %s: encode: %w", c.ID, err)
	}
	rec := &kgo.Record{Topic: topic, Key: []byte(camp.ID), Value: raw, Headers: []kgo.RecordHeader{
		{Key: pkafka.HeaderSchema, Value: []byte(schemas.KindCampaign + ".v1")},
		{Key: pkafka.HeaderCampaignID, Value: []byte(camp.ID)},
	}}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("publish %s to %s: %w", c.ID, topic, err)
	}
	return nil
}
