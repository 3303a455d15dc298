package conformance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.NoParams]{
	op:    accel.Softmax,
	cases: softmaxCases,
	spec: func(_ accel.NoParams, in []Tensor) [][]float32 {
		return [][]float32{specSoftmax(in[0].F32, lastDim(in[0].Shape))}
	},
	float64: func(_ accel.NoParams, in []Tensor) reference {
		return reference{results: [][]ev{f64Softmax(in[0].F32, lastDim(in[0].Shape))}}
	},
	parts: softmaxParts,
})

func lastDim(shape []int) int { return shape[len(shape)-1] }

func softmaxCases() []Case {
	var cases []Case
	// The grid: every value class on every size class, but exactly summable
	// values (exp is not exact).
	for _, sh := range []struct {
		size  string
		shape []int
	}{
		{SizeTiny, []int{1, 1}},
		{SizeOdd, []int{37, 129}},
		{SizeTall, []int{4000, 3}},
		{SizeLarge, []int{2, 150, 500}},
	} {
		for _, class := range gridClasses {
			f := elementFill(class)
			switch class {
			case Exact:
				continue
			case Normal:
				f = normal(3)
			case Cancel:
				// Values near 10^4, whose differences from the maximum are
				// what exp sees.
				f = func(r *rand.Rand, n int) []float32 {
					v := make([]float32, n)
					for i := range v {
						v[i] = float32(1e4 + 4*r.NormFloat64())
					}
					return v
				}
			}
			cases = append(cases, unaryCase(accel.Softmax, sh.size, sh.size+"-"+dims(sh.shape...), class, sh.shape, f))
		}
	}

	// Rows of ±Inf, NaN, large values and length 1.
	for _, c := range []struct {
		size, label, values string
		shape               []int
		x                   fill
	}{
		{SizeTiny, "length-1", Normal, []int{1}, cycle(2.5)},
		// Rows of one element: 1, except NaN for -Inf (-Inf - -Inf), +Inf
		// and NaN.
		{SizeOdd, "rows-of-1", Specials, []int{7, 1}, cycle(0, -3, negInf, posInf, qNaN, maxFloat, negZero)},
		{SizeOdd, "rows", Specials, []int{12, 6}, cycle(rows(
			[]float32{1, 2, 3, 4, 5, 6},
			[]float32{negInf, 0, 1, negInf, 2, 3}, // exp(-Inf) is 0
			[]float32{1, 2, posInf, 3, 4, 5},      // +Inf - +Inf is NaN, and so the sum
			[]float32{0, 1, 2, negNaN, 3, 4},      // NaN sticks in the maximum
			[]float32{negInf, negInf, negInf, negInf, negInf, negInf},
			[]float32{1e30, 1e30, -1e30, 88, 100, 1e29},       // no overflow: the maximum is subtracted
			[]float32{maxFloat, -maxFloat, 3e38, -3e38, 0, 1}, // x - m overflows to -Inf
			[]float32{negZero, 0, negZero, 0, negZero, 0},
			[]float32{minSub, maxSub, -minSub, -maxSub, minNormal, 0},
			[]float32{100, 100, 100, 100, 100, 100},
			[]float32{-100, -80, -1000, -88, -104, -150}, // results near and below the subnormal range
			[]float32{-88, -87, -103, -104, -90, -86},
		)...)},
		{SizeSkinny, "rank3-2x3x1000", Uniform, []int{2, 3, 1000}, uniform(-20, 20)},
		{SizeOdd, "large-values", Overflow, []int{4, 50}, magnitudes(100, 127)},
		{SizeOdd, "ties", Uniform, []int{3, 8}, pick(1, 1, 2)},
		{SizeLarge, "rows-300x500", Normal, []int{300, 500}, normal(5)},
		{SizeOdd, "sparse-specials", Specials, []int{10, 7}, mix(0.1, normal(2), pick(specials...))},
	} {
		cases = append(cases, unaryCase(accel.Softmax, c.size, c.label, c.values, c.shape, c.x))
	}
	return cases
}

// softmaxParts recomputes the first row, the last row and a block from the
// middle alone, as a matrix of rows.
func softmaxParts(_ accel.NoParams, in []Tensor) []Part {
	x := in[0]
	l := lastDim(x.Shape)
	var parts []Part
	for _, rs := range rowSubsets(len(x.F32) / l) {
		lo, hi := rs[0], rs[1]
		sub := Tensor{Name: x.Name, Shape: []int{hi - lo, l}, F32: slices.Clone(x.F32[lo*l : hi*l])}
		parts = append(parts, Part{Name: fmt.Sprintf("rows %d..%d", lo, hi-1), Inputs: []Tensor{sub}, Offset: lo * l})
	}
	return parts
}

// specSoftmaxRow computes e[i] = exp(x[i] - m) for one row x and returns
// the row's maximum m (under the maxpool rule) and s, the sum of e from +0
// in order.
func specSoftmaxRow(x, e []float32) (m, s float32) {
	m = x[0]
	for _, v := range x[1:] {
		if m == m && (v != v || v > m) {
			m = v
		}
	}
	for i := range x {
		e[i] = strictmath.Exp(x[i] - m)
	}
	for i := range x {
		s = s + e[i]
	}
	return m, s
}

// specSoftmax is softmax over rows of length L, the last axis.
func specSoftmax(X []float32, L int) []float32 {
	Y := make([]float32, len(X))
	e := make([]float32, L)
	for r := 0; r < len(X); r += L {
		_, s := specSoftmaxRow(X[r:r+L], e)
		for i := 0; i < L; i++ {
			Y[r+i] = strictmath.Canon(e[i] / s)
		}
	}
	return Y
}

// f64Softmax is softmax over the last axis of length l in float64.
func f64Softmax(x []float32, l int) []ev {
	y := make([]ev, len(x))
	for r := 0; r < len(x); r += l {
		row := x[r : r+l]
		m := math.Inf(-1)
		for _, v := range row {
			if v != v || float64(v) > m {
				m = float64(v)
			}
			if math.IsNaN(m) {
				break
			}
		}
		e := make([]ev, l)
		var s sum
		for i, v := range row {
			e[i] = expEv(sub(exact(v), ev{v: m}))
			s.add(e[i])
		}
		total := s.ev()
		for i := range row {
			y[r+i] = div(e[i], total)
		}
	}
	return y
}
