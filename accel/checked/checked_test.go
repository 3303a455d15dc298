package checked

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/internal/hostmem"
	"github.com/accelnode/accelnode/accel/ort"
	"github.com/accelnode/accelnode/accel/ref"
)

// planted is ref with one wrong output: element 0 of every matmul (scaled by
// matmulErr) and of every relu (one ulp up).
type planted struct {
	*ref.Backend
	matmulErr float32
}

func (p planted) Kernel(op *accel.Op, mode accel.Mode) accel.Kernel {
	k := p.Backend.Kernel(op, mode)
	switch op {
	case accel.MatMul:
		return func(ctx context.Context, c *accel.Call) error {
			if err := k(ctx, c); err != nil {
				return err
			}
			hostmem.F32(c.Out[0])[0] *= 1 + p.matmulErr
			return nil
		}
	case accel.Relu:
		return func(ctx context.Context, c *accel.Call) error {
			if err := k(ctx, c); err != nil {
				return err
			}
			y := hostmem.F32(c.Out[0])
			y[0] = math.Nextafter32(y[0], float32(math.Inf(1)))
			return nil
		}
	}
	return k
}

// workload runs a matmul, a conv2d, the exact ops, a softmax and a t-SNE
// step on s.
func workload(t *testing.T, s *accel.Session) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	f := func(shape ...int) *accel.Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		x, err := s.FromFloat32(v, shape...)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	ctx := context.Background()
	must := func(_ *accel.Tensor, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.MatMul(ctx, f(40, 300), f(300, 20), accel.MatMulParams{}))
	must(s.MatMul(ctx, f(300, 40), f(20, 300), accel.MatMulParams{TransA: true, TransB: true}))
	conv := accel.Conv2DParams{StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, DilationH: 1, DilationW: 1, Groups: 1}
	must(s.Conv2D(ctx, f(2, 8, 12, 12), f(6, 8, 3, 3), f(6), conv))
	must(s.AddBias(ctx, f(4, 6, 5), f(6), 1))
	must(s.Relu(ctx, f(100)))
	must(s.MaxPool2D(ctx, f(2, 3, 8, 8), accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2}))
	must(s.Softmax(ctx, f(10, 50)))
	must(s.Add(ctx, f(7, 9), f(7, 9)))
	const n = 60
	rowPtr := make([]int32, n+1)
	var cols []int32
	var vals []float32
	for i := range n {
		for range 5 {
			cols = append(cols, int32(rng.IntN(n)))
			vals = append(vals, rng.Float32()/300)
		}
		rowPtr[i+1] = int32(len(cols))
	}
	ri, _ := s.FromInt32(rowPtr, n+1)
	ci, _ := s.FromInt32(cols, len(cols))
	vv, _ := s.FromFloat32(vals, len(vals))
	g, _ := s.FromFloat32(bytesOnes(2*n), n, 2)
	st := accel.TSNEState{RowPtr: ri, Cols: ci, Vals: vv, Y: f(n, 2), Update: f(n, 2), Gains: g}
	if _, err := s.TSNEStep(ctx, st, accel.TSNEParams{LearningRate: 100, Momentum: 0.5, Exaggeration: 4, MinGain: 0.01, ComputeKL: true}); err != nil {
		t.Fatal(err)
	}
}

func bytesOnes(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

func TestCleanRunPasses(t *testing.T) {
	o := ort.New(accel.Options{}, false)
	defer o.Close()
	if st := o.Status(); !st.Available {
		t.Fatalf("ort unavailable (run make deps): %s", st.Reason)
	}
	for _, fast := range []accel.Backend{ref.New(0), o} {
		t.Run(fast.Name(), func(t *testing.T) {
			var log bytes.Buffer
			c := New(fast, ref.New(0), 1, slog.New(slog.NewTextHandler(&log, nil)))
			s, err := accel.NewSession(c, accel.Checked, accel.Limits{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			workload(t, s)
			s.Close()
			if n := c.Beyond(); n != 0 {
				t.Fatalf("%d results beyond their bounds on clean inputs:\n%s", n, log.String())
			}
			for _, op := range []string{"matmul", "conv2d", "add_bias", "relu", "maxpool2d", "softmax", "tsne_step", "tsne_step kl", "add"} {
				if st := c.Stats()[op]; st.Checked == 0 {
					t.Errorf("%s was not checked: %+v", op, st)
				}
			}
			t.Logf("%s: %+v", fast.Name(), c.Stats())
		})
	}
}

func TestPlantedDivergenceIsFlagged(t *testing.T) {
	for _, c := range []struct {
		name   string
		err    float32
		beyond map[string]bool
	}{
		{"one ulp in relu", 0, map[string]bool{"relu": true}},
		{"1e-3 in matmul and one ulp in relu", 1e-3, map[string]bool{"matmul": true, "relu": true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var log bytes.Buffer
			chk := New(planted{ref.New(0), c.err}, ref.New(0), 1, slog.New(slog.NewTextHandler(&log, nil)))
			s, err := accel.NewSession(chk, accel.Checked, accel.Limits{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			workload(t, s)
			s.Close()
			for op, st := range chk.Stats() {
				if (st.Beyond > 0) != c.beyond[op] {
					t.Errorf("%s: %d beyond its bound, want flagged = %v", op, st.Beyond, c.beyond[op])
				}
			}
			if !strings.Contains(log.String(), "result beyond its bound") || !strings.Contains(log.String(), "op=relu") {
				t.Errorf("no log line names the divergence:\n%s", log.String())
			}
		})
	}
}

func TestSampling(t *testing.T) {
	for _, rate := range []float64{0, 0.1, 0.25, 1} {
		c := New(ref.New(1), ref.New(1), rate, nil)
		checked := 0
		for range 1000 {
			if c.sample("relu") {
				checked++
			}
		}
		if want := rate * 1000; math.Abs(float64(checked)-want) > 2 {
			t.Errorf("rate %g: %d of 1000 calls checked, want %g", rate, checked, want)
		}
		// The same calls again: sampling is a function of the call number.
		again := New(ref.New(1), ref.New(1), rate, nil)
		for i := range 1000 {
			if again.sample("relu") != c.sampleAt(uint64(i)) {
				t.Fatalf("rate %g: call %d sampled differently", rate, i)
			}
		}
	}
}
