// Package modeltest builds the small ONNX models that tests of the node,
// its service and its clients share, so that each is written once.
package modeltest

import (
	"math/rand/v2"
	"strings"

	"github.com/accelnode/accelnode/models/onnx"
)

// CNN is an MNIST-shaped network with random weights drawn from seed:
// x [batch,1,28,28] → conv 3×3 (8) → relu → max-pool 2 → conv 3×3 (16) →
// relu → max-pool 2 → flatten → Gemm (10) as "logits" → softmax as "probs".
func CNN(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 28))
	draw := func(name string, scale float64, dims ...int64) onnx.Tensor {
		n := int64(1)
		for _, d := range dims {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * scale)
		}
		return onnx.Tensor{Name: name, Dims: dims, DataType: onnx.Float, Floats: v}
	}
	conv := func(name, x, w, b, y string) onnx.Node {
		return onnx.Node{Name: name, OpType: "Conv", Inputs: []string{x, w, b}, Outputs: []string{y}, Attrs: []onnx.Attribute{
			onnx.IntsAttr("kernel_shape", 3, 3), onnx.IntsAttr("pads", 1, 1, 1, 1)}}
	}
	pool := func(name, x, y string) onnx.Node {
		return onnx.Node{Name: name, OpType: "MaxPool", Inputs: []string{x}, Outputs: []string{y}, Attrs: []onnx.Attribute{
			onnx.IntsAttr("kernel_shape", 2, 2), onnx.IntsAttr("strides", 2, 2)}}
	}
	unary := func(op, x, y string) onnx.Node {
		return onnx.Node{Name: strings.ToLower(op) + "_" + x, OpType: op, Inputs: []string{x}, Outputs: []string{y}}
	}
	batch := onnx.Dim{Param: "batch"}
	return onnx.Marshal(&onnx.Model{
		IRVersion:    onnx.IRVersion,
		OpsetVersion: onnx.Opset,
		Graph: onnx.Graph{
			Name: "cnn",
			Nodes: []onnx.Node{
				conv("conv1", "x", "w1", "b1", "c1"), unary("Relu", "c1", "r1"), pool("pool1", "r1", "p1"),
				conv("conv2", "p1", "w2", "b2", "c2"), unary("Relu", "c2", "r2"), pool("pool2", "r2", "p2"),
				unary("Flatten", "p2", "f"),
				{Name: "dense", OpType: "Gemm", Inputs: []string{"f", "w3", "b3"}, Outputs: []string{"logits"}, Attrs: []onnx.Attribute{onnx.IntAttr("transB", 1)}},
				{Name: "softmax", OpType: "Softmax", Inputs: []string{"logits"}, Outputs: []string{"probs"}, Attrs: []onnx.Attribute{onnx.IntAttr("axis", -1)}},
			},
			Inputs:  []onnx.ValueInfo{{Name: "x", ElemType: onnx.Float, Dims: []onnx.Dim{batch, {Value: 1}, {Value: 28}, {Value: 28}}}},
			Outputs: []onnx.ValueInfo{{Name: "logits", ElemType: onnx.Float, Dims: []onnx.Dim{batch, {Value: 10}}}, {Name: "probs", ElemType: onnx.Float, Dims: []onnx.Dim{batch, {Value: 10}}}},
			Initializers: []onnx.Tensor{
				draw("w1", 0.47, 8, 1, 3, 3), draw("b1", 0.01, 8),
				draw("w2", 0.17, 16, 8, 3, 3), draw("b2", 0.01, 16),
				draw("w3", 0.05, 10, 16*7*7), draw("b3", 0.01, 10),
			},
		},
	})
}

// Images are batch pseudo-random 28×28 images with values in [0, 1).
func Images(batch int) []float32 {
	r := rand.New(rand.NewPCG(uint64(batch), 9))
	x := make([]float32, batch*28*28)
	for i := range x {
		x[i] = r.Float32()
	}
	return x
}

// Unary is y = op(x), for an x of element type elem and the dims given
// (nil: one symbolic dimension "n"); y is FLOAT of the same dims.
func Unary(op string, elem int, dims []onnx.Dim, attrs ...onnx.Attribute) []byte {
	if dims == nil {
		dims = []onnx.Dim{{Param: "n"}}
	}
	name := strings.ToLower(op)
	return onnx.Marshal(&onnx.Model{
		IRVersion:    onnx.IRVersion,
		OpsetVersion: onnx.Opset,
		Graph: onnx.Graph{
			Name:    name,
			Nodes:   []onnx.Node{{Name: name, OpType: op, Inputs: []string{"x"}, Outputs: []string{"y"}, Attrs: attrs}},
			Inputs:  []onnx.ValueInfo{{Name: "x", ElemType: elem, Dims: dims}},
			Outputs: []onnx.ValueInfo{{Name: "y", ElemType: onnx.Float, Dims: dims}},
		},
	})
}

// Batch4 is the dims [n, 4].
var Batch4 = []onnx.Dim{{Param: "n"}, {Value: 4}}

// Linear is y [batch, 256] = x [batch, 128] W, about 128 KiB, its weights
// drawn from seed.
func Linear(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	w := make([]float32, 128*256)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	return onnx.Marshal(&onnx.Model{
		IRVersion:    onnx.IRVersion,
		OpsetVersion: onnx.Opset,
		Graph: onnx.Graph{
			Name:         "linear",
			Nodes:        []onnx.Node{{Name: "matmul", OpType: "MatMul", Inputs: []string{"x", "w"}, Outputs: []string{"y"}}},
			Inputs:       []onnx.ValueInfo{{Name: "x", ElemType: onnx.Float, Dims: []onnx.Dim{{Param: "batch"}, {Value: 128}}}},
			Outputs:      []onnx.ValueInfo{{Name: "y", ElemType: onnx.Float, Dims: []onnx.Dim{{Param: "batch"}, {Value: 256}}}},
			Initializers: []onnx.Tensor{{Name: "w", Dims: []int64{128, 256}, DataType: onnx.Float, Floats: w}},
		},
	})
}
