package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero/api"
)

// meter counts the compute units one invocation uses: the host units its
// host calls are charged, and, for an instrumented guest, the units of its
// own instructions. Host functions may charge from several goroutines,
// hence the atomics and the lock.
//
// An instrumented guest carries its remaining fuel in a global of its own
// (instrument.FuelExport). The meter grants fuel, and settles what the
// guest spent (the grant less the fuel left) whenever the guest crosses
// into the host: when its fuel runs out (refill), at each host charge, and
// when the invocation ends. Settling only at those points, which depend on
// the guest's instructions alone, keeps the count and the point where a
// budget runs out the same on every machine.
type meter struct {
	budget    uint64 // 0 means unlimited
	used      atomic.Uint64
	exhausted atomic.Bool

	// chargeGuest says whether guest units count against the budget
	// (strict guest determinism) or are only reported (off).
	chargeGuest bool

	mu    sync.Mutex
	fuel  api.Global // the guest's fuel global, once bound; nil if not instrumented
	grant int64      // the fuel the guest held after the last settle
	guest atomic.Uint64
}

type meterKey struct{}

func withMeter(ctx context.Context, m *meter) context.Context {
	return context.WithValue(ctx, meterKey{}, m)
}

func meterFrom(ctx context.Context) *meter {
	m, _ := ctx.Value(meterKey{}).(*meter)
	return m
}

// bind attaches the meter to an instance's fuel global, which then holds
// no fuel: the guest's first check asks for its first grant.
func (m *meter) bind(g api.Global) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fuel, m.grant = g, 0
	if mg, ok := g.(api.MutableGlobal); ok {
		mg.Set(0)
	}
}

// settleLocked adds what the guest spent since the last settle, its fuel
// now being left, and returns the units used in all.
func (m *meter) settleLocked(left int64) uint64 {
	spent := m.grant - left
	m.grant = left
	if spent <= 0 {
		return m.used.Load()
	}
	m.guest.Add(uint64(spent))
	if !m.chargeGuest {
		return m.used.Load()
	}
	return m.used.Add(uint64(spent))
}

// settle settles from the bound global; without one it does nothing.
func (m *meter) settle() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fuel == nil {
		return m.used.Load()
	}
	return m.settleLocked(int64(m.fuel.Get()))
}

// over reports whether the units used exceed the budget, marking the
// invocation as having exhausted it if so.
func (m *meter) over(used uint64) bool {
	if m.budget != 0 && used > m.budget {
		m.exhausted.Store(true)
		return true
	}
	return false
}

// deadlineChunk is the most fuel one grant gives: the work between two
// crossings into the host, where the deadline is checked. About 4 ms of
// instrumented guest code on the development machine (docs/benchmarks.md
// measures the deadline's overshoot).
const deadlineChunk = 1 << 22

// refill is called by an instrumented guest whose fuel ran out, with the
// fuel it has left (negative). It settles, stops the guest if its context
// is done or its budget spent, and otherwise returns the next grant.
func (m *meter) refill(ctx context.Context, left int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fuel == nil {
		// A run binds the meter before the guest's first instruction;
		// a guest reaching here without one is instrumented but was not
		// started by this engine's Run or Reactor (it cannot happen).
		return 0, errors.New("guest fuel is not bound to an invocation")
	}
	used := m.settleLocked(left)
	if err := ctx.Err(); err != nil {
		return 0, context.Cause(ctx)
	}
	if m.chargeGuest && m.over(used) {
		return 0, newError(ErrBudgetExhausted, nil, "compute budget exhausted: %d of %d units used", used, m.budget)
	}
	g := int64(deadlineChunk)
	if m.chargeGuest && m.budget != 0 {
		g = min(g, int64(min(m.budget-used, uint64(deadlineChunk))))
	}
	m.grant = g
	return g, nil
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
	// The guest is paused in the host: what it spent so far is exact.
	m.settle()
	for {
		used := m.used.Load()
		if m.budget != 0 && (m.exhausted.Load() || used > m.budget || units > m.budget-used) {
			m.exhausted.Store(true)
			return newError(ErrBudgetExhausted, nil,
				"compute budget exhausted: %d units asked for with %d of %d used", units, used, m.budget)
		}
		if m.used.CompareAndSwap(used, used+units) {
			m.shrinkGrant()
			return nil
		}
	}
}

// shrinkGrant lowers the guest's fuel to what the budget has left after a
// host charge, so that the guest's next check finds it out of fuel exactly
// when the budget is spent.
func (m *meter) shrinkGrant() {
	if m.budget == 0 || !m.chargeGuest {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.fuel.(api.MutableGlobal)
	if !ok {
		return
	}
	used := m.used.Load()
	left := int64(0)
	if used < m.budget {
		left = int64(min(m.budget-used, uint64(deadlineChunk)))
	}
	if cur := int64(g.Get()); cur > left {
		g.Set(uint64(left))
		m.grant = left
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
	return m.settle(), m.budget
}
