package ort

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/models/onnx"
)

// model encodes a graph of nodes with the given inputs and outputs.
func model(inputs, outputs []onnx.ValueInfo, nodes ...onnx.Node) []byte {
	return onnx.Marshal(&onnx.Model{
		IRVersion: onnx.IRVersion, OpsetVersion: onnx.Opset, ProducerName: producer,
		Graph: onnx.Graph{Name: "test", Nodes: nodes, Inputs: inputs, Outputs: outputs},
	})
}

func value(name string, elem int, dims []onnx.Dim) onnx.ValueInfo {
	return onnx.ValueInfo{Name: name, ElemType: elem, Dims: dims}
}

func node(op string, inputs []string, output string) onnx.Node {
	return onnx.Node{Name: output, OpType: op, Inputs: inputs, Outputs: []string{output}}
}

// rank0 declares a value of rank 0; a nil []onnx.Dim declares none.
var rank0 = []onnx.Dim{}

// runModel runs an encoded model on b with the inputs, named after the
// graph's inputs, in a fresh session.
func runModel(t *testing.T, b *Backend, ctx context.Context, key string, m []byte, inputs map[string]*accel.Tensor) ([]accel.HostTensor, error) {
	t.Helper()
	g, err := onnx.Unmarshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var in []*accel.Tensor
	for _, v := range g.Graph.Inputs {
		in = append(in, inputs[v.Name])
	}
	return b.RunONNX(ctx, key, m, valueNames(g.Graph.Inputs), valueNames(g.Graph.Outputs), in)
}

// TestRunONNXScalarOutputs runs models with rank-0 outputs, declared or
// not, beside ordinary ones: each scalar comes back as a one-element
// tensor of shape [1]. Rank-0 outputs used to panic in the cleanup of the
// run.
func TestRunONNXScalarOutputs(t *testing.T) {
	b := backend(t, 1)
	s := session(t, b)
	a, err := s.FromFloat32([]float32{1, 2, 3}, 3)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.FromFloat32([]float32{4, 5, 6}, 3)
	if err != nil {
		t.Fatal(err)
	}
	vec := onnx.Sym("k")
	dot := node("MatMul", []string{"a", "b"}, "dot")
	sum := node("Add", []string{"a", "b"}, "sum")
	in := []onnx.ValueInfo{value("a", onnx.Float, vec), value("b", onnx.Float, vec)}
	scalar := accel.HostTensor{Shape: []int{1}, Data: []float32{32}}
	vector := accel.HostTensor{Shape: []int{3}, Data: []float32{5, 7, 9}}
	for _, tc := range []struct {
		name    string
		outputs []onnx.ValueInfo
		nodes   []onnx.Node
		want    []accel.HostTensor
	}{
		{"declared rank 0", []onnx.ValueInfo{value("dot", onnx.Float, rank0)}, []onnx.Node{dot}, []accel.HostTensor{scalar}},
		{"undeclared rank", []onnx.ValueInfo{value("dot", onnx.Float, nil)}, []onnx.Node{dot}, []accel.HostTensor{scalar}},
		{"undeclared scalar before a vector", []onnx.ValueInfo{value("dot", onnx.Float, nil), value("sum", onnx.Float, nil)},
			[]onnx.Node{dot, sum}, []accel.HostTensor{scalar, vector}},
		{"vector before a declared scalar", []onnx.ValueInfo{value("sum", onnx.Float, vec), value("dot", onnx.Float, rank0)},
			[]onnx.Node{dot, sum}, []accel.HostTensor{vector, scalar}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := model(in, tc.outputs, tc.nodes...)
			for run := range 2 { // the second run uses what the first learnt
				got, err := runModel(t, b, t.Context(), tc.name, m, map[string]*accel.Tensor{"a": a, "b": c})
				if err != nil {
					t.Fatalf("run %d: %v", run, err)
				}
				if !slices.EqualFunc(got, tc.want, func(g, w accel.HostTensor) bool {
					return slices.Equal(g.Shape, w.Shape) && slices.Equal(g.Data, w.Data)
				}) {
					t.Fatalf("run %d: outputs %v, want %v", run, got, tc.want)
				}
			}
		})
	}
}

// TestRunONNXInputs checks inputs that are not plain f32 tensors: i32
// indices reach ONNX Runtime as int32, and a one-element tensor feeds an
// input declared rank 0.
func TestRunONNXInputs(t *testing.T) {
	b := backend(t, 1)
	s := session(t, b)
	data, err := s.FromFloat32([]float32{10, 11, 12, 13, 14}, 5)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := s.FromInt32([]int32{4, 0, 2, 2}, 4)
	if err != nil {
		t.Fatal(err)
	}
	half, err := s.FromFloat32([]float32{0.5}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		m      []byte
		inputs map[string]*accel.Tensor
		want   accel.HostTensor
	}{
		{"int32 indices", model(
			[]onnx.ValueInfo{value("data", onnx.Float, onnx.Sym("n")), value("idx", onnx.Int32, onnx.Sym("m"))},
			[]onnx.ValueInfo{value("y", onnx.Float, onnx.Sym("m"))},
			node("Gather", []string{"data", "idx"}, "y")),
			map[string]*accel.Tensor{"data": data, "idx": idx},
			accel.HostTensor{Shape: []int{4}, Data: []float32{14, 10, 12, 12}}},
		{"rank-0 input", model(
			[]onnx.ValueInfo{value("x", onnx.Float, onnx.Sym("n")), value("s", onnx.Float, rank0)},
			[]onnx.ValueInfo{value("y", onnx.Float, onnx.Sym("n"))},
			node("Mul", []string{"x", "s"}, "y")),
			map[string]*accel.Tensor{"x": data, "s": half},
			accel.HostTensor{Shape: []int{5}, Data: []float32{5, 5.5, 6, 6.5, 7}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := runModel(t, b, t.Context(), tc.name, tc.m, tc.inputs)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || !slices.Equal(got[0].Shape, tc.want.Shape) || !slices.Equal(got[0].Data, tc.want.Data) {
				t.Fatalf("outputs %v, want [%v]", got, tc.want)
			}
		})
	}
}

// TestRunONNXRefusals checks models the backend cannot run: the error says
// why, and nothing is cached.
func TestRunONNXRefusals(t *testing.T) {
	b := backend(t, 1)
	s := session(t, b)
	ints, err := s.FromInt32([]int32{1, 2}, 2)
	if err != nil {
		t.Fatal(err)
	}
	floats, err := s.FromFloat32([]float32{1, 2, 3}, 3)
	if err != nil {
		t.Fatal(err)
	}
	ident := func(elem int) []byte {
		return model([]onnx.ValueInfo{value("x", elem, onnx.Sym("n"))}, []onnx.ValueInfo{value("y", elem, onnx.Sym("n"))},
			node("Identity", []string{"x"}, "y"))
	}
	for _, tc := range []struct {
		name   string
		m      []byte
		inputs map[string]*accel.Tensor
		want   error
	}{
		{"not a model", []byte("not a model"), nil, accel.ErrInvalid},
		{"int32 output", ident(onnx.Int32), map[string]*accel.Tensor{"x": ints}, accel.ErrUnsupported},
		{"data the model refuses", model(
			[]onnx.ValueInfo{value("a", onnx.Float, onnx.Sym("n")), value("b", onnx.Float, onnx.Sym("n"))},
			[]onnx.ValueInfo{value("y", onnx.Float, onnx.Sym("n"))},
			node("Add", []string{"a", "b"}, "y")),
			map[string]*accel.Tensor{"a": floats, "b": ints}, accel.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.inputs == nil {
				_, err = b.RunONNX(t.Context(), tc.name, tc.m, []string{"x"}, []string{"y"}, []*accel.Tensor{floats})
			} else {
				_, err = runModel(t, b, t.Context(), tc.name, tc.m, tc.inputs)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if st := b.CacheStats().Models; st.Sessions != 1 || st.Misses != 3 {
		t.Fatalf("model cache %+v: want only the valid model kept, after 3 misses", st)
	}
}

// TestRunONNXCache checks that a model's session is created once and
// found again by its key.
func TestRunONNXCache(t *testing.T) {
	b := backend(t, 1)
	s := session(t, b)
	x, err := s.FromFloat32([]float32{-1, 2}, 2)
	if err != nil {
		t.Fatal(err)
	}
	m := model([]onnx.ValueInfo{value("x", onnx.Float, onnx.Sym("n"))}, []onnx.ValueInfo{value("y", onnx.Float, onnx.Sym("n"))},
		node("Relu", []string{"x"}, "y"))
	for range 3 {
		got, err := runModel(t, b, t.Context(), "relu", m, map[string]*accel.Tensor{"x": x})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got[0].Data, []float32{0, 2}) {
			t.Fatalf("relu gave %v", got[0].Data)
		}
	}
	want := CacheCounts{Sessions: 1, Capacity: DefaultModelSessions, Hits: 2, Misses: 1}
	if st := b.CacheStats().Models; st != want {
		t.Fatalf("model cache %+v, want %+v", st, want)
	}
	if st := b.CacheStats().Ops; st.Misses != 0 {
		t.Fatalf("a model run used the operations' cache: %+v", st)
	}
}

// TestRunONNXDeadline runs a model of chained products that takes seconds
// under a short deadline: ONNX Runtime must stop it between nodes.
func TestRunONNXDeadline(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 100 MB")
	}
	const n, layers = 2048, 24
	b := backend(t, 0)
	s := session(t, b)
	rng := rand.New(rand.NewPCG(31, 32))
	x, w := input(t, s, rng, n, n), input(t, s, rng, n, n)
	square := onnx.Sym("n", "n")
	var nodes []onnx.Node
	prev := "x"
	for i := range layers {
		out := "h" + string(rune('a'+i))
		if i == layers-1 {
			out = "y"
		}
		nodes = append(nodes, node("MatMul", []string{prev, "w"}, out))
		prev = out
	}
	m := model([]onnx.ValueInfo{value("x", onnx.Float, square), value("w", onnx.Float, square)},
		[]onnx.ValueInfo{value("y", onnx.Float, square)}, nodes...)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := runModel(t, b, ctx, "chain", m, map[string]*accel.Tensor{"x": x, "w": w})
	took := time.Since(start)
	t.Logf("returned after %v", took)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("model under a deadline: %v, want DeadlineExceeded", err)
	}
	if want := "interrupted: context deadline exceeded"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	// Generous: the deadline is 300 ms (the session's creation included),
	// and ONNX Runtime stops between nodes.
	if took > 3*time.Second {
		t.Errorf("returned %v after the start, long after the deadline", took)
	}
}
