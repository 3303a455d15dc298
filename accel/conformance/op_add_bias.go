package conformance

import (
	"fmt"
	"math/rand/v2"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.AddBiasParams]{
	op:    accel.AddBias,
	cases: addBiasCases,
	spec: func(p accel.AddBiasParams, in []Tensor) [][]float32 {
		return [][]float32{specAddBias(in[0].F32, in[0].Shape, in[1].F32, p.Axis)}
	},
	float64: func(p accel.AddBiasParams, in []Tensor) reference {
		return reference{results: [][]ev{f64AddBias(in[0].F32, in[0].Shape, in[1].F32, p.Axis)}}
	},
})

func addBiasCases() []Case {
	var cases []Case
	// The grid: every value class on every size class.
	for _, sh := range []struct {
		size  string
		shape []int
		axis  int
	}{
		{SizeTiny, []int{1}, 0},
		{SizeOdd, []int{3, 5, 7}, 1},
		{SizeTall, []int{20000, 3}, 0},
		{SizeLarge, []int{64, 32, 32}, 1},
	} {
		for _, class := range gridClasses {
			f := elementFill(class)
			label := sh.size + "-" + dims(sh.shape...) + "-axis" + fmt.Sprint(sh.axis)
			cases = append(cases, addBiasCase(sh.size, label, class, sh.shape, sh.axis, f, f))
		}
	}

	// Every axis position, every pair of special values, and sums that
	// overflow.
	for _, c := range []struct {
		size, label, values string
		shape               []int
		axis                int
		fx, fb              fill
	}{
		{SizeOdd, "vector-7", Normal, []int{7}, 0, normal(1), normal(1)},
		{SizeOdd, "rows-axis0", Normal, []int{5, 9}, 0, normal(1), normal(1)},
		{SizeOdd, "cols-axis1", Normal, []int{5, 9}, 1, normal(1), normal(1)},
		{SizeOdd, "nchw-channels", Normal, []int{2, 3, 4, 5}, 1, normal(1), normal(1)},
		{SizeOdd, "first-axis-rank4", Normal, []int{4, 2, 3, 3}, 0, normal(1), normal(1)},
		{SizeOdd, "last-axis-rank3", Normal, []int{3, 4, 17}, 2, normal(1), normal(1)},
		{SizeOdd, "axis-of-1", Normal, []int{3, 1, 4}, 1, normal(1), normal(1)},
		{SizeOdd, "rank8", Normal, []int{2, 1, 2, 1, 3, 1, 2, 2}, 4, normal(1), normal(1)},
		{SizeOdd, "magnitudes", Wide, []int{16, 33}, 1, magnitudes(-40, 40), magnitudes(-40, 40)},
		// Row i holds specials[i], column j adds specials[j]: Inf + -Inf,
		// -0 + -0, MaxFloat32 + MaxFloat32, ...
		{SizeOdd, "specials-pairs", Specials, []int{len(specials), len(specials)}, 1, eachRepeated(specials, len(specials)), cycle(specials...)},
		{SizeOdd, "overflow", Overflow, []int{4, 6}, 0, pick(maxFloat, 3e38, -3e38, 1e38), pick(maxFloat, 1e38, -maxFloat)},
		{SizeTall, "long-3x30001", Normal, []int{3, 30001}, 0, normal(1), normal(1)},
		{SizeOdd, "subnormal", Subnormal, []int{6, 5}, 1, pick(minSub, -minSub, maxSub, -maxSub, minNormal), pick(minSub, -minSub, maxSub, negZero)},
	} {
		cases = append(cases, addBiasCase(c.size, c.label, c.values, c.shape, c.axis, c.fx, c.fb))
	}
	return cases
}

func addBiasCase(size, label, values string, shape []int, axis int, fx, fb fill) Case {
	return newCase(accel.AddBias, size, label, values, accel.AddBiasParams{Axis: axis}, func(r *rand.Rand) []Tensor {
		return []Tensor{
			{Name: "x", Shape: shape, F32: fx(r, elements(shape))},
			{Name: "bias", Shape: []int{shape[axis]}, F32: fb(r, shape[axis])},
		}
	})
}

// specAddBias is Y[…, i, …] = canon(X[…, i, …] + b[i]) with i the index
// along axis.
func specAddBias(X []float32, shape []int, b []float32, axis int) []float32 {
	inner := 1 // elements per step along axis
	for _, d := range shape[axis+1:] {
		inner *= d
	}
	Y := make([]float32, len(X))
	for e := range X {
		i := (e / inner) % shape[axis]
		Y[e] = strictmath.Canon(X[e] + b[i])
	}
	return Y
}

// f64AddBias is add_bias in float64: one rounding.
func f64AddBias(x []float32, shape []int, bias []float32, axis int) []ev {
	inner := 1
	for _, d := range shape[axis+1:] {
		inner *= d
	}
	y := make([]ev, len(x))
	for i := range x {
		y[i] = add(exact(x[i]), exact(bias[i/inner%shape[axis]]))
	}
	return y
}
