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

// Validate rejects budgets that would time nothing.
func (b Budget) Validate() error {
	if b.Warmup < 0 || b.MinReps < 1 || b.MaxReps < b.MinReps || b.Time < 0 {
		return fmt.Errorf("invalid budget: warm-up %d, %d to %d repeats, %v (want warm-up >= 0, 1 <= min <= max, time >= 0)", b.Warmup, b.MinReps, b.MaxReps, b.Time)
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
