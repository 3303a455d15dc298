package models

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/models/onnx"
)

// counting is the ref backend, counting the tensors allocated on it.
type counting struct {
	*ref.Backend
	allocs int
}

func (b *counting) Alloc(dt accel.DType, n int) (accel.Buffer, error) {
	b.allocs++
	return b.Backend.Alloc(dt, n)
}

// native runs whole models as a backend that runs ONNX itself does
// (accel.ONNXRunner), standing in for ONNX Runtime: it computes them op by
// op on a ref session of its own, or with compute where that is set. It
// counts its runs.
type native struct {
	counting
	runs    int
	compute func(in [][]float32) ([]accel.HostTensor, error)
}

var _ accel.ONNXRunner = (*native)(nil)

func newNative() *native { return &native{counting: counting{Backend: ref.New(1)}} }

func (b *native) Name() string { return "native" }

func (b *native) RunONNX(ctx context.Context, key string, model []byte, inputNames, outputNames []string, inputs []*accel.Tensor) ([]accel.HostTensor, error) {
	b.runs++
	data := make([][]float32, len(inputs))
	for i, t := range inputs {
		buf := make([]byte, t.Bytes())
		if err := b.Read(t.Buffer(), 0, buf); err != nil {
			return nil, err
		}
		data[i] = accel.DecodeFloat32(buf)
	}
	if b.compute != nil {
		return b.compute(data)
	}
	om, err := onnx.Unmarshal(model)
	if err != nil {
		return nil, err
	}
	p, err := Compile(om)
	if err != nil {
		return nil, err
	}
	s, err := accel.NewSession(ref.New(1), accel.Strict, accel.Limits{}, nil)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	in := make([]*accel.Tensor, len(inputs))
	for i, t := range inputs {
		if in[i], err = s.FromFloat32(data[i], t.Shape()...); err != nil {
			return nil, err
		}
	}
	outs, err := p.Run(ctx, s, in)
	if err != nil {
		return nil, err
	}
	host := make([]accel.HostTensor, len(outs))
	for i, o := range outs {
		d, err := s.Float32(o)
		if err != nil {
			return nil, err
		}
		host[i] = accel.HostTensor{Shape: slices.Clone(o.Shape()), Data: d}
	}
	return host, nil
}

var errBudget = errors.New("budget exhausted")

// meter is a budget: it records the charges it allows and refuses one that
// would take it past limit.
type meter struct {
	limit, spent uint64
	charges      []uint64
}

func (m *meter) charge(units uint64) error {
	if units > m.limit-m.spent {
		return errBudget
	}
	m.spent += units
	m.charges = append(m.charges, units)
	return nil
}

// metered opens a session on b charged to a meter without a limit.
func metered(t testing.TB, b accel.Backend) (*accel.Session, *meter) {
	t.Helper()
	m := &meter{limit: math.MaxUint64}
	s, err := accel.NewSession(b, accel.Strict, accel.Limits{}, m.charge)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, m
}

// denseModel is the example MLP's shape (examples/internal/mlp): x [batch,
// in] → Gemm → Relu → Gemm → Softmax → probs [batch, out].
func denseModel(in, hidden, out int) *onnx.Model {
	r := rand.New(rand.NewPCG(uint64(in), uint64(hidden)))
	return graph([]onnx.Node{
		node("Gemm", "fc1", ss("x", "w1", "b1"), ss("h")),
		node("Relu", "relu", ss("h"), ss("a")),
		node("Gemm", "fc2", ss("a", "w2", "b2"), ss("logits")),
		node("Softmax", "softmax", ss("logits"), ss("probs"), aInt("axis", -1)),
	}, []onnx.ValueInfo{vi("x", "batch", in)}, []onnx.ValueInfo{vi("probs", "batch", out)},
		finit("w1", floats(r, in*hidden), int64(in), int64(hidden)), finit("b1", floats(r, hidden), int64(hidden)),
		finit("w2", floats(r, hidden*out), int64(hidden), int64(out)), finit("b2", floats(r, out), int64(out)))
}

// TestUnitsSameOnEveryBackend runs MLPs op by op on ref and natively and
// checks that both charge the same, once, before anything runs: a budget one
// unit short refuses the run with nothing allocated and nothing run.
func TestUnitsSameOnEveryBackend(t *testing.T) {
	example := onnx.Marshal(denseModel(64, 32, 10))
	for _, c := range []struct {
		name  string
		data  []byte
		in    int
		batch int
		want  uint64 // 0: not worked out by hand
	}{
		{"example_batch1", example, 64, 1, 0},
		// The example's batch of 16: 64 + 4·(16·64 + 16·10 + 2,410 weights)
		// for the data, then matmul 79,936, add_bias 4,800, relu 4,672,
		// matmul 14,272, add_bias 1,544 and softmax 3,904.
		{"example_batch16", example, 64, 16, 14440 + 79936 + 4800 + 4672 + 14272 + 1544 + 3904},
		{"small_transposed_batch3", newRegMLP(1).bytes(), 4, 3, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := mustAdd(t, NewRegistry(), "mlp", c.data)
			x := sinInput(c.batch * c.in)
			want, err := m.Units([][]int{{c.batch, c.in}})
			if err != nil {
				t.Fatal(err)
			}
			if c.want != 0 && want != c.want {
				t.Errorf("Units = %d, want %d", want, c.want)
			}

			var results [][]float32
			for _, b := range []interface {
				accel.Backend
				count() (allocs, runs int)
			}{&refCount{counting{Backend: ref.New(1)}}, newNative()} {
				t.Run(b.Name(), func(t *testing.T) {
					s, meter := metered(t, b)
					in := tensor(t, s, x, c.batch, c.in)
					meter.charges = nil
					outs, err := m.Run(bg, s, []*accel.Tensor{in})
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(meter.charges, []uint64{want}) {
						t.Errorf("charges %v, want one of %d", meter.charges, want)
					}
					y, err := s.Float32(outs[0])
					if err != nil {
						t.Fatal(err)
					}
					results = append(results, y)

					// One unit short: refused before anything is allocated or run.
					for _, short := range []bool{true, false} {
						meter.limit = meter.spent + want
						if short {
							meter.limit--
						}
						allocs, runs := b.count()
						live := s.LiveTensors()
						outs, err := m.Run(bg, s, []*accel.Tensor{in})
						a, r := b.count()
						switch {
						case short && (!errors.Is(err, errBudget) || outs != nil):
							t.Errorf("one unit short: Run = %v, %v; want the budget's error", outs, err)
						case short && (a != allocs || r != runs || s.LiveTensors() != live):
							t.Errorf("one unit short: %d allocations, %d native runs, %d tensors live; want none and %d", a-allocs, r-runs, s.LiveTensors(), live)
						case !short && err != nil:
							t.Errorf("with the exact budget: %v", err)
						}
					}
				})
			}
			if len(results) == 2 && !slices.EqualFunc(results[0], results[1], func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) {
				t.Errorf("ref and native outputs differ: %v and %v", results[0], results[1])
			}
		})
	}
}

type refCount struct{ counting }

func (b *refCount) count() (int, int) { return b.allocs, 0 }
func (b *native) count() (int, int)   { return b.allocs, b.runs }

// castModel is y [n] = Cast(x) for x [n] of element type elem: an op the
// node lacks, so only a native backend runs it.
func castModel(elem int) []byte {
	x := vi("x", "n")
	x.ElemType = elem
	return onnx.Marshal(graph([]onnx.Node{node("Cast", "cast", ss("x"), ss("y"), aInt("to", onnx.Float))}, []onnx.ValueInfo{x}, []onnx.ValueInfo{vi("y", "n")}))
}

// TestInputTypes checks every input's dtype against the model's declared
// element type before anything runs or is charged.
func TestInputTypes(t *testing.T) {
	for _, c := range []struct {
		name   string
		elem   int
		dtype  accel.DType
		want   error  // natively
		match  string // in the error
		refErr error  // op by op on ref
	}{
		{"float_f32", onnx.Float, accel.F32, nil, "", accel.ErrUnsupported},
		{"float_i32", onnx.Float, accel.I32, accel.ErrInvalid, `input "x" is i32[3], want f32: the model declares it FLOAT`, accel.ErrInvalid},
		{"int32_i32", onnx.Int32, accel.I32, nil, "", accel.ErrUnsupported},
		{"int32_f32", onnx.Int32, accel.F32, accel.ErrInvalid, `input "x" is f32[3], want i32: the model declares it INT32`, accel.ErrInvalid},
		{"int64_f32", onnx.Int64, accel.F32, accel.ErrInvalid, `input "x" is declared INT64, which no tensor can pass (a FLOAT input takes an f32 tensor, an INT32 input an i32 tensor)`, accel.ErrInvalid},
		{"int64_i32", onnx.Int64, accel.I32, accel.ErrInvalid, `declared INT64`, accel.ErrInvalid},
		{"bool_f32", onnx.Bool, accel.F32, accel.ErrInvalid, `declared BOOL`, accel.ErrInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := mustAdd(t, NewRegistry(), "cast", castModel(c.elem))
			nb := newNative()
			nb.compute = func(in [][]float32) ([]accel.HostTensor, error) {
				return []accel.HostTensor{{Shape: []int{3}, Data: []float32{1, 2, 3}}}, nil
			}
			rb := &refCount{counting{Backend: ref.New(1)}}
			for _, b := range []struct {
				accel.Backend
				want error
			}{{nb, c.want}, {rb, c.refErr}} {
				s, meter := metered(t, b.Backend)
				var x *accel.Tensor
				var err error
				if c.dtype == accel.I32 {
					x, err = s.FromInt32([]int32{1, 2, 3}, 3)
				} else {
					x, err = s.FromFloat32([]float32{1, 2, 3}, 3)
				}
				if err != nil {
					t.Fatal(err)
				}
				meter.charges = nil
				runs := nb.runs
				outs, err := m.Run(bg, s, []*accel.Tensor{x})
				if !errors.Is(err, b.want) || (err == nil) != (b.want == nil) {
					t.Fatalf("on %s: Run = %v, %v; want %v", b.Name(), outs, err, b.want)
				}
				if err == nil {
					if len(outs) != 1 || !slices.Equal(outs[0].Shape(), []int{3}) {
						t.Errorf("on %s: outputs %v", b.Name(), outs)
					}
					continue
				}
				if b.Backend == nb && !strings.Contains(err.Error(), c.match) {
					t.Errorf("on %s: %q does not say %q", b.Name(), err, c.match)
				}
				if !strings.Contains(err.Error(), "model cast") {
					t.Errorf("on %s: %q does not name the model", b.Name(), err)
				}
				if len(meter.charges) != 0 || nb.runs != runs {
					t.Errorf("on %s: refused after %d charges and %d native runs", b.Name(), len(meter.charges), nb.runs-runs)
				}
			}
		})
	}
}

// TestOutputTypes refuses a model whose output is not FLOAT before it runs:
// outputs are f32 tensors.
func TestOutputTypes(t *testing.T) {
	y := vi("y", "n")
	y.ElemType = onnx.Int64
	m := mustAdd(t, NewRegistry(), "argmax", onnx.Marshal(graph([]onnx.Node{node("ArgMax", "am", ss("x"), ss("y"))},
		[]onnx.ValueInfo{vi("x", "n", 4)}, []onnx.ValueInfo{y})))
	nb := newNative()
	s, meter := metered(t, nb)
	x := tensor(t, s, sinInput(8), 2, 4)
	meter.charges = nil
	_, err := m.Run(bg, s, []*accel.Tensor{x})
	if !errors.Is(err, accel.ErrUnsupported) || !strings.Contains(err.Error(), `output "y" is declared INT64`) {
		t.Errorf("Run = %v, want %v naming the output and its type", err, accel.ErrUnsupported)
	}
	if nb.runs != 0 || len(meter.charges) != 0 {
		t.Errorf("refused after %d native runs and charges %v", nb.runs, meter.charges)
	}
}

// TestScalarOutputs runs graphs with a rank-0 output, which a run returns
// as a [1] tensor: op by op where the node has the ops, natively otherwise,
// whether the native backend gives the scalar rank 0 or [1].
func TestScalarOutputs(t *testing.T) {
	a, b := []float32{1, 2, 3, 4}, []float32{0.5, -1, 2, 0.25}
	const dot = 0.5 - 2 + 6 + 1
	dotModel := onnx.Marshal(graph([]onnx.Node{node("MatMul", "dot", ss("a", "b"), ss("y"))},
		[]onnx.ValueInfo{vi("a", 4), vi("b", 4)}, []onnx.ValueInfo{vi("y")}))
	sumModel := onnx.Marshal(graph([]onnx.Node{node("ReduceSum", "sum", ss("a", "axes"), ss("y"), aInt("keepdims", 0))},
		[]onnx.ValueInfo{vi("a", 4), vi("b", 4)}, []onnx.ValueInfo{vi("y")}, i64init("axes", 0)))
	scalar := func(shape []int) func([][]float32) ([]accel.HostTensor, error) {
		return func(in [][]float32) ([]accel.HostTensor, error) {
			var sum float32
			for _, v := range in[0] {
				sum += v
			}
			return []accel.HostTensor{{Shape: shape, Data: []float32{sum}}}, nil
		}
	}
	for _, c := range []struct {
		name    string
		data    []byte
		native  bool
		compute func([][]float32) ([]accel.HostTensor, error)
		want    float32
		units   uint64
	}{
		// 64 + 4·(4 + 4 + 1), and a [1x4]·[4x1] matmul.
		{"dot_on_ref", dotModel, false, nil, dot, 100 + 64 + 2*4 + 4*9},
		{"dot_natively", dotModel, true, nil, dot, 100 + 64 + 2*4 + 4*9},
		// An op the node lacks: the estimate, 64 + 4·(4 + 4 + 1).
		{"reduce_sum_rank0", sumModel, true, scalar([]int{}), 10, 100},
		{"reduce_sum_as_1", sumModel, true, scalar([]int{1}), 10, 100},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := mustAdd(t, NewRegistry(), "scalar", c.data)
			if u, err := m.Units([][]int{{4}, {4}}); err != nil || u != c.units {
				t.Errorf("Units = %d, %v; want %d", u, err, c.units)
			}
			var be interface {
				accel.Backend
				count() (int, int)
			} = &refCount{counting{Backend: ref.New(1)}}
			if c.native {
				nb := newNative()
				nb.compute = c.compute
				be = nb
			}
			s, meter := metered(t, be)
			in := []*accel.Tensor{tensor(t, s, a, 4), tensor(t, s, b, 4)}

			// Charged before the run: one unit short, nothing runs.
			meter.limit = meter.spent + c.units - 1
			allocs, runs := be.count()
			if _, err := m.Run(bg, s, in); !errors.Is(err, errBudget) {
				t.Errorf("one unit short: %v, want the budget's error", err)
			}
			if a, r := be.count(); a != allocs || r != runs {
				t.Errorf("one unit short: %d allocations and %d native runs", a-allocs, r-runs)
			}

			meter.limit, meter.charges = math.MaxUint64, nil
			outs, err := m.Run(bg, s, in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(meter.charges, []uint64{c.units}) {
				t.Errorf("charges %v, want one of %d", meter.charges, c.units)
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

	t.Run("reduce_sum_on_ref", func(t *testing.T) {
		m := mustAdd(t, NewRegistry(), "scalar", sumModel)
		s, meter := metered(t, ref.New(1))
		in := []*accel.Tensor{tensor(t, s, a, 4), tensor(t, s, b, 4)}
		meter.charges = nil
		_, err := m.Run(bg, s, in)
		if !errors.Is(err, accel.ErrUnsupported) || !strings.Contains(err.Error(), `"ReduceSum"`) || !strings.Contains(err.Error(), "ref") {
			t.Errorf("Run = %v, want %v naming the op and the backend", err, accel.ErrUnsupported)
		}
		if len(meter.charges) != 0 {
			t.Errorf("the refused run charged %v", meter.charges)
		}
	})
}

// TestEstimate checks the cost of runs the node cannot plan op by op, which
// only a native backend runs: 64 + 4·(elements in, out and in the float
// initializers) + 2·(float initializer elements)·(first input's first
// dimension), each output counted as declared.
func TestEstimate(t *testing.T) {
	w := finit("w", make([]float32, 12), 4, 3)
	softplus := func(outputs ...onnx.ValueInfo) []byte {
		return onnx.Marshal(graph([]onnx.Node{
			node("MatMul", "mm", ss("x", "w"), ss("h")),
			node("Softplus", "softplus", ss("h"), ss("y")),
		}, []onnx.ValueInfo{vi("x", "batch", 4)}, outputs, w))
	}
	for _, c := range []struct {
		name   string
		data   []byte
		shapes [][]int
		want   uint64
	}{
		{"symbolic_bound", softplus(vi("y", "batch", 3)), [][]int{{5, 4}}, 64 + 4*(20+15+12) + 2*12*5},
		{"symbolic_unbound", softplus(vi("y", "rows", 3)), [][]int{{5, 4}}, 64 + 4*(20+3+12) + 2*12*5},
		{"unknown_rank", softplus(onnx.ValueInfo{Name: "y", ElemType: onnx.Float}), [][]int{{5, 4}}, 64 + 4*(20+1+12) + 2*12*5},
		// The node pools in 2-d only; ONNX Runtime pools in 1-d too.
		{"unplannable", onnx.Marshal(graph([]onnx.Node{node("MaxPool", "pool", ss("x"), ss("y"), aInts("kernel_shape", 1))},
			[]onnx.ValueInfo{{Name: "x", ElemType: onnx.Float}}, []onnx.ValueInfo{vi("y", 2, 3, 4)})),
			[][]int{{2, 3, 4}}, 64 + 4*(24+24)},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := mustAdd(t, NewRegistry(), "m", c.data)
			got, err := m.Units(c.shapes)
			if err != nil || got != c.want {
				t.Errorf("Units = %d, %v; want %d", got, err, c.want)
			}
		})
	}

	t.Run("refused_shapes", func(t *testing.T) {
		m := mustAdd(t, NewRegistry(), "m", softplus(vi("y", "batch", 3)))
		for _, shapes := range [][][]int{nil, {{5, 3}}, {{5}}, {{5, 4}, {5, 4}}} {
			if u, err := m.Units(shapes); err == nil || !strings.Contains(err.Error(), "model m") {
				t.Errorf("Units(%v) = %d, %v; want an error naming the model", shapes, u, err)
			}
		}
	})
}

// TestNativeOutputsChecked refuses native outputs other than the graph
// gives, for which the run was not charged, leaving no tensor behind.
func TestNativeOutputsChecked(t *testing.T) {
	m := mustAdd(t, NewRegistry(), "mlp", newRegMLP(1).bytes())
	for _, c := range []struct {
		name string
		out  []accel.HostTensor
		want error
	}{
		{"shape", []accel.HostTensor{{Shape: []int{2, 4}, Data: make([]float32, 8)}}, accel.ErrDevice},
		{"count", []accel.HostTensor{{Shape: []int{2, 3}, Data: make([]float32, 6)}, {Shape: []int{2, 3}, Data: make([]float32, 6)}}, accel.ErrDevice},
		{"data", []accel.HostTensor{{Shape: []int{2, 3}, Data: make([]float32, 5)}}, accel.ErrShape},
	} {
		t.Run(c.name, func(t *testing.T) {
			nb := newNative()
			nb.compute = func([][]float32) ([]accel.HostTensor, error) { return c.out, nil }
			s, _ := metered(t, nb)
			in := tensor(t, s, sinInput(8), 2, 4)
			live := s.LiveTensors()
			outs, err := m.Run(bg, s, []*accel.Tensor{in})
			if !errors.Is(err, c.want) || outs != nil {
				t.Errorf("Run = %v, %v; want %v", outs, err, c.want)
			}
			if s.LiveTensors() != live {
				t.Errorf("%d tensors live after the refused run, %d before", s.LiveTensors(), live)
			}
		})
	}
}

func ExampleModel_Units() {
	m, err := NewRegistry().Add("mlp", onnx.Marshal(denseModel(64, 32, 10)))
	if err != nil {
		panic(err)
	}
	units, err := m.Units([][]int{{16, 64}})
	fmt.Println(units, err)
	// Output: 123568 <nil>
}
