package conformance

import (
	"math"
	"math/rand/v2"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.ClipParams]{
	op:    accel.Clip,
	cases: clipCases,
	spec: func(p accel.ClipParams, in []Tensor) [][]float32 {
		return [][]float32{specClip(in[0].F32, p)}
	},
	float64: func(p accel.ClipParams, in []Tensor) reference {
		return reference{results: [][]ev{f64Clip(in[0].F32, p)}}
	},
	// Elementwise: rows along the first axis, as add's.
	parts: func(_ accel.ClipParams, in []Tensor) []Part { return addParts(accel.NoParams{}, in) },
})

// relu6 is MobileNet's activation.
var relu6 = accel.ClipParams{Min: 0, Max: 6}

func clipCases() []Case {
	var cases []Case
	// The grid: every value class of an operation that computes no sum, on
	// every size class, between bounds that most normal values pass.
	for _, sh := range elementwiseSizes {
		for _, class := range exactClasses {
			cases = append(cases, clipCase(sh.size, sh.size+"-"+dims(sh.shape...), class, sh.shape, accel.ClipParams{Min: -0.5, Max: 0.75}, elementFill(class)))
		}
	}
	for _, c := range []struct {
		size, label, values string
		shape               []int
		p                   accel.ClipParams
		x                   fill
	}{
		// NaN payloads give the canonical NaN; infinities meet the bounds.
		{SizeOdd, "relu6-each-special", Specials, []int{len(specials)}, relu6, cycle(specials...)},
		{SizeOdd, "relu6-normal", Normal, []int{9, 31}, relu6, normal(8)},
		// A zero equal to a zero bound keeps its own sign: -0 < +0 and
		// +0 > -0 are both false.
		{SizeTiny, "zeros-at-zero-bounds", NegZero, []int{2, 2}, accel.ClipParams{Min: 0, Max: negZero}, cycle(0, negZero)},
		{SizeTiny, "zeros-at-relu6", NegZero, []int{2}, relu6, cycle(negZero, 0)},
		// Min above max gives max wherever x is not NaN.
		{SizeOdd, "min-above-max", Specials, []int{len(specials)}, accel.ClipParams{Min: 1, Max: -1}, cycle(specials...)},
		// Infinite bounds leave everything; the largest floats as bounds
		// (ONNX's defaults) clip the infinities.
		{SizeOdd, "infinite-bounds", Specials, []int{len(specials)}, accel.ClipParams{Min: negInf, Max: posInf}, cycle(specials...)},
		{SizeOdd, "largest-float-bounds", Specials, []int{len(specials)}, accel.ClipParams{Min: -maxFloat, Max: maxFloat}, cycle(specials...)},
		{SizeOdd, "subnormal-bounds", Subnormal, []int{33}, accel.ClipParams{Min: -minSub, Max: maxSub},
			pick(minSub, -minSub, maxSub, -maxSub, minNormal, -minNormal, 0, negZero)},
		{SizeOdd, "rank4-mixed", Specials, []int{2, 3, 4, 5}, relu6, mix(0.1, normal(6), pick(specials...))},
		{SizeTall, "long-70001", Specials, []int{70001}, relu6, mix(0.01, normal(6), pick(specials...))},
	} {
		cases = append(cases, clipCase(c.size, c.label, c.values, c.shape, c.p, c.x))
	}
	return cases
}

func clipCase(size, label, values string, shape []int, p accel.ClipParams, fx fill) Case {
	return newCase(accel.Clip, size, label, values, p, func(r *rand.Rand) []Tensor {
		return []Tensor{{Name: "x", Shape: shape, F32: fx(r, elements(shape))}}
	})
}

// specClip is y = canon(min(max(x, lo), hi)) as the contract writes it:
// lo where x < lo, then hi where that is > hi.
func specClip(X []float32, p accel.ClipParams) []float32 {
	Y := make([]float32, len(X))
	for i, x := range X {
		v := x
		if v < p.Min {
			v = p.Min
		}
		if v > p.Max {
			v = p.Max
		}
		Y[i] = strictmath.Canon(v)
	}
	return Y
}

// f64Clip is clip in float64, which is exact: NaN for NaN, else the value
// clamped, first below, then above.
func f64Clip(x []float32, p accel.ClipParams) []ev {
	y := make([]ev, len(x))
	lo, hi := float64(p.Min), float64(p.Max)
	for i, v := range x {
		switch f := float64(v); {
		case f != f:
			y[i] = ev{v: math.NaN()}
		default:
			y[i] = ev{v: math.Min(math.Max(f, lo), hi)}
			if lo > hi {
				y[i] = ev{v: hi}
			}
		}
	}
	return y
}
