package conformance

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

type addBiasCase struct {
	name   string
	shape  []int
	axis   int
	fx, fb fill
}

var addBiasCases = []addBiasCase{
	{name: "vector", shape: []int{1}, axis: 0, fx: normal(1), fb: normal(1)},
	{name: "vector-7", shape: []int{7}, axis: 0, fx: normal(1), fb: normal(1)},
	{name: "rows-axis0", shape: []int{5, 9}, axis: 0, fx: normal(1), fb: normal(1)},
	{name: "cols-axis1", shape: []int{5, 9}, axis: 1, fx: normal(1), fb: normal(1)},
	{name: "nchw-channels", shape: []int{2, 3, 4, 5}, axis: 1, fx: normal(1), fb: normal(1)},
	{name: "first-axis-rank4", shape: []int{4, 2, 3, 3}, axis: 0, fx: normal(1), fb: normal(1)},
	{name: "last-axis-rank3", shape: []int{3, 4, 17}, axis: 2, fx: normal(1), fb: normal(1)},
	{name: "axis-of-1", shape: []int{3, 1, 4}, axis: 1, fx: normal(1), fb: normal(1)},
	{name: "rank8", shape: []int{2, 1, 2, 1, 3, 1, 2, 2}, axis: 4, fx: normal(1), fb: normal(1)},
	{name: "magnitudes", shape: []int{16, 33}, axis: 1, fx: magnitudes(-40, 40), fb: magnitudes(-40, 40)},
	// Every pair of special values: row i holds one value, column j adds
	// specials[j] (Inf + -Inf, -0 + -0, MaxFloat32 + MaxFloat32, ...).
	{name: "specials-pairs", shape: []int{len(specials), len(specials)}, axis: 1,
		fx: func(_ *rand.Rand, n int) []float32 {
			v := make([]float32, 0, n)
			for _, s := range specials {
				for range specials {
					v = append(v, s)
				}
			}
			return v
		},
		fb: cycle(specials...)},
	{name: "overflow", shape: []int{4, 6}, axis: 0, fx: pick(maxFloat, 3e38, -3e38, 1e38), fb: pick(maxFloat, 1e38, -maxFloat)},
	{name: "long-3x30001", shape: []int{3, 30001}, axis: 0, fx: normal(1), fb: normal(1)},
	{name: "subnormal", shape: []int{6, 5}, axis: 1, fx: pick(minSub, -minSub, maxSub, -maxSub, minNormal), fb: pick(minSub, -minSub, maxSub, negZero)},
}

// TestAddBias checks add_bias along every axis position, on special values
// and on sums that overflow.
func TestAddBias(t *testing.T, b accel.Backend) {
	for _, c := range addBiasCases {
		t.Run(c.name, func(t *testing.T) {
			r := rng("add_bias/" + c.name)
			x, bias := c.fx(r, numElements(c.shape)), c.fb(r, c.shape[c.axis])
			checkCall(t, b, opCall{
				inputs: []input{{name: "x", shape: c.shape, f32: x}, {name: "bias", shape: []int{len(bias)}, f32: bias}},
				run: func(s *accel.Session, ctx context.Context, in []*accel.Tensor) (*accel.Tensor, error) {
					return s.AddBias(ctx, in[0], in[1], c.axis)
				},
				shape: c.shape,
				spec:  func() []float32 { return specAddBias(x, c.shape, bias, c.axis) },
				f64:   func() []ev { return f64AddBias(x, c.shape, bias, c.axis) },
			})
		})
	}
}

// unaryCase is a case of an operation on one tensor.
type unaryCase struct {
	name  string
	shape []int
	x     fill
}

var reluCases = []unaryCase{
	{name: "one", shape: []int{1}, x: cycle(-0.5)},
	{name: "specials", shape: []int{len(specials)}, x: cycle(specials...)},
	{name: "zeros", shape: []int{2, 2}, x: cycle(0, negZero)},
	{name: "matrix-7x13", shape: []int{7, 13}, x: normal(1)},
	{name: "rank4-mixed", shape: []int{2, 3, 4, 5}, x: mix(0.1, normal(1), pick(specials...))},
	{name: "subnormal", shape: []int{33}, x: pick(minSub, -minSub, maxSub, -maxSub, minNormal, -minNormal)},
	{name: "long-4099", shape: []int{4099}, x: normal(3)},
	{name: "long-70001", shape: []int{70001}, x: mix(0.01, normal(3), pick(specials...))},
}

// TestRelu checks relu, including -0 (which gives +0) and NaN payloads
// (which give the canonical NaN).
func TestRelu(t *testing.T, b accel.Backend) {
	for _, c := range reluCases {
		t.Run(c.name, func(t *testing.T) {
			x := c.x(rng("relu/"+c.name), numElements(c.shape))
			checkCall(t, b, opCall{
				inputs: []input{{name: "x", shape: c.shape, f32: x}},
				run: func(s *accel.Session, ctx context.Context, in []*accel.Tensor) (*accel.Tensor, error) {
					return s.Relu(ctx, in[0])
				},
				shape: c.shape,
				spec:  func() []float32 { return specRelu(x) },
				f64:   func() []ev { return f64Relu(x) },
			})
		})
	}
}

func numElements(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}
