package models_test

// The tests that run models on ONNX Runtime live in this external test
// package, because accel/ort imports models.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ort"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/models"
	"github.com/accelnode/accelnode/models/onnx"
)

var ctx = context.Background()

// ortBackend opens ONNX Runtime on the CPU, or fails: make deps fetches the
// library, so a missing one is a broken setup, not a reason to skip.
func ortBackend(tb testing.TB) *ort.Backend {
	tb.Helper()
	b := ort.New(accel.Options{}, false)
	if st := b.Status(); !st.Available {
		tb.Fatalf("ort backend unavailable (run make deps): %s", st.Reason)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}

func randFloats(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func fvalue(name string, dims ...onnx.Dim) onnx.ValueInfo {
	return onnx.ValueInfo{Name: name, ElemType: onnx.Float, Dims: dims}
}

func fconst(name string, data []float32, dims ...int64) onnx.Tensor {
	return onnx.Tensor{Name: name, Dims: dims, DataType: onnx.Float, Floats: data}
}

var batchDim = onnx.Dim{Param: "batch"}

func fixed(n int64) onnx.Dim { return onnx.Dim{Value: n} }

// mlpBytes is an MLP, Gemm (transB) → Relu → Gemm → Softmax from x
// [batch,4] to y [batch,3], with random weights as initializers.
func mlpBytes(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 11))
	return onnx.Marshal(&onnx.Model{
		IRVersion:    onnx.IRVersion,
		OpsetVersion: onnx.Opset,
		Graph: onnx.Graph{
			Name: "mlp",
			Nodes: []onnx.Node{
				{OpType: "Gemm", Inputs: []string{"x", "w1", "b1"}, Outputs: []string{"h"}, Attrs: []onnx.Attribute{onnx.IntAttr("transB", 1)}},
				{OpType: "Relu", Inputs: []string{"h"}, Outputs: []string{"hr"}},
				{OpType: "Gemm", Inputs: []string{"hr", "w2", "b2"}, Outputs: []string{"logits"}},
				{OpType: "Softmax", Inputs: []string{"logits"}, Outputs: []string{"y"}, Attrs: []onnx.Attribute{onnx.IntAttr("axis", -1)}},
			},
			Inputs:  []onnx.ValueInfo{fvalue("x", batchDim, fixed(4))},
			Outputs: []onnx.ValueInfo{fvalue("y", batchDim, fixed(3))},
			Initializers: []onnx.Tensor{
				fconst("w1", randFloats(r, 32), 8, 4),
				fconst("b1", randFloats(r, 8), 8),
				fconst("w2", randFloats(r, 24), 8, 3),
				fconst("b2", randFloats(r, 3), 3),
			},
		},
	})
}

// unaryBytes is y = op(x) for x [batch,4].
func unaryBytes(op string) []byte {
	return onnx.Marshal(&onnx.Model{
		IRVersion:    onnx.IRVersion,
		OpsetVersion: onnx.Opset,
		Graph: onnx.Graph{
			Name:    strings.ToLower(op),
			Nodes:   []onnx.Node{{Name: "the_" + strings.ToLower(op), OpType: op, Inputs: []string{"x"}, Outputs: []string{"y"}}},
			Inputs:  []onnx.ValueInfo{fvalue("x", batchDim, fixed(4))},
			Outputs: []onnx.ValueInfo{fvalue("y", batchDim, fixed(4))},
		},
	})
}

func input(n int, phase float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(3 * math.Sin(float64(i)+phase))
	}
	return x
}

// runModel runs m on s with x [batch,4] and returns the one output's data
// and shape, checking that the run adds exactly that tensor to the session.
func runModel(m *models.Model, s *accel.Session, x []float32, batch int) ([]float32, []int, error) {
	in, err := s.FromFloat32(x, batch, 4)
	if err != nil {
		return nil, nil, err
	}
	defer s.Free(in)
	live := s.LiveTensors()
	outs, err := m.Run(ctx, s, []*accel.Tensor{in})
	if err != nil {
		return nil, nil, fmt.Errorf("%s on %s: %w", m.Name, s.Backend().Name(), err)
	}
	if len(outs) != 1 || s.LiveTensors() != live+1 {
		return nil, nil, fmt.Errorf("%d outputs, %d tensors live after the run, %d before", len(outs), s.LiveTensors(), live)
	}
	y, err := s.Float32(outs[0])
	if err != nil {
		return nil, nil, err
	}
	shape := slices.Clone(outs[0].Shape())
	return y, shape, s.Free(outs[0])
}

func mustRun(t testing.TB, m *models.Model, s *accel.Session, x []float32, batch int) ([]float32, []int) {
	t.Helper()
	y, shape, err := runModel(m, s, x, batch)
	if err != nil {
		t.Fatal(err)
	}
	return y, shape
}

// near reports whether got is within tol of want, relative to want's
// magnitude (absolutely near zero).
func near(got, want, tol float64) bool {
	return math.Abs(got-want) <= tol*math.Max(math.Abs(want), 1e-6)
}

func TestRegistryORTMatchesRef(t *testing.T) {
	reg := models.NewRegistry()
	m, err := reg.Add("mlp", mlpBytes(1))
	if err != nil {
		t.Fatal(err)
	}
	ob := ortBackend(t)
	for _, batch := range []int{1, 4, 33} {
		t.Run(fmt.Sprint("batch", batch), func(t *testing.T) {
			x := input(batch*4, 0)
			rs := accel.NewSession(ref.New(0), accel.Strict, accel.Limits{}, nil)
			defer rs.Close()
			ors := accel.NewSession(ob, accel.Fast, accel.Limits{}, nil)
			defer ors.Close()
			want, wshape := mustRun(t, m, rs, x, batch)
			got, gshape := mustRun(t, m, ors, x, batch)
			if !slices.Equal(gshape, []int{batch, 3}) || !slices.Equal(wshape, gshape) {
				t.Fatalf("shapes: ort %v, ref %v", gshape, wshape)
			}
			for i := range want {
				if !near(float64(got[i]), float64(want[i]), 1e-5) {
					t.Errorf("y[%d]: ort %v, ref %v", i, got[i], want[i])
				}
			}
		})
	}
}

// TestRegistryORTErrors checks that ort refuses wrong inputs before running,
// as ref does, and leaks nothing.
func TestRegistryORTErrors(t *testing.T) {
	m, err := models.NewRegistry().Add("mlp", mlpBytes(1))
	if err != nil {
		t.Fatal(err)
	}
	s := accel.NewSession(ortBackend(t), accel.Fast, accel.Limits{}, nil)
	defer s.Close()
	wrong, err := s.FromFloat32(input(10, 0), 2, 5)
	if err != nil {
		t.Fatal(err)
	}
	i32, err := s.FromInt32(make([]int32, 8), 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		in   []*accel.Tensor
		want error
	}{
		{"no inputs", nil, accel.ErrInvalid},
		{"fixed dimension", []*accel.Tensor{wrong}, accel.ErrShape},
		{"i32", []*accel.Tensor{i32}, accel.ErrInvalid},
	} {
		live := s.LiveTensors()
		outs, err := m.Run(ctx, s, c.in)
		if !errors.Is(err, c.want) || outs != nil {
			t.Errorf("%s: Run = %v, %v; want %v", c.name, outs, err, c.want)
		}
		if s.LiveTensors() != live {
			t.Errorf("%s: %d tensors live after the failed run, %d before", c.name, s.LiveTensors(), live)
		}
	}
}

// TestRegistryUnsupportedOp registers models whose op the interpreter lacks:
// ONNX Runtime runs them, ref refuses naming the op.
func TestRegistryUnsupportedOp(t *testing.T) {
	ob := ortBackend(t)
	for _, c := range []struct {
		op string
		f  func(float64) float64
	}{
		{"Tanh", math.Tanh},
		{"Sigmoid", func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }},
	} {
		t.Run(c.op, func(t *testing.T) {
			m, err := models.NewRegistry().Add(strings.ToLower(c.op), unaryBytes(c.op))
			if err != nil {
				t.Fatalf("the registry refused a model only ort can run: %v", err)
			}
			const batch = 3
			x := input(batch*4, 0.5)

			ors := accel.NewSession(ob, accel.Fast, accel.Limits{}, nil)
			defer ors.Close()
			y, shape := mustRun(t, m, ors, x, batch)
			if !slices.Equal(shape, []int{batch, 4}) {
				t.Errorf("shape %v", shape)
			}
			for i := range y {
				if want := c.f(float64(x[i])); !near(float64(y[i]), want, 1e-5) {
					t.Errorf("%s(%v) = %v on ort, want %v", c.op, x[i], y[i], want)
				}
			}

			for _, mode := range []accel.Mode{accel.Strict, accel.Fast} {
				rs := accel.NewSession(ref.New(0), mode, accel.Limits{}, nil)
				in, err := rs.FromFloat32(x, batch, 4)
				if err != nil {
					t.Fatal(err)
				}
				live := rs.LiveTensors()
				outs, err := m.Run(ctx, rs, []*accel.Tensor{in})
				if !errors.Is(err, accel.ErrUnsupported) || outs != nil {
					t.Errorf("%s on ref (%v): %v, %v; want ErrUnsupported", c.op, mode, outs, err)
				} else if !strings.Contains(err.Error(), `"`+c.op+`"`) || !strings.Contains(err.Error(), "ref") {
					t.Errorf("error %q does not name the op and the backend", err)
				}
				if rs.LiveTensors() != live {
					t.Errorf("%d tensors live after the refused run, %d before", rs.LiveTensors(), live)
				}
				rs.Close()
			}
		})
	}
}

// TestRegistryConcurrentRuns runs one registered model from 8 goroutines,
// each with its own session, on one shared backend, and compares every
// result with the same run made alone. Run with -race.
func TestRegistryConcurrentRuns(t *testing.T) {
	reg := models.NewRegistry()
	if _, err := reg.Add("mlp", mlpBytes(3)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		backend accel.Backend
		mode    accel.Mode
	}{
		{"ref", ref.New(0), accel.Strict},
		{"ort", ortBackend(t), accel.Fast},
	} {
		t.Run(c.name, func(t *testing.T) {
			const goroutines, reps = 8, 10
			batch := func(g int) int { return 1 + 5*g }
			m, err := reg.Lookup("mlp")
			if err != nil {
				t.Fatal(err)
			}
			// Alone, first.
			alone := make([][]float32, goroutines)
			s := accel.NewSession(c.backend, c.mode, accel.Limits{}, nil)
			for g := range goroutines {
				alone[g], _ = mustRun(t, m, s, input(batch(g)*4, float64(g)), batch(g))
			}
			s.Close()

			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					m, err := reg.Lookup("mlp") // lookups race with runs too
					if err != nil {
						t.Error(err)
						return
					}
					s := accel.NewSession(c.backend, c.mode, accel.Limits{}, nil)
					defer s.Close()
					x := input(batch(g)*4, float64(g))
					for rep := range reps {
						y, _, err := runModel(m, s, x, batch(g))
						if err != nil {
							t.Errorf("goroutine %d, run %d: %v", g, rep, err)
							return
						}
						for i := range y {
							if math.Float32bits(y[i]) != math.Float32bits(alone[g][i]) {
								t.Errorf("goroutine %d, run %d: y[%d] = %v, alone %v", g, rep, i, y[i], alone[g][i])
								return
							}
						}
					}
					if s.LiveTensors() != 0 {
						t.Errorf("goroutine %d: %d tensors live", g, s.LiveTensors())
					}
				}()
			}
			wg.Wait()
		})
	}
}

// TestRegistryORTCharges checks the metering of a native run: the
// docs/abi.md formula for model_run on ort (64 + the inputs' bytes + 2 ·
// weights · batch) is charged before the run, and then the output tensors
// are charged as a tensor_create and a tensor_write each (which the table in
// docs/abi.md does not mention). A refused charge leaves no tensor behind.
func TestRegistryORTCharges(t *testing.T) {
	m, err := models.NewRegistry().Add("mlp", mlpBytes(1))
	if err != nil {
		t.Fatal(err)
	}
	ob := ortBackend(t)
	const batch = 5
	const weights = 8*4 + 8 + 8*3 + 3
	in, out := uint64(batch*4*4), uint64(batch*3*4)
	want := []uint64{accel.CallUnits + in + 2*weights*batch, accel.CallUnits + out, accel.CallUnits + out}

	errBudget := errors.New("budget exhausted")
	refuse := -1 // the index of the charge of the run to refuse, or -1
	var charges []uint64
	s := accel.NewSession(ob, accel.Fast, accel.Limits{}, func(units uint64) error {
		if units == accel.CallUnits { // frees
			return nil
		}
		if len(charges) == refuse {
			return errBudget
		}
		charges = append(charges, units)
		return nil
	})
	defer s.Close()
	x, err := s.FromFloat32(input(batch*4, 0), batch, 4)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the same charges every time
		charges = nil
		outs, err := m.Run(ctx, s, []*accel.Tensor{x})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(charges, want) {
			t.Errorf("charges %v, want %v", charges, want)
		}
		s.Free(outs[0])
	}
	for refuse = range want {
		charges = nil
		live := s.LiveTensors()
		outs, err := m.Run(ctx, s, []*accel.Tensor{x})
		if !errors.Is(err, errBudget) || outs != nil {
			t.Errorf("charge %d refused: Run = %v, %v", refuse, outs, err)
		}
		if s.LiveTensors() != live {
			t.Errorf("charge %d refused: %d tensors live, %d before", refuse, s.LiveTensors(), live)
		}
	}
}
