package providers_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pushlane/pushlane/providers"
)

// haltGauges returns pushlane_provider_app_halted by "app/provider".
func haltGauges(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "pushlane_provider_app_halted" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[label(m, "app")+"/"+label(m, "provider")] = m.GetGauge().GetValue()
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// A halt is of one provider of one app: the app's other provider, and the
// same provider of other apps, keep sending; the gauge, the log lines and
// Resume are per app and provider.
func TestHaltIsPerAppAndProvider(t *testing.T) {
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	h, err := providers.NewHalt(slog.New(slog.NewJSONHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Halt("shop", "apns", "InvalidProviderToken", nil) {
		t.Fatal("first halt of shop's APNs not reported first")
	}
	if info, halted := h.Halted("shop", "apns"); !halted || info.Provider != "apns" || info.Reason != "InvalidProviderToken" {
		t.Fatalf("shop/apns: %+v %v", info, halted)
	}
	if _, halted := h.Halted("shop", "fcm"); halted {
		t.Fatal("an APNs halt halts the app's FCM sends")
	}
	if _, halted := h.Halted("news", "apns"); halted {
		t.Fatal("shop's halt halts another app")
	}
	// The app's other provider refuses too: a halt of its own, alerted.
	if !h.Halt("shop", "fcm", "PERMISSION_DENIED", nil) {
		t.Fatal("first halt of shop's FCM not reported first")
	}
	if h.Halt("shop", "apns", "InvalidProviderToken", nil) {
		t.Fatal("a second halt of shop's APNs reported first")
	}
	if got := haltGauges(t, reg); got["shop/apns"] != 1 || got["shop/fcm"] != 1 || len(got) != 2 {
		t.Fatalf("gauges %v, want shop/apns and shop/fcm at 1", got)
	}
	if n := strings.Count(logs.String(), `"level":"ERROR+4"`); n != 2 {
		t.Fatalf("%d alert lines, want one per provider:\n%s", n, logs.String())
	}
	h.Halt("news", "apns", "BadCertificate", nil)
	l := h.List()
	var order []string
	for _, i := range l {
		order = append(order, i.App+"/"+i.Provider)
	}
	if strings.Join(order, " ") != "news/apns shop/apns shop/fcm" {
		t.Fatalf("list %v, want by app then provider", order)
	}

	// Lifting FCM leaves APNs halted.
	if h.Resume("shop", "web") || !h.Resume("shop", "fcm") || h.Resume("shop", "fcm") {
		t.Fatal("resume of shop/fcm")
	}
	if _, halted := h.Halted("shop", "apns"); !halted {
		t.Fatal("lifting shop's FCM lifted its APNs")
	}
	if got := haltGauges(t, reg); got["shop/apns"] != 1 || got["shop/fcm"] != 0 || got["news/apns"] != 1 {
		t.Fatalf("gauges %v after lifting shop/fcm", got)
	}
	if n := strings.Count(logs.String(), `"msg":"app resumed"`); n != 1 || !strings.Contains(logs.String(), `"msg":"app resumed","app":"shop","provider":"fcm"`) {
		t.Fatalf("want one \"app resumed\" line, of shop's FCM:\n%s", logs.String())
	}
}

// A probe's context is told apart from any other; Halted does not look at
// it (the sender decides), so a probe leaves the halt standing.
func TestProbeContext(t *testing.T) {
	ctx := context.Background()
	if providers.IsProbe(ctx) {
		t.Fatal("a plain context is a probe's")
	}
	probe := providers.WithProbe(ctx)
	if !providers.IsProbe(probe) {
		t.Fatal("WithProbe's context is not a probe's")
	}
	child, cancel := context.WithCancel(probe)
	defer cancel()
	if !providers.IsProbe(child) {
		t.Fatal("a probe's derived context (a send's timeout) is not a probe's")
	}
}
