package accel_test

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

// The refusals of the training operations: every shape and parameter the
// op table turns away, through the Session, which must leave nothing
// behind. Each refused call differs in one respect from a valid one, which
// the op's shape rule accepts (TestTrainingShapesAccepted).

// trainCall is a call of a training operation: the shapes of its inputs
// and its parameters.
type trainCall struct {
	op     *accel.Op
	shapes [][]int
	params any
}

var (
	trainNaN = float32(math.NaN())
	trainInf = float32(math.Inf(1))

	trainConv = accel.Conv2DParams{StrideH: 1, StrideW: 1, DilationH: 1, DilationW: 1, Groups: 1}
	// A 3x3 convolution of a [2,4,6,6] input into [2,6,4,4] in two groups.
	trainBwdData   = accel.Conv2DBackwardDataParams{Conv2DParams: trainGroups(trainConv, 2), InputH: 6, InputW: 6}
	trainBwdFilter = accel.Conv2DBackwardFilterParams{Conv2DParams: trainGroups(trainConv, 2), KernelH: 3, KernelW: 3}
	trainPool      = accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2}
	trainSGD       = accel.SGDParams{LearningRate: 0.01, Momentum: 0.9}
	trainAdam      = accel.AdamParams{LearningRate: 1e-3, Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8, Correction1: 0.1, Correction2: 0.001}
)

func trainGroups(p accel.Conv2DParams, g int) accel.Conv2DParams { p.Groups = g; return p }

// validTrainCalls are calls the shape rules accept, one or more per
// operation; the refusals below each change one thing in one of them.
var validTrainCalls = []trainCall{
	{accel.Conv2DBackwardData, [][]int{{2, 6, 4, 4}, {6, 2, 3, 3}}, trainBwdData},
	{accel.Conv2DBackwardFilter, [][]int{{2, 4, 6, 6}, {2, 6, 4, 4}}, trainBwdFilter},
	{accel.MaxPool2DBackward, [][]int{{1, 2, 4, 6}, {1, 2, 2, 3}}, trainPool},
	{accel.ReluBackward, [][]int{{3, 5}, {3, 5}}, accel.NoParams{}},
	{accel.ReduceSum, [][]int{{2, 3, 4}}, accel.ReduceSumParams{Axes: 0b101}},
	{accel.ReduceSum, [][]int{{7}}, accel.ReduceSumParams{Axes: 1}},
	{accel.SoftmaxCrossEntropy, [][]int{{4, 3}, {4}}, accel.NoParams{}},
	{accel.SGDMomentum, [][]int{{2, 3}, {2, 3}, {2, 3}}, trainSGD},
	{accel.SGDMomentum, [][]int{{5}, {5}, {5}}, accel.SGDParams{LearningRate: -1, Momentum: 0}},
	{accel.Adam, [][]int{{2, 3}, {2, 3}, {2, 3}, {2, 3}}, trainAdam},
	// Corrections of 1 and just above 0 are in range; betas and rates of
	// any finite value are taken.
	{accel.Adam, [][]int{{4}, {4}, {4}, {4}}, trainAdamWith(func(p *accel.AdamParams) {
		p.Correction1, p.Correction2, p.Beta1, p.Beta2, p.Epsilon, p.LearningRate = 1, math.SmallestNonzeroFloat32, -2, 3, 0, -1
	})},
}

func TestTrainingShapesAccepted(t *testing.T) {
	for _, c := range validTrainCalls {
		if _, err := c.op.Shapes(c.shapes, c.params); err != nil {
			t.Errorf("%s %v %+v: %v", c.op, c.shapes, c.params, err)
		}
	}
}

func trainAdamWith(f func(p *accel.AdamParams)) accel.AdamParams {
	p := trainAdam
	f(&p)
	return p
}

func trainSGDWith(f func(p *accel.SGDParams)) accel.SGDParams {
	p := trainSGD
	f(&p)
	return p
}

func TestTrainingOpErrors(t *testing.T) {
	ctx := context.Background()
	// run allocates zero-filled inputs of the shapes (i32 where the op
	// takes i32) and calls op through the Session.
	run := func(op *accel.Op, p any, shapes ...[]int) func(e *env) error {
		return func(e *env) error {
			in := make([]*accel.Tensor, len(shapes))
			for i, s := range shapes {
				t, err := e.s.NewTensor(op.Inputs[i].DType, s)
				if err != nil {
					return err
				}
				in[i] = t
			}
			e.mark()
			_, _, err := e.s.Run(ctx, op, p, in...)
			return err
		}
	}
	// labels calls softmax_cross_entropy on logits [len(labels), k].
	labels := func(k int, l ...int32) func(e *env) error {
		return func(e *env) error {
			x, lt := e.f32(len(l), k), e.i32(l...)
			e.mark()
			_, _, err := e.s.SoftmaxCrossEntropy(ctx, x, lt)
			return err
		}
	}
	// alias calls op on distinct tensors of shape [3] but for input i,
	// which is input j.
	alias := func(op *accel.Op, p any, i, j int) func(e *env) error {
		return func(e *env) error {
			in := make([]*accel.Tensor, len(op.Inputs))
			for k := range in {
				in[k] = e.f32(3)
			}
			in[i] = in[j]
			e.mark()
			_, _, err := e.s.Run(ctx, op, p, in...)
			return err
		}
	}
	bd := func(f func(p *accel.Conv2DBackwardDataParams)) accel.Conv2DBackwardDataParams {
		p := trainBwdData
		f(&p)
		return p
	}
	bf := func(f func(p *accel.Conv2DBackwardFilterParams)) accel.Conv2DBackwardFilterParams {
		p := trainBwdFilter
		f(&p)
		return p
	}
	pp := func(f func(p *accel.Pool2DParams)) accel.Pool2DParams {
		p := trainPool
		f(&p)
		return p
	}
	ad := func(f func(p *accel.AdamParams)) func(e *env) error {
		return run(accel.Adam, trainAdamWith(f), []int{4}, []int{4}, []int{4}, []int{4})
	}
	sg := func(f func(p *accel.SGDParams)) func(e *env) error {
		return run(accel.SGDMomentum, trainSGDWith(f), []int{4}, []int{4}, []int{4})
	}
	runErrCases(t, []errCase{
		// conv2d_backward_data: dy [2,6,4,4], w [6,2,3,3], input 6x6.
		{"conv2d_backward_data: dy of rank 3", accel.ErrShape, run(accel.Conv2DBackwardData, trainBwdData, []int{6, 4, 4}, []int{6, 2, 3, 3})},
		{"conv2d_backward_data: w of rank 2", accel.ErrShape, run(accel.Conv2DBackwardData, trainBwdData, []int{2, 6, 4, 4}, []int{6, 18})},
		{"conv2d_backward_data: input height that gives another output", accel.ErrShape,
			run(accel.Conv2DBackwardData, bd(func(p *accel.Conv2DBackwardDataParams) { p.InputH = 7 }), []int{2, 6, 4, 4}, []int{6, 2, 3, 3})},
		{"conv2d_backward_data: input width 0", accel.ErrInvalid,
			run(accel.Conv2DBackwardData, bd(func(p *accel.Conv2DBackwardDataParams) { p.InputW = 0 }), []int{2, 6, 4, 4}, []int{6, 2, 3, 3})},
		{"conv2d_backward_data: no groups", accel.ErrInvalid,
			run(accel.Conv2DBackwardData, bd(func(p *accel.Conv2DBackwardDataParams) { p.Groups = 0 }), []int{2, 6, 4, 4}, []int{6, 2, 3, 3})},
		{"conv2d_backward_data: groups that do not divide the output channels", accel.ErrShape,
			run(accel.Conv2DBackwardData, bd(func(p *accel.Conv2DBackwardDataParams) { p.Groups = 4 }), []int{2, 6, 4, 4}, []int{6, 2, 3, 3})},
		{"conv2d_backward_data: stride 0", accel.ErrInvalid,
			run(accel.Conv2DBackwardData, bd(func(p *accel.Conv2DBackwardDataParams) { p.StrideH = 0 }), []int{2, 6, 4, 4}, []int{6, 2, 3, 3})},
		{"conv2d_backward_data: negative padding", accel.ErrInvalid,
			run(accel.Conv2DBackwardData, bd(func(p *accel.Conv2DBackwardDataParams) { p.PadLeft = -1 }), []int{2, 6, 4, 4}, []int{6, 2, 3, 3})},
		{"conv2d_backward_data: dy's channels are not w's outputs", accel.ErrShape, run(accel.Conv2DBackwardData, trainBwdData, []int{2, 5, 4, 4}, []int{6, 2, 3, 3})},

		// conv2d_backward_filter: x [2,4,6,6], dy [2,6,4,4], kernel 3x3.
		{"conv2d_backward_filter: x of rank 3", accel.ErrShape, run(accel.Conv2DBackwardFilter, trainBwdFilter, []int{4, 6, 6}, []int{2, 6, 4, 4})},
		{"conv2d_backward_filter: dy of rank 5", accel.ErrShape, run(accel.Conv2DBackwardFilter, trainBwdFilter, []int{2, 4, 6, 6}, []int{1, 2, 6, 4, 4})},
		{"conv2d_backward_filter: groups that do not divide x's channels", accel.ErrInvalid,
			run(accel.Conv2DBackwardFilter, bf(func(p *accel.Conv2DBackwardFilterParams) { p.Groups = 3 }), []int{2, 4, 6, 6}, []int{2, 6, 4, 4})},
		{"conv2d_backward_filter: no groups", accel.ErrInvalid,
			run(accel.Conv2DBackwardFilter, bf(func(p *accel.Conv2DBackwardFilterParams) { p.Groups = 0 }), []int{2, 4, 6, 6}, []int{2, 6, 4, 4})},
		{"conv2d_backward_filter: kernel height 0", accel.ErrInvalid,
			run(accel.Conv2DBackwardFilter, bf(func(p *accel.Conv2DBackwardFilterParams) { p.KernelH = 0 }), []int{2, 4, 6, 6}, []int{2, 6, 4, 4})},
		{"conv2d_backward_filter: a kernel that gives another output", accel.ErrShape,
			run(accel.Conv2DBackwardFilter, bf(func(p *accel.Conv2DBackwardFilterParams) { p.KernelW = 2 }), []int{2, 4, 6, 6}, []int{2, 6, 4, 4})},
		{"conv2d_backward_filter: batches differ", accel.ErrShape, run(accel.Conv2DBackwardFilter, trainBwdFilter, []int{2, 4, 6, 6}, []int{3, 6, 4, 4})},
		{"conv2d_backward_filter: dilation 0", accel.ErrInvalid,
			run(accel.Conv2DBackwardFilter, bf(func(p *accel.Conv2DBackwardFilterParams) { p.DilationW = 0 }), []int{2, 4, 6, 6}, []int{2, 6, 4, 4})},

		// maxpool2d_backward: x [1,2,4,6], dy [1,2,2,3].
		{"maxpool2d_backward: dy of another shape", accel.ErrShape, run(accel.MaxPool2DBackward, trainPool, []int{1, 2, 4, 6}, []int{1, 2, 2, 2})},
		{"maxpool2d_backward: x of rank 3", accel.ErrShape, run(accel.MaxPool2DBackward, trainPool, []int{2, 4, 6}, []int{1, 2, 2, 3})},
		{"maxpool2d_backward: kernel 0", accel.ErrInvalid,
			run(accel.MaxPool2DBackward, pp(func(p *accel.Pool2DParams) { p.KernelW = 0 }), []int{1, 2, 4, 6}, []int{1, 2, 2, 3})},
		{"maxpool2d_backward: padding as wide as the kernel", accel.ErrInvalid,
			run(accel.MaxPool2DBackward, pp(func(p *accel.Pool2DParams) { p.PadTop = 2 }), []int{1, 2, 4, 6}, []int{1, 2, 3, 3})},

		// relu_backward.
		{"relu_backward: shapes differ", accel.ErrShape, run(accel.ReluBackward, accel.NoParams{}, []int{3, 5}, []int{5, 3})},
		{"relu_backward: ranks differ", accel.ErrShape, run(accel.ReluBackward, accel.NoParams{}, []int{15}, []int{3, 5})},

		// reduce_sum.
		{"reduce_sum: no axis", accel.ErrInvalid, run(accel.ReduceSum, accel.ReduceSumParams{}, []int{2, 3})},
		{"reduce_sum: an axis beyond the rank", accel.ErrInvalid, run(accel.ReduceSum, accel.ReduceSumParams{Axes: 0b100}, []int{2, 3})},
		{"reduce_sum: the top bit", accel.ErrInvalid, run(accel.ReduceSum, accel.ReduceSumParams{Axes: 1 << 31}, []int{2, 3})},
		{"reduce_sum: a negative axis", accel.ErrInvalid, func(e *env) error {
			x := e.f32(2, 3)
			e.mark()
			_, err := e.s.ReduceSum(ctx, x, -1)
			return err
		}},

		// softmax_cross_entropy: logits [4,3], labels [4] in [0, 3).
		{"softmax_cross_entropy: logits of rank 1", accel.ErrShape, run(accel.SoftmaxCrossEntropy, accel.NoParams{}, []int{4}, []int{4})},
		{"softmax_cross_entropy: logits of rank 3", accel.ErrShape, run(accel.SoftmaxCrossEntropy, accel.NoParams{}, []int{4, 3, 1}, []int{4})},
		{"softmax_cross_entropy: labels of rank 2", accel.ErrShape, run(accel.SoftmaxCrossEntropy, accel.NoParams{}, []int{4, 3}, []int{4, 1})},
		{"softmax_cross_entropy: a label too few", accel.ErrShape, run(accel.SoftmaxCrossEntropy, accel.NoParams{}, []int{4, 3}, []int{3})},
		{"softmax_cross_entropy: f32 labels", accel.ErrInvalid, func(e *env) error {
			x, l := e.f32(4, 3), e.f32(4)
			e.mark()
			_, _, err := e.s.SoftmaxCrossEntropy(ctx, x, l)
			return err
		}},
		{"softmax_cross_entropy: i32 logits", accel.ErrInvalid, func(e *env) error {
			x, l := e.i32(1, 2, 0), e.i32(0, 0, 0)
			e.mark()
			_, _, err := e.s.SoftmaxCrossEntropy(ctx, x, l)
			return err
		}},
		{"softmax_cross_entropy: a negative label", accel.ErrInvalid, labels(3, 0, 1, -1, 2)},
		{"softmax_cross_entropy: a label of K", accel.ErrInvalid, labels(3, 0, 1, 2, 3)},
		{"softmax_cross_entropy: the smallest label", accel.ErrInvalid, labels(3, math.MinInt32)},
		{"softmax_cross_entropy: labels on the first and last columns", nil, labels(3, 0, 2, 2, 0)},

		// sgd_momentum: w, grad and velocity [4].
		{"sgd_momentum: grad of another shape", accel.ErrShape, run(accel.SGDMomentum, trainSGD, []int{4}, []int{2, 2}, []int{4})},
		{"sgd_momentum: velocity of another shape", accel.ErrShape, run(accel.SGDMomentum, trainSGD, []int{4}, []int{4}, []int{5})},
		{"sgd_momentum: NaN rate", accel.ErrInvalid, sg(func(p *accel.SGDParams) { p.LearningRate = trainNaN })},
		{"sgd_momentum: infinite rate", accel.ErrInvalid, sg(func(p *accel.SGDParams) { p.LearningRate = -trainInf })},
		{"sgd_momentum: NaN momentum", accel.ErrInvalid, sg(func(p *accel.SGDParams) { p.Momentum = trainNaN })},
		{"sgd_momentum: infinite momentum", accel.ErrInvalid, sg(func(p *accel.SGDParams) { p.Momentum = trainInf })},
		{"sgd_momentum: w is velocity", accel.ErrInvalid, alias(accel.SGDMomentum, trainSGD, 2, 0)},
		{"sgd_momentum: w is grad", accel.ErrInvalid, alias(accel.SGDMomentum, trainSGD, 1, 0)},
		{"sgd_momentum: velocity is grad", accel.ErrInvalid, alias(accel.SGDMomentum, trainSGD, 2, 1)},
		{"sgd_momentum: a valid step", nil, sg(func(*accel.SGDParams) {})},

		// trainAdam: w, grad, m and v [4].
		{"trainAdam: grad of another shape", accel.ErrShape, run(accel.Adam, trainAdam, []int{4}, []int{5}, []int{4}, []int{4})},
		{"trainAdam: m of another shape", accel.ErrShape, run(accel.Adam, trainAdam, []int{4}, []int{4}, []int{1, 4}, []int{4})},
		{"trainAdam: v of another shape", accel.ErrShape, run(accel.Adam, trainAdam, []int{4}, []int{4}, []int{4}, []int{2})},
		{"trainAdam: NaN rate", accel.ErrInvalid, ad(func(p *accel.AdamParams) { p.LearningRate = trainNaN })},
		{"trainAdam: infinite beta1", accel.ErrInvalid, ad(func(p *accel.AdamParams) { p.Beta1 = trainInf })},
		{"trainAdam: NaN beta2", accel.ErrInvalid, ad(func(p *accel.AdamParams) { p.Beta2 = trainNaN })},
		{"trainAdam: infinite epsilon", accel.ErrInvalid, ad(func(p *accel.AdamParams) { p.Epsilon = -trainInf })},
		{"trainAdam: correction1 of 0", accel.ErrInvalid, ad(func(p *accel.AdamParams) { p.Correction1 = 0 })},
		{"trainAdam: correction1 of -0", accel.ErrInvalid, ad(func(p *accel.AdamParams) { p.Correction1 = float32(math.Copysign(0, -1)) })},
		{"trainAdam: negative correction1", accel.ErrInvalid, ad(func(p *accel.AdamParams) { p.Correction1 = -0.1 })},
		{"trainAdam: correction1 above 1", accel.ErrInvalid, ad(func(p *accel.AdamParams) { p.Correction1 = math.Nextafter32(1, 2) })},
		{"trainAdam: NaN correction1", accel.ErrInvalid, ad(func(p *accel.AdamParams) { p.Correction1 = trainNaN })},
		{"trainAdam: correction2 of 0", accel.ErrInvalid, ad(func(p *accel.AdamParams) { p.Correction2 = 0 })},
		{"trainAdam: correction2 of 2", accel.ErrInvalid, ad(func(p *accel.AdamParams) { p.Correction2 = 2 })},
		{"trainAdam: infinite correction2", accel.ErrInvalid, ad(func(p *accel.AdamParams) { p.Correction2 = trainInf })},
		{"trainAdam: w is m", accel.ErrInvalid, alias(accel.Adam, trainAdam, 2, 0)},
		{"trainAdam: v is grad", accel.ErrInvalid, alias(accel.Adam, trainAdam, 3, 1)},
		{"trainAdam: m is v", accel.ErrInvalid, alias(accel.Adam, trainAdam, 3, 2)},
		{"trainAdam: corrections of 1", nil, ad(func(p *accel.AdamParams) { p.Correction1, p.Correction2 = 1, 1 })},
	})
}

// A refused optimiser step leaves its state as it was.
func TestRefusedStepKeepsState(t *testing.T) {
	e := newEnv(t, accel.Limits{}, nil)
	w := []float32{1, -2, 3}
	wt, g, m, v := e.fill(w, 3), e.fill([]float32{1, 1, 1}, 3), e.fill(w, 3), e.fill(w, 3)
	bad := trainAdam
	bad.Correction2 = 0
	if err := e.s.Adam(context.Background(), wt, g, m, v, bad); !errors.Is(err, accel.ErrInvalid) {
		t.Fatalf("trainAdam with correction2 0: %v, want ErrInvalid", err)
	}
	if err := e.s.SGDMomentum(context.Background(), wt, g, m, accel.SGDParams{LearningRate: trainNaN}); !errors.Is(err, accel.ErrInvalid) {
		t.Fatalf("sgd_momentum with a NaN rate: %v, want ErrInvalid", err)
	}
	for name, x := range map[string]*accel.Tensor{"w": wt, "m": m, "v": v} {
		if got := e.read(x); !bitsEqual(got, w) {
			t.Errorf("%s after refused steps: %v, want %v", name, got, w)
		}
	}
}
