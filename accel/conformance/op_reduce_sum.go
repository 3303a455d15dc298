package conformance

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.ReduceSumParams]{
	op:    accel.ReduceSum,
	cases: reduceSumCases,
	spec: func(p accel.ReduceSumParams, in []Tensor) [][]float32 {
		return [][]float32{specReduceSum(in[0].F32, in[0].Shape, p.Axes)}
	},
	float64: func(p accel.ReduceSumParams, in []Tensor) reference {
		return reference{results: [][]ev{f64ReduceSum(in[0].F32, in[0].Shape, p.Axes)}}
	},
	parts: reduceSumParts,
})

// axesMask is the parameter that sums the given axes.
func axesMask(axes ...int) accel.ReduceSumParams {
	var p accel.ReduceSumParams
	for _, a := range axes {
		p.Axes |= 1 << a
	}
	return p
}

func reduceSumCases() []Case {
	var cases []Case
	// The grid: every value class of a sum on every size class, each
	// output's terms drawn in their order, so that pairs cancel and
	// specials are rare for the sum's length. Tall and skinny sums run
	// over 12 and 274 runs of the blocksum, the last of them short; the
	// large one is a convolution's bias gradient.
	for _, sh := range []struct {
		size  string
		shape []int
		p     accel.ReduceSumParams
	}{
		{SizeTiny, []int{1}, axesMask(0)},
		{SizeOdd, []int{37, 13}, axesMask(0)},
		{SizeTall, []int{3000, 3}, axesMask(0)},
		{SizeSkinny, []int{2, 70001}, axesMask(1)},
		{SizeLarge, []int{8, 16, 28, 28}, axesMask(0, 2, 3)},
	} {
		terms := reduceTerms(sh.shape, sh.p.Axes)
		for _, class := range gridClasses {
			label := sh.size + "-" + dims(sh.shape...) + "-axes" + axesLabel(sh.p)
			cases = append(cases, reduceSumCase(sh.size, label, class, sh.shape, sh.p, reduceFill(class, terms)))
		}
	}

	// Every kind of axis set, runs of the blocksum around 256 terms, the
	// tree over the runs, and special values.
	ones := func(r *rand.Rand, n int) []float32 { return slices.Repeat([]float32{1}, n) }
	for _, c := range []struct {
		size, label, values string
		shape               []int
		p                   accel.ReduceSumParams
		x                   fill // in each output's term order
	}{
		{SizeOdd, "dense-bias", Normal, []int{64, 10}, axesMask(0), normal(1)},
		{SizeOdd, "dense-bias-3-runs", Normal, []int{600, 7}, axesMask(0), normal(1)},
		{SizeOdd, "conv-bias", Normal, []int{3, 4, 9, 11}, axesMask(0, 2, 3), normal(1)},
		// Runs of 256 terms across images of 196.
		{SizeOdd, "conv-bias-runs-across-images", Normal, []int{5, 3, 14, 14}, axesMask(0, 2, 3), normal(1)},
		{SizeOdd, "conv-bias-13-channels", Normal, []int{2, 13, 5, 31}, axesMask(0, 2, 3), normal(1)},
		{SizeOdd, "rows", Normal, []int{5, 513}, axesMask(1), normal(1)},
		{SizeOdd, "everything", Normal, []int{7, 11, 13}, axesMask(0, 1, 2), normal(1)},
		{SizeOdd, "everything-2100", Normal, []int{2100}, axesMask(0), normal(1)},
		{SizeOdd, "middle", Normal, []int{4, 300, 3}, axesMask(1), normal(1)},
		{SizeOdd, "outer-and-inner", Normal, []int{3, 4, 50, 6}, axesMask(0, 3), normal(1)},
		{SizeOdd, "inner-two", Normal, []int{3, 4, 50, 6}, axesMask(2, 3), normal(1)},
		{SizeOdd, "outer-two", Normal, []int{30, 20, 4, 3}, axesMask(0, 1), normal(1)},
		{SizeOdd, "alternate-even", Normal, []int{3, 2, 3, 2, 3, 2, 3, 5}, axesMask(0, 2, 4, 6), normal(1)},
		{SizeOdd, "alternate-odd", Normal, []int{3, 2, 3, 2, 3, 2, 3, 5}, axesMask(1, 3, 5, 7), normal(1)},
		{SizeOdd, "rank8-all", Normal, []int{2, 3, 2, 3, 2, 3, 2, 3}, axesMask(0, 1, 2, 3, 4, 5, 6, 7), normal(1)},
		{SizeOdd, "rank8-size-1-axes", Normal, []int{2, 1, 3, 1, 2, 5, 1, 4}, axesMask(1, 2, 5, 7), normal(1)},
		// Axes of size 1 alone: one term each, +0 + x, so -0 gives +0.
		{SizeOdd, "size-1-axis", NegZero, []int{4, 1, 5}, axesMask(1), mix(0.5, normal(1), pick(negZero))},
		{SizeTiny, "one-term-neg-zero", NegZero, []int{3, 1}, axesMask(1), cycle(negZero)},
		{SizeOdd, "neg-zeros", NegZero, []int{20, 6}, axesMask(0), mix(0.97, normal(1), pick(negZero, negZero, 0))},
		// Sums of 255, 256, 257, 512 and 513 terms.
		{SizeOdd, "terms-255", Normal, []int{255, 3}, axesMask(0), normal(1)},
		{SizeOdd, "terms-256", Normal, []int{256, 3}, axesMask(0), normal(1)},
		{SizeOdd, "terms-257", Normal, []int{257, 3}, axesMask(0), normal(1)},
		{SizeOdd, "terms-512", Normal, []int{2, 512}, axesMask(1), normal(1)},
		{SizeOdd, "terms-513", Normal, []int{2, 513}, axesMask(1), normal(1)},
		// Trees of 7 and 11 runs, whose complete subtrees the tree adds
		// from the right: (4 + (2 + 1)) and (8 + (2 + 1)).
		{SizeOdd, "tree-of-7-runs", Normal, []int{2, 1700}, axesMask(1), normal(1)},
		{SizeOdd, "tree-of-7-runs-columns", Normal, []int{1700, 3}, axesMask(0), normal(1)},
		{SizeOdd, "tree-of-11-runs-conv-bias", Normal, []int{11, 2, 16, 16}, axesMask(0, 2, 3), normal(1)},
		// 2^24 and then ones: each run of the blocksum adds its ones in
		// its own sum, which one chain would lose against 2^24.
		{SizeOdd, "runs-keep-small-terms", Cancel, []int{3, 1000}, axesMask(1), func(r *rand.Rand, n int) []float32 {
			v := ones(r, n)
			v[0] = 1 << 24
			return v
		}},
		{SizeOdd, "runs-keep-small-terms-columns", Cancel, []int{1000, 3}, axesMask(0), func(r *rand.Rand, n int) []float32 {
			v := ones(r, n)
			v[0], v[300] = 1<<24, -(1 << 24)
			return v
		}},
		{SizeOdd, "cancel-runs", Cancel, []int{4, 2, 700}, axesMask(1, 2), bigPairs},
		{SizeOdd, "overflow", Overflow, []int{4, 300}, axesMask(1), pick(maxFloat, 3e38, -3e38, 1e38)},
		// A sum that passes MaxFloat32 in one run and comes back in
		// another.
		{SizeOdd, "overflow-in-a-run", Overflow, []int{2, 600}, axesMask(1), mix(0.01, normal(1), pick(maxFloat, -maxFloat))},
		{SizeOdd, "inf", Inf, []int{5, 400}, axesMask(1), mix(0.002, normal(1), pick(posInf, negInf))},
		{SizeOdd, "nan-payloads", NaN, []int{300, 5}, axesMask(0), mix(0.002, normal(1), pick(negNaN, sNaN))},
		{SizeOdd, "specials", Specials, []int{7, 9}, axesMask(1), pick(specials...)},
		{SizeOdd, "subnormal", Subnormal, []int{6, 300}, axesMask(1), pick(minSub, -minSub, maxSub, -maxSub, minNormal)},
		{SizeOdd, "wide", Wide, []int{9, 700}, axesMask(1), magnitudes(-40, 40)},
		{SizeOdd, "exact", Exact, []int{3, 5, 300}, axesMask(0, 2), integers(1<<13, -2)},
		{SizeLarge, "conv-bias-mnist", Normal, []int{64, 32, 28, 28}, axesMask(0, 2, 3), normal(1)},
		{SizeLarge, "dense-bias-wide", Normal, []int{1000, 700}, axesMask(0), normal(1)},
		{SizeTall, "many-short-rows", Normal, []int{30000, 3}, axesMask(1), normal(1)},
		{SizeSkinny, "everything-70001", Normal, []int{70001}, axesMask(0), normal(1)},
	} {
		cases = append(cases, reduceSumCase(c.size, c.label, c.values, c.shape, c.p, c.x))
	}
	return cases
}

// axesLabel lists the summed axes, "0.2.3".
func axesLabel(p accel.ReduceSumParams) string {
	s := ""
	for i := range accel.MaxRank {
		if p.Axes&(1<<i) != 0 {
			if s != "" {
				s += "."
			}
			s += fmt.Sprint(i)
		}
	}
	return s
}

// reduceTerms is the number of terms of each output of a reduction.
func reduceTerms(shape []int, axes uint32) int {
	n := 1
	for i, d := range shape {
		if axes&(1<<i) != 0 {
			n *= d
		}
	}
	return n
}

// reduceFill is the fill of a value class for a sum of terms single values.
func reduceFill(class string, terms int) fill {
	switch class {
	case NaN:
		return mix(rare(terms), normal(1), pick(qNaN, negNaN, sNaN))
	case Inf:
		return mix(rare(terms), normal(1), pick(posInf, negInf))
	case NegZero:
		return mix(zeroRate(terms), normal(1), pick(negZero, negZero, 0))
	case Exact:
		// Every partial sum is an integer below 2^24, times 2^-4.
		return integers(max(1, (1<<24-1)/terms), -4)
	}
	return elementFill(class)
}

// reduceSumCase draws each output's terms with fx, in their order, and lays
// them out in x.
func reduceSumCase(size, label, values string, shape []int, p accel.ReduceSumParams, fx fill) Case {
	return newCase(accel.ReduceSum, size, label, values, p, func(r *rand.Rand) []Tensor {
		n, terms := elements(shape), reduceTerms(shape, p.Axes)
		drawn := fx(r, n) // output after output, each in term order
		x := make([]float32, n)
		next := make([]int, n/terms) // the next term of each output
		idx := make([]int, len(shape))
		for e := range x {
			o := 0
			for i, d := range shape {
				if p.Axes&(1<<i) == 0 {
					o = o*d + idx[i]
				}
			}
			x[e] = drawn[o*terms+next[o]]
			next[o]++
			for i := len(shape) - 1; i >= 0; i-- {
				if idx[i]++; idx[i] < shape[i] {
					break
				}
				idx[i] = 0
			}
		}
		return []Tensor{{Name: "x", Shape: shape, F32: x}}
	})
}

// reduceSumParts recomputes the last index of axis 0 alone where axis 0 is
// not summed.
func reduceSumParts(p accel.ReduceSumParams, in []Tensor) []Part {
	x := in[0]
	n := x.Shape[0]
	if n < 2 || p.Axes&1 != 0 || len(x.Shape) < 2 {
		return nil
	}
	per := len(x.F32) / n
	last := Tensor{Name: x.Name, Shape: append([]int{1}, x.Shape[1:]...), F32: slices.Clone(x.F32[(n-1)*per:])}
	outs := len(x.F32) / reduceTerms(x.Shape, p.Axes)
	return []Part{{Name: fmt.Sprintf("index %d of axis 0", n-1), Inputs: []Tensor{last}, Offset: (n - 1) * outs / n}}
}

// reduceIndex lists, for a reduction of x with shape over axes, the offset
// in x of every output's place and of every term from that place: the
// kept axes and the summed ones, each in row-major order.
func reduceIndex(shape []int, axes uint32) (outs, terms []int) {
	outs, terms = []int{0}, []int{0}
	stride := 1
	for i := len(shape) - 1; i >= 0; i-- {
		list := &outs
		if axes&(1<<i) != 0 {
			list = &terms
		}
		// Axis i is outer to the ones before: each of its indices
		// repeats their offsets.
		var next []int
		for k := range shape[i] {
			for _, off := range *list {
				next = append(next, k*stride+off)
			}
		}
		*list = next
		stride *= shape[i]
	}
	return outs, terms
}

// specReduceSum is reduce_sum of X with shape over the axes set in axes.
func specReduceSum(X []float32, shape []int, axes uint32) []float32 {
	outs, terms := reduceIndex(shape, axes)
	Y := make([]float32, len(outs))
	for o, base := range outs {
		t := make([]float32, len(terms))
		for k, off := range terms {
			t[k] = X[base+off]
		}
		Y[o] = strictmath.Canon(strictmath.BlockSum(t))
	}
	return Y
}

// f64ReduceSum is reduce_sum in float64, with the error bound of a sum in any
// order.
func f64ReduceSum(x []float32, shape []int, axes uint32) []ev {
	outs, terms := reduceIndex(shape, axes)
	y := make([]ev, len(outs))
	for o, base := range outs {
		var s sum
		for _, off := range terms {
			s.add(exact(x[base+off]))
		}
		y[o] = s.ev()
	}
	return y
}
