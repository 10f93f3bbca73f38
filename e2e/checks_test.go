package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/pushlane/pushlane/schemas"
)

// checkSimulatorTruth checks the simulators' per-token counts against the
// population: every live device accepted at least once and by its own
// platform's provider, no other device ever accepted, nothing accepted for
// tokens outside the population. It returns the tally for duplicate checks.
func checkSimulatorTruth(t testing.TB, s *appSims, pop *population) deliveryTally {
	t.Helper()
	return checkSimulators(t, s, pop, false)
}

// checkSimulators is checkSimulatorTruth; with someUnsent (a cancelled
// campaign) live devices that were never sent are expected.
func checkSimulators(t testing.TB, s *appSims, pop *population, someUnsent bool) deliveryTally {
	t.Helper()
	tl := s.tally(pop)
	if len(tl.Lost) > 0 && !someUnsent {
		t.Errorf("simulators: %d of %d live devices never accepted (lost): %v", len(tl.Lost), tl.Live, firstN(tl.Lost, 5))
	}
	if len(tl.NotLiveAccepted) > 0 {
		t.Errorf("simulators: %d dead, suspect or invalid tokens were accepted: %v", len(tl.NotLiveAccepted), firstN(tl.NotLiveAccepted, 5))
	}
	if len(tl.WrongProvider) > 0 {
		t.Errorf("simulators: %d tokens reached the other platform's provider: %v", len(tl.WrongProvider), firstN(tl.WrongProvider, 5))
	}
	if tl.AcceptedOutsidePops != 0 {
		t.Errorf("simulators: %d accepted sends are for tokens outside the population", tl.AcceptedOutsidePops)
	}
	t.Logf("simulators: %d live devices, %d delivered, %d duplicate sends on %d tokens; APNs %+v; FCM %+v",
		tl.Live, tl.Delivered, tl.DuplicateSends, len(tl.Duplicated), s.APNs.Counts(), s.FCM.Counts())
	return tl
}

// checkExactDelivery is the no-fault contract: every live device accepted
// exactly once, and ClickHouse's deduplicated counts equal the simulators'
// and the population's, outcome by outcome.
func checkExactDelivery(t testing.TB, p *pipeline, s *appSims, pop *population, campaignID string) {
	t.Helper()
	tl := checkSimulatorTruth(t, s, pop)
	if tl.DuplicateSends != 0 {
		t.Errorf("simulators: %d duplicate sends on %d tokens without any fault, want 0: %v", tl.DuplicateSends, len(tl.Duplicated), firstN(sortedKeys(tl.Duplicated), 5))
	}
	checkResults(t, p, s, pop, campaignID)
}

// outcomesOf is pipeline.outcomes for a test.
func outcomesOf(t testing.TB, p *pipeline, campaignID string) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := p.outcomes(ctx, campaignID)
	if err != nil {
		t.Fatalf("clickhouse: outcomes of %s: %v", campaignID, err)
	}
	t.Logf("clickhouse: outcomes of %s: %v", campaignID, got)
	return got
}

// checkResults compares the campaign's ClickHouse results with the
// population and the simulators: one final result per device, the right
// outcome for each kind, and delivered equal to what the simulators accepted
// (each device once).
func checkResults(t testing.TB, p *pipeline, s *appSims, pop *population, campaignID string) {
	t.Helper()
	got := outcomesOf(t, p, campaignID)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tl := s.tally(pop)
	want := map[string]uint64{
		schemas.OutcomeDelivered:    uint64(pop.count(kindLive)),
		schemas.OutcomeTokenDead:    uint64(pop.count(kindDead)),
		schemas.OutcomeTokenSuspect: uint64(pop.count(kindSuspect)),
		schemas.OutcomeInvalidToken: uint64(pop.count(kindInvalid)),
	}
	for _, o := range schemas.Outcomes {
		if o == schemas.OutcomeRetryable {
			continue // retries are not losses; their final result is counted
		}
		if got[o] != want[o] {
			t.Errorf("clickhouse: %s results of %s = %d, want %d", o, campaignID, got[o], want[o])
		}
	}
	if got[schemas.OutcomeDelivered] != uint64(tl.Delivered) {
		t.Errorf("clickhouse: %d delivered results, simulators accepted %d distinct live devices", got[schemas.OutcomeDelivered], tl.Delivered)
	}
	var rejected int64
	for _, n := range s.APNs.Counts().Rejected {
		rejected += n
	}
	for _, n := range s.FCM.Counts().Rejected {
		rejected += n
	}
	if tl.DuplicateSends == 0 && got[schemas.OutcomeRetryable] == 0 {
		// Without retries and duplicates every rejection is one result.
		if dead := got[schemas.OutcomeTokenDead] + got[schemas.OutcomeTokenSuspect]; int64(dead) != rejected {
			t.Errorf("clickhouse: %d token_dead + token_suspect results, simulators rejected %d sends", dead, rejected)
		}
	}
	delivered, err := p.tokensWith(ctx, campaignID, schemas.OutcomeDelivered)
	if err != nil {
		t.Fatalf("clickhouse: delivered tokens: %v", err)
	}
	var missing, extra []string
	live := map[string]bool{}
	for _, tok := range pop.tokens(kindLive) {
		live[tok] = true
		if !delivered[tok] {
			missing = append(missing, tok)
		}
	}
	for tok := range delivered {
		if !live[tok] {
			extra = append(extra, tok)
		}
	}
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("clickhouse: delivered tokens differ from the live devices: %d missing %v, %d not live %v",
			len(missing), firstN(missing, 3), len(extra), firstN(extra, 3))
	}
}

// checkHygiene checks MySQL after a campaign: exactly the dead tokens are
// deactivated, with a reason, and each suspect has one strike and is still
// active (feedback.suspect_strikes is 3).
func checkHygiene(t testing.TB, p *pipeline, pop *population) {
	t.Helper()
	dead := pop.tokens(kindDead)
	got := p.WaitDeactivated(pop.App, len(dead), time.Minute)
	var notDeactivated, wrong []string
	for _, tok := range dead {
		reason, ok := got[tok]
		if !ok {
			notDeactivated = append(notDeactivated, tok)
		} else if reason == "" {
			t.Errorf("mysql: %s deactivated without a reason", tok)
		}
	}
	deadSet := map[string]bool{}
	for _, tok := range dead {
		deadSet[tok] = true
	}
	for tok := range got {
		if !deadSet[tok] {
			wrong = append(wrong, tok)
		}
	}
	if len(notDeactivated) > 0 || len(wrong) > 0 {
		t.Errorf("mysql: of %d dead tokens %d are still active %v; %d other devices were deactivated %v",
			len(dead), len(notDeactivated), firstN(notDeactivated, 3), len(wrong), firstN(wrong, 3))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Exactly the suspects, one strike each: a count of struck tokens
	// alone passed a suspect struck twice beside another struck never,
	// or a strike on a token that is no suspect.
	rows, err := p.Devices.db.QueryContext(ctx, `SELECT token, COUNT(*) FROM device_strikes WHERE app = ? GROUP BY token`, pop.App)
	if err != nil {
		t.Fatalf("mysql: strikes: %v", err)
	}
	defer rows.Close()
	struck := map[string]int{}
	for rows.Next() {
		var tok string
		var n int
		if err := rows.Scan(&tok, &n); err != nil {
			t.Fatalf("mysql: strikes: %v", err)
		}
		struck[tok] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("mysql: strikes: %v", err)
	}
	suspects := pop.tokens(kindSuspect)
	for _, tok := range suspects {
		if n := struck[tok]; n != 1 {
			t.Errorf("mysql: suspect %s has %d strikes, want 1", tok, n)
		}
		delete(struck, tok)
	}
	for tok, n := range struck {
		t.Errorf("mysql: %s is no suspect and has %d strikes", tok, n)
	}
	t.Logf("mysql: %d of %d dead tokens deactivated, %d suspects struck once", len(got), len(dead), len(suspects))
}

// plannedDevices reads the planner's bookkeeping of a campaign: status and
// devices put in batches. ok is false while the planner has not recorded it.
func plannedDevices(t testing.TB, p *pipeline, campaignID string) (status string, planned, invalid int64, ok bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := p.Devices.db.QueryRowContext(ctx, `SELECT status, planned_devices, invalid_tokens FROM campaigns WHERE id = ?`, campaignID).
		Scan(&status, &planned, &invalid)
	if err != nil {
		return "", 0, 0, false
	}
	return status, planned, invalid, true
}
