// Package mlp is the example model: a small dense network whose weights are
// drawn from a fixed seed, so that the program that writes the ONNX file and
// the guest that checks the node's answers derive the same numbers.
package mlp

import (
	"math/rand/v2"

	"github.com/accelnode/accelnode/models/onnx"
)

// Sizes of the network: In inputs, a Hidden-unit relu layer, Out softmax
// outputs.
const (
	In     = 64
	Hidden = 32
	Out    = 10
)

// Weights are the network's parameters, row-major: W1 [In, Hidden], B1
// [Hidden], W2 [Hidden, Out], B2 [Out].
type Weights struct {
	W1, B1, W2, B2 []float32
}

// NewWeights draws the weights from seed.
func NewWeights(seed uint64) Weights {
	rng := rand.New(rand.NewPCG(seed, 1))
	draw := func(n int, scale float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * scale)
		}
		return v
	}
	return Weights{W1: draw(In*Hidden, 0.2), B1: draw(Hidden, 0.1), W2: draw(Hidden*Out, 0.3), B2: draw(Out, 0.1)}
}

// Model is the network as an ONNX graph: input "x" [batch, In], output
// "probs" [batch, Out].
func (w Weights) Model() *onnx.Model {
	dims := func(name string, d ...int64) onnx.Tensor {
		return onnx.Tensor{Name: name, Dims: d, DataType: onnx.Float}
	}
	w1, b1, w2, b2 := dims("w1", In, Hidden), dims("b1", Hidden), dims("w2", Hidden, Out), dims("b2", Out)
	w1.Floats, b1.Floats, w2.Floats, b2.Floats = w.W1, w.B1, w.W2, w.B2
	return &onnx.Model{
		IRVersion:    onnx.IRVersion,
		OpsetVersion: onnx.Opset,
		ProducerName: "accelnode examples",
		Graph: onnx.Graph{
			Name: "mlp",
			Nodes: []onnx.Node{
				{Name: "fc1", OpType: "Gemm", Inputs: []string{"x", "w1", "b1"}, Outputs: []string{"h"}},
				{Name: "relu", OpType: "Relu", Inputs: []string{"h"}, Outputs: []string{"a"}},
				{Name: "fc2", OpType: "Gemm", Inputs: []string{"a", "w2", "b2"}, Outputs: []string{"logits"}},
				{Name: "softmax", OpType: "Softmax", Inputs: []string{"logits"}, Outputs: []string{"probs"}, Attrs: []onnx.Attribute{onnx.IntAttr("axis", -1)}},
			},
			Inputs:       []onnx.ValueInfo{{Name: "x", ElemType: onnx.Float, Dims: []onnx.Dim{{Param: "batch"}, {Value: In}}}},
			Outputs:      []onnx.ValueInfo{{Name: "probs", ElemType: onnx.Float, Dims: []onnx.Dim{{Param: "batch"}, {Value: Out}}}},
			Initializers: []onnx.Tensor{w1, b1, w2, b2},
		},
	}
}

// Input is a deterministic batch of inputs.
func Input(batch int) []float32 {
	rng := rand.New(rand.NewPCG(uint64(batch), 7))
	x := make([]float32, batch*In)
	for i := range x {
		x[i] = rng.Float32()*2 - 1
	}
	return x
}
