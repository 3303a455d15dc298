package conformance

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.Conv2DParams]{
	op:    accel.Conv2D,
	cases: convCases,
	spec: func(p accel.Conv2DParams, in []Tensor) [][]float32 {
		return [][]float32{specConv2D(in[0].F32, in[0].Shape, in[1].F32, in[1].Shape, in[2].F32, p)}
	},
	float64: func(p accel.Conv2DParams, in []Tensor) reference {
		return reference{results: [][]ev{f64Conv2D(in[0].F32, in[0].Shape, in[1].F32, in[1].Shape, in[2].F32, p)}}
	},
	parts: convParts,
})

// convParams fills in the defaults of p: strides, dilations and groups of
// 1 where they are 0.
func convParams(p accel.Conv2DParams) accel.Conv2DParams {
	for _, f := range []*int{&p.StrideH, &p.StrideW, &p.DilationH, &p.DilationW, &p.Groups} {
		*f = max(*f, 1)
	}
	return p
}

// pad1 pads every side by one.
var pad1 = accel.Conv2DParams{PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}

func convCases() []Case {
	var cases []Case
	// The grid: every value class on every size class.
	for _, sh := range []struct {
		size       string
		x          [4]int
		oc, kh, kw int
		bias       bool
		p          accel.Conv2DParams
	}{
		{SizeTiny, [4]int{1, 1, 1, 1}, 1, 1, 1, false, accel.Conv2DParams{}},
		{SizeOdd, [4]int{3, 3, 7, 6}, 5, 3, 2, true, accel.Conv2DParams{StrideH: 2, PadTop: 1, PadBottom: 2, PadRight: 1}},
		{SizeTall, [4]int{2, 4, 50, 3}, 4, 5, 1, true, accel.Conv2DParams{Groups: 2, DilationH: 2, PadTop: 2, PadBottom: 1}},
		{SizeLarge, [4]int{8, 16, 28, 28}, 32, 3, 3, true, pad1},
	} {
		p := convParams(sh.p)
		xs := sh.x[:]
		ws := []int{sh.oc, sh.x[1] / p.Groups, sh.kh, sh.kw}
		for _, class := range gridClasses {
			fx, fw, fb := productFills(class, ws[1]*ws[2]*ws[3])
			if !sh.bias {
				fb = nil
			}
			cases = append(cases, gridCase(accel.Conv2D, sh.size, dims(xs...)+"-k"+dims(ws...), class, p, func(r *rand.Rand) []Tensor {
				return convInputs(r, xs, ws, fx, fw, fb, nil)
			}))
		}
	}

	// Padding, strides, dilations and groups the grid misses, and special
	// values. fb nil means no bias.
	for _, c := range []struct {
		size, label, values string
		x                   [4]int // N, C, H, W
		oc, kh, kw          int
		p                   accel.Conv2DParams // zero strides, dilations and groups mean 1
		fx, fw, fb          fill
		// edit, if set, places special values in the filled x, w and bias.
		edit func(x, w, bias []float32)
	}{
		{SizeOdd, "basic-k3", Normal, [4]int{1, 1, 5, 5}, 1, 3, 3, accel.Conv2DParams{}, normal(1), normal(1), nil, nil},
		{SizeOdd, "batch-bias", Normal, [4]int{3, 3, 7, 6}, 5, 3, 2, accel.Conv2DParams{}, normal(1), normal(1), normal(1), nil},
		{SizeOdd, "pad-asymmetric", Normal, [4]int{2, 3, 7, 6}, 4, 3, 2,
			accel.Conv2DParams{PadTop: 1, PadLeft: 0, PadBottom: 2, PadRight: 1}, normal(1), normal(1), normal(1), nil},
		{SizeOdd, "stride", Normal, [4]int{1, 2, 9, 11}, 3, 3, 3, accel.Conv2DParams{StrideH: 2, StrideW: 3}, normal(1), normal(1), nil, nil},
		{SizeOdd, "stride-pad", Normal, [4]int{2, 2, 8, 7}, 3, 3, 3,
			accel.Conv2DParams{StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}, normal(1), normal(1), normal(1), nil},
		{SizeOdd, "dilation", Normal, [4]int{1, 2, 10, 9}, 2, 3, 3,
			accel.Conv2DParams{DilationH: 2, DilationW: 3, PadTop: 2, PadRight: 1}, normal(1), normal(1), nil, nil},
		{SizeOdd, "dilation-stride", Normal, [4]int{2, 3, 11, 12}, 4, 2, 3,
			accel.Conv2DParams{StrideH: 3, StrideW: 2, DilationH: 4, DilationW: 2, PadTop: 3, PadLeft: 2, PadBottom: 1}, normal(1), normal(1), normal(1), nil},
		{SizeOdd, "groups-2", Normal, [4]int{2, 4, 6, 6}, 6, 3, 3,
			accel.Conv2DParams{Groups: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}, normal(1), normal(1), normal(1), nil},
		{SizeOdd, "groups-3", Normal, [4]int{1, 9, 5, 7}, 6, 2, 3, accel.Conv2DParams{Groups: 3, StrideW: 2}, normal(1), normal(1), nil, nil},
		{SizeOdd, "depthwise", Normal, [4]int{2, 5, 7, 7}, 5, 3, 3,
			accel.Conv2DParams{Groups: 5, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}, normal(1), normal(1), normal(1), nil},
		{SizeOdd, "depthwise-multiplier-2", Normal, [4]int{1, 4, 6, 5}, 8, 3, 2,
			accel.Conv2DParams{Groups: 4, StrideH: 2, PadBottom: 2}, normal(1), normal(1), nil, nil},
		{SizeOdd, "kernel-1x1", Normal, [4]int{3, 8, 4, 5}, 6, 1, 1, accel.Conv2DParams{}, normal(1), normal(1), normal(1), nil},
		{SizeOdd, "kernel-1x1-stride", Normal, [4]int{1, 3, 7, 8}, 2, 1, 1, accel.Conv2DParams{StrideH: 2, StrideW: 3}, normal(1), normal(1), nil, nil},
		{SizeOdd, "kernel-wider-than-input", Normal, [4]int{1, 2, 3, 2}, 2, 3, 5,
			accel.Conv2DParams{PadLeft: 2, PadRight: 1}, normal(1), normal(1), nil, nil},
		{SizeLarge, "medium-16ch", Normal, [4]int{2, 16, 20, 20}, 16, 3, 3, pad1, normal(1), normal(0.3), normal(1), nil},
		{SizeLarge, "large-plane", Normal, [4]int{2, 2, 130, 140}, 2, 3, 3, pad1, normal(1), normal(1), normal(1), nil},
		{SizeOdd, "order-magnitudes", Wide, [4]int{1, 6, 6, 6}, 3, 3, 3, accel.Conv2DParams{},
			magnitudes(-25, 25), magnitudes(-25, 25), magnitudes(-25, 25), nil},

		// Padding so wide that whole windows lie in it: those outputs are
		// +0, or the bias (+0 + -0 is +0).
		{SizeOdd, "window-in-padding", NegZero, [4]int{1, 2, 3, 3}, 3, 2, 2,
			accel.Conv2DParams{PadTop: 3, PadRight: 4}, normal(1), normal(1), cycle(negZero, 1.5, -2), nil},
		{SizeOdd, "window-in-padding-no-bias", NegZero, [4]int{1, 1, 2, 2}, 1, 1, 1,
			accel.Conv2DParams{PadTop: 1, PadLeft: 2, PadBottom: 2, PadRight: 1}, normal(1), cycle(negZero), nil, nil},

		// Non-finite weights where the window meets padding: padding is
		// skipped, not multiplied by 0, so Inf or NaN there leaves the
		// output finite.
		{SizeOdd, "nonfinite-weights-at-padding", Specials, [4]int{1, 2, 5, 5}, 3, 3, 3, pad1,
			mix(0.2, normal(1), cycle(0, negZero)), normal(1), normal(1),
			func(x, w, bias []float32) {
				const per = 2 * 3 * 3 // weights per output channel
				w[0*per+0] = posInf   // oc 0, c 0, top-left
				w[1*per+9+8] = qNaN   // oc 1, c 1, bottom-right
				w[2*per+2] = negInf   // oc 2, c 0, top-right
				w[2*per+9+6] = negNaN // oc 2, c 1, bottom-left, NaN with a payload
			}},
		{SizeOdd, "specials-x", Specials, [4]int{2, 2, 4, 5}, 2, 2, 2, accel.Conv2DParams{PadLeft: 1}, pick(specials...), normal(1), normal(1), nil},
		{SizeOdd, "specials-w-bias", Specials, [4]int{1, 2, 4, 4}, 4, 2, 2, accel.Conv2DParams{},
			normal(1), mix(0.2, normal(1), pick(specials...)), pick(specials...), nil},
		{SizeOdd, "neg-zero", NegZero, [4]int{1, 2, 3, 3}, 2, 2, 2, accel.Conv2DParams{}, cycle(negZero), pick(1, -1, negZero), cycle(negZero), nil},
		{SizeOdd, "subnormal", Subnormal, [4]int{1, 1, 4, 4}, 2, 2, 2, accel.Conv2DParams{},
			pick(minSub, maxSub, -maxSub, 3e-39), pick(0.5, 2, -1, 0x1p-3), nil, nil},
		{SizeOdd, "near-overflow", Overflow, [4]int{1, 2, 3, 3}, 2, 2, 2, accel.Conv2DParams{},
			magnitudes(60, 63), magnitudes(60, 63), pick(maxFloat, -maxFloat, 1), nil},
	} {
		p := convParams(c.p)
		xs := c.x[:]
		ws := []int{c.oc, c.x[1] / p.Groups, c.kh, c.kw}
		fx, fw, fb, edit := c.fx, c.fw, c.fb, c.edit
		cases = append(cases, newCase(accel.Conv2D, c.size, c.label, c.values, p, func(r *rand.Rand) []Tensor {
			return convInputs(r, xs, ws, fx, fw, fb, edit)
		}))
	}
	return cases
}

// convInputs draws x [N,C,H,W], w [OC,C/G,KH,KW] and, unless fb is nil, a
// bias [OC]; edit, if not nil, then changes them.
func convInputs(r *rand.Rand, xs, ws []int, fx, fw, fb fill, edit func(x, w, bias []float32)) []Tensor {
	x, w := fx(r, elements(xs)), fw(r, elements(ws))
	var bias []float32
	if fb != nil {
		bias = fb(r, ws[0])
	}
	if edit != nil {
		edit(x, w, bias)
	}
	in := []Tensor{{Name: "x", Shape: xs, F32: x}, {Name: "w", Shape: ws, F32: w}, {}}
	if bias != nil {
		in[2] = Tensor{Name: "bias", Shape: []int{ws[0]}, F32: bias}
	}
	return in
}

// convParts recomputes the last image of the batch alone.
func convParts(p accel.Conv2DParams, in []Tensor) []Part {
	x := in[0]
	n := x.Shape[0]
	if n < 2 {
		return nil
	}
	per := len(x.F32) / n
	out := convShape(x.Shape, in[1].Shape, p)
	last := Tensor{Name: x.Name, Shape: append([]int{1}, x.Shape[1:]...), F32: slices.Clone(x.F32[(n-1)*per:])}
	return []Part{{Name: fmt.Sprintf("image %d", n-1), Inputs: append([]Tensor{last}, in[1:]...), Offset: (n - 1) * elements(out) / n}}
}

// convShape is the conv2d output shape [N, OC, OH, OW] by the contract's
// formula, for input shape xs [N,C,H,W] and weight shape ws [OC,C/G,KH,KW].
func convShape(xs, ws []int, p accel.Conv2DParams) []int {
	OH := (xs[2]+p.PadTop+p.PadBottom-(p.DilationH*(ws[2]-1)+1))/p.StrideH + 1
	OW := (xs[3]+p.PadLeft+p.PadRight-(p.DilationW*(ws[3]-1)+1))/p.StrideW + 1
	return []int{xs[0], ws[0], OH, OW}
}

// specConv2D is conv2d of X with shape xs and weights W with shape ws; bias
// is nil when there is none.
func specConv2D(X []float32, xs []int, W []float32, ws []int, bias []float32, p accel.Conv2DParams) []float32 {
	N, C, H, Wd := xs[0], xs[1], xs[2], xs[3]
	OC, KH, KW := ws[0], ws[2], ws[3]
	ys := convShape(xs, ws, p)
	OH, OW := ys[2], ys[3]
	G := p.Groups
	x := func(n, c, h, w int) float32 { return X[((n*C+c)*H+h)*Wd+w] }
	wt := func(o, c, h, w int) float32 { return W[((o*(C/G)+c)*KH+h)*KW+w] }

	Y := make([]float32, N*OC*OH*OW)
	for n := 0; n < N; n++ {
		for oc := 0; oc < OC; oc++ {
			for oh := 0; oh < OH; oh++ {
				for ow := 0; ow < OW; ow++ {
					g := oc / (OC / G)
					s := float32(0)
					for c := 0; c < C/G; c++ {
						for kh := 0; kh < KH; kh++ {
							for kw := 0; kw < KW; kw++ {
								ih := oh*p.StrideH - p.PadTop + kh*p.DilationH
								iw := ow*p.StrideW - p.PadLeft + kw*p.DilationW
								if 0 <= ih && ih < H && 0 <= iw && iw < Wd {
									s = s + float32(x(n, g*(C/G)+c, ih, iw)*wt(oc, c, kh, kw))
								}
							}
						}
					}
					if bias != nil {
						s = s + bias[oc]
					}
					Y[((n*OC+oc)*OH+oh)*OW+ow] = strictmath.Canon(s)
				}
			}
		}
	}
	return Y
}

// f64Conv2D is conv2d in float64; bias may be nil.
func f64Conv2D(x []float32, xs []int, w []float32, ws []int, bias []float32, p accel.Conv2DParams) []ev {
	ys := convShape(xs, ws, p)
	N, C, H, W := xs[0], xs[1], xs[2], xs[3]
	OC, CG, KH, KW := ws[0], ws[1], ws[2], ws[3]
	OH, OW := ys[2], ys[3]
	y := make([]ev, 0, N*OC*OH*OW)
	for n := range N {
		for oc := range OC {
			g := oc / (OC / p.Groups)
			for oh := range OH {
				for ow := range OW {
					var s sum
					for c := range CG {
						for kh := range KH {
							for kw := range KW {
								ih := oh*p.StrideH - p.PadTop + kh*p.DilationH
								iw := ow*p.StrideW - p.PadLeft + kw*p.DilationW
								if ih >= 0 && ih < H && iw >= 0 && iw < W {
									xv := x[((n*C+g*CG+c)*H+ih)*W+iw]
									s.addProduct(xv, w[((oc*CG+c)*KH+kh)*KW+kw])
								}
							}
						}
					}
					r := s.ev()
					if bias != nil {
						r = add(r, exact(bias[oc]))
					}
					y = append(y, r)
				}
			}
		}
	}
	return y
}
