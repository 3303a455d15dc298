package models

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/models/onnx"
)

// scalarConst is a Constant node of one FLOAT of rank 0, as PyTorch's
// exporter writes ReLU6's bounds.
func scalarConst(out string, v float32) onnx.Node {
	return onnx.Node{Name: out, OpType: "Constant", Outputs: ss(out), Attrs: []onnx.Attribute{{
		Name: "value", Type: onnx.AttrTensor, T: &onnx.Tensor{Dims: []int64{}, DataType: onnx.Float, Floats: []float32{v}},
	}}}
}

// TestClipGlobalAveragePool runs Constant → Clip (ReLU6) → Add of a folded
// Constant tensor → GlobalAveragePool → Flatten, as MobileNetV2's export
// ends, and compares it with the same accel operations called by hand.
func TestClipGlobalAveragePool(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const n, c, h, w = 2, 3, 5, 7
	shift := floats(r, n*c*h*w)
	m := graph([]onnx.Node{
		scalarConst("lo", 0),
		scalarConst("hi", 6),
		{Name: "shift", OpType: "Constant", Outputs: ss("shift"), Attrs: []onnx.Attribute{{
			Name: "value", Type: onnx.AttrTensor, T: &onnx.Tensor{Dims: []int64{n, c, h, w}, DataType: onnx.Float, Floats: shift},
		}}},
		node("Clip", "relu6", ss("x", "lo", "hi"), ss("c")),
		node("Add", "add", ss("c", "shift"), ss("s")),
		node("GlobalAveragePool", "gap", ss("s"), ss("g")),
		node("Flatten", "flat", ss("g"), ss("y"), aInt("axis", 1)),
	}, []onnx.ValueInfo{vi("x", n, c, h, w)}, []onnx.ValueInfo{vi("y")})
	p, err := Compile(m)
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(t, accel.Limits{})
	in := floats(r, n*c*h*w)
	for i := range in {
		in[i] *= 5 // beyond both bounds often
	}
	in[3] = float32(math.NaN())
	x := tensor(t, s, in, n, c, h, w)
	got := run(t, s, p, x)[0]
	if shape := got.Shape(); len(shape) != 2 || shape[0] != n || shape[1] != c {
		t.Fatalf("output %v, want [%d %d]", shape, n, c)
	}
	clipped := must(t)(s.Clip(bg, x, 0, 6))
	sum := must(t)(s.Add(bg, clipped, tensor(t, s, shift, n, c, h, w)))
	want := reshaped(t, s, must(t)(s.GlobalAvgPool(bg, sum)), n, c)
	sameBits(t, "y", got, s, want, s)
	g, err := s.Float32(got)
	if err != nil {
		t.Fatal(err)
	}
	if g[0] == g[0] || g[1] != g[1] {
		t.Errorf("the NaN of plane 0 gave %v, %v: want NaN in plane 0 only", g[0], g[1])
	}

	// The charge is the plan's: a clip, an add, a global_avgpool, and the
	// folded constants as initializers.
	units, err := p.Units([][]int{{n, c, h, w}})
	if err != nil {
		t.Fatal(err)
	}
	x4 := [][]int{{n, c, h, w}}
	want4 := accel.CallUnits + 4*uint64(n*c*h*w+n*c+2+n*c*h*w) +
		accel.Clip.Units(x4, x4, accel.ClipParams{Min: 0, Max: 6}) +
		accel.Add.Units([][]int{{n, c, h, w}, {n, c, h, w}}, x4, accel.NoParams{}) +
		accel.GlobalAvgPool.Units(x4, [][]int{{n, c, 1, 1}}, accel.NoParams{})
	if units != want4 {
		t.Errorf("units %d, want %d", units, want4)
	}
}

// TestClipForms compiles Clip's bounds in each form ONNX gives them.
func TestClipForms(t *testing.T) {
	x := []onnx.ValueInfo{vi("x", 4)}
	y := []onnx.ValueInfo{vi("y")}
	in := []float32{-10, -0.5, 0.5, 10}
	for _, c := range []struct {
		name  string
		opset int64
		nodes []onnx.Node
		inits []onnx.Tensor
		want  []float32
	}{
		{"initializers", 17, []onnx.Node{node("Clip", "c", ss("x", "lo", "hi"), ss("y"))},
			[]onnx.Tensor{finit("lo", []float32{-1}), finit("hi", []float32{1}, 1)}, []float32{-1, -0.5, 0.5, 1}},
		{"max-only", 13, []onnx.Node{scalarConst("hi", 0.25), node("Clip", "c", ss("x", "", "hi"), ss("y"))},
			nil, []float32{-10, -0.5, 0.25, 0.25}},
		{"min-only", 13, []onnx.Node{scalarConst("lo", 0), node("Clip", "c", ss("x", "lo"), ss("y"))},
			nil, []float32{0, 0, 0.5, 10}},
		{"no-bounds", 13, []onnx.Node{node("Clip", "c", ss("x"), ss("y"))}, nil, in},
		{"opset-6-attributes", 6, []onnx.Node{node("Clip", "c", ss("x"), ss("y"), aFloat("min", -2), aFloat("max", 0))},
			nil, []float32{-2, -0.5, 0, 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := graph(c.nodes, x, y, c.inits...)
			m.OpsetVersion = c.opset
			p, err := Compile(m)
			if err != nil {
				t.Fatal(err)
			}
			s := newSession(t, accel.Limits{})
			got, err := s.Float32(run(t, s, p, tensor(t, s, in, 4))[0])
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("got %v, want %v", got, c.want)
				}
			}
		})
	}
}

// TestCompileRefusesPoolForms checks that the forms of Constant, Clip and
// GlobalAveragePool the node cannot run are refused at compile time, naming
// what is wrong.
func TestCompileRefusesPoolForms(t *testing.T) {
	x := []onnx.ValueInfo{vi("x", 4)}
	x3 := []onnx.ValueInfo{vi("x", 1, 4, 4)}
	y := []onnx.ValueInfo{vi("y")}
	for _, c := range []struct {
		name  string
		m     *onnx.Model
		err   error
		match string
	}{
		{"clip-bound-is-input", graph([]onnx.Node{node("Clip", "c", ss("x", "lo"), ss("y"))},
			[]onnx.ValueInfo{vi("x", 4), {Name: "lo", ElemType: onnx.Float, Dims: []onnx.Dim{}}}, y),
			accel.ErrUnsupported, "not a constant"},
		{"clip-bound-two-values", graph([]onnx.Node{node("Clip", "c", ss("x", "lo"), ss("y"))}, x, y, finit("lo", []float32{0, 1}, 2)),
			accel.ErrInvalid, "must be one FLOAT"},
		{"clip-nan-bound", graph([]onnx.Node{scalarConst("hi", float32(math.NaN())), node("Clip", "c", ss("x", "", "hi"), ss("y"))}, x, y),
			accel.ErrInvalid, "NaN"},
		{"clip-attribute-at-opset-17", graph([]onnx.Node{node("Clip", "c", ss("x"), ss("y"), aFloat("min", 0))}, x, y),
			accel.ErrUnsupported, `"min"`},
		{"constant-string", graph([]onnx.Node{
			{Name: "k", OpType: "Constant", Outputs: ss("k"), Attrs: []onnx.Attribute{aString("value_string", "a")}},
			node("Relu", "r", ss("x"), ss("y"))}, x, y),
			accel.ErrUnsupported, "value_string"},
		{"constant-no-value", graph([]onnx.Node{{Name: "k", OpType: "Constant", Outputs: ss("k")}, node("Relu", "r", ss("x"), ss("y"))}, x, y),
			accel.ErrInvalid, "one value attribute"},
		{"constant-defines-input", graph([]onnx.Node{scalarConst("x", 1), node("Relu", "r", ss("x"), ss("y"))}, x, y),
			accel.ErrInvalid, "defined twice"},
		{"constant-short-data", graph([]onnx.Node{{Name: "k", OpType: "Constant", Outputs: ss("k"), Attrs: []onnx.Attribute{{
			Name: "value", Type: onnx.AttrTensor, T: &onnx.Tensor{Dims: []int64{3}, DataType: onnx.Float, Floats: []float32{1}}}}},
			node("Add", "a", ss("x", "k"), ss("y"))}, x, y),
			accel.ErrInvalid, "1 values for dims [3]"},
		{"global-average-pool-3d", graph([]onnx.Node{node("GlobalAveragePool", "g", ss("x"), ss("y"))}, x3, y),
			accel.ErrUnsupported, "only 2-d"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(c.m)
			if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.match) {
				t.Fatalf("Compile: %v, want %v naming %q", err, c.err, c.match)
			}
		})
	}
}
