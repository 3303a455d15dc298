// Package conformance is the node's conformance corpus: for every operation
// of the op table (accel.Ops), the cases a backend must get right, the
// numerics contract (docs/determinism.md) transcribed literally, a float64
// reference with error bounds, and the parts that batch invariance
// recomputes alone. The test drivers (package conformancetest) and the
// engine of `accelnode conformance` (package runner) both read it.
//
// Each operation is one file, op_<name>.go, that registers its cases,
// transcription, reference and parts; adding an operation to the corpus
// means adding that file. The shared machinery lives beside them: input
// generators (inputs.go), the float64 error bounds (float64.go),
// comparisons (compare.go), the generic execution of a case through
// accel.Session.Run (execute.go), the checks the drivers make (verify.go)
// and a backend built from the transcriptions (spec.go).
//
// The corpus crosses every operation with size classes (tiny, odd, tall,
// skinny, large) and value classes (ValueClasses): ordinary distributions,
// heavy tails, NaN, ±Inf, -0, subnormals, values near overflow,
// catastrophic cancellation, exactly summable inputs and inputs whose low
// mantissa bits tensor cores drop; hand-picked cases add what a grid
// misses (every transpose, padding wider than a window, a NaN with a payload
// where a window meets padding, t-SNE rows with no entries, ...). Inputs
// come from math/rand/v2 generators seeded by the case's name, so every run
// sees the same data.
package conformance

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/accelnode/accelnode/accel"
)

// Size classes of the corpus. The quick corpus holds the tiny and odd ones.
const (
	SizeTiny   = "tiny"   // one element, or the fewest an operation takes
	SizeOdd    = "odd"    // small prime-ish dimensions, transposes, padding
	SizeTall   = "tall"   // many rows of few columns, or a lopsided window
	SizeSkinny = "skinny" // a long reduction over few outputs
	SizeLarge  = "large"  // a layer of a small network
)

// Value classes of the corpus.
const (
	// Uniform draws from [-1, 1).
	Uniform = "uniform"
	// Normal draws from N(0, 1).
	Normal = "normal"
	// Heavy draws from a Cauchy distribution, whose rare huge values
	// dominate sums; always finite.
	Heavy = "heavy"
	// NaN mixes NaNs with odd payloads and signs into normal values, rarely
	// enough that most outputs stay numbers.
	NaN = "nan"
	// Inf mixes ±Inf into normal values, likewise (Inf·0 and Inf-Inf give
	// NaN).
	Inf = "inf"
	// NegZero is mostly ±0: sums of nothing but -0 products are +0 by the
	// contract (a sum starts at +0), and of equal maxima the first wins.
	NegZero = "negzero"
	// Subnormal is half subnormal values; their products underflow.
	Subnormal = "subnormal"
	// Overflow is near the largest float: products or sums overflow to Inf.
	Overflow = "overflow"
	// Cancel makes sums cancel catastrophically: pairs of large values of
	// opposite sign times factors near 1, so the result depends on every
	// rounding of the order of summation.
	Cancel = "cancel"
	// Exact is "exactly summable": small integers times powers of two, so
	// that every product and every partial sum is exact in float32 whatever
	// the order. Any correct summation order gives the same bits, so a
	// difference is a wrong result, not a reordering.
	Exact = "exact"
	// TF32 holds values 2^e·(1 + k·2^-23) whose low mantissa bits are lost
	// when tensor cores round inputs to TF32 (10 bits) or bfloat16 (7 bits):
	// such a matmul differs from the contract by about 2^13 ulps.
	TF32 = "tf32"
	// Wide draws values of random sign whose binary exponents spread over
	// a wide range, so that sums round and cancel everywhere.
	Wide = "wide"
	// Specials draws from the pool of values every operation must handle:
	// NaNs with payloads, ±Inf, ±0, subnormals, the largest floats and
	// values whose squares are near overflow.
	Specials = "specials"
)

// ValueClasses lists the value classes in the order reports use.
var ValueClasses = []string{Uniform, Normal, Heavy, NaN, Inf, NegZero, Subnormal, Overflow, Cancel, Exact, TF32, Wide, Specials}

// gridClasses are the value classes of the grid of an operation that sums;
// Wide and Specials come in hand-picked cases.
var gridClasses = []string{Uniform, Normal, Heavy, NaN, Inf, NegZero, Subnormal, Overflow, Cancel, Exact, TF32}

// exactClasses are the value classes of the grid of an operation that
// computes no sum, where cancellation and exactly summable values show
// nothing new.
var exactClasses = []string{Uniform, Normal, Heavy, NaN, Inf, NegZero, Subnormal, Overflow}

// Tensor is the content of one tensor: at most one of F32 and I32 is set. A
// zero Tensor (nil Shape) stands for an absent optional input.
type Tensor struct {
	Name  string
	Shape []int
	F32   []float32
	I32   []int32
}

// Absent reports whether t stands for an absent optional input.
func (t Tensor) Absent() bool { return t.Shape == nil }

// Case is one call of one operation in the corpus.
type Case struct {
	Op *accel.Op
	// Name is unique within Op: "<size>-<dims>/<values>" for the grid of
	// sizes and value classes, "<what it tests>/<values>" for the others.
	Name   string
	Size   string // the size class
	Values string // the value class
	// Quick is set for the cases of the quick corpus: the tiny and odd
	// sizes.
	Quick bool
	// Params are the operation's parameters, of its own type
	// (accel.MatMulParams, accel.NoParams, ...).
	Params any
	// Steps is how many calls run in a row on the same tensors, each from
	// the state the one before left, for operations that update inputs in
	// place; 0 means 1.
	Steps int
	// Inputs generates the input tensors, one per Op.Inputs in order.
	// Every call returns the same data, from a generator seeded by the
	// case's name.
	Inputs func() []Tensor
}

// String is the case's name with its operation, "matmul/odd-37x53x29/normal".
func (c Case) String() string { return c.Op.Name + "/" + c.Name }

func (c Case) steps() int { return max(c.Steps, 1) }

// operation is the corpus's part for one operation, erased to the type of
// its parameters. Each op_<name>.go file registers one.
type operation struct {
	op    *accel.Op
	cases func() []Case
	// spec computes the results by the contract's transcription, in the
	// order of results, without modifying the inputs: F32 set for an f32
	// result, I32 for an i32 output (accel.Op.OutputDType). Only the data
	// is set.
	spec func(p any, in []Tensor) []Tensor
	// float64 computes the float64 reference of the results.
	float64 func(p any, in []Tensor) reference
	// parts lists the batch-invariance parts of a call; nil where the
	// operation has no batch.
	parts func(p any, in []Tensor) []Part
}

// def is the typed description an operation registers.
type def[P any] struct {
	op    *accel.Op
	cases func() []Case
	// spec is the transcription of an operation whose results are all f32.
	spec func(p P, in []Tensor) [][]float32
	// specMixed replaces spec for an operation with i32 outputs: its
	// results as tensors, I32 set for an i32 output and F32 for the others.
	specMixed func(p P, in []Tensor) []Tensor
	float64   func(p P, in []Tensor) reference
	parts     func(p P, in []Tensor) []Part
}

// operations holds the registered operations by op.
var operations = map[*accel.Op]*operation{}

// register adds an operation to the corpus; an op_<name>.go file calls it
// from a package-level variable's initialiser.
func register[P any](d def[P]) *operation {
	if _, dup := operations[d.op]; dup {
		panic("conformance: operation registered twice: " + d.op.Name)
	}
	o := &operation{
		op:      d.op,
		cases:   d.cases,
		float64: func(p any, in []Tensor) reference { return d.float64(p.(P), in) },
	}
	if d.specMixed != nil {
		o.spec = func(p any, in []Tensor) []Tensor { return d.specMixed(p.(P), in) }
	} else {
		o.spec = func(p any, in []Tensor) []Tensor {
			res := d.spec(p.(P), in)
			out := make([]Tensor, len(res))
			for i, v := range res {
				out[i].F32 = v
			}
			return out
		}
	}
	if d.parts != nil {
		o.parts = func(p any, in []Tensor) []Part { return d.parts(p.(P), in) }
	}
	operations[d.op] = o
	return o
}

// Ops lists the operations the corpus covers, in the order of accel.Ops.
func Ops() []*accel.Op {
	var ops []*accel.Op
	for _, op := range accel.Ops() {
		if operations[op] != nil {
			ops = append(ops, op)
		}
	}
	return ops
}

// Corpus returns every case of every operation, or with quick only the
// quick ones, in the order of Ops.
func Corpus(quick bool) []Case {
	var all []Case
	for _, op := range Ops() {
		all = append(all, Cases(op, quick)...)
	}
	return all
}

// Cases returns the cases of op, or with quick only the quick ones; none
// for an operation the corpus does not cover.
func Cases(op *accel.Op, quick bool) []Case {
	o := operations[op]
	if o == nil {
		return nil
	}
	var cases []Case
	for _, c := range o.cases() {
		if c.Quick || !quick {
			cases = append(cases, c)
		}
	}
	return cases
}

// newCase makes a case named label/values; gen makes its inputs from the
// case's generator.
func newCase(op *accel.Op, size, label, values string, params any, gen func(r *rand.Rand) []Tensor) Case {
	name := label + "/" + values
	return Case{
		Op: op, Name: name, Size: size, Values: values,
		Quick:  size == SizeTiny || size == SizeOdd,
		Params: params,
		Inputs: func() []Tensor { return gen(rng(op.Name + "/" + name)) },
	}
}

// gridCase makes a case of the grid of sizes and value classes, named
// "<size>-<dims>/<values>".
func gridCase(op *accel.Op, size, dims, values string, params any, gen func(r *rand.Rand) []Tensor) Case {
	return newCase(op, size, size+"-"+dims, values, params, gen)
}

// ---- value classes ----------------------------------------------------------

// rare is the rate of special values in the operands of a sum of terms
// products, so that about half of the outputs meet none.
func rare(terms int) float64 { return min(0.25, 0.35/float64(terms)) }

// zeroRate is the rate of ±0 in an operand of a sum of terms products, so
// that about half of the sums have nothing but zero products.
func zeroRate(terms int) float64 { return math.Pow(0.5, 1/float64(terms)) }

// elementFill is the fill of a value class for an operation on single
// values (relu, maxpool2d, add_bias, add, softmax, the bias of conv2d).
func elementFill(class string) fill {
	switch class {
	case Uniform:
		return uniform(-1, 1)
	case Normal:
		return normal(1)
	case Heavy:
		return cauchy(1)
	case NaN:
		return mix(0.05, normal(1), pick(qNaN, negNaN, sNaN))
	case Inf:
		return mix(0.05, normal(1), pick(posInf, negInf))
	case NegZero:
		return mix(0.7, normal(1), pick(negZero, negZero, 0, -1))
	case Subnormal:
		return subnormals
	case Overflow:
		return mix(0.5, magnitudes(120, 127), pick(maxFloat, -maxFloat))
	case Cancel:
		return bigPairs
	case Exact:
		return integers(1<<22, -4)
	case TF32:
		return tf32Lost
	case Wide:
		return magnitudes(-40, 40)
	case Specials:
		return pick(specials...)
	}
	panic("conformance: unknown value class " + class)
}

// productFills are the fills of the two factors of a sum of terms products
// (matmul's A and B, conv2d's x and w), and of a bias added to it.
func productFills(class string, terms int) (a, b, bias fill) {
	bias = elementFill(class)
	switch class {
	case NaN:
		p := rare(terms)
		nan := pick(qNaN, negNaN, sNaN)
		return mix(p, normal(1), nan), mix(p, normal(1), nan), bias
	case Inf:
		p := rare(terms)
		inf := pick(posInf, negInf)
		return mix(p, normal(1), inf), mix(p, normal(1), inf), bias
	case NegZero:
		return mix(zeroRate(terms), normal(1), pick(negZero, 0)), normal(1), mix(0.5, normal(1), pick(negZero))
	case Overflow:
		return magnitudes(60, 64), magnitudes(60, 64), bias
	case Cancel:
		return bigPairs, nearOne, bias
	case Exact:
		// Products are multiples of 2^-8; so is the bias, within the bound.
		i := exactBound(terms + 1)
		return integers(i, -3), integers(i, -5), integers(i*i, -8)
	case Wide:
		return magnitudes(-25, 25), magnitudes(-25, 25), magnitudes(-25, 25)
	case Specials:
		p := min(0.5, 2*rare(terms))
		return mix(p, normal(1), pick(specials...)), mix(p, normal(1), pick(specials...)), bias
	}
	f := elementFill(class)
	return f, f, bias
}

// ---- shapes -----------------------------------------------------------------

// dims formats dimensions as 2x3x4.
func dims(d ...int) string {
	s := ""
	for i, x := range d {
		if i > 0 {
			s += "x"
		}
		s += fmt.Sprint(x)
	}
	return s
}

// elements is the number of elements of a shape.
func elements(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}
