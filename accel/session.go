package accel

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
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

// Session is one client's view of a backend: it owns the client's tensors,
// validates and meters every call, and frees everything at Close. A guest
// instance has one Session. A Session is not safe for concurrent use.
type Session struct {
	backend Backend
	mode    Mode
	limits  Limits
	charge  Charger

	live    map[*Tensor]struct{}
	bytes   int64
	checked csrKey // the last t-SNE CSR structure found valid
	closed  bool
}

// NewSession opens a session on b. charge may be nil for unmetered use.
func NewSession(b Backend, mode Mode, limits Limits, charge Charger) *Session {
	if limits.MaxBytes <= 0 {
		limits.MaxBytes = DefaultLimits.MaxBytes
	}
	if limits.MaxTensors <= 0 {
		limits.MaxTensors = DefaultLimits.MaxTensors
	}
	if charge == nil {
		charge = func(uint64) error { return nil }
	}
	return &Session{backend: b, mode: mode, limits: limits, charge: charge, live: map[*Tensor]struct{}{}}
}

func (s *Session) Backend() Backend { return s.backend }
func (s *Session) Mode() Mode       { return s.mode }

// Charge debits units for work done outside the Session's own operations,
// such as a whole model run by a backend natively, before it is done.
func (s *Session) Charge(units uint64) error { return s.charge(units) }

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
	return t, nil
}

func (s *Session) release(t *Tensor) {
	t.buf.Free()
	t.buf = nil
	delete(s.live, t)
	s.bytes -= t.Bytes()
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
	if t == s.checked.rowPtr || t == s.checked.cols {
		s.checked = csrKey{}
	}
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

// run charges units, allocates an output of shape and runs op into it. The
// output is freed if op fails.
func (s *Session) run(units uint64, shape []int, op func(out *Tensor) error) (*Tensor, error) {
	n, err := NumElements(shape)
	if err != nil {
		return nil, err
	}
	if err := s.charge(units); err != nil {
		return nil, err
	}
	out, err := s.alloc(F32, shape, n)
	if err != nil {
		return nil, err
	}
	if err := op(out); err != nil {
		s.release(out)
		return nil, err
	}
	return out, nil
}

// MatMul returns op(a)·op(b) for f32 matrices a [M,K] and b [K,N] (stored
// transposed when p asks).
func (s *Session) MatMul(ctx context.Context, a, b *Tensor, p MatMulParams) (*Tensor, error) {
	if err := s.check(a, F32, "a"); err != nil {
		return nil, err
	}
	if err := s.check(b, F32, "b"); err != nil {
		return nil, err
	}
	m, k, n, err := MatMulDims(a.shape, b.shape, p)
	if err != nil {
		return nil, err
	}
	return s.run(MatMulUnits(m, k, n), []int{m, n}, func(out *Tensor) error {
		return s.wrap("matmul", s.backend.MatMul(ctx, out, a, b, p))
	})
}

// MatMulDims checks the operand shapes of a matmul and returns M, K and N.
func MatMulDims(a, b []int, p MatMulParams) (m, k, n int, err error) {
	if len(a) != 2 || len(b) != 2 {
		return 0, 0, 0, fmt.Errorf("%w: matmul needs matrices, got %s and %s", ErrShape, ShapeString(a), ShapeString(b))
	}
	m, k = a[0], a[1]
	if p.TransA {
		m, k = k, m
	}
	kb, n := b[0], b[1]
	if p.TransB {
		kb, n = n, kb
	}
	if k != kb {
		return 0, 0, 0, fmt.Errorf("%w: matmul inner dimensions %d and %d differ (a %s, b %s)", ErrShape, k, kb, ShapeString(a), ShapeString(b))
	}
	if _, err := NumElements([]int{m, n}); err != nil {
		return 0, 0, 0, err
	}
	return m, k, n, nil
}

// Conv2D returns the convolution of x [N,C,H,W] with w [OC,C/groups,KH,KW],
// plus bias [OC] when bias is not nil.
func (s *Session) Conv2D(ctx context.Context, x, w, bias *Tensor, p Conv2DParams) (*Tensor, error) {
	if err := s.check(x, F32, "x"); err != nil {
		return nil, err
	}
	if err := s.check(w, F32, "w"); err != nil {
		return nil, err
	}
	var biasShape []int
	if bias != nil {
		if err := s.check(bias, F32, "bias"); err != nil {
			return nil, err
		}
		biasShape = bias.shape
	}
	shape, err := Conv2DShape(x.shape, w.shape, biasShape, p)
	if err != nil {
		return nil, err
	}
	return s.run(Conv2DUnits(x.shape, w.shape, shape, bias != nil), shape, func(out *Tensor) error {
		return s.wrap("conv2d", s.backend.Conv2D(ctx, out, x, w, bias, p))
	})
}

// Conv2DShape checks a convolution's operands and returns the output shape.
// biasShape is nil when there is no bias.
func Conv2DShape(x, w, biasShape []int, p Conv2DParams) ([]int, error) {
	if len(x) != 4 || len(w) != 4 {
		return nil, fmt.Errorf("%w: conv2d needs NCHW input and OIHW weights, got %s and %s", ErrShape, ShapeString(x), ShapeString(w))
	}
	if p.StrideH < 1 || p.StrideW < 1 || p.DilationH < 1 || p.DilationW < 1 || p.Groups < 1 {
		return nil, fmt.Errorf("%w: conv2d strides, dilations and groups must be at least 1: %+v", ErrInvalid, p)
	}
	if p.PadTop < 0 || p.PadLeft < 0 || p.PadBottom < 0 || p.PadRight < 0 {
		return nil, fmt.Errorf("%w: conv2d padding must not be negative: %+v", ErrInvalid, p)
	}
	n, c, h, wd := x[0], x[1], x[2], x[3]
	oc, cg, kh, kw := w[0], w[1], w[2], w[3]
	if c%p.Groups != 0 || oc%p.Groups != 0 || cg != c/p.Groups {
		return nil, fmt.Errorf("%w: conv2d with %d groups cannot take %d input and %d output channels with weights %s", ErrShape, p.Groups, c, oc, ShapeString(w))
	}
	if biasShape != nil && (len(biasShape) != 1 || biasShape[0] != oc) {
		return nil, fmt.Errorf("%w: conv2d bias %s, want [%d]", ErrShape, ShapeString(biasShape), oc)
	}
	oh, err := windows(h, kh, p.StrideH, p.DilationH, p.PadTop, p.PadBottom)
	if err != nil {
		return nil, err
	}
	ow, err := windows(wd, kw, p.StrideW, p.DilationW, p.PadLeft, p.PadRight)
	if err != nil {
		return nil, err
	}
	shape := []int{n, oc, oh, ow}
	if _, err := NumElements(shape); err != nil {
		return nil, err
	}
	return shape, nil
}

// windows counts the positions of a dilated window along one padded axis.
func windows(size, kernel, stride, dilation, padLo, padHi int) (int, error) {
	const limit = MaxElements
	if padLo > limit || padHi > limit || dilation > limit || stride > limit {
		return 0, fmt.Errorf("%w: window parameters too large", ErrOverflow)
	}
	span := dilation*(kernel-1) + 1 // no overflow: each factor is below 2^29
	padded := size + padLo + padHi
	if span > padded {
		return 0, fmt.Errorf("%w: window of %d does not fit axis of %d padded to %d", ErrShape, span, size, padded)
	}
	return (padded-span)/stride + 1, nil
}

// AddBias returns x + bias, with bias [x.Shape()[axis]] broadcast along axis.
func (s *Session) AddBias(ctx context.Context, x, bias *Tensor, axis int) (*Tensor, error) {
	if err := s.check(x, F32, "x"); err != nil {
		return nil, err
	}
	if err := s.check(bias, F32, "bias"); err != nil {
		return nil, err
	}
	if axis < 0 || axis >= len(x.shape) {
		return nil, fmt.Errorf("%w: axis %d outside %s", ErrInvalid, axis, ShapeString(x.shape))
	}
	if len(bias.shape) != 1 || bias.shape[0] != x.shape[axis] {
		return nil, fmt.Errorf("%w: bias %s does not match axis %d of %s", ErrShape, ShapeString(bias.shape), axis, ShapeString(x.shape))
	}
	units := CallUnits + uint64(x.n) + 2*uint64(x.Bytes()) + uint64(bias.Bytes())
	return s.run(units, slices.Clone(x.shape), func(out *Tensor) error {
		return s.wrap("add_bias", s.backend.AddBias(ctx, out, x, bias, axis))
	})
}

// Relu returns max(x, +0) elementwise.
func (s *Session) Relu(ctx context.Context, x *Tensor) (*Tensor, error) {
	if err := s.check(x, F32, "x"); err != nil {
		return nil, err
	}
	return s.run(CallUnits+uint64(x.n)+2*uint64(x.Bytes()), slices.Clone(x.shape), func(out *Tensor) error {
		return s.wrap("relu", s.backend.Relu(ctx, out, x))
	})
}

// MaxPool2D returns the window maxima of x [N,C,H,W].
func (s *Session) MaxPool2D(ctx context.Context, x *Tensor, p Pool2DParams) (*Tensor, error) {
	if err := s.check(x, F32, "x"); err != nil {
		return nil, err
	}
	shape, err := Pool2DShape(x.shape, p)
	if err != nil {
		return nil, err
	}
	return s.run(Pool2DUnits(x.shape, shape, p), shape, func(out *Tensor) error {
		return s.wrap("maxpool2d", s.backend.MaxPool2D(ctx, out, x, p))
	})
}

// Pool2DShape checks a pooling window against x and returns the output shape.
func Pool2DShape(x []int, p Pool2DParams) ([]int, error) {
	if len(x) != 4 {
		return nil, fmt.Errorf("%w: maxpool2d needs an NCHW input, got %s", ErrShape, ShapeString(x))
	}
	if p.KernelH < 1 || p.KernelW < 1 || p.StrideH < 1 || p.StrideW < 1 {
		return nil, fmt.Errorf("%w: maxpool2d kernel and strides must be at least 1: %+v", ErrInvalid, p)
	}
	if p.PadTop < 0 || p.PadLeft < 0 || p.PadBottom < 0 || p.PadRight < 0 ||
		p.PadTop >= p.KernelH || p.PadBottom >= p.KernelH || p.PadLeft >= p.KernelW || p.PadRight >= p.KernelW {
		return nil, fmt.Errorf("%w: maxpool2d padding must be smaller than the kernel: %+v", ErrInvalid, p)
	}
	// Padding wider than the input only adds windows that repeat others;
	// bounding it keeps the outputs within a small multiple of the input.
	if p.PadTop > x[2] || p.PadBottom > x[2] || p.PadLeft > x[3] || p.PadRight > x[3] {
		return nil, fmt.Errorf("%w: maxpool2d padding must not exceed the input's %dx%d: %+v", ErrInvalid, x[2], x[3], p)
	}
	oh, err := windows(x[2], p.KernelH, p.StrideH, 1, p.PadTop, p.PadBottom)
	if err != nil {
		return nil, err
	}
	ow, err := windows(x[3], p.KernelW, p.StrideW, 1, p.PadLeft, p.PadRight)
	if err != nil {
		return nil, err
	}
	return []int{x[0], x[1], oh, ow}, nil
}

// Softmax returns x normalised along its last axis.
func (s *Session) Softmax(ctx context.Context, x *Tensor) (*Tensor, error) {
	if err := s.check(x, F32, "x"); err != nil {
		return nil, err
	}
	return s.run(CallUnits+SoftmaxUnitsPerElement*uint64(x.n)+2*uint64(x.Bytes()), slices.Clone(x.shape), func(out *Tensor) error {
		return s.wrap("softmax", s.backend.Softmax(ctx, out, x))
	})
}

// csrKey identifies a CSR structure that was found valid. Writes to either
// tensor clear it.
type csrKey struct {
	rowPtr, cols *Tensor
	n, nnz       int
}

// TSNEStep runs one t-SNE iteration on st, updating st.Y, st.Update and
// st.Gains in place, and returns the KL divergence when p.ComputeKL is set.
func (s *Session) TSNEStep(ctx context.Context, st TSNEState, p TSNEParams) (float32, error) {
	for _, c := range []struct {
		t    *Tensor
		dt   DType
		name string
	}{{st.RowPtr, I32, "row_ptr"}, {st.Cols, I32, "cols"}, {st.Vals, F32, "vals"}, {st.Y, F32, "y"}, {st.Update, F32, "update"}, {st.Gains, F32, "gains"}} {
		if err := s.check(c.t, c.dt, c.name); err != nil {
			return 0, err
		}
	}
	all := []*Tensor{st.RowPtr, st.Cols, st.Vals, st.Y, st.Update, st.Gains}
	for i := range all {
		if slices.Contains(all[i+1:], all[i]) {
			return 0, fmt.Errorf("%w: tsne_step needs six distinct tensors", ErrInvalid)
		}
	}
	y := st.Y.shape
	if len(y) != 2 || y[1] != 2 {
		return 0, fmt.Errorf("%w: tsne_step embedding is %s, want [N x 2]", ErrShape, ShapeString(y))
	}
	n := y[0]
	if n < 2 {
		return 0, fmt.Errorf("%w: tsne_step needs at least 2 points, got %d", ErrShape, n)
	}
	if !slices.Equal(st.Update.shape, y) || !slices.Equal(st.Gains.shape, y) {
		return 0, fmt.Errorf("%w: tsne_step update %s and gains %s must match y %s", ErrShape, ShapeString(st.Update.shape), ShapeString(st.Gains.shape), ShapeString(y))
	}
	if st.RowPtr.n != n+1 || len(st.RowPtr.shape) != 1 {
		return 0, fmt.Errorf("%w: tsne_step row_ptr %s, want [%d]", ErrShape, ShapeString(st.RowPtr.shape), n+1)
	}
	nnz := st.Cols.n
	if len(st.Cols.shape) != 1 || !slices.Equal(st.Vals.shape, st.Cols.shape) {
		return 0, fmt.Errorf("%w: tsne_step cols %s and vals %s must be vectors of one length", ErrShape, ShapeString(st.Cols.shape), ShapeString(st.Vals.shape))
	}
	for _, v := range []float32{p.LearningRate, p.Momentum, p.Exaggeration, p.MinGain} {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return 0, fmt.Errorf("%w: tsne_step parameters must be finite: %+v", ErrInvalid, p)
		}
	}
	if err := s.charge(TSNEUnits(n, nnz, p.ComputeKL)); err != nil {
		return 0, err
	}
	if err := s.checkCSR(st, n, nnz); err != nil {
		return 0, err
	}
	kl, err := s.backend.TSNEStep(ctx, st, p)
	return kl, s.wrap("tsne_step", err)
}

// checkCSR makes sure that the CSR structure cannot send a backend outside
// its arrays: row_ptr starts at 0, never decreases and ends at nnz, and every
// column is in [0, N). The result is remembered until either tensor is
// written, since P stays fixed over a whole run.
func (s *Session) checkCSR(st TSNEState, n, nnz int) error {
	key := csrKey{rowPtr: st.RowPtr, cols: st.Cols, n: n, nnz: nnz}
	if s.checked == key {
		return nil
	}
	rowPtr, err := s.readInt32(st.RowPtr)
	if err != nil {
		return err
	}
	if rowPtr[0] != 0 || int(rowPtr[n]) != nnz {
		return fmt.Errorf("%w: tsne_step row_ptr must run from 0 to nnz=%d, got %d to %d", ErrInvalid, nnz, rowPtr[0], rowPtr[n])
	}
	for i := 1; i <= n; i++ {
		if rowPtr[i] < rowPtr[i-1] {
			return fmt.Errorf("%w: tsne_step row_ptr decreases at row %d", ErrInvalid, i-1)
		}
	}
	cols, err := s.readInt32(st.Cols)
	if err != nil {
		return err
	}
	for e, c := range cols {
		if c < 0 || int(c) >= n {
			return fmt.Errorf("%w: tsne_step column %d at entry %d outside [0, %d)", ErrInvalid, c, e, n)
		}
	}
	s.checked = key
	return nil
}

func (s *Session) readInt32(t *Tensor) ([]int32, error) {
	raw := make([]byte, t.Bytes())
	if err := s.backend.Read(t.buf, 0, raw); err != nil {
		return nil, s.wrap("read index data", err)
	}
	v := make([]int32, t.n)
	for i := range v {
		v[i] = int32(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return v, nil
}

func (s *Session) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s on %s: %w", op, s.backend.Name(), err)
}
