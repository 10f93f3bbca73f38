package main

import (
	"context"
	"slices"

	"github.com/pushlane/pushlane/pipeline/feedback"
)

// gmsRowsPerStatement bounds the rows of one feedback statement on the
// embedded store. feedback.MySQLStore joins a derived table of UNION ALL
// rows, and go-mysql-server v0.20.0's analyzer takes time exponential in
// the number of UNION ALL branches (nested SetOp.Schema calls): measured on
// 2,000 devices, one deactivation UPDATE of 8 rows takes 0.1 s, 10 rows
// 0.8 s, 12 rows 29 s. Real MySQL/MariaDB are not affected.
const gmsRowsPerStatement = 6

// smallStatements is a feedback.Store that hands its inner store the
// changes of a flush in parts of at most rows entries, one kind at a time in
// the inner store's own order (registrations, unregisters, deaths, strikes),
// so every statement stays small. Each inner statement is idempotent and
// the order of kinds is kept, so the outcome is the same as one Apply; only
// the Unknown metric may count a device named by two kinds twice.
type smallStatements struct {
	inner feedback.Store
	rows  int
}

func (s smallStatements) Apply(ctx context.Context, c feedback.Changes) (feedback.Applied, error) {
	var total feedback.Applied
	apply := func(part feedback.Changes) error {
		a, err := s.inner.Apply(ctx, part)
		total.Registered += a.Registered
		total.Unregistered += a.Unregistered
		total.DeadDeactivated += a.DeadDeactivated
		total.SuspectDeactivated += a.SuspectDeactivated
		total.NewStrikes += a.NewStrikes
		total.Unknown += a.Unknown
		return err
	}
	for part := range slices.Chunk(c.Registrations, s.rows) {
		if err := apply(feedback.Changes{Registrations: part}); err != nil {
			return total, err
		}
	}
	for part := range slices.Chunk(c.Unregisters, s.rows) {
		if err := apply(feedback.Changes{Unregisters: part}); err != nil {
			return total, err
		}
	}
	for part := range slices.Chunk(c.Deaths, s.rows) {
		if err := apply(feedback.Changes{Deaths: part}); err != nil {
			return total, err
		}
	}
	for part := range slices.Chunk(c.Strikes, s.rows) {
		if err := apply(feedback.Changes{Strikes: part}); err != nil {
			return total, err
		}
	}
	return total, nil
}
