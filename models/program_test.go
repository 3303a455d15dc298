package models

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/models/onnx"
)

var bg = context.Background()

func newSession(t testing.TB, limits accel.Limits) *accel.Session {
	t.Helper()
	s, err := accel.NewSession(ref.New(0), accel.Strict, limits, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// vi declares a float value; an int dim is fixed, a string one symbolic.
func vi(name string, dims ...any) onnx.ValueInfo {
	v := onnx.ValueInfo{Name: name, ElemType: onnx.Float, Dims: []onnx.Dim{}}
	for _, d := range dims {
		switch d := d.(type) {
		case int:
			v.Dims = append(v.Dims, onnx.Dim{Value: int64(d)})
		case string:
			v.Dims = append(v.Dims, onnx.Dim{Param: d})
		}
	}
	return v
}

func floats(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func finit(name string, data []float32, dims ...int64) onnx.Tensor {
	return onnx.Tensor{Name: name, Dims: dims, DataType: onnx.Float, Floats: data}
}

func i64init(name string, v ...int64) onnx.Tensor {
	return onnx.Tensor{Name: name, Dims: []int64{int64(len(v))}, DataType: onnx.Int64, Int64s: v}
}

func node(op, name string, in, out []string, attrs ...onnx.Attribute) onnx.Node {
	return onnx.Node{Name: name, OpType: op, Inputs: in, Outputs: out, Attrs: attrs}
}

func aInt(name string, v int64) onnx.Attribute {
	return onnx.Attribute{Name: name, Type: onnx.AttrInt, I: v}
}

func aInts(name string, v ...int64) onnx.Attribute {
	return onnx.Attribute{Name: name, Type: onnx.AttrInts, Ints: v}
}

func aFloat(name string, v float32) onnx.Attribute {
	return onnx.Attribute{Name: name, Type: onnx.AttrFloat, F: v}
}

func aString(name, v string) onnx.Attribute {
	return onnx.Attribute{Name: name, Type: onnx.AttrString, S: v}
}

func ss(v ...string) []string { return v }

func graph(nodes []onnx.Node, inputs, outputs []onnx.ValueInfo, inits ...onnx.Tensor) *onnx.Model {
	return &onnx.Model{
		IRVersion:    onnx.IRVersion,
		OpsetVersion: onnx.Opset,
		Graph:        onnx.Graph{Name: "test", Nodes: nodes, Inputs: inputs, Outputs: outputs, Initializers: inits},
	}
}

func tensor(t testing.TB, s *accel.Session, data []float32, shape ...int) *accel.Tensor {
	t.Helper()
	x, err := s.FromFloat32(data, shape...)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// must unwraps a Session op's result in hand-written computations.
func must(t testing.TB) func(*accel.Tensor, error) *accel.Tensor {
	return func(x *accel.Tensor, err error) *accel.Tensor {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
}

func reshaped(t testing.TB, s *accel.Session, x *accel.Tensor, shape ...int) *accel.Tensor {
	t.Helper()
	if err := s.Reshape(x, shape); err != nil {
		t.Fatal(err)
	}
	return x
}

// run runs p, checking that the run adds exactly its outputs to the session
// and leaves the inputs' shapes alone.
func run(t *testing.T, s *accel.Session, p *Program, in ...*accel.Tensor) []*accel.Tensor {
	t.Helper()
	shapes := make([][]int, len(in))
	for i, x := range in {
		shapes[i] = slices.Clone(x.Shape())
	}
	live, bytes := s.LiveTensors(), s.LiveBytes()
	outs, err := p.Run(bg, s, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != len(p.Outputs()) {
		t.Fatalf("%d outputs, want %d", len(outs), len(p.Outputs()))
	}
	var added int64
	for _, o := range outs {
		added += o.Bytes()
		if slices.Contains(in, o) {
			t.Errorf("output %s is an input", o)
		}
	}
	if got, want := s.LiveTensors(), live+len(outs); got != want {
		t.Errorf("%d live tensors after the run, want %d (before) + %d (outputs)", got, live, len(outs))
	}
	if got, want := s.LiveBytes(), bytes+added; got != want {
		t.Errorf("%d live bytes after the run, want %d", got, want)
	}
	for i, x := range in {
		if !slices.Equal(x.Shape(), shapes[i]) {
			t.Errorf("input %d reshaped from %v to %v", i, shapes[i], x.Shape())
		}
	}
	return outs
}

// sameBits compares two tensors' shapes and bits.
func sameBits(t *testing.T, what string, got *accel.Tensor, gs *accel.Session, want *accel.Tensor, ws *accel.Session) {
	t.Helper()
	if !slices.Equal(got.Shape(), want.Shape()) {
		t.Errorf("%s: shape %v, want %v", what, got.Shape(), want.Shape())
		return
	}
	g, err := gs.Float32(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := ws.Float32(want)
	if err != nil {
		t.Fatal(err)
	}
	for i := range g {
		if math.Float32bits(g[i]) != math.Float32bits(w[i]) {
			t.Errorf("%s: element %d is %v (%#08x), want %v (%#08x)", what, i, g[i], math.Float32bits(g[i]), w[i], math.Float32bits(w[i]))
			return
		}
	}
}

func TestMLP(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	w1, b1 := floats(r, 8*4), floats(r, 8)
	w2, b2 := floats(r, 8*3), floats(r, 3)
	inits := []onnx.Tensor{finit("w1", w1, 8, 4), finit("b1", b1, 8), finit("w2", w2, 8, 3), finit("b2", b2, 3)}
	nodes := []onnx.Node{
		node("Gemm", "fc1", ss("x", "w1", "b1"), ss("h"), aInt("transB", 1), aFloat("alpha", 1)),
		node("Relu", "relu", ss("h"), ss("hr")),
		node("Gemm", "fc2", ss("hr", "w2", "b2"), ss("logits"), aFloat("beta", 1)),
		node("Softmax", "softmax", ss("logits"), ss("y")),
	}
	reversed := slices.Clone(nodes)
	slices.Reverse(reversed)
	opset11 := slices.Clone(nodes)
	opset11[3] = node("Softmax", "softmax", ss("logits"), ss("y")) // axis 1 by default: the last of 2

	for _, c := range []struct {
		name   string
		nodes  []onnx.Node
		opset  int64
		batch  int
		inputs []onnx.ValueInfo
	}{
		{"batch1", nodes, onnx.Opset, 1, []onnx.ValueInfo{vi("x", "batch", 4)}},
		{"batch5", nodes, onnx.Opset, 5, []onnx.ValueInfo{vi("x", "batch", 4)}},
		{"unordered", reversed, onnx.Opset, 3, []onnx.ValueInfo{vi("x", "batch", 4)}},
		{"opset11", opset11, 11, 2, []onnx.ValueInfo{vi("x", "batch", 4)}},
		{"fixed_batch", nodes, onnx.Opset, 2, []onnx.ValueInfo{vi("x", 2, 4)}},
		{"unknown_rank", nodes, onnx.Opset, 2, []onnx.ValueInfo{{Name: "x", ElemType: onnx.Float}}},
		{"initializer_inputs", nodes, onnx.Opset, 2, []onnx.ValueInfo{vi("x", "batch", 4), vi("w1", 8, 4), vi("b2", 3)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := graph(c.nodes, c.inputs, []onnx.ValueInfo{vi("y", "batch", 3)}, inits...)
			m.OpsetVersion = c.opset
			p, err := Compile(m)
			if err != nil {
				t.Fatal(err)
			}
			if in := p.Inputs(); len(in) != 1 || in[0].Name != "x" {
				t.Fatalf("inputs %+v, want just x", in)
			}
			xd := floats(r, c.batch*4)
			s := newSession(t, accel.Limits{})
			outs := run(t, s, p, tensor(t, s, xd, c.batch, 4))

			h := newSession(t, accel.Limits{})
			do := must(t)
			x := tensor(t, h, xd, c.batch, 4)
			y := do(h.MatMul(bg, x, tensor(t, h, w1, 8, 4), accel.MatMulParams{TransB: true}))
			y = do(h.AddBias(bg, y, tensor(t, h, b1, 8), 1))
			y = do(h.Relu(bg, y))
			y = do(h.MatMul(bg, y, tensor(t, h, w2, 8, 3), accel.MatMulParams{}))
			y = do(h.AddBias(bg, y, tensor(t, h, b2, 3), 1))
			y = do(h.Softmax(bg, y))
			sameBits(t, "y", outs[0], s, y, h)
		})
	}
}

func TestCNN(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	w, b := floats(r, 4*1*3*3), floats(r, 4)
	fw, fb := floats(r, 5*36), floats(r, 5)
	convAttrs := []onnx.Attribute{aInts("kernel_shape", 3, 3), aInts("pads", 1, 1, 1, 1), aInts("strides", 1, 1), aInts("dilations", 1, 1), aInt("group", 1), aString("auto_pad", "NOTSET")}
	pool := node("MaxPool", "pool", ss("r", ""), ss("p", ""), aInts("kernel_shape", 2, 2), aInts("strides", 2, 2), aInt("ceil_mode", 0))
	head := []onnx.Node{
		node("Gemm", "fc", ss("f", "fw"), ss("g"), aInt("transB", 1)),
		node("Add", "fc_bias", ss("g", "fb"), ss("y")),
	}
	inits := []onnx.Tensor{finit("w", w, 4, 1, 3, 3), finit("fw", fw, 5, 36), finit("fb", fb, 5)}

	for _, c := range []struct {
		name  string
		nodes []onnx.Node
		inits []onnx.Tensor
	}{
		{"conv_bias_flatten", append([]onnx.Node{
			node("Conv", "conv", ss("x", "w", "b"), ss("c"), convAttrs...),
			node("Relu", "relu", ss("c"), ss("r")),
			pool,
			node("Flatten", "flat", ss("p"), ss("f")),
		}, head...), []onnx.Tensor{finit("b", b, 4)}},
		{"add_bias_reshape", append([]onnx.Node{
			node("Conv", "conv", ss("x", "w"), ss("c0"), convAttrs[:2]...),
			node("Add", "conv_bias", ss("c0", "b"), ss("c")),
			node("Relu", "relu", ss("c"), ss("r")),
			pool,
			node("Reshape", "flat", ss("p", "shape"), ss("f")),
		}, head...), []onnx.Tensor{finit("b", b, 4, 1, 1), i64init("shape", 0, -1)}},
		{"bias_first_identity", []onnx.Node{
			node("Conv", "conv", ss("x", "w"), ss("c0"), convAttrs[1]),
			node("Add", "conv_bias", ss("b", "c0"), ss("c")),
			node("Relu", "relu", ss("c"), ss("r")),
			pool,
			node("Identity", "id", ss("p"), ss("pi")),
			node("Reshape", "flat", ss("pi", "shape"), ss("f0")),
			node("Flatten", "flat2", ss("f0"), ss("f"), aInt("axis", -1)),
			node("Gemm", "fc", ss("f", "fw"), ss("g"), aInt("transB", 1)),
			node("Add", "fc_bias", ss("fb", "g"), ss("y")),
		}, []onnx.Tensor{finit("b", b, 1, 4, 1, 1), i64init("shape", -1, 36)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := graph(c.nodes, []onnx.ValueInfo{vi("x", "n", 1, 6, 6)}, []onnx.ValueInfo{vi("y", "n", 5)}, append(slices.Clone(inits), c.inits...)...)
			p, err := Compile(m)
			if err != nil {
				t.Fatal(err)
			}
			xd := floats(r, 2*36)
			s := newSession(t, accel.Limits{})
			outs := run(t, s, p, tensor(t, s, xd, 2, 1, 6, 6))

			h := newSession(t, accel.Limits{})
			do := must(t)
			x := tensor(t, h, xd, 2, 1, 6, 6)
			y := do(h.Conv2D(bg, x, tensor(t, h, w, 4, 1, 3, 3), tensor(t, h, b, 4), accel.Conv2DParams{
				StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, DilationH: 1, DilationW: 1, Groups: 1,
			}))
			y = do(h.Relu(bg, y))
			y = do(h.MaxPool2D(bg, y, accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2}))
			y = reshaped(t, h, y, 2, 36)
			y = do(h.MatMul(bg, y, tensor(t, h, fw, 5, 36), accel.MatMulParams{TransB: true}))
			y = do(h.AddBias(bg, y, tensor(t, h, fb, 5), 1))
			sameBits(t, "y", outs[0], s, y, h)
		})
	}
}

// TestViews covers the ways a value is given another shape: in place when
// nothing else reads it, by copying when something does or when it is the
// caller's, and by aliasing for Identity.
func TestViews(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	xd, bd, cd, ld := floats(r, 12), floats(r, 3), floats(r, 3), floats(r, 2)
	m := graph([]onnx.Node{
		node("Relu", "relu", ss("x"), ss("r")),
		node("Flatten", "flat", ss("r"), ss("f"), aInt("axis", 2)), // r is read later: a copy
		node("Add", "add_input", ss("r", "b"), ss("a1")),           // b is the caller's: a copy
		node("Add", "add_c", ss("r", "c"), ss("a2")),               // c is read again: reshaped and restored
		node("Add", "add_c_again", ss("c", "a2"), ss("a3")),        // c's last use: reshaped for good
		node("Add", "add_last", ss("a3", "l"), ss("a4")),           // a bias along the last axis
		node("Identity", "id", ss("a4"), ss("i4")),
		node("Reshape", "view", ss("i4", "shape"), ss("y")), // the last reader: in place
		node("Reshape", "view_x", ss("x", "shape"), ss("xr")),
		node("Identity", "id2", ss("a1"), ss("i1")),
		node("Relu", "unused", ss("a1"), ss("dead")),
	}, []onnx.ValueInfo{vi("x", 2, 3, 2), vi("b", 3, 1)},
		[]onnx.ValueInfo{vi("f", 6, 2), vi("a1", 2, 3, 2), vi("y", 6, 2), vi("xr", 6, 2), vi("x", 2, 3, 2), vi("i1", 2, 3, 2), vi("c", 1, 3, 1)},
		finit("c", cd, 1, 3, 1), finit("l", ld, 2), i64init("shape", 6, -1))
	p, err := Compile(m)
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(t, accel.Limits{})
	outs := run(t, s, p, tensor(t, s, xd, 2, 3, 2), tensor(t, s, bd, 3, 1))

	h := newSession(t, accel.Limits{})
	do := must(t)
	x := tensor(t, h, xd, 2, 3, 2)
	rl := do(h.Relu(bg, x))
	b, c, l := tensor(t, h, bd, 3), tensor(t, h, cd, 3), tensor(t, h, ld, 2)
	a1 := do(h.AddBias(bg, rl, b, 1))
	a3 := do(h.AddBias(bg, do(h.AddBias(bg, rl, c, 1)), c, 1))
	a4 := do(h.AddBias(bg, a3, l, 2))
	for i, want := range []*accel.Tensor{
		reshaped(t, h, do(h.Relu(bg, x)), 6, 2),
		a1,
		reshaped(t, h, a4, 6, 2),
		tensor(t, h, xd, 6, 2),
		x,
		a1,
		tensor(t, h, cd, 1, 3, 1),
	} {
		sameBits(t, p.Outputs()[i].Name, outs[i], s, want, h)
	}
}

func TestAddForms(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const (
		bias      = iota // an add_bias along axis
		same             // an add of two tensors of one shape
		broadcast        // a binary add
		runShape         // shapes that do not broadcast, refused when the run is planned
	)
	for _, c := range []struct {
		name   string
		x, b   []int
		bInit  bool
		bFirst bool
		want   int
		axis   int
	}{
		{name: "last_axis", x: []int{2, 3, 4}, b: []int{4}, want: bias, axis: 2},
		{name: "channel", x: []int{2, 3, 4, 5}, b: []int{3, 1, 1}, want: bias, axis: 1},
		{name: "leading_ones", x: []int{2, 3, 4, 5}, b: []int{1, 3, 1, 1}, bInit: true, want: bias, axis: 1},
		{name: "first_axis", x: []int{3, 4}, b: []int{3, 1}, bInit: true, bFirst: true, want: bias, axis: 0},
		{name: "one_element", x: []int{3, 1}, b: []int{1}, want: bias, axis: 1},
		{name: "same_vector", x: []int{3}, b: []int{3}, want: same},
		{name: "full_values", x: []int{2, 3}, b: []int{2, 3}, want: same},
		{name: "init_same_shape", x: []int{2, 3}, b: []int{2, 3}, bInit: true, want: same},
		{name: "init_first_same_shape", x: []int{2, 3, 2}, b: []int{2, 3, 2}, bInit: true, bFirst: true, want: same},
		{name: "scalar_broadcast", x: []int{2, 3}, b: []int{1}, want: broadcast},
		{name: "two_axes", x: []int{2, 3, 4}, b: []int{3, 4}, want: broadcast},
		{name: "outer", x: []int{2, 1}, b: []int{1, 3}, bFirst: true, want: broadcast},
		{name: "mismatch", x: []int{2, 3}, b: []int{2}, want: runShape},
		{name: "init_other_shape", x: []int{2, 4}, b: []int{3, 4}, bInit: true, want: runShape},
		{name: "init_two_axes", x: []int{2, 3, 4}, b: []int{3, 4}, bInit: true, want: broadcast},
		{name: "init_higher_rank", x: []int{3}, b: []int{1, 3}, bInit: true, want: broadcast},
	} {
		t.Run(c.name, func(t *testing.T) {
			xd, bd := floats(r, product(c.x)), floats(r, product(c.b))
			dims := func(d []int) []any {
				v := make([]any, len(d))
				for i := range d {
					v[i] = "d" + string(rune('0'+i)) // symbolic: decided at run time
				}
				return v
			}
			ins := ss("x", "b")
			if c.bFirst {
				ins = ss("b", "x")
			}
			inputs := []onnx.ValueInfo{vi("x", dims(c.x)...)}
			var inits []onnx.Tensor
			if c.bInit {
				d := make([]int64, len(c.b))
				for i, v := range c.b {
					d[i] = int64(v)
				}
				inits = append(inits, finit("b", bd, d...))
			} else {
				inputs = append(inputs, vi("b", dims(c.b)...))
			}
			p, err := Compile(graph([]onnx.Node{node("Add", "add", ins, ss("y"))}, inputs, []onnx.ValueInfo{vi("y")}, inits...))
			if err != nil {
				t.Fatal(err)
			}
			s := newSession(t, accel.Limits{})
			in := []*accel.Tensor{tensor(t, s, xd, c.x...)}
			if !c.bInit {
				in = append(in, tensor(t, s, bd, c.b...))
			}
			if c.want == runShape {
				live := s.LiveTensors()
				if _, err := p.Run(bg, s, in); !errors.Is(err, accel.ErrShape) {
					t.Fatalf("Run: %v, want %v", err, accel.ErrShape)
				}
				if s.LiveTensors() != live {
					t.Errorf("%d live tensors after a failed run, want %d", s.LiveTensors(), live)
				}
				return
			}
			outs := run(t, s, p, in...)
			h := newSession(t, accel.Limits{})
			var want *accel.Tensor
			a, b := tensor(t, h, xd, c.x...), tensor(t, h, bd, c.b...)
			if c.bFirst {
				a, b = b, a
			}
			switch c.want {
			case same:
				want = must(t)(h.Add(bg, a, b))
			case broadcast:
				want = must(t)(h.Binary(bg, a, b, accel.BinaryAdd))
			default:
				want = must(t)(h.AddBias(bg, tensor(t, h, xd, c.x...), tensor(t, h, bd, len(bd)), c.axis))
			}
			sameBits(t, "y", outs[0], s, want, h)
		})
	}
}

func TestCompileUnsupported(t *testing.T) {
	x2 := []onnx.ValueInfo{vi("x", "n", 4)}
	x4 := []onnx.ValueInfo{vi("x", "n", 1, 6, 6)}
	y := []onnx.ValueInfo{vi("y")}
	w := finit("w", make([]float32, 4*4), 4, 4)
	cw := finit("w", make([]float32, 9), 1, 1, 3, 3)
	pool := func(attrs ...onnx.Attribute) []onnx.Node {
		return []onnx.Node{node("MaxPool", "pool", ss("x"), ss("y"), append([]onnx.Attribute{aInts("kernel_shape", 2, 2)}, attrs...)...)}
	}
	for _, c := range []struct {
		name  string
		m     *onnx.Model
		match string
	}{
		{"lstm", graph([]onnx.Node{node("LSTM", "lstm_1", ss("x", "w"), ss("y", "", "c"))}, x2, y, w), `onnx op "LSTM" (node "lstm_1") is unsupported`},
		{"domain", graph([]onnx.Node{{Name: "r", OpType: "Relu", Domain: "com.example", Inputs: ss("x"), Outputs: ss("y")}}, x2, y), `"com.example.Relu"`},
		{"gemm_alpha", graph([]onnx.Node{node("Gemm", "g", ss("x", "w"), ss("y"), aFloat("alpha", 0.5))}, x2, y, w), "alpha"},
		{"gemm_beta", graph([]onnx.Node{node("Gemm", "g", ss("x", "w", "c"), ss("y"), aFloat("beta", 2))}, x2, y, w, finit("c", make([]float32, 4), 4)), "beta"},
		{"gemm_unknown_attr", graph([]onnx.Node{node("Gemm", "g", ss("x", "w"), ss("y"), aInt("broadcast", 1))}, x2, y, w), `attribute "broadcast"`},
		{"conv_auto_pad", graph([]onnx.Node{node("Conv", "c", ss("x", "w"), ss("y"), aString("auto_pad", "SAME_UPPER"))}, x4, y, cw), "SAME_UPPER"},
		{"conv_1d_kernel", graph([]onnx.Node{node("Conv", "c", ss("x", "w"), ss("y"), aInts("kernel_shape", 3))}, x4, y, cw), "kernel_shape"},
		{"conv_1d_weights", graph([]onnx.Node{node("Conv", "c", ss("x", "w"), ss("y"))}, []onnx.ValueInfo{vi("x", 1, 1, 6)}, y, finit("w", make([]float32, 3), 1, 1, 3)), "2-d convolution"},
		{"conv_3d_strides", graph([]onnx.Node{node("Conv", "c", ss("x", "w"), ss("y"), aInts("strides", 1, 1, 1))}, x4, y, cw), "strides"},
		{"conv_unknown_attr", graph([]onnx.Node{node("Conv", "c", ss("x", "w"), ss("y"), aInt("foo", 1))}, x4, y, cw), `attribute "foo"`},
		{"maxpool_ceil", graph(pool(aInt("ceil_mode", 1)), x4, y), "ceil_mode"},
		{"maxpool_dilations", graph(pool(aInts("dilations", 2, 2)), x4, y), "dilations"},
		{"maxpool_storage_order", graph(pool(aInt("storage_order", 1)), x4, y), "storage_order"},
		{"maxpool_indices", graph([]onnx.Node{node("MaxPool", "pool", ss("x"), ss("y", "i"), aInts("kernel_shape", 2, 2))}, x4, y), "outputs"},
		{"maxpool_3d", graph([]onnx.Node{node("MaxPool", "pool", ss("x"), ss("y"), aInts("kernel_shape", 2, 2, 2))}, []onnx.ValueInfo{vi("x", 1, 1, 4, 4, 4)}, y), "2-d pooling"},
		{"maxpool_auto_pad", graph(pool(aString("auto_pad", "VALID")), x4, y), "auto_pad"},
		{"add_scalar", graph([]onnx.Node{node("Add", "add", ss("x", "s"), ss("y"))}, x2, y, finit("s", []float32{1})), "scalar"},
		{"reshape_dynamic", graph([]onnx.Node{node("Reshape", "rs", ss("x", "shape"), ss("y"))}, append(slices.Clone(x2), vi("shape", 2)), y), "int64 initializer"},
		{"reshape_float_shape", graph([]onnx.Node{node("Reshape", "rs", ss("x", "shape"), ss("y"))}, x2, y, finit("shape", []float32{-1}, 1)), "int64 initializer"},
		{"reshape_allowzero", graph([]onnx.Node{node("Reshape", "rs", ss("x", "shape"), ss("y"), aInt("allowzero", 1))}, x2, y, i64init("shape", 0, 4)), "allowzero"},
		{"reshape_scalar", graph([]onnx.Node{node("Reshape", "rs", ss("x", "shape"), ss("y"))}, x2, y, onnx.Tensor{Name: "shape", Dims: []int64{0}, DataType: onnx.Int64}), "rank 1 to"},
		{"int64_input", graph([]onnx.Node{node("Relu", "r", ss("x"), ss("y"))}, []onnx.ValueInfo{{Name: "x", ElemType: onnx.Int64, Dims: []onnx.Dim{{Value: 2}}}}, y), "element type 7"},
		{"matmul_scalar", graph([]onnx.Node{node("MatMul", "mm", ss("s", "w"), ss("y"))}, []onnx.ValueInfo{vi("s")}, y, w), "rank 0"},
		{"rank9_input", graph([]onnx.Node{node("Relu", "r", ss("x"), ss("y"))}, []onnx.ValueInfo{vi("x", 1, 1, 1, 1, 1, 1, 1, 1, 1)}, y), "rank 9"},
		{"int64_initializer_as_data", graph([]onnx.Node{node("Relu", "r", ss("s"), ss("y"))}, nil, y, i64init("s", 1, 2)), "int64 only as a Reshape shape"},
		{"int64_output", graph(nil, nil, y, i64init("y", 1, 2)), "graph output"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(c.m)
			if !errors.Is(err, accel.ErrUnsupported) {
				t.Fatalf("Compile: %v, want %v", err, accel.ErrUnsupported)
			}
			if !strings.Contains(err.Error(), c.match) {
				t.Errorf("Compile: %q does not mention %q", err, c.match)
			}
		})
	}
}

func TestCompileInvalid(t *testing.T) {
	x := []onnx.ValueInfo{vi("x", 2, 4)}
	y := []onnx.ValueInfo{vi("y")}
	for _, c := range []struct {
		name  string
		m     *onnx.Model
		want  error
		match string
	}{
		{"cycle", graph([]onnx.Node{
			node("Relu", "a", ss("x"), ss("a")),
			node("Add", "b", ss("a", "d"), ss("b")),
			node("Relu", "c", ss("b"), ss("c")),
			node("Identity", "d", ss("c"), ss("d")),
			node("Relu", "out", ss("d"), ss("y")),
		}, x, y), accel.ErrInvalid, "cycle through"},
		{"self_loop", graph([]onnx.Node{node("Relu", "a", ss("y"), ss("y"))}, x, y), accel.ErrInvalid, "cycle"},
		{"undefined", graph([]onnx.Node{node("Relu", "r", ss("nope"), ss("y"))}, x, y), accel.ErrInvalid, `"nope"`},
		{"defined_twice", graph([]onnx.Node{node("Relu", "a", ss("x"), ss("y")), node("Relu", "b", ss("x"), ss("y"))}, x, y), accel.ErrInvalid, "twice"},
		{"output_shadows_input", graph([]onnx.Node{node("Relu", "a", ss("x"), ss("x"))}, x, y), accel.ErrInvalid, "twice"},
		{"output_undefined", graph([]onnx.Node{node("Relu", "a", ss("x"), ss("z"))}, x, y), accel.ErrInvalid, `output "y"`},
		{"initializer_size", graph([]onnx.Node{node("Add", "a", ss("x", "b"), ss("y"))}, x, y, finit("b", []float32{1, 2}, 4)), accel.ErrInvalid, "2 values"},
		{"initializer_twice", graph([]onnx.Node{node("Add", "a", ss("x", "b"), ss("y"))}, x, y, finit("b", make([]float32, 4), 4), finit("b", make([]float32, 4), 4)), accel.ErrInvalid, "twice"},
		{"missing_input", graph([]onnx.Node{node("Gemm", "g", ss("x"), ss("y"))}, x, y), accel.ErrInvalid, "inputs"},
		{"attribute_kind", graph([]onnx.Node{node("Flatten", "f", ss("x"), ss("y"), aFloat("axis", 1))}, x, y), accel.ErrInvalid, `"axis"`},
		{"flatten_axis", graph([]onnx.Node{node("Flatten", "f", ss("x"), ss("y"), aInt("axis", 3))}, x, y), accel.ErrInvalid, "axis 3"},
		{"reshape_two_inferred", graph([]onnx.Node{node("Reshape", "r", ss("x", "s"), ss("y"))}, x, y, i64init("s", -1, -1)), accel.ErrInvalid, "-1"},
		{"reshape_copies_missing_dim", graph([]onnx.Node{node("Reshape", "r", ss("x", "s"), ss("y"))}, x, y, i64init("s", 2, 0, 0)), accel.ErrShape, "rank-2"},
		{"gemm_3d", graph([]onnx.Node{node("Gemm", "g", ss("x", "x"), ss("y"))}, []onnx.ValueInfo{vi("x", 2, 2, 2)}, y), accel.ErrShape, "2-d"},
		{"kernel_shape_mismatch", graph([]onnx.Node{node("Conv", "c", ss("x", "w"), ss("y"), aInts("kernel_shape", 2, 2))}, []onnx.ValueInfo{vi("x", 1, 1, 4, 4)}, y, finit("w", make([]float32, 9), 1, 1, 3, 3)), accel.ErrShape, "kernel_shape"},
		{"nil", nil, accel.ErrInvalid, "nil"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(c.m)
			if !errors.Is(err, c.want) {
				t.Fatalf("Compile: %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.match) {
				t.Errorf("Compile: %q does not mention %q", err, c.match)
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	mlp := func(x onnx.ValueInfo) *Program {
		t.Helper()
		p, err := Compile(graph([]onnx.Node{
			node("Gemm", "fc1", ss("x", "w1", "b1"), ss("h"), aInt("transB", 1)),
			node("Relu", "relu", ss("h"), ss("hr")),
			node("Gemm", "fc2", ss("hr", "w2", "b2"), ss("logits")),
			node("Softmax", "softmax", ss("logits"), ss("y")),
		}, []onnx.ValueInfo{x}, []onnx.ValueInfo{vi("y", "batch", 3)},
			finit("w1", floats(r, 32), 8, 4), finit("b1", floats(r, 8), 8), finit("w2", floats(r, 24), 8, 3), finit("b2", floats(r, 3), 3)))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	fixed, loose := mlp(vi("x", "batch", 4)), mlp(vi("x", "batch", "k"))
	unranked := func(op string, attrs ...onnx.Attribute) *Program {
		p, err := Compile(graph([]onnx.Node{node(op, "op", ss("x"), ss("y"), attrs...)}, []onnx.ValueInfo{{Name: "x", ElemType: onnx.Float}}, []onnx.ValueInfo{vi("y")}))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	canceled, cancel := context.WithCancel(bg)
	cancel()

	for _, c := range []struct {
		name   string
		p      *Program
		ctx    context.Context
		limits accel.Limits
		in     func(s *accel.Session) []*accel.Tensor
		want   error
		match  string
	}{
		{name: "no_inputs", p: fixed, in: func(s *accel.Session) []*accel.Tensor { return nil }, want: accel.ErrInvalid, match: "takes 1 inputs, got 0"},
		{name: "two_inputs", p: fixed, in: func(s *accel.Session) []*accel.Tensor {
			return []*accel.Tensor{tensor(t, s, floats(r, 8), 2, 4), tensor(t, s, floats(r, 8), 2, 4)}
		}, want: accel.ErrInvalid, match: "got 2"},
		{name: "nil_input", p: fixed, in: func(s *accel.Session) []*accel.Tensor { return []*accel.Tensor{nil} }, want: accel.ErrInvalid, match: `input "x" is missing`},
		{name: "i32_input", p: fixed, in: func(s *accel.Session) []*accel.Tensor {
			x, err := s.FromInt32(make([]int32, 8), 2, 4)
			if err != nil {
				t.Fatal(err)
			}
			return []*accel.Tensor{x}
		}, want: accel.ErrInvalid, match: `input "x" is i32[2x4], want f32`},
		{name: "rank", p: fixed, in: func(s *accel.Session) []*accel.Tensor { return []*accel.Tensor{tensor(t, s, floats(r, 8), 2, 4, 1)} }, want: accel.ErrShape, match: `input "x" is f32[2x4x1], want [batchx4]`},
		{name: "fixed_dim", p: fixed, in: func(s *accel.Session) []*accel.Tensor { return []*accel.Tensor{tensor(t, s, floats(r, 10), 2, 5)} }, want: accel.ErrShape, match: `want [batchx4]`},
		{name: "freed_input", p: fixed, in: func(s *accel.Session) []*accel.Tensor {
			x := tensor(t, s, floats(r, 8), 2, 4)
			s.Free(x)
			return []*accel.Tensor{x}
		}, want: accel.ErrFreed, match: `input "x"`},
		{name: "gemm_shape_mid_run", p: loose, in: func(s *accel.Session) []*accel.Tensor { return []*accel.Tensor{tensor(t, s, floats(r, 10), 2, 5)} }, want: accel.ErrShape, match: `onnx op "Gemm" (node "fc1")`},
		{name: "canceled", p: fixed, ctx: canceled, in: func(s *accel.Session) []*accel.Tensor { return []*accel.Tensor{tensor(t, s, floats(r, 8), 2, 4)} }, want: context.Canceled, match: `node "fc1"`},
		// x and four initializers, then fc1's product: its bias has no room.
		{name: "too_many_tensors", p: fixed, limits: accel.Limits{MaxTensors: 6}, in: func(s *accel.Session) []*accel.Tensor { return []*accel.Tensor{tensor(t, s, floats(r, 8), 2, 4)} }, want: accel.ErrTooMany, match: `node "fc1"`},
		{name: "no_room_for_initializers", p: fixed, limits: accel.Limits{MaxBytes: 32 + 128 + 32 + 8}, in: func(s *accel.Session) []*accel.Tensor { return []*accel.Tensor{tensor(t, s, floats(r, 8), 2, 4)} }, want: accel.ErrOutOfMemory, match: `initializer "w2"`},
		{name: "softmax_axis_at_run", p: unranked("Softmax", aInt("axis", 2)), in: func(s *accel.Session) []*accel.Tensor { return []*accel.Tensor{tensor(t, s, floats(r, 8), 2, 4)} }, want: accel.ErrInvalid, match: "axis 2 outside rank 2"},
		{name: "maxpool_rank_at_run", p: unranked("MaxPool", aInts("kernel_shape", 1, 1)), in: func(s *accel.Session) []*accel.Tensor { return []*accel.Tensor{tensor(t, s, floats(r, 8), 2, 4)} }, want: accel.ErrUnsupported, match: "2-d"},
		{name: "reshape_at_run", p: func() *Program {
			p, err := Compile(graph([]onnx.Node{
				node("Relu", "relu", ss("x"), ss("r")),
				node("Reshape", "rs", ss("r", "s"), ss("y")),
			}, []onnx.ValueInfo{vi("x", "n", 3)}, []onnx.ValueInfo{vi("y")}, i64init("s", -1, 2)))
			if err != nil {
				t.Fatal(err)
			}
			return p
		}(), in: func(s *accel.Session) []*accel.Tensor { return []*accel.Tensor{tensor(t, s, floats(r, 3), 1, 3)} }, want: accel.ErrShape, match: "cannot reshape"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSession(t, c.limits)
			in := c.in(s)
			live, bytes := s.LiveTensors(), s.LiveBytes()
			ctx := c.ctx
			if ctx == nil {
				ctx = bg
			}
			outs, err := c.p.Run(ctx, s, in)
			if !errors.Is(err, c.want) {
				t.Fatalf("Run: %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.match) {
				t.Errorf("Run: %q does not mention %q", err, c.match)
			}
			if outs != nil {
				t.Errorf("Run returned %d outputs with its error", len(outs))
			}
			if s.LiveTensors() != live || s.LiveBytes() != bytes {
				t.Errorf("after the failed run: %d tensors, %d bytes live; before: %d, %d", s.LiveTensors(), s.LiveBytes(), live, bytes)
			}
		})
	}
}

// TestReuse runs one Program on two sessions in turn and again on the first,
// since a Program holds no per-run state.
func TestReuse(t *testing.T) {
	m := graph([]onnx.Node{
		node("MatMul", "mm", ss("x", "w"), ss("m")),
		node("Softmax", "sm", ss("m"), ss("y"), aInt("axis", 1)),
	}, []onnx.ValueInfo{vi("x", "n", 2)}, []onnx.ValueInfo{vi("y", "n", 2)}, finit("w", []float32{1, 2, 3, 4}, 2, 2))
	p, err := Compile(m)
	if err != nil {
		t.Fatal(err)
	}
	s1, s2 := newSession(t, accel.Limits{}), newSession(t, accel.Limits{})
	x := []float32{0.5, -1, 2, 0}
	a := run(t, s1, p, tensor(t, s1, x, 2, 2))
	b := run(t, s2, p, tensor(t, s2, x, 2, 2))
	c := run(t, s1, p, tensor(t, s1, x, 2, 2))
	sameBits(t, "second session", b[0], s2, a[0], s1)
	sameBits(t, "second run", c[0], s1, a[0], s1)
}

// TestVectorsAndScalars runs MatMul with vector operands, as numpy does: a
// vector is a one-row (first) or one-column (second) matrix whose axis is
// dropped from the result, so two vectors give a scalar, held as [1]. The
// scalar then flows through further ops.
func TestVectorsAndScalars(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	ad, bd := floats(r, 3*4), floats(r, 4*5)
	for _, c := range []struct {
		name   string
		nodes  []onnx.Node
		a, b   []int // the inputs' shapes; nil b: a is read twice
		shape  []int // of the output
		byHand func(h *accel.Session, a, b *accel.Tensor) *accel.Tensor
	}{
		{"vector_matrix", []onnx.Node{node("MatMul", "mm", ss("a", "b"), ss("y"))}, []int{4}, []int{4, 5}, []int{5},
			func(h *accel.Session, a, b *accel.Tensor) *accel.Tensor {
				return must(t)(h.MatMul(bg, reshaped(t, h, a, 1, 4), b, accel.MatMulParams{}))
			}},
		{"matrix_vector", []onnx.Node{node("MatMul", "mm", ss("a", "b"), ss("y"))}, []int{3, 4}, []int{4}, []int{3},
			func(h *accel.Session, a, b *accel.Tensor) *accel.Tensor {
				return must(t)(h.MatMul(bg, a, reshaped(t, h, b, 4, 1), accel.MatMulParams{}))
			}},
		{"dot", []onnx.Node{node("MatMul", "mm", ss("a", "b"), ss("y"))}, []int{4}, []int{4}, []int{1},
			func(h *accel.Session, a, b *accel.Tensor) *accel.Tensor {
				return must(t)(h.MatMul(bg, reshaped(t, h, a, 1, 4), reshaped(t, h, b, 4, 1), accel.MatMulParams{}))
			}},
		{"dot_with_itself", []onnx.Node{node("MatMul", "mm", ss("a", "a"), ss("y"))}, []int{4}, nil, []int{1},
			func(h *accel.Session, a, _ *accel.Tensor) *accel.Tensor {
				v := tensor(t, h, ad[:4], 4, 1)
				return must(t)(h.MatMul(bg, reshaped(t, h, a, 1, 4), v, accel.MatMulParams{}))
			}},
		{"scalar_onwards", []onnx.Node{
			node("MatMul", "mm", ss("a", "b"), ss("d")),
			node("Relu", "relu", ss("d"), ss("r")),
			node("Add", "add", ss("r", "d"), ss("s")),
			node("Reshape", "rs", ss("s", "one"), ss("y")),
		}, []int{4}, []int{4}, []int{1},
			func(h *accel.Session, a, b *accel.Tensor) *accel.Tensor {
				d := must(t)(h.MatMul(bg, reshaped(t, h, a, 1, 4), reshaped(t, h, b, 4, 1), accel.MatMulParams{}))
				d = reshaped(t, h, d, 1)
				return must(t)(h.Add(bg, must(t)(h.Relu(bg, d)), d))
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dims := func(d []int) []any {
				v := make([]any, len(d))
				for i, x := range d {
					v[i] = x
				}
				return v
			}
			inputs := []onnx.ValueInfo{vi("a", dims(c.a)...)}
			if c.b != nil {
				inputs = append(inputs, vi("b", dims(c.b)...))
			}
			p, err := Compile(graph(c.nodes, inputs, []onnx.ValueInfo{vi("y")}, i64init("one", 1)))
			if err != nil {
				t.Fatal(err)
			}
			s := newSession(t, accel.Limits{})
			in := []*accel.Tensor{tensor(t, s, ad[:product(c.a)], c.a...)}
			if c.b != nil {
				in = append(in, tensor(t, s, bd[:product(c.b)], c.b...))
			}
			outs := run(t, s, p, in...)
			if !slices.Equal(outs[0].Shape(), c.shape) {
				t.Fatalf("output %s, want %v", outs[0], c.shape)
			}
			h := newSession(t, accel.Limits{})
			var b *accel.Tensor
			if c.b != nil {
				b = tensor(t, h, bd[:product(c.b)], c.b...)
			}
			want := c.byHand(h, tensor(t, h, ad[:product(c.a)], c.a...), b)
			sameBits(t, "y", outs[0], s, reshaped(t, h, want, c.shape...), h)
		})
	}
}

// TestScalarInput runs a graph on an input declared rank 0, which is passed
// as a [1] tensor, and refuses other shapes for it.
func TestScalarInput(t *testing.T) {
	p, err := Compile(graph([]onnx.Node{
		node("Relu", "relu", ss("s"), ss("r")),
		node("Add", "add", ss("r", "s"), ss("y")),
	}, []onnx.ValueInfo{vi("s")}, []onnx.ValueInfo{vi("y")}))
	if err != nil {
		t.Fatal(err)
	}
	// 64 + 4·(1 + 1), a relu of one element and an add of two.
	if u, err := p.Units([][]int{{1}}); err != nil || u != 72+(64+1+8)+(64+1+12) {
		t.Errorf("Units = %d, %v", u, err)
	}
	s := newSession(t, accel.Limits{})
	outs := run(t, s, p, tensor(t, s, []float32{-2}, 1))
	if y, err := s.Float32(outs[0]); err != nil || !slices.Equal(outs[0].Shape(), []int{1}) || y[0] != -2 {
		t.Errorf("y = %v %v, %v; want [-2] as [1]", outs[0], y, err)
	}
	for _, shape := range [][]int{{2}, {1, 1}} {
		x := tensor(t, s, make([]float32, product(shape)), shape...)
		if _, err := p.Run(bg, s, []*accel.Tensor{x}); !errors.Is(err, accel.ErrShape) || !strings.Contains(err.Error(), "a scalar, passed as [1]") {
			t.Errorf("Run with %s: %v, want %v", x, err, accel.ErrShape)
		}
	}
}

// TestProgramUnits checks the cost of a run, worked out from the graph, on
// a graph per op: 64 + 4·(elements in, out and in the float initializers),
// plus each accel operation's units as docs/abi.md lists them.
func TestProgramUnits(t *testing.T) {
	w34, c3 := finit("w", make([]float32, 12), 3, 4), finit("c", make([]float32, 3), 3)
	cw := finit("w", make([]float32, 18), 2, 1, 3, 3)
	x23 := []onnx.ValueInfo{vi("x", "n", 3)}
	y := []onnx.ValueInfo{vi("y")}
	io := func(elements int) uint64 { return accel.CallUnits + 4*uint64(elements) }
	for _, c := range []struct {
		name   string
		m      *onnx.Model
		shapes [][]int
		want   uint64
	}{
		{"relu", graph([]onnx.Node{node("Relu", "r", ss("x"), ss("y"))}, x23, y), [][]int{{2, 3}},
			io(6+6) + 64 + 6 + 8*6},
		{"softmax", graph([]onnx.Node{node("Softmax", "s", ss("x"), ss("y"))}, x23, y), [][]int{{2, 3}},
			io(6+6) + 64 + 16*6 + 8*6},
		{"add", graph([]onnx.Node{node("Add", "a", ss("x", "z"), ss("y"))}, []onnx.ValueInfo{vi("x", "n", 3), vi("z", "n", 3)}, y), [][]int{{2, 3}, {2, 3}},
			io(6+6+6) + 64 + 6 + 4*6*3},
		{"add_bias", graph([]onnx.Node{node("Add", "a", ss("x", "c"), ss("y"))}, x23, y, c3), [][]int{{2, 3}},
			io(6+6+3) + 64 + 6 + 8*6 + 4*3},
		{"gemm", graph([]onnx.Node{node("Gemm", "g", ss("x", "w", "c"), ss("y"), aInt("transB", 1))}, []onnx.ValueInfo{vi("x", "n", 4)}, y, w34, c3), [][]int{{2, 4}},
			io(8+6+15) + (64 + 2*2*3*4 + 4*(8+12+6)) + (64 + 6 + 8*6 + 4*3)},
		{"dot", graph([]onnx.Node{node("MatMul", "m", ss("x", "z"), ss("y"))}, []onnx.ValueInfo{vi("x", 4), vi("z", 4)}, y), [][]int{{4}, {4}},
			io(4+4+1) + 64 + 2*4 + 4*(4+4+1)},
		{"conv", graph([]onnx.Node{node("Conv", "c", ss("x", "w"), ss("y"))}, []onnx.ValueInfo{vi("x", "n", 1, 4, 4)}, y, cw), [][]int{{1, 1, 4, 4}},
			io(16+8+18) + 64 + 2*8*9 + 4*(16+18+8)},
		{"maxpool", graph([]onnx.Node{node("MaxPool", "p", ss("x"), ss("y"), aInts("kernel_shape", 2, 2), aInts("strides", 2, 2))}, []onnx.ValueInfo{vi("x", "n", 1, 4, 4)}, y), [][]int{{1, 1, 4, 4}},
			io(16+4) + 64 + 4*(16+4) + 4*4},
		{"views_cost_nothing", graph([]onnx.Node{
			node("Flatten", "f", ss("x"), ss("f")),
			node("Reshape", "r", ss("f", "s"), ss("i")),
			node("Identity", "y", ss("i"), ss("y")),
		}, []onnx.ValueInfo{vi("x", "n", 3, 4)}, y, i64init("s", -1)), [][]int{{2, 3, 4}},
			io(24 + 24)},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := Compile(c.m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Units(c.shapes)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("Units = %d, want %d", got, c.want)
			}
			// A run charges exactly that, once.
			var charges []uint64
			s, err := accel.NewSession(ref.New(1), accel.Strict, accel.Limits{}, func(u uint64) error {
				charges = append(charges, u)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			in := make([]*accel.Tensor, len(c.shapes))
			for i, shape := range c.shapes {
				in[i] = tensor(t, s, make([]float32, product(shape)), shape...)
			}
			charges = nil
			if _, err := p.Run(bg, s, in); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(charges, []uint64{c.want}) {
				t.Errorf("the run charged %v, want [%d]", charges, c.want)
			}
		})
	}

	t.Run("shapes_refused", func(t *testing.T) {
		p, err := Compile(graph([]onnx.Node{node("Gemm", "g", ss("x", "w"), ss("y"), aInt("transB", 1))}, []onnx.ValueInfo{vi("x", "n", "k")}, y, w34))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name   string
			shapes [][]int
			want   error
		}{
			{"inner_dimension", [][]int{{2, 5}}, accel.ErrShape},
			{"rank", [][]int{{2, 4, 1}}, accel.ErrShape},
			{"count", [][]int{{2, 4}, {2, 4}}, accel.ErrInvalid},
			{"empty_dimension", [][]int{{0, 4}}, accel.ErrInvalid},
		} {
			if u, err := p.Units(c.shapes); !errors.Is(err, c.want) {
				t.Errorf("%s: Units = %d, %v; want %v", c.name, u, err, c.want)
			}
		}
	})
}

// TestSoftmaxAxes: a softmax along an axis other than the last is the
// last-axis softmax between two transposes that swap the axes; before
// opset 13, a softmax of the input viewed as 2-d at the axis.
func TestSoftmaxAxes(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	xd := floats(r, 2*3*4)
	for _, c := range []struct {
		name  string
		opset int64
		axis  int64
		want  func(h *accel.Session) *accel.Tensor
	}{
		{"last", 17, -1, func(h *accel.Session) *accel.Tensor { return must(t)(h.Softmax(bg, tensor(t, h, xd, 2, 3, 4))) }},
		{"middle", 17, 1, func(h *accel.Session) *accel.Tensor {
			there := must(t)(h.Transpose(bg, tensor(t, h, xd, 2, 3, 4), 0, 2, 1))
			return must(t)(h.Transpose(bg, must(t)(h.Softmax(bg, there)), 0, 2, 1))
		}},
		{"first", 17, 0, func(h *accel.Session) *accel.Tensor {
			there := must(t)(h.Transpose(bg, tensor(t, h, xd, 2, 3, 4), 2, 1, 0))
			return must(t)(h.Transpose(bg, must(t)(h.Softmax(bg, there)), 2, 1, 0))
		}},
		{"opset11_flattened", 11, 1, func(h *accel.Session) *accel.Tensor { return must(t)(h.Softmax(bg, tensor(t, h, xd, 2, 12))) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := graph([]onnx.Node{node("Softmax", "sm", ss("x"), ss("y"), aInt("axis", c.axis))}, []onnx.ValueInfo{vi("x", 2, 3, 4)}, []onnx.ValueInfo{vi("y")})
			m.OpsetVersion = c.opset
			p, err := Compile(m)
			if err != nil {
				t.Fatal(err)
			}
			s := newSession(t, accel.Limits{})
			outs := run(t, s, p, tensor(t, s, xd, 2, 3, 4))
			if !slices.Equal(outs[0].Shape(), []int{2, 3, 4}) {
				t.Fatalf("output shape %v, want [2 3 4]", outs[0].Shape())
			}
			h := newSession(t, accel.Limits{})
			want := c.want(h)
			if c.name == "opset11_flattened" {
				if err := h.Reshape(want, []int{2, 3, 4}); err != nil {
					t.Fatal(err)
				}
			}
			sameBits(t, "y", outs[0], s, want, h)
		})
	}
}

// TestLayerNormalization: ONNX's LayerNormalization with its Y alone is
// one layer_norm, its negative axis counted from the end, its bias
// optional; the Mean and InvStdDev outputs are refused.
func TestLayerNormalization(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	xd, sd, bd := floats(r, 2*3*4), floats(r, 12), floats(r, 12)
	for _, c := range []struct {
		name string
		axis int64
		bias bool
		row  []int
	}{
		{"last", -1, true, []int{4}},
		{"two_axes", 1, true, []int{3, 4}},
		{"no_bias", -2, false, []int{3, 4}},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := product(c.row)
			dims := make([]int64, len(c.row))
			for i, d := range c.row {
				dims[i] = int64(d)
			}
			ins, inits := ss("x", "scale"), []onnx.Tensor{finit("scale", sd[:n], dims...)}
			if c.bias {
				ins = append(ins, "bias")
				inits = append(inits, finit("bias", bd[:n], dims...))
			}
			m := graph([]onnx.Node{node("LayerNormalization", "ln", ins, ss("y"), aInt("axis", c.axis), aFloat("epsilon", 1e-3))},
				[]onnx.ValueInfo{vi("x", 2, 3, 4)}, []onnx.ValueInfo{vi("y")}, inits...)
			p, err := Compile(m)
			if err != nil {
				t.Fatal(err)
			}
			s := newSession(t, accel.Limits{})
			outs := run(t, s, p, tensor(t, s, xd, 2, 3, 4))
			h := newSession(t, accel.Limits{})
			var bias *accel.Tensor
			if c.bias {
				bias = tensor(t, h, bd[:n], c.row...)
			}
			want := must(t)(h.LayerNorm(bg, tensor(t, h, xd, 2, 3, 4), tensor(t, h, sd[:n], c.row...), bias,
				accel.LayerNormParams{Axis: 3 - len(c.row), Epsilon: 1e-3}))
			sameBits(t, "y", outs[0], s, want, h)
		})
	}
	m := graph([]onnx.Node{node("LayerNormalization", "ln", ss("x", "scale"), ss("y", "mean", "inv"))},
		[]onnx.ValueInfo{vi("x", 2, 4)}, []onnx.ValueInfo{vi("y")}, finit("scale", sd[:4], 4))
	if _, err := Compile(m); !errors.Is(err, accel.ErrUnsupported) || !strings.Contains(err.Error(), "outputs") {
		t.Errorf("Compile with Mean and InvStdDev: %v, want unsupported outputs", err)
	}
}

// TestMatMulBatched: MatMul with batch axes is one batch_matmul, a vector
// operand a one-row or one-column matrix whose axis leaves the result.
func TestMatMulBatched(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for _, c := range []struct {
		name         string
		a, b         []int
		viewA, viewB []int // as batch_matmul takes them
		out          []int
	}{
		{"batch_by_matrix", []int{2, 3, 4}, []int{4, 5}, []int{2, 3, 4}, []int{4, 5}, []int{2, 3, 5}},
		{"broadcast", []int{2, 1, 3, 4}, []int{5, 4, 6}, []int{2, 1, 3, 4}, []int{5, 4, 6}, []int{2, 5, 3, 6}},
		{"batch_by_vector", []int{2, 3, 4}, []int{4}, []int{2, 3, 4}, []int{4, 1}, []int{2, 3}},
		{"vector_by_batch", []int{4}, []int{2, 4, 5}, []int{1, 4}, []int{2, 4, 5}, []int{2, 5}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ad, bd := floats(r, product(c.a)), floats(r, product(c.b))
			toAny := func(d []int) []any {
				v := make([]any, len(d))
				for i, x := range d {
					v[i] = x
				}
				return v
			}
			p, err := Compile(graph([]onnx.Node{node("MatMul", "mm", ss("a", "b"), ss("y"))},
				[]onnx.ValueInfo{vi("a", toAny(c.a)...), vi("b", toAny(c.b)...)}, []onnx.ValueInfo{vi("y")}))
			if err != nil {
				t.Fatal(err)
			}
			s := newSession(t, accel.Limits{})
			outs := run(t, s, p, tensor(t, s, ad, c.a...), tensor(t, s, bd, c.b...))
			h := newSession(t, accel.Limits{})
			want := must(t)(h.BatchMatMul(bg, tensor(t, h, ad, c.viewA...), tensor(t, h, bd, c.viewB...)))
			if err := h.Reshape(want, c.out); err != nil {
				t.Fatal(err)
			}
			sameBits(t, "y", outs[0], s, want, h)
		})
	}
}

// TestConcatChain: a Concat of three inputs is two concats, the first
// two inputs, then the third, each along the axis.
func TestConcatChain(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	ad, bd, cd := floats(r, 2*1*3), floats(r, 2*4*3), floats(r, 2*2*3)
	p, err := Compile(graph([]onnx.Node{node("Concat", "cat", ss("a", "b", "c"), ss("y"), aInt("axis", -2))},
		[]onnx.ValueInfo{vi("a", 2, 1, 3), vi("b", 2, 4, 3), vi("c", 2, 2, 3)}, []onnx.ValueInfo{vi("y")}))
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(t, accel.Limits{})
	outs := run(t, s, p, tensor(t, s, ad, 2, 1, 3), tensor(t, s, bd, 2, 4, 3), tensor(t, s, cd, 2, 2, 3))
	h := newSession(t, accel.Limits{})
	ab := must(t)(h.Concat(bg, tensor(t, h, ad, 2, 1, 3), tensor(t, h, bd, 2, 4, 3), 1))
	want := must(t)(h.Concat(bg, ab, tensor(t, h, cd, 2, 2, 3), 1))
	sameBits(t, "y", outs[0], s, want, h)
}

// TestGemmBroadcastC: a Gemm's C of shape [1, N], [M, N], [M, 1] or one
// element is a binary add of C after the matmul; a C that does not
// broadcast to [M, N] is refused.
func TestGemmBroadcastC(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	ad, bd := floats(r, 3*4), floats(r, 4*5)
	for _, c := range []struct {
		name string
		c    []int
		ok   bool
	}{{"row", []int{1, 5}, true}, {"matrix", []int{3, 5}, true}, {"column", []int{3, 1}, true}, {"scalar", []int{1}, true}, {"wrong", []int{2, 5}, false}} {
		t.Run(c.name, func(t *testing.T) {
			dims := make([]int64, len(c.c))
			for i, d := range c.c {
				dims[i] = int64(d)
			}
			cd := floats(r, product(c.c))
			p, err := Compile(graph([]onnx.Node{node("Gemm", "g", ss("a", "b", "c"), ss("y"))},
				[]onnx.ValueInfo{vi("a", 3, 4)}, []onnx.ValueInfo{vi("y")}, finit("b", bd, 4, 5), finit("c", cd, dims...)))
			if err != nil {
				t.Fatal(err)
			}
			s := newSession(t, accel.Limits{})
			if !c.ok {
				if _, err := p.Run(bg, s, []*accel.Tensor{tensor(t, s, ad, 3, 4)}); !errors.Is(err, accel.ErrShape) {
					t.Fatalf("Run: %v, want %v", err, accel.ErrShape)
				}
				return
			}
			outs := run(t, s, p, tensor(t, s, ad, 3, 4))
			h := newSession(t, accel.Limits{})
			mm := must(t)(h.MatMul(bg, tensor(t, h, ad, 3, 4), tensor(t, h, bd, 4, 5), accel.MatMulParams{}))
			want := must(t)(h.Binary(bg, mm, tensor(t, h, cd, c.c...), accel.BinaryAdd))
			sameBits(t, "y", outs[0], s, want, h)
		})
	}
}
