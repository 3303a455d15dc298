package workload

import (
	"context"
	"fmt"
	"time"
)

// Budget bounds how often a point is timed: Warmup untimed runs, then timed
// runs until at least MinReps have run and Time has passed, or MaxReps have
// run.
type Budget struct {
	Warmup  int
	MinReps int
	MaxReps int
	Time    time.Duration
}

// The bounds of a Budget: enough for any honest measurement, and low
// enough that no setting keeps one point timing for hours.
const (
	MaxWarmup  = 100
	MaxMinReps = 100
	MaxMaxReps = 10000
	MaxTime    = time.Minute
)

// Validate rejects budgets that would time nothing, or without end.
func (b Budget) Validate() error {
	switch {
	case b.Warmup < 0 || b.Warmup > MaxWarmup:
		return fmt.Errorf("invalid budget: %d warm-up runs (want 0 to %d)", b.Warmup, MaxWarmup)
	case b.MinReps < 1 || b.MinReps > MaxMinReps:
		return fmt.Errorf("invalid budget: at least %d timed runs (want 1 to %d)", b.MinReps, MaxMinReps)
	case b.MaxReps < b.MinReps || b.MaxReps > MaxMaxReps:
		return fmt.Errorf("invalid budget: at most %d timed runs (want %d, the least, to %d)", b.MaxReps, b.MinReps, MaxMaxReps)
	case b.Time < 0 || b.Time > MaxTime:
		return fmt.Errorf("invalid budget: time %v (want 0 to %v)", b.Time, MaxTime)
	}
	return nil
}

// Repeat runs f within the budget and returns the time of each timed run.
func (b Budget) Repeat(ctx context.Context, f func() error) ([]time.Duration, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	for range b.Warmup {
		if err := f(); err != nil {
			return nil, err
		}
	}
	var times []time.Duration
	var total time.Duration
	for len(times) < b.MaxReps && (len(times) < b.MinReps || total < b.Time) {
		if err := ctx.Err(); err != nil {
			return times, err
		}
		start := time.Now()
		if err := f(); err != nil {
			return times, err
		}
		d := time.Since(start)
		times = append(times, d)
		total += d
	}
	return times, nil
}
