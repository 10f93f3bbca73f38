package dispatcher_test

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pushlane/pushlane/internal/migrate"
	"github.com/pushlane/pushlane/internal/testenv"
	"github.com/pushlane/pushlane/pipeline/dispatcher"
)

// A provider's refusal longer than the column is cut at a character: half
// a character is invalid UTF-8, which a strict server refuses, and the
// halt would then never reach the other dispatchers.
func TestMySQLStoreHaltReasonCutAtACharacter(t *testing.T) {
	t.Parallel()
	_, db := testenv.MySQL(t)
	ctx := context.Background()
	if _, err := migrate.MySQL(ctx, db); err != nil {
		t.Fatal(err)
	}
	s := dispatcher.NewMySQLStore(db)
	at := time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC)
	reason := strings.Repeat("x", 255) + "é and more"
	if err := s.SetHalt(ctx, dispatcher.Halt{App: "shop", Provider: "apns", Reason: reason, Since: at, ProbeAt: at}); err != nil {
		t.Fatalf("SetHalt with a %d-byte reason: %v", len(reason), err)
	}
	hs, err := s.Halts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 || hs[0].Reason != strings.Repeat("x", 255) || !utf8.ValidString(hs[0].Reason) {
		t.Errorf("halts = %+v, want shop's reason cut to its 255 x", hs)
	}
}

// The halt of an app's FCM sends through APNs is stored under its own
// provider name, which the column (VARCHAR(16)) keeps whole: every
// dispatcher reads back the halt this one recorded.
func TestMySQLStoreKeepsTheHaltOfFCMSendsThroughAPNs(t *testing.T) {
	t.Parallel()
	_, db := testenv.MySQL(t)
	ctx := context.Background()
	if _, err := migrate.MySQL(ctx, db); err != nil {
		t.Fatal(err)
	}
	s := dispatcher.NewMySQLStore(db)
	at := time.Date(2026, 3, 20, 9, 0, 0, 0, time.UTC)
	h := dispatcher.Halt{App: "shop", Provider: dispatcher.ProviderFCMviaAPNs, Reason: "THIRD_PARTY_AUTH_ERROR", Since: at, ProbeAt: at}
	if err := s.SetHalt(ctx, h); err != nil {
		t.Fatal(err)
	}
	hs, err := s.Halts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 || hs[0].Provider != dispatcher.ProviderFCMviaAPNs {
		t.Errorf("halts = %+v, want shop's %s halt", hs, dispatcher.ProviderFCMviaAPNs)
	}
}
