// Package checked is the node's checked determinism mode: a backend that
// serves every call from a fast backend's kernels and recomputes a sampled
// share of them on the reference backend, the numerics contract's bits. A
// result that lies beyond its operation's tolerance (accel.Op.Tolerance;
// docs/determinism.md, "Checked mode's bounds") is logged with the
// operation, shape and ulp figures and counted; the counts are reported
// when the node exits. Nothing here names an operation: what to compare and
// how closely comes from the op table.
//
// Sampling is deterministic: call number c (from 0) is checked when
// frac(c·φ) < rate, φ being the golden ratio, so the same run checks the
// same calls, spread evenly whatever the rate.
package checked

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// Backend is a fast backend whose calls are sampled and checked. It serves
// checked mode only.
type Backend struct {
	fast, oracle accel.Backend
	rate         float64
	log          *slog.Logger

	calls atomic.Uint64
	mu    sync.Mutex
	stats map[string]*OpStats
}

// OpStats counts one operation's calls.
type OpStats struct {
	Calls, Checked, Beyond uint64
	// MaxULP is the largest ulp distance seen in a checked output.
	MaxULP int64
}

var _ accel.Backend = (*Backend)(nil)

// New wraps fast, whose checked-mode kernels serve the calls, checking a
// share rate (0 to 1) of them against oracle, which must serve strict mode
// (accel/ref).
func New(fast, oracle accel.Backend, rate float64, log *slog.Logger) *Backend {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Backend{fast: fast, oracle: oracle, rate: min(max(rate, 0), 1), log: log, stats: map[string]*OpStats{}}
}

func (b *Backend) Name() string { return b.fast.Name() }

func (b *Backend) Status() accel.Status {
	st := b.fast.Status()
	if st.Serves(accel.Checked) {
		st.Modes = []accel.Mode{accel.Checked}
	} else {
		st.Modes = nil
	}
	st.FastIsStrict = false
	st.Device += fmt.Sprintf("; checked against %s at rate %g", b.oracle.Name(), b.rate)
	return st
}

func (b *Backend) Close() error { return nil } // the wrapped backends belong to their registry

func (b *Backend) Alloc(dt accel.DType, n int) (accel.Buffer, error) { return b.fast.Alloc(dt, n) }
func (b *Backend) Write(dst accel.Buffer, first int, src []byte) error {
	return b.fast.Write(dst, first, src)
}
func (b *Backend) Read(src accel.Buffer, first int, dst []byte) error {
	return b.fast.Read(src, first, dst)
}

// Kernel returns, in checked mode, the fast backend's kernel wrapped in the
// sampled check.
func (b *Backend) Kernel(op *accel.Op, mode accel.Mode) accel.Kernel {
	if mode != accel.Checked {
		return nil
	}
	fast := b.fast.Kernel(op, accel.Checked)
	if fast == nil {
		return nil
	}
	return func(ctx context.Context, c *accel.Call) error {
		if !b.sample(op.Name) {
			return fast(ctx, c)
		}
		return b.check(ctx, c, fast)
	}
}

// Stats returns a copy of the counts, by operation; a scalar result is
// counted under the operation's name and the scalar's, "tsne_step kl".
func (b *Backend) Stats() map[string]OpStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]OpStats, len(b.stats))
	for op, s := range b.stats {
		out[op] = *s
	}
	return out
}

// Beyond is the number of checked results beyond their bound.
func (b *Backend) Beyond() uint64 {
	var n uint64
	for _, s := range b.Stats() {
		n += s.Beyond
	}
	return n
}

const golden = 0.6180339887498949

// sampleAt says whether call number c is checked.
func (b *Backend) sampleAt(c uint64) bool {
	_, frac := math.Modf(float64(c) * golden)
	return frac < b.rate
}

// sample counts a call of op and says whether to check it.
func (b *Backend) sample(op string) bool {
	check := b.sampleAt(b.calls.Add(1) - 1)
	b.mu.Lock()
	s := b.statsFor(op)
	s.Calls++
	if check {
		s.Checked++
	}
	b.mu.Unlock()
	return check
}

// statsFor returns op's counts; b.mu is held.
func (b *Backend) statsFor(op string) *OpStats {
	s := b.stats[op]
	if s == nil {
		s = &OpStats{}
		b.stats[op] = s
	}
	return s
}

func (b *Backend) record(name string, shape []int, r result) {
	b.mu.Lock()
	s := b.statsFor(name)
	if s.Calls == 0 { // a second result of a sampled call, such as t-SNE's KL
		s.Calls, s.Checked = 1, 1
	}
	s.MaxULP = max(s.MaxULP, r.maxULP)
	if !r.ok {
		s.Beyond++
	}
	b.mu.Unlock()
	if !r.ok {
		b.log.Warn("checked mode: result beyond its bound", "op", name, "shape", accel.ShapeString(shape),
			"outputs", r.outputs, "beyond", r.beyond, "first", r.first, "max_ulp", r.maxULP, "mean_ulp", r.meanULP(), "max_abs_diff", r.maxAbs)
	}
}

// unchecked logs a check that could not be made. The guest's call itself
// succeeded, so this is never its error.
func (b *Backend) unchecked(op string, err error) {
	b.log.Warn("checked mode: could not check a call", "op", op, "err", err)
}

// check serves c from the fast kernel and compares its results with the
// oracle's on copies of the inputs, taken before the fast kernel runs
// because in-place operations change them.
func (b *Backend) check(ctx context.Context, c *accel.Call, fast accel.Kernel) error {
	op := c.Op
	m, err := accel.NewSession(b.oracle, accel.Strict, accel.Limits{MaxBytes: 1 << 40}, nil)
	if err != nil {
		if ferr := fast(ctx, c); ferr != nil {
			return ferr
		}
		b.unchecked(op.Name, err)
		return nil
	}
	defer m.Close()
	abs := op.Tolerance.Terms != nil && op.Tolerance.Scale == accel.ScaleAbs
	copies, cerr := b.copyAll(m, c.In, false)
	var mags []*accel.Tensor
	if abs && cerr == nil {
		mags, cerr = b.copyAll(m, c.In, true)
	}
	if err := fast(ctx, c); err != nil {
		return err
	}
	if cerr != nil {
		b.unchecked(op.Name, cerr)
		return nil
	}
	if err := b.compareAll(ctx, m, c, copies, mags); err != nil {
		b.unchecked(op.Name, err)
	}
	return nil
}

// copyAll copies tensors from the fast backend into the oracle session;
// with abs, f32 values lose their signs, for magnitudes.
func (b *Backend) copyAll(m *accel.Session, ts []*accel.Tensor, abs bool) ([]*accel.Tensor, error) {
	out := make([]*accel.Tensor, len(ts))
	for i, t := range ts {
		if t == nil {
			continue
		}
		data := make([]byte, t.Bytes())
		if err := b.fast.Read(t.Buffer(), 0, data); err != nil {
			return nil, err
		}
		if abs && t.DType() == accel.F32 {
			for j := 3; j < len(data); j += 4 {
				data[j] &^= 0x80 // clear each f32's sign bit
			}
		}
		c, err := m.NewTensor(t.DType(), t.Shape())
		if err != nil {
			return nil, err
		}
		if err := m.Write(c, 0, data); err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// compareAll runs the oracle on copies (and on mags, the absolute values,
// where the tolerance scales with them) and records the comparison of every
// result the op's tolerance names.
func (b *Backend) compareAll(ctx context.Context, m *accel.Session, c *accel.Call, copies, mags []*accel.Tensor) error {
	op, tol := c.Op, c.Op.Tolerance
	outs, wantScalar, err := m.Run(ctx, op, c.Params, copies...)
	if err != nil {
		return fmt.Errorf("on %s: %w", b.oracle.Name(), err)
	}
	var magOuts []*accel.Tensor
	if mags != nil {
		if magOuts, _, err = m.Run(ctx, op, c.Params, mags...); err != nil {
			return fmt.Errorf("magnitudes on %s: %w", b.oracle.Name(), err)
		}
	}
	terms := 0
	if tol.Terms != nil {
		terms = tol.Terms(c)
	}
	names := tol.Compare
	if len(names) == 0 {
		names = op.Outputs
	}
	for _, name := range names {
		var got, want, mag []float32
		var shape []int
		key := op.Name
		switch i, j := slices.Index(op.Outputs, name), slices.IndexFunc(op.Inputs, func(in accel.Input) bool { return in.Name == name }); {
		case i >= 0:
			if got, err = b.values(c.Out[i]); err == nil {
				want, err = m.Float32(outs[i])
			}
			if err == nil && magOuts != nil {
				mag, err = m.Float32(magOuts[i])
			}
			shape = c.Out[i].Shape()
		case j >= 0: // an input updated in place
			if got, err = b.values(c.In[j]); err == nil {
				want, err = m.Float32(copies[j])
			}
			shape = c.In[j].Shape()
		case name == op.Scalar:
			if !c.WantScalar {
				continue
			}
			got, want, shape = []float32{c.Scalar}, []float32{wantScalar}, []int{1}
			key = op.Name + " " + name
		default:
			return fmt.Errorf("tolerance names %q, which %s does not return", name, op.Name)
		}
		if err != nil {
			return err
		}
		b.record(key, shape, compare(got, want, bound(terms, tol.Scale, want, mag)))
	}
	return nil
}

// values reads a tensor of the fast backend.
func (b *Backend) values(t *accel.Tensor) ([]float32, error) {
	data := make([]byte, t.Bytes())
	if err := b.fast.Read(t.Buffer(), 0, data); err != nil {
		return nil, err
	}
	return accel.DecodeFloat32(data), nil
}

// u is the unit roundoff of binary32; tiny covers underflow.
const (
	u    = 0x1p-24
	tiny = 0x1p-149
)

// bound is the tolerance of element i: 2·T·u·scale + T·tiny, or exact for
// T = 0.
func bound(terms int, scale accel.Scale, want, mag []float32) func(i int) float64 {
	if terms == 0 {
		return func(int) float64 { return 0 }
	}
	t := float64(terms)
	at := func(s float64) float64 { return 2*t*u*s + t*tiny }
	switch scale {
	case accel.ScaleAbs:
		return func(i int) float64 { return at(float64(mag[i])) }
	case accel.ScaleWant:
		return func(i int) float64 { return at(math.Abs(float64(want[i]))) }
	}
	largest := 0.0
	for _, v := range want {
		if !math.IsInf(float64(v), 0) && v == v {
			largest = max(largest, math.Abs(float64(v)))
		}
	}
	return func(int) float64 { return at(largest) }
}

// result is the comparison of one checked output with the oracle's.
type result struct {
	outputs, beyond int
	first           string // the first output beyond its bound
	maxULP          int64
	sumULP          float64
	maxAbs          float64
	ok              bool
}

func (r result) meanULP() float64 { return r.sumULP / float64(max(r.outputs, 1)) }

// compare checks got against want, element i within bound(i) (0: bits must
// agree up to NaN payloads). A NaN or infinity must be matched exactly.
func compare(got, want []float32, bound func(i int) float64) result {
	r := result{outputs: len(want), ok: true}
	for i, w := range want {
		g := got[i]
		d := strictmath.ULPs(g, w)
		r.maxULP = max(r.maxULP, d)
		r.sumULP += float64(d)
		diff := math.Abs(float64(g) - float64(w))
		finite := !math.IsInf(float64(w), 0) && w == w && !math.IsInf(float64(g), 0) && g == g
		if finite {
			r.maxAbs = max(r.maxAbs, diff)
		}
		var within bool
		switch {
		case w != w || g != g:
			within = w != w && g != g
		case !finite:
			within = g == w
		default:
			within = diff <= bound(i)
		}
		if !within {
			if r.beyond == 0 {
				r.first = fmt.Sprintf("element %d: got %g, want %g (bound %.3g)", i, g, w, bound(i))
			}
			r.beyond++
			r.ok = false
		}
	}
	return r
}
