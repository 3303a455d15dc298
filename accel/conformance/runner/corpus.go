package runner

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance"
)

// Ops are the operations of the accel ABI, in the order reports list them.
var Ops = []string{OpMatMul, OpConv2D, OpAddBias, OpRelu, OpMaxPool2D, OpSoftmax, OpTSNEStep}

// Operation names, as the ABI and the reports spell them.
const (
	OpMatMul    = "matmul"
	OpConv2D    = "conv2d"
	OpAddBias   = "add_bias"
	OpRelu      = "relu"
	OpMaxPool2D = "maxpool2d"
	OpSoftmax   = "softmax"
	OpTSNEStep  = "tsne_step"
)

// Size classes of the corpus. The quick corpus holds the tiny and odd ones.
const (
	SizeTiny   = "tiny"   // one element, or the fewest an operation takes
	SizeOdd    = "odd"    // small prime-ish dimensions, transposes, padding
	SizeTall   = "tall"   // many rows of few columns, or a lopsided window
	SizeSkinny = "skinny" // a long reduction over few outputs (matmul)
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
	// the order (as RepDL's tooling truncates inputs). Any correct
	// summation order gives the same bits, so a difference is a wrong
	// result, not a reordering.
	Exact = "exact"
	// TF32 holds values 2^e·(1 + k·2^-23) whose low mantissa bits are lost
	// when tensor cores round inputs to TF32 (10 bits) or bfloat16 (7 bits):
	// such a matmul differs from the contract by about 2^13 ulps.
	TF32 = "tf32"
)

// ValueClasses lists the value classes in the order reports use.
var ValueClasses = []string{Uniform, Normal, Heavy, NaN, Inf, NegZero, Subnormal, Overflow, Cancel, Exact, TF32}

// Tensor is the content of one input or output tensor. Exactly one of F32
// and I32 is set.
type Tensor struct {
	Name  string
	Shape []int
	F32   []float32
	I32   []int32
}

// AddBiasParams are add_bias's parameters.
type AddBiasParams struct{ Axis int }

// Case is one call of one operation in the corpus.
type Case struct {
	Op     string // one of Ops
	Name   string // unique within Op: "<size>-<dims>/<values>"
	Size   string // the size class
	Values string // the value class
	// Quick is set for the cases of the quick corpus.
	Quick bool
	// Params are the operation's parameters: accel.MatMulParams,
	// accel.Conv2DParams, AddBiasParams, accel.Pool2DParams or
	// accel.TSNEParams; nil for relu and softmax.
	Params any
	// Inputs generates the input tensors, in the order Execute takes them.
	// Every call returns the same data, from a generator seeded by the
	// case's name.
	Inputs func() []Tensor
}

// String is the case's name with its operation, "matmul/odd-37x53x29/normal".
func (c Case) String() string { return c.Op + "/" + c.Name }

// Corpus returns every case, or with quick only the quick ones (the tiny and
// odd size classes).
func Corpus(quick bool) []Case {
	var all []Case
	for _, build := range []func() []Case{matmulCases, convCases, addBiasCases, reluCases, poolCases, softmaxCases, tsneCases} {
		for _, c := range build() {
			if c.Quick || !quick {
				all = append(all, c)
			}
		}
	}
	return all
}

// newCase fills in the names of a case; gen makes its inputs from the
// case's generator.
func newCase(op, size, dims, values string, params any, gen func(r *rand.Rand) []Tensor) Case {
	name := size + "-" + dims + "/" + values
	return Case{
		Op: op, Name: name, Size: size, Values: values,
		Quick:  size == SizeTiny || size == SizeOdd,
		Params: params,
		Inputs: func() []Tensor { return gen(conformance.Rand("runner/" + op + "/" + name)) },
	}
}

// Special values, built from bits where Go constants cannot express them.
var (
	negZero  = math.Float32frombits(0x80000000)
	posInf   = float32(math.Inf(1))
	negInf   = float32(math.Inf(-1))
	qNaN     = math.Float32frombits(0x7fc00000)
	negNaN   = math.Float32frombits(0xffc00001)
	sNaN     = math.Float32frombits(0x7f800001)
	maxFloat = float32(math.MaxFloat32)
)

type fill = conformance.Fill

// cauchy draws scale·tan(π(u-½)), clipped to the finite floats.
func cauchy(scale float64) fill {
	return func(r *rand.Rand, n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			x := scale * math.Tan(math.Pi*(r.Float64()-0.5))
			v[i] = float32(max(-math.MaxFloat32, min(math.MaxFloat32, x)))
		}
		return v
	}
}

// subnormals is half subnormal values of random sign and half values of
// magnitude in [1/4, 4).
func subnormals(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		if r.IntN(2) == 0 {
			v[i] = math.Float32frombits(1 + r.Uint32N(0x7fffff))
		} else {
			v[i] = float32(math.Ldexp(1+r.Float64(), r.IntN(4)-2))
		}
		if r.IntN(2) == 0 {
			v[i] = -v[i]
		}
	}
	return v
}

// integers draws whole numbers in [-bound, bound] times 2^exp.
func integers(bound, exp int) fill {
	return func(r *rand.Rand, n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(math.Ldexp(float64(r.IntN(2*bound+1)-bound), exp))
		}
		return v
	}
}

// exactBound is the largest integer I with terms·I² < 2^24: sums of terms
// products of integers in [-I, I] are exact in float32 in any order (every
// partial sum is an integer below 2^24, times the same power of two).
func exactBound(terms int) int {
	return max(1, int(math.Sqrt(float64(1<<24-1)/float64(terms))))
}

// tf32Lost draws ±2^e·(1 + k·2^-23) for e in [-2, 2] with k below 2^13 (all
// of it lost in TF32 and bfloat16) or, for a quarter, below 2^16 (lost in
// bfloat16, partly kept by TF32).
func tf32Lost(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		k := 1 + r.IntN(1<<13-1)
		if r.IntN(4) == 0 {
			k = 1 + r.IntN(1<<16-1)
		}
		x := float32(math.Ldexp(1+math.Ldexp(float64(k), -23), r.IntN(5)-2))
		if r.IntN(2) == 0 {
			x = -x
		}
		v[i] = x
	}
	return v
}

// bigPairs lays out pairs x, -x of magnitude 2^16 to 2^24, so that a sum
// over neighbours cancels; an odd last value is normal.
func bigPairs(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := 0; i+1 < n; i += 2 {
		x := float32(math.Ldexp(1+r.Float64(), 16+r.IntN(9)))
		if r.IntN(2) == 0 {
			x = -x
		}
		v[i], v[i+1] = x, -x
	}
	if n%2 == 1 {
		v[n-1] = float32(r.NormFloat64())
	}
	return v
}

// nearOne draws 1 + N(0, 2^-8): factors that keep a pair x·a - x·b from
// cancelling exactly.
func nearOne(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(1 + math.Ldexp(r.NormFloat64(), -8))
	}
	return v
}

// rare is the rate of special values in the operands of a sum of terms
// products, so that about half of the outputs meet none.
func rare(terms int) float64 { return min(0.25, 0.35/float64(terms)) }

// zeroRate is the rate of ±0 in an operand of a sum of terms products, so
// that about half of the sums have nothing but zero products.
func zeroRate(terms int) float64 { return math.Pow(0.5, 1/float64(terms)) }

// elementFill is the fill of a value class for an operation on single
// values (relu, maxpool2d, add_bias, softmax, the bias of conv2d).
func elementFill(class string) fill {
	switch class {
	case Uniform:
		return conformance.Uniform(-1, 1)
	case Normal:
		return conformance.Normal(1)
	case Heavy:
		return cauchy(1)
	case NaN:
		return conformance.Mix(0.05, conformance.Normal(1), conformance.Pick(qNaN, negNaN, sNaN))
	case Inf:
		return conformance.Mix(0.05, conformance.Normal(1), conformance.Pick(posInf, negInf))
	case NegZero:
		return conformance.Mix(0.7, conformance.Normal(1), conformance.Pick(negZero, negZero, 0, -1))
	case Subnormal:
		return subnormals
	case Overflow:
		return conformance.Mix(0.5, conformance.Magnitudes(120, 127), conformance.Pick(maxFloat, -maxFloat))
	case Cancel:
		return bigPairs
	case Exact:
		return integers(1<<22, -4)
	case TF32:
		return tf32Lost
	}
	panic("runner: unknown value class " + class)
}

// productFills are the fills of the two factors of a sum of terms products
// (matmul's A and B, conv2d's x and w), and of a bias added to it.
func productFills(class string, terms int) (a, b, bias fill) {
	bias = elementFill(class)
	switch class {
	case NaN:
		p := rare(terms)
		nan := conformance.Pick(qNaN, negNaN, sNaN)
		return conformance.Mix(p, conformance.Normal(1), nan), conformance.Mix(p, conformance.Normal(1), nan), bias
	case Inf:
		p := rare(terms)
		inf := conformance.Pick(posInf, negInf)
		return conformance.Mix(p, conformance.Normal(1), inf), conformance.Mix(p, conformance.Normal(1), inf), bias
	case NegZero:
		return conformance.Mix(zeroRate(terms), conformance.Normal(1), conformance.Pick(negZero, 0)), conformance.Normal(1),
			conformance.Mix(0.5, conformance.Normal(1), conformance.Pick(negZero))
	case Overflow:
		return conformance.Magnitudes(60, 64), conformance.Magnitudes(60, 64), bias
	case Cancel:
		return bigPairs, nearOne, bias
	case Exact:
		// Products are multiples of 2^-8; so is the bias, within the bound.
		i := exactBound(terms + 1)
		return integers(i, -3), integers(i, -5), integers(i*i, -8)
	}
	f := elementFill(class)
	return f, f, bias
}

// transpose returns the [rows, cols] row-major matrix x stored as [cols,
// rows].
func transpose(x []float32, rows, cols int) []float32 {
	t := make([]float32, len(x))
	for i := range rows {
		for j := range cols {
			t[j*rows+i] = x[i*cols+j]
		}
	}
	return t
}

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

func matmulCases() []Case {
	shapes := []struct {
		size    string
		m, k, n int
		p       accel.MatMulParams
	}{
		{SizeTiny, 1, 1, 1, accel.MatMulParams{}},
		{SizeOdd, 37, 53, 29, accel.MatMulParams{TransB: true}},
		{SizeTall, 1000, 16, 3, accel.MatMulParams{TransA: true}},
		{SizeSkinny, 3, 2049, 5, accel.MatMulParams{TransA: true, TransB: true}},
		{SizeLarge, 256, 256, 256, accel.MatMulParams{}},
	}
	var cases []Case
	for _, sh := range shapes {
		for _, class := range ValueClasses {
			fa, fb, _ := productFills(class, sh.k)
			m, k, n, p := sh.m, sh.k, sh.n, sh.p
			cases = append(cases, newCase(OpMatMul, sh.size, dims(m, k, n), class, p, func(r *rand.Rand) []Tensor {
				// A and B are drawn as [M,K] and [K,N] (so that Cancel's
				// pairs lie along k) and stored as the flags say.
				a, b := fa(r, m*k), fb(r, k*n)
				as, bs := []int{m, k}, []int{k, n}
				if p.TransA {
					a, as = transpose(a, m, k), []int{k, m}
				}
				if p.TransB {
					b, bs = transpose(b, k, n), []int{n, k}
				}
				return []Tensor{{Name: "a", Shape: as, F32: a}, {Name: "b", Shape: bs, F32: b}}
			}))
		}
	}
	return cases
}

func convCases() []Case {
	one := func(p accel.Conv2DParams) accel.Conv2DParams {
		for _, f := range []*int{&p.StrideH, &p.StrideW, &p.DilationH, &p.DilationW, &p.Groups} {
			*f = max(*f, 1)
		}
		return p
	}
	shapes := []struct {
		size       string
		x          [4]int
		oc, kh, kw int
		bias       bool
		p          accel.Conv2DParams
	}{
		{SizeTiny, [4]int{1, 1, 1, 1}, 1, 1, 1, false, one(accel.Conv2DParams{})},
		{SizeOdd, [4]int{3, 3, 7, 6}, 5, 3, 2, true, one(accel.Conv2DParams{StrideH: 2, PadTop: 1, PadBottom: 2, PadRight: 1})},
		{SizeTall, [4]int{2, 4, 50, 3}, 4, 5, 1, true, one(accel.Conv2DParams{Groups: 2, DilationH: 2, PadTop: 2, PadBottom: 1})},
		{SizeLarge, [4]int{8, 16, 28, 28}, 32, 3, 3, true, one(accel.Conv2DParams{PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1})},
	}
	var cases []Case
	for _, sh := range shapes {
		for _, class := range ValueClasses {
			xs := sh.x[:]
			ws := []int{sh.oc, sh.x[1] / sh.p.Groups, sh.kh, sh.kw}
			terms := ws[1] * ws[2] * ws[3]
			fx, fw, fb := productFills(class, terms)
			hasBias := sh.bias
			cases = append(cases, newCase(OpConv2D, sh.size, dims(xs...)+"-k"+dims(ws...), class, sh.p, func(r *rand.Rand) []Tensor {
				in := []Tensor{
					{Name: "x", Shape: xs, F32: fx(r, xs[0]*xs[1]*xs[2]*xs[3])},
					{Name: "w", Shape: ws, F32: fw(r, ws[0]*ws[1]*ws[2]*ws[3])},
				}
				if hasBias {
					in = append(in, Tensor{Name: "bias", Shape: []int{ws[0]}, F32: fb(r, ws[0])})
				}
				return in
			}))
		}
	}
	return cases
}

func addBiasCases() []Case {
	shapes := []struct {
		size  string
		shape []int
		axis  int
	}{
		{SizeTiny, []int{1}, 0},
		{SizeOdd, []int{3, 5, 7}, 1},
		{SizeTall, []int{20000, 3}, 0},
		{SizeLarge, []int{64, 32, 32}, 1},
	}
	var cases []Case
	for _, sh := range shapes {
		for _, class := range ValueClasses {
			f := elementFill(class)
			shape, axis := sh.shape, sh.axis
			cases = append(cases, newCase(OpAddBias, sh.size, dims(shape...)+"-axis"+fmt.Sprint(axis), class, AddBiasParams{Axis: axis}, func(r *rand.Rand) []Tensor {
				return []Tensor{
					{Name: "x", Shape: shape, F32: f(r, elements(shape))},
					{Name: "bias", Shape: []int{shape[axis]}, F32: f(r, shape[axis])},
				}
			}))
		}
	}
	return cases
}

// exactOps are the value classes of operations that compute no sum.
var exactOps = []string{Uniform, Normal, Heavy, NaN, Inf, NegZero, Subnormal, Overflow}

func reluCases() []Case {
	shapes := []struct {
		size  string
		shape []int
	}{
		{SizeTiny, []int{1}},
		{SizeOdd, []int{7, 13}},
		{SizeTall, []int{50000, 1}},
		{SizeLarge, []int{64, 32, 32}},
	}
	var cases []Case
	for _, sh := range shapes {
		for _, class := range exactOps {
			f, shape := elementFill(class), sh.shape
			cases = append(cases, newCase(OpRelu, sh.size, dims(shape...), class, nil, func(r *rand.Rand) []Tensor {
				return []Tensor{{Name: "x", Shape: shape, F32: f(r, elements(shape))}}
			}))
		}
	}
	return cases
}

func poolCases() []Case {
	shapes := []struct {
		size string
		x    [4]int
		p    accel.Pool2DParams
	}{
		{SizeTiny, [4]int{1, 1, 1, 1}, accel.Pool2DParams{KernelH: 1, KernelW: 1, StrideH: 1, StrideW: 1}},
		{SizeOdd, [4]int{2, 3, 7, 6}, accel.Pool2DParams{KernelH: 3, KernelW: 3, StrideH: 2, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1}},
		// A window so long that a backend may split it among workers.
		{SizeTall, [4]int{2, 1, 2, 1000}, accel.Pool2DParams{KernelH: 2, KernelW: 600, StrideH: 1, StrideW: 7, PadTop: 1, PadLeft: 599, PadRight: 599}},
		{SizeLarge, [4]int{8, 16, 28, 28}, accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2}},
	}
	var cases []Case
	for _, sh := range shapes {
		for _, class := range exactOps {
			f := elementFill(class)
			if class == NegZero {
				// Windows of zeros and negatives, where -0 and +0 tie.
				f = conformance.Mix(0.2, conformance.Pick(0, negZero, negZero, -1), conformance.Normal(1))
			}
			xs := sh.x[:]
			cases = append(cases, newCase(OpMaxPool2D, sh.size, dims(xs...)+"-k"+dims(sh.p.KernelH, sh.p.KernelW), class, sh.p, func(r *rand.Rand) []Tensor {
				return []Tensor{{Name: "x", Shape: xs, F32: f(r, elements(xs))}}
			}))
		}
	}
	return cases
}

func softmaxCases() []Case {
	shapes := []struct {
		size  string
		shape []int
	}{
		{SizeTiny, []int{1, 1}},
		{SizeOdd, []int{37, 129}},
		{SizeTall, []int{4000, 3}},
		{SizeLarge, []int{2, 150, 500}},
	}
	var cases []Case
	for _, sh := range shapes {
		for _, class := range ValueClasses {
			if class == Exact {
				continue // exp is not exact
			}
			f, shape := elementFill(class), sh.shape
			switch class {
			case Normal:
				f = conformance.Normal(3)
			case Cancel:
				// Values near 10^4, whose differences from the maximum are
				// what exp sees.
				f = func(r *rand.Rand, n int) []float32 {
					v := make([]float32, n)
					for i := range v {
						v[i] = float32(1e4 + 4*r.NormFloat64())
					}
					return v
				}
			}
			cases = append(cases, newCase(OpSoftmax, sh.size, dims(shape...), class, nil, func(r *rand.Rand) []Tensor {
				return []Tensor{{Name: "x", Shape: shape, F32: f(r, elements(shape))}}
			}))
		}
	}
	return cases
}

func tsneCases() []Case {
	early := accel.TSNEParams{LearningRate: 200, Momentum: 0.5, Exaggeration: 12, MinGain: 0.01, ComputeKL: true}
	late := accel.TSNEParams{LearningRate: 200, Momentum: 0.8, Exaggeration: 1, MinGain: 0.01, ComputeKL: true}
	shapes := []struct {
		size        string
		n, k        int
		zeros, diag bool
		p           accel.TSNEParams
	}{
		{SizeTiny, 2, 0, false, false, early},
		{SizeOdd, 97, 6, true, false, early},
		// Rows with no entries, entries of value 0 and entries (i, i).
		{SizeTall, 257, 5, true, true, late},
		{SizeLarge, 1000, 10, false, false, late},
	}
	classes := []string{Uniform, Normal, Heavy, NaN, Inf, NegZero, Subnormal, Overflow, Cancel}
	var cases []Case
	for _, sh := range shapes {
		for _, class := range classes {
			var fy fill
			fu := conformance.Normal(0.5)
			switch class {
			case Uniform:
				fy = conformance.Uniform(-5, 5)
			case NaN, Inf:
				fy = conformance.Normal(1) // one special value is placed below
			case NegZero:
				fy = conformance.Mix(0.5, conformance.Normal(1), conformance.Pick(negZero, 0))
				fu = conformance.Mix(0.5, conformance.Normal(0.5), conformance.Pick(negZero, 0))
			case Overflow:
				fy = conformance.Magnitudes(60, 64)
			case Cancel:
				// Points close together far from the origin: every
				// difference cancels.
				fy = func(r *rand.Rand, n int) []float32 {
					v := make([]float32, n)
					for i := range v {
						v[i] = float32(1000 + 1e-3*r.NormFloat64())
					}
					return v
				}
			default:
				fy = elementFill(class)
			}
			sh := sh
			cases = append(cases, newCase(OpTSNEStep, sh.size, fmt.Sprintf("n%d", sh.n), class, sh.p, func(r *rand.Rand) []Tensor {
				var rowPtr, cols []int32
				var vals []float32
				if sh.n == 2 {
					rowPtr, cols, vals = conformance.PairP()
				} else {
					rowPtr, cols, vals = conformance.RandomP(r, sh.n, sh.k, sh.zeros, sh.diag)
				}
				y, u, g := fy(r, 2*sh.n), fu(r, 2*sh.n), conformance.Uniform(0.005, 3)(r, 2*sh.n)
				switch class {
				case NaN:
					y[r.IntN(len(y))] = []float32{qNaN, negNaN, sNaN}[r.IntN(3)]
				case Inf:
					y[r.IntN(len(y))] = []float32{posInf, negInf}[r.IntN(2)]
				}
				shape := []int{sh.n, 2}
				return []Tensor{
					{Name: "row_ptr", Shape: []int{sh.n + 1}, I32: rowPtr},
					{Name: "cols", Shape: []int{len(cols)}, I32: cols},
					{Name: "vals", Shape: []int{len(vals)}, F32: vals},
					{Name: "y", Shape: shape, F32: y},
					{Name: "update", Shape: slices.Clone(shape), F32: u},
					{Name: "gains", Shape: slices.Clone(shape), F32: g},
				}
			}))
		}
	}
	return cases
}

func elements(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}
