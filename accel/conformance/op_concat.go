package conformance

import (
	"fmt"
	"math/rand/v2"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.ConcatParams]{
	op:    accel.Concat,
	cases: concatCases,
	spec: func(p accel.ConcatParams, in []Tensor) [][]float32 {
		return [][]float32{specConcat(in[0], in[1], p.Axis)}
	},
	float64: func(p accel.ConcatParams, in []Tensor) reference {
		return exactAll(specConcat(in[0], in[1], p.Axis))
	},
})

// concatCases join along the first axis, a middle one (a class token
// before a ViT's patches) and the last, in every value class.
func concatCases() []Case {
	var cases []Case
	for _, c := range []struct {
		size string
		a, b []int
		axis int
	}{
		{SizeTiny, []int{1}, []int{1}, 0},
		{SizeOdd, []int{3, 5}, []int{4, 5}, 0},
		{SizeOdd, []int{2, 1, 8}, []int{2, 16, 8}, 1},
		{SizeOdd, []int{2, 3, 4}, []int{2, 3, 7}, 2},
		{SizeTall, []int{70001, 1}, []int{70001, 2}, 1},
	} {
		for _, class := range append([]string{Specials}, exactClasses...) {
			fx := elementFill(class)
			if class == Specials {
				fx = cycle(specials...)
			}
			a, b := c.a, c.b
			label := fmt.Sprintf("%s+%s-axis%d", dims(a...), dims(b...), c.axis)
			cases = append(cases, newCase(accel.Concat, c.size, label, class, accel.ConcatParams{Axis: c.axis}, func(r *rand.Rand) []Tensor {
				return []Tensor{{Name: "a", Shape: a, F32: fx(r, elements(a))}, {Name: "b", Shape: b, F32: fx(r, elements(b))}}
			}))
		}
	}
	return cases
}

// specConcat is y[…, i, …] = canon(a[…, i, …]) for i below a's size along
// axis, canon(b[…, i − that, …]) past it.
func specConcat(a, b Tensor, axis int) []float32 {
	out := append([]int(nil), a.Shape...)
	out[axis] += b.Shape[axis]
	y := make([]float32, elements(out))
	idx := make([]int, len(out))
	for i := range y {
		unravel(i, out, idx)
		src, shape := a, a.Shape
		k := idx[axis]
		if k >= a.Shape[axis] {
			src, shape, k = b, b.Shape, k-a.Shape[axis]
		}
		j := 0
		for d, n := range shape {
			v := idx[d]
			if d == axis {
				v = k
			}
			j = j*n + v
		}
		y[i] = strictmath.Canon(src.F32[j])
	}
	return y
}
