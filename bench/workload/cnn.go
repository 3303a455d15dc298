package workload

import (
	"math"
	"math/rand/v2"
	"sync"

	"github.com/accelnode/accelnode/models/onnx"
)

// The MNIST CNN's cost per image: its convolutions and dense layers, a
// multiply-add as two (biases, relu, pooling and softmax add under 1 %).
const (
	cnnFLOPsPerImage = 2 * (32*26*26*1*9 + 64*11*11*32*9 + 1600*128 + 128*10)
	cnnWeights       = 32*9 + 32 + 64*32*9 + 64 + 1600*128 + 128 + 128*10 + 10
)

// CNNName is the name the benchmark registers the model under.
const CNNName = "bench-cnn"

// CNN returns the MNIST CNN as an ONNX file: input "x" [batch,1,28,28],
// output "probs" [batch,10], weights drawn from a fixed seed with He
// scaling. It is built once.
var CNN = sync.OnceValue(func() []byte { return onnx.Marshal(cnnModel()) })

func cnnModel() *onnx.Model {
	r := rand.New(rand.NewPCG(28, 28))
	var inits []onnx.Tensor
	weight := func(name string, fanIn int, d ...int64) string {
		n := int64(1)
		for _, v := range d {
			n *= v
		}
		scale := math.Sqrt(2 / float64(fanIn))
		t := onnx.Tensor{Name: name, Dims: d, DataType: onnx.Float, Floats: make([]float32, n)}
		for i := range t.Floats {
			t.Floats[i] = float32(r.NormFloat64() * scale)
		}
		inits = append(inits, t)
		return name
	}
	node := func(op, name string, in []string, out string, attrs ...onnx.Attribute) onnx.Node {
		return onnx.Node{Name: name, OpType: op, Inputs: in, Outputs: []string{out}, Attrs: attrs}
	}
	kernel := onnx.IntsAttr("kernel_shape", 3, 3)
	pool := []onnx.Attribute{onnx.IntsAttr("kernel_shape", 2, 2), onnx.IntsAttr("strides", 2, 2)}
	nodes := []onnx.Node{
		node("Conv", "conv1", []string{"x", weight("w1", 9, 32, 1, 3, 3), weight("b1", 9, 32)}, "c1", kernel),
		node("Relu", "relu1", []string{"c1"}, "r1"),
		node("MaxPool", "pool1", []string{"r1"}, "p1", pool...),
		node("Conv", "conv2", []string{"p1", weight("w2", 288, 64, 32, 3, 3), weight("b2", 288, 64)}, "c2", kernel),
		node("Relu", "relu2", []string{"c2"}, "r2"),
		node("MaxPool", "pool2", []string{"r2"}, "p2", pool...),
		node("Flatten", "flatten", []string{"p2"}, "f"),
		node("Gemm", "fc1", []string{"f", weight("w3", 1600, 1600, 128), weight("b3", 1600, 128)}, "h"),
		node("Relu", "relu3", []string{"h"}, "a"),
		node("Gemm", "fc2", []string{"a", weight("w4", 128, 128, 10), weight("b4", 128, 10)}, "logits"),
		node("Softmax", "softmax", []string{"logits"}, "probs", onnx.IntAttr("axis", -1)),
	}
	return &onnx.Model{
		IRVersion:    onnx.IRVersion,
		OpsetVersion: onnx.Opset,
		ProducerName: "accelnode bench",
		Graph: onnx.Graph{
			Name:         "mnist_cnn",
			Nodes:        nodes,
			Inputs:       []onnx.ValueInfo{{Name: "x", ElemType: onnx.Float, Dims: []onnx.Dim{{Param: "batch"}, {Value: 1}, {Value: 28}, {Value: 28}}}},
			Outputs:      []onnx.ValueInfo{{Name: "probs", ElemType: onnx.Float, Dims: []onnx.Dim{{Param: "batch"}, {Value: 10}}}},
			Initializers: inits,
		},
	}
}
