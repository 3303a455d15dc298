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

// session opens a session on b in mode, closed when the test ends.
func session(tb testing.TB, b accel.Backend, mode accel.Mode, charge accel.Charger) *accel.Session {
	tb.Helper()
	s, err := accel.NewSession(b, mode, accel.Limits{}, charge)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
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
			rs := session(t, ref.New(0), accel.Strict, nil)
			ors := session(t, ob, accel.Fast, nil)
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
	s := session(t, ortBackend(t), accel.Fast, nil)
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

// TestRegistryORTNoInputs: a model without inputs (its output a constant)
// is refused on ort with the reason, not a panic of the Go binding.
func TestRegistryORTNoInputs(t *testing.T) {
	constant := onnx.Marshal(&onnx.Model{IRVersion: onnx.IRVersion, OpsetVersion: onnx.Opset, Graph: onnx.Graph{
		Nodes: []onnx.Node{{OpType: "Constant", Outputs: []string{"Y"}, Attrs: []onnx.Attribute{
			{Name: "value", Type: onnx.AttrTensor, T: &onnx.Tensor{Dims: []int64{2}, DataType: onnx.Float, Floats: []float32{1, 2}}},
		}}},
		Outputs: []onnx.ValueInfo{fvalue("Y", onnx.Dim{Value: 2})},
	}})
	m, err := models.NewRegistry().Add("constant", constant)
	if err != nil {
		t.Fatal(err)
	}
	s := session(t, ortBackend(t), accel.Fast, nil)
	if outs, err := m.Run(ctx, s, nil); !errors.Is(err, accel.ErrUnsupported) || !strings.Contains(err.Error(), "without inputs") {
		t.Errorf("Run = %v, %v; want unsupported, a model without inputs", outs, err)
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
		{"Softplus", func(x float64) float64 { return math.Log1p(math.Exp(x)) }},
		{"Softsign", func(x float64) float64 { return x / (1 + math.Abs(x)) }},
	} {
		t.Run(c.op, func(t *testing.T) {
			m, err := models.NewRegistry().Add(strings.ToLower(c.op), unaryBytes(c.op))
			if err != nil {
				t.Fatalf("the registry refused a model only ort can run: %v", err)
			}
			const batch = 3
			x := input(batch*4, 0.5)

			ors := session(t, ob, accel.Fast, nil)
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
				rs, err := accel.NewSession(ref.New(0), mode, accel.Limits{}, nil)
				if err != nil {
					t.Fatal(err)
				}
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
			s := session(t, c.backend, c.mode, nil)
			for g := range goroutines {
				alone[g], _ = mustRun(t, m, s, input(batch(g)*4, float64(g)), batch(g))
			}

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
					s, err := accel.NewSession(c.backend, c.mode, accel.Limits{}, nil)
					if err != nil {
						t.Error(err)
						return
					}
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

// meter records the charges it allows and refuses any past limit.
type meter struct {
	limit, spent uint64
	charges      []uint64
}

var errBudget = errors.New("budget exhausted")

func (m *meter) charge(units uint64) error {
	if units > m.limit-m.spent {
		return errBudget
	}
	m.spent += units
	m.charges = append(m.charges, units)
	return nil
}

// TestRegistryORTCharges checks that a run on ONNX Runtime is charged
// exactly what the same run costs op by op on ref, Model.Units, once and
// before it runs: a budget one unit short refuses it and leaves no tensor
// behind.
func TestRegistryORTCharges(t *testing.T) {
	m, err := models.NewRegistry().Add("mlp", mlpBytes(1))
	if err != nil {
		t.Fatal(err)
	}
	ob := ortBackend(t)
	for _, batch := range []int{1, 5, 16} {
		t.Run(fmt.Sprint("batch", batch), func(t *testing.T) {
			want, err := m.Units([][]int{{batch, 4}})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				backend accel.Backend
				mode    accel.Mode
			}{{ref.New(0), accel.Strict}, {ob, accel.Fast}} {
				meter := &meter{limit: math.MaxUint64}
				s := session(t, c.backend, c.mode, meter.charge)
				x, err := s.FromFloat32(input(batch*4, 0), batch, 4)
				if err != nil {
					t.Fatal(err)
				}
				for range 2 { // the same charge every time
					meter.charges = nil
					outs, err := m.Run(ctx, s, []*accel.Tensor{x})
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(meter.charges, []uint64{want}) {
						t.Errorf("%s: charges %v, want one of %d", c.backend.Name(), meter.charges, want)
					}
					s.Free(outs[0])
				}
				meter.limit = meter.spent + want - 1
				live := s.LiveTensors()
				if outs, err := m.Run(ctx, s, []*accel.Tensor{x}); !errors.Is(err, errBudget) || outs != nil {
					t.Errorf("%s, one unit short: Run = %v, %v; want the budget's error", c.backend.Name(), outs, err)
				}
				if s.LiveTensors() != live {
					t.Errorf("%s, one unit short: %d tensors live, %d before", c.backend.Name(), s.LiveTensors(), live)
				}
			}
		})
	}
}

// TestRegistryORTScalars runs graphs whose output is a scalar on ONNX
// Runtime: each comes back as a [1] tensor, charged before the run.
func TestRegistryORTScalars(t *testing.T) {
	vec := fvalue("a", fixed(4))
	for _, c := range []struct {
		name  string
		nodes []onnx.Node
		inits []onnx.Tensor
		want  float32
	}{
		{"dot", []onnx.Node{{OpType: "MatMul", Inputs: []string{"a", "a"}, Outputs: []string{"y"}}}, nil, 1 + 4 + 9 + 16},
		{"reduce_sum", []onnx.Node{{OpType: "ReduceSum", Inputs: []string{"a", "axes"}, Outputs: []string{"y"}, Attrs: []onnx.Attribute{onnx.IntAttr("keepdims", 0)}}},
			[]onnx.Tensor{{Name: "axes", Dims: []int64{1}, DataType: onnx.Int64, Int64s: []int64{0}}}, 1 + 2 + 3 + 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := models.NewRegistry().Add(c.name, onnx.Marshal(&onnx.Model{
				IRVersion: onnx.IRVersion, OpsetVersion: onnx.Opset,
				Graph: onnx.Graph{Name: c.name, Nodes: c.nodes, Inputs: []onnx.ValueInfo{vec},
					Outputs: []onnx.ValueInfo{fvalue("y")}, Initializers: c.inits},
			}))
			if err != nil {
				t.Fatal(err)
			}
			want, err := m.Units([][]int{{4}})
			if err != nil {
				t.Fatal(err)
			}
			meter := &meter{limit: math.MaxUint64}
			s := session(t, ortBackend(t), accel.Fast, meter.charge)
			x, err := s.FromFloat32([]float32{1, 2, 3, 4}, 4)
			if err != nil {
				t.Fatal(err)
			}
			meter.charges = nil
			outs, err := m.Run(ctx, s, []*accel.Tensor{x})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(meter.charges, []uint64{want}) {
				t.Errorf("charges %v, want one of %d", meter.charges, want)
			}
			if len(outs) != 1 || !slices.Equal(outs[0].Shape(), []int{1}) {
				t.Fatalf("outputs %v, want one f32[1]", outs)
			}
			y, err := s.Float32(outs[0])
			if err != nil {
				t.Fatal(err)
			}
			if y[0] != c.want {
				t.Errorf("y = %v, want %v", y[0], c.want)
			}
		})
	}
}

// TestRegistryORTInputTypes runs a model with an INT32 input on ONNX
// Runtime from an i32 tensor, and refuses an INT64 input before running.
func TestRegistryORTInputTypes(t *testing.T) {
	cast := func(elem int) []byte {
		return onnx.Marshal(&onnx.Model{
			IRVersion: onnx.IRVersion, OpsetVersion: onnx.Opset,
			Graph: onnx.Graph{Name: "cast",
				Nodes:   []onnx.Node{{OpType: "Cast", Inputs: []string{"x"}, Outputs: []string{"y"}, Attrs: []onnx.Attribute{onnx.IntAttr("to", onnx.Float)}}},
				Inputs:  []onnx.ValueInfo{{Name: "x", ElemType: elem, Dims: []onnx.Dim{fixed(3)}}},
				Outputs: []onnx.ValueInfo{fvalue("y", fixed(3))}},
		})
	}
	s := session(t, ortBackend(t), accel.Fast, nil)
	x, err := s.FromInt32([]int32{-1, 0, 7}, 3)
	if err != nil {
		t.Fatal(err)
	}
	m32, err := models.NewRegistry().Add("cast32", cast(onnx.Int32))
	if err != nil {
		t.Fatal(err)
	}
	outs, err := m32.Run(ctx, s, []*accel.Tensor{x})
	if err != nil {
		t.Fatal(err)
	}
	if y, err := s.Float32(outs[0]); err != nil || !slices.Equal(y, []float32{-1, 0, 7}) {
		t.Errorf("Cast of an INT32 input: %v, %v", y, err)
	}
	m64, err := models.NewRegistry().Add("cast64", cast(onnx.Int64))
	if err != nil {
		t.Fatal(err)
	}
	live := s.LiveTensors()
	if outs, err := m64.Run(ctx, s, []*accel.Tensor{x}); !errors.Is(err, accel.ErrInvalid) || !strings.Contains(err.Error(), "INT64") {
		t.Errorf("an INT64 input: Run = %v, %v; want %v naming the type", outs, err, accel.ErrInvalid)
	}
	if s.LiveTensors() != live {
		t.Errorf("%d tensors live after the refused run, %d before", s.LiveTensors(), live)
	}
}
