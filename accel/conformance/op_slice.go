package conformance

import (
	"fmt"
	"math/rand/v2"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.SliceParams]{
	op:    accel.Slice,
	cases: sliceCases,
	spec: func(p accel.SliceParams, in []Tensor) [][]float32 {
		return [][]float32{specSlice(in[0], p)}
	},
	float64: func(p accel.SliceParams, in []Tensor) reference {
		return exactAll(specSlice(in[0], p))
	},
})

// sliceCases are windows of every rank's kind: one value repeated, rows
// reversed and columns strided, an axis expanded (step 0, ONNX's Expand),
// negative steps on a middle and the last axis, the largest rank, a long
// reversal and contiguous rows, in every value class.
func sliceCases() []Case {
	var cases []Case
	for _, c := range []struct {
		size               string
		shape              []int
		start, step, count []int
	}{
		{SizeTiny, []int{1}, []int{0}, []int{0}, []int{3}},
		{SizeOdd, []int{7, 13}, []int{6, 1}, []int{-1, 3}, []int{7, 4}},
		{SizeOdd, []int{2, 1, 5}, []int{0, 0, 0}, []int{1, 0, 1}, []int{2, 6, 5}},
		{SizeOdd, []int{3, 4, 5, 6}, []int{2, 1, 4, 0}, []int{-2, 1, -1, 5}, []int{2, 3, 5, 2}},
		{SizeOdd, []int{2, 1, 3, 1, 2, 1, 2, 3}, []int{1, 0, 2, 0, 0, 0, 1, 2}, []int{-1, 0, -1, 0, 1, 0, -1, -1}, []int{2, 2, 3, 1, 2, 1, 2, 3}},
		{SizeTall, []int{70001, 3}, []int{70000, 1}, []int{-1, 0}, []int{70001, 2}},
		{SizeTall, []int{70001, 4}, []int{1, 1}, []int{2, 1}, []int{35000, 3}},
		{SizeLarge, []int{64, 32, 32}, []int{0, 31, 0}, []int{1, -1, 1}, []int{64, 32, 32}},
	} {
		p := accel.SliceAxes(c.start, c.step, c.count)
		label := fmt.Sprintf("%s-start%v-step%v-count%v", dims(c.shape...), c.start, c.step, c.count)
		for _, class := range append([]string{Specials}, exactClasses...) {
			fx := elementFill(class)
			if class == Specials {
				fx = cycle(specials...)
			}
			shape := c.shape
			cases = append(cases, newCase(accel.Slice, c.size, label, class, p, func(r *rand.Rand) []Tensor {
				return []Tensor{{Name: "x", Shape: shape, F32: fx(r, elements(shape))}}
			}))
		}
	}
	return cases
}

// specSlice is y[i0, …, ik] = canon(x[start0 + i0·step0, …, startk +
// ik·stepk]).
func specSlice(x Tensor, p accel.SliceParams) []float32 {
	out := p.Count[:p.Rank]
	y := make([]float32, elements(out))
	idx := make([]int, len(out))
	for i := range y {
		unravel(i, out, idx)
		j := 0
		for d, n := range x.Shape {
			j = j*n + p.Start[d] + idx[d]*p.Step[d]
		}
		y[i] = strictmath.Canon(x.F32[j])
	}
	return y
}
