package engine

import (
	"context"
	"sync/atomic"
)

// meter counts the host compute units one invocation uses. Host functions
// may charge from several goroutines, hence the atomics.
type meter struct {
	budget    uint64 // 0 means unlimited
	used      atomic.Uint64
	exhausted atomic.Bool
}

type meterKey struct{}

func withMeter(ctx context.Context, m *meter) context.Context {
	return context.WithValue(ctx, meterKey{}, m)
}

func meterFrom(ctx context.Context) *meter {
	m, _ := ctx.Value(meterKey{}).(*meter)
	return m
}

// Charge adds units to the compute units used by the invocation whose
// context ctx is (host functions receive it). If that would exceed the
// invocation's budget, Charge charges nothing, marks the invocation as
// having exhausted its budget, so that Run fails with ErrBudgetExhausted
// however the guest ends, and returns an error wrapping ErrBudgetExhausted.
// Once exhausted, every later charge is refused too, however small: the
// invocation has failed, and cheap calls must not keep it busy.
// Outside an invocation Charge does nothing and returns nil.
func Charge(ctx context.Context, units uint64) error {
	m := meterFrom(ctx)
	if m == nil {
		return nil
	}
	for {
		used := m.used.Load()
		if m.budget != 0 && (m.exhausted.Load() || used > m.budget || units > m.budget-used) {
			m.exhausted.Store(true)
			return newError(ErrBudgetExhausted, nil,
				"compute budget exhausted: %d units asked for with %d of %d used", units, used, m.budget)
		}
		if m.used.CompareAndSwap(used, used+units) {
			return nil
		}
	}
}

// Units reports the compute units used so far by the invocation whose
// context ctx is, and its budget (0 means unlimited). Outside an
// invocation both are 0.
func Units(ctx context.Context) (used, budget uint64) {
	m := meterFrom(ctx)
	if m == nil {
		return 0, 0
	}
	return m.used.Load(), m.budget
}
