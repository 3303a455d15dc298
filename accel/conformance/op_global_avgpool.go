package conformance

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.NoParams]{
	op:    accel.GlobalAvgPool,
	cases: globalAvgPoolCases,
	spec: func(_ accel.NoParams, in []Tensor) [][]float32 {
		return [][]float32{specGlobalAvgPool(in[0].F32, in[0].Shape)}
	},
	float64: func(_ accel.NoParams, in []Tensor) reference {
		return reference{results: [][]ev{f64GlobalAvgPool(in[0].F32, in[0].Shape)}}
	},
	parts: globalAvgPoolParts,
})

func globalAvgPoolCases() []Case {
	var cases []Case
	// The grid: every value class of a sum on every size class, each
	// plane's terms drawn in their order. The skinny planes run over 352
	// runs of the blocksum, the last of them short; the large one is the
	// last feature map of a MobileNetV2 batch.
	for _, sh := range []struct {
		size  string
		shape []int
	}{
		{SizeTiny, []int{1, 1, 1, 1}},
		{SizeOdd, []int{2, 3, 5, 7}},
		{SizeTall, []int{4, 1280, 3, 3}},
		{SizeSkinny, []int{1, 2, 300, 300}},
		{SizeLarge, []int{16, 1280, 7, 7}},
	} {
		for _, class := range gridClasses {
			fx := reduceFill(class, sh.shape[2]*sh.shape[3])
			cases = append(cases, globalAvgPoolCase(sh.size, sh.size+"-"+dims(sh.shape...), class, sh.shape, fx))
		}
	}
	ones := func(r *rand.Rand, n int) []float32 { return slices.Repeat([]float32{1}, n) }
	for _, c := range []struct {
		size, label, values string
		shape               []int
		x                   fill
	}{
		{SizeOdd, "mobilenet-7x7", Normal, []int{1, 40, 7, 7}, normal(3)},
		// Planes of 255, 256, 257, 512 and 513 terms, and a tree of 7 runs
		// (4 + (2 + 1)).
		{SizeOdd, "terms-255", Normal, []int{1, 3, 15, 17}, normal(1)},
		{SizeOdd, "terms-256", Normal, []int{1, 3, 16, 16}, normal(1)},
		{SizeOdd, "terms-257", Normal, []int{1, 3, 1, 257}, normal(1)},
		{SizeOdd, "terms-512", Normal, []int{2, 1, 16, 32}, normal(1)},
		{SizeOdd, "terms-513", Normal, []int{2, 1, 27, 19}, normal(1)},
		{SizeOdd, "tree-of-7-runs", Normal, []int{1, 2, 34, 50}, normal(1)},
		// 2^24 and then ones: each run adds its ones in its own sum.
		{SizeOdd, "runs-keep-small-terms", Cancel, []int{1, 3, 20, 50}, func(r *rand.Rand, n int) []float32 {
			v := ones(r, n)
			v[0] = 1 << 24
			return v
		}},
		// A plane of -0 sums to +0 (the sum starts at +0), and +0 / d is
		// +0.
		{SizeTiny, "neg-zeros", NegZero, []int{1, 2, 2, 2}, cycle(negZero)},
		// The sum, not the mean, overflows: a plane of MaxFloat32 gives
		// +Inf though its mean is finite.
		{SizeOdd, "sum-overflows", Overflow, []int{1, 2, 3, 3}, cycle(maxFloat)},
		{SizeOdd, "overflow-in-a-run", Overflow, []int{2, 1, 20, 30}, mix(0.01, normal(1), pick(maxFloat, -maxFloat))},
		// Subnormal sums divided again: results below the smallest
		// subnormal round to zero.
		{SizeOdd, "subnormal", Subnormal, []int{2, 3, 3, 3}, pick(minSub, -minSub, maxSub, -maxSub, minNormal)},
		{SizeOdd, "specials", Specials, []int{3, 7, 1, 3}, pick(specials...)},
		{SizeOdd, "nan-payloads", NaN, []int{3, 5, 10, 10}, mix(0.005, normal(1), pick(negNaN, sNaN))},
		{SizeOdd, "exact", Exact, []int{2, 3, 17, 17}, integers((1<<24-1)/289, -4)},
		{SizeOdd, "wide-planes", Normal, []int{1, 1, 1, 2100}, normal(1)},
	} {
		cases = append(cases, globalAvgPoolCase(c.size, c.label, c.values, c.shape, c.x))
	}
	return cases
}

func globalAvgPoolCase(size, label, values string, shape []int, fx fill) Case {
	return newCase(accel.GlobalAvgPool, size, label, values, accel.NoParams{}, func(r *rand.Rand) []Tensor {
		return []Tensor{{Name: "x", Shape: shape, F32: fx(r, elements(shape))}}
	})
}

// globalAvgPoolParts recomputes the first, the last and a block of middle
// images alone.
func globalAvgPoolParts(_ accel.NoParams, in []Tensor) []Part {
	x := in[0]
	c, plane := x.Shape[1], x.Shape[2]*x.Shape[3]
	var parts []Part
	for _, rs := range rowSubsets(x.Shape[0]) {
		lo, hi := rs[0], rs[1]
		sub := []int{hi - lo, c, x.Shape[2], x.Shape[3]}
		parts = append(parts, Part{
			Name:   fmt.Sprintf("images %d..%d", lo, hi-1),
			Inputs: []Tensor{{Name: x.Name, Shape: sub, F32: slices.Clone(x.F32[lo*c*plane : hi*c*plane])}},
			Offset: lo * c,
		})
	}
	return parts
}

// specGlobalAvgPool is y[n,c] = canon(blocksum(x[n,c,·,·]) / float32(H·W)),
// the plane in row-major order.
func specGlobalAvgPool(X []float32, shape []int) []float32 {
	plane := shape[2] * shape[3]
	d := float32(plane)
	Y := make([]float32, len(X)/plane)
	for p := range Y {
		s := strictmath.Canon(strictmath.BlockSum(X[p*plane : (p+1)*plane]))
		Y[p] = strictmath.Canon(s / d)
	}
	return Y
}

// f64GlobalAvgPool is the mean in float64, with the error bound of a sum in
// any order and of the division.
func f64GlobalAvgPool(x []float32, shape []int) []ev {
	plane := shape[2] * shape[3]
	d := exact(float32(plane))
	y := make([]ev, len(x)/plane)
	for p := range y {
		var s sum
		for _, v := range x[p*plane : (p+1)*plane] {
			s.add(exact(v))
		}
		y[p] = div(s.ev(), d)
	}
	return y
}
