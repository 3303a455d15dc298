package accel_test

// Fuzz targets for what the guest ABI hands the accel core: parameter words
// (Op.DecodeParams), shapes (NumElements), shape rules (Op.Shapes, with
// Op.Units) and t-SNE's CSR index data (checked by the Session before a
// kernel reads it). Each asserts what must hold for every input. The seed
// corpora in testdata/fuzz run as regression cases under plain go test.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ref"
)

// fuzzRef is the reference backend every fuzz target computes on. One
// thread keeps an iteration cheap and its work reproducible.
var fuzzRef = ref.New(1)

// fuzzOp picks an operation by index, so that every byte names one.
func fuzzOp(i uint8) *accel.Op {
	ops := accel.Ops()
	return ops[int(i)%len(ops)]
}

// fuzzU32s reads little-endian u32 words; a trailing partial word is dropped.
func fuzzU32s(b []byte) []uint32 {
	w := make([]uint32, len(b)/4)
	for i := range w {
		w[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return w
}

// fuzzI32s reads little-endian i32 words.
func fuzzI32s(b []byte) []int32 {
	w := make([]int32, len(b)/4)
	for i := range w {
		w[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return w
}

// wrapsOneOf reports whether err wraps one of targets.
func wrapsOneOf(err error, targets ...error) bool {
	for _, target := range targets {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// Big-integer arithmetic for the oracles, which must not share the
// overflow behaviour of the code they check.

// bigProd is the product of xs.
func bigProd(xs ...int) *big.Int {
	r := big.NewInt(1)
	for _, x := range xs {
		r.Mul(r, big.NewInt(int64(x)))
	}
	return r
}

// bigSum is the sum of xs.
func bigSum(xs ...*big.Int) *big.Int {
	r := new(big.Int)
	for _, x := range xs {
		r.Add(r, x)
	}
	return r
}

// bigMul is the product of xs.
func bigMul(xs ...*big.Int) *big.Int {
	r := big.NewInt(1)
	for _, x := range xs {
		r.Mul(r, x)
	}
	return r
}

var (
	bigMaxElements = big.NewInt(accel.MaxElements)
	bigMaxUint64   = new(big.Int).SetUint64(math.MaxUint64)
)

// ---- NumElements ------------------------------------------------------------

// fuzzDims reads a shape of little-endian i64 dimensions, at most two more
// than MaxRank so that ranks past the limit are tried.
func fuzzDims(b []byte) []int {
	shape := make([]int, min(len(b)/8, accel.MaxRank+2))
	for i := range shape {
		shape[i] = int(int64(binary.LittleEndian.Uint64(b[8*i:])))
	}
	return shape
}

// FuzzNumElements checks NumElements on any shape: it accepts exactly the
// shapes of rank 1 to MaxRank whose dimensions are at least 1 and whose
// product is at most MaxElements, returns that product, and refuses the
// rest with ErrInvalid (the rank, a dimension below 1) or ErrOverflow (the
// product, computed here without bounds; with a dimension below 1 as well,
// either error).
func FuzzNumElements(f *testing.F) {
	f.Fuzz(func(t *testing.T, dims []byte) {
		shape := fuzzDims(dims)
		n, err := accel.NumElements(shape)

		rankOK := len(shape) >= 1 && len(shape) <= accel.MaxRank
		prod, positive := big.NewInt(1), true // the product of the dimensions at least 1
		for _, d := range shape {
			if d < 1 {
				positive = false
				continue
			}
			prod.Mul(prod, big.NewInt(int64(d)))
		}
		overflows := prod.Cmp(bigMaxElements) > 0

		switch {
		case rankOK && positive && !overflows:
			if err != nil || int64(n) != prod.Int64() {
				t.Fatalf("NumElements(%v) = %d, %v; want %s", shape, n, err, prod)
			}
		case err == nil:
			t.Fatalf("NumElements(%v) = %d, accepted: rank %d, every dimension at least 1: %v, product %s (limit %d)",
				shape, n, len(shape), positive, prod, accel.MaxElements)
		case !rankOK || !overflows:
			if !errors.Is(err, accel.ErrInvalid) {
				t.Fatalf("NumElements(%v): %v, want ErrInvalid", shape, err)
			}
		case positive:
			if !errors.Is(err, accel.ErrOverflow) {
				t.Fatalf("NumElements(%v): %v, want ErrOverflow", shape, err)
			}
		default: // a dimension below 1 and a product past the limit: either
			if !wrapsOneOf(err, accel.ErrInvalid, accel.ErrOverflow) {
				t.Fatalf("NumElements(%v): %v, want ErrInvalid or ErrOverflow", shape, err)
			}
		}
	})
}

// ---- DecodeParams -----------------------------------------------------------

// oneIfZero is the ABI's reading of a count where 0 means 1.
func oneIfZero(v uint32) int {
	if v == 0 {
		return 1
	}
	return int(v)
}

// decodeSpec is docs/abi.md's reading of each operation's parameter words
// (given the right number of them): the parameters they mean, or false
// where the words are invalid. Every operation needs an entry.
var decodeSpec = map[string]func(w []uint32) (any, bool){
	"matmul": func(w []uint32) (any, bool) {
		if w[0]&^3 != 0 {
			return nil, false
		}
		return accel.MatMulParams{TransA: w[0]&1 != 0, TransB: w[0]&2 != 0}, true
	},
	"conv2d":    func(w []uint32) (any, bool) { return specConv2D(w), true },
	"add_bias":  func(w []uint32) (any, bool) { return accel.AddBiasParams{Axis: int(w[0])}, true },
	"relu":      func([]uint32) (any, bool) { return accel.NoParams{}, true },
	"maxpool2d": func(w []uint32) (any, bool) { return specPool2D(w), true },
	"softmax":   func([]uint32) (any, bool) { return accel.NoParams{}, true },
	"tsne_step": func(w []uint32) (any, bool) {
		if w[4]&^3 != 0 {
			return nil, false
		}
		p := accel.TSNEParams{
			LearningRate: math.Float32frombits(w[0]), Momentum: math.Float32frombits(w[1]),
			Exaggeration: math.Float32frombits(w[2]), MinGain: math.Float32frombits(w[3]),
			ComputeKL: w[4]&1 != 0,
		}
		if w[4]&2 != 0 { // theta is read only under its flag
			p.Theta = math.Float32frombits(w[5])
		}
		return p, true
	},
	"tsne_affinities": func(w []uint32) (any, bool) {
		if w[1] != 0 {
			return nil, false
		}
		return accel.TSNEAffinitiesParams{Perplexity: math.Float32frombits(w[0])}, true
	},
	"embedding_quality": func(w []uint32) (any, bool) {
		if w[0] > accel.MaxElements {
			return nil, false
		}
		return accel.EmbeddingQualityParams{K: int(w[0])}, true
	},
	"add": func([]uint32) (any, bool) { return accel.NoParams{}, true },
	"clip": func(w []uint32) (any, bool) {
		return accel.ClipParams{Min: math.Float32frombits(w[0]), Max: math.Float32frombits(w[1])}, true
	},
	"global_avgpool": func([]uint32) (any, bool) { return accel.NoParams{}, true },
	"binary":         func(w []uint32) (any, bool) { return accel.BinaryParams{Func: accel.BinaryFunc(w[0])}, true },
	"transpose":      func(w []uint32) (any, bool) { return accel.TransposeParams{Perm: w[0]}, true },
	"concat": func(w []uint32) (any, bool) {
		if w[0] >= 8 {
			return nil, false
		}
		return accel.ConcatParams{Axis: int(w[0])}, true
	},
	"slice": func(w []uint32) (any, bool) {
		// The rank, then eight starts (i32), steps (i32) and counts; the
		// axes past the rank all zero, the others' counts 1 to MaxElements.
		rank := int(w[0])
		if rank < 1 || rank > 8 {
			return nil, false
		}
		p := accel.SliceParams{Rank: rank}
		for i := range 8 {
			start, step, count := w[1+i], w[9+i], w[17+i]
			if i >= rank && start|step|count != 0 || i < rank && (count < 1 || count > accel.MaxElements) {
				return nil, false
			}
			p.Start[i], p.Step[i], p.Count[i] = int(int32(start)), int(int32(step)), int(count)
		}
		return p, true
	},
	"gather": func(w []uint32) (any, bool) {
		if w[0] >= 8 {
			return nil, false
		}
		return accel.GatherParams{Axis: int(w[0])}, true
	},
	"batch_matmul": func([]uint32) (any, bool) { return accel.NoParams{}, true },
	"layer_norm": func(w []uint32) (any, bool) {
		if w[0] > 8 {
			return nil, false
		}
		return accel.LayerNormParams{Axis: int(w[0]), Epsilon: math.Float32frombits(w[1])}, true
	},
	"unary": func(w []uint32) (any, bool) {
		return accel.UnaryParams{Func: accel.UnaryFunc(w[0]), Alpha: math.Float32frombits(w[1]), Beta: math.Float32frombits(w[2])}, true
	},
	"conv2d_backward_data": func(w []uint32) (any, bool) {
		return accel.Conv2DBackwardDataParams{Conv2DParams: specConv2D(w), InputH: int(w[9]), InputW: int(w[10])}, true
	},
	"conv2d_backward_filter": func(w []uint32) (any, bool) {
		return accel.Conv2DBackwardFilterParams{Conv2DParams: specConv2D(w), KernelH: int(w[9]), KernelW: int(w[10])}, true
	},
	"maxpool2d_backward":    func(w []uint32) (any, bool) { return specPool2D(w), true },
	"relu_backward":         func([]uint32) (any, bool) { return accel.NoParams{}, true },
	"reduce_sum":            func(w []uint32) (any, bool) { return accel.ReduceSumParams{Axes: w[0]}, true },
	"softmax_cross_entropy": func([]uint32) (any, bool) { return accel.NoParams{}, true },
	"sgd_momentum": func(w []uint32) (any, bool) {
		return accel.SGDParams{LearningRate: math.Float32frombits(w[0]), Momentum: math.Float32frombits(w[1])}, true
	},
	"adam": func(w []uint32) (any, bool) {
		f := func(i int) float32 { return math.Float32frombits(w[i]) }
		return accel.AdamParams{LearningRate: f(0), Beta1: f(1), Beta2: f(2), Epsilon: f(3), Correction1: f(4), Correction2: f(5)}, true
	},
}

// specConv2D reads a convolution's nine words as docs/abi.md says.
func specConv2D(w []uint32) accel.Conv2DParams {
	return accel.Conv2DParams{
		StrideH: oneIfZero(w[0]), StrideW: oneIfZero(w[1]),
		PadTop: int(w[2]), PadLeft: int(w[3]), PadBottom: int(w[4]), PadRight: int(w[5]),
		DilationH: oneIfZero(w[6]), DilationW: oneIfZero(w[7]), Groups: oneIfZero(w[8]),
	}
}

// specPool2D reads a pooling window's eight words as docs/abi.md says.
func specPool2D(w []uint32) accel.Pool2DParams {
	return accel.Pool2DParams{
		KernelH: int(w[0]), KernelW: int(w[1]), StrideH: oneIfZero(w[2]), StrideW: oneIfZero(w[3]),
		PadTop: int(w[4]), PadLeft: int(w[5]), PadBottom: int(w[6]), PadRight: int(w[7]),
	}
}

// sameParams compares decoded parameters, floats by their bits so that a
// NaN must keep its payload.
func sameParams(a, b any) bool {
	switch pa := a.(type) {
	case accel.SGDParams, accel.AdamParams, accel.TSNEAffinitiesParams, accel.ClipParams:
		return floatBits(pa) == floatBits(b)
	case accel.UnaryParams:
		pb, ok := b.(accel.UnaryParams)
		return ok && pa.Func == pb.Func && math.Float32bits(pa.Alpha) == math.Float32bits(pb.Alpha) &&
			math.Float32bits(pa.Beta) == math.Float32bits(pb.Beta)
	case accel.LayerNormParams:
		pb, ok := b.(accel.LayerNormParams)
		return ok && pa.Axis == pb.Axis && math.Float32bits(pa.Epsilon) == math.Float32bits(pb.Epsilon)
	}
	ta, ok := a.(accel.TSNEParams)
	tb, ok2 := b.(accel.TSNEParams)
	if !ok || !ok2 {
		return a == b
	}
	bits := func(p accel.TSNEParams) [5]uint32 {
		return [5]uint32{math.Float32bits(p.LearningRate), math.Float32bits(p.Momentum),
			math.Float32bits(p.Exaggeration), math.Float32bits(p.MinGain), math.Float32bits(p.Theta)}
	}
	return bits(ta) == bits(tb) && ta.ComputeKL == tb.ComputeKL
}

// floatBits lists the bits of a struct's float32 fields, so that two
// structs compare equal exactly when every float has the same bits.
func floatBits(p any) string {
	v := reflect.ValueOf(p)
	var s []string
	for i := range v.NumField() {
		s = append(s, fmt.Sprintf("%#x", math.Float32bits(float32(v.Field(i).Float()))))
	}
	return v.Type().Name() + strings.Join(s, ",")
}

// exampleShapes are input shapes each operation accepts with zero words,
// for trying decoded parameters on.
var exampleShapes = map[string][][]int{
	"matmul":    {{2, 3}, {3, 4}},
	"conv2d":    {{1, 2, 5, 5}, {4, 2, 3, 3}, {4}},
	"add_bias":  {{2, 3}, {2}},
	"relu":      {{2, 3}},
	"maxpool2d": {{1, 2, 5, 5}},
	"softmax":   {{2, 3}},
	"tsne_step": {{4}, {4}, {4}, {3, 2}, {3, 2}, {3, 2}},
	"add":       {{2, 3}, {2, 3}},

	"clip":           {{2, 3}},
	"global_avgpool": {{2, 3, 4, 5}},
	"unary":          {{2, 3}},
	"binary":         {{2, 3}, {3}},
	"transpose":      {{2, 3}},
	"concat":         {{2, 3}, {2, 3}},
	"slice":          {{2, 3}},
	"gather":         {{2, 3}, {4}},
	"batch_matmul":   {{2, 2, 3}, {3, 4}},
	"layer_norm":     {{2, 3}, {3}, {3}},

	"tsne_affinities":   {{5, 3}},
	"embedding_quality": {{5, 3}, {5, 2}, {5}},

	"conv2d_backward_data":   {{1, 4, 3, 3}, {4, 2, 3, 3}},
	"conv2d_backward_filter": {{1, 2, 5, 5}, {1, 4, 3, 3}},
	"maxpool2d_backward":     {{1, 2, 5, 5}, {1, 2, 5, 5}},
	"relu_backward":          {{2, 3}, {2, 3}},
	"reduce_sum":             {{2, 3, 4}},
	"softmax_cross_entropy":  {{2, 3}, {2}},
	"sgd_momentum":           {{2, 3}, {2, 3}, {2, 3}},
	"adam":                   {{2, 3}, {2, 3}, {2, 3}, {2, 3}},
}

// FuzzDecodeParams checks each operation's decoding of any parameter
// words: a wrong number of words is ErrInvalid; the right number decodes
// as docs/abi.md says (0 read as 1 where it says so, unknown flag bits
// refused with ErrInvalid, floats bit for bit); and what decodes is of the
// op's own type, which its shape rule accepts or refuses with a sentinel
// and its cost formula prices without panicking.
func FuzzDecodeParams(f *testing.F) {
	f.Fuzz(func(t *testing.T, opIndex uint8, words []byte) {
		op := fuzzOp(opIndex)
		spec, ok := decodeSpec[op.Name]
		examples, ok2 := exampleShapes[op.Name]
		if !ok || !ok2 {
			t.Fatalf("%s has no decoding oracle or example shapes in this test", op)
		}
		w := fuzzU32s(words)
		p, err := op.DecodeParams(w)
		if len(w) != len(op.ParamWords) {
			if !errors.Is(err, accel.ErrInvalid) || p != nil {
				t.Fatalf("%s.DecodeParams(%d words, want %d) = %#v, %v; want ErrInvalid", op, len(w), len(op.ParamWords), p, err)
			}
			return
		}
		want, valid := spec(w)
		switch {
		case !valid:
			if !errors.Is(err, accel.ErrInvalid) {
				t.Fatalf("%s.DecodeParams(%#x) = %#v, %v; want ErrInvalid", op, w, p, err)
			}
			return
		case err != nil || !sameParams(p, want):
			t.Fatalf("%s.DecodeParams(%#x) = %#v, %v; want %#v", op, w, p, err, want)
		}
		out, err := op.Shapes(examples, p)
		if err != nil {
			if !wrapsOneOf(err, accel.ErrInvalid, accel.ErrShape, accel.ErrOverflow) {
				t.Fatalf("%s.Shapes(%v, %+v): %v, which wraps no sentinel", op, examples, p, err)
			}
			return
		}
		if len(out) != len(op.Outputs) {
			t.Fatalf("%s.Shapes(%v, %+v) gave %d outputs, want %d", op, examples, p, len(out), len(op.Outputs))
		}
		op.Units(examples, out, p)
		if tp, ok := p.(accel.TSNEParams); ok && op.WantsScalar(p) != tp.ComputeKL {
			t.Fatalf("%s.WantsScalar(%+v) = %v", op, p, op.WantsScalar(p))
		}
	})
}

// ---- Shapes and Units -------------------------------------------------------

// fuzzShapes reads one shape per input of op: a rank byte (mod 10; 9 is an
// absent input) and that many little-endian i32 dimensions. Missing bytes
// read as rank 1 and dimension 1.
func fuzzShapes(op *accel.Op, b []byte) [][]int {
	in := make([][]int, len(op.Inputs))
	for i := range in {
		rank := 1
		if len(b) > 0 {
			rank, b = int(b[0]%10), b[1:]
		}
		if rank == 9 {
			continue
		}
		in[i] = make([]int, rank)
		for j := range in[i] {
			in[i][j] = 1
			if len(b) >= 4 {
				in[i][j], b = int(int32(binary.LittleEndian.Uint32(b))), b[4:]
			}
		}
	}
	return in
}

// verdict is what the documentation says of a call's shapes and
// parameters.
type verdict int

const (
	accept verdict = iota
	refuse
	// either: the documents leave it to the implementation, as for window
	// parameters larger than any tensor can be.
	either
)

// shapeSpec is an operation's shape rule and cost as docs/abi.md and
// docs/determinism.md give them, for inputs that are tensors' shapes (nil
// for an absent optional input, which the callers have checked is
// optional).
type shapeSpec struct {
	// rule gives the output shapes, and whether the call is valid; the
	// outputs' element limit is checked apart.
	rule func(in [][]int, p any) ([][]int, verdict)
	// units is the exact cost, in arbitrary precision, of a valid call.
	units func(in, out [][]int, p any) *big.Int
}

// windowCount is the number of positions of a dilated window along a
// padded axis, or false when it does not fit.
func windowCount(size, kernel, stride, dilation, padLo, padHi int) (int, bool) {
	span, padded := dilation*(kernel-1)+1, size+padLo+padHi
	return (padded-span)/stride + 1, span <= padded
}

// beyondTensors reports whether any of vs exceeds every dimension a
// tensor can have.
func beyondTensors(vs ...int) bool {
	return slices.ContainsFunc(vs, func(v int) bool { return v > accel.MaxElements })
}

// elementwise is the spec of an operation whose output is shaped as its
// first input, costing 64 plus perElement units per element of it.
func elementwise(perElement int) shapeSpec {
	return shapeSpec{
		rule: func(in [][]int, _ any) ([][]int, verdict) { return [][]int{in[0]}, accept },
		units: func(in, _ [][]int, _ any) *big.Int {
			return bigSum(big.NewInt(64), bigProd(append([]int{perElement}, in[0]...)...))
		},
	}
}

// matMulDims reads M, K and N off the operands' shapes and flags, and
// whether the inner dimensions agree.
func matMulDims(in [][]int, p accel.MatMulParams) (m, k, n int, ok bool) {
	a, b := in[0], in[1]
	m, k = a[0], a[1]
	if p.TransA {
		m, k = k, m
	}
	kb, n := b[0], b[1]
	if p.TransB {
		kb, n = n, kb
	}
	return m, k, n, k == kb
}

func validIf(ok bool) verdict {
	if ok {
		return accept
	}
	return refuse
}

var shapeSpecs = map[string]shapeSpec{
	"matmul": {
		rule: func(in [][]int, p any) ([][]int, verdict) {
			if len(in[0]) != 2 || len(in[1]) != 2 {
				return nil, refuse
			}
			m, _, n, fit := matMulDims(in, p.(accel.MatMulParams))
			return [][]int{{m, n}}, validIf(fit)
		},
		units: func(in, _ [][]int, p any) *big.Int {
			m, k, n, _ := matMulDims(in, p.(accel.MatMulParams))
			return bigSum(big.NewInt(64), bigProd(2, m, n, k), bigProd(4, m, k), bigProd(4, k, n), bigProd(4, m, n))
		},
	},
	"conv2d": {
		rule: func(in [][]int, p any) ([][]int, verdict) {
			x, w, bias, c := in[0], in[1], in[2], p.(accel.Conv2DParams)
			if len(x) != 4 || len(w) != 4 {
				return nil, refuse
			}
			g := c.Groups
			if x[1]%g != 0 || w[0]%g != 0 || w[1] != x[1]/g || (bias != nil && !slices.Equal(bias, []int{w[0]})) {
				return nil, refuse
			}
			if beyondTensors(c.StrideH, c.StrideW, c.DilationH, c.DilationW, c.PadTop, c.PadLeft, c.PadBottom, c.PadRight) {
				return nil, either
			}
			oh, fitH := windowCount(x[2], w[2], c.StrideH, c.DilationH, c.PadTop, c.PadBottom)
			ow, fitW := windowCount(x[3], w[3], c.StrideW, c.DilationW, c.PadLeft, c.PadRight)
			return [][]int{{x[0], w[0], oh, ow}}, validIf(fitH && fitW)
		},
		units: func(in, out [][]int, p any) *big.Int {
			x, w, y, g := in[0], in[1], out[0], p.(accel.Conv2DParams).Groups
			u := bigSum(big.NewInt(64), bigMul(bigProd(2), bigProd(y...), bigProd(x[1]/g, w[2], w[3])),
				bigProd(append([]int{4}, x...)...), bigProd(append([]int{4}, w...)...), bigProd(append([]int{4}, y...)...))
			if in[2] != nil {
				u = bigSum(u, bigProd(y...), bigProd(4, w[0]))
			}
			return u
		},
	},
	"add_bias": {
		rule: func(in [][]int, p any) ([][]int, verdict) {
			x, axis := in[0], p.(accel.AddBiasParams).Axis
			return [][]int{x}, validIf(axis >= 0 && axis < len(x) && slices.Equal(in[1], []int{x[axis]}))
		},
		units: func(in, _ [][]int, _ any) *big.Int {
			return bigSum(big.NewInt(64), bigProd(append([]int{9}, in[0]...)...), bigProd(append([]int{4}, in[1]...)...))
		},
	},
	"relu": elementwise(1 + 8),
	"maxpool2d": {
		rule: func(in [][]int, p any) ([][]int, verdict) {
			x, q := in[0], p.(accel.Pool2DParams)
			if len(x) != 4 || q.KernelH < 1 || q.KernelW < 1 ||
				q.PadTop >= q.KernelH || q.PadBottom >= q.KernelH || q.PadLeft >= q.KernelW || q.PadRight >= q.KernelW ||
				q.PadTop > x[2] || q.PadBottom > x[2] || q.PadLeft > x[3] || q.PadRight > x[3] {
				return nil, refuse
			}
			if beyondTensors(q.StrideH, q.StrideW) {
				return nil, either
			}
			oh, fitH := windowCount(x[2], q.KernelH, q.StrideH, 1, q.PadTop, q.PadBottom)
			ow, fitW := windowCount(x[3], q.KernelW, q.StrideW, 1, q.PadLeft, q.PadRight)
			return [][]int{{x[0], x[1], oh, ow}}, validIf(fitH && fitW)
		},
		units: func(in, out [][]int, p any) *big.Int {
			q := p.(accel.Pool2DParams)
			return bigSum(big.NewInt(64), bigMul(bigProd(out[0]...), bigProd(q.KernelH, q.KernelW)),
				bigProd(append([]int{4}, in[0]...)...), bigProd(append([]int{4}, out[0]...)...))
		},
	},
	"softmax": elementwise(16 + 8),
	"tsne_step": {
		rule: func(in [][]int, p any) ([][]int, verdict) {
			rowPtr, cols, vals, y, q := in[0], in[1], in[2], in[3], p.(accel.TSNEParams)
			finite := func(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }
			return [][]int{}, validIf(len(y) == 2 && y[1] == 2 && y[0] >= 2 &&
				slices.Equal(in[4], y) && slices.Equal(in[5], y) &&
				slices.Equal(rowPtr, []int{y[0] + 1}) && len(cols) == 1 && slices.Equal(vals, cols) &&
				finite(q.LearningRate) && finite(q.Momentum) && finite(q.Exaggeration) && finite(q.MinGain) &&
				finite(q.Theta) && q.Theta >= 0)
		},
		units: func(in, _ [][]int, p any) *big.Int {
			n, e, q := in[3][0], in[1][0], p.(accel.TSNEParams)
			// The exact step pays for every pair; Barnes-Hut for the cells
			// docs/abi.md charges a point, and the tree.
			repulsion := bigProd(20, n, n-1)
			if q.Theta > 0 {
				cells := n - 1
				if c := math.Ceil(16 * float64(bits.Len(uint(n))) / (float64(q.Theta) * float64(q.Theta))); c < float64(n-1) {
					cells = int(c)
				}
				repulsion = bigSum(bigProd(20, n, cells), bigProd(200, n))
			}
			u := bigSum(big.NewInt(64), repulsion, bigProd(20, e), bigProd(40, n),
				bigProd(4, n+1), bigProd(8, e), bigProd(48, n))
			if q.ComputeKL {
				u = bigSum(u, bigProd(20, e))
			}
			return u
		},
	},
	"tsne_affinities": {
		rule: func(in [][]int, p any) ([][]int, verdict) {
			x, perplexity := in[0], float64(p.(accel.TSNEAffinitiesParams).Perplexity)
			if len(x) != 2 {
				return nil, refuse
			}
			n := x[0]
			if n < 2 || x[1] < 1 || math.IsNaN(perplexity) || perplexity < 1 || perplexity >= float64(n) {
				return nil, refuse
			}
			k := int(min(float64(n-1), math.Floor(3*perplexity)))
			return [][]int{{n + 1}, {2 * n * k}, {2 * n * k}}, accept
		},
		units: func(in, _ [][]int, p any) *big.Int {
			n, d := in[0][0], in[0][1]
			k := int(min(float64(n-1), math.Floor(3*float64(p.(accel.TSNEAffinitiesParams).Perplexity))))
			return bigSum(big.NewInt(64), bigProd(3*d+4, n, n-1), bigProd(3000, n, k), bigProd(32, n, k),
				bigProd(4, n, d), bigProd(4, n+1), bigProd(16, n, k))
		},
	},
	"embedding_quality": {
		rule: func(in [][]int, p any) ([][]int, verdict) {
			x, y, labels, k := in[0], in[1], in[2], p.(accel.EmbeddingQualityParams).K
			if len(x) != 2 || len(y) != 2 || x[0] != y[0] || (labels != nil && !slices.Equal(labels, []int{x[0]})) {
				return nil, refuse
			}
			return [][]int{{2}}, validIf(x[1] >= 1 && y[1] >= 1 && k >= 1 && 2*k < x[0])
		},
		units: func(in, _ [][]int, p any) *big.Int {
			n, d, e, k := in[0][0], in[0][1], in[1][1], p.(accel.EmbeddingQualityParams).K
			return bigSum(big.NewInt(64), bigProd(3*d+3*e+8, n, n-1), bigProd(4, n, k), bigProd(4, n, d+e), big.NewInt(8))
		},
	},
	// add is elementwise over three tensors: one unit per element computed
	// and one per byte moved, as relu over two. docs/abi.md does not list it.
	"add": {
		rule: func(in [][]int, _ any) ([][]int, verdict) { return [][]int{in[0]}, validIf(slices.Equal(in[0], in[1])) },
		units: func(in, _ [][]int, _ any) *big.Int {
			return bigSum(big.NewInt(64), bigProd(append([]int{13}, in[0]...)...))
		},
	},
}

func init() {
	// clip is elementwise over two tensors; its bounds may be anything
	// but NaN (docs/determinism.md).
	shapeSpecs["clip"] = shapeSpec{
		rule: func(in [][]int, p any) ([][]int, verdict) {
			c := p.(accel.ClipParams)
			return [][]int{in[0]}, validIf(c.Min == c.Min && c.Max == c.Max)
		},
		units: elementwise(1 + 8).units,
	}
	// unary is elementwise over two tensors for the twelve functions of
	// docs/abi.md: leaky_relu takes alpha, hard_sigmoid alpha and beta,
	// each not NaN; a parameter not taken is all zero bits.
	shapeSpecs["unary"] = shapeSpec{
		rule: func(in [][]int, p any) ([][]int, verdict) {
			u := p.(accel.UnaryParams)
			if u.Func < 1 || u.Func > 12 {
				return nil, refuse
			}
			takesAlpha := u.Func == 5 || u.Func == 6
			takesBeta := u.Func == 6
			ok := func(v float32, taken bool) bool {
				if taken {
					return v == v
				}
				return math.Float32bits(v) == 0
			}
			return [][]int{in[0]}, validIf(ok(u.Alpha, takesAlpha) && ok(u.Beta, takesBeta))
		},
		units: elementwise(1 + 8).units,
	}
	// binary: the four functions of docs/abi.md, over NumPy's
	// broadcasting, read right to left: a missing axis or a size of 1
	// repeats. An operation per output element, and a, b and y moved.
	shapeSpecs["binary"] = shapeSpec{
		rule: func(in [][]int, p any) ([][]int, verdict) {
			if f := p.(accel.BinaryParams).Func; f < 1 || f > 4 {
				return nil, refuse
			}
			a, b := in[0], in[1]
			out := make([]int, max(len(a), len(b)))
			for i := 1; i <= len(out); i++ {
				da, db := 1, 1
				if i <= len(a) {
					da = a[len(a)-i]
				}
				if i <= len(b) {
					db = b[len(b)-i]
				}
				switch {
				case da == db || db == 1:
					out[len(out)-i] = da
				case da == 1:
					out[len(out)-i] = db
				default:
					return nil, refuse
				}
			}
			return [][]int{out}, accept
		},
		units: func(in, out [][]int, _ any) *big.Int {
			return bigSum(big.NewInt(64), bigProd(append([]int{5}, out[0]...)...), bigProd(append([]int{4}, in[0]...)...), bigProd(append([]int{4}, in[1]...)...))
		},
	}
	// transpose: perm's three-bit fields below the rank are a permutation,
	// and the bits above are zero; a move per element.
	shapeSpecs["transpose"] = shapeSpec{
		rule: func(in [][]int, p any) ([][]int, verdict) {
			perm, x := p.(accel.TransposeParams).Perm, in[0]
			var fields []int
			for i := 0; i < 11; i++ {
				f := int(perm>>(3*i)) & 7
				if i >= len(x) && f != 0 {
					return nil, refuse
				}
				if i < len(x) {
					fields = append(fields, f)
				}
			}
			out := make([]int, len(x))
			used := map[int]bool{}
			for i, f := range fields {
				if f >= len(x) || used[f] {
					return nil, refuse
				}
				used[f] = true
				out[i] = x[f]
			}
			return [][]int{out}, accept
		},
		units: elementwise(1 + 8).units,
	}
	// layer_norm: axis within x's rank, epsilon finite and not negative,
	// scale and bias (where given) of x's shape from axis on; eight
	// operations an element, x and y moved, and scale and bias.
	shapeSpecs["layer_norm"] = shapeSpec{
		rule: func(in [][]int, p any) ([][]int, verdict) {
			ln, x := p.(accel.LayerNormParams), in[0]
			e := float64(ln.Epsilon)
			if ln.Axis >= len(x) || math.IsNaN(e) || e < 0 || math.IsInf(e, 0) {
				return nil, refuse
			}
			for _, s := range in[1:] {
				if s != nil && !slices.Equal(s, x[ln.Axis:]) {
					return nil, refuse
				}
			}
			return [][]int{x}, accept
		},
		units: func(in, _ [][]int, _ any) *big.Int {
			return bigSum(big.NewInt(64), bigProd(append([]int{16}, in[0]...)...), bigProd(append([]int{8}, in[1]...)...))
		},
	}
	// batch_matmul: two operands of rank 2 or more, the inner sizes
	// equal, the leading axes broadcast (binary's rule); each product
	// costs a matmul's units less the call's.
	shapeSpecs["batch_matmul"] = shapeSpec{
		rule: func(in [][]int, p any) ([][]int, verdict) {
			a, b := in[0], in[1]
			if len(a) < 2 || len(b) < 2 || a[len(a)-1] != b[len(b)-2] {
				return nil, refuse
			}
			batch, v := shapeSpecs["binary"].rule([][]int{a[:len(a)-2], b[:len(b)-2]}, accel.BinaryParams{Func: accel.BinaryAdd})
			if v != accept {
				return nil, refuse
			}
			return [][]int{append(batch[0], a[len(a)-2], b[len(b)-1])}, accept
		},
		units: func(in, out [][]int, _ any) *big.Int {
			a, b, c := in[0], in[1], out[0]
			m, k, n := a[len(a)-2], a[len(a)-1], b[len(b)-1]
			per := bigSum(bigProd(2, m, k, n), bigProd(4, m, k), bigProd(4, k, n), bigProd(4, m, n))
			return bigSum(big.NewInt(64), new(big.Int).Mul(bigProd(c[:len(c)-2]...), per))
		},
	}
	// concat: equal ranks, the axis within them, every other axis equal;
	// a move per output element.
	shapeSpecs["concat"] = shapeSpec{
		rule: func(in [][]int, p any) ([][]int, verdict) {
			axis, a, b := p.(accel.ConcatParams).Axis, in[0], in[1]
			if axis >= len(a) || len(a) != len(b) {
				return nil, refuse
			}
			out := slices.Clone(a)
			for i := range a {
				if i == axis {
					out[i] = a[i] + b[i]
				} else if a[i] != b[i] {
					return nil, refuse
				}
			}
			return [][]int{out}, accept
		},
		units: func(_, out [][]int, _ any) *big.Int {
			return bigSum(big.NewInt(64), bigProd(append([]int{9}, out[0]...)...))
		},
	}
	// slice: the rank is x's, and along each axis the first and the last
	// element read, start and start + (count-1)·step, lie in [0, size);
	// y is shaped as the counts. A move per output element.
	shapeSpecs["slice"] = shapeSpec{
		rule: func(in [][]int, p any) ([][]int, verdict) {
			q, x := p.(accel.SliceParams), in[0]
			if q.Rank != len(x) {
				return nil, refuse
			}
			within := func(v *big.Int, size int) bool { return v.Sign() >= 0 && v.Cmp(big.NewInt(int64(size))) < 0 }
			for i, d := range x {
				start := big.NewInt(int64(q.Start[i]))
				last := bigSum(start, bigProd(q.Count[i]-1, q.Step[i]))
				if !within(start, d) || !within(last, d) {
					return nil, refuse
				}
			}
			return [][]int{slices.Clone(q.Count[:q.Rank])}, accept
		},
		units: func(_, out [][]int, _ any) *big.Int {
			return bigSum(big.NewInt(64), bigProd(append([]int{9}, out[0]...)...))
		},
	}
	// gather: the axis within x's rank; y is x's shape before it, the
	// indices' shape, then x's after it, of rank at most 8. A move per
	// output element, and 4 bytes per index read.
	shapeSpecs["gather"] = shapeSpec{
		rule: func(in [][]int, p any) ([][]int, verdict) {
			axis, x, indices := p.(accel.GatherParams).Axis, in[0], in[1]
			if axis >= len(x) {
				return nil, refuse
			}
			var out []int
			out = append(out, x[:axis]...)
			out = append(out, indices...)
			out = append(out, x[axis+1:]...)
			return [][]int{out}, validIf(len(out) <= 8)
		},
		units: func(in, out [][]int, _ any) *big.Int {
			return bigSum(big.NewInt(64), bigProd(append([]int{9}, out[0]...)...), bigProd(append([]int{4}, in[1]...)...))
		},
	}
	// global_avgpool: an addition per element of x and a division per
	// plane, and 4 bytes of each moved.
	shapeSpecs["global_avgpool"] = shapeSpec{
		rule: func(in [][]int, _ any) ([][]int, verdict) {
			x := in[0]
			if len(x) != 4 {
				return nil, refuse
			}
			return [][]int{{x[0], x[1], 1, 1}}, accept
		},
		units: func(in, _ [][]int, _ any) *big.Int {
			x := in[0]
			return bigSum(big.NewInt(64), bigProd(append([]int{5}, x...)...), bigProd(5, x[0], x[1]))
		},
	}
}

// The training operations (docs/abi.md, "Training"). Their shape rules
// read the forward operation's: a backward call is valid exactly when the
// forward call it undoes is, and its gradient has the forward output's
// shape.
func init() {
	conv, pool := shapeSpecs["conv2d"], shapeSpecs["maxpool2d"]
	finite := func(vs ...float32) bool {
		for _, v := range vs {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return false
			}
		}
		return true
	}
	same := func(in [][]int) bool {
		for _, s := range in[1:] {
			if !slices.Equal(s, in[0]) {
				return false
			}
		}
		return true
	}
	// convBack checks the forward call of input x and weights w against
	// the gradient dy.
	convBack := func(x, w, dy []int, c accel.Conv2DParams) verdict {
		for _, d := range x {
			if d < 1 || d > accel.MaxElements {
				return refuse
			}
		}
		if _, err := accel.NumElements(x); err != nil {
			return refuse
		}
		if _, err := accel.NumElements(w); err != nil {
			return refuse
		}
		y, v := conv.rule([][]int{x, w, nil}, c)
		if v != accept {
			return v
		}
		return validIf(slices.Equal(y[0], dy))
	}
	shapeSpecs["conv2d_backward_data"] = shapeSpec{
		rule: func(in [][]int, p any) ([][]int, verdict) {
			dy, w, q := in[0], in[1], p.(accel.Conv2DBackwardDataParams)
			if len(dy) != 4 || len(w) != 4 || w[1] > accel.MaxElements/q.Groups {
				return nil, refuse
			}
			x := []int{dy[0], w[1] * q.Groups, q.InputH, q.InputW}
			return [][]int{x}, convBack(x, w, dy, q.Conv2DParams)
		},
		units: func(in, out [][]int, p any) *big.Int {
			return conv.units([][]int{out[0], in[1], nil}, [][]int{in[0]}, p.(accel.Conv2DBackwardDataParams).Conv2DParams)
		},
	}
	shapeSpecs["conv2d_backward_filter"] = shapeSpec{
		rule: func(in [][]int, p any) ([][]int, verdict) {
			x, dy, q := in[0], in[1], p.(accel.Conv2DBackwardFilterParams)
			if len(x) != 4 || len(dy) != 4 || x[1]%q.Groups != 0 || q.KernelH < 1 || q.KernelW < 1 ||
				q.KernelH > accel.MaxElements || q.KernelW > accel.MaxElements {
				return nil, refuse
			}
			w := []int{dy[1], x[1] / q.Groups, q.KernelH, q.KernelW}
			return [][]int{w}, convBack(x, w, dy, q.Conv2DParams)
		},
		units: func(in, out [][]int, p any) *big.Int {
			return conv.units([][]int{in[0], out[0], nil}, [][]int{in[1]}, p.(accel.Conv2DBackwardFilterParams).Conv2DParams)
		},
	}
	shapeSpecs["maxpool2d_backward"] = shapeSpec{
		rule: func(in [][]int, p any) ([][]int, verdict) {
			y, v := pool.rule(in[:1], p)
			if v != accept {
				return nil, v
			}
			return [][]int{in[0]}, validIf(slices.Equal(y[0], in[1]))
		},
		units: func(in, out [][]int, p any) *big.Int {
			return bigSum(pool.units(in[:1], in[1:], p), bigProd(append([]int{8}, in[0]...)...))
		},
	}
	shapeSpecs["relu_backward"] = shapeSpec{
		rule: func(in [][]int, _ any) ([][]int, verdict) { return [][]int{in[0]}, validIf(same(in)) },
		units: func(in, _ [][]int, _ any) *big.Int {
			return bigSum(big.NewInt(64), bigProd(append([]int{13}, in[0]...)...))
		},
	}
	shapeSpecs["reduce_sum"] = shapeSpec{
		rule: func(in [][]int, p any) ([][]int, verdict) {
			axes := p.(accel.ReduceSumParams).Axes
			if axes == 0 || axes>>len(in[0]) != 0 {
				return nil, refuse
			}
			y := []int{}
			for i, d := range in[0] {
				if axes&(1<<i) == 0 {
					y = append(y, d)
				}
			}
			if len(y) == 0 {
				y = []int{1}
			}
			return [][]int{y}, accept
		},
		units: func(in, out [][]int, _ any) *big.Int {
			return bigSum(big.NewInt(64), bigProd(append([]int{5}, in[0]...)...), bigProd(append([]int{4}, out[0]...)...))
		},
	}
	shapeSpecs["softmax_cross_entropy"] = shapeSpec{
		rule: func(in [][]int, _ any) ([][]int, verdict) {
			return [][]int{in[0]}, validIf(len(in[0]) == 2 && len(in[1]) == 1 && in[1][0] == in[0][0])
		},
		units: func(in, _ [][]int, _ any) *big.Int {
			n, k := in[0][0], in[0][1]
			return bigSum(big.NewInt(64), bigProd(18, n, k), bigProd(8, n, k), bigProd(24, n))
		},
	}
	shapeSpecs["sgd_momentum"] = shapeSpec{
		rule: func(in [][]int, p any) ([][]int, verdict) {
			q := p.(accel.SGDParams)
			return [][]int{}, validIf(same(in) && finite(q.LearningRate, q.Momentum))
		},
		units: func(in, _ [][]int, _ any) *big.Int {
			return bigSum(big.NewInt(64), bigProd(append([]int{24}, in[0]...)...))
		},
	}
	shapeSpecs["adam"] = shapeSpec{
		rule: func(in [][]int, p any) ([][]int, verdict) {
			q := p.(accel.AdamParams)
			return [][]int{}, validIf(same(in) && finite(q.LearningRate, q.Beta1, q.Beta2, q.Epsilon, q.Correction1, q.Correction2) &&
				q.Correction1 > 0 && q.Correction1 <= 1 && q.Correction2 > 0 && q.Correction2 <= 1)
		},
		units: func(in, _ [][]int, _ any) *big.Int {
			return bigSum(big.NewInt(64), bigProd(append([]int{44}, in[0]...)...))
		},
	}
}

// Bounds on the calls FuzzShapes also runs on the reference backend.
const (
	runMaxElements = 1 << 12
	runMaxUnits    = 1 << 22
)

// FuzzShapes checks each operation's shape rule on any input shapes and
// decoded parameters. A refusal wraps ErrInvalid, ErrShape or ErrOverflow,
// and accepted outputs are within the element limit. Where every input is
// a tensor's shape (as the Session and the model runner guarantee), the
// rule accepts exactly the calls the documents call valid, with the
// documented output shapes, and Units is the documented formula exactly,
// saturated at 2^64-1 rather than wrapped. Small accepted calls then run
// on the reference backend through a Session, which must accept them too
// and return outputs of those shapes.
func FuzzShapes(f *testing.F) {
	f.Fuzz(func(t *testing.T, opIndex uint8, shapes, words []byte) {
		op := fuzzOp(opIndex)
		spec, ok := shapeSpecs[op.Name]
		if !ok {
			t.Fatalf("%s has no shape oracle in this test", op)
		}
		w := fuzzU32s(words)
		w = append(w, make([]uint32, max(0, len(op.ParamWords)-len(w)))...)[:len(op.ParamWords)]
		p, err := op.DecodeParams(w)
		if err != nil {
			if !errors.Is(err, accel.ErrInvalid) {
				t.Fatalf("%s.DecodeParams(%#x): %v, want ErrInvalid", op, w, err)
			}
			return
		}
		in := fuzzShapes(op, shapes)
		// Only the shapes of tensors reach a shape rule (the Session's and
		// the model runner's inputs); of other input only a refusal with a
		// sentinel, or outputs within the limits, are promised.
		tensors, missing := true, false
		for i, s := range in {
			if s == nil {
				missing = missing || !op.Inputs[i].Optional
			} else if _, err := accel.NumElements(s); err != nil {
				tensors = false
			}
		}
		out, err := op.Shapes(in, p)
		var want [][]int
		v := either
		switch {
		case tensors && missing:
			v = refuse
		case tensors:
			if want, v = spec.rule(in, p); v == accept {
				for _, s := range want {
					if _, err := accel.NumElements(s); err != nil {
						v = refuse // the output would exceed the element limit
					}
				}
			}
		}
		if err != nil {
			switch {
			case !wrapsOneOf(err, accel.ErrInvalid, accel.ErrShape, accel.ErrOverflow):
				t.Fatalf("%s.Shapes(%v, %+v): %v, which wraps no sentinel", op, in, p, err)
			case v == accept:
				t.Fatalf("%s.Shapes(%v, %+v) refused a valid call: %v", op, in, p, err)
			}
			return
		}
		for _, s := range out {
			if _, err := accel.NumElements(s); err != nil {
				t.Fatalf("%s.Shapes(%v, %+v) accepted output %v: %v", op, in, p, s, err)
			}
		}
		switch {
		case !tensors:
			return
		case v == refuse:
			t.Fatalf("%s.Shapes(%v, %+v) = %v, accepting a call the documents refuse", op, in, p, out)
		case len(out) != len(op.Outputs) || (v == accept && !slices.EqualFunc(out, want, slices.Equal)):
			t.Fatalf("%s.Shapes(%v, %+v) = %v, want %v", op, in, p, out, want)
		}
		wantUnits := spec.units(in, out, p)
		if wantUnits.Cmp(bigMaxUint64) > 0 {
			wantUnits = bigMaxUint64
		}
		if got := op.Units(in, out, p); got != wantUnits.Uint64() {
			t.Fatalf("%s.Units(%v, %v, %+v) = %d, want %s (saturated at 2^64-1)", op, in, out, p, got, wantUnits)
		}
		if wantUnits.Cmp(big.NewInt(runMaxUnits)) <= 0 && all(in, out, func(s []int) bool { return len(s) == 0 || elements(s) <= runMaxElements }) {
			runSmall(t, op, p, in, out)
		}
	})
}

func all(in, out [][]int, f func([]int) bool) bool {
	for _, s := range slices.Concat(in, out) {
		if !f(s) {
			return false
		}
	}
	return true
}

func elements(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// runSmall runs op on zero-filled inputs of the given shapes (with a valid
// t-SNE P: every entry in the last row, column 0) and checks that the
// Session accepts the call and returns outputs shaped as out.
func runSmall(t *testing.T, op *accel.Op, p any, shapes, out [][]int) {
	t.Helper()
	s, err := accel.NewSession(fuzzRef, accel.Strict, accel.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := make([]*accel.Tensor, len(shapes))
	for i, shape := range shapes {
		if shape == nil {
			continue
		}
		if in[i], err = s.NewTensor(op.Inputs[i].DType, shape); err != nil {
			t.Fatalf("%s input %s %v: %v", op, op.Inputs[i].Name, shape, err)
		}
	}
	if op == accel.TSNEStep {
		nnz := binary.LittleEndian.AppendUint32(nil, uint32(shapes[1][0]))
		if err := s.Write(in[0], shapes[0][0]-1, nnz); err != nil {
			t.Fatal(err)
		}
	}
	got, _, err := s.Run(context.Background(), op, p, in...)
	if err != nil {
		t.Fatalf("%s on %v with %+v: the shape rule accepted the call, the Session refused it: %v", op, shapes, p, err)
	}
	if len(got) != len(out) {
		t.Fatalf("%s on %v returned %d outputs, want %d", op, shapes, len(got), len(out))
	}
	for i, o := range got {
		if !slices.Equal(o.Shape(), out[i]) {
			t.Fatalf("%s on %v: output %d is %v, the shape rule said %v", op, shapes, i, o.Shape(), out[i])
		}
	}
}

// ---- t-SNE's index data -----------------------------------------------------

// errKernelOutOfRange is what csrGuard's kernel returns when the Session
// hands it index data a kernel would read out of bounds with.
var errKernelOutOfRange = errors.New("tsne_step kernel handed index data outside its arrays")

// maxComputedN bounds the points csrGuard computes a step over: above it
// the O(N²) kernel would dominate the fuzzing, and the index check is what
// matters.
const maxComputedN = 256

// csrGuard is a backend whose tsne_step kernel first checks, on the data
// itself, everything the reference kernel relies on: every row_ptr value
// in [0, nnz] and not decreasing, every column in [0, N). It then runs the
// reference kernel, up to maxComputedN points.
type csrGuard struct{ accel.Backend }

func (g csrGuard) Kernel(op *accel.Op, mode accel.Mode) accel.Kernel {
	k := g.Backend.Kernel(op, mode)
	if op != accel.TSNEStep || k == nil {
		return k
	}
	return func(ctx context.Context, c *accel.Call) error {
		st := accel.TSNEStateOf(c)
		rowPtr, err := g.int32s(st.RowPtr)
		if err != nil {
			return err
		}
		cols, err := g.int32s(st.Cols)
		if err != nil {
			return err
		}
		n, nnz := st.N(), len(cols)
		if len(rowPtr) != n+1 {
			return fmt.Errorf("%w: row_ptr of %d for %d points", errKernelOutOfRange, len(rowPtr), n)
		}
		for i, v := range rowPtr {
			if v < 0 || int(v) > nnz || (i > 0 && v < rowPtr[i-1]) {
				return fmt.Errorf("%w: row_ptr[%d] = %d with nnz %d", errKernelOutOfRange, i, v, nnz)
			}
		}
		for e, col := range cols {
			if col < 0 || int(col) >= n {
				return fmt.Errorf("%w: cols[%d] = %d with N %d", errKernelOutOfRange, e, col, n)
			}
		}
		if n > maxComputedN {
			return nil
		}
		return k(ctx, c)
	}
}

func (g csrGuard) int32s(t *accel.Tensor) ([]int32, error) {
	b := make([]byte, t.Bytes())
	if err := g.Read(t.Buffer(), 0, b); err != nil {
		return nil, err
	}
	return fuzzI32s(b), nil
}

// validCSR is docs/abi.md's rule for P's structure over n points.
func validCSR(rowPtr, cols []int32, n int) bool {
	if len(rowPtr) != n+1 || rowPtr[0] != 0 || int(rowPtr[n]) > len(cols) {
		return false
	}
	for i := 1; i <= n; i++ {
		if rowPtr[i] < rowPtr[i-1] {
			return false
		}
	}
	for _, c := range cols {
		if c < 0 || int(c) >= n {
			return false
		}
	}
	return true
}

// FuzzTSNEIndexData runs tsne_step through a Session on any CSR structure:
// row_ptr (its words, then pad copies of its last word, so that long
// structures cross the check's chunks), cols, and N = len(row_ptr)-1+dN
// points. The Session must refuse with ErrShape exactly when the shapes do
// not fit, with ErrInvalid exactly when the structure is out of range,
// leaving y, update and gains as they were, and otherwise hand the kernel
// only data it can index with. Then rewrite's words are written over the
// start of cols (or of row_ptr) and the step is tried again: the Session
// must check the new data, not remember the old verdict.
func FuzzTSNEIndexData(f *testing.F) {
	f.Fuzz(func(t *testing.T, rowPtrWords, colWords []byte, dN int8, pad uint16, kl, rewriteRowPtr bool, rewrite []byte) {
		rowPtr, cols := fuzzI32s(rowPtrWords), fuzzI32s(colWords)
		if len(rowPtr) == 0 {
			rowPtr = []int32{0}
		}
		if len(cols) == 0 {
			cols = []int32{0}
		}
		for range pad {
			rowPtr = append(rowPtr, rowPtr[len(rowPtr)-1])
		}
		n := max(1, len(rowPtr)-1+int(dN))

		s, err := accel.NewSession(csrGuard{fuzzRef}, accel.Strict, accel.Limits{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ints := func(v []int32) *accel.Tensor {
			x, err := s.FromInt32(v, len(v))
			if err != nil {
				t.Fatal(err)
			}
			return x
		}
		floats := func(f func(i int) float32, shape ...int) *accel.Tensor {
			v := make([]float32, elements(shape))
			for i := range v {
				v[i] = f(i)
			}
			x, err := s.FromFloat32(v, shape...)
			if err != nil {
				t.Fatal(err)
			}
			return x
		}
		st := accel.TSNEState{
			RowPtr: ints(rowPtr),
			Cols:   ints(cols),
			Vals:   floats(func(int) float32 { return 1 / float32(len(cols)) }, len(cols)),
			Y:      floats(func(i int) float32 { return float32(i%7) - 3 }, n, 2),
			Update: floats(func(int) float32 { return 0 }, n, 2),
			Gains:  floats(func(int) float32 { return 1 }, n, 2),
		}
		params := accel.TSNEParams{LearningRate: 200, Momentum: 0.5, Exaggeration: 12, MinGain: 0.01, ComputeKL: kl}
		shapesFit := n >= 2 && len(rowPtr) == n+1

		step := func(when string) {
			t.Helper()
			state := func() [][]float32 {
				var v [][]float32
				for _, x := range []*accel.Tensor{st.Y, st.Update, st.Gains} {
					f, err := s.Float32(x)
					if err != nil {
						t.Fatal(err)
					}
					v = append(v, f)
				}
				return v
			}
			before := state()
			_, err := s.TSNEStep(context.Background(), st, params)
			var want error
			switch {
			case !shapesFit:
				want = accel.ErrShape
			case !validCSR(rowPtr, cols, n):
				want = accel.ErrInvalid
			}
			switch {
			case errors.Is(err, errKernelOutOfRange):
				t.Fatalf("%s: row_ptr %s, cols %s, N %d: %v", when, brief(rowPtr), brief(cols), n, err)
			case want == nil && err != nil:
				t.Fatalf("%s: row_ptr %s, cols %s, N %d: valid P refused: %v", when, brief(rowPtr), brief(cols), n, err)
			case want != nil && !errors.Is(err, want):
				t.Fatalf("%s: row_ptr %s, cols %s, N %d: got %v, want %v", when, brief(rowPtr), brief(cols), n, err, want)
			}
			if err != nil && !slices.EqualFunc(before, state(), bitsEqual) {
				t.Fatalf("%s: the refused step changed y, update or gains", when)
			}
		}
		step("first step")

		words := fuzzI32s(rewrite)
		if len(words) == 0 {
			return
		}
		target, data := st.Cols, cols
		if rewriteRowPtr {
			target, data = st.RowPtr, rowPtr
		}
		words = words[:min(len(words), len(data))]
		copy(data, words)
		if err := s.Write(target, 0, accel.EncodeInt32(words)); err != nil {
			t.Fatal(err)
		}
		step("after rewriting")
	})
}

// bitsEqual compares float slices bit for bit.
func bitsEqual(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

// brief formats a long index array by its ends.
func brief(v []int32) string {
	if len(v) <= 16 {
		return fmt.Sprint(v)
	}
	return fmt.Sprintf("%v ... %v (%d entries)", v[:8], v[len(v)-4:], len(v))
}
