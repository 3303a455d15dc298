package models

// The ONNX ops the node runs op by op. Each is described once, here: the
// attributes it reads, its inputs, how it compiles (its attributes parsed
// and what the graph already shows checked) and how a run plans it from its
// input shapes: its output's shape and the accel operations that compute
// it. A run charges exactly the operations it plans and calls exactly
// those, so the shape rules that price a model are the ones that run it.
// Supporting another ONNX op is one entry in onnxOps.

import (
	"fmt"
	"math"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/models/onnx"
)

// onnxOp is how the node runs one ONNX op type.
type onnxOp struct {
	// attrs are the attributes the op reads; any other is unsupported.
	attrs []string
	// minIn and maxIn bound the node's inputs. The last consts of the
	// maxIn are constants read at compile time (Reshape's shape, Clip's
	// bounds), each of them optional where minIn allows; the others are
	// tensors.
	minIn, maxIn, consts int
	// compile parses the attributes and checks what the graph shows before
	// any run: the ranks it knows and the initializers. It returns what
	// plan needs and the output's rank, -1 when unknown.
	compile func(c *compiler, st *step, a attrs) (params any, rank int, err error)
	// plan gives the output's shape from the input shapes (nil for an
	// omitted optional input), and the accel operations that compute it.
	plan func(params any, in [][]int) (nodePlan, error)
}

// rule is the typed description an onnxOp is built from.
type rule[P any] struct {
	attrs                []string
	minIn, maxIn, consts int
	compile              func(c *compiler, st *step, a attrs) (P, int, error)
	plan                 func(p P, in [][]int) (nodePlan, error)
}

// define erases the types of r's functions into an onnxOp.
func define[P any](r rule[P]) *onnxOp {
	return &onnxOp{
		attrs: r.attrs, minIn: r.minIn, maxIn: r.maxIn, consts: r.consts,
		compile: func(c *compiler, st *step, a attrs) (any, int, error) { return r.compile(c, st, a) },
		plan:    func(p any, in [][]int) (nodePlan, error) { return r.plan(p.(P), in) },
	}
}

// nodePlan is one node of a run, worked out from its input shapes.
type nodePlan struct {
	// out is the output's ONNX shape; rank 0 for a scalar, which a run
	// holds as a [1] tensor.
	out []int
	// calls run in order, and the last one's output is the node's. A node
	// without calls (Reshape, Flatten, Identity) gives its first input's
	// data under the new shape.
	calls []opCall
}

// opCall is one accel operation of a node.
type opCall struct {
	op     *accel.Op
	params any
	// args are the operation's inputs: an index into the node's inputs,
	// prev for the previous call's output, or absent for an omitted
	// optional input.
	args []int
	// in and out are the shapes the operation takes and gives (op.Shapes).
	// An argument held in another shape of its elements is viewed in this
	// one for the call.
	in, out [][]int
}

const (
	prev   = -1 // the previous call's output
	absent = -2 // an omitted optional input
)

// plan1 plans op on arguments of shapes in, checking them with op's own
// shape rule.
func plan1(op *accel.Op, p any, args []int, in ...[]int) (opCall, error) {
	out, err := op.Shapes(in, p)
	if err != nil {
		return opCall{}, err
	}
	return opCall{op: op, params: p, args: args, in: in, out: out}, nil
}

// units is the call's cost, as the Session would charge it.
func (c *opCall) units() uint64 { return c.op.Units(c.in, c.out, c.params) }

// single is the plan of a node that is one accel operation.
func single(c opCall, err error) (nodePlan, error) {
	if err != nil {
		return nodePlan{}, err
	}
	return nodePlan{out: c.out[0], calls: []opCall{c}}, nil
}

// tensorShape is the shape a run holds a value of ONNX shape s in: a scalar
// is a [1] tensor, since tensors have rank 1 at least.
func tensorShape(s []int) []int {
	if len(s) == 0 {
		return []int{1}
	}
	return s
}

type none struct{}

// onnxOps lists the ONNX ops the node runs op by op.
var onnxOps = map[string]*onnxOp{
	// Gemm is a matmul and, with C, an add_bias of C [N] along axis 1, or
	// a binary add of any other C that broadcasts to [M, N].
	"Gemm": define(rule[accel.MatMulParams]{
		attrs: []string{"alpha", "beta", "transA", "transB"},
		minIn: 2, maxIn: 3,
		compile: compileGemm,
		plan: func(p accel.MatMulParams, in [][]int) (nodePlan, error) {
			if len(in[0]) != 2 || len(in[1]) != 2 {
				return nodePlan{}, fmt.Errorf("%w: gemm needs 2-d inputs A and B, got %s and %s", accel.ErrShape, accel.ShapeString(in[0]), accel.ShapeString(in[1]))
			}
			mm, err := plan1(accel.MatMul, p, []int{0, 1}, in[0], in[1])
			if err != nil {
				return nodePlan{}, err
			}
			if len(in) < 3 || in[2] == nil {
				return single(mm, nil)
			}
			if len(in[2]) != 1 || in[2][0] != mm.out[0][1] {
				// Any other C that broadcasts to [M, N]: a binary add.
				add, err := plan1(accel.Binary, accel.BinaryParams{Func: accel.BinaryAdd}, []int{prev, 2}, mm.out[0], tensorShape(in[2]))
				if err != nil {
					return nodePlan{}, err
				}
				if !slices.Equal(add.out[0], mm.out[0]) {
					return nodePlan{}, fmt.Errorf("%w: gemm's C %s does not broadcast to %s", accel.ErrShape, accel.ShapeString(in[2]), accel.ShapeString(mm.out[0]))
				}
				return nodePlan{out: add.out[0], calls: []opCall{mm, add}}, nil
			}
			bias, err := plan1(accel.AddBias, accel.AddBiasParams{Axis: 1}, []int{prev, 2}, mm.out[0], in[2])
			if err != nil {
				return nodePlan{}, err
			}
			return nodePlan{out: bias.out[0], calls: []opCall{mm, bias}}, nil
		},
	}),
	// MatMul is a matmul of matrices, and a batch_matmul where either
	// operand has batch axes; a vector operand is a one-row (first) or
	// one-column (second) matrix, and its axis is dropped from the result,
	// as numpy does, so two vectors give a scalar.
	"MatMul": define(rule[none]{
		minIn: 2, maxIn: 2,
		compile: func(c *compiler, st *step, _ attrs) (none, int, error) {
			r0, r1 := c.rank[st.in[0]], c.rank[st.in[1]]
			if r0 == 0 || r1 == 0 {
				return none{}, 0, fmt.Errorf("an input of rank 0 is %w (MatMul takes vectors and matrices)", accel.ErrUnsupported)
			}
			if r0 < 0 || r1 < 0 {
				return none{}, -1, nil
			}
			rank := max(r0, r1)
			if r0 == 1 {
				rank--
			}
			if r1 == 1 {
				rank--
			}
			return none{}, max(rank, 0), nil
		},
		plan: func(_ none, in [][]int) (nodePlan, error) {
			a, b := in[0], in[1]
			if len(a) == 0 || len(b) == 0 {
				return nodePlan{}, fmt.Errorf("matmul of %s and %s is %w (rank 0)", accel.ShapeString(a), accel.ShapeString(b), accel.ErrUnsupported)
			}
			vecA, vecB := len(a) == 1, len(b) == 1
			if vecA {
				a = []int{1, a[0]}
			}
			if vecB {
				b = []int{b[0], 1}
			}
			var mm opCall
			var err error
			if len(a) == 2 && len(b) == 2 {
				mm, err = plan1(accel.MatMul, accel.MatMulParams{}, []int{0, 1}, a, b)
			} else {
				mm, err = plan1(accel.BatchMatMul, accel.NoParams{}, []int{0, 1}, a, b)
			}
			if err != nil {
				return nodePlan{}, err
			}
			out := mm.out[0]
			switch {
			case vecA && vecB:
				out = out[:len(out)-2]
			case vecA:
				out = append(slices.Clone(out[:len(out)-2]), out[len(out)-1])
			case vecB:
				out = out[:len(out)-1]
			}
			return nodePlan{out: out, calls: []opCall{mm}}, nil
		},
	}),
	// Conv is a conv2d, with its bias.
	"Conv": define(rule[convParams]{
		attrs: []string{"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"},
		minIn: 2, maxIn: 3,
		compile: compileConv,
		plan: func(p convParams, in [][]int) (nodePlan, error) {
			x, w := in[0], in[1]
			if len(x) != 4 || len(w) != 4 {
				return nodePlan{}, fmt.Errorf("convolution of %s with weights %s is %w (only 2-d)", accel.ShapeString(x), accel.ShapeString(w), accel.ErrUnsupported)
			}
			if k := p.kernel; k != nil && (w[2] != k[0] || w[3] != k[1]) {
				return nodePlan{}, fmt.Errorf("%w: kernel_shape %v does not match weights %s", accel.ErrShape, k, accel.ShapeString(w))
			}
			args, bias := []int{0, 1, absent}, []int(nil)
			if len(in) == 3 && in[2] != nil {
				args[2], bias = 2, in[2]
			}
			return single(plan1(accel.Conv2D, p.conv, args, x, w, bias))
		},
	}),
	"Relu": define(rule[none]{
		minIn: 1, maxIn: 1,
		compile: sameRank,
		plan: func(_ none, in [][]int) (nodePlan, error) {
			c, err := plan1(accel.Relu, accel.NoParams{}, []int{0}, tensorShape(in[0]))
			if err != nil {
				return nodePlan{}, err
			}
			return nodePlan{out: in[0], calls: []opCall{c}}, nil
		},
	}),
	// Softmax is a softmax along the last axis; along another one it is
	// a softmax between two transposes that swap that axis and the last.
	// Before opset 13 it is a softmax of the input viewed as 2-d.
	"Softmax": define(rule[softmaxParams]{
		attrs: []string{"axis"},
		minIn: 1, maxIn: 1,
		compile: func(c *compiler, st *step, a attrs) (softmaxParams, int, error) {
			// Before opset 13 Softmax flattens to 2-d at axis (default 1)
			// and normalises each row of that.
			p := softmaxParams{flatten: c.opset > 0 && c.opset < 13}
			def := int64(-1)
			if p.flatten {
				def = 1
			}
			axis, err := a.int("axis", def)
			if err != nil {
				return p, 0, err
			}
			p.axis = int(axis)
			rank := c.rank[st.in[0]]
			if rank >= 0 {
				if err := softmaxAxis(p.axis, rank); err != nil {
					return p, 0, err
				}
			}
			return p, rank, nil
		},
		plan: func(p softmaxParams, in [][]int) (nodePlan, error) {
			if err := softmaxAxis(p.axis, len(in[0])); err != nil {
				return nodePlan{}, err
			}
			x, r := in[0], len(in[0])
			at := (p.axis + r) % r
			switch {
			case p.flatten:
				rows := []int{product(x[:at]), product(x[at:])}
				c, err := plan1(accel.Softmax, accel.NoParams{}, []int{0}, rows)
				if err != nil {
					return nodePlan{}, err
				}
				return nodePlan{out: x, calls: []opCall{c}}, nil
			case at == r-1:
				return single(plan1(accel.Softmax, accel.NoParams{}, []int{0}, x))
			}
			perm := make([]int, r)
			for i := range perm {
				perm[i] = i
			}
			perm[at], perm[r-1] = r-1, at // its own inverse
			tp := accel.PermParams(perm...)
			there, err := plan1(accel.Transpose, tp, []int{0}, x)
			if err != nil {
				return nodePlan{}, err
			}
			sm, err := plan1(accel.Softmax, accel.NoParams{}, []int{prev}, there.out[0])
			if err != nil {
				return nodePlan{}, err
			}
			back, err := plan1(accel.Transpose, tp, []int{prev}, sm.out[0])
			if err != nil {
				return nodePlan{}, err
			}
			return nodePlan{out: back.out[0], calls: []opCall{there, sm, back}}, nil
		},
	}),
	// Transpose is a transpose; its perm reverses the axes by default.
	"Transpose": define(rule[[]int]{
		attrs: []string{"perm"},
		minIn: 1, maxIn: 1,
		compile: func(c *compiler, st *step, a attrs) ([]int, int, error) {
			at, ok, err := a.get("perm", onnx.AttrInts)
			if err != nil {
				return nil, 0, err
			}
			var perm []int
			for _, v := range at.Ints {
				if v < 0 || v >= accel.MaxRank || !ok {
					return nil, 0, fmt.Errorf("%w: perm %v", accel.ErrInvalid, at.Ints)
				}
				perm = append(perm, int(v))
			}
			r := c.rank[st.in[0]]
			if perm != nil {
				if r >= 0 && len(perm) != r {
					return nil, 0, fmt.Errorf("%w: perm %v for an input of rank %d", accel.ErrInvalid, perm, r)
				}
				r = len(perm)
			}
			return perm, r, nil
		},
		plan: func(perm []int, in [][]int) (nodePlan, error) {
			x := in[0]
			if perm == nil {
				perm = make([]int, len(x))
				for i := range perm {
					perm[i] = len(x) - 1 - i
				}
			}
			if len(perm) != len(x) {
				return nodePlan{}, fmt.Errorf("%w: perm %v for %s", accel.ErrShape, perm, accel.ShapeString(x))
			}
			if len(x) == 0 {
				return nodePlan{out: x}, nil
			}
			return single(plan1(accel.Transpose, accel.PermParams(perm...), []int{0}, x))
		},
	}),
	"MaxPool": define(rule[accel.Pool2DParams]{
		attrs: []string{"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"},
		minIn: 1, maxIn: 1,
		compile: compileMaxPool,
		plan: func(p accel.Pool2DParams, in [][]int) (nodePlan, error) {
			if len(in[0]) != 4 {
				return nodePlan{}, fmt.Errorf("max pooling of %s is %w (only 2-d)", accel.ShapeString(in[0]), accel.ErrUnsupported)
			}
			return single(plan1(accel.MaxPool2D, p, []int{0}, in[0]))
		},
	}),
	// Add of two tensors of one shape is an add; where one operand
	// broadcasts along a single axis of the other it is an add_bias, and
	// any other broadcast is a binary add. Addition commutes bit for bit
	// (NaNs are canonical), so either operand may be the bias.
	"Add": define(rule[int]{
		minIn: 2, maxIn: 2,
		compile: compileAdd,
		plan: func(bias int, in [][]int) (nodePlan, error) {
			a, b := in[0], in[1]
			if slices.Equal(a, b) {
				c, err := plan1(accel.Add, accel.NoParams{}, []int{0, 1}, tensorShape(a), tensorShape(b))
				if err != nil {
					return nodePlan{}, err
				}
				return nodePlan{out: a, calls: []opCall{c}}, nil
			}
			for _, x := range []int{0, 1} {
				if bias >= 0 && bias != 1-x {
					continue
				}
				if axis, ok := biasAxis(in[x], in[1-x]); ok {
					args := []int{x, 1 - x}
					return single(plan1(accel.AddBias, accel.AddBiasParams{Axis: axis}, args, in[x], []int{in[x][axis]}))
				}
			}
			return planBinary(accel.BinaryAdd, in)
		},
	}),
	// Clip is a clip. Its bounds are constants: the min and max inputs
	// from opset 11 on (initializers or Constant nodes), attributes
	// before; an absent one is the lowest or the highest float, as ONNX
	// says.
	"Clip": define(rule[accel.ClipParams]{
		attrs: []string{"min", "max"},
		minIn: 1, maxIn: 3, consts: 2,
		compile: compileClip,
		plan: func(p accel.ClipParams, in [][]int) (nodePlan, error) {
			c, err := plan1(accel.Clip, p, []int{0}, tensorShape(in[0]))
			if err != nil {
				return nodePlan{}, err
			}
			return nodePlan{out: in[0], calls: []opCall{c}}, nil
		},
	}),
	// GlobalAveragePool is a global_avgpool, of 2-d planes only.
	"GlobalAveragePool": define(rule[none]{
		minIn: 1, maxIn: 1,
		compile: func(c *compiler, st *step, _ attrs) (none, int, error) {
			if c.knownRank(st.in[0], 4) {
				return none{}, 0, fmt.Errorf("input of rank %d is %w (only 2-d pooling, NCHW)", c.rank[st.in[0]], accel.ErrUnsupported)
			}
			return none{}, 4, nil
		},
		plan: func(_ none, in [][]int) (nodePlan, error) {
			if len(in[0]) != 4 {
				return nodePlan{}, fmt.Errorf("global average pooling of %s is %w (only 2-d, NCHW)", accel.ShapeString(in[0]), accel.ErrUnsupported)
			}
			return single(plan1(accel.GlobalAvgPool, accel.NoParams{}, []int{0}, in[0]))
		},
	}),
	// LayerNormalization is a layer_norm over the axes from axis on. Its
	// optional Mean and InvStdDev outputs are not produced.
	"LayerNormalization": define(rule[accel.LayerNormParams]{
		attrs: []string{"axis", "epsilon", "stash_type"},
		minIn: 2, maxIn: 3,
		compile: func(c *compiler, st *step, a attrs) (accel.LayerNormParams, int, error) {
			var p accel.LayerNormParams
			axis, err := a.int("axis", -1)
			if err != nil {
				return p, 0, err
			}
			if p.Epsilon, err = a.float("epsilon", 1e-5); err != nil {
				return p, 0, err
			}
			stash, err := a.int("stash_type", 1)
			if err != nil {
				return p, 0, err
			}
			if stash != 1 {
				return p, 0, fmt.Errorf("stash_type %d is %w (only 1, float)", stash, accel.ErrUnsupported)
			}
			r := c.rank[st.in[0]]
			if r >= 0 && (axis < int64(-r) || axis >= int64(r)) {
				return p, 0, fmt.Errorf("%w: axis %d outside rank %d", accel.ErrInvalid, axis, r)
			}
			p.Axis = int(axis) // resolved against the rank when planned
			return p, r, nil
		},
		plan: func(p accel.LayerNormParams, in [][]int) (nodePlan, error) {
			x := tensorShape(in[0])
			if p.Axis < 0 {
				p.Axis += len(in[0])
			}
			if p.Axis < 0 || p.Axis >= len(in[0]) {
				return nodePlan{}, fmt.Errorf("%w: axis %d outside %s", accel.ErrInvalid, p.Axis, accel.ShapeString(in[0]))
			}
			args, bias := []int{0, 1, absent}, []int(nil)
			if len(in) == 3 && in[2] != nil {
				args[2], bias = 2, in[2]
			}
			c, err := plan1(accel.LayerNorm, p, args, x, in[1], bias)
			if err != nil {
				return nodePlan{}, err
			}
			return nodePlan{out: in[0], calls: []opCall{c}}, nil
		},
	}),
	// Concat joins its inputs along axis, two at a time: concat(concat(a,
	// b), c), …; one input is itself.
	"Concat": define(rule[int]{
		attrs: []string{"axis"},
		minIn: 1, maxIn: maxConcatInputs,
		compile: func(c *compiler, st *step, a attrs) (int, int, error) {
			at, ok, err := a.get("axis", onnx.AttrInt)
			if err != nil {
				return 0, 0, err
			}
			if !ok {
				return 0, 0, fmt.Errorf("%w: Concat needs its axis", accel.ErrInvalid)
			}
			rank := -1
			for _, in := range st.in {
				if r := c.rank[in]; r >= 0 {
					rank = r
				}
			}
			if rank >= 0 && (at.I < int64(-rank) || at.I >= int64(rank)) {
				return 0, 0, fmt.Errorf("%w: axis %d outside rank %d", accel.ErrInvalid, at.I, rank)
			}
			return int(at.I), rank, nil
		},
		plan: func(axis int, in [][]int) (nodePlan, error) {
			r := len(in[0])
			if axis < 0 {
				axis += r
			}
			if r == 0 || axis < 0 || axis >= r {
				return nodePlan{}, fmt.Errorf("%w: axis %d of %s", accel.ErrInvalid, axis, accel.ShapeString(in[0]))
			}
			if len(in) == 1 {
				return nodePlan{out: in[0]}, nil
			}
			var calls []opCall
			acc, first := in[0], 0
			for i := 1; i < len(in); i++ {
				c, err := plan1(accel.Concat, accel.ConcatParams{Axis: axis}, []int{first, i}, acc, in[i])
				if err != nil {
					return nodePlan{}, err
				}
				calls = append(calls, c)
				acc, first = c.out[0], prev
			}
			return nodePlan{out: acc, calls: calls}, nil
		},
	}),
	// Dropout in inference gives its input, whatever its ratio; the
	// training_mode input and the mask output are refused.
	"Dropout": define(rule[none]{
		attrs: []string{"seed", "ratio"},
		minIn: 1, maxIn: 3, consts: 2,
		compile: func(c *compiler, st *step, a attrs) (none, int, error) {
			if len(st.consts) == 2 && st.consts[1] != "" {
				return none{}, 0, fmt.Errorf("training_mode is %w (inference only)", accel.ErrUnsupported)
			}
			return none{}, c.rank[st.in[0]], nil
		},
		plan: func(_ none, in [][]int) (nodePlan, error) { return nodePlan{out: in[0]}, nil },
	}),
	// Reshape, Flatten and Identity give their input's data a new shape,
	// and cost nothing beyond the run.
	"Reshape": define(rule[[]int64]{
		attrs: []string{"allowzero"},
		minIn: 2, maxIn: 2, consts: 1,
		compile: compileReshape,
		plan: func(shape []int64, in [][]int) (nodePlan, error) {
			out, err := reshapeDims(in[0], shape)
			return nodePlan{out: out}, err
		},
	}),
	"Flatten": define(rule[int]{
		attrs: []string{"axis"},
		minIn: 1, maxIn: 1,
		compile: func(c *compiler, st *step, a attrs) (int, int, error) {
			axis, err := a.int("axis", 1)
			if err != nil {
				return 0, 0, err
			}
			if r := c.rank[st.in[0]]; r >= 0 && (axis < int64(-r) || axis > int64(r)) {
				return 0, 0, fmt.Errorf("%w: axis %d outside rank %d", accel.ErrInvalid, axis, r)
			}
			return int(axis), 2, nil
		},
		plan: func(axis int, in [][]int) (nodePlan, error) {
			d := in[0]
			at := axis
			if at < 0 {
				at += len(d)
			}
			if at < 0 || at > len(d) {
				return nodePlan{}, fmt.Errorf("%w: axis %d outside %s", accel.ErrInvalid, axis, accel.ShapeString(d))
			}
			return nodePlan{out: []int{product(d[:at]), product(d[at:])}}, nil
		},
	}),
	"Identity": define(rule[none]{
		minIn: 1, maxIn: 1,
		compile: sameRank,
		plan:    func(_ none, in [][]int) (nodePlan, error) { return nodePlan{out: in[0]}, nil },
	}),
}

func init() {
	for op, f := range map[string]accel.UnaryFunc{
		"Abs": accel.UnaryAbs, "Neg": accel.UnaryNeg, "Sqrt": accel.UnarySqrt,
		"Reciprocal": accel.UnaryReciprocal, "HardSwish": accel.UnaryHardSwish,
		"Exp": accel.UnaryExp, "Log": accel.UnaryLog,
		"Tanh": accel.UnaryTanh, "Sigmoid": accel.UnarySigmoid, "Erf": accel.UnaryErf,
	} {
		onnxOps[op] = unaryOp(f)
	}
	onnxOps["Sub"] = binaryOp(accel.BinarySub)
	onnxOps["Mul"] = binaryOp(accel.BinaryMul)
	onnxOps["Div"] = binaryOp(accel.BinaryDiv)
	onnxOps["LeakyRelu"] = unaryOp(accel.UnaryLeakyRelu, param{"alpha", 0.01})
	onnxOps["HardSigmoid"] = unaryOp(accel.UnaryHardSigmoid, param{"alpha", 0.2}, param{"beta", 0.5})
}

// maxConcatInputs bounds a Concat's inputs.
const maxConcatInputs = 256

// param is a float attribute of an elementwise op, with ONNX's default.
type param struct {
	name string
	def  float32
}

// unaryOp is an elementwise ONNX op that is one unary function; its
// attributes, where it has any, are the function's alpha and beta.
func unaryOp(f accel.UnaryFunc, params ...param) *onnxOp {
	var names []string
	for _, p := range params {
		names = append(names, p.name)
	}
	return define(rule[accel.UnaryParams]{
		attrs: names,
		minIn: 1, maxIn: 1,
		compile: func(c *compiler, st *step, a attrs) (accel.UnaryParams, int, error) {
			p := accel.UnaryParams{Func: f}
			for i, pa := range params {
				v, err := a.float(pa.name, pa.def)
				if err != nil {
					return p, 0, err
				}
				if v != v {
					return p, 0, fmt.Errorf("%w: %s is NaN", accel.ErrInvalid, pa.name)
				}
				if i == 0 {
					p.Alpha = v
				} else {
					p.Beta = v
				}
			}
			return p, c.rank[st.in[0]], nil
		},
		plan: func(p accel.UnaryParams, in [][]int) (nodePlan, error) {
			c, err := plan1(accel.Unary, p, []int{0}, tensorShape(in[0]))
			if err != nil {
				return nodePlan{}, err
			}
			return nodePlan{out: in[0], calls: []opCall{c}}, nil
		},
	})
}

// sameRank compiles an op without attributes whose output has its input's
// rank.
func sameRank(c *compiler, st *step, _ attrs) (none, int, error) {
	return none{}, c.rank[st.in[0]], nil
}

func compileGemm(c *compiler, st *step, a attrs) (accel.MatMulParams, int, error) {
	var p accel.MatMulParams
	alpha, err := a.float("alpha", 1)
	if err != nil {
		return p, 0, err
	}
	beta, err := a.float("beta", 1)
	if err != nil {
		return p, 0, err
	}
	if p.TransA, err = a.bool("transA"); err != nil {
		return p, 0, err
	}
	if p.TransB, err = a.bool("transB"); err != nil {
		return p, 0, err
	}
	hasC := len(st.in) == 3 && st.in[2] != ""
	switch {
	case alpha != 1:
		return p, 0, fmt.Errorf("alpha %v is %w (only 1)", alpha, accel.ErrUnsupported)
	case hasC && beta != 1:
		return p, 0, fmt.Errorf("beta %v is %w (only 1)", beta, accel.ErrUnsupported)
	case c.knownRank(st.in[0], 2) || c.knownRank(st.in[1], 2):
		return p, 0, fmt.Errorf("%w: gemm needs 2-d inputs A and B", accel.ErrShape)
	case hasC && c.rank[st.in[2]] > 2:
		return p, 0, fmt.Errorf("%w: gemm's C of rank %d", accel.ErrShape, c.rank[st.in[2]])
	}
	return p, 2, nil
}

// convParams are a Conv node's attributes.
type convParams struct {
	conv   accel.Conv2DParams
	kernel []int // kernel_shape, nil when not given
}

func compileConv(c *compiler, st *step, a attrs) (convParams, int, error) {
	var p convParams
	if c.knownRank(st.in[0], 4) || c.knownRank(st.in[1], 4) {
		return p, 0, fmt.Errorf("input X of rank %d with weights of rank %d is %w (only 2-d convolution)", c.rank[st.in[0]], c.rank[st.in[1]], accel.ErrUnsupported)
	}
	if len(st.in) == 3 && st.in[2] != "" && c.knownRank(st.in[2], 1) {
		return p, 0, fmt.Errorf("%w: bias must be 1-d, got rank %d", accel.ErrShape, c.rank[st.in[2]])
	}
	if err := a.noAutoPad(); err != nil {
		return p, 0, err
	}
	kernel, err := a.ints("kernel_shape", 2, nil, 1)
	if err != nil {
		return p, 0, err
	}
	strides, err := a.ints("strides", 2, []int{1, 1}, 1)
	if err != nil {
		return p, 0, err
	}
	dil, err := a.ints("dilations", 2, []int{1, 1}, 1)
	if err != nil {
		return p, 0, err
	}
	pads, err := a.ints("pads", 4, []int{0, 0, 0, 0}, 0)
	if err != nil {
		return p, 0, err
	}
	group, err := a.int("group", 1)
	if err != nil {
		return p, 0, err
	}
	if group < 1 || group > accel.MaxElements {
		return p, 0, fmt.Errorf("%w: group %d", accel.ErrInvalid, group)
	}
	if w, ok := c.inits[st.in[1]]; ok && kernel != nil && (w.Dims[2] != int64(kernel[0]) || w.Dims[3] != int64(kernel[1])) {
		return p, 0, fmt.Errorf("%w: kernel_shape %v does not match weights %v", accel.ErrShape, kernel, w.Dims)
	}
	// ONNX orders pads as x1_begin, x2_begin, x1_end, x2_end.
	p.conv = accel.Conv2DParams{
		StrideH: strides[0], StrideW: strides[1],
		PadTop: pads[0], PadLeft: pads[1], PadBottom: pads[2], PadRight: pads[3],
		DilationH: dil[0], DilationW: dil[1],
		Groups: int(group),
	}
	p.kernel = kernel
	return p, 4, nil
}

func compileMaxPool(c *compiler, st *step, a attrs) (accel.Pool2DParams, int, error) {
	var p accel.Pool2DParams
	if c.knownRank(st.in[0], 4) {
		return p, 0, fmt.Errorf("input of rank %d is %w (only 2-d pooling)", c.rank[st.in[0]], accel.ErrUnsupported)
	}
	if err := a.noAutoPad(); err != nil {
		return p, 0, err
	}
	for _, name := range []string{"ceil_mode", "storage_order"} {
		v, err := a.int(name, 0)
		if err != nil {
			return p, 0, err
		}
		if v != 0 {
			return p, 0, fmt.Errorf("%s %d is %w (only 0)", name, v, accel.ErrUnsupported)
		}
	}
	dil, err := a.ints("dilations", 2, []int{1, 1}, 1)
	if err != nil {
		return p, 0, err
	}
	if dil[0] != 1 || dil[1] != 1 {
		return p, 0, fmt.Errorf("dilations %v are %w (only 1)", dil, accel.ErrUnsupported)
	}
	kernel, err := a.ints("kernel_shape", 2, nil, 1)
	if err != nil {
		return p, 0, err
	}
	if kernel == nil {
		return p, 0, fmt.Errorf("%w: kernel_shape is required", accel.ErrInvalid)
	}
	strides, err := a.ints("strides", 2, []int{1, 1}, 1)
	if err != nil {
		return p, 0, err
	}
	pads, err := a.ints("pads", 4, []int{0, 0, 0, 0}, 0)
	if err != nil {
		return p, 0, err
	}
	p = accel.Pool2DParams{
		KernelH: kernel[0], KernelW: kernel[1],
		StrideH: strides[0], StrideW: strides[1],
		PadTop: pads[0], PadLeft: pads[1], PadBottom: pads[2], PadRight: pads[3],
	}
	return p, 4, nil
}

// compileAdd decides which operand of an Add may be the bias: when exactly
// one is an initializer, only it. It returns that operand's index, or -1
// when either may be.
func compileAdd(c *compiler, st *step, _ attrs) (int, int, error) {
	_, rank, _ := compileBinary(c, st, attrs{})
	_, init0 := c.inits[st.in[0]]
	_, init1 := c.inits[st.in[1]]
	switch {
	case init0 == init1:
		return -1, rank, nil
	case init0:
		return 0, rank, nil
	}
	return 1, rank, nil
}

// compileBinary gives a broadcast's rank: the larger of its operands'.
func compileBinary(c *compiler, st *step, _ attrs) (none, int, error) {
	r0, r1 := c.rank[st.in[0]], c.rank[st.in[1]]
	if r0 < 0 || r1 < 0 {
		return none{}, -1, nil
	}
	return none{}, max(r0, r1), nil
}

// binaryOp is an ONNX op that is one binary function, with NumPy's
// broadcasting.
func binaryOp(f accel.BinaryFunc) *onnxOp {
	return define(rule[none]{
		minIn: 2, maxIn: 2,
		compile: compileBinary,
		plan:    func(_ none, in [][]int) (nodePlan, error) { return planBinary(f, in) },
	})
}

// planBinary plans a binary call on two values of any shapes that
// broadcast; a scalar is a [1] tensor, and the output a scalar where both
// are.
func planBinary(f accel.BinaryFunc, in [][]int) (nodePlan, error) {
	c, err := plan1(accel.Binary, accel.BinaryParams{Func: f}, []int{0, 1}, tensorShape(in[0]), tensorShape(in[1]))
	if err != nil {
		return nodePlan{}, err
	}
	out := c.out[0]
	if len(in[0]) == 0 && len(in[1]) == 0 {
		out = []int{}
	}
	return nodePlan{out: out, calls: []opCall{c}}, nil
}

func compileClip(c *compiler, st *step, a attrs) (accel.ClipParams, int, error) {
	p := accel.ClipParams{Min: -math.MaxFloat32, Max: math.MaxFloat32}
	if c.opset > 0 && c.opset < 11 {
		var err error
		if p.Min, err = a.float("min", p.Min); err != nil {
			return p, 0, err
		}
		if p.Max, err = a.float("max", p.Max); err != nil {
			return p, 0, err
		}
		if len(st.consts) > 0 {
			return p, 0, fmt.Errorf("%w: before opset 11 Clip takes one input, its bounds as attributes", accel.ErrInvalid)
		}
	} else {
		if len(a.n.Attrs) > 0 {
			return p, 0, fmt.Errorf("attribute %q is %w from opset 11 on (bounds are inputs)", a.n.Attrs[0].Name, accel.ErrUnsupported)
		}
		for i, name := range st.consts {
			if name == "" {
				continue
			}
			t, ok := c.inits[name]
			if !ok {
				return p, 0, fmt.Errorf("bound %q that is not a constant (an initializer or a Constant node) is %w", name, accel.ErrUnsupported)
			}
			if t.DataType != onnx.Float || len(t.Floats) != 1 || len(t.Dims) > 1 {
				return p, 0, fmt.Errorf("%w: bound %q must be one FLOAT, got element type %d and dims %v", accel.ErrInvalid, name, t.DataType, t.Dims)
			}
			if i == 0 {
				p.Min = t.Floats[0]
			} else {
				p.Max = t.Floats[0]
			}
		}
	}
	if p.Min != p.Min || p.Max != p.Max {
		return p, 0, fmt.Errorf("%w: bounds must not be NaN: min %g, max %g", accel.ErrInvalid, p.Min, p.Max)
	}
	return p, c.rank[st.in[0]], nil
}

func compileReshape(c *compiler, st *step, a attrs) ([]int64, int, error) {
	t, ok := c.inits[st.consts[0]]
	if !ok || t.DataType != onnx.Int64 {
		return nil, 0, fmt.Errorf("shape %q that is not an int64 initializer is %w", st.consts[0], accel.ErrUnsupported)
	}
	if len(t.Dims) != 1 || len(t.Int64s) < 1 || len(t.Int64s) > accel.MaxRank {
		return nil, 0, fmt.Errorf("shape %q of dims %v is %w (rank 1 to %d)", t.Name, t.Dims, accel.ErrUnsupported, accel.MaxRank)
	}
	allowZero, err := a.int("allowzero", 0)
	if err != nil {
		return nil, 0, err
	}
	inferred := 0
	for _, d := range t.Int64s {
		switch {
		case d == 0 && allowZero != 0:
			return nil, 0, fmt.Errorf("allowzero with a 0 in shape %v is %w (no empty tensors)", t.Int64s, accel.ErrUnsupported)
		case d == -1:
			inferred++
		case d < -1 || d > accel.MaxElements:
			return nil, 0, fmt.Errorf("%w: shape %v", accel.ErrInvalid, t.Int64s)
		}
	}
	if inferred > 1 {
		return nil, 0, fmt.Errorf("%w: shape %v has more than one -1", accel.ErrInvalid, t.Int64s)
	}
	if r := c.rank[st.in[0]]; r >= 0 {
		for i, d := range t.Int64s {
			if d == 0 && i >= r {
				return nil, 0, fmt.Errorf("%w: shape %v copies a dimension the rank-%d input lacks", accel.ErrShape, t.Int64s, r)
			}
		}
	}
	return slices.Clone(t.Int64s), len(t.Int64s), nil
}

// softmaxParams are a Softmax node's axis, and whether it flattens the
// input to 2-d there (before opset 13) rather than normalising along it.
type softmaxParams struct {
	axis    int
	flatten bool
}

// softmaxAxis checks that axis is an axis of rank r.
func softmaxAxis(axis, r int) error {
	if axis < -r || axis >= r {
		return fmt.Errorf("%w: axis %d outside rank %d", accel.ErrInvalid, axis, r)
	}
	return nil
}

// biasAxis reports whether b, aligned to the trailing axes of x as numpy
// broadcasting does, varies along one axis of x at most and matches it
// there, and returns that axis.
func biasAxis(x, b []int) (int, bool) {
	off := len(x) - len(b)
	if off < 0 {
		return 0, false
	}
	axis, single := -1, -1
	for j, d := range b {
		xd := x[off+j]
		switch {
		case d == 1 && xd == 1:
			single = off + j
		case d == 1:
			// broadcast along this axis
		case d != xd || axis >= 0:
			return 0, false
		default:
			axis = off + j
		}
	}
	if axis < 0 {
		axis = single // a one-element b adds along an axis of size 1
	}
	return axis, axis >= 0
}

// reshapeDims resolves an ONNX Reshape shape (0 copies a dimension, -1 is
// inferred) against the input's shape.
func reshapeDims(in []int, shape []int64) ([]int, error) {
	out := make([]int, len(shape))
	inferred := -1
	known := 1
	for i, d := range shape {
		switch {
		case d == 0:
			if i >= len(in) {
				return nil, fmt.Errorf("%w: shape %v copies dimension %d of %s", accel.ErrShape, shape, i, accel.ShapeString(in))
			}
			out[i] = in[i]
		case d == -1:
			inferred = i
			continue
		default:
			out[i] = int(d)
		}
		if known > accel.MaxElements/out[i] {
			return nil, fmt.Errorf("%w: shape %v", accel.ErrOverflow, shape)
		}
		known *= out[i]
	}
	n := product(in)
	if inferred >= 0 {
		if n%known != 0 {
			return nil, fmt.Errorf("%w: cannot reshape %s to %v", accel.ErrShape, accel.ShapeString(in), shape)
		}
		out[inferred] = n / known
	}
	if product(out) != n {
		return nil, fmt.Errorf("%w: cannot reshape %s to %v", accel.ErrShape, accel.ShapeString(in), shape)
	}
	return out, nil
}

func product(d []int) int {
	n := 1
	for _, x := range d {
		n *= x
	}
	return n
}
