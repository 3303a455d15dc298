package accel

// The operations of the node. Each is described once, here: its tensors,
// parameters, shape rule, cost, checked-mode tolerance and contract
// section; a typed Session method follows each for Go callers. docs/abi.md
// gives the guest's view of each, docs/determinism.md its numerics.

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// ops lists the operations in docs/abi.md's order.
var ops = []*Op{MatMul, Conv2D, AddBias, Relu, MaxPool2D, Softmax, TSNEStep, Add, Clip, GlobalAvgPool, Unary, Binary, Transpose, LayerNorm, BatchMatMul, Concat, Slice, Gather,
	Conv2DBackwardData, Conv2DBackwardFilter, MaxPool2DBackward, ReluBackward, ReduceSum,
	SoftmaxCrossEntropy, SGDMomentum, Adam, TSNEAffinities, EmbeddingQuality}

// elementwiseUnits is the cost of an elementwise operation over n f32
// elements that moves tensors such tensors (inputs and output): one unit per
// element computed and one per byte moved.
func elementwiseUnits(n, tensors uint64) uint64 { return CallUnits + n + 4*n*tensors }

// ---- matmul ----------------------------------------------------------------

// MatMulParams selects transposed operands: with TransA, a is stored as
// [K, M]; with TransB, b is stored as [N, K].
type MatMulParams struct {
	TransA, TransB bool
}

// matmul flags in the guest ABI.
const (
	matMulTransA = 1 << 0
	matMulTransB = 1 << 1
)

// MatMul is C[M,N] = op(A)·op(B), op transposing where MatMulParams asks.
var MatMul = define(opDef[MatMulParams]{
	Op: Op{
		Name: "matmul", Contract: "matmul",
		Inputs:     []Input{{Name: "a", DType: F32}, {Name: "b", DType: F32}},
		Outputs:    []string{"c"},
		ParamWords: []string{"flags"},
		Tolerance: Tolerance{Scale: ScaleAbs, Terms: func(c *Call) int {
			_, k, _, _ := MatMulDims(c.In[0].Shape(), c.In[1].Shape(), c.Params.(MatMulParams))
			return k
		}},
	},
	decode: func(w []uint32) (MatMulParams, error) {
		if w[0]&^(matMulTransA|matMulTransB) != 0 {
			return MatMulParams{}, fmt.Errorf("%w: unknown flags %#x", ErrInvalid, w[0])
		}
		return MatMulParams{TransA: w[0]&matMulTransA != 0, TransB: w[0]&matMulTransB != 0}, nil
	},
	shape: func(in [][]int, p MatMulParams) ([][]int, error) {
		m, _, n, err := MatMulDims(in[0], in[1], p)
		return [][]int{{m, n}}, err
	},
	units: func(in, _ [][]int, p MatMulParams) uint64 {
		m, k, n, _ := MatMulDims(in[0], in[1], p)
		return MatMulUnits(m, k, n)
	},
	// Packed (or transposed) copies of both operands. The rounding to
	// whole panels and each thread's small blocks are in the constant
	// docs/abi.md states beside the limits.
	scratch: func(in, _ [][]int, p MatMulParams) int64 {
		m, k, n, _ := MatMulDims(in[0], in[1], p)
		return 4 * (int64(m)*int64(k) + int64(k)*int64(n))
	},
})

// MatMulDims checks the operand shapes of a matmul and returns M, K and N.
func MatMulDims(a, b []int, p MatMulParams) (m, k, n int, err error) {
	if len(a) != 2 || len(b) != 2 {
		return 0, 0, 0, fmt.Errorf("%w: matmul needs matrices, got %s and %s", ErrShape, ShapeString(a), ShapeString(b))
	}
	m, k = a[0], a[1]
	if p.TransA {
		m, k = k, m
	}
	kb, n := b[0], b[1]
	if p.TransB {
		kb, n = n, kb
	}
	if k != kb {
		return 0, 0, 0, fmt.Errorf("%w: inner dimensions %d and %d differ (a %s, b %s)", ErrShape, k, kb, ShapeString(a), ShapeString(b))
	}
	return m, k, n, nil
}

// MatMulUnits is the cost of an [M,K]·[K,N] product.
func MatMulUnits(m, k, n int) uint64 {
	M, K, N := uint64(m), uint64(k), uint64(n)
	return CallUnits + 2*M*N*K + 4*(M*K+K*N+M*N)
}

// MatMul returns op(a)·op(b) for f32 matrices a [M,K] and b [K,N] (stored
// transposed where p asks).
func (s *Session) MatMul(ctx context.Context, a, b *Tensor, p MatMulParams) (*Tensor, error) {
	return s.run1(ctx, MatMul, p, a, b)
}

// ---- conv2d ----------------------------------------------------------------

// Conv2DParams describes a 2-D convolution. Strides, dilations and groups
// are at least 1 (the guest ABI reads a 0 as 1).
type Conv2DParams struct {
	StrideH, StrideW     int
	PadTop, PadLeft      int
	PadBottom, PadRight  int
	DilationH, DilationW int
	Groups               int
}

// Conv2D is a grouped, strided, dilated, padded 2-D convolution of x
// [N,C,H,W] with weights w [OC,C/groups,KH,KW] and an optional bias [OC].
var Conv2D = define(opDef[Conv2DParams]{
	Op: Op{
		Name: "conv2d", Contract: "conv2d",
		Inputs:          []Input{{Name: "x", DType: F32}, {Name: "w", DType: F32}, {Name: "bias", DType: F32, Optional: true}},
		Outputs:         []string{"y"},
		ParamWords:      conv2DWords,
		ParamsByPointer: true,
		// The products of one group's window, then the bias.
		Tolerance: Tolerance{Scale: ScaleAbs, Terms: func(c *Call) int {
			w := c.In[1].Shape()
			return w[1]*w[2]*w[3] + 1
		}},
	},
	decode: func(w []uint32) (Conv2DParams, error) { return decodeConv2D(w), nil },
	shape: func(in [][]int, p Conv2DParams) ([][]int, error) {
		out, err := Conv2DShape(in[0], in[1], in[2], p)
		return [][]int{out}, err
	},
	units: func(in, out [][]int, p Conv2DParams) uint64 { return Conv2DUnits(in[0], in[1], out[0], in[2] != nil) },
	// One image's windows unrolled (im2col), their packed copy and a
	// packed copy of the weights, as a convolution computed as a matrix
	// product holds them.
	scratch: func(in, out [][]int, p Conv2DParams) int64 {
		w, y := in[1], out[0]
		window := int64(w[1]) * int64(w[2]) * int64(w[3])
		return 4 * window * (2*int64(y[2])*int64(y[3]) + int64(w[0]))
	},
})

// conv2DWords are the ABI words of a convolution's parameters, shared by
// conv2d and its backward operations.
var conv2DWords = []string{"stride_h", "stride_w", "pad_top", "pad_left", "pad_bottom", "pad_right",
	"dilation_h", "dilation_w", "groups"}

// decodeConv2D reads the first len(conv2DWords) words of w.
func decodeConv2D(w []uint32) Conv2DParams {
	return Conv2DParams{
		StrideH: oneIfZero(w[0]), StrideW: oneIfZero(w[1]),
		PadTop: int(w[2]), PadLeft: int(w[3]), PadBottom: int(w[4]), PadRight: int(w[5]),
		DilationH: oneIfZero(w[6]), DilationW: oneIfZero(w[7]),
		Groups: oneIfZero(w[8]),
	}
}

// oneIfZero reads an ABI count where 0 means the default of 1.
func oneIfZero(v uint32) int {
	if v == 0 {
		return 1
	}
	return int(v)
}

// Conv2DShape checks a convolution's operands and returns the output shape.
// biasShape is nil when there is no bias.
func Conv2DShape(x, w, biasShape []int, p Conv2DParams) ([]int, error) {
	if len(x) != 4 || len(w) != 4 {
		return nil, fmt.Errorf("%w: conv2d needs NCHW input and OIHW weights, got %s and %s", ErrShape, ShapeString(x), ShapeString(w))
	}
	if p.StrideH < 1 || p.StrideW < 1 || p.DilationH < 1 || p.DilationW < 1 || p.Groups < 1 {
		return nil, fmt.Errorf("%w: strides, dilations and groups must be at least 1: %+v", ErrInvalid, p)
	}
	if p.PadTop < 0 || p.PadLeft < 0 || p.PadBottom < 0 || p.PadRight < 0 {
		return nil, fmt.Errorf("%w: padding must not be negative: %+v", ErrInvalid, p)
	}
	n, c, h, wd := x[0], x[1], x[2], x[3]
	oc, cg, kh, kw := w[0], w[1], w[2], w[3]
	if c%p.Groups != 0 || oc%p.Groups != 0 || cg != c/p.Groups {
		return nil, fmt.Errorf("%w: %d groups cannot take %d input and %d output channels with weights %s", ErrShape, p.Groups, c, oc, ShapeString(w))
	}
	if biasShape != nil && (len(biasShape) != 1 || biasShape[0] != oc) {
		return nil, fmt.Errorf("%w: bias %s, want [%d]", ErrShape, ShapeString(biasShape), oc)
	}
	oh, err := windows(h, kh, p.StrideH, p.DilationH, p.PadTop, p.PadBottom)
	if err != nil {
		return nil, err
	}
	ow, err := windows(wd, kw, p.StrideW, p.DilationW, p.PadLeft, p.PadRight)
	if err != nil {
		return nil, err
	}
	shape := []int{n, oc, oh, ow}
	if _, err := NumElements(shape); err != nil {
		return nil, err
	}
	return shape, nil
}

// windows counts the positions of a dilated window along one padded axis.
// Parameters beyond the largest dimension a tensor can have are invalid:
// no input is that large.
func windows(size, kernel, stride, dilation, padLo, padHi int) (int, error) {
	const limit = MaxElements
	if padLo > limit || padHi > limit || dilation > limit || stride > limit {
		return 0, fmt.Errorf("%w: window parameters above %d (stride %d, dilation %d, padding %d and %d)", ErrInvalid, limit, stride, dilation, padLo, padHi)
	}
	span := dilation*(kernel-1) + 1 // no overflow: each factor is below 2^29
	padded := size + padLo + padHi
	if span > padded {
		return 0, fmt.Errorf("%w: window of %d does not fit axis of %d padded to %d", ErrShape, span, size, padded)
	}
	return (padded-span)/stride + 1, nil
}

// Conv2DUnits is the cost of a convolution from its input, weight and output
// shapes. Padding positions are counted as if computed, so the cost depends on
// shapes alone.
func Conv2DUnits(x, w, out []int, bias bool) uint64 {
	outElems := product(out)
	perOutput := uint64(w[1]) * uint64(w[2]) * uint64(w[3])
	bytes := 4 * (product(x) + product(w) + outElems)
	units := CallUnits + 2*outElems*perOutput + bytes
	if bias {
		units += outElems + 4*uint64(out[1])
	}
	return units
}

// Conv2D returns the convolution of x [N,C,H,W] with w [OC,C/groups,KH,KW],
// plus bias [OC] when bias is not nil.
func (s *Session) Conv2D(ctx context.Context, x, w, bias *Tensor, p Conv2DParams) (*Tensor, error) {
	return s.run1(ctx, Conv2D, p, x, w, bias)
}

// ---- add_bias --------------------------------------------------------------

// AddBiasParams names the axis a bias is broadcast along.
type AddBiasParams struct{ Axis int }

// AddBias is y = x + bias, the vector bias broadcast along one axis of x.
var AddBias = define(opDef[AddBiasParams]{
	Op: Op{
		Name: "add_bias", Contract: "add_bias",
		Inputs:     []Input{{Name: "x", DType: F32}, {Name: "bias", DType: F32}},
		Outputs:    []string{"y"},
		ParamWords: []string{"axis"},
	},
	decode: func(w []uint32) (AddBiasParams, error) { return AddBiasParams{Axis: int(w[0])}, nil },
	shape: func(in [][]int, p AddBiasParams) ([][]int, error) {
		x, bias := in[0], in[1]
		if p.Axis < 0 || p.Axis >= len(x) {
			return nil, fmt.Errorf("%w: axis %d outside %s", ErrInvalid, p.Axis, ShapeString(x))
		}
		if len(bias) != 1 || bias[0] != x[p.Axis] {
			return nil, fmt.Errorf("%w: bias %s does not match axis %d of %s", ErrShape, ShapeString(bias), p.Axis, ShapeString(x))
		}
		return [][]int{slices.Clone(x)}, nil
	},
	units: func(in, _ [][]int, _ AddBiasParams) uint64 {
		return elementwiseUnits(product(in[0]), 2) + 4*product(in[1])
	},
})

// AddBias returns x + bias, with bias [x.Shape()[axis]] broadcast along axis.
func (s *Session) AddBias(ctx context.Context, x, bias *Tensor, axis int) (*Tensor, error) {
	return s.run1(ctx, AddBias, AddBiasParams{Axis: axis}, x, bias)
}

// ---- relu ------------------------------------------------------------------

// Relu is max(x, +0) elementwise, NaN preserved.
var Relu = define(opDef[NoParams]{
	Op: Op{
		Name: "relu", Contract: "relu",
		Inputs:  []Input{{Name: "x", DType: F32}},
		Outputs: []string{"y"},
	},
	shape: sameShape,
	units: func(in, _ [][]int, _ NoParams) uint64 { return elementwiseUnits(product(in[0]), 2) },
})

func sameShape(in [][]int, _ NoParams) ([][]int, error) { return [][]int{slices.Clone(in[0])}, nil }

// Relu returns max(x, +0) elementwise.
func (s *Session) Relu(ctx context.Context, x *Tensor) (*Tensor, error) {
	return s.run1(ctx, Relu, NoParams{}, x)
}

// ---- maxpool2d -------------------------------------------------------------

// Pool2DParams describes a 2-D pooling window. Every padding is smaller than
// the kernel along its axis, so no window lies wholly in padding.
type Pool2DParams struct {
	KernelH, KernelW    int
	StrideH, StrideW    int
	PadTop, PadLeft     int
	PadBottom, PadRight int
}

// MaxPool2D is the maximum over each window of an NCHW tensor.
var MaxPool2D = define(opDef[Pool2DParams]{
	Op: Op{
		Name: "maxpool2d", Contract: "maxpool2d",
		Inputs:          []Input{{Name: "x", DType: F32}},
		Outputs:         []string{"y"},
		ParamWords:      pool2DWords,
		ParamsByPointer: true,
	},
	decode: decodePool2D,
	shape: func(in [][]int, p Pool2DParams) ([][]int, error) {
		out, err := Pool2DShape(in[0], p)
		return [][]int{out}, err
	},
	units: func(in, out [][]int, p Pool2DParams) uint64 { return Pool2DUnits(in[0], out[0], p) },
})

// pool2DWords are the ABI words of a pooling window, shared by maxpool2d
// and its backward operation.
var pool2DWords = []string{"kernel_h", "kernel_w", "stride_h", "stride_w", "pad_top", "pad_left", "pad_bottom", "pad_right"}

func decodePool2D(w []uint32) (Pool2DParams, error) {
	return Pool2DParams{
		KernelH: int(w[0]), KernelW: int(w[1]),
		StrideH: oneIfZero(w[2]), StrideW: oneIfZero(w[3]),
		PadTop: int(w[4]), PadLeft: int(w[5]), PadBottom: int(w[6]), PadRight: int(w[7]),
	}, nil
}

// Pool2DShape checks a pooling window against x and returns the output shape.
func Pool2DShape(x []int, p Pool2DParams) ([]int, error) {
	if len(x) != 4 {
		return nil, fmt.Errorf("%w: maxpool2d needs an NCHW input, got %s", ErrShape, ShapeString(x))
	}
	if p.KernelH < 1 || p.KernelW < 1 || p.StrideH < 1 || p.StrideW < 1 {
		return nil, fmt.Errorf("%w: kernel and strides must be at least 1: %+v", ErrInvalid, p)
	}
	if p.PadTop < 0 || p.PadLeft < 0 || p.PadBottom < 0 || p.PadRight < 0 ||
		p.PadTop >= p.KernelH || p.PadBottom >= p.KernelH || p.PadLeft >= p.KernelW || p.PadRight >= p.KernelW {
		return nil, fmt.Errorf("%w: padding must be smaller than the kernel: %+v", ErrInvalid, p)
	}
	// Padding wider than the input only adds windows that repeat others;
	// bounding it keeps the outputs within a small multiple of the input.
	if p.PadTop > x[2] || p.PadBottom > x[2] || p.PadLeft > x[3] || p.PadRight > x[3] {
		return nil, fmt.Errorf("%w: padding must not exceed the input's %dx%d: %+v", ErrInvalid, x[2], x[3], p)
	}
	oh, err := windows(x[2], p.KernelH, p.StrideH, 1, p.PadTop, p.PadBottom)
	if err != nil {
		return nil, err
	}
	ow, err := windows(x[3], p.KernelW, p.StrideW, 1, p.PadLeft, p.PadRight)
	if err != nil {
		return nil, err
	}
	return []int{x[0], x[1], oh, ow}, nil
}

// Pool2DUnits is the cost of a max-pool from its input and output shapes:
// every window position is counted, as if none were padding. The product
// saturates rather than wrap, so a window too large to pay for is refused by
// any budget.
func Pool2DUnits(x, out []int, p Pool2DParams) uint64 {
	outElems := product(out)
	window := mulSat(uint64(p.KernelH), uint64(p.KernelW))
	return addSat(CallUnits+4*(product(x)+outElems), mulSat(outElems, window))
}

// MaxPool2D returns the window maxima of x [N,C,H,W].
func (s *Session) MaxPool2D(ctx context.Context, x *Tensor, p Pool2DParams) (*Tensor, error) {
	return s.run1(ctx, MaxPool2D, p, x)
}

// ---- softmax ---------------------------------------------------------------

// SoftmaxUnitsPerElement counts max, subtract, exp (about a dozen
// operations), sum and divide.
const SoftmaxUnitsPerElement = 16

// Softmax normalises x along its last axis.
var Softmax = define(opDef[NoParams]{
	Op: Op{
		Name: "softmax", Contract: "softmax",
		Inputs:  []Input{{Name: "x", DType: F32}},
		Outputs: []string{"y"},
		// exp within an ulp, a sum of L terms, a division.
		Tolerance: Tolerance{Scale: ScaleWant, Terms: func(c *Call) int {
			s := c.In[0].Shape()
			return s[len(s)-1] + 4
		}},
	},
	shape: sameShape,
	units: func(in, _ [][]int, _ NoParams) uint64 {
		n := product(in[0])
		return CallUnits + SoftmaxUnitsPerElement*n + 8*n
	},
})

// Softmax returns x normalised along its last axis.
func (s *Session) Softmax(ctx context.Context, x *Tensor) (*Tensor, error) {
	return s.run1(ctx, Softmax, NoParams{}, x)
}

// ---- tsne_step -------------------------------------------------------------

// TSNEParams are the hyperparameters of one t-SNE iteration.
type TSNEParams struct {
	LearningRate float32
	Momentum     float32
	Exaggeration float32
	MinGain      float32
	ComputeKL    bool
	// Theta is the Barnes-Hut threshold: 0 runs the exact step; above 0
	// the repulsion is approximated over the contract's quadtree.
	Theta float32
}

// tsne_step flags in the guest ABI.
const (
	tsneComputeKL = 1 << 0
	// tsneBarnesHut says that the theta word holds the Barnes-Hut
	// threshold; without it the word is ignored, so guests written before
	// it existed run the exact step.
	tsneBarnesHut = 1 << 1
)

// The cost of a t-SNE iteration's parts.
const (
	// tsnePairUnits counts one repulsive pair: two differences, a squared
	// distance, a reciprocal and three accumulations. A Barnes-Hut cell
	// visited costs the same.
	tsnePairUnits = 20
	// tsneEdgeUnits counts one attractive edge; the same again for its KL term.
	tsneEdgeUnits = 20
	// tsnePointUnits counts the gradient, gains, update and centring of a point.
	tsnePointUnits = 40
	// tsneTreeUnits counts a point's part in building the quadtree: its
	// code, its place in the sort and the cells' sums.
	tsneTreeUnits = 200
)

// TSNEStep runs one t-SNE iteration in 2-D, exact or Barnes-Hut. P is the
// sparse symmetric joint-probability matrix in CSR form: row_ptr i32[N+1],
// cols i32[≥nnz], vals f32[≥nnz]; y, update and gains are f32[N, 2] and are
// updated in place. The KL divergence is returned when asked for.
var TSNEStep = define(opDef[TSNEParams]{
	Op: Op{
		Name: "tsne_step", Contract: "tsne_step",
		Inputs: []Input{
			{Name: "row_ptr", DType: I32, Index: true}, {Name: "cols", DType: I32, Index: true}, {Name: "vals", DType: F32},
			{Name: "y", DType: F32, InPlace: true}, {Name: "update", DType: F32, InPlace: true}, {Name: "gains", DType: F32, InPlace: true},
		},
		Scalar:          "kl",
		ParamWords:      []string{"learning_rate", "momentum", "exaggeration", "min_gain", "flags", "theta"},
		ParamsByPointer: true,
		// Sums over all N points, relative to the embedding's scale. The
		// gains are not compared: a gradient within rounding of zero may
		// take either branch of the gain rule.
		Tolerance: Tolerance{Scale: ScaleMaxWant, Compare: []string{"y", "kl"}, Terms: func(c *Call) int {
			return 2 * c.In[3].Shape()[0]
		}},
	},
	decode: func(w []uint32) (TSNEParams, error) {
		if w[4]&^(tsneComputeKL|tsneBarnesHut) != 0 {
			return TSNEParams{}, fmt.Errorf("%w: unknown flags %#x", ErrInvalid, w[4])
		}
		p := TSNEParams{
			LearningRate: math.Float32frombits(w[0]),
			Momentum:     math.Float32frombits(w[1]),
			Exaggeration: math.Float32frombits(w[2]),
			MinGain:      math.Float32frombits(w[3]),
			ComputeKL:    w[4]&tsneComputeKL != 0,
		}
		if w[4]&tsneBarnesHut != 0 {
			p.Theta = math.Float32frombits(w[5])
		}
		return p, nil
	},
	shape: tsneShapes,
	units: func(in, _ [][]int, p TSNEParams) uint64 { return TSNEUnits(in[3][0], in[1][0], p) },
	// The new state, kept aside until everything was read, and per-point
	// sums: eleven floats a point; with Barnes-Hut the quadtree besides.
	scratch: func(in, _ [][]int, p TSNEParams) int64 {
		n := int64(in[3][0])
		if p.Theta > 0 {
			return 44*n + TSNETreeBytes*n
		}
		return 44 * n
	},
	scalarWanted: func(p TSNEParams) bool { return p.ComputeKL },
})

// TSNETreeBytes bounds the memory of the Barnes-Hut quadtree per point: its
// sorted codes and at most two cells a point.
const TSNETreeBytes = 112

func tsneShapes(in [][]int, p TSNEParams) ([][]int, error) {
	rowPtr, cols, vals, y, update, gains := in[0], in[1], in[2], in[3], in[4], in[5]
	if len(y) != 2 || y[1] != 2 {
		return nil, fmt.Errorf("%w: embedding is %s, want [N x 2]", ErrShape, ShapeString(y))
	}
	n := y[0]
	if n < 2 {
		return nil, fmt.Errorf("%w: needs at least 2 points, got %d", ErrShape, n)
	}
	if !slices.Equal(update, y) || !slices.Equal(gains, y) {
		return nil, fmt.Errorf("%w: update %s and gains %s must match y %s", ErrShape, ShapeString(update), ShapeString(gains), ShapeString(y))
	}
	if len(rowPtr) != 1 || rowPtr[0] != n+1 {
		return nil, fmt.Errorf("%w: row_ptr %s, want [%d]", ErrShape, ShapeString(rowPtr), n+1)
	}
	if len(cols) != 1 || !slices.Equal(vals, cols) {
		return nil, fmt.Errorf("%w: cols %s and vals %s must be vectors of one length", ErrShape, ShapeString(cols), ShapeString(vals))
	}
	for _, v := range []float32{p.LearningRate, p.Momentum, p.Exaggeration, p.MinGain, p.Theta} {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("%w: parameters must be finite: %+v", ErrInvalid, p)
		}
	}
	if p.Theta < 0 {
		return nil, fmt.Errorf("%w: theta must be at least 0, got %g", ErrInvalid, p.Theta)
	}
	return [][]int{}, nil
}

// TSNEUnits is the cost of one t-SNE iteration over n points and nnz
// stored entries of P (the length of cols). An exact step pays for every
// pair; a Barnes-Hut step (p.Theta > 0) for TSNECells(n, θ) cells a point and
// the tree.
func TSNEUnits(n, nnz int, p TSNEParams) uint64 {
	N, E := uint64(n), uint64(nnz)
	repulsion := tsnePairUnits * N * (N - 1)
	if p.Theta > 0 {
		repulsion = tsnePairUnits*N*TSNECells(n, p.Theta) + tsneTreeUnits*N
	}
	units := CallUnits + repulsion + tsneEdgeUnits*E + tsnePointUnits*N
	units += 4*(N+1) + 8*E + 3*2*2*4*N // read P; read and write Y, update and gains
	if p.ComputeKL {
		units += tsneEdgeUnits * E
	}
	return units
}

// TSNECells is what a Barnes-Hut step is charged for, per point, in
// visited cells: min(N−1, ⌈16·bitlen(N)/θ²⌉), in binary64 from θ's f32
// value. It depends on N and θ alone, as every charge must; it is of the
// order of what a point of spread-out data visits.
func TSNECells(n int, theta float32) uint64 {
	t := float64(theta)
	c := math.Ceil(16 * float64(bits.Len(uint(n))) / (t * t))
	if c >= float64(n-1) {
		return uint64(n - 1)
	}
	return uint64(c)
}

// csrChunk is how many indices the CSR check reads at a time: its scratch
// memory, and the work between two looks at the context.
const csrChunk = 1 << 16

// verifyCSR makes sure that P's structure cannot send a kernel outside its
// arrays: row_ptr starts at 0, never decreases and ends at nnz, at most the
// length of cols (tsne_affinities leaves unused entries at the end), and
// every column is in [0, N). It streams the indices in chunks, so it needs
// little memory and stops promptly when ctx ends.
func verifyCSR(ctx context.Context, in []*Tensor, _ any, read func(*Tensor, int, []byte) error) error {
	rowPtr, cols := in[0], in[1]
	n, nnz := rowPtr.Len()-1, cols.Len()
	buf := make([]byte, 4*min(csrChunk, max(rowPtr.Len(), nnz)))
	scan := func(t *Tensor, check func(i int, v int32) error) error {
		for first := 0; first < t.Len(); first += csrChunk {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("interrupted checking the index data: %w", err)
			}
			b := buf[:4*min(csrChunk, t.Len()-first)]
			if err := read(t, first, b); err != nil {
				return fmt.Errorf("read index data: %w", err)
			}
			for j := 0; j < len(b); j += 4 {
				if err := check(first+j/4, int32(binary.LittleEndian.Uint32(b[j:]))); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var prev int32
	err := scan(rowPtr, func(i int, v int32) error {
		switch {
		case i == 0 && v != 0:
			return fmt.Errorf("%w: row_ptr must start at 0, got %d", ErrInvalid, v)
		case v < prev:
			return fmt.Errorf("%w: row_ptr decreases at row %d", ErrInvalid, i-1)
		case i == n && int(v) > nnz:
			return fmt.Errorf("%w: row_ptr must end at most at len(cols)=%d, got %d", ErrInvalid, nnz, v)
		}
		prev = v
		return nil
	})
	if err != nil {
		return err
	}
	return scan(cols, func(e int, c int32) error {
		if c < 0 || int(c) >= n {
			return fmt.Errorf("%w: column %d at entry %d outside [0, %d)", ErrInvalid, c, e, n)
		}
		return nil
	})
}

func init() { TSNEStep.verify = verifyCSR }

// TSNEState holds the tensors of one t-SNE iteration, in the order of
// TSNEStep's inputs.
type TSNEState struct {
	RowPtr, Cols, Vals *Tensor
	Y, Update, Gains   *Tensor
}

// N is the number of points.
func (s TSNEState) N() int { return s.Y.Shape()[0] }

func (s TSNEState) inputs() []*Tensor {
	return []*Tensor{s.RowPtr, s.Cols, s.Vals, s.Y, s.Update, s.Gains}
}

// TSNEStateOf names the inputs of a tsne_step call.
func TSNEStateOf(c *Call) TSNEState {
	return TSNEState{RowPtr: c.In[0], Cols: c.In[1], Vals: c.In[2], Y: c.In[3], Update: c.In[4], Gains: c.In[5]}
}

// TSNEStep runs one t-SNE iteration on st, updating st.Y, st.Update and
// st.Gains in place, and returns the KL divergence when p.ComputeKL is set.
func (s *Session) TSNEStep(ctx context.Context, st TSNEState, p TSNEParams) (float32, error) {
	_, kl, err := s.Run(ctx, TSNEStep, p, st.inputs()...)
	return kl, err
}

// ---- add -------------------------------------------------------------------

// Add is y = a + b elementwise, for two tensors of one shape.
var Add = define(opDef[NoParams]{
	Op: Op{
		Name: "add", Contract: "add",
		Inputs:  []Input{{Name: "a", DType: F32}, {Name: "b", DType: F32}},
		Outputs: []string{"y"},
	},
	shape: func(in [][]int, _ NoParams) ([][]int, error) {
		if !slices.Equal(in[0], in[1]) {
			return nil, fmt.Errorf("%w: a %s and b %s differ", ErrShape, ShapeString(in[0]), ShapeString(in[1]))
		}
		return [][]int{slices.Clone(in[0])}, nil
	},
	units: func(in, _ [][]int, _ NoParams) uint64 { return elementwiseUnits(product(in[0]), 3) },
})

// Add returns a + b elementwise for tensors of one shape.
func (s *Session) Add(ctx context.Context, a, b *Tensor) (*Tensor, error) {
	return s.run1(ctx, Add, NoParams{}, a, b)
}

// ---- clip ------------------------------------------------------------------

// ClipParams are the bounds of a clip. Neither is NaN; Min above Max gives
// Max everywhere but at NaN, as the formula says.
type ClipParams struct{ Min, Max float32 }

// Clip is y = min(max(x, Min), Max) elementwise, NaN preserved: ReLU6 is
// Clip{0, 6}.
var Clip = define(opDef[ClipParams]{
	Op: Op{
		Name: "clip", Contract: "clip",
		Inputs:     []Input{{Name: "x", DType: F32}},
		Outputs:    []string{"y"},
		ParamWords: []string{"min", "max"},
	},
	decode: func(w []uint32) (ClipParams, error) {
		return ClipParams{Min: math.Float32frombits(w[0]), Max: math.Float32frombits(w[1])}, nil
	},
	shape: func(in [][]int, p ClipParams) ([][]int, error) {
		if p.Min != p.Min || p.Max != p.Max {
			return nil, fmt.Errorf("%w: bounds must not be NaN: min %g, max %g", ErrInvalid, p.Min, p.Max)
		}
		return [][]int{slices.Clone(in[0])}, nil
	},
	units: func(in, _ [][]int, _ ClipParams) uint64 { return elementwiseUnits(product(in[0]), 2) },
})

// Clip returns min(max(x, lo), hi) elementwise.
func (s *Session) Clip(ctx context.Context, x *Tensor, lo, hi float32) (*Tensor, error) {
	return s.run1(ctx, Clip, ClipParams{Min: lo, Max: hi}, x)
}

// ---- global_avgpool --------------------------------------------------------

// GlobalAvgPool is the mean of each plane of x [N,C,H,W], y [N,C,1,1]: the
// blocksum of the plane in row-major order, divided once by H·W.
var GlobalAvgPool = define(opDef[NoParams]{
	Op: Op{
		Name: "global_avgpool", Contract: "global_avgpool",
		Inputs:  []Input{{Name: "x", DType: F32}},
		Outputs: []string{"y"},
		// The H·W terms of the sum, and the division.
		Tolerance: Tolerance{Scale: ScaleAbs, Terms: func(c *Call) int {
			s := c.In[0].Shape()
			return s[2]*s[3] + 1
		}},
	},
	shape: func(in [][]int, _ NoParams) ([][]int, error) {
		x := in[0]
		if len(x) != 4 {
			return nil, fmt.Errorf("%w: global_avgpool needs an NCHW input, got %s", ErrShape, ShapeString(x))
		}
		return [][]int{{x[0], x[1], 1, 1}}, nil
	},
	// An addition per element and a division per plane; x in, y out.
	units: func(in, out [][]int, _ NoParams) uint64 {
		n, planes := product(in[0]), product(out[0])
		return CallUnits + n + planes + 4*(n+planes)
	},
})

// GlobalAvgPool returns the mean of each H×W plane of x [N,C,H,W] as
// [N,C,1,1].
func (s *Session) GlobalAvgPool(ctx context.Context, x *Tensor) (*Tensor, error) {
	return s.run1(ctx, GlobalAvgPool, NoParams{}, x)
}

// ---- unary -----------------------------------------------------------------

// UnaryFunc is the function a unary operation applies to each element. Its
// values are the guest ABI's codes.
type UnaryFunc uint32

const (
	UnaryAbs         UnaryFunc = 1  // |x|: the sign bit cleared
	UnaryNeg         UnaryFunc = 2  // −x: the sign bit flipped
	UnarySqrt        UnaryFunc = 3  // √x, correctly rounded; NaN below −0
	UnaryReciprocal  UnaryFunc = 4  // 1/x, one division
	UnaryLeakyRelu   UnaryFunc = 5  // x where x ≥ 0 or −0, else Alpha·x
	UnaryHardSigmoid UnaryFunc = 6  // max(0, min(1, Alpha·x + Beta)), each step rounded
	UnaryHardSwish   UnaryFunc = 7  // x · hard_sigmoid(x) with Alpha = 1/6, Beta = 1/2
	UnaryExp         UnaryFunc = 8  // strictmath.Exp
	UnaryLog         UnaryFunc = 9  // strictmath.Log
	UnaryTanh        UnaryFunc = 10 // strictmath.Tanh
	UnarySigmoid     UnaryFunc = 11 // strictmath.Sigmoid
	UnaryErf         UnaryFunc = 12 // strictmath.Erf
)

// unaryFuncs names each function and says which parameters it takes.
var unaryFuncs = map[UnaryFunc]struct {
	name        string
	alpha, beta bool
}{
	UnaryAbs: {name: "abs"}, UnaryNeg: {name: "neg"}, UnarySqrt: {name: "sqrt"},
	UnaryReciprocal: {name: "reciprocal"}, UnaryLeakyRelu: {name: "leaky_relu", alpha: true},
	UnaryHardSigmoid: {name: "hard_sigmoid", alpha: true, beta: true}, UnaryHardSwish: {name: "hard_swish"},
	UnaryExp: {name: "exp"}, UnaryLog: {name: "log"},
	UnaryTanh: {name: "tanh"}, UnarySigmoid: {name: "sigmoid"}, UnaryErf: {name: "erf"},
}

func (f UnaryFunc) String() string {
	if d, ok := unaryFuncs[f]; ok {
		return d.name
	}
	return fmt.Sprintf("unary function %d", uint32(f))
}

// UnaryParams are a unary operation's function and its parameters. A
// parameter the function does not take must be +0, so that one call has
// one spelling; one it takes must not be NaN.
type UnaryParams struct {
	Func        UnaryFunc
	Alpha, Beta float32
}

// HardSwishAlpha is the float32 nearest 1/6, hard_swish's slope.
const HardSwishAlpha = float32(1.0 / 6)

// Unary is y = f(x) elementwise, for the functions of UnaryFunc, every
// NaN result canonical.
var Unary = define(opDef[UnaryParams]{
	Op: Op{
		Name: "unary", Contract: "unary",
		Inputs:     []Input{{Name: "x", DType: F32}},
		Outputs:    []string{"y"},
		ParamWords: []string{"func", "alpha", "beta"},
		// The roundings behind one result: none for abs and neg, one for
		// sqrt, reciprocal and leaky_relu, two for hard_sigmoid, three for
		// hard_swish; the contract's exp, log and erf lie within an ulp,
		// and its tanh and sigmoid within 2.5, of the true value, as a
		// fast kernel's own may.
		Tolerance: Tolerance{Scale: ScaleWant, Terms: func(c *Call) int {
			switch c.Params.(UnaryParams).Func {
			case UnaryAbs, UnaryNeg:
				return 0
			case UnaryHardSigmoid, UnaryExp, UnaryLog, UnaryErf:
				return 2
			case UnaryHardSwish:
				return 3
			case UnaryTanh, UnarySigmoid:
				return 5
			}
			return 1
		}},
	},
	decode: func(w []uint32) (UnaryParams, error) {
		return UnaryParams{Func: UnaryFunc(w[0]), Alpha: math.Float32frombits(w[1]), Beta: math.Float32frombits(w[2])}, nil
	},
	shape: func(in [][]int, p UnaryParams) ([][]int, error) {
		d, ok := unaryFuncs[p.Func]
		if !ok {
			return nil, fmt.Errorf("%w: unknown unary function %d", ErrInvalid, uint32(p.Func))
		}
		for _, a := range []struct {
			name  string
			v     float32
			taken bool
		}{{"alpha", p.Alpha, d.alpha}, {"beta", p.Beta, d.beta}} {
			switch {
			case a.taken && a.v != a.v:
				return nil, fmt.Errorf("%w: %s of %s is NaN", ErrInvalid, a.name, d.name)
			case !a.taken && math.Float32bits(a.v) != 0:
				return nil, fmt.Errorf("%w: %s takes no %s, got %g (want +0)", ErrInvalid, d.name, a.name, a.v)
			}
		}
		return [][]int{slices.Clone(in[0])}, nil
	},
	units: func(in, _ [][]int, _ UnaryParams) uint64 { return elementwiseUnits(product(in[0]), 2) },
})

// Unary returns f(x) elementwise.
func (s *Session) Unary(ctx context.Context, x *Tensor, p UnaryParams) (*Tensor, error) {
	return s.run1(ctx, Unary, p, x)
}

// ---- binary ----------------------------------------------------------------

// BinaryFunc is the arithmetic a binary operation applies. Its values are
// the guest ABI's codes.
type BinaryFunc uint32

const (
	BinaryAdd BinaryFunc = 1 // a + b
	BinarySub BinaryFunc = 2 // a − b
	BinaryMul BinaryFunc = 3 // a · b
	BinaryDiv BinaryFunc = 4 // a / b
)

func (f BinaryFunc) String() string {
	switch f {
	case BinaryAdd:
		return "add"
	case BinarySub:
		return "sub"
	case BinaryMul:
		return "mul"
	case BinaryDiv:
		return "div"
	}
	return fmt.Sprintf("binary function %d", uint32(f))
}

// BinaryParams name a binary operation's arithmetic.
type BinaryParams struct{ Func BinaryFunc }

// Binary is y = a ∘ b elementwise with NumPy's broadcasting: the shapes
// are aligned at their last axes, and along each axis the sizes are equal
// or one of them is 1, which repeats that operand. The output has the
// larger rank and, on each axis, the larger size. Each element is one IEEE
// operation.
var Binary = define(opDef[BinaryParams]{
	Op: Op{
		Name: "binary", Contract: "binary",
		Inputs:     []Input{{Name: "a", DType: F32}, {Name: "b", DType: F32}},
		Outputs:    []string{"y"},
		ParamWords: []string{"func"},
	},
	decode: func(w []uint32) (BinaryParams, error) { return BinaryParams{Func: BinaryFunc(w[0])}, nil },
	shape: func(in [][]int, p BinaryParams) ([][]int, error) {
		if p.Func < BinaryAdd || p.Func > BinaryDiv {
			return nil, fmt.Errorf("%w: unknown binary function %d", ErrInvalid, uint32(p.Func))
		}
		out, err := BroadcastShapes(in[0], in[1])
		return [][]int{out}, err
	},
	// An operation per output element; a, b and y moved.
	units: func(in, out [][]int, _ BinaryParams) uint64 {
		n := product(out[0])
		return CallUnits + n + 4*(product(in[0])+product(in[1])+n)
	},
})

// BroadcastShapes is the shape NumPy's broadcasting gives a and b, or
// ErrShape where an axis has two sizes neither of which is 1.
func BroadcastShapes(a, b []int) ([]int, error) {
	long, short := a, b
	if len(long) < len(short) {
		long, short = short, long
	}
	out := slices.Clone(long)
	off := len(long) - len(short)
	for i, d := range short {
		switch o := out[off+i]; {
		case o == d || d == 1:
		case o == 1:
			out[off+i] = d
		default:
			return nil, fmt.Errorf("%w: %s and %s do not broadcast (sizes %d and %d on axis %d of %d)", ErrShape, ShapeString(a), ShapeString(b), o, d, off+i, len(out))
		}
	}
	return out, nil
}

// BroadcastStrides gives, for each axis of out, the step in elements of a
// row-major tensor of shape in that broadcasts to out: 0 along an axis it
// repeats (size 1, or absent at the front).
func BroadcastStrides(in, out []int) []int {
	strides := make([]int, len(out))
	step := 1
	for i := len(in) - 1; i >= 0; i-- {
		if in[i] != 1 {
			strides[len(out)-len(in)+i] = step
		}
		step *= in[i]
	}
	return strides
}

// Binary returns a ∘ b elementwise, broadcast.
func (s *Session) Binary(ctx context.Context, a, b *Tensor, f BinaryFunc) (*Tensor, error) {
	return s.run1(ctx, Binary, BinaryParams{Func: f}, a, b)
}

// ---- transpose -------------------------------------------------------------

// TransposeParams give a transpose's permutation, packed as the guest ABI
// passes it: output axis i is input axis Perm>>(3i)&7, for i below the
// input's rank, and the bits above 3·rank are zero.
type TransposeParams struct{ Perm uint32 }

// PermParams packs a permutation of axes.
func PermParams(perm ...int) TransposeParams {
	var p uint32
	for i, a := range perm {
		p |= uint32(a&7) << (3 * i)
	}
	return TransposeParams{Perm: p}
}

// Axes unpacks the permutation for an input of rank r.
func (p TransposeParams) Axes(r int) []int {
	axes := make([]int, r)
	for i := range axes {
		axes[i] = int(p.Perm >> (3 * i) & 7)
	}
	return axes
}

// Transpose is y = x with its axes permuted: y[i0, …, ik] = x[j] where
// j's axis perm[m] is i_m. It moves values and computes nothing.
var Transpose = define(opDef[TransposeParams]{
	Op: Op{
		Name: "transpose", Contract: "transpose",
		Inputs:     []Input{{Name: "x", DType: F32}},
		Outputs:    []string{"y"},
		ParamWords: []string{"perm"},
	},
	decode: func(w []uint32) (TransposeParams, error) { return TransposeParams{Perm: w[0]}, nil },
	shape: func(in [][]int, p TransposeParams) ([][]int, error) {
		x := in[0]
		if p.Perm>>(3*len(x)) != 0 {
			return nil, fmt.Errorf("%w: perm %#o has axes beyond rank %d", ErrInvalid, p.Perm, len(x))
		}
		axes := p.Axes(len(x))
		seen := make([]bool, len(x))
		out := make([]int, len(x))
		for i, a := range axes {
			if a >= len(x) || seen[a] {
				return nil, fmt.Errorf("%w: perm %v is not a permutation of %d axes", ErrInvalid, axes, len(x))
			}
			seen[a] = true
			out[i] = x[a]
		}
		return [][]int{out}, nil
	},
	units: func(in, _ [][]int, _ TransposeParams) uint64 { return elementwiseUnits(product(in[0]), 2) },
})

// Transpose returns x with its axes permuted by perm: output axis i is
// input axis perm[i].
func (s *Session) Transpose(ctx context.Context, x *Tensor, perm ...int) (*Tensor, error) {
	return s.run1(ctx, Transpose, PermParams(perm...), x)
}

// ---- layer_norm ------------------------------------------------------------

// LayerNormParams are a layer normalisation's first normalised axis and
// its epsilon, finite and not negative.
type LayerNormParams struct {
	Axis    int
	Epsilon float32
}

// LayerNorm normalises each row of x, the elements that share their
// indices before Axis, to mean 0 and variance 1, then scales and shifts
// it: y = (x − mean) · (1 / sqrt(var + epsilon)) · scale + bias, with
// scale and bias of x's shape from Axis on. The sums are blocksums.
var LayerNorm = define(opDef[LayerNormParams]{
	Op: Op{
		Name: "layer_norm", Contract: "layer_norm",
		Inputs:     []Input{{Name: "x", DType: F32}, {Name: "scale", DType: F32}, {Name: "bias", DType: F32, Optional: true}},
		Outputs:    []string{"y"},
		ParamWords: []string{"axis", "epsilon"},
		// The two sums over the row, and the few operations after them.
		Tolerance: Tolerance{Scale: ScaleMaxWant, Terms: func(c *Call) int {
			s := c.In[0].Shape()
			return 2*int(product(s[c.Params.(LayerNormParams).Axis:])) + 8
		}},
	},
	decode: func(w []uint32) (LayerNormParams, error) {
		if w[0] > MaxRank {
			return LayerNormParams{}, fmt.Errorf("%w: axis %d", ErrInvalid, w[0])
		}
		return LayerNormParams{Axis: int(w[0]), Epsilon: math.Float32frombits(w[1])}, nil
	},
	shape: func(in [][]int, p LayerNormParams) ([][]int, error) {
		x := in[0]
		switch e := float64(p.Epsilon); {
		case p.Axis < 0 || p.Axis >= len(x):
			return nil, fmt.Errorf("%w: axis %d of a rank-%d x", ErrInvalid, p.Axis, len(x))
		case !(e >= 0) || math.IsInf(e, 1):
			return nil, fmt.Errorf("%w: epsilon %g (want finite and not negative)", ErrInvalid, e)
		}
		row := x[p.Axis:]
		for i, name := range []string{"scale", "bias"} {
			if s := in[1+i]; s != nil && !slices.Equal(s, row) {
				return nil, fmt.Errorf("%w: %s %s is not x's shape from axis %d, %s", ErrShape, name, ShapeString(s), p.Axis, ShapeString(row))
			}
		}
		return [][]int{slices.Clone(x)}, nil
	},
	// Two sums, a subtraction, a square and three more operations an
	// element; x and y moved, and scale and bias.
	units: func(in, _ [][]int, p LayerNormParams) uint64 {
		n, row := product(in[0]), product(in[1])
		return CallUnits + 8*n + 4*(2*n+2*row)
	},
})

// LayerNorm normalises x's rows from axis on; bias may be nil.
func (s *Session) LayerNorm(ctx context.Context, x, scale, bias *Tensor, p LayerNormParams) (*Tensor, error) {
	return s.run1(ctx, LayerNorm, p, x, scale, bias)
}

// ---- batch_matmul ----------------------------------------------------------

// BatchMatMul is C[…, M, N] = A[…, M, K] · B[…, K, N]: a matmul for each
// index of the leading (batch) axes, which broadcast as NumPy's do. Each
// product is matmul's, in its order.
var BatchMatMul = define(opDef[NoParams]{
	Op: Op{
		Name: "batch_matmul", Contract: "batch_matmul",
		Inputs:  []Input{{Name: "a", DType: F32}, {Name: "b", DType: F32}},
		Outputs: []string{"c"},
		Tolerance: Tolerance{Scale: ScaleAbs, Terms: func(c *Call) int {
			a := c.In[0].Shape()
			return a[len(a)-1]
		}},
	},
	shape: func(in [][]int, _ NoParams) ([][]int, error) {
		out, _, _, _, _, err := BatchMatMulDims(in[0], in[1])
		return [][]int{out}, err
	},
	units: func(in, _ [][]int, _ NoParams) uint64 {
		_, batches, m, k, n, _ := BatchMatMulDims(in[0], in[1])
		return CallUnits + uint64(batches)*(MatMulUnits(m, k, n)-CallUnits)
	},
	// Packed copies of one product's operands at a time.
	scratch: func(in, _ [][]int, _ NoParams) int64 {
		_, _, m, k, n, _ := BatchMatMulDims(in[0], in[1])
		return 4 * (int64(m)*int64(k) + int64(k)*int64(n))
	},
})

// BatchMatMulDims checks the operands of a batch_matmul and returns the
// output's shape, the number of products and M, K and N.
func BatchMatMulDims(a, b []int) (out []int, batches, m, k, n int, err error) {
	if len(a) < 2 || len(b) < 2 {
		return nil, 0, 0, 0, 0, fmt.Errorf("%w: batch_matmul needs operands of rank 2 or more, got %s and %s", ErrShape, ShapeString(a), ShapeString(b))
	}
	m, k, n = a[len(a)-2], a[len(a)-1], b[len(b)-1]
	if b[len(b)-2] != k {
		return nil, 0, 0, 0, 0, fmt.Errorf("%w: batch_matmul of %s and %s: inner dimensions %d and %d differ", ErrShape, ShapeString(a), ShapeString(b), k, b[len(b)-2])
	}
	batch, err := BroadcastShapes(a[:len(a)-2], b[:len(b)-2])
	if err != nil {
		return nil, 0, 0, 0, 0, err
	}
	out = append(batch, m, n)
	if _, err := NumElements(out); err != nil {
		return nil, 0, 0, 0, 0, err
	}
	return out, int(product(batch)), m, k, n, nil
}

// BatchOffsets gives, for product i of a batch_matmul of operands of
// shapes a and b (which BatchMatMulDims accepts), where its two matrices
// start, in elements: the output's batch index, each operand's repeated
// axes read at 0.
func BatchOffsets(a, b []int) func(i int) (ia, ib int) {
	out, _, m, k, n, _ := BatchMatMulDims(a, b)
	batch := out[:len(out)-2]
	sa := BroadcastStrides(a[:len(a)-2], batch)
	sb := BroadcastStrides(b[:len(b)-2], batch)
	return func(i int) (ia, ib int) {
		for d, r := len(batch)-1, i; d >= 0; d-- {
			ia += r % batch[d] * sa[d]
			ib += r % batch[d] * sb[d]
			r /= batch[d]
		}
		return ia * m * k, ib * k * n
	}
}

// BatchMatMul returns a·b for each index of the batch axes.
func (s *Session) BatchMatMul(ctx context.Context, a, b *Tensor) (*Tensor, error) {
	return s.run1(ctx, BatchMatMul, NoParams{}, a, b)
}

// ---- concat ----------------------------------------------------------------

// ConcatParams name the axis a concat joins along.
type ConcatParams struct{ Axis int }

// Concat is y = a then b along Axis: the two shapes agree on every other
// axis, and y's size along Axis is the sum of theirs. It moves values and
// computes nothing.
var Concat = define(opDef[ConcatParams]{
	Op: Op{
		Name: "concat", Contract: "concat",
		Inputs:     []Input{{Name: "a", DType: F32}, {Name: "b", DType: F32}},
		Outputs:    []string{"y"},
		ParamWords: []string{"axis"},
	},
	decode: func(w []uint32) (ConcatParams, error) {
		if w[0] >= MaxRank {
			return ConcatParams{}, fmt.Errorf("%w: axis %d", ErrInvalid, w[0])
		}
		return ConcatParams{Axis: int(w[0])}, nil
	},
	shape: func(in [][]int, p ConcatParams) ([][]int, error) {
		a, b := in[0], in[1]
		if p.Axis < 0 || p.Axis >= len(a) {
			return nil, fmt.Errorf("%w: axis %d of a rank-%d a", ErrInvalid, p.Axis, len(a))
		}
		if len(a) != len(b) {
			return nil, fmt.Errorf("%w: concat of %s and %s: ranks differ", ErrShape, ShapeString(a), ShapeString(b))
		}
		out := slices.Clone(a)
		for i := range a {
			if i != p.Axis && a[i] != b[i] {
				return nil, fmt.Errorf("%w: concat of %s and %s along axis %d: axis %d differs", ErrShape, ShapeString(a), ShapeString(b), p.Axis, i)
			}
		}
		out[p.Axis] = a[p.Axis] + b[p.Axis]
		return [][]int{out}, nil
	},
	units: func(in, out [][]int, _ ConcatParams) uint64 {
		n := product(out[0])
		return CallUnits + n + 8*n
	},
})

// Concat returns a then b along axis.
func (s *Session) Concat(ctx context.Context, a, b *Tensor, axis int) (*Tensor, error) {
	return s.run1(ctx, Concat, ConcatParams{Axis: axis}, a, b)
}

// ---- slice -----------------------------------------------------------------

// SliceParams describe a strided window of a tensor of rank Rank: along
// each axis i below it, Count[i] elements from Start[i], Step[i] apart. A
// step may be negative (the window runs backwards) or 0 (one element,
// repeated). The entries for the axes from Rank on are zero.
type SliceParams struct {
	Rank               int
	Start, Step, Count [MaxRank]int
}

// SliceAxes gives the parameters of a slice from each axis's start, step
// and count; the rank is their length, the shortest of the three (a slice
// refuses a rank above MaxRank).
func SliceAxes(start, step, count []int) SliceParams {
	p := SliceParams{Rank: min(len(start), len(step), len(count))}
	for i := range min(p.Rank, MaxRank) {
		p.Start[i], p.Step[i], p.Count[i] = start[i], step[i], count[i]
	}
	return p
}

// Shape is the shape of the slice's output: the counts.
func (p SliceParams) Shape() []int { return slices.Clone(p.Count[:p.Rank]) }

// check refuses parameters that fit no tensor: a rank outside 1..MaxRank,
// a count below 1 or above MaxElements, or a non-zero entry past the rank.
func (p SliceParams) check() error {
	if p.Rank < 1 || p.Rank > MaxRank {
		return fmt.Errorf("%w: slice rank %d not in 1..%d", ErrInvalid, p.Rank, MaxRank)
	}
	for i := range MaxRank {
		switch {
		case i >= p.Rank && (p.Start[i] != 0 || p.Step[i] != 0 || p.Count[i] != 0):
			return fmt.Errorf("%w: axis %d is past the slice's rank %d, so its start, step and count must be 0, not %d, %d and %d",
				ErrInvalid, i, p.Rank, p.Start[i], p.Step[i], p.Count[i])
		case i < p.Rank && (p.Count[i] < 1 || p.Count[i] > MaxElements):
			return fmt.Errorf("%w: count %d on axis %d not in 1..%d", ErrInvalid, p.Count[i], i, MaxElements)
		}
	}
	return nil
}

// sliceWords are the ABI words of a slice: the rank, then the eight
// starts, steps and counts.
var sliceWords = func() []string {
	words := []string{"rank"}
	for _, field := range []string{"start", "step", "count"} {
		for i := range MaxRank {
			words = append(words, fmt.Sprintf("%s%d", field, i))
		}
	}
	return words
}()

// Slice is y[i0, …, ik] = x[Start[0] + i0·Step[0], …, Start[k] +
// ik·Step[k]]: a strided window of x, shaped as the counts, every index it
// reads inside x. It moves values and computes nothing: ONNX's Slice (a
// negative step runs backwards) and, with steps of 0, Expand.
var Slice = define(opDef[SliceParams]{
	Op: Op{
		Name: "slice", Contract: "slice",
		Inputs:          []Input{{Name: "x", DType: F32}},
		Outputs:         []string{"y"},
		ParamWords:      sliceWords,
		ParamsByPointer: true,
	},
	decode: func(w []uint32) (SliceParams, error) {
		p := SliceParams{Rank: int(w[0])}
		for i := range MaxRank {
			p.Start[i] = int(int32(w[1+i]))
			p.Step[i] = int(int32(w[1+MaxRank+i]))
			p.Count[i] = int(w[1+2*MaxRank+i])
		}
		if err := p.check(); err != nil {
			return SliceParams{}, err
		}
		return p, nil
	},
	shape: func(in [][]int, p SliceParams) ([][]int, error) {
		x := in[0]
		if err := p.check(); err != nil {
			return nil, err
		}
		if p.Rank != len(x) {
			return nil, fmt.Errorf("%w: a slice of rank %d of x %s", ErrShape, p.Rank, ShapeString(x))
		}
		for i, d := range x {
			start, step, count := int64(p.Start[i]), int64(p.Step[i]), int64(p.Count[i])
			// A step longer than any axis leaves x after one element; the
			// bound keeps the last index's product within int64.
			bounded := max(-MaxElements-1, min(step, MaxElements+1))
			if last := start + (count-1)*bounded; start < 0 || start >= int64(d) || last < 0 || last >= int64(d) {
				return nil, fmt.Errorf("%w: axis %d of x %s: start %d, step %d and count %d read from %d to %d, outside [0, %d)",
					ErrShape, i, ShapeString(x), start, step, count, start, last, d)
			}
		}
		return [][]int{p.Shape()}, nil
	},
	units: func(_, out [][]int, _ SliceParams) uint64 {
		n := product(out[0])
		return CallUnits + n + 8*n
	},
})

// Slice returns the window of x that p describes.
func (s *Session) Slice(ctx context.Context, x *Tensor, p SliceParams) (*Tensor, error) {
	return s.run1(ctx, Slice, p, x)
}

// ---- gather ----------------------------------------------------------------

// GatherParams name the axis a gather indexes.
type GatherParams struct{ Axis int }

// Gather is ONNX's Gather: y[a…, j…, b…] = x[a…, indices[j…], b…], the
// indices along Axis, each in [-d, d) for x's size d there, a negative one
// counting from the end. y's shape is x's before Axis, then indices', then
// x's after Axis. It moves values and computes nothing.
var Gather = define(opDef[GatherParams]{
	Op: Op{
		Name: "gather", Contract: "gather",
		Inputs:     []Input{{Name: "x", DType: F32}, {Name: "indices", DType: I32, Index: true}},
		Outputs:    []string{"y"},
		ParamWords: []string{"axis"},
	},
	decode: func(w []uint32) (GatherParams, error) {
		if w[0] >= MaxRank {
			return GatherParams{}, fmt.Errorf("%w: axis %d", ErrInvalid, w[0])
		}
		return GatherParams{Axis: int(w[0])}, nil
	},
	shape: func(in [][]int, p GatherParams) ([][]int, error) {
		x, indices := in[0], in[1]
		if p.Axis < 0 || p.Axis >= len(x) {
			return nil, fmt.Errorf("%w: axis %d of a rank-%d x", ErrInvalid, p.Axis, len(x))
		}
		out := slices.Concat(x[:p.Axis], indices, x[p.Axis+1:])
		if len(out) > MaxRank {
			return nil, fmt.Errorf("%w: a gather from x %s along axis %d with indices %s would have rank %d, above %d",
				ErrShape, ShapeString(x), p.Axis, ShapeString(indices), len(out), MaxRank)
		}
		return [][]int{out}, nil
	},
	// A move per output element, and the indices read.
	units: func(in, out [][]int, _ GatherParams) uint64 {
		n := product(out[0])
		return CallUnits + n + 8*n + 4*product(in[1])
	},
})

// verifyGather makes sure every index lies in [-d, d), d the size of x
// along the axis.
func verifyGather(ctx context.Context, in []*Tensor, p any, read func(*Tensor, int, []byte) error) error {
	indices, d := in[1], int64(in[0].Shape()[p.(GatherParams).Axis])
	buf := make([]byte, 4*min(csrChunk, indices.Len()))
	for first := 0; first < indices.Len(); first += csrChunk {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted checking the indices: %w", err)
		}
		b := buf[:4*min(csrChunk, indices.Len()-first)]
		if err := read(indices, first, b); err != nil {
			return fmt.Errorf("read indices: %w", err)
		}
		for j := 0; j < len(b); j += 4 {
			if v := int64(int32(binary.LittleEndian.Uint32(b[j:]))); v < -d || v >= d {
				return fmt.Errorf("%w: indices hold %d at element %d, outside [-%d, %d)", ErrInvalid, v, first+j/4, d, d)
			}
		}
	}
	return nil
}

func init() { Gather.verify = verifyGather }

// Gather returns x's slices along axis at indices.
func (s *Session) Gather(ctx context.Context, x, indices *Tensor, axis int) (*Tensor, error) {
	return s.run1(ctx, Gather, GatherParams{Axis: axis}, x, indices)
}
