package conformance

import (
	"context"
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

// TestSpec runs the drivers on a backend built from spec.go itself. The bit
// checks are then trivially met; what this tests is that the transcription of
// the contract stays within the float64 error bounds on every case, and that
// the drivers work without any other backend.
func TestSpec(t *testing.T) { TestAll(t, specBackend{}) }

// specBackend serves every operation from spec.go, in host memory.
type specBackend struct{}

type specBuf struct{ b []byte }

func (*specBuf) Free() {}

func (specBackend) Name() string { return "spec" }
func (specBackend) Status() accel.Status {
	return accel.Status{Name: "spec", Available: true, Device: "the contract", Deterministic: true}
}
func (specBackend) Close() error { return nil }

func (specBackend) Alloc(dt accel.DType, n int) (accel.Buffer, error) {
	return &specBuf{make([]byte, n*dt.Size())}, nil
}

func (specBackend) Write(dst accel.Buffer, first int, src []byte) error {
	copy(dst.(*specBuf).b[4*first:], src)
	return nil
}

func (specBackend) Read(src accel.Buffer, first int, dst []byte) error {
	copy(dst, src.(*specBuf).b[4*first:])
	return nil
}

func f32s(x *accel.Tensor) []float32 {
	if x == nil {
		return nil
	}
	b := x.Buffer().(*specBuf).b
	v := make([]float32, x.Len())
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func i32s(x *accel.Tensor) []int32 {
	b := x.Buffer().(*specBuf).b
	v := make([]int32, x.Len())
	for i := range v {
		v[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func put(x *accel.Tensor, v []float32) {
	b := x.Buffer().(*specBuf).b
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
}

func (specBackend) MatMul(_ context.Context, out, a, b *accel.Tensor, p accel.MatMulParams) error {
	m, k, n, err := accel.MatMulDims(a.Shape(), b.Shape(), p)
	if err != nil {
		return err
	}
	put(out, specMatMul(f32s(a), f32s(b), m, k, n, p))
	return nil
}

func (specBackend) Conv2D(_ context.Context, out, x, w, bias *accel.Tensor, p accel.Conv2DParams) error {
	put(out, specConv2D(f32s(x), x.Shape(), f32s(w), w.Shape(), f32s(bias), p))
	return nil
}

func (specBackend) AddBias(_ context.Context, out, x, bias *accel.Tensor, axis int) error {
	put(out, specAddBias(f32s(x), x.Shape(), f32s(bias), axis))
	return nil
}

func (specBackend) Relu(_ context.Context, out, x *accel.Tensor) error {
	put(out, specRelu(f32s(x)))
	return nil
}

func (specBackend) MaxPool2D(_ context.Context, out, x *accel.Tensor, p accel.Pool2DParams) error {
	put(out, specMaxPool2D(f32s(x), x.Shape(), p))
	return nil
}

func (specBackend) Softmax(_ context.Context, out, x *accel.Tensor) error {
	put(out, specSoftmax(f32s(x), x.Shape()[len(x.Shape())-1]))
	return nil
}

func (specBackend) TSNEStep(_ context.Context, s accel.TSNEState, p accel.TSNEParams) (float32, error) {
	y, u, g, kl := specTSNEStep(i32s(s.RowPtr), i32s(s.Cols), f32s(s.Vals), f32s(s.Y), f32s(s.Update), f32s(s.Gains), p)
	put(s.Y, y)
	put(s.Update, u)
	put(s.Gains, g)
	return kl, nil
}

// TestBitDiff checks the mismatch report of the bit comparison.
func TestBitDiff(t *testing.T) {
	got := []float32{1, negZero, qNaN, math.Nextafter32(1, 2), 0}
	want := []float32{1, 0, negNaN, 1, minSub}
	d := bitDiff([]int{5}, got, want)
	for _, s := range []string{
		"at [1]: got 0x80000000 (-0), want 0x00000000 (0), sign of zero differs",
		"at [2]: got 0x7fc00000 (NaN), want 0xffc00001 (NaN), both NaN",
		"at [3]: got 0x3f800001 (1.0000001), want 0x3f800000 (1), 1 ulp apart",
		"at [4]: got 0x00000000 (0), want 0x00000001 (1e-45), 1 ulp apart",
		"(4 of 5 elements differ)",
	} {
		if !strings.Contains(d, s) {
			t.Errorf("report lacks %q:\n%s", s, d)
		}
	}
	if d := bitDiff([]int{2, 3}, []float32{1, 2, 3, 4, 5, 6}, []float32{1, 2, 3, 4, 5, -6}); !strings.Contains(d, "at [1,2]") {
		t.Errorf("index not [1,2]:\n%s", d)
	}
	if d := bitDiff([]int{1}, []float32{negZero}, []float32{negZero}); d != "" {
		t.Errorf("equal bits reported:\n%s", d)
	}
}

// TestBounds checks that the float64 bounds reject what they should.
func TestBounds(t *testing.T) {
	for _, c := range []struct {
		name string
		w    ev
		got  float32
		ok   bool
	}{
		{"exact equal", ev{v: 1}, 1, true},
		{"exact off by one ulp", ev{v: 1}, math.Nextafter32(1, 2), false},
		{"within bound", ev{v: 1, e: 1e-6}, 1.000001, true},
		{"beyond bound", ev{v: 1, e: 1e-7}, 1.000001, false},
		{"NaN wants NaN", ev{v: math.NaN()}, qNaN, true},
		{"NaN gets number", ev{v: math.NaN()}, 0, false},
		{"Inf wants same Inf", ev{v: math.Inf(1)}, posInf, true},
		{"Inf gets other Inf", ev{v: math.Inf(1)}, negInf, false},
		{"finite gets NaN", ev{v: 1, e: 1}, qNaN, false},
		{"may overflow gets Inf", ev{v: 1, e: 1, over: true}, negInf, true},
		{"may overflow gets far value", ev{v: 1, e: 1, over: true}, 5, false},
	} {
		if ok := c.w.admits(c.got); ok != c.ok {
			t.Errorf("%s: %v admits %g = %v, want %v", c.name, c.w, c.got, ok, c.ok)
		}
	}

	// The dot product that cancels: float64 gives 1, float32 in order 0.
	w := f64MatMul([]float32{1e8, 1, -1e8}, []float32{1, 1, 1}, 1, 3, 1, noTrans)[0]
	got := specMatMul([]float32{1e8, 1, -1e8}, []float32{1, 1, 1}, 1, 3, 1, noTrans)[0]
	if w.v != 1 || got != 0 || !w.admits(got) || w.admits(1e3) {
		t.Errorf("cancelling dot product: float64 %v, float32 %g", w, got)
	}
	// Partial sums beyond MaxFloat32 may overflow.
	if w := f64MatMul([]float32{3e38, 3e38}, []float32{1, -1}, 1, 2, 1, noTrans)[0]; !w.over {
		t.Errorf("3e38 - 3e38 not marked as overflowing: %v", w)
	}
}
