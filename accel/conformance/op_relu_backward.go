package conformance

import (
	"math"
	"math/rand/v2"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.NoParams]{
	op:    accel.ReluBackward,
	cases: reluBackwardCases,
	spec: func(_ accel.NoParams, in []Tensor) [][]float32 {
		return [][]float32{specReluBackward(in[0].F32, in[1].F32)}
	},
	float64: func(_ accel.NoParams, in []Tensor) reference {
		return reference{results: [][]ev{f64ReluBackward(in[0].F32, in[1].F32)}}
	},
})

func reluBackwardCases() []Case {
	var cases []Case
	// The grid: every value class of an operation that computes no sum on
	// every size class, in x and in dy.
	for _, sh := range elementwiseSizes {
		for _, class := range exactClasses {
			f := elementFill(class)
			cases = append(cases, reluBackwardCase(sh.size, sh.size+"-"+dims(sh.shape...), class, sh.shape, f, f))
		}
	}
	// NaN in x wins over dy; +0 and -0 in x give +0 whatever dy holds; a
	// gradient that passes keeps -0 and loses its NaN payload.
	for _, c := range []struct {
		size, label, values string
		shape               []int
		x, dy               fill
	}{
		// Row i holds x = specials[i], column j dy = specials[j].
		{SizeOdd, "specials-pairs", Specials, []int{len(specials), len(specials)}, eachRepeated(specials, len(specials)), cycle(specials...)},
		{SizeTiny, "zeros", NegZero, []int{2, 3}, cycle(0, negZero, 0, negZero, 1, 1), cycle(1, 1, negNaN, posInf, negZero, 0)},
		{SizeOdd, "nan-x-finite-dy", NaN, []int{5, 9}, mix(0.3, normal(1), pick(qNaN, negNaN, sNaN)), normal(1)},
		{SizeOdd, "nan-dy-positive-x", NaN, []int{5, 9}, uniform(0.5, 2), mix(0.3, normal(1), pick(qNaN, negNaN, sNaN))},
		{SizeOdd, "subnormal", Subnormal, []int{33}, pick(minSub, -minSub, maxSub, -maxSub, minNormal), subnormals},
		{SizeOdd, "rank8", Normal, []int{2, 1, 2, 1, 3, 1, 2, 2}, normal(1), normal(1)},
		{SizeTall, "long-70001", Specials, []int{70001}, mix(0.01, normal(3), pick(specials...)), mix(0.01, normal(3), pick(specials...))},
	} {
		cases = append(cases, reluBackwardCase(c.size, c.label, c.values, c.shape, c.x, c.dy))
	}
	return cases
}

func reluBackwardCase(size, label, values string, shape []int, fx, fdy fill) Case {
	return newCase(accel.ReluBackward, size, label, values, accel.NoParams{}, func(r *rand.Rand) []Tensor {
		n := elements(shape)
		return []Tensor{{Name: "x", Shape: shape, F32: fx(r, n)}, {Name: "dy", Shape: shape, F32: fdy(r, n)}}
	})
}

// specReluBackward is the gradient of relu elementwise.
func specReluBackward(X, dY []float32) []float32 {
	dX := make([]float32, len(X))
	for i, x := range X {
		switch {
		case x != x:
			dX[i] = strictmath.NaN()
		case x > 0:
			dX[i] = strictmath.Canon(dY[i])
		default:
			dX[i] = 0
		}
	}
	return dX
}

// f64ReluBackward is the gradient of relu in float64, which is exact.
func f64ReluBackward(x, dy []float32) []ev {
	dx := make([]ev, len(x))
	for i, v := range x {
		switch {
		case math.IsNaN(float64(v)):
			dx[i] = ev{v: math.NaN()}
		case v > 0:
			dx[i] = exact(dy[i])
		default:
			dx[i] = ev{v: 0}
		}
	}
	return dx
}
