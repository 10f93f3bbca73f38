package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/pushlane/pushlane/internal/embedded"
	"github.com/pushlane/pushlane/pipeline/feedback"
	"github.com/pushlane/pushlane/schemas"
)

// demoReport is the end of the demo: feedback's summaries, the tokens the
// store now holds as deactivated, and the checks against the seeded truth.
type demoReport struct {
	summaries   []feedback.CampaignSummary
	deactivated []embedded.DeactivatedToken
	verified    []string // checks that passed
	problems    []string // checks that failed
}

// maxListed bounds the example tokens a failed check names.
const maxListed = 5

// report checks what happened against what the seed says must happen:
//   - every live device accepted by its simulator exactly once, no other
//     device accepted, and no duplicate on either simulator;
//   - exactly the dead tokens deactivated in the store;
//   - feedback's summaries: planned (the planner's MySQL figure) equal to
//     the seeded devices, delivered equal to the live devices, token dead
//     and suspect equal to theirs, nothing failed, expired or cancelled.
func report(ctx context.Context, in *infra, pop *embedded.Population, parts []part, fbAcc *feedback.Accumulator) (*demoReport, error) {
	r := &demoReport{}
	var total feedback.CampaignSummary
	for _, p := range parts {
		s, err := fbAcc.Summary(p.Campaign.ID)
		if err != nil {
			s = feedback.CampaignSummary{CampaignID: p.Campaign.ID, PlannedSource: "results"}
		}
		if err := s.AddPlanned(ctx, in.db); err != nil {
			return nil, err
		}
		r.summaries = append(r.summaries, s)
		total.Planned += s.Planned
		total.Delivered += s.Delivered
		total.TokenDead += s.TokenDead
		total.Suspect += s.Suspect
		total.Failed += s.Failed + s.PayloadRejected + s.CredentialFailure + s.InvalidToken
		total.Expired += s.Expired
		total.Cancelled += s.Cancelled
	}
	var err error
	if r.deactivated, err = embedded.Deactivated(ctx, in.db, pop.App); err != nil {
		return nil, err
	}

	check := func(ok bool, pass, fail string) {
		if ok {
			r.verified = append(r.verified, pass)
		} else {
			r.problems = append(r.problems, fail)
		}
	}

	// The simulators' own counts.
	live, dead, suspect := pop.Count(embedded.KindLive, ""), pop.Count(embedded.KindDead, ""), pop.Count(embedded.KindSuspect, "")
	var notOnce, unexpected []string
	for _, d := range pop.Devices {
		n := in.sims.FCM.AcceptedFor(d.Token)
		if d.Platform == schemas.PlatformIOS {
			n = in.sims.APNs.AcceptedFor(d.Token)
		}
		switch {
		case d.Kind == embedded.KindLive && n != 1:
			notOnce = append(notOnce, fmt.Sprintf("%s (%s) accepted %d times", short(d.Token), d.Platform, n))
		case d.Kind != embedded.KindLive && n != 0:
			unexpected = append(unexpected, fmt.Sprintf("%s (%s %s) accepted %d times", short(d.Token), d.Kind, d.Platform, n))
		}
	}
	apnsDup, fcmDup := len(in.sims.APNs.Duplicates()), len(in.sims.FCM.Duplicates())
	apnsN, fcmN := in.sims.APNs.Counts().Accepted, in.sims.FCM.Counts().Accepted
	check(len(notOnce) == 0 && len(unexpected) == 0 && apnsDup == 0 && fcmDup == 0 && int(apnsN+fcmN) == live,
		fmt.Sprintf("every live device delivered exactly once: %d (APNs simulator accepted %d, FCM simulator %d, no duplicates)", live, apnsN, fcmN),
		fmt.Sprintf("simulators accepted %d sends (APNs %d, FCM %d; duplicates %d, %d), want each of the %d live devices once%s%s",
			apnsN+fcmN, apnsN, fcmN, apnsDup, fcmDup, live,
			counted("; live devices not accepted exactly once", notOnce), counted("; dead or suspect devices accepted", unexpected)))

	// The store.
	deadSet := map[string]bool{}
	for _, t := range pop.Tokens(embedded.KindDead) {
		deadSet[t] = true
	}
	var wrong []string
	got := map[string]bool{}
	for _, d := range r.deactivated {
		got[d.Token] = true
		if !deadSet[d.Token] {
			wrong = append(wrong, short(d.Token)+" ("+d.Reason+")")
		}
	}
	var missing []string
	for t := range deadSet {
		if !got[t] {
			missing = append(missing, short(t))
		}
	}
	sort.Strings(missing)
	check(len(missing) == 0 && len(wrong) == 0,
		fmt.Sprintf("every dead token deactivated, and nothing else: %d", dead),
		fmt.Sprintf("deactivated %d tokens, want the %d dead ones%s%s", len(r.deactivated), dead,
			counted("; dead but still active", missing), counted("; deactivated but not dead", wrong)))

	// Suspect tokens are quarantined: one strike each, still active.
	strikes, err := embedded.Strikes(ctx, in.db, pop.App)
	if err != nil {
		return nil, err
	}
	var notStruck []string
	for _, t := range pop.Tokens(embedded.KindSuspect) {
		if strikes[t] != 1 || got[t] {
			notStruck = append(notStruck, fmt.Sprintf("%s (%d strikes, deactivated %v)", short(t), strikes[t], got[t]))
		}
	}
	check(len(notStruck) == 0 && len(strikes) == suspect,
		fmt.Sprintf("every suspect token has one strike and stays active: %d (deactivated at %d strikes)", suspect, in.cfg.Feedback.SuspectStrikes),
		fmt.Sprintf("%d tokens have strikes, want the %d suspect ones with one each, still active%s", len(strikes), suspect, counted("; wrong", notStruck)))

	// Feedback's summaries.
	want := fmt.Sprintf("planned %d, delivered %d, token dead %d, suspect %d, failed 0, expired 0, cancelled 0",
		len(pop.Devices), live, dead, suspect)
	gotS := fmt.Sprintf("planned %d, delivered %d, token dead %d, suspect %d, failed %d, expired %d, cancelled %d",
		total.Planned, total.Delivered, total.TokenDead, total.Suspect, total.Failed, total.Expired, total.Cancelled)
	check(gotS == want, "summary: "+gotS, "summary: "+gotS+"; want "+want)
	return r, nil
}

func (r *demoReport) print(w io.Writer) {
	for _, s := range r.summaries {
		fmt.Fprintln(w)
		_ = feedback.WriteSummary(w, s)
	}
	fmt.Fprintf(w, "\ntokens deactivated in MySQL (%d):\n", len(r.deactivated))
	for _, d := range r.deactivated {
		fmt.Fprintf(w, "  %-8s %-13s %s\n", d.Platform, d.Reason, abbreviate(d.Token))
	}
	fmt.Fprintln(w)
	for _, v := range r.verified {
		fmt.Fprintln(w, "ok    "+v)
	}
	for _, p := range r.problems {
		fmt.Fprintln(w, "FAIL  "+p)
	}
}

// counted formats a labelled count and examples, or nothing for none.
func counted(label string, s []string) string {
	if len(s) == 0 {
		return ""
	}
	return fmt.Sprintf("%s %d: %s", label, len(s), list(s))
}

// abbreviate keeps a token on one line of a narrow terminal by its ends
// (APNs tokens are 64 hex digits, FCM tokens about 160 characters); the
// store and the analytics rows hold them whole.
func abbreviate(t string) string {
	if len(t) <= 40 {
		return t
	}
	return t[:28] + "…" + t[len(t)-10:]
}

// short abbreviates a token for a message.
func short(t string) string {
	if len(t) <= 16 {
		return t
	}
	return t[:12] + "…"
}

func list(s []string) string {
	if len(s) == 0 {
		return ""
	}
	if len(s) > maxListed {
		return strings.Join(s[:maxListed], ", ") + ", …"
	}
	return strings.Join(s, ", ")
}
