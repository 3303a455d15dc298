package ort

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance"
	"github.com/accelnode/accelnode/accel/ref"
)

// agreement is how far a backend's outputs lie from ref's, the numerics
// contract's bits.
type agreement struct {
	outputs   int
	identical int
	maxULP    int64
	sumULP    float64
}

func (a *agreement) add(got, want []float32) {
	for i := range want {
		a.outputs++
		if math.Float32bits(got[i]) == math.Float32bits(want[i]) {
			a.identical++
		}
		d := conformance.ULPs(got[i], want[i])
		a.maxULP = max(a.maxULP, d)
		a.sumULP += float64(d)
	}
}

func (a agreement) share() float64   { return float64(a.identical) / float64(a.outputs) }
func (a agreement) meanULP() float64 { return a.sumULP / float64(a.outputs) }

// opCase runs one operation on a session and returns its output.
type opCase struct {
	name string
	run  func(s *accel.Session, rng *rand.Rand) ([]float32, error)
	// maxULP is the documented ceiling for these inputs (docs/benchmarks.md);
	// 0 means the outputs must be bit-identical.
	maxULP int64
}

func normals(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func input(s *accel.Session, rng *rand.Rand, shape ...int) (*accel.Tensor, error) {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return s.FromFloat32(normals(rng, n), shape...)
}

// result reads an operation's output tensor: result(s)(s.Relu(ctx, x)).
func result(s *accel.Session) func(*accel.Tensor, error) ([]float32, error) {
	return func(t *accel.Tensor, err error) ([]float32, error) {
		if err != nil {
			return nil, err
		}
		return s.Float32(t)
	}
}

var agreementCases = []opCase{
	{"matmul 256x256x256", func(s *accel.Session, rng *rand.Rand) ([]float32, error) {
		a, _ := input(s, rng, 256, 256)
		b, _ := input(s, rng, 256, 256)
		return result(s)(s.MatMul(context.Background(), a, b, accel.MatMulParams{}))
	}, 1 << 18},
	{"conv2d 8x16x28x28, 32 3x3, pad 1, bias", func(s *accel.Session, rng *rand.Rand) ([]float32, error) {
		x, _ := input(s, rng, 8, 16, 28, 28)
		w, _ := input(s, rng, 32, 16, 3, 3)
		b, _ := input(s, rng, 32)
		p := accel.Conv2DParams{StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, DilationH: 1, DilationW: 1, Groups: 1}
		return result(s)(s.Conv2D(context.Background(), x, w, b, p))
	}, 1 << 18},
	{"add_bias 64x32x16", func(s *accel.Session, rng *rand.Rand) ([]float32, error) {
		x, _ := input(s, rng, 64, 32, 16)
		b, _ := input(s, rng, 32)
		return result(s)(s.AddBias(context.Background(), x, b, 1))
	}, 0},
	{"relu 100000", func(s *accel.Session, rng *rand.Rand) ([]float32, error) {
		x, _ := input(s, rng, 100000)
		return result(s)(s.Relu(context.Background(), x))
	}, 0},
	{"maxpool2d 8x16x28x28, 2x2 stride 2", func(s *accel.Session, rng *rand.Rand) ([]float32, error) {
		x, _ := input(s, rng, 8, 16, 28, 28)
		p := accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2}
		return result(s)(s.MaxPool2D(context.Background(), x, p))
	}, 0},
	{"softmax 1000x100", func(s *accel.Session, rng *rand.Rand) ([]float32, error) {
		x, _ := input(s, rng, 1000, 100)
		return result(s)(s.Softmax(context.Background(), x))
	}, 64},
}

// TestAgreementWithRef measures, on fixed random inputs, the share of ort's
// outputs that are bit-identical to ref's and their ULP distance, logs them
// (docs/benchmarks.md records them), and checks them against the documented
// ceilings: exact operations must agree bit for bit.
func TestAgreementWithRef(t *testing.T) {
	o := backend(t, 0)
	for _, c := range agreementCases {
		t.Run(c.name, func(t *testing.T) {
			outputs := map[string][]float32{}
			for _, be := range []accel.Backend{o, ref.New(0)} {
				s := accel.NewSession(be, accel.Fast, accel.Limits{}, nil)
				got, err := c.run(s, rand.New(rand.NewPCG(11, 13)))
				s.Close()
				if err != nil {
					t.Fatalf("%s: %v", be.Name(), err)
				}
				outputs[be.Name()] = got
			}
			var a agreement
			a.add(outputs["ort"], outputs["ref"])
			t.Logf("%-40s %6.1f%% bit-identical, max %d ulp, mean %.2f ulp", c.name, 100*a.share(), a.maxULP, a.meanULP())
			if a.maxULP > c.maxULP {
				t.Errorf("max distance %d ulp exceeds the documented %d", a.maxULP, c.maxULP)
			}
		})
	}
	t.Run("tsne_step 500 points", func(t *testing.T) {
		klORT, yORT := tsneOnce(t, o)
		klRef, yRef := tsneOnce(t, ref.New(0))
		var a agreement
		a.add(yORT, yRef)
		t.Logf("%-40s %6.1f%% bit-identical, max %d ulp, mean %.2f ulp; KL %g vs %g", "tsne_step 500 points, new Y",
			100*a.share(), a.maxULP, a.meanULP(), klORT, klRef)
		if rel := math.Abs(float64(klORT-klRef)) / math.Abs(float64(klRef)); rel > 1e-4 {
			t.Errorf("KL %g differs from ref's %g by %.2g relative", klORT, klRef, rel)
		}
		if a.maxULP > 1<<16 {
			t.Errorf("max distance %d ulp exceeds the documented %d", a.maxULP, 1<<16)
		}
	})
}

// tsneOnce runs one t-SNE iteration with KL over 500 points on be.
func tsneOnce(t *testing.T, be accel.Backend) (float32, []float32) {
	const n, k = 500, 20
	rng := rand.New(rand.NewPCG(17, 19))
	rowPtr := make([]int32, n+1)
	var cols []int32
	var vals []float32
	for i := range n {
		for range k {
			cols = append(cols, int32(rng.IntN(n)))
			vals = append(vals, rng.Float32()/(n*k))
		}
		rowPtr[i+1] = int32(len(cols))
	}
	y := normals(rng, 2*n)
	gains := make([]float32, 2*n)
	for i := range gains {
		gains[i] = 1
	}
	s := accel.NewSession(be, accel.Fast, accel.Limits{}, nil)
	defer s.Close()
	mustF := func(v []float32, shape ...int) *accel.Tensor {
		x, err := s.FromFloat32(v, shape...)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	mustI := func(v []int32) *accel.Tensor {
		x, err := s.FromInt32(v, len(v))
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	st := accel.TSNEState{RowPtr: mustI(rowPtr), Cols: mustI(cols), Vals: mustF(vals, len(vals)),
		Y: mustF(y, n, 2), Update: mustF(make([]float32, 2*n), n, 2), Gains: mustF(gains, n, 2)}
	kl, err := s.TSNEStep(context.Background(), st, accel.TSNEParams{LearningRate: 200, Momentum: 0.5, Exaggeration: 4, MinGain: 0.01, ComputeKL: true})
	if err != nil {
		t.Fatalf("%s: %v", be.Name(), err)
	}
	got, err := s.Float32(st.Y)
	if err != nil {
		t.Fatal(err)
	}
	return kl, got
}
