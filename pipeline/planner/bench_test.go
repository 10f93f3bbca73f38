package planner

import (
	"fmt"
	"testing"
	"time"

	"github.com/pushlane/pushlane/schemas"
)

// benchPage is a page of realistic rows: iOS and Android tokens of real
// lengths, user ids, locales and zones.
func benchPage(n int) *Page {
	zones := []string{"Europe/Berlin", "Asia/Kolkata", "America/New_York", "America/St_Johns", "", "Europe/Paris"}
	p := &Page{}
	for i := 1; i <= n; i++ {
		user := []byte(fmt.Sprintf("user-%08d", i))
		if i%2 == 0 {
			p.Add(0, int64(i), user, []byte(fmt.Sprintf("%064x", i)), []byte("ios"), []byte("en-US"), []byte(zones[i%len(zones)]))
		} else {
			tok := fmt.Sprintf("fcm-%d:APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8OvPVGJ-hQMRKRrZuJAEcl7B338qju59zJMjw2DELjzEvxwYv7hH5Ynpc1ODQ0aT4U4OFEeco8ohsN5PjL1iC2dNtk2BAokeMCg2ZXKqpc8FXKmhX94kIxQ", i)
			p.Add(0, int64(i), user, []byte(tok), []byte("android"), []byte("de-DE"), []byte(zones[i%len(zones)]))
		}
	}
	return p
}

func benchEngine(b *testing.B, mode string) {
	c := testCampaign()
	c.Options.BatchSize = 1000
	if mode == schemas.DeliverLocalTime {
		c.Schedule = schemas.Schedule{Mode: mode, LocalDate: "2027-03-28", LocalTime: "09:00"}
	}
	const pageRows = 10000
	page := benchPage(pageRows)
	s, _ := newSchedule(c, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	e, err := newEngine(c, s, 900<<10, true)
	if err != nil {
		b.Fatal(err)
	}
	var bytes, batches int64
	e.emit = func(o *outBatch) error { bytes += int64(len(o.Value)); batches++; return nil }
	e.invalid = func(*Device, string) error { return nil }
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d := &page.Devices[i%pageRows]
		d.ID = int64(i + 1) // keep positions increasing
		if err := e.add(d); err != nil {
			b.Fatal(err)
		}
	}
	if err := e.flush(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "devices/s")
	b.ReportMetric(float64(bytes)/float64(b.N), "B/device")
	_ = batches
}

// BenchmarkEngineAt is the pure planning path of a campaign for everyone:
// token checks, wave lookup, JSON encoding of every device into its batch
// and of every batch; no MySQL, no Kafka.
func BenchmarkEngineAt(b *testing.B) { benchEngine(b, schemas.DeliverAt) }

// BenchmarkEngineLocalTime adds the timezone → wave lookup of local-time
// delivery (five waves).
func BenchmarkEngineLocalTime(b *testing.B) { benchEngine(b, schemas.DeliverLocalTime) }
