// Package checked is the node's checked determinism mode: a backend that
// serves every call from a fast backend and recomputes a sampled share of
// them on the reference backend, the numerics contract's bits. A result
// that lies beyond its operation's documented bound (docs/determinism.md,
// "Checked mode") is logged with the operation, shape and ulp figures and
// counted; the counts are reported when the node exits.
//
// Sampling is deterministic: call number c (from 0) is checked when
// frac(c·φ) < rate, φ being the golden ratio, so the same run checks the
// same calls, spread evenly whatever the rate.
package checked

import (
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// Backend is a fast backend whose calls are sampled and checked.
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

// New wraps fast, checking a share rate (0 to 1) of its calls against
// oracle, which must implement the numerics contract (accel/ref).
func New(fast, oracle accel.Backend, rate float64, log *slog.Logger) *Backend {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Backend{fast: fast, oracle: oracle, rate: min(max(rate, 0), 1), log: log, stats: map[string]*OpStats{}}
}

func (b *Backend) Name() string { return b.fast.Name() }

func (b *Backend) Status() accel.Status {
	st := b.fast.Status()
	st.Deterministic = false
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

// Stats returns a copy of the counts, by operation.
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
	s := b.stats[op]
	if s == nil {
		s = &OpStats{}
		b.stats[op] = s
	}
	s.Calls++
	if check {
		s.Checked++
	}
	b.mu.Unlock()
	return check
}

func (b *Backend) record(op string, shape []int, r result) {
	b.mu.Lock()
	s := b.stats[op]
	if s == nil { // a second output of a sampled call, such as t-SNE's KL
		s = &OpStats{Calls: 1, Checked: 1}
		b.stats[op] = s
	}
	s.MaxULP = max(s.MaxULP, r.maxULP)
	if !r.ok {
		s.Beyond++
	}
	b.mu.Unlock()
	if !r.ok {
		b.log.Warn("checked mode: result beyond its bound", "op", op, "shape", accel.ShapeString(shape),
			"outputs", r.outputs, "beyond", r.beyond, "first", r.first, "max_ulp", r.maxULP, "mean_ulp", r.meanULP(), "max_abs_diff", r.maxAbs)
	}
}

// mirror holds copies of one call's tensors on the oracle.
type mirror struct {
	b       *Backend
	session *accel.Session
}

func (b *Backend) mirror() *mirror {
	return &mirror{b: b, session: accel.NewSession(b.oracle, accel.Strict, accel.Limits{MaxBytes: 1 << 40}, nil)}
}

func (m *mirror) close() { m.session.Close() }

// copy reads t from the fast backend into a new tensor of the oracle
// session; abs copies absolute values, for error bounds.
func (m *mirror) copy(t *accel.Tensor, abs bool) (*accel.Tensor, error) {
	if t == nil {
		return nil, nil
	}
	data := make([]byte, t.Bytes())
	if err := m.b.fast.Read(t.Buffer(), 0, data); err != nil {
		return nil, err
	}
	if abs {
		for i := 3; i < len(data); i += 4 {
			data[i] &^= 0x80 // clear each f32's sign bit
		}
	}
	c, err := m.session.NewTensor(t.DType(), t.Shape())
	if err != nil {
		return nil, err
	}
	return c, m.session.Write(c, 0, data)
}

// values reads a tensor of the oracle session.
func (m *mirror) values(t *accel.Tensor, err error) ([]float32, error) {
	if err != nil {
		return nil, err
	}
	return m.session.Float32(t)
}

// output reads a result tensor of the fast backend.
func (b *Backend) output(t *accel.Tensor) ([]float32, error) {
	data := make([]byte, t.Bytes())
	if err := b.fast.Read(t.Buffer(), 0, data); err != nil {
		return nil, err
	}
	return accel.DecodeFloat32(data), nil
}

// unchecked logs a check that could not be made. The guest's call itself
// succeeded, so this is never its error.
func (b *Backend) unchecked(op string, err error) {
	b.log.Warn("checked mode: could not check a call", "op", op, "err", err)
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

// u is the unit roundoff of binary32; tiny covers underflow.
const (
	u    = 0x1p-24
	tiny = 0x1p-149
)

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

func exact(int) float64 { return 0 }
