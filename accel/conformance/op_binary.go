package conformance

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.BinaryParams]{
	op:    accel.Binary,
	cases: binaryCases,
	spec: func(p accel.BinaryParams, in []Tensor) [][]float32 {
		return [][]float32{specBinary(in[0], in[1], p.Func)}
	},
	float64: func(p accel.BinaryParams, in []Tensor) reference {
		return reference{results: [][]ev{f64Binary(in[0], in[1], p.Func)}}
	},
	parts: binaryParts,
})

var binaryFuncs = []accel.BinaryFunc{accel.BinaryAdd, accel.BinarySub, accel.BinaryMul, accel.BinaryDiv}

// binaryShapes are the broadcasts of exported networks: one shape, a
// scalar, a row or a column repeated, both operands repeated, and operands
// of different ranks.
var binaryShapes = []struct {
	label string
	a, b  []int
}{
	{"same", []int{7, 13}, []int{7, 13}},
	{"scalar", []int{7, 13}, []int{1}},
	{"scalar-first", []int{1}, []int{7, 13}},
	{"row", []int{7, 13}, []int{13}},
	{"column", []int{7, 13}, []int{7, 1}},
	{"outer", []int{7, 1}, []int{1, 13}},
	{"rank3-bias", []int{2, 5, 6}, []int{6}},
	{"rank4-channels", []int{2, 3, 4, 5}, []int{1, 3, 1, 1}},
	{"rank4-both", []int{2, 1, 4, 1}, []int{3, 1, 5}},
}

func binaryCases() []Case {
	var cases []Case
	for _, f := range binaryFuncs {
		for _, sh := range binaryShapes {
			cases = append(cases, binaryCase(SizeOdd, f.String()+"-"+sh.label, Normal, sh.a, sh.b, f, normal(4), normal(4)))
		}
		// Every pair of special values: a cycles through them, b through
		// them once per cycle of a.
		n := len(specials)
		cases = append(cases,
			binaryCase(SizeOdd, f.String()+"-special-pairs", Specials, []int{n, n}, []int{n, 1}, f, cycle(specials...), cycle(specials...)),
			binaryCase(SizeOdd, f.String()+"-subnormal", Subnormal, []int{33}, []int{33}, f,
				pick(minSub, -minSub, maxSub, -maxSub, minNormal, -minNormal, 0, negZero),
				pick(minSub, -minSub, maxSub, -maxSub, minNormal, -minNormal, 0, negZero, 0.5, 2)),
			binaryCase(SizeTall, f.String()+"-long-70001", Specials, []int{70001}, []int{1}, f, mix(0.01, normal(6), pick(specials...)), normal(2)),
		)
	}
	// The grid, for division, whose rounding is the least simple.
	for _, sh := range elementwiseSizes {
		for _, class := range exactClasses {
			cases = append(cases, binaryCase(sh.size, "div-"+sh.size+"-"+dims(sh.shape...), class, sh.shape, sh.shape, accel.BinaryDiv, elementFill(class), elementFill(class)))
		}
	}
	return cases
}

func binaryCase(size, label, values string, a, b []int, f accel.BinaryFunc, fa, fb fill) Case {
	return newCase(accel.Binary, size, label, values, accel.BinaryParams{Func: f}, func(r *rand.Rand) []Tensor {
		return []Tensor{{Name: "a", Shape: a, F32: fa(r, elements(a))}, {Name: "b", Shape: b, F32: fb(r, elements(b))}}
	})
}

// broadcastIndex maps output element i of shape out to the element of an
// operand of shape in that NumPy's broadcasting pairs with it: the
// output's multi-index, aligned at the last axis, with 0 wherever the
// operand's size is 1.
func broadcastIndex(i int, out, in []int) int {
	idx := unravel(i, out, make([]int, len(out)))
	j := 0
	for d, n := range in {
		k := idx[len(out)-len(in)+d]
		if n == 1 {
			k = 0
		}
		j = j*n + k
	}
	return j
}

// unravel writes into idx, and returns, the multi-index of element i of a
// row-major tensor of shape.
func unravel(i int, shape, idx []int) []int {
	for d := len(shape) - 1; d >= 0; d-- {
		idx[d] = i % shape[d]
		i /= shape[d]
	}
	return idx
}

// broadcastOut is the output's shape: the larger rank, and on each axis the
// size that is not 1.
func broadcastOut(a, b []int) []int {
	n := max(len(a), len(b))
	out := make([]int, n)
	for d := range n {
		out[d] = 1
		for _, s := range [][]int{a, b} {
			if k := d - (n - len(s)); k >= 0 && s[k] != 1 {
				out[d] = s[k]
			}
		}
	}
	return out
}

// specBinary is y[i] = canon(a[ia] ∘ b[ib]), one operation.
func specBinary(a, b Tensor, f accel.BinaryFunc) []float32 {
	out := broadcastOut(a.Shape, b.Shape)
	y := make([]float32, elements(out))
	for i := range y {
		u, v := a.F32[broadcastIndex(i, out, a.Shape)], b.F32[broadcastIndex(i, out, b.Shape)]
		var w float32
		switch f {
		case accel.BinaryAdd:
			w = u + v
		case accel.BinarySub:
			w = u - v
		case accel.BinaryMul:
			w = u * v
		case accel.BinaryDiv:
			w = u / v
		}
		y[i] = strictmath.Canon(w)
	}
	return y
}

// f64Binary is the operation in float64 with one rounding's bound.
func f64Binary(a, b Tensor, f accel.BinaryFunc) []ev {
	out := broadcastOut(a.Shape, b.Shape)
	y := make([]ev, elements(out))
	for i := range y {
		u, v := exact(a.F32[broadcastIndex(i, out, a.Shape)]), exact(b.F32[broadcastIndex(i, out, b.Shape)])
		switch f {
		case accel.BinaryAdd:
			y[i] = add(u, v)
		case accel.BinarySub:
			y[i] = sub(u, v)
		case accel.BinaryMul:
			y[i] = mul(u, v)
		case accel.BinaryDiv:
			y[i] = div(u, v)
		}
	}
	return y
}

// binaryParts recomputes blocks of the output's first axis: an operand
// whose aligned first axis is that axis gives the block's rows, and one
// that repeats along it (of lower rank, or size 1 there) is passed whole.
func binaryParts(_ accel.BinaryParams, in []Tensor) []Part {
	out := broadcastOut(in[0].Shape, in[1].Shape)
	inner := elements(out[1:])
	var parts []Part
	for _, rs := range rowSubsets(out[0]) {
		lo, hi := rs[0], rs[1]
		part := Part{Name: fmt.Sprintf("rows %d..%d", lo, hi-1), Offset: lo * inner}
		for _, t := range in {
			if len(t.Shape) < len(out) || t.Shape[0] == 1 {
				part.Inputs = append(part.Inputs, t)
				continue
			}
			sub := slices.Clone(t.Shape)
			sub[0] = hi - lo
			rows := elements(t.Shape[1:])
			part.Inputs = append(part.Inputs, Tensor{Name: t.Name, Shape: sub, F32: slices.Clone(t.F32[lo*rows : hi*rows])})
		}
		parts = append(parts, part)
	}
	return parts
}
