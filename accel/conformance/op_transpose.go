package conformance

import (
	"fmt"
	"math/rand/v2"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.TransposeParams]{
	op:    accel.Transpose,
	cases: transposeCases,
	spec: func(p accel.TransposeParams, in []Tensor) [][]float32 {
		return [][]float32{specTranspose(in[0], p.Axes(len(in[0].Shape)))}
	},
	float64: func(p accel.TransposeParams, in []Tensor) reference {
		return exactAll(specTranspose(in[0], p.Axes(len(in[0].Shape))))
	},
})

// transposeCases are the permutations of exported networks: a matrix, the
// heads of attention ([B,S,H,D] to [B,H,S,D] and its key's [B,H,D,S]),
// NCHW to NHWC, a reversal, and the largest rank.
func transposeCases() []Case {
	var cases []Case
	for _, c := range []struct {
		size  string
		shape []int
		perm  []int
	}{
		{SizeTiny, []int{1}, []int{0}},
		{SizeOdd, []int{7, 13}, []int{1, 0}},
		{SizeOdd, []int{2, 5, 3, 4}, []int{0, 2, 1, 3}},
		{SizeOdd, []int{2, 3, 5, 4}, []int{0, 1, 3, 2}},
		{SizeOdd, []int{2, 3, 4, 5}, []int{0, 2, 3, 1}},
		{SizeOdd, []int{2, 3, 4, 5}, []int{3, 2, 1, 0}},
		{SizeOdd, []int{2, 1, 3, 1, 2, 1, 2, 3}, []int{7, 5, 3, 1, 0, 2, 4, 6}},
		{SizeTall, []int{70001, 2}, []int{1, 0}},
		{SizeLarge, []int{64, 32, 32}, []int{2, 0, 1}},
	} {
		label := fmt.Sprintf("%s-perm%v", dims(c.shape...), c.perm)
		for _, class := range append([]string{Specials}, exactClasses...) {
			fx := elementFill(class)
			if class == Specials {
				fx = cycle(specials...)
			}
			p := accel.PermParams(c.perm...)
			shape := c.shape
			cases = append(cases, newCase(accel.Transpose, c.size, label, class, p, func(r *rand.Rand) []Tensor {
				return []Tensor{{Name: "x", Shape: shape, F32: fx(r, elements(shape))}}
			}))
		}
	}
	return cases
}

// specTranspose is y[i0, …] = canon(x[j]), j's axis perm[m] being i_m.
func specTranspose(x Tensor, perm []int) []float32 {
	out := make([]int, len(perm))
	for i, a := range perm {
		out[i] = x.Shape[a]
	}
	y := make([]float32, elements(out))
	idx := make([]int, len(out))
	for i := range y {
		unravel(i, out, idx)
		src := make([]int, len(perm))
		for m, a := range perm {
			src[a] = idx[m]
		}
		j := 0
		for d, n := range x.Shape {
			j = j*n + src[d]
		}
		y[i] = strictmath.Canon(x.F32[j])
	}
	return y
}
