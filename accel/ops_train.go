package accel

// The operations that train a network: the gradients of conv2d, maxpool2d
// and relu, reductions for bias gradients, the loss, and optimiser updates.
// Dense layers need nothing new: their gradients are matmuls with the
// transpose flags. Every long sum here is a BlockSum (docs/determinism.md),
// whose order depends on shapes alone and which a GPU computes in parallel.

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// ---- conv2d_backward_data --------------------------------------------------

// Conv2DBackwardDataParams are a convolution's parameters and the height and
// width of its input, which the output gradient alone does not fix when a
// stride is above 1.
type Conv2DBackwardDataParams struct {
	Conv2DParams
	InputH, InputW int
}

// Conv2DBackwardData is the gradient of conv2d with respect to its input:
// dx [N,C,H,W] from the output gradient dy [N,OC,OH,OW] and the weights w
// [OC,C/groups,KH,KW].
var Conv2DBackwardData = define(opDef[Conv2DBackwardDataParams]{
	Op: Op{
		Name: "conv2d_backward_data", Contract: "conv2d_backward_data",
		Inputs:          []Input{{Name: "dy", DType: F32}, {Name: "w", DType: F32}},
		Outputs:         []string{"dx"},
		ParamWords:      append(slices.Clone(conv2DWords), "input_h", "input_w"),
		ParamsByPointer: true,
		// Every output channel of the group times the window.
		Tolerance: Tolerance{Scale: ScaleAbs, Terms: func(c *Call) int {
			w, p := c.In[1].Shape(), c.Params.(Conv2DBackwardDataParams)
			return w[0] / p.Groups * w[2] * w[3]
		}},
	},
	decode: func(w []uint32) (Conv2DBackwardDataParams, error) {
		return Conv2DBackwardDataParams{Conv2DParams: decodeConv2D(w), InputH: int(w[9]), InputW: int(w[10])}, nil
	},
	shape: func(in [][]int, p Conv2DBackwardDataParams) ([][]int, error) {
		dy, w := in[0], in[1]
		if len(dy) != 4 || len(w) != 4 {
			return nil, fmt.Errorf("%w: conv2d_backward_data needs an NCHW gradient and OIHW weights, got %s and %s", ErrShape, ShapeString(dy), ShapeString(w))
		}
		if p.Groups < 1 || w[1] > MaxElements/p.Groups {
			return nil, fmt.Errorf("%w: groups must be at least 1 and fit the weights: %+v", ErrInvalid, p)
		}
		x := []int{dy[0], w[1] * p.Groups, p.InputH, p.InputW}
		if err := convForward(x, w, dy, p.Conv2DParams); err != nil {
			return nil, err
		}
		return [][]int{x}, nil
	},
	units: func(in, out [][]int, _ Conv2DBackwardDataParams) uint64 {
		return Conv2DUnits(out[0], in[1], in[0], false)
	},
	// The weights turned for the forward kernels, and one image's unrolled
	// windows.
	scratch: func(in, out [][]int, _ Conv2DBackwardDataParams) int64 {
		w, x := in[1], out[0]
		return 4*int64(product(w)) + 4*int64(w[0])*int64(w[2])*int64(w[3])*int64(x[2])*int64(x[3])
	},
})

// convForward checks that a convolution of an input shaped x with weights
// shaped w gives an output shaped y: the shapes a backward operation takes.
func convForward(x, w, y []int, p Conv2DParams) error {
	for _, d := range x {
		if d < 1 || d > MaxElements {
			return fmt.Errorf("%w: input %s outside 1..%d", ErrInvalid, ShapeString(x), MaxElements)
		}
	}
	if _, err := NumElements(x); err != nil {
		return err
	}
	want, err := Conv2DShape(x, w, nil, p)
	if err != nil {
		return err
	}
	if !slices.Equal(want, y) {
		return fmt.Errorf("%w: the gradient %s does not match conv2d's output %s for input %s and weights %s", ErrShape, ShapeString(y), ShapeString(want), ShapeString(x), ShapeString(w))
	}
	return nil
}

// Conv2DBackwardData returns the gradient of a convolution's input.
func (s *Session) Conv2DBackwardData(ctx context.Context, dy, w *Tensor, p Conv2DBackwardDataParams) (*Tensor, error) {
	return s.run1(ctx, Conv2DBackwardData, p, dy, w)
}

// ---- conv2d_backward_filter ------------------------------------------------

// Conv2DBackwardFilterParams are a convolution's parameters and its kernel's
// height and width.
type Conv2DBackwardFilterParams struct {
	Conv2DParams
	KernelH, KernelW int
}

// Conv2DBackwardFilter is the gradient of conv2d with respect to its
// weights: dw [OC,C/groups,KH,KW] from the input x [N,C,H,W] and the output
// gradient dy [N,OC,OH,OW], summed over N×OH×OW in the contract's blocks.
var Conv2DBackwardFilter = define(opDef[Conv2DBackwardFilterParams]{
	Op: Op{
		Name: "conv2d_backward_filter", Contract: "conv2d_backward_filter",
		Inputs:          []Input{{Name: "x", DType: F32}, {Name: "dy", DType: F32}},
		Outputs:         []string{"dw"},
		ParamWords:      append(slices.Clone(conv2DWords), "kernel_h", "kernel_w"),
		ParamsByPointer: true,
		Tolerance: Tolerance{Scale: ScaleAbs, Terms: func(c *Call) int {
			dy := c.In[1].Shape()
			return dy[0] * dy[2] * dy[3]
		}},
	},
	decode: func(w []uint32) (Conv2DBackwardFilterParams, error) {
		return Conv2DBackwardFilterParams{Conv2DParams: decodeConv2D(w), KernelH: int(w[9]), KernelW: int(w[10])}, nil
	},
	shape: func(in [][]int, p Conv2DBackwardFilterParams) ([][]int, error) {
		x, dy := in[0], in[1]
		if len(x) != 4 || len(dy) != 4 {
			return nil, fmt.Errorf("%w: conv2d_backward_filter needs an NCHW input and gradient, got %s and %s", ErrShape, ShapeString(x), ShapeString(dy))
		}
		if p.Groups < 1 || x[1]%p.Groups != 0 {
			return nil, fmt.Errorf("%w: %d groups cannot take %d input channels", ErrInvalid, p.Groups, x[1])
		}
		if p.KernelH < 1 || p.KernelW < 1 || p.KernelH > MaxElements || p.KernelW > MaxElements {
			return nil, fmt.Errorf("%w: kernel %dx%d outside 1..%d", ErrInvalid, p.KernelH, p.KernelW, MaxElements)
		}
		w := []int{dy[1], x[1] / p.Groups, p.KernelH, p.KernelW}
		if _, err := NumElements(w); err != nil {
			return nil, err
		}
		if err := convForward(x, w, dy, p.Conv2DParams); err != nil {
			return nil, err
		}
		return [][]int{w}, nil
	},
	units: func(in, out [][]int, _ Conv2DBackwardFilterParams) uint64 {
		return Conv2DUnits(in[0], out[0], in[1], false)
	},
	// Each block's partial sums of every weight, and the unrolled windows
	// and gradients of one block.
	scratch: func(in, out [][]int, _ Conv2DBackwardFilterParams) int64 {
		x, dy, w := in[0], in[1], out[0]
		blocks := (int64(dy[0])*int64(dy[2])*int64(dy[3]) + blockLen - 1) / blockLen
		perOC := int64(w[1]) * int64(w[2]) * int64(w[3])
		return 4 * (blocks*int64(w[0])*perOC + blockLen*(perOC+int64(dy[1])) + int64(x[1]))
	},
})

// blockLen is strictmath.BlockLen: the runs of a BlockSum.
const blockLen = 256

// Conv2DBackwardFilter returns the gradient of a convolution's weights.
func (s *Session) Conv2DBackwardFilter(ctx context.Context, x, dy *Tensor, p Conv2DBackwardFilterParams) (*Tensor, error) {
	return s.run1(ctx, Conv2DBackwardFilter, p, x, dy)
}

// ---- maxpool2d_backward ----------------------------------------------------

// MaxPool2DBackward is the gradient of maxpool2d with respect to its input:
// each window's gradient goes to the position its maximum came from (the
// first of equal values, the first NaN), summed where windows overlap.
var MaxPool2DBackward = define(opDef[Pool2DParams]{
	Op: Op{
		Name: "maxpool2d_backward", Contract: "maxpool2d_backward",
		Inputs:          []Input{{Name: "x", DType: F32}, {Name: "dy", DType: F32}},
		Outputs:         []string{"dx"},
		ParamWords:      pool2DWords,
		ParamsByPointer: true,
	},
	decode: decodePool2D,
	shape: func(in [][]int, p Pool2DParams) ([][]int, error) {
		x, dy := in[0], in[1]
		want, err := Pool2DShape(x, p)
		if err != nil {
			return nil, err
		}
		if !slices.Equal(want, dy) {
			return nil, fmt.Errorf("%w: the gradient %s does not match maxpool2d's output %s", ErrShape, ShapeString(dy), ShapeString(want))
		}
		return [][]int{slices.Clone(x)}, nil
	},
	units: func(in, _ [][]int, p Pool2DParams) uint64 {
		return addSat(Pool2DUnits(in[0], in[1], p), 8*product(in[0]))
	},
})

// MaxPool2DBackward returns the gradient of a max-pool's input x from the
// gradient dy of its output.
func (s *Session) MaxPool2DBackward(ctx context.Context, x, dy *Tensor, p Pool2DParams) (*Tensor, error) {
	return s.run1(ctx, MaxPool2DBackward, p, x, dy)
}

// ---- relu_backward ---------------------------------------------------------

// ReluBackward is the gradient of relu: dy where x > 0, +0 where x is not
// (so at +0 and -0), and NaN where x is NaN.
var ReluBackward = define(opDef[NoParams]{
	Op: Op{
		Name: "relu_backward", Contract: "relu_backward",
		Inputs:  []Input{{Name: "x", DType: F32}, {Name: "dy", DType: F32}},
		Outputs: []string{"dx"},
	},
	shape: func(in [][]int, _ NoParams) ([][]int, error) {
		if !slices.Equal(in[0], in[1]) {
			return nil, fmt.Errorf("%w: x %s and dy %s differ", ErrShape, ShapeString(in[0]), ShapeString(in[1]))
		}
		return [][]int{slices.Clone(in[0])}, nil
	},
	units: func(in, _ [][]int, _ NoParams) uint64 { return elementwiseUnits(product(in[0]), 3) },
})

// ReluBackward returns the gradient of relu's input x from the gradient dy
// of its output.
func (s *Session) ReluBackward(ctx context.Context, x, dy *Tensor) (*Tensor, error) {
	return s.run1(ctx, ReluBackward, NoParams{}, x, dy)
}

// ---- reduce_sum ------------------------------------------------------------

// ReduceSumParams select the axes to sum over: bit i set sums axis i.
type ReduceSumParams struct{ Axes uint32 }

// ReduceSum sums x over the chosen axes, which leave the output; the other
// axes keep their order. Summing every axis gives a [1] tensor.
var ReduceSum = define(opDef[ReduceSumParams]{
	Op: Op{
		Name: "reduce_sum", Contract: "reduce_sum",
		Inputs:     []Input{{Name: "x", DType: F32}},
		Outputs:    []string{"y"},
		ParamWords: []string{"axes"},
		Tolerance: Tolerance{Scale: ScaleAbs, Terms: func(c *Call) int {
			return c.In[0].Len() / c.Out[0].Len()
		}},
	},
	decode: func(w []uint32) (ReduceSumParams, error) { return ReduceSumParams{Axes: w[0]}, nil },
	shape: func(in [][]int, p ReduceSumParams) ([][]int, error) {
		x := in[0]
		if p.Axes == 0 || bits.Len32(p.Axes) > len(x) {
			return nil, fmt.Errorf("%w: axes %#b name no axis or one beyond %s", ErrInvalid, p.Axes, ShapeString(x))
		}
		var y []int
		for i, d := range x {
			if p.Axes&(1<<i) == 0 {
				y = append(y, d)
			}
		}
		if len(y) == 0 {
			y = []int{1}
		}
		return [][]int{y}, nil
	},
	units: func(in, out [][]int, _ ReduceSumParams) uint64 {
		return elementwiseUnits(product(in[0]), 1) + 4*product(out[0])
	},
})

// ReduceSum returns the sum of x over the given axes.
func (s *Session) ReduceSum(ctx context.Context, x *Tensor, axes ...int) (*Tensor, error) {
	var p ReduceSumParams
	for _, a := range axes {
		if a < 0 || a >= MaxRank {
			return nil, fmt.Errorf("%w: axis %d", ErrInvalid, a)
		}
		p.Axes |= 1 << a
	}
	return s.run1(ctx, ReduceSum, p, x)
}

// ---- softmax_cross_entropy -------------------------------------------------

// SoftmaxCrossEntropy is the mean cross-entropy of softmax(logits) [N,K]
// against labels i32 [N], returned as its scalar "loss", and its gradient
// with respect to the logits, (softmax(logits) - onehot(labels)) / N.
var SoftmaxCrossEntropy = define(opDef[NoParams]{
	Op: Op{
		Name: "softmax_cross_entropy", Contract: "softmax_cross_entropy",
		Inputs:  []Input{{Name: "logits", DType: F32}, {Name: "labels", DType: I32, Index: true}},
		Outputs: []string{"dlogits"},
		Scalar:  "loss",
		// A softmax, a subtraction and a division; the loss sums N rows.
		Tolerance: Tolerance{Scale: ScaleMaxWant, Terms: func(c *Call) int {
			s := c.In[0].Shape()
			return s[0] + s[1] + 8
		}},
	},
	shape: func(in [][]int, _ NoParams) ([][]int, error) {
		logits, labels := in[0], in[1]
		if len(logits) != 2 || len(labels) != 1 || labels[0] != logits[0] {
			return nil, fmt.Errorf("%w: needs logits [N x K] and labels [N], got %s and %s", ErrShape, ShapeString(logits), ShapeString(labels))
		}
		return [][]int{slices.Clone(logits)}, nil
	},
	units: func(in, _ [][]int, _ NoParams) uint64 {
		n, k := uint64(in[0][0]), uint64(in[0][1])
		return CallUnits + (SoftmaxUnitsPerElement+2)*n*k + 8*n*k + 24*n
	},
})

// verifyLabels makes sure every label indexes a column of the logits.
func verifyLabels(ctx context.Context, in []*Tensor, _ any, read func(*Tensor, int, []byte) error) error {
	labels, k := in[1], in[0].Shape()[1]
	buf := make([]byte, 4*min(csrChunk, labels.Len()))
	for first := 0; first < labels.Len(); first += csrChunk {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted checking the labels: %w", err)
		}
		b := buf[:4*min(csrChunk, labels.Len()-first)]
		if err := read(labels, first, b); err != nil {
			return fmt.Errorf("read labels: %w", err)
		}
		for j := 0; j < len(b); j += 4 {
			if l := int32(uint32(b[j]) | uint32(b[j+1])<<8 | uint32(b[j+2])<<16 | uint32(b[j+3])<<24); l < 0 || int(l) >= k {
				return fmt.Errorf("%w: label %d of row %d outside [0, %d)", ErrInvalid, l, first+j/4, k)
			}
		}
	}
	return nil
}

func init() { SoftmaxCrossEntropy.verify = verifyLabels }

// SoftmaxCrossEntropy returns the gradient of the mean cross-entropy with
// respect to logits, and the mean cross-entropy itself.
func (s *Session) SoftmaxCrossEntropy(ctx context.Context, logits, labels *Tensor) (*Tensor, float32, error) {
	out, loss, err := s.Run(ctx, SoftmaxCrossEntropy, NoParams{}, logits, labels)
	if err != nil {
		return nil, 0, err
	}
	return out[0], loss, nil
}

// ---- sgd_momentum ----------------------------------------------------------

// SGDParams are the hyperparameters of a step of SGD with momentum.
type SGDParams struct {
	LearningRate, Momentum float32
}

// SGDMomentum is one step of SGD with momentum, in place: velocity =
// momentum·velocity + grad, then w = w - learning_rate·velocity.
var SGDMomentum = define(opDef[SGDParams]{
	Op: Op{
		Name: "sgd_momentum", Contract: "sgd_momentum",
		Inputs: []Input{
			{Name: "w", DType: F32, InPlace: true}, {Name: "grad", DType: F32}, {Name: "velocity", DType: F32, InPlace: true},
		},
		ParamWords:      []string{"learning_rate", "momentum"},
		ParamsByPointer: true,
		Tolerance:       Tolerance{Compare: []string{"w", "velocity"}},
	},
	decode: func(w []uint32) (SGDParams, error) {
		return SGDParams{LearningRate: math.Float32frombits(w[0]), Momentum: math.Float32frombits(w[1])}, nil
	},
	shape: func(in [][]int, p SGDParams) ([][]int, error) {
		if err := sameShapes(in, "w", "grad", "velocity"); err != nil {
			return nil, err
		}
		return [][]int{}, finite(p, p.LearningRate, p.Momentum)
	},
	// Four operations an element; w, grad and velocity read, w and
	// velocity written.
	units: func(in, _ [][]int, _ SGDParams) uint64 { n := product(in[0]); return CallUnits + 4*n + 4*5*n },
})

// sameShapes checks that every tensor has the first one's shape.
func sameShapes(in [][]int, names ...string) error {
	for i := 1; i < len(in); i++ {
		if !slices.Equal(in[i], in[0]) {
			return fmt.Errorf("%w: %s %s must match %s %s", ErrShape, names[i], ShapeString(in[i]), names[0], ShapeString(in[0]))
		}
	}
	return nil
}

// finite refuses hyperparameters that are NaN or infinite.
func finite(p any, vs ...float32) error {
	for _, v := range vs {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w: parameters must be finite: %+v", ErrInvalid, p)
		}
	}
	return nil
}

// SGDMomentum updates w and velocity in place from grad.
func (s *Session) SGDMomentum(ctx context.Context, w, grad, velocity *Tensor, p SGDParams) error {
	_, _, err := s.Run(ctx, SGDMomentum, p, w, grad, velocity)
	return err
}

// ---- adam ------------------------------------------------------------------

// AdamParams are the hyperparameters of an Adam step. The bias corrections
// 1-β1^t and 1-β2^t of step t are the caller's, so that the operation
// holds no state beyond its tensors.
type AdamParams struct {
	LearningRate, Beta1, Beta2, Epsilon float32
	Correction1, Correction2            float32
}

// Adam is one step of Adam, in place: the moments m and v follow grad, and
// w moves by learning_rate·m̂/(√v̂ + ε).
var Adam = define(opDef[AdamParams]{
	Op: Op{
		Name: "adam", Contract: "adam",
		Inputs: []Input{
			{Name: "w", DType: F32, InPlace: true}, {Name: "grad", DType: F32},
			{Name: "m", DType: F32, InPlace: true}, {Name: "v", DType: F32, InPlace: true},
		},
		ParamWords:      []string{"learning_rate", "beta1", "beta2", "epsilon", "correction1", "correction2"},
		ParamsByPointer: true,
		Tolerance:       Tolerance{Compare: []string{"w", "m", "v"}},
	},
	decode: func(w []uint32) (AdamParams, error) {
		f := func(i int) float32 { return math.Float32frombits(w[i]) }
		return AdamParams{LearningRate: f(0), Beta1: f(1), Beta2: f(2), Epsilon: f(3), Correction1: f(4), Correction2: f(5)}, nil
	},
	shape: func(in [][]int, p AdamParams) ([][]int, error) {
		if err := sameShapes(in, "w", "grad", "m", "v"); err != nil {
			return nil, err
		}
		if err := finite(p, p.LearningRate, p.Beta1, p.Beta2, p.Epsilon, p.Correction1, p.Correction2); err != nil {
			return nil, err
		}
		if !(p.Correction1 > 0 && p.Correction1 <= 1 && p.Correction2 > 0 && p.Correction2 <= 1) {
			return nil, fmt.Errorf("%w: bias corrections must lie in (0, 1]: %+v", ErrInvalid, p)
		}
		return [][]int{}, nil
	},
	// A dozen operations and a square root an element; four tensors read,
	// three written.
	units: func(in, _ [][]int, _ AdamParams) uint64 { n := product(in[0]); return CallUnits + 16*n + 4*7*n },
})

// Adam updates w, m and v in place from grad.
func (s *Session) Adam(ctx context.Context, w, grad, m, v *Tensor, p AdamParams) error {
	_, _, err := s.Run(ctx, Adam, p, w, grad, m, v)
	return err
}
