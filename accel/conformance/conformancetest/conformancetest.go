// Package conformance holds the test drivers that every accel backend runs,
// in the style of gonum's blas/testblas: one exported driver per operation,
// each taking the *testing.T and the backend under test.
//
// A new backend runs them all with a one-line test:
//
//	func TestMyBackend(t *testing.T) { conformance.TestAll(t, mybackend.New()) }
//
// or picks single operations with TestMatMul, TestConv2D and so on. A backend
// whose Status reports it unavailable on this machine is skipped.
//
// The drivers reach the backend the way a guest does, through a strict-mode
// accel.Session (NewTensor, Write, the operation, Read), over a fixed table of
// named cases per operation: shapes of one element, odd and lopsided shapes,
// long reductions, every transpose, padding, strides, dilations and groups,
// and the special values NaN (with odd payloads), ±Inf, -0, subnormals and
// values near overflow. Inputs come from math/rand/v2 generators seeded by the
// case name, so every run sees the same data. For every case a driver checks:
//
//  1. accuracy: each output against the same operation computed in float64
//     from the same float32 inputs, within an error bound derived with the
//     reference value (float64.go explains the bound). Where the float64
//     result is NaN or ±Inf, the output must be NaN or the same infinity.
//  2. the numerics contract, when Status().Deterministic is true: each output
//     bit for bit against spec.go, a literal, single-threaded transcription of
//     docs/determinism.md. Mismatches are reported with their index, both bit
//     patterns and the distance in ulps.
//  3. that every input tensor reads back with the bits that were written
//     (for tsne_step only P: Y, the update and the gains are state, checked as
//     outputs).
//  4. that a second run on the same inputs gives the same bits.
//  5. batch invariance: a matmul over a subset of the rows of A, and a conv2d
//     over one image of the batch, equal those rows or that image of the full
//     result (bit for bit for deterministic backends; reported otherwise).
//
// tsne_step cases also check the KL divergence against float64 and that the
// new embedding is centred.
package conformance

import (
	"context"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

// TestAll runs every driver as a subtest.
func TestAll(t *testing.T, b accel.Backend) {
	for _, d := range []struct {
		name string
		run  func(*testing.T, accel.Backend)
	}{
		{"matmul", TestMatMul},
		{"conv2d", TestConv2D},
		{"add_bias", TestAddBias},
		{"relu", TestRelu},
		{"maxpool2d", TestMaxPool2D},
		{"softmax", TestSoftmax},
		{"tsne_step", TestTSNEStep},
	} {
		t.Run(d.name, func(t *testing.T) { d.run(t, b) })
	}
}

// harness is one test's session on the backend under test.
type harness struct {
	t   *testing.T
	s   *accel.Session
	ctx context.Context
	det bool // the backend claims to implement the contract bit for bit
}

// open starts a strict-mode session on b that is closed when t ends, or skips
// t if b cannot serve on this machine.
func open(t *testing.T, b accel.Backend) *harness {
	t.Helper()
	st := b.Status()
	if !st.Available {
		t.Skipf("backend %s is unavailable: %s", b.Name(), st.Reason)
	}
	s := accel.NewSession(b, accel.Strict, accel.Limits{}, nil)
	t.Cleanup(s.Close)
	return &harness{t: t, s: s, ctx: t.Context(), det: st.Deterministic}
}

// input is the content of one input tensor. Exactly one of f32 and i32 is
// set.
type input struct {
	name  string
	shape []int
	f32   []float32
	i32   []int32
}

func (in input) dtype() accel.DType {
	if in.i32 != nil {
		return accel.I32
	}
	return accel.F32
}

// bytes encodes the data little-endian, as Session.Write takes it.
func (in input) bytes() []byte {
	if in.i32 != nil {
		return accel.EncodeInt32(in.i32)
	}
	return accel.EncodeFloat32(in.f32)
}

// upload allocates a tensor for in and writes its data.
func (h *harness) upload(in input) *accel.Tensor {
	h.t.Helper()
	x, err := h.s.NewTensor(in.dtype(), in.shape)
	if err != nil {
		h.t.Fatalf("allocate %s %s: %v", in.name, accel.ShapeString(in.shape), err)
	}
	h.write(in, x)
	return x
}

// write overwrites x with in's data.
func (h *harness) write(in input, x *accel.Tensor) {
	h.t.Helper()
	if err := h.s.Write(x, 0, in.bytes()); err != nil {
		h.t.Fatalf("write %s: %v", in.name, err)
	}
}

// readBytes reads all of x.
func (h *harness) readBytes(x *accel.Tensor) []byte {
	h.t.Helper()
	b := make([]byte, x.Bytes())
	if err := h.s.Read(x, 0, b); err != nil {
		h.t.Fatalf("read %s: %v", x, err)
	}
	return b
}

// download reads an f32 tensor.
func (h *harness) download(x *accel.Tensor) []float32 {
	h.t.Helper()
	return accel.DecodeFloat32(h.readBytes(x))
}

// unchanged checks that x still holds in's data, bit for bit.
func (h *harness) unchanged(in input, x *accel.Tensor) {
	h.t.Helper()
	show := func(w uint32) string { return fbits(math.Float32frombits(w)) }
	if in.i32 != nil {
		show = func(w uint32) string { return strconv.Itoa(int(int32(w))) }
	}
	if d := wordDiff(in.shape, h.readBytes(x), in.bytes(), show); d != "" {
		h.t.Errorf("input %s was modified:\n%s", in.name, d)
	}
}

// free releases an output the test no longer needs.
func (h *harness) free(x *accel.Tensor) {
	h.t.Helper()
	if err := h.s.Free(x); err != nil {
		h.t.Fatalf("free %s: %v", x, err)
	}
}

// opCall is one call of an operation under test with its references.
type opCall struct {
	inputs []input
	// run calls the operation on the uploaded inputs, in the order of inputs.
	run   func(s *accel.Session, ctx context.Context, in []*accel.Tensor) (*accel.Tensor, error)
	shape []int            // the output shape by the contract's formula
	spec  func() []float32 // the contract's result, from spec.go
	f64   func() []ev      // the float64 reference, from float64.go
}

// checkCall runs c on a fresh session with checks 1 to 4 of the package
// comment, and returns the output.
func checkCall(t *testing.T, b accel.Backend, c opCall) []float32 {
	t.Helper()
	h := open(t, b)
	in := make([]*accel.Tensor, len(c.inputs))
	for i := range c.inputs {
		in[i] = h.upload(c.inputs[i])
	}
	once := func() []float32 {
		t.Helper()
		out, err := c.run(h.s, h.ctx, in)
		if err != nil {
			t.Fatalf("call failed: %v", err)
		}
		if !slices.Equal(out.Shape(), c.shape) {
			t.Fatalf("output shape %s, want %s", accel.ShapeString(out.Shape()), accel.ShapeString(c.shape))
		}
		got := h.download(out)
		h.free(out)
		return got
	}

	got := once()
	if d := nearDiff(c.shape, got, c.f64()); d != "" {
		t.Errorf("output differs from float64 beyond the error bound:\n%s", d)
	}
	if h.det {
		if d := bitDiff(c.shape, got, c.spec()); d != "" {
			t.Errorf("output differs from the contract (docs/determinism.md):\n%s", d)
		}
	}
	for i := range c.inputs {
		h.unchanged(c.inputs[i], in[i])
	}
	if d := bitDiff(c.shape, once(), got); d != "" {
		t.Errorf("second run on the same inputs differs from the first (got: second, want: first):\n%s", d)
	}
	return got
}

// invariant compares part, an output computed from part of the batch, with
// the same elements of the full result: bit for bit for deterministic
// backends; for others differences are logged.
func invariant(t *testing.T, b accel.Backend, what string, shape []int, part, full []float32) {
	t.Helper()
	d := bitDiff(shape, part, full)
	switch {
	case d == "":
	case b.Status().Deterministic:
		t.Errorf("%s differs from the full batch (got: part, want: full):\n%s", what, d)
	default:
		t.Logf("%s differs from the full batch, which a non-deterministic backend may do:\n%s", what, d)
	}
}

// rng returns the generator of a case, seeded by its name.
func rng(name string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(name))
	seed := h.Sum64()
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}
