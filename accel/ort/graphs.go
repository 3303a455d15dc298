package ort

import (
	"strings"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/models/onnx"
)

// The graphs the kernels run: one ONNX operator each, with symbolic
// dimensions, so that one session serves every shape of a call with the
// same attributes.

// producer is the producer_name the graphs carry.
const producer = "accelnode"

func floatValue(name string, dims []onnx.Dim) onnx.ValueInfo {
	return onnx.ValueInfo{Name: name, ElemType: onnx.Float, Dims: dims}
}

func valueNames(vs []onnx.ValueInfo) []string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = v.Name
	}
	return s
}

// singleOp is a graph of one operator from the graph's inputs to its
// outputs, in order; the graph is named after the operator.
func singleOp(op string, inputs, outputs []onnx.ValueInfo, attrs ...onnx.Attribute) *onnx.Model {
	return &onnx.Model{
		IRVersion: onnx.IRVersion, OpsetVersion: onnx.Opset, ProducerName: producer,
		Graph: onnx.Graph{
			Name:    strings.ToLower(op),
			Nodes:   []onnx.Node{{Name: op, OpType: op, Inputs: valueNames(inputs), Outputs: valueNames(outputs), Attrs: attrs}},
			Inputs:  inputs,
			Outputs: outputs,
		},
	}
}

// matMulGraph is Y = op(A) op(B), a Gemm, where op transposes when asked.
// Inputs "A" [m,k] (or [k,m] with transA) and "B" [k,n] (or [n,k] with
// transB); output "Y" [m,n]; all dimensions symbolic.
func matMulGraph(transA, transB bool) *onnx.Model {
	a, b := onnx.Sym("m", "k"), onnx.Sym("k", "n")
	if transA {
		a = onnx.Sym("k", "m")
	}
	if transB {
		b = onnx.Sym("n", "k")
	}
	return singleOp("Gemm",
		[]onnx.ValueInfo{floatValue("A", a), floatValue("B", b)},
		[]onnx.ValueInfo{floatValue("Y", onnx.Sym("m", "n"))},
		onnx.IntAttr("transA", b2i(transA)), onnx.IntAttr("transB", b2i(transB)))
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// convGraph is a 2-D Conv: inputs "X" [n,c,h,w], "W" [oc,cg,kh,kw] and,
// with bias, "B" [oc]; output "Y" [n,oc,oh,ow]; all dimensions symbolic.
// The Session guarantees strides, dilations and groups of at least 1.
func convGraph(p accel.Conv2DParams, bias bool) *onnx.Model {
	in := []onnx.ValueInfo{
		floatValue("X", onnx.Sym("n", "c", "h", "w")),
		floatValue("W", onnx.Sym("oc", "cg", "kh", "kw")),
	}
	if bias {
		in = append(in, floatValue("B", onnx.Sym("oc")))
	}
	return singleOp("Conv", in,
		[]onnx.ValueInfo{floatValue("Y", onnx.Sym("n", "oc", "oh", "ow"))},
		onnx.IntsAttr("strides", int64(p.StrideH), int64(p.StrideW)),
		// ONNX orders pads as all the begins, then all the ends.
		onnx.IntsAttr("pads", int64(p.PadTop), int64(p.PadLeft), int64(p.PadBottom), int64(p.PadRight)),
		onnx.IntsAttr("dilations", int64(p.DilationH), int64(p.DilationW)),
		onnx.IntAttr("group", int64(p.Groups)))
}

// maxPoolGraph is a 2-D MaxPool: input "X" [n,c,h,w], output "Y"
// [n,c,oh,ow]; padding never wins the max.
func maxPoolGraph(p accel.Pool2DParams) *onnx.Model {
	return singleOp("MaxPool",
		[]onnx.ValueInfo{floatValue("X", onnx.Sym("n", "c", "h", "w"))},
		[]onnx.ValueInfo{floatValue("Y", onnx.Sym("n", "c", "oh", "ow"))},
		onnx.IntsAttr("kernel_shape", int64(p.KernelH), int64(p.KernelW)),
		onnx.IntsAttr("strides", int64(p.StrideH), int64(p.StrideW)),
		onnx.IntsAttr("pads", int64(p.PadTop), int64(p.PadLeft), int64(p.PadBottom), int64(p.PadRight)))
}

// reluGraph is Y = max(X, 0) for X of any rank.
func reluGraph() *onnx.Model {
	return singleOp("Relu", []onnx.ValueInfo{floatValue("X", nil)}, []onnx.ValueInfo{floatValue("Y", nil)})
}

// softmaxGraph is the softmax of X, of any rank, along its last axis.
func softmaxGraph() *onnx.Model {
	return singleOp("Softmax", []onnx.ValueInfo{floatValue("X", nil)}, []onnx.ValueInfo{floatValue("Y", nil)},
		onnx.IntAttr("axis", -1))
}

// clipGraph is Y = Clip(X, min, max) for X of any rank, the bounds scalar
// initializers.
func clipGraph(p accel.ClipParams) *onnx.Model {
	m := singleOp("Clip",
		[]onnx.ValueInfo{floatValue("X", nil)},
		[]onnx.ValueInfo{floatValue("Y", nil)})
	m.Graph.Nodes[0].Inputs = []string{"X", "min", "max"}
	m.Graph.Initializers = []onnx.Tensor{
		{Name: "min", Dims: []int64{}, DataType: onnx.Float, Floats: []float32{p.Min}},
		{Name: "max", Dims: []int64{}, DataType: onnx.Float, Floats: []float32{p.Max}},
	}
	return m
}

// globalAvgPoolGraph is the mean of each plane: input "X" [n,c,h,w],
// output "Y" [n,c,1,1].
func globalAvgPoolGraph() *onnx.Model {
	return singleOp("GlobalAveragePool",
		[]onnx.ValueInfo{floatValue("X", onnx.Sym("n", "c", "h", "w"))},
		[]onnx.ValueInfo{floatValue("Y", nil)})
}

// addGraph is Y = X + B, broadcasting, for any ranks: add of two tensors of
// one shape, and add_bias with the bias shaped to broadcast.
func addGraph() *onnx.Model {
	return singleOp("Add",
		[]onnx.ValueInfo{floatValue("X", nil), floatValue("B", nil)},
		[]onnx.ValueInfo{floatValue("Y", nil)})
}
