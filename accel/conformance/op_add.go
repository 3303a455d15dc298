package conformance

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.NoParams]{
	op:    accel.Add,
	cases: addCases,
	spec:  func(_ accel.NoParams, in []Tensor) [][]float32 { return [][]float32{specAdd(in[0].F32, in[1].F32)} },
	float64: func(_ accel.NoParams, in []Tensor) reference {
		return reference{results: [][]ev{f64Add(in[0].F32, in[1].F32)}}
	},
	parts: addParts,
})

func addCases() []Case {
	var cases []Case
	// The grid: every value class but those of sums on every size class.
	for _, sh := range []struct {
		size  string
		shape []int
	}{
		{SizeTiny, []int{1}},
		{SizeOdd, []int{5, 7, 3}},
		{SizeTall, []int{50000, 2}},
		{SizeLarge, []int{64, 32, 32}},
	} {
		for _, class := range append(slices.Clone(exactClasses), Cancel) {
			fa, fb := elementFill(class), elementFill(class)
			if class == Cancel {
				// b is nearly -a: each sum cancels to a few bits of a.
				fa, fb = magnitudes(16, 24), nil
			}
			cases = append(cases, addCase(sh.size, sh.size+"-"+dims(sh.shape...), class, sh.shape, fa, fb))
		}
	}

	// Every pair of special values, signed zeros and overflow.
	for _, c := range []struct {
		size, label, values string
		shape               []int
		a, b                fill
	}{
		// Row i holds specials[i], column j adds specials[j].
		{SizeOdd, "specials-pairs", Specials, []int{len(specials), len(specials)}, eachRepeated(specials, len(specials)), cycle(specials...)},
		// -0 + -0 is -0; -0 + +0 is +0.
		{SizeTiny, "signed-zeros", NegZero, []int{2, 2}, cycle(negZero, negZero, 0, 0), cycle(negZero, 0, negZero, 0)},
		{SizeOdd, "overflow", Overflow, []int{4, 6}, pick(maxFloat, 3e38, -3e38, 1e38), pick(maxFloat, 1e38, -maxFloat)},
		// Sums of subnormals that reach the normal range, and cancel to 0.
		{SizeOdd, "subnormal-sums", Subnormal, []int{6, 5}, pick(maxSub, minSub, -minSub, minNormal, -maxSub), pick(maxSub, -minSub, minSub, negZero)},
		{SizeOdd, "rank8", Normal, []int{2, 1, 2, 1, 3, 1, 2, 2}, normal(1), normal(1)},
	} {
		cases = append(cases, addCase(c.size, c.label, c.values, c.shape, c.a, c.b))
	}
	return cases
}

// addCase draws a and b of one shape; fb nil makes b nearly -a.
func addCase(size, label, values string, shape []int, fa, fb fill) Case {
	return newCase(accel.Add, size, label, values, accel.NoParams{}, func(r *rand.Rand) []Tensor {
		n := elements(shape)
		a := fa(r, n)
		var b []float32
		if fb != nil {
			b = fb(r, n)
		} else {
			b = nearOne(r, n)
			for i := range b {
				b[i] = -a[i] * b[i]
			}
		}
		return []Tensor{{Name: "a", Shape: shape, F32: a}, {Name: "b", Shape: shape, F32: b}}
	})
}

// addParts recomputes the first, the last and a block of middle positions
// along the first axis alone.
func addParts(_ accel.NoParams, in []Tensor) []Part {
	shape := in[0].Shape
	inner := elements(shape[1:])
	var parts []Part
	for _, rs := range rowSubsets(shape[0]) {
		lo, hi := rs[0], rs[1]
		sub := slices.Clone(shape)
		sub[0] = hi - lo
		part := Part{Name: fmt.Sprintf("rows %d..%d", lo, hi-1), Offset: lo * inner}
		for _, t := range in {
			part.Inputs = append(part.Inputs, Tensor{Name: t.Name, Shape: sub, F32: slices.Clone(t.F32[lo*inner : hi*inner])})
		}
		parts = append(parts, part)
	}
	return parts
}

// specAdd is y[i] = canon(a[i] + b[i]).
func specAdd(a, b []float32) []float32 {
	y := make([]float32, len(a))
	for i := range a {
		y[i] = strictmath.Canon(a[i] + b[i])
	}
	return y
}

// f64Add is add in float64: exact up to one rounding.
func f64Add(a, b []float32) []ev {
	y := make([]ev, len(a))
	for i := range a {
		y[i] = add(exact(a[i]), exact(b[i]))
	}
	return y
}
