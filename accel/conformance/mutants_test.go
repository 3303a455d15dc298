package conformance

import (
	"context"
	"math"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// A mutant is the spec backend with one deliberate deviation. The drivers
// must fail each with the check named in want.
type mutant struct {
	driver func(*testing.T, accel.Backend)
	b      accel.Backend
	want   string // a phrase the failure report must hold
}

var mutants = map[string]mutant{
	"matmul-reversed-k":        {TestMatMul, reversedMatMul{}, "differs from the contract"},
	"matmul-fma":               {TestMatMul, fmaMatMul{}, "differs from the contract"},
	"matmul-raw-nan":           {TestMatMul, rawNaNMatMul{}, "both NaN, payload or sign differs"},
	"matmul-clobbers-a":        {TestMatMul, clobberMatMul{}, "input a was modified"},
	"matmul-run-to-run":        {TestMatMul, &flakyMatMul{}, "second run on the same inputs differs"},
	"conv2d-multiplies-pad":    {TestConv2D, padConv{}, "differs from float64"},
	"relu-keeps-neg-zero":      {TestRelu, negZeroRelu{}, "sign of zero differs"},
	"maxpool2d-last-tie":       {TestMaxPool2D, lastTiePool{}, "sign of zero differs"},
	"softmax-no-max":           {TestSoftmax, noMaxSoftmax{}, "differs from float64"},
	"add_bias-last-axis":       {TestAddBias, lastAxisBias{}, "differs from float64"},
	"tsne_step-no-centring":    {TestTSNEStep, uncentredTSNE{}, "column 0 of y has mean"},
	"tsne_step-exaggerated-kl": {TestTSNEStep, exaggeratedKL{}, "KL"},
}

// TestMutants runs each mutant through its driver in a child process and
// checks that the driver fails it for the expected reason.
func TestMutants(t *testing.T) {
	if name := os.Getenv("CONFORMANCE_MUTANT"); name != "" {
		m := mutants[name]
		m.driver(t, m.b)
		return
	}
	if testing.Short() {
		t.Skip("runs the test binary once per mutant")
	}
	for name, m := range mutants {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestMutants$", "-test.count=1")
			cmd.Env = append(os.Environ(), "CONFORMANCE_MUTANT="+name)
			out, err := cmd.CombinedOutput()
			switch {
			case err == nil:
				t.Errorf("the drivers pass mutant %s:\n%s", name, out)
			case !strings.Contains(string(out), m.want):
				t.Errorf("the drivers fail mutant %s, but not with %q:\n%s", name, m.want, out)
			}
		})
	}
}

// plain returns the operands of a matmul as row-major A [M,K] and B [K,N].
func plain(a, b *accel.Tensor, p accel.MatMulParams) (A, B []float32, m, k, n int) {
	m, k, n, _ = accel.MatMulDims(a.Shape(), b.Shape(), p)
	A, B = f32s(a), f32s(b)
	if p.TransA {
		A = transposed(A, k, m)
	}
	if p.TransB {
		B = transposed(B, n, k)
	}
	return A, B, m, k, n
}

func transposed(x []float32, rows, cols int) []float32 {
	t := make([]float32, len(x))
	for i := range rows {
		for j := range cols {
			t[j*rows+i] = x[i*cols+j]
		}
	}
	return t
}

type reversedMatMul struct{ specBackend }

func (reversedMatMul) MatMul(_ context.Context, out, a, b *accel.Tensor, p accel.MatMulParams) error {
	A, B, m, k, n := plain(a, b, p)
	C := make([]float32, m*n)
	for i := range m {
		for j := range n {
			s := float32(0)
			for kk := k - 1; kk >= 0; kk-- {
				s = s + float32(A[i*k+kk]*B[kk*n+j])
			}
			C[i*n+j] = strictmath.Canon(s)
		}
	}
	put(out, C)
	return nil
}

type fmaMatMul struct{ specBackend }

func (fmaMatMul) MatMul(_ context.Context, out, a, b *accel.Tensor, p accel.MatMulParams) error {
	A, B, m, k, n := plain(a, b, p)
	C := make([]float32, m*n)
	for i := range m {
		for j := range n {
			s := float32(0)
			for kk := range k {
				s = float32(math.FMA(float64(A[i*k+kk]), float64(B[kk*n+j]), float64(s)))
			}
			C[i*n+j] = strictmath.Canon(s)
		}
	}
	put(out, C)
	return nil
}

type rawNaNMatMul struct{ specBackend }

func (rawNaNMatMul) MatMul(_ context.Context, out, a, b *accel.Tensor, p accel.MatMulParams) error {
	A, B, m, k, n := plain(a, b, p)
	C := specMatMul(A, B, m, k, n, accel.MatMulParams{})
	for i, c := range C {
		if c != c {
			C[i] = negNaN // what x86 computes for Inf - Inf
		}
	}
	put(out, C)
	return nil
}

type clobberMatMul struct{ specBackend }

func (c clobberMatMul) MatMul(ctx context.Context, out, a, b *accel.Tensor, p accel.MatMulParams) error {
	err := c.specBackend.MatMul(ctx, out, a, b, p)
	put(a, make([]float32, a.Len())) // uses a as scratch space
	return err
}

// flakyMatMul rounds every other call's results differently.
type flakyMatMul struct {
	specBackend
	calls atomic.Int64
}

func (f *flakyMatMul) MatMul(ctx context.Context, out, a, b *accel.Tensor, p accel.MatMulParams) error {
	err := f.specBackend.MatMul(ctx, out, a, b, p)
	if f.calls.Add(1)%2 == 0 {
		C := f32s(out)
		for i, c := range C {
			C[i] = math.Nextafter32(c, float32(math.Inf(1)))
		}
		put(out, C)
	}
	return err
}

func (*flakyMatMul) Status() accel.Status {
	return accel.Status{Name: "flaky", Available: true, Deterministic: false}
}

type padConv struct{ specBackend }

// Conv2D pads the input with zeros and multiplies them.
func (padConv) Conv2D(_ context.Context, out, x, w, bias *accel.Tensor, p accel.Conv2DParams) error {
	xs, X := x.Shape(), f32s(x)
	H, W := xs[2]+p.PadTop+p.PadBottom, xs[3]+p.PadLeft+p.PadRight
	P := make([]float32, xs[0]*xs[1]*H*W)
	for nc := range xs[0] * xs[1] {
		for h := range xs[2] {
			for wi := range xs[3] {
				P[(nc*H+h+p.PadTop)*W+wi+p.PadLeft] = X[(nc*xs[2]+h)*xs[3]+wi]
			}
		}
	}
	p.PadTop, p.PadBottom, p.PadLeft, p.PadRight = 0, 0, 0, 0
	put(out, specConv2D(P, []int{xs[0], xs[1], H, W}, f32s(w), w.Shape(), f32s(bias), p))
	return nil
}

type negZeroRelu struct{ specBackend }

func (negZeroRelu) Relu(_ context.Context, out, x *accel.Tensor) error {
	Y := f32s(x)
	for i, v := range Y {
		if v < 0 {
			Y[i] = 0
		}
	}
	strictmath.CanonSlice(Y)
	put(out, Y)
	return nil
}

type lastTiePool struct{ specBackend }

// MaxPool2D lets the last of equal values win: it scans the flipped input
// with a flipped window.
func (lastTiePool) MaxPool2D(_ context.Context, out, x *accel.Tensor, p accel.Pool2DParams) error {
	X, n := f32s(x), len(f32s(x))
	for i := range n / 2 {
		X[i], X[n-1-i] = X[n-1-i], X[i]
	}
	p.PadTop, p.PadBottom, p.PadLeft, p.PadRight = p.PadBottom, p.PadTop, p.PadRight, p.PadLeft
	Y := specMaxPool2D(X, x.Shape(), p)
	for i := range len(Y) / 2 {
		Y[i], Y[len(Y)-1-i] = Y[len(Y)-1-i], Y[i]
	}
	put(out, Y)
	return nil
}

type noMaxSoftmax struct{ specBackend }

func (noMaxSoftmax) Softmax(_ context.Context, out, x *accel.Tensor) error {
	X, L := f32s(x), x.Shape()[len(x.Shape())-1]
	Y := make([]float32, len(X))
	for r := 0; r < len(X); r += L {
		s := float32(0)
		for _, v := range X[r : r+L] {
			s += strictmath.Exp(v)
		}
		for i, v := range X[r : r+L] {
			Y[r+i] = strictmath.Canon(strictmath.Exp(v) / s)
		}
	}
	put(out, Y)
	return nil
}

type lastAxisBias struct{ specBackend }

func (lastAxisBias) AddBias(_ context.Context, out, x, bias *accel.Tensor, axis int) error {
	X, B := f32s(x), f32s(bias)
	for i := range X {
		X[i] = strictmath.Canon(X[i] + B[i%len(B)])
	}
	put(out, X)
	return nil
}

type uncentredTSNE struct{ specBackend }

func (u uncentredTSNE) TSNEStep(ctx context.Context, s accel.TSNEState, p accel.TSNEParams) (float32, error) {
	y := f32s(s.Y)
	kl, err := u.specBackend.TSNEStep(ctx, s, p)
	U := f32s(s.Update)
	for i := range y {
		y[i] += U[i]
	}
	put(s.Y, y)
	return kl, err
}

type exaggeratedKL struct{ specBackend }

func (e exaggeratedKL) TSNEStep(ctx context.Context, s accel.TSNEState, p accel.TSNEParams) (float32, error) {
	vals := f32s(s.Vals)
	P := make([]float32, len(vals))
	for i, v := range vals {
		P[i] = float32(p.Exaggeration * v)
	}
	y, u, g, _ := specTSNEStep(i32s(s.RowPtr), i32s(s.Cols), vals, f32s(s.Y), f32s(s.Update), f32s(s.Gains), p)
	_, _, _, kl := specTSNEStep(i32s(s.RowPtr), i32s(s.Cols), P, f32s(s.Y), f32s(s.Update), f32s(s.Gains), p)
	put(s.Y, y)
	put(s.Update, u)
	put(s.Gains, g)
	return kl, nil
}
