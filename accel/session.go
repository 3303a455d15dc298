package accel

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
)

// Limits bound what one Session may hold.
type Limits struct {
	// MaxBytes bounds the bytes of all live tensors together.
	MaxBytes int64
	// MaxTensors bounds the number of live tensors.
	MaxTensors int
}

// DefaultLimits are used where a Limits field is zero.
var DefaultLimits = Limits{MaxBytes: 4 << 30, MaxTensors: 1 << 16}

// Charger debits compute units before work is done. It returns an error when
// the budget cannot cover them; the work is then not done.
type Charger func(units uint64) error

func free(uint64) error { return nil }

// Session is one client's view of a backend in one determinism mode: it
// owns the client's tensors and is the single gate every call passes. It
// checks every argument against the operation's description (ops.go),
// charges the call's units, allocates its outputs within the limits, and
// only then hands the call to the backend's kernel for the mode, so that
// backends never see a call that does not fit. Everything still live is
// freed at Close. A guest instance has one Session. A Session is not safe
// for concurrent use.
type Session struct {
	backend Backend
	mode    Mode
	limits  Limits
	charge  Charger

	live     map[*Tensor]struct{}
	bytes    int64
	verified []verified // index data found valid, newest last
	closed   bool
	occ      *Occupancy // where set, shares live tensors and bytes with others
}

// Occupancy counts the live tensors and their bytes of every session that
// tracks it, for a node's metrics. It is safe for concurrent use.
type Occupancy struct {
	Tensors, Bytes atomic.Int64
}

// Track adds this session's live tensors to o from now on.
func (s *Session) Track(o *Occupancy) {
	if s.occ != nil || o == nil {
		return
	}
	s.occ = o
	o.Tensors.Add(int64(len(s.live)))
	o.Bytes.Add(s.bytes)
}

// verified records that op's index inputs held valid data for a call with
// inputs of these shapes and these parameters, on which the check's bounds
// depend (gather's indices are valid for one size of x along one axis);
// writing or freeing any of the index inputs forgets it.
type verified struct {
	op      *Op
	tensors []*Tensor
	shapes  [][]int
	params  any
}

// maxVerified bounds the remembered index checks.
const maxVerified = 8

// NewSession opens a session on b in mode. It fails, wrapping
// ErrUnsupported, when b is unavailable or does not serve mode. charge may
// be nil for unmetered use.
func NewSession(b Backend, mode Mode, limits Limits, charge Charger) (*Session, error) {
	if err := CheckServes(b, mode); err != nil {
		return nil, err
	}
	if limits.MaxBytes <= 0 {
		limits.MaxBytes = DefaultLimits.MaxBytes
	}
	if limits.MaxTensors <= 0 {
		limits.MaxTensors = DefaultLimits.MaxTensors
	}
	if charge == nil {
		charge = free
	}
	return &Session{backend: b, mode: mode, limits: limits, charge: charge, live: map[*Tensor]struct{}{}}, nil
}

// CheckServes says why b cannot serve mode, wrapping ErrUnsupported (and
// a *ModeError where b serves other modes), or returns nil if it can.
func CheckServes(b Backend, mode Mode) error {
	if err := cannotServe(b, mode); err != nil {
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return nil
}

// ModeError says that an available backend does not serve a mode, and
// which it serves.
type ModeError struct {
	Backend string
	Mode    Mode
	Serves  []Mode
}

func (e *ModeError) Error() string {
	return fmt.Sprintf("%s does not serve %s mode (it serves %s)", e.Backend, e.Mode, ModeList(e.Serves))
}

func cannotServe(b Backend, mode Mode) error {
	st := b.Status()
	switch {
	case !st.Available:
		return fmt.Errorf("%s is unavailable: %s", b.Name(), st.Reason)
	case !st.Serves(mode):
		return &ModeError{Backend: b.Name(), Mode: mode, Serves: st.Modes}
	}
	return nil
}

func (s *Session) Backend() Backend { return s.backend }
func (s *Session) Mode() Mode       { return s.mode }

// Charge debits units for work done outside the Session's own operations,
// such as a whole model run by a backend natively, before it is done.
func (s *Session) Charge(units uint64) error { return s.charge(units) }

// Prepaid charges units once and then runs f with every charge inside it
// waived: for work whose whole cost is settled beforehand from shapes,
// such as a model run charged from its graph.
func (s *Session) Prepaid(units uint64, f func() error) error {
	if err := s.charge(units); err != nil {
		return err
	}
	charge := s.charge
	s.charge = free
	defer func() { s.charge = charge }()
	return f()
}

// LiveBytes is the storage held by live tensors.
func (s *Session) LiveBytes() int64 { return s.bytes }

// LiveTensors is the number of live tensors.
func (s *Session) LiveTensors() int { return len(s.live) }

// Close frees every live tensor. The session must not be used afterwards.
func (s *Session) Close() {
	for t := range s.live {
		s.release(t)
	}
	s.closed = true
}

// NewTensor allocates a zero-filled tensor.
func (s *Session) NewTensor(dt DType, shape []int) (*Tensor, error) {
	if !dt.Valid() {
		return nil, fmt.Errorf("%w: dtype %d", ErrInvalid, uint32(dt))
	}
	n, err := NumElements(shape)
	if err != nil {
		return nil, err
	}
	if err := s.charge(CallUnits + uint64(n)*uint64(dt.Size())); err != nil {
		return nil, err
	}
	return s.alloc(dt, slices.Clone(shape), n)
}

func (s *Session) alloc(dt DType, shape []int, n int) (*Tensor, error) {
	if s.closed {
		return nil, fmt.Errorf("%w: session closed", ErrInvalid)
	}
	size := int64(n) * int64(dt.Size())
	if len(s.live) >= s.limits.MaxTensors {
		return nil, fmt.Errorf("%w: %d live, limit %d", ErrTooMany, len(s.live), s.limits.MaxTensors)
	}
	if s.bytes+size > s.limits.MaxBytes {
		return nil, fmt.Errorf("%w: %s needs %d bytes, %d of %d in use", ErrOutOfMemory, ShapeString(shape), size, s.bytes, s.limits.MaxBytes)
	}
	buf, err := s.backend.Alloc(dt, n)
	if err != nil {
		return nil, fmt.Errorf("allocate %s%s on %s: %w", dt, ShapeString(shape), s.backend.Name(), err)
	}
	t := &Tensor{dtype: dt, shape: shape, n: n, buf: buf, session: s}
	s.live[t] = struct{}{}
	s.bytes += size
	if s.occ != nil {
		s.occ.Tensors.Add(1)
		s.occ.Bytes.Add(size)
	}
	return t, nil
}

func (s *Session) release(t *Tensor) {
	s.forget(t)
	t.buf.Free()
	t.buf = nil
	delete(s.live, t)
	s.bytes -= t.Bytes()
	if s.occ != nil {
		s.occ.Tensors.Add(-1)
		s.occ.Bytes.Add(-t.Bytes())
	}
}

// forget drops the index checks that read t.
func (s *Session) forget(t *Tensor) {
	s.verified = slices.DeleteFunc(s.verified, func(v verified) bool { return slices.Contains(v.tensors, t) })
}

// check reports whether t is a live tensor of this session with dtype dt.
func (s *Session) check(t *Tensor, dt DType, what string) error {
	switch {
	case t == nil:
		return fmt.Errorf("%w: %s is missing", ErrInvalid, what)
	case t.session != s:
		return fmt.Errorf("%s: %w", what, ErrForeign)
	case t.buf == nil:
		return fmt.Errorf("%s: %w", what, ErrFreed)
	case dt != 0 && t.dtype != dt:
		return fmt.Errorf("%w: %s is %s, want %s", ErrInvalid, what, t.dtype, dt)
	}
	return nil
}

// Free releases t.
func (s *Session) Free(t *Tensor) error {
	if err := s.check(t, 0, "tensor"); err != nil {
		return err
	}
	if err := s.charge(CallUnits); err != nil {
		return err
	}
	s.release(t)
	return nil
}

// Reshape gives t a new shape with the same number of elements; data is not
// moved.
func (s *Session) Reshape(t *Tensor, shape []int) error {
	if err := s.check(t, 0, "tensor"); err != nil {
		return err
	}
	n, err := NumElements(shape)
	if err != nil {
		return err
	}
	if n != t.n {
		return fmt.Errorf("%w: cannot reshape %s (%d elements) to %s (%d)", ErrShape, ShapeString(t.shape), t.n, ShapeString(shape), n)
	}
	if err := s.charge(CallUnits); err != nil {
		return err
	}
	t.shape = slices.Clone(shape)
	return nil
}

// span checks that len(b) bytes are whole elements of t from element first.
func span(t *Tensor, first int, b []byte) error {
	size := t.dtype.Size()
	if len(b)%size != 0 {
		return fmt.Errorf("%w: %d bytes is not a whole number of %s elements", ErrInvalid, len(b), t.dtype)
	}
	if first < 0 || first > t.n || len(b)/size > t.n-first {
		return fmt.Errorf("%w: elements %d..%d outside %s", ErrShape, first, first+len(b)/size, t)
	}
	return nil
}

// Write copies little-endian elements from src into t from element first.
func (s *Session) Write(t *Tensor, first int, src []byte) error {
	if err := s.check(t, 0, "tensor"); err != nil {
		return err
	}
	if err := span(t, first, src); err != nil {
		return err
	}
	if err := s.charge(CallUnits + uint64(len(src))); err != nil {
		return err
	}
	s.forget(t)
	if err := s.backend.Write(t.buf, first, src); err != nil {
		return fmt.Errorf("write %s on %s: %w", t, s.backend.Name(), err)
	}
	return nil
}

// Read copies elements of t from element first into dst, little-endian.
func (s *Session) Read(t *Tensor, first int, dst []byte) error {
	if err := s.check(t, 0, "tensor"); err != nil {
		return err
	}
	if err := span(t, first, dst); err != nil {
		return err
	}
	if err := s.charge(CallUnits + uint64(len(dst))); err != nil {
		return err
	}
	if err := s.backend.Read(t.buf, first, dst); err != nil {
		return fmt.Errorf("read %s on %s: %w", t, s.backend.Name(), err)
	}
	return nil
}

// Run calls op with parameters p (op's own type: MatMulParams, NoParams,
// ...) on in, given in the order of op.Inputs with nil for an absent
// optional input. It returns the new output tensors, in the order of
// op.Outputs, and the op's scalar result where the call asks for one.
//
// Everything is checked before any work: the inputs are live tensors of
// this session with the right dtypes, in-place inputs alias nothing, the
// parameters and shapes fit (op.Shapes), and the backend has a kernel for
// op in the session's mode (ErrUnsupported otherwise). Then the call's
// units are charged, index data is checked, and the outputs are allocated
// within the limits. Errors do not name the operation; the caller does.
func (s *Session) Run(ctx context.Context, op *Op, p any, in ...*Tensor) ([]*Tensor, float32, error) {
	if s.closed {
		return nil, 0, fmt.Errorf("%w: session closed", ErrInvalid)
	}
	if len(in) != len(op.Inputs) {
		return nil, 0, fmt.Errorf("%w: %d inputs, want %d (%s)", ErrInvalid, len(in), len(op.Inputs), inputNames(op))
	}
	shapes := make([][]int, len(in))
	for i, t := range in {
		spec := op.Inputs[i]
		if t == nil && spec.Optional {
			continue
		}
		if err := s.check(t, spec.DType, spec.Name); err != nil {
			return nil, 0, err
		}
		shapes[i] = t.shape
	}
	for i, t := range in {
		if t == nil || !op.Inputs[i].InPlace {
			continue
		}
		for j, u := range in {
			if j != i && u == t {
				return nil, 0, fmt.Errorf("%w: %s and %s are one tensor, but %s is updated in place", ErrInvalid, op.Inputs[min(i, j)].Name, op.Inputs[max(i, j)].Name, op.Inputs[i].Name)
			}
		}
	}
	outShapes, err := op.Shapes(shapes, p)
	if err != nil {
		return nil, 0, err
	}
	kernel := s.backend.Kernel(op, s.mode)
	if kernel == nil {
		return nil, 0, fmt.Errorf("%w: %s has no kernel for it in %s mode", ErrUnsupported, s.backend.Name(), s.mode)
	}
	if err := s.charge(op.Units(shapes, outShapes, p)); err != nil {
		return nil, 0, err
	}
	if err := s.verify(ctx, op, in, shapes, p); err != nil {
		return nil, 0, err
	}
	if err := s.room(outShapes, op.Scratch(shapes, outShapes, p)); err != nil {
		return nil, 0, err
	}
	c := &Call{Op: op, Mode: s.mode, In: in, Params: p, WantScalar: op.WantsScalar(p), Out: make([]*Tensor, len(outShapes))}
	for i, shape := range outShapes {
		n, _ := NumElements(shape) // checked by Shapes
		if c.Out[i], err = s.alloc(op.OutputDType(i), shape, n); err != nil {
			s.releaseAll(c.Out[:i])
			return nil, 0, err
		}
	}
	// State updated in place no longer holds the data a check found valid.
	for i, t := range in {
		if t != nil && op.Inputs[i].InPlace {
			s.forget(t)
		}
	}
	if err := kernel(ctx, c); err != nil {
		s.releaseAll(c.Out)
		return nil, 0, fmt.Errorf("%s: %w", s.backend.Name(), err)
	}
	return c.Out, c.Scalar, nil
}

// room checks that the outputs of a call and the scratch its kernel may use
// fit in the tensor-memory limit beside the live tensors.
func (s *Session) room(outShapes [][]int, scratch int64) error {
	var out int64
	for _, shape := range outShapes {
		out += 4 * int64(product(shape))
	}
	if s.bytes+out+scratch > s.limits.MaxBytes {
		return fmt.Errorf("%w: the call needs %d bytes of outputs and %d of scratch, %d of %d in use", ErrOutOfMemory, out, scratch, s.bytes, s.limits.MaxBytes)
	}
	return nil
}

// run1 runs an operation with one output.
func (s *Session) run1(ctx context.Context, op *Op, p any, in ...*Tensor) (*Tensor, error) {
	out, _, err := s.Run(ctx, op, p, in...)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

func (s *Session) releaseAll(ts []*Tensor) {
	for _, t := range ts {
		s.release(t)
	}
}

// verify runs op's check of its index inputs unless the same tensors passed
// it, since they were last written, in a call of the same shapes and
// parameters.
func (s *Session) verify(ctx context.Context, op *Op, in []*Tensor, shapes [][]int, p any) error {
	if op.verify == nil {
		return nil
	}
	var index []*Tensor
	for i, spec := range op.Inputs {
		if spec.Index || spec.Checked {
			index = append(index, in[i])
		}
	}
	for _, v := range s.verified {
		if v.op == op && slices.Equal(v.tensors, index) && slices.EqualFunc(v.shapes, shapes, slices.Equal) && reflect.DeepEqual(v.params, p) {
			return nil
		}
	}
	read := func(t *Tensor, first int, dst []byte) error { return s.backend.Read(t.buf, first, dst) }
	if err := op.verify(ctx, in, p, read); err != nil {
		return err
	}
	if len(s.verified) == maxVerified {
		s.verified = s.verified[1:]
	}
	kept := make([][]int, len(shapes))
	for i, shape := range shapes {
		kept[i] = slices.Clone(shape)
	}
	s.verified = append(s.verified, verified{op: op, tensors: index, shapes: kept, params: p})
	return nil
}

func inputNames(op *Op) string {
	names := make([]string, len(op.Inputs))
	for i, in := range op.Inputs {
		names[i] = in.Name
	}
	return strings.Join(names, ", ")
}
