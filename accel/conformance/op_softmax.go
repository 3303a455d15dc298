package conformance

import (
	"context"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

var softmaxCases = []unaryCase{
	{name: "length-1", shape: []int{1}, x: cycle(2.5)},
	// Rows of one element: 1, except NaN for -Inf (-Inf - -Inf), +Inf and NaN.
	{name: "rows-of-1", shape: []int{7, 1}, x: cycle(0, -3, negInf, posInf, qNaN, maxFloat, negZero)},
	{name: "rows", shape: []int{12, 6}, x: cycle(rows(
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
	{name: "random-37x129", shape: []int{37, 129}, x: normal(3)},
	{name: "rank3-2x3x1000", shape: []int{2, 3, 1000}, x: uniform(-20, 20)},
	{name: "large-values", shape: []int{4, 50}, x: magnitudes(100, 127)},
	{name: "ties", shape: []int{3, 8}, x: pick(1, 1, 2)},
	{name: "rows-300x500", shape: []int{300, 500}, x: normal(5)},
	{name: "sparse-specials", shape: []int{10, 7}, x: mix(0.1, normal(2), pick(specials...))},
}

// TestSoftmax checks softmax over the last axis, on rows with ±Inf, NaN,
// large values and length 1.
func TestSoftmax(t *testing.T, b accel.Backend) {
	for _, c := range softmaxCases {
		t.Run(c.name, func(t *testing.T) {
			x := c.x(rng("softmax/"+c.name), numElements(c.shape))
			l := c.shape[len(c.shape)-1]
			checkCall(t, b, opCall{
				inputs: []input{{name: "x", shape: c.shape, f32: x}},
				run: func(s *accel.Session, ctx context.Context, in []*accel.Tensor) (*accel.Tensor, error) {
					return s.Softmax(ctx, in[0])
				},
				shape: c.shape,
				spec:  func() []float32 { return specSoftmax(x, l) },
				f64:   func() []ev { return f64Softmax(x, l) },
			})
		})
	}
}
