package conformance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.LayerNormParams]{
	op:    accel.LayerNorm,
	cases: layerNormCases,
	spec: func(p accel.LayerNormParams, in []Tensor) [][]float32 {
		return [][]float32{specLayerNorm(in, p)}
	},
	float64: func(p accel.LayerNormParams, in []Tensor) reference {
		return reference{results: [][]ev{f64LayerNorm(in, p)}}
	},
	parts: layerNormParts,
})

// layerNormCases are the layer normalisations of transformers (the last
// axis of [batch, sequence, hidden], with and without a bias), rows longer
// than a blockSum run, the whole tensor (axis 0), and rows of one value,
// whose every d is 0.
func layerNormCases() []Case {
	var cases []Case
	for _, c := range []struct {
		size  string
		shape []int
		axis  int
		bias  bool
	}{
		{SizeTiny, []int{1, 1}, 1, true},
		{SizeOdd, []int{2, 5, 16}, 2, true},
		{SizeOdd, []int{3, 7}, 1, false},
		{SizeOdd, []int{2, 3, 4}, 1, true},
		{SizeOdd, []int{4, 5}, 0, true},
		{SizeTall, []int{3, 1000}, 1, true},
		{SizeLarge, []int{8, 128, 128}, 2, true},
	} {
		for _, class := range append([]string{Specials}, exactClasses...) {
			fx := elementFill(class)
			if class == Specials {
				fx = mix(0.05, normal(2), pick(specials...))
			}
			p := accel.LayerNormParams{Axis: c.axis, Epsilon: 1e-5}
			label := fmt.Sprintf("%s-axis%d", dims(c.shape...), c.axis)
			if !c.bias {
				label += "-nobias"
			}
			shape, bias := c.shape, c.bias
			cases = append(cases, newCase(accel.LayerNorm, c.size, label, class, p, func(r *rand.Rand) []Tensor {
				row := shape[p.Axis:]
				in := []Tensor{
					{Name: "x", Shape: shape, F32: fx(r, elements(shape))},
					{Name: "scale", Shape: row, F32: normal(1)(r, elements(row))},
					{},
				}
				if bias {
					in[2] = Tensor{Name: "bias", Shape: row, F32: normal(1)(r, elements(row))}
				}
				return in
			}))
		}
	}
	// A large epsilon, as some exporters write, and a zero one on rows of
	// one repeated value: var is 0 and inv is +Inf, so y is NaN (0 · Inf).
	cases = append(cases,
		newCase(accel.LayerNorm, SizeOdd, "eps-0.1", Normal, accel.LayerNormParams{Axis: 1, Epsilon: 0.1}, func(r *rand.Rand) []Tensor {
			return []Tensor{{Name: "x", Shape: []int{3, 9}, F32: normal(1)(r, 27)}, {Name: "scale", Shape: []int{9}, F32: normal(1)(r, 9)}, {}}
		}),
		newCase(accel.LayerNorm, SizeTiny, "constant-rows-eps-0", NegZero, accel.LayerNormParams{Axis: 1}, func(r *rand.Rand) []Tensor {
			return []Tensor{{Name: "x", Shape: []int{2, 4}, F32: cycle(3, 3, 3, 3, negZero, 0, negZero, 0)(r, 8)}, {Name: "scale", Shape: []int{4}, F32: cycle(1)(r, 4)}, {}}
		}),
	)
	return cases
}

// specLayerNorm is the contract's layer normalisation, row by row.
func specLayerNorm(in []Tensor, p accel.LayerNormParams) []float32 {
	x, scale := in[0].F32, in[1].F32
	n := len(scale)
	y := make([]float32, len(x))
	sq := make([]float32, n)
	for r := 0; r < len(x); r += n {
		row := x[r : r+n]
		mean := strictmath.BlockSum(row) / float32(n)
		for j, v := range row {
			d := v - mean
			sq[j] = float32(d * d)
		}
		variance := strictmath.BlockSum(sq) / float32(n)
		inv := 1 / float32(math.Sqrt(float64(variance+p.Epsilon)))
		for j, v := range row {
			t := float32(float32((v-mean)*inv) * scale[j])
			if in[2].Shape != nil {
				t = t + in[2].F32[j]
			}
			y[r+j] = strictmath.Canon(t)
		}
	}
	return y
}

// f64LayerNorm is the normalisation in float64, each step's bound carried.
func f64LayerNorm(in []Tensor, p accel.LayerNormParams) []ev {
	x, scale := in[0].F32, in[1].F32
	n := len(scale)
	fn := exact(float32(n))
	y := make([]ev, len(x))
	for r := 0; r < len(x); r += n {
		row := x[r : r+n]
		var s sum
		for _, v := range row {
			s.add(exact(v))
		}
		mean := div(s.ev(), fn)
		d := make([]ev, n)
		var sq sum
		for j, v := range row {
			d[j] = sub(exact(v), mean)
			sq.add(mul(d[j], d[j]))
		}
		variance := div(sq.ev(), fn)
		if variance.over && finite(variance.v) {
			// Where the float32 sum of squares may overflow, inv may be 0
			// and every y any value: float64 bounds nothing here.
			for j := range row {
				y[r+j] = ev{e: math.Inf(1), over: true}
			}
			continue
		}
		inv := div(exact(1), sqrtEv(add(variance, exact(p.Epsilon))))
		for j := range row {
			t := mul(mul(d[j], inv), exact(scale[j]))
			if in[2].Shape != nil {
				t = add(t, exact(in[2].F32[j]))
			}
			y[r+j] = t
		}
	}
	return y
}

// layerNormParts recomputes blocks along the first axis, each of whole
// rows where the rows start at axis 1 or later.
func layerNormParts(p accel.LayerNormParams, in []Tensor) []Part {
	x := in[0]
	if p.Axis == 0 {
		return nil
	}
	inner := elements(x.Shape[1:])
	var parts []Part
	for _, rs := range rowSubsets(x.Shape[0]) {
		lo, hi := rs[0], rs[1]
		shape := slices.Clone(x.Shape)
		shape[0] = hi - lo
		parts = append(parts, Part{Name: fmt.Sprintf("rows %d..%d", lo, hi-1), Offset: lo * inner,
			Inputs: []Tensor{{Name: "x", Shape: shape, F32: slices.Clone(x.F32[lo*inner : hi*inner])}, in[1], in[2]}})
	}
	return parts
}
