package conformance

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.GatherParams]{
	op:    accel.Gather,
	cases: gatherCases,
	spec: func(p accel.GatherParams, in []Tensor) [][]float32 {
		return [][]float32{specGather(in[0], in[1], p.Axis)}
	},
	float64: func(p accel.GatherParams, in []Tensor) reference {
		return exactAll(specGather(in[0], in[1], p.Axis))
	},
})

// gatherCases index the first axis (an embedding's lookup), a middle one
// and the last, with repeated and negative indices, indices of rank 2, a
// result of the largest rank, and many random indices into long tables,
// in every value class.
func gatherCases() []Case {
	var cases []Case
	for _, c := range []struct {
		size    string
		shape   []int
		axis    int
		indices []int
		fixed   []int32 // the indices, or nil for random ones in [-d, d)
	}{
		{SizeTiny, []int{1}, 0, []int{3}, []int32{0, -1, 0}},
		{SizeOdd, []int{5, 3}, 0, []int{4}, []int32{4, -5, 2, 4}},
		{SizeOdd, []int{2, 7, 3}, 1, []int{2, 3}, []int32{6, -1, 0, 3, 3, -7}},
		{SizeOdd, []int{3, 4, 5}, 2, []int{6}, []int32{-1, 0, 4, -5, 2, 2}},
		{SizeOdd, []int{2, 3, 1, 2, 1, 2, 1}, 3, []int{1, 2}, []int32{1, -2}},
		{SizeTall, []int{70001, 2}, 0, []int{5000}, nil},
		{SizeTall, []int{3, 70001}, 1, []int{257}, nil},
		{SizeLarge, []int{1000, 64}, 0, []int{32, 16}, nil},
	} {
		label := fmt.Sprintf("%s-axis%d-indices%s", dims(c.shape...), c.axis, dims(c.indices...))
		if c.fixed != nil {
			label += fmt.Sprint(c.fixed)
		}
		for _, class := range append([]string{Specials}, exactClasses...) {
			fx := elementFill(class)
			if class == Specials {
				fx = cycle(specials...)
			}
			shape, indices, fixed, d := c.shape, c.indices, c.fixed, int32(c.shape[c.axis])
			cases = append(cases, newCase(accel.Gather, c.size, label, class, accel.GatherParams{Axis: c.axis}, func(r *rand.Rand) []Tensor {
				x := Tensor{Name: "x", Shape: shape, F32: fx(r, elements(shape))}
				ind := slices.Clone(fixed)
				if ind == nil {
					ind = make([]int32, elements(indices))
					for i := range ind {
						ind[i] = r.Int32N(2*d) - d
					}
				}
				return []Tensor{x, {Name: "indices", Shape: indices, I32: ind}}
			}))
		}
	}
	return cases
}

// specGather is y[a…, k…, b…] = canon(x[a…, j, b…]) for j = indices[k…],
// or indices[k…] + d where that is negative, d x's size along axis.
func specGather(x, indices Tensor, axis int) []float32 {
	out := slices.Concat(x.Shape[:axis], indices.Shape, x.Shape[axis+1:])
	y := make([]float32, elements(out))
	idx := make([]int, len(out))
	for i := range y {
		unravel(i, out, idx)
		k := 0
		for d, n := range indices.Shape {
			k = k*n + idx[axis+d]
		}
		j := int(indices.I32[k])
		if j < 0 {
			j += x.Shape[axis]
		}
		src := slices.Concat(idx[:axis], []int{j}, idx[axis+len(indices.Shape):])
		flat := 0
		for d, n := range x.Shape {
			flat = flat*n + src[d]
		}
		y[i] = strictmath.Canon(x.F32[flat])
	}
	return y
}
