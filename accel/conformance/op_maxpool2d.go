package conformance

import (
	"context"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

type poolCase struct {
	name string
	x    [4]int // N, C, H, W
	p    accel.Pool2DParams
	fx   fill
}

// pool is a square-stride window with no padding.
func pool(kh, kw, sh, sw int) accel.Pool2DParams {
	return accel.Pool2DParams{KernelH: kh, KernelW: kw, StrideH: sh, StrideW: sw}
}

// padded adds padding (top, left, bottom, right) to p.
func padded(p accel.Pool2DParams, t, l, b, r int) accel.Pool2DParams {
	p.PadTop, p.PadLeft, p.PadBottom, p.PadRight = t, l, b, r
	return p
}

var poolCases = []poolCase{
	{name: "1x1x1x1-k1", x: [4]int{1, 1, 1, 1}, p: pool(1, 1, 1, 1), fx: normal(1)},
	{name: "k2-s2", x: [4]int{1, 2, 6, 6}, p: pool(2, 2, 2, 2), fx: normal(1)},
	{name: "k3-s1-pad1", x: [4]int{2, 3, 7, 6}, p: padded(pool(3, 3, 1, 1), 1, 1, 1, 1), fx: normal(1)},
	{name: "pad-asymmetric-stride", x: [4]int{1, 2, 5, 7}, p: padded(pool(3, 2, 2, 1), 2, 0, 1, 1), fx: normal(1)},
	{name: "stride-3x2", x: [4]int{1, 1, 10, 9}, p: pool(3, 3, 3, 2), fx: normal(1)},
	{name: "kernel-over-input", x: [4]int{1, 1, 2, 2}, p: padded(pool(3, 3, 1, 1), 1, 1, 1, 1), fx: normal(1)},
	{name: "kernel-1x1-stride", x: [4]int{1, 2, 5, 5}, p: pool(1, 1, 2, 2), fx: normal(1)},
	{name: "batch", x: [4]int{4, 8, 16, 16}, p: padded(pool(3, 3, 2, 2), 1, 1, 1, 1), fx: normal(1)},
	{name: "large-plane", x: [4]int{1, 2, 300, 300}, p: padded(pool(2, 3, 1, 1), 1, 0, 0, 2), fx: normal(1)},
	// Windows so large that a backend may split rows among workers.
	{name: "long-window", x: [4]int{1, 1, 2, 1000}, p: padded(pool(2, 600, 1, 1), 1, 599, 1, 599), fx: normal(1)},
	// Of equal values the first wins, -0 and +0 included.
	{name: "zero-ties", x: [4]int{1, 3, 6, 6}, p: pool(2, 2, 1, 1), fx: pick(0, negZero)},
	{name: "zero-ties-pad", x: [4]int{1, 2, 5, 5}, p: padded(pool(3, 2, 1, 1), 2, 1, 0, 1), fx: pick(0, negZero, -1)},
	// A NaN anywhere in the window gives NaN, whatever its payload.
	{name: "nan", x: [4]int{2, 2, 6, 6}, p: padded(pool(3, 3, 2, 2), 1, 1, 1, 1), fx: mix(0.05, normal(1), pick(qNaN, negNaN, sNaN))},
	{name: "nan-after-neg-inf", x: [4]int{1, 1, 4, 4}, p: pool(2, 2, 1, 1), fx: pick(negInf, qNaN, negInf, negNaN, posInf)},
	{name: "neg-inf", x: [4]int{1, 2, 5, 5}, p: padded(pool(2, 2, 1, 1), 1, 0, 0, 1), fx: mix(0.7, normal(1), cycle(negInf))},
	{name: "specials", x: [4]int{1, 2, 5, 5}, p: padded(pool(2, 2, 1, 1), 1, 0, 1, 0), fx: pick(specials...)},
}

// TestMaxPool2D checks maxpool2d with padding, strides, ties between -0 and
// +0, and NaN.
func TestMaxPool2D(t *testing.T, b accel.Backend) {
	for _, c := range poolCases {
		t.Run(c.name, func(t *testing.T) {
			xs := c.x[:]
			x := c.fx(rng("maxpool2d/"+c.name), numElements(xs))
			checkCall(t, b, opCall{
				inputs: []input{{name: "x", shape: xs, f32: x}},
				run: func(s *accel.Session, ctx context.Context, in []*accel.Tensor) (*accel.Tensor, error) {
					return s.MaxPool2D(ctx, in[0], c.p)
				},
				shape: poolShape(xs, c.p),
				spec:  func() []float32 { return specMaxPool2D(x, xs, c.p) },
				f64:   func() []ev { return f64MaxPool2D(x, xs, c.p) },
			})
		})
	}
}
