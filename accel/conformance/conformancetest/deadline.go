package conformancetest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
)

// The deadline driver. A guest's deadline holds only if every kernel stops
// promptly once its context ends, between bounded pieces of work, however
// large the call: a tile, a row block, a segment of a long row. TestDeadline
// gives a long call of each operation a short deadline and checks that it
// returns soon after, with an error wrapping context.DeadlineExceeded, and
// that its session is left as it was: no tensor left behind, and a small
// call of the operation then succeeds.

const (
	// deadline is what each long call is given: long enough for the
	// Session's checks and the outputs' allocation, so that it ends
	// inside the kernel.
	deadline = 200 * time.Millisecond
	// shortDeadline is what calls get that a fast backend ends in about
	// a tenth of a second, after the Session has cleared their output of
	// half a gigabyte: relu and add, which stream memory, and softmax,
	// which ONNX Runtime computes as fast.
	shortDeadline = 40 * time.Millisecond
	// maxOvershoot is how long after its deadline a call may return.
	maxOvershoot = time.Second
)

// longCase is one long call: seconds of work on a fast machine, in tensors
// of at most about 1.3 GiB, allocated and filled before the deadline
// starts.
type longCase struct {
	name   string
	op     *accel.Op
	params any
	// shapes are the inputs' shapes, nil for an absent optional input.
	shapes [][]int
	// small is the shapes of a quick call of op run afterwards, with
	// smallParams (params where nil).
	small       [][]int
	smallParams any
	// fill writes the inputs where zeros will not do; nil leaves them
	// zero.
	fill func(s *accel.Session, in []*accel.Tensor) error
	// deadline replaces the driver's deadline where the call is shorter.
	deadline time.Duration
}

// The sizes: on two x86-64 cores, the calls of matmul, conv2d, maxpool2d
// and tsne_step run from a quarter of a second (a row of 2^27 edges) to
// hours (windows of 2^20 positions), on the reference kernels and on ONNX
// Runtime alike. The elementwise operations and softmax take at most
// about a second at any size within these bounds, so their cases run what
// exists, as large as the bounds allow, relu, add and softmax under a
// shorter deadline.
const (
	matN      = 8192    // 768 MiB of matrices, 1.1 TFLOP
	rowLen    = 1 << 27 // one softmax row: 512 MiB in and out
	elemCount = 1 << 27 // relu: 512 MiB in and out
	addCount  = 3 << 25 // add: 384 MiB each of a, b and y
	tsneN     = 1 << 17 // 2^34 repulsive pairs
	tsneEdges = 1 << 27 // one CSR row: 512 MiB each of cols and vals
)

var (
	conv3x3 = accel.Conv2DParams{StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1,
		DilationH: 1, DilationW: 1, Groups: 1}
	tsne   = accel.TSNEParams{LearningRate: 200, Momentum: 0.5, Exaggeration: 12, MinGain: 0.01}
	tsneBH = accel.TSNEParams{LearningRate: 200, Momentum: 0.5, Exaggeration: 12, MinGain: 0.01, Theta: 0.5}
)

// longCases are the driver's calls, in the order of accel.Ops.
var longCases = []longCase{
	{name: "8192", op: accel.MatMul, params: accel.MatMulParams{},
		shapes: [][]int{{matN, matN}, {matN, matN}}, small: [][]int{{3, 4}, {4, 5}}},
	// A stored transposed: copied or packed from its columns.
	{name: "8192 transA", op: accel.MatMul, params: accel.MatMulParams{TransA: true},
		shapes: [][]int{{matN, matN}, {matN, matN}}, small: [][]int{{4, 3}, {4, 5}}},
	// A ResNet stage-2 layer over a batch of 64: 118 G multiply-adds.
	{name: "resnet 3x3", op: accel.Conv2D, params: conv3x3,
		shapes: [][]int{{64, 256, 56, 56}, {256, 256, 3, 3}, {256}},
		small:  [][]int{{1, 2, 5, 5}, {3, 2, 3, 3}, {3}}},
	// Depthwise with large kernels, as in RepLKNet: one group per
	// channel, one image. 32 G multiply-adds.
	{name: "depthwise 31x31", op: accel.Conv2D, params: depthwise(2048, 31),
		shapes: [][]int{{1, 2048, 128, 128}, {2048, 1, 31, 31}, {2048}},
		small:  [][]int{{1, 2, 5, 5}, {2, 1, 31, 31}, {2}}, smallParams: depthwise(2, 31)},
	// Along the last axis of pairs: a bias value per element.
	{name: "last axis", op: accel.AddBias, params: accel.AddBiasParams{Axis: 1},
		shapes: [][]int{{elemCount / 2, 2}, {2}}, small: [][]int{{3, 2}, {2}}},
	{name: "2^27", op: accel.Relu, params: accel.NoParams{},
		shapes: [][]int{{elemCount}}, small: [][]int{{7}}, deadline: shortDeadline},
	// One plane, windows of 2^12 positions (a few output rows make a
	// piece of ONNX Runtime's) and of 2^20 (a piece holds part of a
	// row): 2^38 and 2^46 comparisons.
	{name: "large window", op: accel.MaxPool2D, params: pool(64, 32),
		shapes: [][]int{{1, 1, 8192, 8192}}, small: [][]int{{1, 1, 4, 4}}, smallParams: pool(2, 1)},
	{name: "huge window", op: accel.MaxPool2D, params: pool(1024, 512),
		shapes: [][]int{{1, 1, 8192, 8192}}, small: [][]int{{1, 1, 4, 4}}, smallParams: pool(2, 1)},
	{name: "one row", op: accel.Softmax, params: accel.NoParams{},
		shapes: [][]int{{1, rowLen}}, small: [][]int{{2, 5}}, deadline: shortDeadline},
	{name: "long rows", op: accel.Softmax, params: accel.NoParams{},
		shapes: [][]int{{64, rowLen / 64}}, small: [][]int{{2, 5}}, deadline: shortDeadline},
	// Repulsion over every pair of N points.
	{name: "repulsion", op: accel.TSNEStep, params: tsne,
		shapes: tsneShapes(tsneN, 1), small: tsneShapes(4, 1), fill: oneRow},
	// One point with an edge to a point, 2^27 times over.
	{name: "one row", op: accel.TSNEStep, params: tsne,
		shapes: tsneShapes(1024, tsneEdges), small: tsneShapes(4, 3), fill: oneRow},
	// Barnes-Hut over 2^20 points spread over the plane: about 1300
	// cells a point, 10^9 kernel evaluations; and over 2^17 points at
	// one place, a single cell of level 16 whose points each add every
	// other: 2^34 pairs.
	{name: "barnes-hut spread", op: accel.TSNEStep, params: tsneBH,
		shapes: tsneShapes(1<<20, 1), small: tsneShapes(4, 3), fill: spread},
	{name: "barnes-hut coincident", op: accel.TSNEStep, params: tsneBH,
		shapes: tsneShapes(tsneN, 1), small: tsneShapes(4, 3), fill: oneRow},
	{name: "3x2^25", op: accel.Add, params: accel.NoParams{},
		shapes: [][]int{{addCount}, {addCount}}, small: [][]int{{7}, {7}}, deadline: shortDeadline},
	{name: "2^27", op: accel.Clip, params: accel.ClipParams{Min: 0, Max: 6},
		shapes: [][]int{{elemCount}}, small: [][]int{{7}}, deadline: shortDeadline},
	// exp, the longest of unary's functions.
	{name: "exp 2^27", op: accel.Unary, params: accel.UnaryParams{Func: accel.UnaryExp},
		shapes: [][]int{{elemCount}}, small: [][]int{{7}}, deadline: shortDeadline},
	// A broadcast division over 2^27 outputs, its operands a column and a
	// row.
	{name: "div 2^14x2^13", op: accel.Binary, params: accel.BinaryParams{Func: accel.BinaryDiv},
		shapes: [][]int{{1 << 14, 1}, {1, 1 << 13}}, small: [][]int{{3, 1}, {1, 4}}, deadline: shortDeadline},
	// A transpose of 2^27 elements, the source read across its rows.
	{name: "transpose 2^14x2^13", op: accel.Transpose, params: accel.PermParams(1, 0),
		shapes: [][]int{{1 << 14, 1 << 13}}, small: [][]int{{3, 4}}, deadline: shortDeadline},
	// Layer normalisation of 2^27 elements: rows of 2^10, and one row of
	// 2^27 on one thread.
	{name: "layer_norm rows", op: accel.LayerNorm, params: accel.LayerNormParams{Axis: 1, Epsilon: 1e-5},
		shapes: [][]int{{1 << 17, 1 << 10}, {1 << 10}, nil}, small: [][]int{{2, 3}, {3}, nil}, deadline: shortDeadline},
	{name: "layer_norm one row", op: accel.LayerNorm, params: accel.LayerNormParams{Axis: 0, Epsilon: 1e-5},
		shapes: [][]int{{1 << 27}, {1 << 27}, nil}, small: [][]int{{3}, {3}, nil}, deadline: shortDeadline},
	// 64 products of 512×512 by 512×512, 17 G multiply-adds.
	{name: "64 products", op: accel.BatchMatMul, params: accel.NoParams{},
		shapes: [][]int{{64, 512, 512}, {64, 512, 512}}, small: [][]int{{2, 2, 3}, {2, 3, 2}}, deadline: shortDeadline},
	// A concat of two 2^26-element halves.
	{name: "concat 2^27", op: accel.Concat, params: accel.ConcatParams{Axis: 1},
		shapes: [][]int{{1 << 13, 1 << 13}, {1 << 13, 1 << 13}}, small: [][]int{{2, 3}, {2, 1}}, deadline: shortDeadline},
	// Each row of 2^14 reversed, 2^27 elements read one at a time.
	{name: "reversed 2^27", op: accel.Slice, params: accel.SliceAxes([]int{0, 1<<14 - 1}, []int{1, -1}, []int{1 << 13, 1 << 14}),
		shapes: [][]int{{1 << 13, 1 << 14}}, small: [][]int{{2, 3}}, smallParams: accel.SliceAxes([]int{0, 2}, []int{1, -1}, []int{2, 3}),
		deadline: shortDeadline},
	// Rows of 2^13 of a 32 MiB table at 2^14 indices: 2^27 elements.
	{name: "rows 2^27", op: accel.Gather, params: accel.GatherParams{Axis: 0},
		shapes: [][]int{{1 << 10, 1 << 13}, {1 << 14}}, small: [][]int{{2, 3}, {2}}, deadline: shortDeadline},
	// 1 GiB of planes of 16, and one plane of
	// 2^28 terms (on one thread).
	{name: "7x7 planes", op: accel.GlobalAvgPool, params: accel.NoParams{},
		shapes: [][]int{{1 << 14, 1 << 10, 4, 4}}, small: [][]int{{1, 2, 3, 3}}, deadline: shortDeadline},
	{name: "one plane", op: accel.GlobalAvgPool, params: accel.NoParams{},
		shapes: [][]int{{1, 1, 1 << 14, 1 << 14}}, small: [][]int{{1, 2, 3, 3}}, deadline: shortDeadline},
	// The gradients of the ResNet layer above: 118 G multiply-adds, on the
	// contract's CPU kernels as the forward convolution of the gradient,
	// and with a NaN weight, term by term as the contract writes it.
	{name: "resnet 3x3", op: accel.Conv2DBackwardData, params: backwardData(conv3x3, 56),
		shapes: [][]int{{64, 256, 56, 56}, {256, 256, 3, 3}},
		small:  [][]int{{1, 3, 5, 5}, {3, 2, 3, 3}}, smallParams: backwardData(conv3x3, 5)},
	{name: "nan weight", op: accel.Conv2DBackwardData, params: backwardData(conv3x3, 56),
		shapes: [][]int{{64, 256, 56, 56}, {256, 256, 3, 3}},
		small:  [][]int{{1, 3, 5, 5}, {3, 2, 3, 3}}, smallParams: backwardData(conv3x3, 5),
		fill: func(s *accel.Session, in []*accel.Tensor) error {
			return s.Write(in[1], 0, binary.LittleEndian.AppendUint32(nil, 0x7fc00000))
		}},
	// 38 G multiply-adds over 2^18 terms a weight, whose 1024 runs of
	// partial sums take 604 MB.
	{name: "128 channels 3x3", op: accel.Conv2DBackwardFilter,
		params: accel.Conv2DBackwardFilterParams{Conv2DParams: conv3x3, KernelH: 3, KernelW: 3},
		shapes: [][]int{{64, 128, 64, 64}, {64, 128, 64, 64}},
		small:  [][]int{{1, 2, 5, 5}, {1, 3, 5, 5}}},
	// One plane with overlapping windows of 2^12 positions, split into
	// bands of rows: 2^38 comparisons.
	{name: "large window", op: accel.MaxPool2DBackward, params: pool(64, 32),
		shapes: [][]int{{1, 1, 8192, 8192}, {1, 1, 8193, 8193}},
		small:  [][]int{{1, 1, 4, 4}, {1, 1, 5, 5}}, smallParams: pool(2, 1)},
	{name: "3x2^25", op: accel.ReluBackward, params: accel.NoParams{},
		shapes: [][]int{{addCount}, {addCount}}, small: [][]int{{7}, {7}}, deadline: shortDeadline},
	// 1 GiB summed as the bias gradients of a dense layer and of a
	// convolution, and whole into one output (on one thread): a few tenths
	// of a second each.
	{name: "dense bias", op: accel.ReduceSum, params: accel.ReduceSumParams{Axes: 1},
		shapes: [][]int{{1 << 14, 1 << 14}}, small: [][]int{{3, 4}}, deadline: shortDeadline},
	{name: "conv bias", op: accel.ReduceSum, params: accel.ReduceSumParams{Axes: 0b1101},
		shapes: [][]int{{256, 64, 128, 128}}, small: [][]int{{2, 3, 2, 2}}, deadline: shortDeadline},
	{name: "everything", op: accel.ReduceSum, params: accel.ReduceSumParams{Axes: 1},
		shapes: [][]int{{1 << 28}}, small: [][]int{{7}}, deadline: shortDeadline},
	// One row of softmax's length, and rows of 16 in runs of 256 losses:
	// seconds of exp.
	{name: "one row", op: accel.SoftmaxCrossEntropy, params: accel.NoParams{},
		shapes: [][]int{{1, rowLen}, {1}}, small: [][]int{{2, 5}, {2}}},
	{name: "rows of 16", op: accel.SoftmaxCrossEntropy, params: accel.NoParams{},
		shapes: [][]int{{rowLen / 16, 16}, {rowLen / 16}}, small: [][]int{{2, 5}, {2}}},
	// The optimiser steps stream 1.1 and 1 GiB in place, faster than add
	// (no output to allocate and clear): a few tens of milliseconds in
	// SIMD on two cores.
	{name: "3x2^25", op: accel.SGDMomentum, params: accel.SGDParams{LearningRate: 0.01, Momentum: 0.9},
		shapes: [][]int{{addCount}, {addCount}, {addCount}}, small: [][]int{{7}, {7}, {7}}, deadline: shortDeadline / 4},
	{name: "2^26", op: accel.Adam,
		params: accel.AdamParams{LearningRate: 1e-3, Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8, Correction1: 0.1, Correction2: 0.001},
		shapes: [][]int{{elemCount / 2}, {elemCount / 2}, {elemCount / 2}, {elemCount / 2}}, small: [][]int{{7}, {7}, {7}, {7}},
		deadline: shortDeadline / 4},
	// 40000 points of 64 features: 1.6·10^9 distances of 64 terms, then
	// the searches of 90 neighbours each.
	{name: "40000x64", op: accel.TSNEAffinities, params: accel.TSNEAffinitiesParams{Perplexity: 30},
		shapes: [][]int{{affinityN, 64}}, small: [][]int{{5, 3}}, smallParams: accel.TSNEAffinitiesParams{Perplexity: 2},
		fill: scatter},
	// The same data and a plane embedding: the distances of both, and
	// the ranks of 10 neighbours a point.
	{name: "40000x64", op: accel.EmbeddingQuality, params: accel.EmbeddingQualityParams{K: 10},
		shapes: [][]int{{affinityN, 64}, {affinityN, 2}, nil}, small: [][]int{{7, 3}, {7, 2}, nil},
		smallParams: accel.EmbeddingQualityParams{K: 1}, fill: scatter},
}

// affinityN is the number of points of the long calls of tsne_affinities
// and embedding_quality, whose work grows with its square.
const affinityN = 40000

// scatter writes the f32 inputs with values spread over [-1, 1), which
// checked inputs must be (finite) and which give distinct distances.
func scatter(s *accel.Session, in []*accel.Tensor) error {
	for _, t := range in {
		if t == nil || t.DType() != accel.F32 {
			continue
		}
		v := make([]float32, min(t.Len(), 1<<20))
		x := uint32(t.Len())
		for first := 0; first < t.Len(); first += len(v) {
			n := min(len(v), t.Len()-first)
			for i := range n {
				x = x*1664525 + 1013904223 // a linear congruential sequence
				v[i] = float32(x>>8)/(1<<23) - 1
			}
			if err := s.Write(t, first, accel.EncodeFloat32(v[:n])); err != nil {
				return err
			}
		}
	}
	return nil
}

// spread writes oneRow's P and scatters the embedding over the plane.
func spread(s *accel.Session, in []*accel.Tensor) error {
	if err := oneRow(s, in); err != nil {
		return err
	}
	return scatter(s, in[3:4])
}

// depthwise is a k x k convolution of each of c channels alone, padded to
// keep the image's size.
func depthwise(c, k int) accel.Conv2DParams {
	return accel.Conv2DParams{StrideH: 1, StrideW: 1, PadTop: k / 2, PadLeft: k / 2, PadBottom: k / 2, PadRight: k / 2,
		DilationH: 1, DilationW: 1, Groups: c}
}

// backwardData are the parameters of the gradient of a convolution p of an
// input of size x size.
func backwardData(p accel.Conv2DParams, size int) accel.Conv2DBackwardDataParams {
	return accel.Conv2DBackwardDataParams{Conv2DParams: p, InputH: size, InputW: size}
}

// pool is a k x k max-pool of stride 1 with pad on every side.
func pool(k, pad int) accel.Pool2DParams {
	return accel.Pool2DParams{KernelH: k, KernelW: k, StrideH: 1, StrideW: 1, PadTop: pad, PadLeft: pad, PadBottom: pad, PadRight: pad}
}

// tsneShapes are the inputs of a tsne_step over n points with nnz edges.
func tsneShapes(n, nnz int) [][]int {
	return [][]int{{n + 1}, {nnz}, {nnz}, {n, 2}, {n, 2}, {n, 2}}
}

// oneRow writes a CSR structure with every edge in row 0, to point 1: a
// row of any degree. The values stay zero, which costs a kernel as much as
// any other.
func oneRow(s *accel.Session, in []*accel.Tensor) error {
	rowPtr, cols := in[0], in[1]
	nnz := cols.Len()
	ptr := make([]int32, rowPtr.Len())
	for i := 1; i < len(ptr); i++ {
		ptr[i] = int32(nnz)
	}
	if err := s.Write(rowPtr, 0, i32Bytes(ptr)); err != nil {
		return err
	}
	chunk := i32Bytes(slices.Repeat([]int32{1}, min(nnz, 1<<20)))
	for first := 0; first < nnz; first += len(chunk) / 4 {
		if err := s.Write(cols, first, chunk[:4*min(len(chunk)/4, nnz-first)]); err != nil {
			return err
		}
	}
	return nil
}

func i32Bytes(v []int32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, uint32(x))
	}
	return b
}

// TestDeadline runs the long calls of every operation b has a kernel for,
// as subtests "<mode>/<op>/<case>", one at a time, each with the machine
// to itself. It runs strict mode's kernels and fast mode's (checked mode
// serves from these), or one set where b serves fast mode from its strict
// kernels. Overshoots are logged. It is skipped under -short: each call
// holds up to 1.3 GiB and runs for its deadline.
func TestDeadline(t *testing.T, b accel.Backend) { testDeadline(t, b, longCases) }

// TestDeadlineOp runs the long calls of op alone. It fails when the driver
// has none.
func TestDeadlineOp(t *testing.T, b accel.Backend, op *accel.Op) {
	var cases []longCase
	for _, c := range longCases {
		if c.op == op {
			cases = append(cases, c)
		}
	}
	if len(cases) == 0 {
		t.Fatalf("the deadline driver has no long call of %s", op)
	}
	testDeadline(t, b, cases)
}

func testDeadline(t *testing.T, b accel.Backend, cases []longCase) {
	t.Helper()
	if testing.Short() {
		t.Skip("long calls of up to 1.3 GiB each, run until their deadline: not under -short")
	}
	for _, mode := range kernelModes(t, b) {
		t.Run(mode.String(), func(t *testing.T) {
			for _, c := range cases {
				limit := deadline
				if c.deadline != 0 {
					limit = c.deadline
				}
				t.Run(c.op.Name+"/"+c.name, func(t *testing.T) { checkDeadline(t, b, mode, c, limit) })
			}
		})
	}
}

// kernelModes are the modes whose kernels TestDeadline runs. It skips t
// when b serves neither strict nor fast mode here.
func kernelModes(t *testing.T, b accel.Backend) []accel.Mode {
	t.Helper()
	st := b.Status()
	if !st.Available {
		t.Skipf("backend %s is unavailable: %s", b.Name(), st.Reason)
	}
	var modes []accel.Mode
	if st.Serves(accel.Strict) {
		modes = append(modes, accel.Strict)
	}
	if st.Serves(accel.Fast) && (len(modes) == 0 || !st.FastIsStrict) {
		modes = append(modes, accel.Fast)
	}
	if len(modes) == 0 {
		t.Skipf("backend %s serves neither strict nor fast mode (it serves %s)", b.Name(), accel.ModeList(st.Modes))
	}
	return modes
}

// checkDeadline runs c in mode under limit and reports what it found.
func checkDeadline(t *testing.T, b accel.Backend, mode accel.Mode, c longCase, limit time.Duration) {
	if b.Kernel(c.op, mode) == nil {
		t.Skipf("backend %s has no %s kernel in %s mode", b.Name(), c.op, mode)
	}
	// The previous case's gigabyte goes back before this one allocates.
	runtime.GC()
	r, err := runLong(t.Context(), b, mode, c, limit, maxOvershoot)
	if err != nil {
		t.Fatal(err)
	}
	if r.finished {
		t.Skipf("finished in %v, before its deadline of %v: too quick here to test", r.took, limit)
	}
	t.Logf("deadline %v, returned after %v: overshoot %v", limit, r.took, r.overshoot)
	if !r.entered {
		t.Logf("the kernel started %v after the call, past the deadline: the Session's checks and allocations took that long", r.before)
	}
	for _, p := range r.problems {
		t.Error(p)
	}
}

// longRun is what a long call did.
type longRun struct {
	// took is the call's time, overshoot how long after its deadline it
	// returned, and before how long it took to reach the kernel.
	took, overshoot, before time.Duration
	// finished: the call succeeded before its deadline.
	finished bool
	// entered: the kernel started before the deadline.
	entered  bool
	problems []string
}

// runLong runs c in a session of its own with a deadline of limit, then a
// small call of the operation, and returns what they did. It is a problem
// that the call returned more than bound after its deadline, or where the
// kernel started after the deadline, after the kernel started: the bound is
// the kernel's, and what the Session does before it (checks, allocating
// the outputs) is not. The error is a failure to set the calls up.
func runLong(ctx context.Context, b accel.Backend, mode accel.Mode, c longCase, limit, bound time.Duration) (longRun, error) {
	var r longRun
	w := &watch{Backend: b}
	s, err := accel.NewSession(w, mode, accel.Limits{}, nil)
	if err != nil {
		return r, err
	}
	defer s.Close()
	in, err := inputs(s, c.op, c.shapes, c.fill)
	if err != nil {
		return r, fmt.Errorf("set up %v: %w", c.shapes, err)
	}
	if checksIndexData(c.op) {
		// The Session checks index data, and the data of checked
		// inputs, before the kernel: a full pass over it, once. Done
		// here, the deadline falls in the kernel.
		w.hold = true
		_, _, err := s.Run(ctx, c.op, c.params, in...)
		w.hold = false
		if !errors.Is(err, errHeld) {
			return r, fmt.Errorf("check the index data: %v", err)
		}
	}
	tensors, bytes := s.LiveTensors(), s.LiveBytes()
	if err := warm(c, in); err != nil {
		return r, err
	}

	dctx, cancel := context.WithTimeout(ctx, limit)
	due, _ := dctx.Deadline()
	start := time.Now()
	out, _, err := s.Run(dctx, c.op, c.params, in...)
	end := time.Now()
	cancel()
	r.took, r.overshoot = end.Sub(start), end.Sub(due)
	r.entered = !w.entered.IsZero() && w.entered.Before(due)
	kernelOvershoot := r.overshoot
	if !w.entered.IsZero() {
		r.before = w.entered.Sub(start)
		kernelOvershoot = end.Sub(later(due, w.entered))
	}
	switch {
	case err == nil && end.Before(due):
		r.finished = true
	case err == nil:
		// Done as the deadline came: no harm if soon after it.
	case !errors.Is(err, context.DeadlineExceeded):
		r.problems = append(r.problems, fmt.Sprintf("the call failed with %q, which does not wrap context.DeadlineExceeded", err))
	}
	if kernelOvershoot > bound {
		r.problems = append(r.problems, fmt.Sprintf("returned %v after the start, %v after its deadline of %v (the kernel started after %v): more than %v", r.took, r.overshoot, limit, r.before, bound))
	}
	if err == nil {
		if err := freeAll(s, out); err != nil {
			return r, err
		}
	}
	if n, m := s.LiveTensors(), s.LiveBytes(); n != tensors || m != bytes {
		r.problems = append(r.problems, fmt.Sprintf("%d live tensors of %d bytes after the call, want the %d inputs of %d bytes", n, m, tensors, bytes))
	}

	// The session still serves.
	if err := freeAll(s, in); err != nil {
		return r, err
	}
	params := c.smallParams
	if params == nil {
		params = c.params
	}
	small, err := inputs(s, c.op, c.small, c.fill)
	if err != nil {
		return r, fmt.Errorf("set up %v: %w", c.small, err)
	}
	out, _, err = s.Run(ctx, c.op, params, small...)
	if err != nil {
		r.problems = append(r.problems, fmt.Sprintf("a small call afterwards failed: %v", err))
	}
	if err := freeAll(s, append(small, out...)); err != nil {
		return r, err
	}
	if n := s.LiveTensors(); n != 0 {
		r.problems = append(r.problems, fmt.Sprintf("%d live tensors after freeing every one", n))
	}
	return r, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// inputs allocates zero-filled inputs of op with the shapes, nil for a nil
// shape, and fills them with fill unless it is nil.
func inputs(s *accel.Session, op *accel.Op, shapes [][]int, fill func(*accel.Session, []*accel.Tensor) error) ([]*accel.Tensor, error) {
	in := make([]*accel.Tensor, len(shapes))
	for i, shape := range shapes {
		if shape == nil {
			continue
		}
		t, err := s.NewTensor(op.Inputs[i].DType, shape)
		if err != nil {
			return nil, err
		}
		in[i] = t
		if err := zero(s, t); err != nil {
			return nil, err
		}
	}
	if fill != nil {
		if err := fill(s, in); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// warm makes resident the free memory that the call's outputs and its
// kernel's scratch will take: it allocates blocks of their sizes, in the
// order the Session allocates the outputs, touches them and frees them, so
// that the call's allocations find them again. A machine that backs memory
// only once it is first touched (a VM) can take seconds a gigabyte to do
// so, in the Session's allocations before the kernel, and the driver would
// measure the machine.
func warm(c longCase, in []*accel.Tensor) error {
	shapes := make([][]int, len(in))
	for i, t := range in {
		if t != nil {
			shapes[i] = t.Shape()
		}
	}
	out, err := c.op.Shapes(shapes, c.params)
	if err != nil {
		return err
	}
	var sizes []int64
	for _, shape := range out {
		n, _ := accel.NumElements(shape) // checked by Shapes
		sizes = append(sizes, int64(n))
	}
	sizes = append(sizes, c.op.Scratch(shapes, out, c.params)/4)
	var total int64
	for _, n := range sizes {
		total += 4 * n
	}
	if total > accel.DefaultLimits.MaxBytes {
		return nil // the Session refuses the call
	}
	touch(sizes)
	runtime.GC()
	return nil
}

// touch allocates blocks of the sizes, in order, and writes a word of every
// page of them.
func touch(sizes []int64) {
	blocks := make([][]float32, len(sizes))
	for i, n := range sizes {
		blocks[i] = make([]float32, n)
		for j := 0; j < len(blocks[i]); j += 1024 {
			blocks[i][j] = 1
		}
	}
	runtime.KeepAlive(blocks)
}

// zero writes zeros over t. A new tensor reads as zeros already, but its
// memory may not be there until first touched, which a VM that backs
// memory lazily makes slow: seconds a gigabyte. A guest writes its inputs
// before it calls; so does the driver, before the deadline starts.
func zero(s *accel.Session, t *accel.Tensor) error {
	chunk := make([]byte, 4*min(t.Len(), 1<<20))
	for first := 0; first < t.Len(); first += len(chunk) / 4 {
		if err := s.Write(t, first, chunk[:4*min(len(chunk)/4, t.Len()-first)]); err != nil {
			return err
		}
	}
	return nil
}

func checksIndexData(op *accel.Op) bool {
	return slices.ContainsFunc(op.Inputs, func(in accel.Input) bool { return in.Index || in.Checked })
}

// freeAll frees the tensors that are not nil.
func freeAll(s *accel.Session, ts []*accel.Tensor) error {
	for _, t := range ts {
		if t != nil {
			if err := s.Free(t); err != nil {
				return err
			}
		}
	}
	return nil
}

// errHeld fails a call that watch held back from its kernel.
var errHeld = errors.New("held back before the kernel")

// watch passes a backend through and notes when a kernel starts. While
// hold is set it starts none and fails the call instead: the Session's
// checks before the kernel are then done, and remembered where they are
// of index data.
type watch struct {
	accel.Backend
	hold    bool
	entered time.Time
}

func (w *watch) Kernel(op *accel.Op, mode accel.Mode) accel.Kernel {
	k := w.Backend.Kernel(op, mode)
	if k == nil {
		return nil
	}
	return func(ctx context.Context, c *accel.Call) error {
		if w.hold {
			return errHeld
		}
		w.entered = time.Now()
		return k(ctx, c)
	}
}
