package conformance

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.Conv2DBackwardDataParams]{
	op:    accel.Conv2DBackwardData,
	cases: convBackwardDataCases,
	spec: func(p accel.Conv2DBackwardDataParams, in []Tensor) [][]float32 {
		return [][]float32{specConv2DBackwardData(in[0].F32, in[0].Shape, in[1].F32, in[1].Shape, p)}
	},
	float64: func(p accel.Conv2DBackwardDataParams, in []Tensor) reference {
		return reference{results: [][]ev{f64Conv2DBackwardData(in[0].F32, in[0].Shape, in[1].F32, in[1].Shape, p)}}
	},
	parts: convBackwardDataParts,
})

// convShapeCase is a convolution of the corpus of a backward operation: the
// forward input's shape, the output channels, the kernel and the
// parameters (zero strides, dilations and groups mean 1).
type convShapeCase struct {
	x          [4]int // N, C, H, W
	oc, kh, kw int
	p          accel.Conv2DParams
}

// shapes returns c's parameters with their defaults and the shapes of its
// input, weights and output.
func (c convShapeCase) shapes() (p accel.Conv2DParams, xs, ws, ys []int) {
	p = convParams(c.p)
	xs = c.x[:]
	ws = []int{c.oc, c.x[1] / p.Groups, c.kh, c.kw}
	return p, xs, ws, convShape(xs, ws, p)
}

func convBackwardDataCases() []Case {
	var cases []Case
	add := func(size, label, values string, c convShapeCase, fdy, fw fill, edit func(dy, w []float32)) {
		p, xs, ws, ys := c.shapes()
		params := accel.Conv2DBackwardDataParams{Conv2DParams: p, InputH: xs[2], InputW: xs[3]}
		cases = append(cases, newCase(accel.Conv2DBackwardData, size, label, values, params, func(r *rand.Rand) []Tensor {
			dy, w := fdy(r, elements(ys)), fw(r, elements(ws))
			if edit != nil {
				edit(dy, w)
			}
			return []Tensor{{Name: "dy", Shape: ys, F32: dy}, {Name: "w", Shape: ws, F32: w}}
		}))
	}

	// The grid: every value class on every size class. The odd, tall and
	// large shapes have strides of 1, the path that runs as a forward
	// convolution; the hand-picked cases below take the others.
	for _, sh := range []struct {
		size string
		c    convShapeCase
	}{
		{SizeTiny, convShapeCase{[4]int{1, 1, 1, 1}, 1, 1, 1, accel.Conv2DParams{}}},
		{SizeOdd, convShapeCase{[4]int{3, 3, 7, 6}, 5, 3, 2, accel.Conv2DParams{PadTop: 1, PadBottom: 2, PadRight: 1}}},
		{SizeTall, convShapeCase{[4]int{2, 4, 50, 3}, 4, 5, 1, accel.Conv2DParams{Groups: 2, DilationH: 2, PadTop: 2, PadBottom: 1}}},
		// The second layer of an MNIST network, on a smaller batch.
		{SizeLarge, convShapeCase{[4]int{4, 16, 14, 14}, 32, 5, 5, accel.Conv2DParams{PadTop: 2, PadLeft: 2, PadBottom: 2, PadRight: 2}}},
	} {
		p, _, ws, ys := sh.c.shapes()
		for _, class := range gridClasses {
			fdy, fw, _ := productFills(class, ws[0]/p.Groups*ws[2]*ws[3])
			add(sh.size, sh.size+"-"+dims(ys...)+"-k"+dims(ws...), class, sh.c, fdy, fw, nil)
		}
	}

	for _, c := range []struct {
		size, label, values string
		c                   convShapeCase
		fdy, fw             fill
		edit                func(dy, w []float32)
	}{
		{SizeOdd, "basic-k3", Normal, convShapeCase{[4]int{1, 1, 5, 5}, 1, 3, 3, accel.Conv2DParams{}}, normal(1), normal(1), nil},
		{SizeOdd, "pad-same", Normal, convShapeCase{[4]int{2, 3, 6, 7}, 4, 3, 3, pad1}, normal(1), normal(1), nil},
		// Padding as wide as the dilated window: the backward convolution
		// needs none.
		{SizeOdd, "pad-full", Normal, convShapeCase{[4]int{2, 2, 5, 6}, 3, 3, 2,
			accel.Conv2DParams{PadTop: 2, PadLeft: 1, PadBottom: 2, PadRight: 1}}, normal(1), normal(1), nil},
		{SizeOdd, "pad-asymmetric", Normal, convShapeCase{[4]int{2, 3, 7, 6}, 4, 3, 2,
			accel.Conv2DParams{PadTop: 1, PadLeft: 0, PadBottom: 2, PadRight: 1}}, normal(1), normal(1), nil},
		{SizeOdd, "stride", Normal, convShapeCase{[4]int{1, 2, 9, 11}, 3, 3, 3, accel.Conv2DParams{StrideH: 2, StrideW: 3}}, normal(1), normal(1), nil},
		{SizeOdd, "stride-pad", Normal, convShapeCase{[4]int{2, 2, 8, 7}, 3, 3, 3,
			accel.Conv2DParams{StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}}, normal(1), normal(1), nil},
		// The last rows and columns of the input are in no window: their
		// gradient is +0.
		{SizeOdd, "stride-unreached", Normal, convShapeCase{[4]int{1, 2, 8, 9}, 2, 3, 2, accel.Conv2DParams{StrideH: 2, StrideW: 3}}, normal(1), normal(1), nil},
		{SizeOdd, "stride-1-by-2", Normal, convShapeCase{[4]int{2, 2, 7, 8}, 3, 2, 3,
			accel.Conv2DParams{StrideW: 2, PadLeft: 1, PadRight: 1}}, normal(1), normal(1), nil},
		{SizeOdd, "dilation", Normal, convShapeCase{[4]int{1, 2, 10, 9}, 2, 3, 3,
			accel.Conv2DParams{DilationH: 2, DilationW: 3, PadTop: 2, PadRight: 1}}, normal(1), normal(1), nil},
		{SizeOdd, "dilation-stride", Normal, convShapeCase{[4]int{2, 3, 11, 12}, 4, 2, 3,
			accel.Conv2DParams{StrideH: 3, StrideW: 2, DilationH: 4, DilationW: 2, PadTop: 3, PadLeft: 2, PadBottom: 1}}, normal(1), normal(1), nil},
		{SizeOdd, "groups-2", Normal, convShapeCase{[4]int{2, 4, 6, 6}, 6, 3, 3,
			accel.Conv2DParams{Groups: 2, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}}, normal(1), normal(1), nil},
		{SizeOdd, "groups-3", Normal, convShapeCase{[4]int{1, 9, 5, 7}, 6, 2, 3, accel.Conv2DParams{Groups: 3, StrideW: 2}}, normal(1), normal(1), nil},
		{SizeOdd, "depthwise", Normal, convShapeCase{[4]int{2, 5, 7, 7}, 5, 3, 3,
			accel.Conv2DParams{Groups: 5, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}}, normal(1), normal(1), nil},
		{SizeOdd, "depthwise-multiplier-2", Normal, convShapeCase{[4]int{1, 4, 6, 5}, 8, 3, 2,
			accel.Conv2DParams{Groups: 4, StrideH: 2, PadBottom: 2}}, normal(1), normal(1), nil},
		{SizeOdd, "kernel-1x1", Normal, convShapeCase{[4]int{3, 8, 4, 5}, 6, 1, 1, accel.Conv2DParams{}}, normal(1), normal(1), nil},
		{SizeOdd, "kernel-1x1-stride", Normal, convShapeCase{[4]int{1, 3, 7, 8}, 2, 1, 1, accel.Conv2DParams{StrideH: 2, StrideW: 3}}, normal(1), normal(1), nil},
		{SizeOdd, "kernel-wider-than-input", Normal, convShapeCase{[4]int{1, 2, 3, 2}, 2, 3, 5,
			accel.Conv2DParams{PadLeft: 2, PadRight: 1}}, normal(1), normal(1), nil},
		// Padding wider than the dilated window: some outputs of the
		// forward call saw nothing but padding.
		{SizeOdd, "pad-beyond-window", Normal, convShapeCase{[4]int{1, 2, 3, 3}, 3, 2, 2,
			accel.Conv2DParams{PadTop: 3, PadRight: 4}}, normal(1), normal(1), nil},
		{SizeOdd, "pad-beyond-window-1x1", Normal, convShapeCase{[4]int{2, 1, 2, 2}, 2, 1, 1,
			accel.Conv2DParams{PadTop: 1, PadLeft: 2, PadBottom: 2, PadRight: 1}}, normal(1), normal(1), nil},
		{SizeLarge, "medium-16ch", Normal, convShapeCase{[4]int{2, 16, 20, 20}, 16, 3, 3, pad1}, normal(1), normal(0.3), nil},
		{SizeLarge, "large-plane", Normal, convShapeCase{[4]int{2, 2, 130, 140}, 2, 3, 3, pad1}, normal(1), normal(1), nil},
		{SizeLarge, "mnist-conv1", Normal, convShapeCase{[4]int{4, 1, 28, 28}, 16, 5, 5,
			accel.Conv2DParams{PadTop: 2, PadLeft: 2, PadBottom: 2, PadRight: 2}}, normal(1), normal(0.2), nil},
		{SizeOdd, "order-magnitudes", Wide, convShapeCase{[4]int{1, 3, 6, 6}, 6, 3, 3, accel.Conv2DParams{}},
			magnitudes(-25, 25), magnitudes(-25, 25), nil},

		// Non-finite weights where a window meets padding: a term whose
		// gradient position lies outside dy is skipped, not multiplied by
		// 0, so Inf or NaN there leaves those inputs' gradients finite.
		{SizeOdd, "nonfinite-weights-at-padding", Specials, convShapeCase{[4]int{1, 2, 5, 5}, 3, 3, 3, pad1},
			mix(0.2, normal(1), cycle(0, negZero)), normal(1),
			func(dy, w []float32) {
				const per = 2 * 3 * 3 // weights per output channel
				w[0*per+0] = posInf   // oc 0, c 0, top-left
				w[1*per+9+8] = qNaN   // oc 1, c 1, bottom-right
				w[2*per+2] = negInf   // oc 2, c 0, top-right
				w[2*per+9+6] = negNaN // oc 2, c 1, bottom-left, NaN with a payload
			}},
		{SizeOdd, "nonfinite-weights-stride", Specials, convShapeCase{[4]int{1, 1, 6, 6}, 2, 3, 3,
			accel.Conv2DParams{StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1}},
			normal(1), mix(0.2, normal(1), pick(posInf, negInf, qNaN)), nil},
		{SizeOdd, "specials-dy", Specials, convShapeCase{[4]int{2, 2, 4, 5}, 2, 2, 2, accel.Conv2DParams{PadLeft: 1}},
			pick(specials...), normal(1), nil},
		{SizeOdd, "specials-w", Specials, convShapeCase{[4]int{1, 4, 4, 4}, 2, 2, 2, accel.Conv2DParams{PadTop: 1, PadRight: 1}},
			normal(1), mix(0.2, normal(1), pick(specials...)), nil},
		// Sums of nothing but -0 products, and windows of padding alone,
		// are +0.
		{SizeOdd, "neg-zero", NegZero, convShapeCase{[4]int{1, 2, 3, 3}, 2, 2, 2, accel.Conv2DParams{PadBottom: 1}},
			cycle(negZero), pick(1, -1, negZero), nil},
		{SizeOdd, "subnormal", Subnormal, convShapeCase{[4]int{1, 1, 4, 4}, 2, 2, 2, accel.Conv2DParams{PadTop: 1, PadLeft: 1}},
			pick(minSub, maxSub, -maxSub, 3e-39), pick(0.5, 2, -1, 0x1p-3), nil},
		{SizeOdd, "near-overflow", Overflow, convShapeCase{[4]int{1, 2, 3, 3}, 2, 2, 2, accel.Conv2DParams{}},
			magnitudes(60, 63), magnitudes(60, 63), nil},
	} {
		add(c.size, c.label, c.values, c.c, c.fdy, c.fw, c.edit)
	}
	return cases
}

// convBackwardDataParts recomputes the last image of the batch alone.
func convBackwardDataParts(p accel.Conv2DBackwardDataParams, in []Tensor) []Part {
	dy := in[0]
	n := dy.Shape[0]
	if n < 2 {
		return nil
	}
	per := len(dy.F32) / n
	last := Tensor{Name: dy.Name, Shape: append([]int{1}, dy.Shape[1:]...), F32: slices.Clone(dy.F32[(n-1)*per:])}
	ws := in[1].Shape
	perOut := ws[1] * p.Groups * p.InputH * p.InputW
	return []Part{{Name: fmt.Sprintf("image %d", n-1), Inputs: []Tensor{last, in[1]}, Offset: (n - 1) * perOut}}
}

// specConv2DBackwardData is conv2d_backward_data of the gradient DY with
// shape ys and weights W with shape ws.
func specConv2DBackwardData(DY []float32, ys []int, W []float32, ws []int, p accel.Conv2DBackwardDataParams) []float32 {
	N, OC, OH, OW := ys[0], ys[1], ys[2], ys[3]
	KH, KW := ws[2], ws[3]
	G := p.Groups
	C, H, Wd := ws[1]*G, p.InputH, p.InputW
	OCG := OC / G
	dy := func(n, oc, h, w int) float32 { return DY[((n*OC+oc)*OH+h)*OW+w] }
	wt := func(o, c, h, w int) float32 { return W[((o*(C/G)+c)*KH+h)*KW+w] }

	dX := make([]float32, N*C*H*Wd)
	for n := 0; n < N; n++ {
		for c := 0; c < C; c++ {
			for ih := 0; ih < H; ih++ {
				for iw := 0; iw < Wd; iw++ {
					g := c / (C / G)
					ci := c - g*(C/G)
					s := float32(0)
					for o := 0; o < OCG; o++ {
						oc := g*OCG + o
						for kh := KH - 1; kh >= 0; kh-- {
							for kw := KW - 1; kw >= 0; kw-- {
								th := ih + p.PadTop - kh*p.DilationH
								tw := iw + p.PadLeft - kw*p.DilationW
								if th%p.StrideH == 0 && tw%p.StrideW == 0 &&
									0 <= th/p.StrideH && th/p.StrideH < OH && 0 <= tw/p.StrideW && tw/p.StrideW < OW {
									s = s + float32(dy(n, oc, th/p.StrideH, tw/p.StrideW)*wt(oc, ci, kh, kw))
								}
							}
						}
					}
					dX[((n*C+c)*H+ih)*Wd+iw] = strictmath.Canon(s)
				}
			}
		}
	}
	return dX
}

// f64Conv2DBackwardData is conv2d_backward_data in float64.
func f64Conv2DBackwardData(dy []float32, ys []int, w []float32, ws []int, p accel.Conv2DBackwardDataParams) []ev {
	N, OC, OH, OW := ys[0], ys[1], ys[2], ys[3]
	CG, KH, KW := ws[1], ws[2], ws[3]
	C, H, W := CG*p.Groups, p.InputH, p.InputW
	OCG := OC / p.Groups
	dx := make([]ev, 0, N*C*H*W)
	for n := range N {
		for c := range C {
			g, ci := c/CG, c%CG
			for ih := range H {
				for iw := range W {
					var s sum
					for o := range OCG {
						oc := g*OCG + o
						for kh := range KH {
							th := ih + p.PadTop - kh*p.DilationH
							if th < 0 || th%p.StrideH != 0 || th/p.StrideH >= OH {
								continue
							}
							for kw := range KW {
								tw := iw + p.PadLeft - kw*p.DilationW
								if tw < 0 || tw%p.StrideW != 0 || tw/p.StrideW >= OW {
									continue
								}
								s.addProduct(dy[((n*OC+oc)*OH+th/p.StrideH)*OW+tw/p.StrideW], w[((oc*CG+ci)*KH+kh)*KW+kw])
							}
						}
					}
					dx = append(dx, s.ev())
				}
			}
		}
	}
	return dx
}
