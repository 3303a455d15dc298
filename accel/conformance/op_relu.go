package conformance

import (
	"math"
	"math/rand/v2"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.NoParams]{
	op:      accel.Relu,
	cases:   reluCases,
	spec:    func(_ accel.NoParams, in []Tensor) [][]float32 { return [][]float32{specRelu(in[0].F32)} },
	float64: func(_ accel.NoParams, in []Tensor) reference { return reference{results: [][]ev{f64Relu(in[0].F32)}} },
})

// elementwiseSizes are the shapes of the size classes for an operation
// that computes each element alone.
var elementwiseSizes = []struct {
	size  string
	shape []int
}{
	{SizeTiny, []int{1}},
	{SizeOdd, []int{7, 13}},
	{SizeTall, []int{50000, 1}},
	{SizeLarge, []int{64, 32, 32}},
}

func reluCases() []Case {
	var cases []Case
	// The grid: every value class of an operation that computes no sum on
	// every size class.
	for _, sh := range elementwiseSizes {
		for _, class := range exactClasses {
			cases = append(cases, unaryCase(accel.Relu, sh.size, sh.size+"-"+dims(sh.shape...), class, sh.shape, elementFill(class)))
		}
	}
	// -0 gives +0, NaN payloads give the canonical NaN.
	for _, c := range []struct {
		size, label, values string
		shape               []int
		x                   fill
	}{
		{SizeOdd, "each-special", Specials, []int{len(specials)}, cycle(specials...)},
		{SizeTiny, "zeros", NegZero, []int{2, 2}, cycle(0, negZero)},
		{SizeOdd, "rank4-mixed", Specials, []int{2, 3, 4, 5}, mix(0.1, normal(1), pick(specials...))},
		{SizeOdd, "subnormal", Subnormal, []int{33}, pick(minSub, -minSub, maxSub, -maxSub, minNormal, -minNormal)},
		{SizeTall, "long-4099", Normal, []int{4099}, normal(3)},
		{SizeTall, "long-70001", Specials, []int{70001}, mix(0.01, normal(3), pick(specials...))},
	} {
		cases = append(cases, unaryCase(accel.Relu, c.size, c.label, c.values, c.shape, c.x))
	}
	return cases
}

// unaryCase is a case of an operation on one tensor x and no parameters.
func unaryCase(op *accel.Op, size, label, values string, shape []int, fx fill) Case {
	return newCase(op, size, label, values, accel.NoParams{}, func(r *rand.Rand) []Tensor {
		return []Tensor{{Name: "x", Shape: shape, F32: fx(r, elements(shape))}}
	})
}

// specRelu is relu elementwise.
func specRelu(X []float32) []float32 {
	Y := make([]float32, len(X))
	for i, x := range X {
		switch {
		case x != x:
			Y[i] = strictmath.NaN()
		case x > 0:
			Y[i] = x
		default:
			Y[i] = 0
		}
	}
	return Y
}

// f64Relu is relu in float64, which is exact.
func f64Relu(x []float32) []ev {
	y := make([]ev, len(x))
	for i, v := range x {
		switch {
		case v != v:
			y[i] = ev{v: math.NaN()}
		case v > 0:
			y[i] = exact(v)
		default:
			y[i] = ev{v: 0}
		}
	}
	return y
}
