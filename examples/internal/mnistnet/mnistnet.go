// Package mnistnet is the seed's MNIST network, shared by the guest that
// trains it (examples/mnist-train), the program that exports its weights
// as ONNX (examples/mnist/model) and the guest that serves it
// (examples/mnist): conv 5×5 (16) → relu → max-pool 2 → conv 5×5 (32) →
// relu → max-pool 2 → dense 128 → relu → dense 10.
package mnistnet

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/mnist"
	"github.com/accelnode/accelnode/models/onnx"
)

// Sizes of the network.
const (
	Side    = 28 // input images are Side×Side
	Kernel  = 5  // both convolutions are Kernel×Kernel, padded to keep the size
	Pad     = Kernel / 2
	Conv1   = 16 // channels of the first convolution
	Conv2   = 32 // channels of the second
	Flat    = Conv2 * (Side / 4) * (Side / 4)
	Hidden  = 128
	Classes = 10
)

// Param describes one parameter tensor.
type Param struct {
	Name  string
	Shape []int
	// FanIn is the inputs of one output unit, for He initialisation; 0 for
	// a bias, which starts at zero.
	FanIn int
}

// Params lists the parameters in their fixed order: the order of the
// checkpoint, of the weight hash and of the optimiser's steps. Dense
// weights are [in, out], so that y = x·W.
var Params = []Param{
	{"conv1.w", []int{Conv1, 1, Kernel, Kernel}, Kernel * Kernel},
	{"conv1.b", []int{Conv1}, 0},
	{"conv2.w", []int{Conv2, Conv1, Kernel, Kernel}, Conv1 * Kernel * Kernel},
	{"conv2.b", []int{Conv2}, 0},
	{"dense1.w", []int{Flat, Hidden}, Flat},
	{"dense1.b", []int{Hidden}, 0},
	{"dense2.w", []int{Hidden, Classes}, Hidden},
	{"dense2.b", []int{Classes}, 0},
}

// Elements is the number of values of a shape.
func Elements(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Init draws He-initialised weights from seed (normal with variance
// 2/fan-in) and zero biases.
func Init(seed uint64) []mnist.Tensor {
	rng := rand.New(rand.NewPCG(seed, 0x6d6e697374))
	ts := make([]mnist.Tensor, len(Params))
	for i, p := range Params {
		v := make([]float32, Elements(p.Shape))
		if p.FanIn > 0 {
			scale := math.Sqrt(2 / float64(p.FanIn))
			for j := range v {
				v[j] = float32(rng.NormFloat64() * scale)
			}
		}
		ts[i] = mnist.Tensor{Name: p.Name, Shape: slices.Clone(p.Shape), Data: v}
	}
	return ts
}

// Check reports whether ts are the network's parameters, in order and
// shaped as Params says.
func Check(ts []mnist.Tensor) error {
	if len(ts) < len(Params) {
		return fmt.Errorf("%d tensors, want the %d parameters of the network", len(ts), len(Params))
	}
	for i, p := range Params {
		if ts[i].Name != p.Name || !slices.Equal(ts[i].Shape, p.Shape) || len(ts[i].Data) != Elements(p.Shape) {
			return fmt.Errorf("tensor %d is %s %v, want %s %v", i, ts[i].Name, ts[i].Shape, p.Name, p.Shape)
		}
	}
	return nil
}

// Pixels converts images of u8 pixels to f32 in [0, 1], as the network
// takes them.
func Pixels(dst []float32, src []uint8) {
	for i, v := range src[:len(dst)] {
		dst[i] = float32(v) / 255
	}
}

// Model is the network with the weights ts as an ONNX graph: input "x"
// [batch,1,28,28], outputs "logits" and "probs" [batch,10].
func Model(ts []mnist.Tensor) (*onnx.Model, error) {
	if err := Check(ts); err != nil {
		return nil, err
	}
	init := make([]onnx.Tensor, len(Params))
	for i, t := range ts[:len(Params)] {
		dims := make([]int64, len(t.Shape))
		for j, d := range t.Shape {
			dims[j] = int64(d)
		}
		init[i] = onnx.Tensor{Name: t.Name, Dims: dims, DataType: onnx.Float, Floats: t.Data}
	}
	conv := func(name, x, y string) onnx.Node {
		return onnx.Node{Name: name, OpType: "Conv", Inputs: []string{x, name + ".w", name + ".b"}, Outputs: []string{y}, Attrs: []onnx.Attribute{
			onnx.IntsAttr("kernel_shape", Kernel, Kernel), onnx.IntsAttr("pads", Pad, Pad, Pad, Pad)}}
	}
	pool := func(name, x, y string) onnx.Node {
		return onnx.Node{Name: name, OpType: "MaxPool", Inputs: []string{x}, Outputs: []string{y}, Attrs: []onnx.Attribute{
			onnx.IntsAttr("kernel_shape", 2, 2), onnx.IntsAttr("strides", 2, 2)}}
	}
	node := func(op, x, y string, attrs ...onnx.Attribute) onnx.Node {
		return onnx.Node{Name: y, OpType: op, Inputs: []string{x}, Outputs: []string{y}, Attrs: attrs}
	}
	gemm := func(name, x, y string) onnx.Node {
		return onnx.Node{Name: name, OpType: "Gemm", Inputs: []string{x, name + ".w", name + ".b"}, Outputs: []string{y}}
	}
	batch := onnx.Dim{Param: "batch"}
	return &onnx.Model{
		IRVersion:    onnx.IRVersion,
		OpsetVersion: onnx.Opset,
		ProducerName: "accelnode examples/mnist-train",
		Graph: onnx.Graph{
			Name: "mnist",
			Nodes: []onnx.Node{
				conv("conv1", "x", "c1"), node("Relu", "c1", "r1"), pool("pool1", "r1", "p1"),
				conv("conv2", "p1", "c2"), node("Relu", "c2", "r2"), pool("pool2", "r2", "p2"),
				node("Flatten", "p2", "flat"),
				gemm("dense1", "flat", "h"), node("Relu", "h", "hr"),
				gemm("dense2", "hr", "logits"),
				node("Softmax", "logits", "probs", onnx.IntAttr("axis", -1)),
			},
			Inputs: []onnx.ValueInfo{{Name: "x", ElemType: onnx.Float, Dims: []onnx.Dim{batch, {Value: 1}, {Value: Side}, {Value: Side}}}},
			Outputs: []onnx.ValueInfo{
				{Name: "logits", ElemType: onnx.Float, Dims: []onnx.Dim{batch, {Value: Classes}}},
				{Name: "probs", ElemType: onnx.Float, Dims: []onnx.Dim{batch, {Value: Classes}}},
			},
			Initializers: init,
		},
	}, nil
}
