package accel_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ref"
)

// spy is the ref backend, counting the buffers it allocates.
type spy struct {
	accel.Backend
	allocs int
}

func (b *spy) Alloc(dt accel.DType, n int) (accel.Buffer, error) {
	b.allocs++
	return b.Backend.Alloc(dt, n)
}

// env is a session on the ref backend, with helpers that fail the test on
// errors that are not the point.
type env struct {
	t *testing.T
	s *accel.Session
	b *spy
	// The session at the last mark.
	tensors, allocs int
	bytes           int64
}

func newEnv(t *testing.T, lim accel.Limits, charge accel.Charger) *env {
	b := &spy{Backend: ref.New(1)}
	s, err := accel.NewSession(b, accel.Strict, lim, charge)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return &env{t: t, s: s, b: b}
}

// mark records the live tensors, bytes and allocations, so that a call that
// fails can be checked to have left them alone.
func (e *env) mark() { e.tensors, e.bytes, e.allocs = e.s.LiveTensors(), e.s.LiveBytes(), e.b.allocs }

// changed describes how the session differs from the last mark, or is "".
func (e *env) changed() string {
	if e.s.LiveTensors() == e.tensors && e.s.LiveBytes() == e.bytes && e.b.allocs == e.allocs {
		return ""
	}
	return fmt.Sprintf("live tensors %d to %d, bytes %d to %d, allocations %d to %d",
		e.tensors, e.s.LiveTensors(), e.bytes, e.s.LiveBytes(), e.allocs, e.b.allocs)
}

// f32 allocates a zero-filled f32 tensor.
func (e *env) f32(shape ...int) *accel.Tensor {
	e.t.Helper()
	x, err := e.s.NewTensor(accel.F32, shape)
	if err != nil {
		e.t.Fatalf("NewTensor(f32, %v): %v", shape, err)
	}
	return x
}

// fill allocates an f32 tensor holding v.
func (e *env) fill(v []float32, shape ...int) *accel.Tensor {
	e.t.Helper()
	x := e.f32(shape...)
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	if err := e.s.Write(x, 0, b); err != nil {
		e.t.Fatal(err)
	}
	return x
}

// i32 allocates an i32 vector holding v.
func (e *env) i32(v ...int32) *accel.Tensor {
	e.t.Helper()
	x, err := e.s.NewTensor(accel.I32, []int{len(v)})
	if err != nil {
		e.t.Fatal(err)
	}
	e.writeI32(x, v...)
	return x
}

func (e *env) writeI32(x *accel.Tensor, v ...int32) {
	e.t.Helper()
	b := make([]byte, 4*len(v))
	for i, n := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(n))
	}
	if err := e.s.Write(x, 0, b); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) read(x *accel.Tensor) []float32 {
	e.t.Helper()
	b := make([]byte, x.Bytes())
	if err := e.s.Read(x, 0, b); err != nil {
		e.t.Fatal(err)
	}
	v := make([]float32, x.Len())
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// freed returns an f32 tensor that has been freed.
func (e *env) freed(shape ...int) *accel.Tensor {
	e.t.Helper()
	x := e.f32(shape...)
	if err := e.s.Free(x); err != nil {
		e.t.Fatal(err)
	}
	return x
}

// foreign returns an f32 tensor of another session.
func (e *env) foreign(shape ...int) *accel.Tensor {
	e.t.Helper()
	return newEnv(e.t, accel.Limits{}, nil).f32(shape...)
}

// tsne returns a valid t-SNE state over three points: P has entries (0,1),
// (1,0), (1,2) and (2,1).
func (e *env) tsne() accel.TSNEState {
	e.t.Helper()
	return accel.TSNEState{
		RowPtr: e.i32(0, 1, 3, 4),
		Cols:   e.i32(1, 0, 2, 1),
		Vals:   e.fill([]float32{0.25, 0.25, 0.25, 0.25}, 4),
		Y:      e.fill([]float32{0, 1, 2, -1, 0.5, 0}, 3, 2),
		Update: e.f32(3, 2),
		Gains:  e.fill([]float32{1, 1, 1, 1, 1, 1}, 3, 2),
	}
}

var tsneParams = accel.TSNEParams{LearningRate: 200, Momentum: 0.5, Exaggeration: 12, MinGain: 0.01, ComputeKL: true}

func TestNewTensorErrors(t *testing.T) {
	const max = accel.MaxElements
	for _, c := range []struct {
		name  string
		dt    accel.DType
		shape []int
		want  error
	}{
		{"f32", accel.F32, []int{2, 3}, nil},
		{"i32", accel.I32, []int{7}, nil},
		{"rank 8", accel.F32, []int{1, 2, 1, 2, 1, 2, 1, 2}, nil},
		{"dtype 0", 0, []int{2}, accel.ErrInvalid},
		{"dtype 3", 3, []int{2}, accel.ErrInvalid},
		{"rank 0", accel.F32, []int{}, accel.ErrInvalid},
		{"rank 9", accel.F32, []int{1, 1, 1, 1, 1, 1, 1, 1, 1}, accel.ErrInvalid},
		{"zero dimension", accel.F32, []int{3, 0}, accel.ErrInvalid},
		{"negative dimension", accel.F32, []int{-1, 4}, accel.ErrInvalid},
		{"MaxElements+1", accel.F32, []int{max + 1}, accel.ErrOverflow},
		{"product over MaxElements", accel.F32, []int{1 << 15, 1 << 15}, accel.ErrOverflow},
		{"product 2^64 wraps to 0", accel.F32, []int{1 << 16, 1 << 16, 1 << 16, 1 << 16}, accel.ErrOverflow},
		{"product wraps negative", accel.F32, []int{3, 1 << 21, 1 << 21, 1 << 21}, accel.ErrOverflow},
		{"MaxInt dimension", accel.F32, []int{math.MaxInt}, accel.ErrOverflow},
		{"MaxElements squared", accel.I32, []int{max, max}, accel.ErrOverflow},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, accel.Limits{}, nil)
			x, err := e.s.NewTensor(c.dt, c.shape)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("NewTensor(%v, %v) = %v, want %v", c.dt, c.shape, err, c.want)
			}
			switch {
			case err == nil && (x.Len() != product(c.shape) || !slices.Equal(x.Shape(), c.shape)):
				t.Errorf("tensor %v has %d elements", x, x.Len())
			case err != nil && (e.s.LiveTensors() != 0 || e.s.LiveBytes() != 0 || e.b.allocs != 0):
				t.Errorf("failed NewTensor left %d tensors, %d bytes, %d allocations", e.s.LiveTensors(), e.s.LiveBytes(), e.b.allocs)
			}
		})
	}
}

func TestNumElements(t *testing.T) {
	const max = accel.MaxElements
	for _, c := range []struct {
		shape []int
		n     int
		want  error
	}{
		{[]int{max}, max, nil},
		{[]int{1, max, 1}, max, nil},
		{[]int{2, max / 2}, max - 1, nil},
		{[]int{max, 2}, 0, accel.ErrOverflow},
		{[]int{1 << 15, 1 << 14}, 0, accel.ErrOverflow},
		{[]int{1 << 32, 1 << 32}, 0, accel.ErrOverflow},
		{[]int{1 << 16, 1 << 16, 1 << 16, 1 << 16}, 0, accel.ErrOverflow},
		{[]int{math.MaxInt, math.MaxInt}, 0, accel.ErrOverflow},
		{[]int{max, 0}, 0, accel.ErrInvalid},
		{[]int{math.MinInt}, 0, accel.ErrInvalid},
	} {
		n, err := accel.NumElements(c.shape)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) || (err == nil && n != c.n) {
			t.Errorf("NumElements(%v) = %d, %v; want %d, %v", c.shape, n, err, c.n, c.want)
		}
	}
}

func product(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// errCase is a call that must fail with want (or succeed when want is nil).
type errCase struct {
	name string
	want error
	call func(e *env) error // builds its operands, calls e.mark, then makes the call under test
}

// runErrCases runs each case on a fresh session and checks that a failed
// call left no tensor, storage or allocation behind.
func runErrCases(t *testing.T, cases []errCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, accel.Limits{}, nil)
			err := c.call(e)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("got error %v, want %v", err, c.want)
			}
			if d := e.changed(); c.want != nil && d != "" {
				t.Errorf("the failed call changed the session: %s", d)
			}
		})
	}
}

func TestOpErrors(t *testing.T) {
	ctx := context.Background()
	mm := func(as, bs []int, p accel.MatMulParams) func(e *env) error {
		return func(e *env) error {
			a, b := e.f32(as...), e.f32(bs...)
			e.mark()
			_, err := e.s.MatMul(ctx, a, b, p)
			return err
		}
	}
	conv := func(xs, ws, bs []int, p accel.Conv2DParams) func(e *env) error {
		return func(e *env) error {
			x, w := e.f32(xs...), e.f32(ws...)
			var b *accel.Tensor
			if bs != nil {
				b = e.f32(bs...)
			}
			e.mark()
			_, err := e.s.Conv2D(ctx, x, w, b, p)
			return err
		}
	}
	cp := func(f func(p *accel.Conv2DParams)) accel.Conv2DParams {
		p := accel.Conv2DParams{StrideH: 1, StrideW: 1, DilationH: 1, DilationW: 1, Groups: 1}
		if f != nil {
			f(&p)
		}
		return p
	}
	addBias := func(xs []int, n, axis int) func(e *env) error {
		return func(e *env) error {
			x, b := e.f32(xs...), e.f32(n)
			e.mark()
			_, err := e.s.AddBias(ctx, x, b, axis)
			return err
		}
	}
	pool := func(xs []int, p accel.Pool2DParams) func(e *env) error {
		return func(e *env) error {
			x := e.f32(xs...)
			e.mark()
			_, err := e.s.MaxPool2D(ctx, x, p)
			return err
		}
	}
	pp := func(f func(p *accel.Pool2DParams)) accel.Pool2DParams {
		p := accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 1, StrideW: 1}
		if f != nil {
			f(&p)
		}
		return p
	}
	add := func(as, bs []int) func(e *env) error {
		return func(e *env) error {
			a, b := e.f32(as...), e.f32(bs...)
			e.mark()
			_, err := e.s.Add(ctx, a, b)
			return err
		}
	}
	relu := func(x func(e *env) *accel.Tensor) func(e *env) error {
		return func(e *env) error { t := x(e); e.mark(); _, err := e.s.Relu(ctx, t); return err }
	}
	softmax := func(x func(e *env) *accel.Tensor) func(e *env) error {
		return func(e *env) error { t := x(e); e.mark(); _, err := e.s.Softmax(ctx, t); return err }
	}
	// tsne edits a valid state and parameters, then runs a step.
	tsne := func(f func(e *env, st *accel.TSNEState, p *accel.TSNEParams)) func(e *env) error {
		return func(e *env) error {
			st, p := e.tsne(), tsneParams
			if f != nil {
				f(e, &st, &p)
			}
			e.mark()
			_, err := e.s.TSNEStep(ctx, st, p)
			return err
		}
	}
	// state returns a t-SNE state over n points with the given CSR.
	state := func(e *env, n int, rowPtr []int32, cols ...int32) accel.TSNEState {
		return accel.TSNEState{
			RowPtr: e.i32(rowPtr...), Cols: e.i32(cols...), Vals: e.f32(len(cols)),
			Y: e.f32(n, 2), Update: e.f32(n, 2), Gains: e.f32(n, 2),
		}
	}

	cases := []errCase{
		{"matmul", nil, mm([]int{2, 3}, []int{3, 4}, accel.MatMulParams{})},
		{"matmul transposed", nil, mm([]int{3, 2}, []int{4, 3}, accel.MatMulParams{TransA: true, TransB: true})},
		{"matmul inner dimensions", accel.ErrShape, mm([]int{2, 3}, []int{4, 5}, accel.MatMulParams{})},
		{"matmul inner dimensions with TransA", accel.ErrShape, mm([]int{2, 3}, []int{3, 4}, accel.MatMulParams{TransA: true})},
		{"matmul inner dimensions with TransB", accel.ErrShape, mm([]int{2, 3}, []int{3, 4}, accel.MatMulParams{TransB: true})},
		{"matmul vector", accel.ErrShape, mm([]int{3}, []int{3, 4}, accel.MatMulParams{})},
		{"matmul rank 3", accel.ErrShape, mm([]int{2, 3}, []int{1, 3, 4}, accel.MatMulParams{})},
		{"matmul output too large", accel.ErrOverflow, mm([]int{1 << 16, 1}, []int{1, 1 << 16}, accel.MatMulParams{})},
		{"matmul i32 operand", accel.ErrInvalid, func(e *env) error {
			a, b := e.f32(2, 3), e.i32(1, 2, 3)
			e.mark()
			_, err := e.s.MatMul(ctx, a, b, accel.MatMulParams{})
			return err
		}},
		{"matmul nil operand", accel.ErrInvalid, func(e *env) error {
			a := e.f32(2, 3)
			e.mark()
			_, err := e.s.MatMul(ctx, a, nil, accel.MatMulParams{})
			return err
		}},
		{"matmul freed operand", accel.ErrFreed, func(e *env) error {
			a, b := e.freed(2, 3), e.f32(3, 4)
			e.mark()
			_, err := e.s.MatMul(ctx, a, b, accel.MatMulParams{})
			return err
		}},
		{"matmul foreign operand", accel.ErrForeign, func(e *env) error {
			a, b := e.f32(2, 3), e.foreign(3, 4)
			e.mark()
			_, err := e.s.MatMul(ctx, a, b, accel.MatMulParams{})
			return err
		}},

		{"conv2d", nil, conv([]int{1, 4, 5, 5}, []int{6, 2, 3, 3}, []int{6}, cp(func(p *accel.Conv2DParams) { p.Groups = 2 }))},
		{"conv2d groups do not divide channels", accel.ErrShape, conv([]int{1, 3, 5, 5}, []int{4, 1, 3, 3}, nil, cp(func(p *accel.Conv2DParams) { p.Groups = 2 }))},
		{"conv2d weights not C/groups", accel.ErrShape, conv([]int{1, 4, 5, 5}, []int{4, 4, 3, 3}, nil, cp(func(p *accel.Conv2DParams) { p.Groups = 2 }))},
		{"conv2d groups do not divide output channels", accel.ErrShape, conv([]int{1, 4, 5, 5}, []int{3, 2, 3, 3}, nil, cp(func(p *accel.Conv2DParams) { p.Groups = 2 }))},
		{"conv2d bias length", accel.ErrShape, conv([]int{1, 1, 5, 5}, []int{4, 1, 3, 3}, []int{3}, cp(nil))},
		{"conv2d bias rank 2", accel.ErrShape, conv([]int{1, 1, 5, 5}, []int{4, 1, 3, 3}, []int{4, 1}, cp(nil))},
		{"conv2d window larger than input", accel.ErrShape, conv([]int{1, 1, 3, 3}, []int{1, 1, 5, 5}, nil, cp(nil))},
		{"conv2d dilated window larger than padded input", accel.ErrShape, conv([]int{1, 1, 3, 3}, []int{1, 1, 2, 2}, nil, cp(func(p *accel.Conv2DParams) { p.DilationW = 3 }))},
		{"conv2d input rank 3", accel.ErrShape, conv([]int{1, 5, 5}, []int{1, 1, 3, 3}, nil, cp(nil))},
		{"conv2d negative padding", accel.ErrInvalid, conv([]int{1, 1, 5, 5}, []int{1, 1, 3, 3}, nil, cp(func(p *accel.Conv2DParams) { p.PadLeft = -1 }))},
		{"conv2d zero stride", accel.ErrInvalid, conv([]int{1, 1, 5, 5}, []int{1, 1, 3, 3}, nil, cp(func(p *accel.Conv2DParams) { p.StrideH = 0 }))},
		{"conv2d zero dilation", accel.ErrInvalid, conv([]int{1, 1, 5, 5}, []int{1, 1, 3, 3}, nil, cp(func(p *accel.Conv2DParams) { p.DilationW = 0 }))},
		{"conv2d zero groups", accel.ErrInvalid, conv([]int{1, 1, 5, 5}, []int{1, 1, 3, 3}, nil, cp(func(p *accel.Conv2DParams) { p.Groups = 0 }))},
		// Window parameters beyond any tensor's dimension are invalid, as
		// docs/abi.md says, not an overflow.
		{"conv2d huge padding", accel.ErrInvalid, conv([]int{1, 1, 5, 5}, []int{1, 1, 3, 3}, nil, cp(func(p *accel.Conv2DParams) { p.PadBottom = math.MaxInt / 2 }))},
		{"conv2d stride 2^29", accel.ErrInvalid, conv([]int{1, 1, 5, 5}, []int{1, 1, 3, 3}, nil, cp(func(p *accel.Conv2DParams) { p.StrideH = 1 << 29 }))},
		{"conv2d stride 2^32-1", accel.ErrInvalid, conv([]int{1, 1, 5, 5}, []int{1, 1, 3, 3}, nil, cp(func(p *accel.Conv2DParams) { p.StrideW = math.MaxUint32 }))},
		{"conv2d output too large", accel.ErrOverflow, conv([]int{1, 1, 1, 1}, []int{1, 1, 1, 1}, nil, cp(func(p *accel.Conv2DParams) { p.PadTop, p.PadLeft = 1<<20, 1<<20 }))},
		{"conv2d i32 bias", accel.ErrInvalid, func(e *env) error {
			x, w, b := e.f32(1, 1, 3, 3), e.f32(2, 1, 2, 2), e.i32(1, 2)
			e.mark()
			_, err := e.s.Conv2D(ctx, x, w, b, cp(nil))
			return err
		}},
		{"conv2d freed bias", accel.ErrFreed, func(e *env) error {
			x, w, b := e.f32(1, 1, 3, 3), e.f32(2, 1, 2, 2), e.freed(2)
			e.mark()
			_, err := e.s.Conv2D(ctx, x, w, b, cp(nil))
			return err
		}},
		{"conv2d foreign weights", accel.ErrForeign, func(e *env) error {
			x, w := e.f32(1, 1, 3, 3), e.foreign(2, 1, 2, 2)
			e.mark()
			_, err := e.s.Conv2D(ctx, x, w, nil, cp(nil))
			return err
		}},

		{"add_bias", nil, addBias([]int{2, 3, 4}, 3, 1)},
		{"add_bias length differs from the axis", accel.ErrShape, addBias([]int{2, 3}, 2, 1)},
		{"add_bias length of another axis", accel.ErrShape, addBias([]int{2, 3}, 3, 0)},
		{"add_bias bias rank 2", accel.ErrShape, func(e *env) error {
			x, b := e.f32(2, 3), e.f32(3, 1)
			e.mark()
			_, err := e.s.AddBias(ctx, x, b, 1)
			return err
		}},
		{"add_bias axis past the rank", accel.ErrInvalid, addBias([]int{2, 3}, 3, 2)},
		{"add_bias negative axis", accel.ErrInvalid, addBias([]int{2, 3}, 3, -1)},

		{"relu i32", accel.ErrInvalid, relu(func(e *env) *accel.Tensor { return e.i32(1, 2) })},
		{"relu freed", accel.ErrFreed, relu(func(e *env) *accel.Tensor { return e.freed(2) })},
		{"relu foreign", accel.ErrForeign, relu(func(e *env) *accel.Tensor { return e.foreign(2) })},
		{"relu nil", accel.ErrInvalid, relu(func(e *env) *accel.Tensor { return nil })},
		{"softmax i32", accel.ErrInvalid, softmax(func(e *env) *accel.Tensor { return e.i32(1, 2) })},
		{"softmax freed", accel.ErrFreed, softmax(func(e *env) *accel.Tensor { return e.freed(2) })},
		{"softmax foreign", accel.ErrForeign, softmax(func(e *env) *accel.Tensor { return e.foreign(2) })},

		{"maxpool2d", nil, pool([]int{1, 1, 4, 4}, pp(func(p *accel.Pool2DParams) { p.PadTop, p.PadRight = 1, 1 }))},
		{"maxpool2d padding equal to kernel", accel.ErrInvalid, pool([]int{1, 1, 4, 4}, pp(func(p *accel.Pool2DParams) { p.PadTop = 2 }))},
		{"maxpool2d padding beyond kernel", accel.ErrInvalid, pool([]int{1, 1, 4, 4}, pp(func(p *accel.Pool2DParams) { p.PadRight = 5 }))},
		{"maxpool2d negative padding", accel.ErrInvalid, pool([]int{1, 1, 4, 4}, pp(func(p *accel.Pool2DParams) { p.PadLeft = -1 }))},
		{"maxpool2d zero kernel", accel.ErrInvalid, pool([]int{1, 1, 4, 4}, pp(func(p *accel.Pool2DParams) { p.KernelW = 0 }))},
		{"maxpool2d zero stride", accel.ErrInvalid, pool([]int{1, 1, 4, 4}, pp(func(p *accel.Pool2DParams) { p.StrideH = 0 }))},
		{"maxpool2d kernel larger than padded input", accel.ErrShape, pool([]int{1, 1, 2, 2}, pp(func(p *accel.Pool2DParams) { p.KernelH, p.PadTop = 4, 1 }))},
		{"maxpool2d input rank 3", accel.ErrShape, pool([]int{1, 4, 4}, pp(nil))},
		{"maxpool2d stride 2^29", accel.ErrInvalid, pool([]int{1, 1, 4, 4}, pp(func(p *accel.Pool2DParams) { p.StrideH = 1 << 29 }))},
		{"maxpool2d stride 2^32-1", accel.ErrInvalid, pool([]int{1, 1, 4, 4}, pp(func(p *accel.Pool2DParams) { p.StrideW = math.MaxUint32 }))},

		{"add", nil, add([]int{2, 3}, []int{2, 3})},
		{"add shapes differ", accel.ErrShape, add([]int{2, 3}, []int{3, 2})},
		{"add ranks differ", accel.ErrShape, add([]int{6}, []int{2, 3})},
		{"add i32 operand", accel.ErrInvalid, func(e *env) error {
			a, b := e.f32(2), e.i32(1, 2)
			e.mark()
			_, err := e.s.Add(ctx, a, b)
			return err
		}},
		{"add freed operand", accel.ErrFreed, func(e *env) error {
			a, b := e.f32(2), e.freed(2)
			e.mark()
			_, err := e.s.Add(ctx, a, b)
			return err
		}},

		{"tsne_step", nil, tsne(nil)},
		{"tsne_step without KL", nil, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) { p.ComputeKL = false })},
		{"tsne_step y [N,3]", accel.ErrShape, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) {
			st.Y, st.Update, st.Gains = e.f32(3, 3), e.f32(3, 3), e.f32(3, 3)
		})},
		{"tsne_step y rank 1", accel.ErrShape, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) {
			st.Y, st.Update, st.Gains = e.f32(6), e.f32(6), e.f32(6)
		})},
		{"tsne_step N=1", accel.ErrShape, func(e *env) error {
			st := state(e, 1, []int32{0, 1}, 0)
			e.mark()
			_, err := e.s.TSNEStep(ctx, st, tsneParams)
			return err
		}},
		{"tsne_step update shape", accel.ErrShape, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) { st.Update = e.f32(4, 2) })},
		{"tsne_step gains shape", accel.ErrShape, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) { st.Gains = e.f32(2, 3) })},
		{"tsne_step row_ptr length", accel.ErrShape, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) { st.RowPtr = e.i32(0, 1, 4) })},
		{"tsne_step row_ptr rank 2", accel.ErrShape, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) {
			if err := e.s.Reshape(st.RowPtr, []int{2, 2}); err != nil {
				e.t.Fatal(err)
			}
		})},
		{"tsne_step cols and vals lengths", accel.ErrShape, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) { st.Vals = e.f32(5) })},
		{"tsne_step cols rank 2", accel.ErrShape, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) {
			if err := e.s.Reshape(st.Cols, []int{2, 2}); err != nil {
				e.t.Fatal(err)
			}
			st.Vals = e.f32(2, 2)
		})},
		{"tsne_step f32 row_ptr", accel.ErrInvalid, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) { st.RowPtr = e.f32(4) })},
		{"tsne_step i32 vals", accel.ErrInvalid, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) { st.Vals = e.i32(1, 1, 1, 1) })},
		{"tsne_step nil gains", accel.ErrInvalid, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) { st.Gains = nil })},
		{"tsne_step update is gains", accel.ErrInvalid, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) { st.Update = st.Gains })},
		{"tsne_step y is update", accel.ErrInvalid, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) { st.Y = st.Update })},
		{"tsne_step NaN learning rate", accel.ErrInvalid, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) { p.LearningRate = float32(math.NaN()) })},
		{"tsne_step +Inf momentum", accel.ErrInvalid, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) { p.Momentum = float32(math.Inf(1)) })},
		{"tsne_step -Inf exaggeration", accel.ErrInvalid, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) { p.Exaggeration = float32(math.Inf(-1)) })},
		{"tsne_step NaN minimum gain", accel.ErrInvalid, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) { p.MinGain = float32(math.NaN()) })},
		{"tsne_step row_ptr not starting at 0", accel.ErrInvalid, func(e *env) error {
			st := state(e, 3, []int32{1, 1, 3, 4}, 1, 0, 2, 1)
			e.mark()
			_, err := e.s.TSNEStep(ctx, st, tsneParams)
			return err
		}},
		{"tsne_step row_ptr decreasing", accel.ErrInvalid, func(e *env) error {
			st := state(e, 3, []int32{0, 3, 2, 4}, 1, 0, 2, 1)
			e.mark()
			_, err := e.s.TSNEStep(ctx, st, tsneParams)
			return err
		}},
		{"tsne_step row_ptr ending past cols", accel.ErrInvalid, func(e *env) error {
			st := state(e, 3, []int32{0, 1, 3, 5}, 1, 0, 2, 1)
			e.mark()
			_, err := e.s.TSNEStep(ctx, st, tsneParams)
			return err
		}},
		{"tsne_step column -1", accel.ErrInvalid, func(e *env) error {
			st := state(e, 3, []int32{0, 1, 3, 4}, 1, -1, 2, 1)
			e.mark()
			_, err := e.s.TSNEStep(ctx, st, tsneParams)
			return err
		}},
		{"tsne_step column N", accel.ErrInvalid, func(e *env) error {
			st := state(e, 3, []int32{0, 1, 3, 4}, 1, 0, 3, 1)
			e.mark()
			_, err := e.s.TSNEStep(ctx, st, tsneParams)
			return err
		}},
		{"tsne_step empty rows and a zero entry", nil, func(e *env) error {
			st := state(e, 3, []int32{0, 0, 1, 1}, 0) // nnz=0 cannot be stored: a tensor has an element
			e.mark()
			_, err := e.s.TSNEStep(ctx, st, tsneParams)
			return err
		}},
		{"tsne_step freed y", accel.ErrFreed, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) { st.Y = e.freed(3, 2) })},
		{"tsne_step foreign vals", accel.ErrForeign, tsne(func(e *env, st *accel.TSNEState, p *accel.TSNEParams) { st.Vals = e.foreign(4) })},
	}
	runErrCases(t, cases)
}

func TestTensorErrors(t *testing.T) {
	cases := []errCase{
		{"write whole", nil, func(e *env) error { x := e.f32(4); e.mark(); return e.s.Write(x, 0, make([]byte, 16)) }},
		{"write last element", nil, func(e *env) error { x := e.f32(4); e.mark(); return e.s.Write(x, 3, make([]byte, 4)) }},
		{"write nothing at the end", nil, func(e *env) error { x := e.f32(4); e.mark(); return e.s.Write(x, 4, nil) }},
		{"write past the end", accel.ErrShape, func(e *env) error { x := e.f32(4); e.mark(); return e.s.Write(x, 3, make([]byte, 8)) }},
		{"write from -1", accel.ErrShape, func(e *env) error { x := e.f32(4); e.mark(); return e.s.Write(x, -1, make([]byte, 4)) }},
		{"write from beyond the end", accel.ErrShape, func(e *env) error { x := e.f32(4); e.mark(); return e.s.Write(x, 5, nil) }},
		{"write from MaxInt", accel.ErrShape, func(e *env) error { x := e.f32(4); e.mark(); return e.s.Write(x, math.MaxInt, make([]byte, 4)) }},
		{"write part of an element", accel.ErrInvalid, func(e *env) error { x := e.f32(4); e.mark(); return e.s.Write(x, 0, make([]byte, 6)) }},
		{"read whole", nil, func(e *env) error { x := e.f32(4); e.mark(); return e.s.Read(x, 0, make([]byte, 16)) }},
		{"read past the end", accel.ErrShape, func(e *env) error { x := e.f32(4); e.mark(); return e.s.Read(x, 2, make([]byte, 12)) }},
		{"read from -1", accel.ErrShape, func(e *env) error { x := e.i32(1, 2); e.mark(); return e.s.Read(x, -1, make([]byte, 4)) }},
		{"read part of an element", accel.ErrInvalid, func(e *env) error { x := e.f32(4); e.mark(); return e.s.Read(x, 0, make([]byte, 5)) }},
		{"write freed", accel.ErrFreed, func(e *env) error { x := e.freed(4); e.mark(); return e.s.Write(x, 0, make([]byte, 4)) }},
		{"read freed", accel.ErrFreed, func(e *env) error { x := e.freed(4); e.mark(); return e.s.Read(x, 0, make([]byte, 4)) }},
		{"free twice", accel.ErrFreed, func(e *env) error { x := e.freed(4); e.mark(); return e.s.Free(x) }},
		{"reshape freed", accel.ErrFreed, func(e *env) error { x := e.freed(4); e.mark(); return e.s.Reshape(x, []int{2, 2}) }},
		{"write foreign", accel.ErrForeign, func(e *env) error { x := e.foreign(4); e.mark(); return e.s.Write(x, 0, make([]byte, 4)) }},
		{"read foreign", accel.ErrForeign, func(e *env) error { x := e.foreign(4); e.mark(); return e.s.Read(x, 0, make([]byte, 4)) }},
		{"free foreign", accel.ErrForeign, func(e *env) error { x := e.foreign(4); e.mark(); return e.s.Free(x) }},
		{"reshape foreign", accel.ErrForeign, func(e *env) error { x := e.foreign(4); e.mark(); return e.s.Reshape(x, []int{4}) }},
		{"reshape", nil, func(e *env) error { x := e.f32(4); e.mark(); return e.s.Reshape(x, []int{2, 1, 2}) }},
		{"reshape to another count", accel.ErrShape, func(e *env) error { x := e.f32(4); e.mark(); return e.s.Reshape(x, []int{5}) }},
		{"reshape to rank 9", accel.ErrInvalid, func(e *env) error { x := e.f32(4); e.mark(); return e.s.Reshape(x, []int{1, 1, 1, 1, 1, 1, 1, 2, 2}) }},
		{"reshape to a zero dimension", accel.ErrInvalid, func(e *env) error { x := e.f32(4); e.mark(); return e.s.Reshape(x, []int{0, 4}) }},
		{"reshape to an overflowing shape", accel.ErrOverflow, func(e *env) error {
			x := e.f32(4)
			e.mark()
			return e.s.Reshape(x, []int{1 << 16, 1 << 16, 1 << 16, 1 << 16})
		}},
	}
	runErrCases(t, cases)
}

func TestLimits(t *testing.T) {
	ctx := context.Background()
	t.Run("tensors", func(t *testing.T) {
		e := newEnv(t, accel.Limits{MaxTensors: 2}, nil)
		a, b := e.f32(2, 2), e.f32(2, 2)
		if _, err := e.s.NewTensor(accel.F32, []int{1}); !errors.Is(err, accel.ErrTooMany) {
			t.Errorf("third tensor: %v, want ErrTooMany", err)
		}
		if _, err := e.s.MatMul(ctx, a, b, accel.MatMulParams{}); !errors.Is(err, accel.ErrTooMany) {
			t.Errorf("matmul output as third tensor: %v, want ErrTooMany", err)
		}
		if n := e.s.LiveTensors(); n != 2 || e.b.allocs != 2 {
			t.Errorf("%d live tensors and %d allocations, want 2 and 2", n, e.b.allocs)
		}
		if err := e.s.Free(a); err != nil {
			t.Fatal(err)
		}
		if _, err := e.s.NewTensor(accel.F32, []int{1}); err != nil {
			t.Errorf("tensor after a free: %v", err)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		e := newEnv(t, accel.Limits{MaxBytes: 48}, nil)
		a, b := e.f32(2, 2), e.f32(2, 2)
		if _, err := e.s.Add(ctx, a, b); err != nil { // 48 bytes in all
			t.Fatalf("add within the limit: %v", err)
		}
		if _, err := e.s.Add(ctx, a, b); !errors.Is(err, accel.ErrOutOfMemory) {
			t.Errorf("add beyond the limit: %v, want ErrOutOfMemory", err)
		}
		if _, err := e.s.NewTensor(accel.I32, []int{1}); !errors.Is(err, accel.ErrOutOfMemory) {
			t.Errorf("tensor beyond the limit: %v, want ErrOutOfMemory", err)
		}
		if got := e.s.LiveBytes(); got != 48 || e.s.LiveTensors() != 3 || e.b.allocs != 3 {
			t.Errorf("%d bytes in %d tensors, %d allocations; want 48 in 3, 3", got, e.s.LiveTensors(), e.b.allocs)
		}
		if err := e.s.Free(b); err != nil {
			t.Fatal(err)
		}
		if _, err := e.s.NewTensor(accel.F32, []int{4}); err != nil {
			t.Errorf("tensor after a free: %v", err)
		}
	})
	// A kernel's declared scratch counts against the limit for the call:
	// matmul may pack copies of both operands.
	t.Run("scratch", func(t *testing.T) {
		e := newEnv(t, accel.Limits{MaxBytes: 79}, nil)
		a, b := e.f32(2, 2), e.f32(2, 2) // 32 bytes; the output 16, the scratch 32
		e.mark()
		_, err := e.s.MatMul(ctx, a, b, accel.MatMulParams{})
		if !errors.Is(err, accel.ErrOutOfMemory) || !strings.Contains(err.Error(), "32 of scratch") {
			t.Fatalf("matmul whose scratch does not fit: %v, want ErrOutOfMemory naming the scratch", err)
		}
		if d := e.changed(); d != "" {
			t.Errorf("the refused call changed the session: %s", d)
		}
		e2 := newEnv(t, accel.Limits{MaxBytes: 80}, nil)
		if _, err := e2.s.MatMul(ctx, e2.f32(2, 2), e2.f32(2, 2), accel.MatMulParams{}); err != nil {
			t.Errorf("matmul whose scratch just fits: %v", err)
		}
	})
	t.Run("close", func(t *testing.T) {
		e := newEnv(t, accel.Limits{}, nil)
		a := e.f32(3, 5)
		e.f32(7)
		st := e.tsne()
		if _, err := e.s.MatMul(ctx, a, e.f32(5, 2), accel.MatMulParams{}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.s.TSNEStep(ctx, st, tsneParams); err != nil {
			t.Fatal(err)
		}
		e.s.Close()
		if e.s.LiveBytes() != 0 || e.s.LiveTensors() != 0 {
			t.Errorf("after Close: %d bytes in %d tensors, want none", e.s.LiveBytes(), e.s.LiveTensors())
		}
		if err := e.s.Write(a, 0, make([]byte, 4)); !errors.Is(err, accel.ErrFreed) {
			t.Errorf("write after Close: %v, want ErrFreed", err)
		}
		if _, err := e.s.NewTensor(accel.F32, []int{1}); !errors.Is(err, accel.ErrInvalid) {
			t.Errorf("NewTensor after Close: %v, want ErrInvalid", err)
		}
	})
}

func TestCharger(t *testing.T) {
	ctx := context.Background()
	var units []uint64
	var refuse bool
	errBudget := errors.New("budget exhausted")
	e := newEnv(t, accel.Limits{}, func(u uint64) error {
		if refuse {
			return errBudget
		}
		units = append(units, u)
		return nil
	})
	// last returns the units of the last charge and forgets the others.
	last := func() uint64 {
		t.Helper()
		if len(units) == 0 {
			t.Fatal("nothing charged")
		}
		u := units[len(units)-1]
		units = units[:0]
		return u
	}

	x := e.f32(2, 3, 4, 5)
	if got, want := last(), uint64(accel.CallUnits+4*120); got != want {
		t.Errorf("NewTensor f32[2x3x4x5] charged %d, want %d", got, want)
	}
	if err := e.s.Write(x, 8, make([]byte, 40)); err != nil {
		t.Fatal(err)
	}
	if got, want := last(), uint64(accel.CallUnits+40); got != want {
		t.Errorf("Write of 40 bytes charged %d, want %d", got, want)
	}
	if err := e.s.Read(x, 0, make([]byte, 12)); err != nil {
		t.Fatal(err)
	}
	if got, want := last(), uint64(accel.CallUnits+12); got != want {
		t.Errorf("Read of 12 bytes charged %d, want %d", got, want)
	}

	a, b := e.f32(7, 3), e.f32(5, 3)
	units = units[:0]
	if _, err := e.s.MatMul(ctx, a, b, accel.MatMulParams{TransB: true}); err != nil {
		t.Fatal(err)
	}
	if got, want := last(), accel.MatMulUnits(7, 3, 5); got != want {
		t.Errorf("matmul 7x3x5 charged %d, want MatMulUnits %d", got, want)
	}
	w, bias := e.f32(6, 3, 2, 2), e.f32(6)
	p := accel.Conv2DParams{StrideH: 1, StrideW: 2, DilationH: 1, DilationW: 1, Groups: 1, PadTop: 1}
	units = units[:0]
	if _, err := e.s.Conv2D(ctx, x, w, bias, p); err != nil {
		t.Fatal(err)
	}
	if got, want := last(), accel.Conv2DUnits([]int{2, 3, 4, 5}, []int{6, 3, 2, 2}, []int{2, 6, 4, 2}, true); got != want {
		t.Errorf("conv2d charged %d, want Conv2DUnits %d", got, want)
	}
	// The formulas of docs/abi.md for x, f32[2x3x4x5] (120 elements).
	if _, err := e.s.Softmax(ctx, x); err != nil {
		t.Fatal(err)
	}
	if got, want := last(), uint64(64+16*120+8*120); got != want {
		t.Errorf("softmax charged %d, want %d", got, want)
	}
	if _, err := e.s.Relu(ctx, x); err != nil {
		t.Fatal(err)
	}
	if got, want := last(), uint64(64+120+8*120); got != want {
		t.Errorf("relu charged %d, want %d", got, want)
	}
	if _, err := e.s.AddBias(ctx, x, e.f32(3), 1); err != nil {
		t.Fatal(err)
	}
	if got, want := last(), uint64(64+120+8*120+4*3); got != want {
		t.Errorf("add_bias charged %d, want %d", got, want)
	}
	pool := accel.Pool2DParams{KernelH: 3, KernelW: 2, StrideH: 1, StrideW: 2, PadTop: 1} // y is [2,3,3,2]
	if _, err := e.s.MaxPool2D(ctx, x, pool); err != nil {
		t.Fatal(err)
	}
	if got, want := last(), uint64(64+36*3*2+4*120+4*36); got != want {
		t.Errorf("maxpool2d charged %d, want %d", got, want)
	}
	st := e.tsne()
	units = units[:0]
	if _, err := e.s.TSNEStep(ctx, st, tsneParams); err != nil {
		t.Fatal(err)
	}
	if got, want := last(), accel.TSNEUnits(3, 4, accel.TSNEParams{ComputeKL: true}); got != want {
		t.Errorf("tsne_step charged %d, want TSNEUnits %d", got, want)
	}

	// A refused charge stops every call before anything is allocated or
	// computed.
	y := e.read(st.Y)
	xb := e.f32(2)
	refuse = true
	e.mark()
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"NewTensor", func() error { _, err := e.s.NewTensor(accel.F32, []int{3}); return err }},
		{"Write", func() error { return e.s.Write(a, 0, make([]byte, 4)) }},
		{"Read", func() error { return e.s.Read(a, 0, make([]byte, 4)) }},
		{"Free", func() error { return e.s.Free(a) }},
		{"Reshape", func() error { return e.s.Reshape(a, []int{21}) }},
		{"MatMul", func() error { _, err := e.s.MatMul(ctx, a, b, accel.MatMulParams{TransB: true}); return err }},
		{"Conv2D", func() error { _, err := e.s.Conv2D(ctx, x, w, bias, p); return err }},
		{"AddBias", func() error { _, err := e.s.AddBias(ctx, x, xb, 0); return err }},
		{"Relu", func() error { _, err := e.s.Relu(ctx, x); return err }},
		{"MaxPool2D", func() error {
			_, err := e.s.MaxPool2D(ctx, x, accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 1, StrideW: 1})
			return err
		}},
		{"Softmax", func() error { _, err := e.s.Softmax(ctx, x); return err }},
		{"TSNEStep", func() error { _, err := e.s.TSNEStep(ctx, st, tsneParams); return err }},
	} {
		if err := c.call(); !errors.Is(err, errBudget) {
			t.Errorf("%s with the budget exhausted: %v, want the charger's error", c.name, err)
		}
		if d := e.changed(); d != "" {
			t.Errorf("%s refused by the charger changed the session: %s", c.name, d)
		}
	}
	refuse = false
	if !slices.Equal(e.read(st.Y), y) {
		t.Errorf("tsne_step refused by the charger moved y")
	}
	if !slices.Equal(a.Shape(), []int{7, 3}) {
		t.Errorf("reshape refused by the charger changed the shape to %v", a.Shape())
	}
}

// TestCSRRevalidation checks that a P found valid is checked again after a
// write to its cols or row_ptr.
func TestCSRRevalidation(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, accel.Limits{}, nil)
	st := e.tsne()
	step := func() error { _, err := e.s.TSNEStep(ctx, st, tsneParams); return err }
	if err := step(); err != nil {
		t.Fatalf("valid P: %v", err)
	}
	e.writeI32(st.Cols, 1, 0, 3, 1) // column 3 of 3 points
	if err := step(); !errors.Is(err, accel.ErrInvalid) {
		t.Errorf("after writing an out-of-range column: %v, want ErrInvalid", err)
	}
	e.writeI32(st.Cols, 1, 0, 2, 1)
	if err := step(); err != nil {
		t.Fatalf("after restoring cols: %v", err)
	}
	// A write of part of cols.
	if err := e.s.Write(st.Cols, 3, []byte{0xff, 0xff, 0xff, 0xff}); err != nil { // -1
		t.Fatal(err)
	}
	if err := step(); !errors.Is(err, accel.ErrInvalid) {
		t.Errorf("after writing column -1: %v, want ErrInvalid", err)
	}
	e.writeI32(st.Cols, 1, 0, 2, 1)
	if err := step(); err != nil {
		t.Fatalf("after restoring cols: %v", err)
	}
	e.writeI32(st.RowPtr, 0, 2, 1, 4)
	if err := step(); !errors.Is(err, accel.ErrInvalid) {
		t.Errorf("after writing a decreasing row_ptr: %v, want ErrInvalid", err)
	}
}

// TestLabelsRecheckedForNarrowerLogits checks that labels found valid
// against logits of 3 columns are checked again against logits of 2: a
// check of index data holds for the shapes it was made for.
func TestLabelsRecheckedForNarrowerLogits(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, accel.Limits{}, nil)
	labels := e.i32(2, 0)
	if _, _, err := e.s.SoftmaxCrossEntropy(ctx, e.f32(2, 3), labels); err != nil {
		t.Fatalf("labels in [0, 3): %v", err)
	}
	if _, _, err := e.s.SoftmaxCrossEntropy(ctx, e.f32(2, 2), labels); !errors.Is(err, accel.ErrInvalid) {
		t.Errorf("label 2 of logits of 2 columns: %v, want ErrInvalid", err)
	}
}

// TestGatherIndexCheck checks that gather refuses an index outside
// [-d, d) before its kernel runs, naming the index and its element, and
// that a check found valid is made again for an x of another size or
// another axis, and after the indices are written.
func TestGatherIndexCheck(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, accel.Limits{}, nil)
	x := e.fill([]float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 2, 5)
	indices := e.i32(4, -5, 0, -1)
	y, err := e.s.Gather(ctx, x, indices, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := e.read(y), []float32{4, 0, 0, 4, 9, 5, 5, 9}; !slices.Equal(got, want) || !slices.Equal(y.Shape(), []int{2, 4}) {
		t.Errorf("gather along axis 1: %v %v, want %v [2 4]", got, y.Shape(), want)
	}
	// Valid for 5 columns, not for 2 rows, nor for a narrower x.
	e.mark()
	if _, err := e.s.Gather(ctx, x, indices, 0); !errors.Is(err, accel.ErrInvalid) || !strings.Contains(err.Error(), "indices hold 4 at element 0, outside [-2, 2)") {
		t.Errorf("gather along axis 0 of 2 rows: %v, want ErrInvalid naming index 4 at element 0", err)
	}
	narrow := e.f32(2, 4)
	e.mark()
	if _, err := e.s.Gather(ctx, narrow, indices, 1); !errors.Is(err, accel.ErrInvalid) {
		t.Errorf("gather from 4 columns with index 4: %v, want ErrInvalid", err)
	}
	if d := e.changed(); d != "" {
		t.Errorf("a refused gather changed the session: %s", d)
	}
	e.writeI32(indices, 1, 2, 3, -6)
	if _, err := e.s.Gather(ctx, x, indices, 1); !errors.Is(err, accel.ErrInvalid) || !strings.Contains(err.Error(), "-6 at element 3") {
		t.Errorf("after writing index -6: %v, want ErrInvalid naming -6 at element 3", err)
	}
}

// TestSlice checks a slice that runs backwards along one axis and repeats
// one element along another, and the refusal of a window outside x.
func TestSlice(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, accel.Limits{}, nil)
	x := e.fill([]float32{0, 1, 2, 3, 4, 5}, 2, 3)
	y, err := e.s.Slice(ctx, x, accel.SliceAxes([]int{1, 2}, []int{-1, 0}, []int{2, 3}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := e.read(y), []float32{5, 5, 5, 2, 2, 2}; !slices.Equal(got, want) || !slices.Equal(y.Shape(), []int{2, 3}) {
		t.Errorf("slice: %v %v, want %v [2 3]", got, y.Shape(), want)
	}
	for _, p := range []accel.SliceParams{
		accel.SliceAxes([]int{0, 0}, []int{1, 2}, []int{2, 3}),  // column 4 of 3
		accel.SliceAxes([]int{0, 3}, []int{1, -1}, []int{2, 1}), // start 3 of 3
		accel.SliceAxes([]int{1, 0}, []int{-1, 1}, []int{3, 3}), // row -1
		accel.SliceAxes([]int{0}, []int{1}, []int{2}),           // rank 1 of x's 2
	} {
		if _, err := e.s.Slice(ctx, x, p); !errors.Is(err, accel.ErrShape) {
			t.Errorf("slice %+v of [2 3]: %v, want ErrShape", p, err)
		}
	}
	bad := accel.SliceAxes([]int{0, 0}, []int{1, 1}, []int{2, 3})
	bad.Step[2] = 1
	if _, err := e.s.Slice(ctx, x, bad); !errors.Is(err, accel.ErrInvalid) {
		t.Errorf("slice with a step past its rank: %v, want ErrInvalid", err)
	}
}

// TestMaxPoolUnitsDoNotWrap checks that a pooling window too large to pay for
// is refused. Each of the 4096 outputs here scans a 2^29 x 2^29 window, 2^70
// units in all.
func TestMaxPoolUnitsDoNotWrap(t *testing.T) {
	const big = accel.MaxElements // 2^29 - 1
	var charged uint64
	e := newEnv(t, accel.Limits{}, func(u uint64) error {
		charged = u
		if u > 1<<40 {
			return errors.New("over budget")
		}
		return nil
	})
	x := e.f32(1024, 1, 1, 1)
	p := accel.Pool2DParams{KernelH: big + 1, KernelW: big + 1, StrideH: big, StrideW: big, PadTop: big, PadLeft: big, PadBottom: big, PadRight: big}
	if _, err := e.s.MaxPool2D(context.Background(), x, p); err == nil {
		t.Errorf("maxpool2d with %+v was charged %d units and ran", p, charged)
	}
}
