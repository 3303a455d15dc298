package conformance

import (
	"context"
	"fmt"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

type convCase struct {
	name       string
	x          [4]int // N, C, H, W
	oc, kh, kw int
	p          accel.Conv2DParams // zero strides, dilations and groups mean 1
	bias       bool
	fx, fw, fb fill
	// edit, if set, places special values in the filled x, w and bias.
	edit func(x, w, bias []float32)
}

var convCases = []convCase{
	{name: "1x1x1x1-k1", x: [4]int{1, 1, 1, 1}, oc: 1, kh: 1, kw: 1, fx: uniform(-1, 1), fw: uniform(-1, 1)},
	{name: "basic-k3", x: [4]int{1, 1, 5, 5}, oc: 1, kh: 3, kw: 3, fx: normal(1), fw: normal(1)},
	{name: "odd-batch-bias", x: [4]int{3, 3, 7, 6}, oc: 5, kh: 3, kw: 2, bias: true, fx: normal(1), fw: normal(1), fb: normal(1)},
	{name: "pad-asymmetric", x: [4]int{2, 3, 7, 6}, oc: 4, kh: 3, kw: 2, bias: true,
		p: accel.Conv2DParams{PadTop: 1, PadLeft: 0, PadBottom: 2, PadRight: 1}, fx: normal(1), fw: normal(1), fb: normal(1)},
	{name: "stride", x: [4]int{1, 2, 9, 11}, oc: 3, kh: 3, kw: 3,
		p: accel.Conv2DParams{StrideH: 2, StrideW: 3}, fx: normal(1), fw: normal(1)},
	{name: "stride-pad", x: [4]int{2, 2, 8, 7}, oc: 3, kh: 3, kw: 3, bias: true,
		p: accel.Conv2DParams{StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}, fx: normal(1), fw: normal(1), fb: normal(1)},
	{name: "dilation", x: [4]int{1, 2, 10, 9}, oc: 2, kh: 3, kw: 3,
		p: accel.Conv2DParams{DilationH: 2, DilationW: 3, PadTop: 2, PadRight: 1}, fx: normal(1), fw: normal(1)},
	{name: "dilation-stride", x: [4]int{2, 3, 11, 12}, oc: 4, kh: 2, kw: 3, bias: true,
		p: accel.Conv2DParams{StrideH: 3, StrideW: 2, DilationH: 4, DilationW: 2, PadTop: 3, PadLeft: 2, PadBottom: 1}, fx: normal(1), fw: normal(1), fb: normal(1)},
	{name: "groups-2", x: [4]int{2, 4, 6, 6}, oc: 6, kh: 3, kw: 3, bias: true,
		p: accel.Conv2DParams{Groups: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}, fx: normal(1), fw: normal(1), fb: normal(1)},
	{name: "groups-3-odd", x: [4]int{1, 9, 5, 7}, oc: 6, kh: 2, kw: 3,
		p: accel.Conv2DParams{Groups: 3, StrideW: 2}, fx: normal(1), fw: normal(1)},
	{name: "depthwise", x: [4]int{2, 5, 7, 7}, oc: 5, kh: 3, kw: 3, bias: true,
		p: accel.Conv2DParams{Groups: 5, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}, fx: normal(1), fw: normal(1), fb: normal(1)},
	{name: "depthwise-multiplier-2", x: [4]int{1, 4, 6, 5}, oc: 8, kh: 3, kw: 2,
		p: accel.Conv2DParams{Groups: 4, StrideH: 2, PadBottom: 2}, fx: normal(1), fw: normal(1)},
	{name: "kernel-1x1", x: [4]int{3, 8, 4, 5}, oc: 6, kh: 1, kw: 1, bias: true, fx: normal(1), fw: normal(1), fb: normal(1)},
	{name: "kernel-1x1-stride", x: [4]int{1, 3, 7, 8}, oc: 2, kh: 1, kw: 1,
		p: accel.Conv2DParams{StrideH: 2, StrideW: 3}, fx: normal(1), fw: normal(1)},
	{name: "kernel-wider-than-input", x: [4]int{1, 2, 3, 2}, oc: 2, kh: 3, kw: 5,
		p: accel.Conv2DParams{PadLeft: 2, PadRight: 1}, fx: normal(1), fw: normal(1)},
	{name: "medium-16ch", x: [4]int{2, 16, 20, 20}, oc: 16, kh: 3, kw: 3, bias: true,
		p: accel.Conv2DParams{PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}, fx: normal(1), fw: normal(0.3), fb: normal(1)},
	{name: "large-plane", x: [4]int{2, 2, 130, 140}, oc: 2, kh: 3, kw: 3, bias: true,
		p: accel.Conv2DParams{PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}, fx: normal(1), fw: normal(1), fb: normal(1)},
	{name: "order-magnitudes", x: [4]int{1, 6, 6, 6}, oc: 3, kh: 3, kw: 3, bias: true,
		fx: magnitudes(-25, 25), fw: magnitudes(-25, 25), fb: magnitudes(-25, 25)},

	// Padding so wide that whole windows lie in it: those outputs are +0, or
	// the bias (+0 + -0 is +0).
	{name: "window-in-padding", x: [4]int{1, 2, 3, 3}, oc: 3, kh: 2, kw: 2, bias: true,
		p: accel.Conv2DParams{PadTop: 3, PadRight: 4}, fx: normal(1), fw: normal(1), fb: cycle(negZero, 1.5, -2)},
	{name: "window-in-padding-no-bias", x: [4]int{1, 1, 2, 2}, oc: 1, kh: 1, kw: 1,
		p: accel.Conv2DParams{PadTop: 1, PadLeft: 2, PadBottom: 2, PadRight: 1}, fx: normal(1), fw: cycle(negZero)},

	// Non-finite weights where the window meets padding: padding is skipped,
	// not multiplied by 0, so Inf or NaN there leaves the output finite.
	{name: "nonfinite-weights-at-padding", x: [4]int{1, 2, 5, 5}, oc: 3, kh: 3, kw: 3, bias: true,
		p:  accel.Conv2DParams{PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1},
		fx: mix(0.2, normal(1), cycle(0, negZero)), fw: normal(1), fb: normal(1),
		edit: func(x, w, bias []float32) {
			const per = 2 * 3 * 3 // weights per output channel
			w[0*per+0] = posInf   // oc 0, c 0, top-left
			w[1*per+9+8] = qNaN   // oc 1, c 1, bottom-right
			w[2*per+2] = negInf   // oc 2, c 0, top-right
			w[2*per+9+6] = negNaN // oc 2, c 1, bottom-left, NaN with a payload
		}},
	{name: "specials-x", x: [4]int{2, 2, 4, 5}, oc: 2, kh: 2, kw: 2, bias: true,
		p: accel.Conv2DParams{PadLeft: 1}, fx: pick(specials...), fw: normal(1), fb: normal(1)},
	{name: "specials-w-bias", x: [4]int{1, 2, 4, 4}, oc: 4, kh: 2, kw: 2, bias: true,
		fx: normal(1), fw: mix(0.2, normal(1), pick(specials...)), fb: pick(specials...)},
	{name: "neg-zero", x: [4]int{1, 2, 3, 3}, oc: 2, kh: 2, kw: 2, bias: true,
		fx: cycle(negZero), fw: pick(1, -1, negZero), fb: cycle(negZero)},
	{name: "subnormal", x: [4]int{1, 1, 4, 4}, oc: 2, kh: 2, kw: 2,
		fx: pick(minSub, maxSub, -maxSub, 3e-39), fw: pick(0.5, 2, -1, 0x1p-3)},
	{name: "near-overflow", x: [4]int{1, 2, 3, 3}, oc: 2, kh: 2, kw: 2, bias: true,
		fx: magnitudes(60, 63), fw: magnitudes(60, 63), fb: pick(maxFloat, -maxFloat, 1)},
}

// TestConv2D checks conv2d over a table of shapes, paddings, strides,
// dilations, groups and special values, including batch invariance: each
// image computed alone equals its part of the batch's result.
func TestConv2D(t *testing.T, b accel.Backend) {
	for _, c := range convCases {
		t.Run(c.name, func(t *testing.T) {
			p := c.p
			for _, f := range []*int{&p.StrideH, &p.StrideW, &p.DilationH, &p.DilationW, &p.Groups} {
				if *f == 0 {
					*f = 1
				}
			}
			xs := c.x[:]
			ws := []int{c.oc, c.x[1] / p.Groups, c.kh, c.kw}
			r := rng("conv2d/" + c.name)
			x := c.fx(r, xs[0]*xs[1]*xs[2]*xs[3])
			w := c.fw(r, ws[0]*ws[1]*ws[2]*ws[3])
			var bias []float32
			if c.bias {
				bias = c.fb(r, c.oc)
			}
			if c.edit != nil {
				c.edit(x, w, bias)
			}
			full := checkCall(t, b, convCall(x, xs, w, ws, bias, p))
			if n := xs[0]; n > 1 {
				// The last image alone.
				per, outPer := len(x)/n, len(full)/n
				one := []int{1, xs[1], xs[2], xs[3]}
				part := checkCall(t, b, convCall(x[(n-1)*per:], one, w, ws, bias, p))
				what := fmt.Sprintf("image %d computed alone", n-1)
				invariant(t, b, what, convShape(one, ws, p), part, full[(n-1)*outPer:])
			}
		})
	}
}

func convCall(x []float32, xs []int, w []float32, ws []int, bias []float32, p accel.Conv2DParams) opCall {
	inputs := []input{{name: "x", shape: xs, f32: x}, {name: "w", shape: ws, f32: w}}
	if bias != nil {
		inputs = append(inputs, input{name: "bias", shape: []int{len(bias)}, f32: bias})
	}
	return opCall{
		inputs: inputs,
		run: func(s *accel.Session, ctx context.Context, in []*accel.Tensor) (*accel.Tensor, error) {
			var b *accel.Tensor
			if len(in) > 2 {
				b = in[2]
			}
			return s.Conv2D(ctx, in[0], in[1], b, p)
		},
		shape: convShape(xs, ws, p),
		spec:  func() []float32 { return specConv2D(x, xs, w, ws, bias, p) },
		f64:   func() []ev { return f64Conv2D(x, xs, w, ws, bias, p) },
	}
}
