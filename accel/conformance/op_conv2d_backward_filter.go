package conformance

import (
	"math/rand/v2"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// conv2d_backward_filter sums over the whole batch: it has no parts.
var _ = register(def[accel.Conv2DBackwardFilterParams]{
	op:    accel.Conv2DBackwardFilter,
	cases: convBackwardFilterCases,
	spec: func(p accel.Conv2DBackwardFilterParams, in []Tensor) [][]float32 {
		return [][]float32{specConv2DBackwardFilter(in[0].F32, in[0].Shape, in[1].F32, in[1].Shape, p)}
	},
	float64: func(p accel.Conv2DBackwardFilterParams, in []Tensor) reference {
		return reference{results: [][]ev{f64Conv2DBackwardFilter(in[0].F32, in[0].Shape, in[1].F32, in[1].Shape, p)}}
	},
})

func convBackwardFilterCases() []Case {
	var cases []Case
	add := func(size, label, values string, c convShapeCase, fx, fdy fill, edit func(x, dy []float32)) {
		p, xs, ws, ys := c.shapes()
		params := accel.Conv2DBackwardFilterParams{Conv2DParams: p, KernelH: ws[2], KernelW: ws[3]}
		cases = append(cases, newCase(accel.Conv2DBackwardFilter, size, label, values, params, func(r *rand.Rand) []Tensor {
			x, dy := fx(r, elements(xs)), fdy(r, elements(ys))
			if edit != nil {
				edit(x, dy)
			}
			return []Tensor{{Name: "x", Shape: xs, F32: x}, {Name: "dy", Shape: ys, F32: dy}}
		}))
	}

	// The grid: every value class on every size class. Each weight sums
	// N·OH·OW terms: 1; 360, two runs of the blocksum; 300; 25,600, a
	// hundred runs over few weights; and 1,568 and 12,544 over the weights
	// of two MNIST layers.
	for _, sh := range []struct {
		size string
		c    convShapeCase
	}{
		{SizeTiny, convShapeCase{[4]int{1, 1, 1, 1}, 1, 1, 1, accel.Conv2DParams{}}},
		{SizeOdd, convShapeCase{[4]int{3, 3, 11, 10}, 5, 3, 2, accel.Conv2DParams{PadTop: 1, PadBottom: 2, PadRight: 1}}},
		{SizeTall, convShapeCase{[4]int{2, 4, 50, 3}, 4, 5, 1, accel.Conv2DParams{Groups: 2, DilationH: 2, PadTop: 2, PadBottom: 1}}},
		{SizeSkinny, convShapeCase{[4]int{16, 1, 40, 40}, 1, 3, 3, pad1}},
		{SizeLarge, convShapeCase{[4]int{8, 16, 14, 14}, 32, 5, 5, accel.Conv2DParams{PadTop: 2, PadLeft: 2, PadBottom: 2, PadRight: 2}}},
		{SizeLarge, convShapeCase{[4]int{16, 1, 28, 28}, 16, 5, 5, accel.Conv2DParams{PadTop: 2, PadLeft: 2, PadBottom: 2, PadRight: 2}}},
	} {
		_, _, ws, ys := sh.c.shapes()
		for _, class := range gridClasses {
			fx, fdy, _ := productFills(class, ys[0]*ys[2]*ys[3])
			add(sh.size, sh.size+"-"+dims(sh.c.x[:]...)+"-k"+dims(ws...), class, sh.c, fx, fdy, nil)
		}
	}

	for _, c := range []struct {
		size, label, values string
		c                   convShapeCase
		fx, fdy             fill
		edit                func(x, dy []float32)
	}{
		{SizeOdd, "basic-k3", Normal, convShapeCase{[4]int{1, 1, 5, 5}, 1, 3, 3, accel.Conv2DParams{}}, normal(1), normal(1), nil},
		// Runs of the blocksum: N·OH·OW of 255, 256, 257 and 513 terms,
		// runs that cross images.
		{SizeOdd, "terms-255", Normal, convShapeCase{[4]int{5, 2, 3, 17}, 3, 1, 1, accel.Conv2DParams{}}, normal(1), normal(1), nil},
		{SizeOdd, "terms-256", Normal, convShapeCase{[4]int{4, 2, 8, 8}, 3, 3, 3, pad1}, normal(1), normal(1), nil},
		{SizeOdd, "terms-257", Normal, convShapeCase{[4]int{1, 1, 257, 1}, 2, 1, 1, accel.Conv2DParams{}}, normal(1), normal(1), nil},
		{SizeOdd, "terms-513", Normal, convShapeCase{[4]int{27, 2, 3, 5}, 2, 2, 2, accel.Conv2DParams{PadLeft: 1, PadBottom: 1, PadRight: 1}},
			normal(1), normal(1), nil},
		{SizeOdd, "pad-asymmetric", Normal, convShapeCase{[4]int{2, 3, 7, 6}, 4, 3, 2,
			accel.Conv2DParams{PadTop: 1, PadLeft: 0, PadBottom: 2, PadRight: 1}}, normal(1), normal(1), nil},
		{SizeOdd, "stride", Normal, convShapeCase{[4]int{3, 2, 9, 11}, 3, 3, 3, accel.Conv2DParams{StrideH: 2, StrideW: 3}}, normal(1), normal(1), nil},
		{SizeOdd, "stride-pad", Normal, convShapeCase{[4]int{9, 2, 8, 7}, 3, 3, 3,
			accel.Conv2DParams{StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}}, normal(1), normal(1), nil},
		{SizeOdd, "dilation", Normal, convShapeCase{[4]int{4, 2, 10, 9}, 2, 3, 3,
			accel.Conv2DParams{DilationH: 2, DilationW: 3, PadTop: 2, PadRight: 1}}, normal(1), normal(1), nil},
		{SizeOdd, "dilation-stride", Normal, convShapeCase{[4]int{5, 3, 11, 12}, 4, 2, 3,
			accel.Conv2DParams{StrideH: 3, StrideW: 2, DilationH: 4, DilationW: 2, PadTop: 3, PadLeft: 2, PadBottom: 1}}, normal(1), normal(1), nil},
		{SizeOdd, "groups-2", Normal, convShapeCase{[4]int{5, 4, 6, 6}, 6, 3, 3,
			accel.Conv2DParams{Groups: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}}, normal(1), normal(1), nil},
		{SizeOdd, "groups-3", Normal, convShapeCase{[4]int{9, 9, 5, 7}, 6, 2, 3, accel.Conv2DParams{Groups: 3, StrideW: 2}}, normal(1), normal(1), nil},
		{SizeOdd, "depthwise", Normal, convShapeCase{[4]int{6, 5, 7, 7}, 5, 3, 3,
			accel.Conv2DParams{Groups: 5, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}}, normal(1), normal(1), nil},
		{SizeOdd, "depthwise-multiplier-2", Normal, convShapeCase{[4]int{1, 4, 6, 5}, 8, 3, 2,
			accel.Conv2DParams{Groups: 4, StrideH: 2, PadBottom: 2}}, normal(1), normal(1), nil},
		{SizeOdd, "kernel-1x1", Normal, convShapeCase{[4]int{3, 8, 4, 5}, 6, 1, 1, accel.Conv2DParams{}}, normal(1), normal(1), nil},
		{SizeOdd, "kernel-wider-than-input", Normal, convShapeCase{[4]int{7, 2, 3, 2}, 2, 3, 5,
			accel.Conv2DParams{PadLeft: 2, PadRight: 1}}, normal(1), normal(1), nil},
		// Padding so wide that whole windows lie in it: their terms are
		// skipped.
		{SizeOdd, "window-in-padding", Normal, convShapeCase{[4]int{3, 2, 3, 3}, 3, 2, 2,
			accel.Conv2DParams{PadTop: 3, PadRight: 4}}, normal(1), normal(1), nil},
		{SizeLarge, "medium-16ch", Normal, convShapeCase{[4]int{4, 16, 20, 20}, 16, 3, 3, pad1}, normal(1), normal(0.3), nil},
		{SizeLarge, "many-weights", Normal, convShapeCase{[4]int{2, 64, 9, 9}, 96, 3, 3, pad1}, normal(1), normal(1), nil},
		{SizeOdd, "order-magnitudes", Wide, convShapeCase{[4]int{8, 3, 6, 6}, 4, 3, 3, accel.Conv2DParams{}},
			magnitudes(-25, 25), magnitudes(-25, 25), nil},

		// Inf and NaN in the gradient where the windows meet padding: the
		// terms in padding are skipped, not multiplied by 0, so the weights
		// that see only padding there stay finite.
		{SizeOdd, "nonfinite-dy-at-padding", Specials, convShapeCase{[4]int{2, 2, 5, 5}, 3, 3, 3, pad1},
			normal(1), normal(1),
			func(x, dy []float32) {
				const plane = 5 * 5
				dy[0*plane+0] = posInf           // n 0, oc 0, top-left
				dy[4*plane+24] = qNaN            // n 1, oc 1, bottom-right
				dy[2*plane+4] = negInf           // n 0, oc 2, top-right
				dy[5*plane+20] = negNaN          // n 1, oc 2, bottom-left, NaN with a payload
				dy[3*plane+12], x[7] = posInf, 0 // n 1, oc 0, centre: Inf·0 is NaN
			}},
		// The same in a later run of the blocksum, the others finite.
		{SizeOdd, "nonfinite-dy-later-run", Specials, convShapeCase{[4]int{12, 1, 5, 5}, 2, 3, 3, pad1},
			normal(1), normal(1),
			func(x, dy []float32) {
				dy[2*11*25+24] = negInf // n 11, oc 0, bottom-right
				dy[2*6*25+25] = qNaN    // n 6, oc 1, top-left
			}},
		{SizeOdd, "specials-x", Specials, convShapeCase{[4]int{2, 2, 4, 5}, 2, 2, 2, accel.Conv2DParams{PadLeft: 1}},
			pick(specials...), normal(1), nil},
		{SizeOdd, "specials-dy", Specials, convShapeCase{[4]int{3, 2, 4, 4}, 4, 2, 2, accel.Conv2DParams{PadTop: 1, PadRight: 1}},
			normal(1), mix(0.2, normal(1), pick(specials...)), nil},
		// Sums of nothing but -0 products are +0.
		{SizeOdd, "neg-zero", NegZero, convShapeCase{[4]int{3, 2, 3, 3}, 2, 2, 2, accel.Conv2DParams{PadBottom: 1}},
			cycle(negZero), pick(1, -1, negZero), nil},
		{SizeOdd, "subnormal", Subnormal, convShapeCase{[4]int{2, 1, 4, 4}, 2, 2, 2, accel.Conv2DParams{PadTop: 1, PadLeft: 1}},
			pick(minSub, maxSub, -maxSub, 3e-39), pick(0.5, 2, -1, 0x1p-3), nil},
		{SizeOdd, "near-overflow", Overflow, convShapeCase{[4]int{2, 2, 3, 3}, 2, 2, 2, accel.Conv2DParams{}},
			magnitudes(60, 63), magnitudes(60, 63), nil},
		// Runs that overflow: 300 products of 2^126, then 300 of -2^126,
		// make runs of +Inf, +Inf and -Inf, and the tree NaN, where the
		// float64 sum is 0.
		{SizeOdd, "overflow-runs", Overflow, convShapeCase{[4]int{1, 1, 600, 1}, 1, 1, 1, accel.Conv2DParams{}},
			pick(0x1p63), eachRepeated([]float32{0x1p63, -0x1p63}, 300), nil},
	} {
		add(c.size, c.label, c.values, c.c, c.fx, c.fdy, c.edit)
	}
	return cases
}

// specConv2DBackwardFilter is conv2d_backward_filter of the input X with
// shape xs and the gradient DY with shape ys.
func specConv2DBackwardFilter(X []float32, xs []int, DY []float32, ys []int, p accel.Conv2DBackwardFilterParams) []float32 {
	N, C, H, Wd := xs[0], xs[1], xs[2], xs[3]
	OC, OH, OW := ys[1], ys[2], ys[3]
	KH, KW := p.KernelH, p.KernelW
	G := p.Groups
	x := func(n, c, h, w int) float32 { return X[((n*C+c)*H+h)*Wd+w] }
	dy := func(n, oc, h, w int) float32 { return DY[((n*OC+oc)*OH+h)*OW+w] }

	dW := make([]float32, OC*(C/G)*KH*KW)
	terms := make([]float32, N*OH*OW)
	for oc := 0; oc < OC; oc++ {
		for ci := 0; ci < C/G; ci++ {
			for kh := 0; kh < KH; kh++ {
				for kw := 0; kw < KW; kw++ {
					g := oc / (OC / G)
					c := g*(C/G) + ci
					for n := 0; n < N; n++ {
						for oh := 0; oh < OH; oh++ {
							for ow := 0; ow < OW; ow++ {
								t := (n*OH+oh)*OW + ow
								ih := oh*p.StrideH - p.PadTop + kh*p.DilationH
								iw := ow*p.StrideW - p.PadLeft + kw*p.DilationW
								terms[t] = 0 // a skipped term is a +0 in its place
								if 0 <= ih && ih < H && 0 <= iw && iw < Wd {
									terms[t] = float32(dy(n, oc, oh, ow) * x(n, c, ih, iw))
								}
							}
						}
					}
					dW[((oc*(C/G)+ci)*KH+kh)*KW+kw] = strictmath.Canon(strictmath.BlockSum(terms))
				}
			}
		}
	}
	return dW
}

// f64Conv2DBackwardFilter is conv2d_backward_filter in float64.
func f64Conv2DBackwardFilter(x []float32, xs []int, dy []float32, ys []int, p accel.Conv2DBackwardFilterParams) []ev {
	N, C, H, W := xs[0], xs[1], xs[2], xs[3]
	OC, OH, OW := ys[1], ys[2], ys[3]
	KH, KW := p.KernelH, p.KernelW
	CG, OCG := C/p.Groups, OC/p.Groups
	dw := make([]ev, 0, OC*CG*KH*KW)
	for oc := range OC {
		c0 := oc / OCG * CG
		for ci := range CG {
			for kh := range KH {
				for kw := range KW {
					var s sum
					for n := range N {
						for oh := range OH {
							ih := oh*p.StrideH - p.PadTop + kh*p.DilationH
							if ih < 0 || ih >= H {
								continue
							}
							for ow := range OW {
								iw := ow*p.StrideW - p.PadLeft + kw*p.DilationW
								if iw >= 0 && iw < W {
									s.addProduct(dy[((n*OC+oc)*OH+oh)*OW+ow], x[((n*C+c0+ci)*H+ih)*W+iw])
								}
							}
						}
					}
					dw = append(dw, s.ev())
				}
			}
		}
	}
	return dw
}
