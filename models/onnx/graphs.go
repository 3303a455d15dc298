package onnx

import (
	"fmt"
	"strings"
)

// producer is the producer_name the builders write.
const producer = "accelnode"

// IntAttr is an INT attribute.
func IntAttr(name string, v int64) Attribute {
	return Attribute{Name: name, Type: AttrInt, I: v}
}

// IntsAttr is an INTS attribute.
func IntsAttr(name string, v ...int64) Attribute {
	return Attribute{Name: name, Type: AttrInts, Ints: v}
}

// FloatAttr is a FLOAT attribute.
func FloatAttr(name string, v float32) Attribute {
	return Attribute{Name: name, Type: AttrFloat, F: v}
}

// StringAttr is a STRING attribute.
func StringAttr(name, v string) Attribute {
	return Attribute{Name: name, Type: AttrString, S: v}
}

// Sym returns symbolic dimensions with the given names.
func Sym(names ...string) []Dim {
	dims := make([]Dim, len(names))
	for i, n := range names {
		dims[i] = Dim{Param: n}
	}
	return dims
}

// newModel wraps g in a Model of this package's IR and opset versions.
func newModel(g Graph) *Model {
	return &Model{IRVersion: IRVersion, OpsetVersion: Opset, ProducerName: producer, Graph: g}
}

func floatValue(name string, dims []Dim) ValueInfo {
	return ValueInfo{Name: name, ElemType: Float, Dims: dims}
}

func names(vs []ValueInfo) []string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = v.Name
	}
	return s
}

// SingleOp is a graph of one op from the graph's inputs to its outputs, in
// order; the graph is named after the op.
func SingleOp(op string, inputs, outputs []ValueInfo, attrs ...Attribute) *Model {
	return newModel(Graph{
		Name:    strings.ToLower(op),
		Nodes:   []Node{{Name: op, OpType: op, Inputs: names(inputs), Outputs: names(outputs), Attrs: attrs}},
		Inputs:  inputs,
		Outputs: outputs,
	})
}

// MatMulGraph is Y = op(A) op(B), a Gemm, where op transposes when asked.
// Inputs "A" [m,k] (or [k,m] with transA) and "B" [k,n] (or [n,k] with
// transB); output "Y" [m,n]; all dimensions symbolic.
func MatMulGraph(transA, transB bool) *Model {
	a, b := Sym("m", "k"), Sym("k", "n")
	if transA {
		a = Sym("k", "m")
	}
	if transB {
		b = Sym("n", "k")
	}
	return SingleOp("Gemm",
		[]ValueInfo{floatValue("A", a), floatValue("B", b)},
		[]ValueInfo{floatValue("Y", Sym("m", "n"))},
		IntAttr("transA", b2i(transA)), IntAttr("transB", b2i(transB)))
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// one makes a zero stride, dilation or group count mean 1, its default.
func one(v int) int64 {
	if v == 0 {
		return 1
	}
	return int64(v)
}

// ConvAttrs are a 2-D convolution's attributes. Zero strides, dilations and
// Groups mean 1.
type ConvAttrs struct {
	StrideH, StrideW                     int
	PadTop, PadLeft, PadBottom, PadRight int
	DilationH, DilationW                 int
	Groups                               int
}

// ConvGraph is a 2-D Conv: inputs "X" [n,c,h,w], "W" [oc,cg,kh,kw] and,
// with bias, "B" [oc]; output "Y" [n,oc,oh,ow]; all dimensions symbolic.
func ConvGraph(a ConvAttrs, bias bool) *Model {
	in := []ValueInfo{
		floatValue("X", Sym("n", "c", "h", "w")),
		floatValue("W", Sym("oc", "cg", "kh", "kw")),
	}
	if bias {
		in = append(in, floatValue("B", Sym("oc")))
	}
	return SingleOp("Conv", in,
		[]ValueInfo{floatValue("Y", Sym("n", "oc", "oh", "ow"))},
		IntsAttr("strides", one(a.StrideH), one(a.StrideW)),
		// ONNX orders pads as all the begins, then all the ends.
		IntsAttr("pads", int64(a.PadTop), int64(a.PadLeft), int64(a.PadBottom), int64(a.PadRight)),
		IntsAttr("dilations", one(a.DilationH), one(a.DilationW)),
		IntAttr("group", one(a.Groups)))
}

// PoolAttrs are a 2-D pooling's attributes. Zero strides mean 1.
type PoolAttrs struct {
	KernelH, KernelW                     int
	StrideH, StrideW                     int
	PadTop, PadLeft, PadBottom, PadRight int
}

// MaxPoolGraph is a 2-D MaxPool: input "X" [n,c,h,w], output "Y"
// [n,c,oh,ow]; padding never wins the max.
func MaxPoolGraph(a PoolAttrs) *Model {
	return SingleOp("MaxPool",
		[]ValueInfo{floatValue("X", Sym("n", "c", "h", "w"))},
		[]ValueInfo{floatValue("Y", Sym("n", "c", "oh", "ow"))},
		IntsAttr("kernel_shape", int64(a.KernelH), int64(a.KernelW)),
		IntsAttr("strides", one(a.StrideH), one(a.StrideW)),
		IntsAttr("pads", int64(a.PadTop), int64(a.PadLeft), int64(a.PadBottom), int64(a.PadRight)))
}

// ReluGraph is Y = max(X, 0) for X of any rank.
func ReluGraph() *Model {
	return SingleOp("Relu", []ValueInfo{floatValue("X", nil)}, []ValueInfo{floatValue("Y", nil)})
}

// SoftmaxGraph is the softmax of X, of any rank, along its last axis.
func SoftmaxGraph() *Model {
	return SingleOp("Softmax", []ValueInfo{floatValue("X", nil)}, []ValueInfo{floatValue("Y", nil)},
		IntAttr("axis", -1))
}

// AddGraph is Y = X + B, broadcasting, for any ranks.
func AddGraph() *Model {
	return SingleOp("Add",
		[]ValueInfo{floatValue("X", nil), floatValue("B", nil)},
		[]ValueInfo{floatValue("Y", nil)})
}

// builder assembles a multi-op graph, naming each intermediate value after
// the node that makes it.
type builder struct{ g Graph }

// op adds a node and returns the name of its one output.
func (b *builder) op(op string, inputs ...string) string {
	return b.opAttrs(op, nil, inputs...)
}

func (b *builder) opAttrs(op string, attrs []Attribute, inputs ...string) string {
	out := fmt.Sprintf("%s_%d", op, len(b.g.Nodes))
	b.to(out, op, attrs, inputs...)
	return out
}

// to adds a node whose output is named out, such as a graph output.
func (b *builder) to(out, op string, attrs []Attribute, inputs ...string) {
	b.g.Nodes = append(b.g.Nodes, Node{Name: out, OpType: op, Inputs: inputs, Outputs: []string{out}, Attrs: attrs})
}

// scalar adds a float scalar constant.
func (b *builder) scalar(name string, v float32) string {
	b.g.Initializers = append(b.g.Initializers, Tensor{Name: name, DataType: Float, Floats: []float32{v}})
	return name
}

// ints adds a 1-D int64 constant, such as the axes of Unsqueeze or
// ReduceSum, which since opset 13 are inputs rather than attributes.
func (b *builder) ints(name string, v ...int64) string {
	b.g.Initializers = append(b.g.Initializers, Tensor{Name: name, Dims: []int64{int64(len(v))}, DataType: Int64, Int64s: v})
	return name
}

// keepdims is a reduction's keepdims attribute, made afresh for each node
// so that no two models share (and could both edit) one.
func keepdims(keep bool) []Attribute {
	return []Attribute{IntAttr("keepdims", b2i(keep))}
}

// points is an [n,2] float value: n points in the plane.
func points(name, n string) ValueInfo {
	return floatValue(name, []Dim{{Param: n}, {Value: 2}})
}

// scalarValue is a float value of rank 0.
func scalarValue(name string) ValueInfo {
	return floatValue(name, []Dim{})
}

// TSNERepulsionGraph computes the t-SNE repulsion of a block of rows: with
// inputs "Yb" [b,2] (rows that are also rows of Y) and "Y" [n,2], and
// q = 1/(1+|Yb[i]-Y[j]|²), its outputs are "z" [b], Σ_j q less the row's own
// pair (whose q is 1), and "rep" [b,2], Σ_j q²(Yb[i]-Y[j]). Working memory
// is a few b×n×2 floats, so the caller bounds it by its choice of b.
func TSNERepulsionGraph() *Model {
	b := &builder{g: Graph{Name: "tsne_repulsion"}}
	one := b.scalar("one", 1)
	ax0, ax1, ax2, ax12 := b.ints("axes_0", 0), b.ints("axes_1", 1), b.ints("axes_2", 2), b.ints("axes_12", 1, 2)

	diff := b.op("Sub", b.op("Unsqueeze", "Yb", ax1), b.op("Unsqueeze", "Y", ax0)) // [b,n,2]
	d2 := b.opAttrs("ReduceSum", keepdims(true), b.op("Mul", diff, diff), ax2)     // [b,n,1]
	q := b.op("Reciprocal", b.op("Add", one, d2))                                  // [b,n,1]
	b.to("z", "Sub", nil, b.opAttrs("ReduceSum", keepdims(false), q, ax12), one)
	b.to("rep", "ReduceSum", keepdims(false), b.op("Mul", b.op("Mul", q, q), diff), ax1)

	b.g.Inputs = []ValueInfo{points("Yb", "b"), points("Y", "n")}
	b.g.Outputs = []ValueInfo{floatValue("z", Sym("b")), points("rep", "b")}
	return newModel(b.g)
}

// TSNEAttractionGraph computes the t-SNE attraction from the sparse P:
// inputs "rows", "cols" (int64 [e]) and "vals" (float [e]) list its stored
// entries, "Y" [n,2] the points and "Z" (a float scalar) the sum of q over
// all pairs. Outputs "attr" [n,2], attr[i] = Σ p·q·(Y[i]-Y[j]) over row i's
// entries, and "kl", the scalar Σ p·log(p·Z/q) over entries with p > 0 and
// j != i. Memory is O(n + e).
func TSNEAttractionGraph() *Model {
	b := &builder{g: Graph{Name: "tsne_attraction"}}
	zero, one := b.scalar("zero", 0), b.scalar("one", 1)
	ax0, ax1 := b.ints("axes_0", 0), b.ints("axes_1", 1)

	diff := b.op("Sub", b.op("Gather", "Y", "rows"), b.op("Gather", "Y", "cols")) // [e,2]
	d2 := b.opAttrs("ReduceSum", keepdims(false), b.op("Mul", diff, diff), ax1)   // [e]
	q := b.op("Reciprocal", b.op("Add", one, d2))                                 // [e]
	pq := b.op("Mul", "vals", q)
	force := b.op("Mul", b.op("Unsqueeze", pq, ax1), diff) // [e,2]
	// A row's entries are summed into zeros shaped like Y; a self pair adds
	// exactly 0, since its diff is 0.
	zeros := b.opAttrs("ConstantOfShape", []Attribute{{
		Name: "value", Type: AttrTensor, T: &Tensor{Dims: []int64{1}, DataType: Float, Floats: []float32{0}},
	}}, b.op("Shape", "Y"))
	b.to("attr", "ScatterND", []Attribute{StringAttr("reduction", "add")},
		zeros, b.op("Unsqueeze", "rows", ax1), force)

	// The masked entries' log argument is replaced by 1 before the log and
	// their term by 0 after it, so that log(0) or 0·inf never makes a NaN.
	mask := b.op("And", b.op("Greater", "vals", zero), b.op("Not", b.op("Equal", "rows", "cols")))
	arg := b.op("Where", mask, b.op("Div", b.op("Mul", "vals", "Z"), q), one)
	term := b.op("Where", mask, b.op("Mul", "vals", b.op("Log", arg)), zero)
	b.to("kl", "ReduceSum", keepdims(false), term, ax0)

	entries := func(name string, elem int) ValueInfo { return ValueInfo{Name: name, ElemType: elem, Dims: Sym("e")} }
	b.g.Inputs = []ValueInfo{entries("rows", Int64), entries("cols", Int64), entries("vals", Float), points("Y", "n"), scalarValue("Z")}
	b.g.Outputs = []ValueInfo{points("attr", "n"), scalarValue("kl")}
	return newModel(b.g)
}

// TSNEUpdateGraph takes one t-SNE step from the forces: inputs "Y", "U"
// (update), "G" (gains), "attr" and "rep", all [n,2], and the float scalars
// "Z", "eta", "alpha", "exag" and "min_gain"; outputs "Y_new", "U_new" and
// "G_new" [n,2], with the new Y re-centred on the origin.
func TSNEUpdateGraph() *Model {
	b := &builder{g: Graph{Name: "tsne_update"}}
	zero, four := b.scalar("zero", 0), b.scalar("four", 4)
	inc, dec := b.scalar("gain_inc", 0.2), b.scalar("gain_dec", 0.8)

	grad := b.op("Mul", four, b.op("Sub", b.op("Mul", "exag", "attr"), b.op("Div", "rep", "Z")))
	flip := b.op("Xor", b.op("Greater", grad, zero), b.op("Greater", "U", zero)) // signs differ
	gain := b.op("Where", flip, b.op("Add", "G", inc), b.op("Mul", "G", dec))
	b.to("G_new", "Max", nil, gain, "min_gain")
	b.to("U_new", "Sub", nil, b.op("Mul", "alpha", "U"), b.op("Mul", "eta", b.op("Mul", "G_new", grad)))
	y := b.op("Add", "Y", "U_new")
	// At opset 17 ReduceMean still takes its axes as an attribute.
	mean := b.opAttrs("ReduceMean", []Attribute{IntsAttr("axes", 0), IntAttr("keepdims", 1)}, y)
	b.to("Y_new", "Sub", nil, y, mean)

	b.g.Inputs = []ValueInfo{points("Y", "n"), points("U", "n"), points("G", "n"), points("attr", "n"), points("rep", "n")}
	for _, s := range []string{"Z", "eta", "alpha", "exag", "min_gain"} {
		b.g.Inputs = append(b.g.Inputs, scalarValue(s))
	}
	b.g.Outputs = []ValueInfo{points("Y_new", "n"), points("U_new", "n"), points("G_new", "n")}
	return newModel(b.g)
}
