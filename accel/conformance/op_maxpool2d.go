package conformance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.Pool2DParams]{
	op:    accel.MaxPool2D,
	cases: poolCases,
	spec: func(p accel.Pool2DParams, in []Tensor) [][]float32 {
		return [][]float32{specMaxPool2D(in[0].F32, in[0].Shape, p)}
	},
	float64: func(p accel.Pool2DParams, in []Tensor) reference {
		return reference{results: [][]ev{f64MaxPool2D(in[0].F32, in[0].Shape, p)}}
	},
	parts: poolParts,
})

// pool is a window with strides and no padding.
func pool(kh, kw, sh, sw int) accel.Pool2DParams {
	return accel.Pool2DParams{KernelH: kh, KernelW: kw, StrideH: sh, StrideW: sw}
}

// padded adds padding (top, left, bottom, right) to p.
func padded(p accel.Pool2DParams, t, l, b, r int) accel.Pool2DParams {
	p.PadTop, p.PadLeft, p.PadBottom, p.PadRight = t, l, b, r
	return p
}

func poolCases() []Case {
	var cases []Case
	// The grid: every value class of an operation that computes no sum on
	// every size class.
	for _, sh := range []struct {
		size string
		x    [4]int
		p    accel.Pool2DParams
	}{
		{SizeTiny, [4]int{1, 1, 1, 1}, pool(1, 1, 1, 1)},
		{SizeOdd, [4]int{2, 3, 7, 6}, padded(pool(3, 3, 2, 1), 1, 1, 1, 0)},
		// A window so long that a backend may split it among workers.
		{SizeTall, [4]int{2, 1, 2, 1000}, padded(pool(2, 600, 1, 7), 1, 599, 0, 599)},
		{SizeLarge, [4]int{8, 16, 28, 28}, pool(2, 2, 2, 2)},
	} {
		for _, class := range exactClasses {
			f := elementFill(class)
			if class == NegZero {
				// Windows of zeros and negatives, where -0 and +0 tie.
				f = mix(0.2, pick(0, negZero, negZero, -1), normal(1))
			}
			label := sh.size + "-" + dims(sh.x[:]...) + "-k" + dims(sh.p.KernelH, sh.p.KernelW)
			cases = append(cases, poolCase(sh.size, label, class, sh.x, sh.p, f))
		}
	}

	// Padding, strides and windows the grid misses; ties and NaN.
	for _, c := range []struct {
		size, label, values string
		x                   [4]int // N, C, H, W
		p                   accel.Pool2DParams
		fx                  fill
	}{
		{SizeOdd, "k2-s2", Normal, [4]int{1, 2, 6, 6}, pool(2, 2, 2, 2), normal(1)},
		{SizeOdd, "k3-s1-pad1", Normal, [4]int{2, 3, 7, 6}, padded(pool(3, 3, 1, 1), 1, 1, 1, 1), normal(1)},
		{SizeOdd, "pad-asymmetric-stride", Normal, [4]int{1, 2, 5, 7}, padded(pool(3, 2, 2, 1), 2, 0, 1, 1), normal(1)},
		{SizeOdd, "stride-3x2", Normal, [4]int{1, 1, 10, 9}, pool(3, 3, 3, 2), normal(1)},
		{SizeOdd, "kernel-over-input", Normal, [4]int{1, 1, 2, 2}, padded(pool(3, 3, 1, 1), 1, 1, 1, 1), normal(1)},
		{SizeOdd, "kernel-1x1-stride", Normal, [4]int{1, 2, 5, 5}, pool(1, 1, 2, 2), normal(1)},
		{SizeLarge, "batch", Normal, [4]int{4, 8, 16, 16}, padded(pool(3, 3, 2, 2), 1, 1, 1, 1), normal(1)},
		{SizeLarge, "large-plane", Normal, [4]int{1, 2, 300, 300}, padded(pool(2, 3, 1, 1), 1, 0, 0, 2), normal(1)},
		// Windows so large that a backend may split rows among workers.
		{SizeTall, "long-window", Normal, [4]int{1, 1, 2, 1000}, padded(pool(2, 600, 1, 1), 1, 599, 1, 599), normal(1)},
		// Of equal values the first wins, -0 and +0 included.
		{SizeOdd, "zero-ties", NegZero, [4]int{1, 3, 6, 6}, pool(2, 2, 1, 1), pick(0, negZero)},
		{SizeOdd, "zero-ties-pad", NegZero, [4]int{1, 2, 5, 5}, padded(pool(3, 2, 1, 1), 2, 1, 0, 1), pick(0, negZero, -1)},
		// A NaN anywhere in the window gives NaN, whatever its payload.
		{SizeOdd, "nan-pad", NaN, [4]int{2, 2, 6, 6}, padded(pool(3, 3, 2, 2), 1, 1, 1, 1), mix(0.05, normal(1), pick(qNaN, negNaN, sNaN))},
		{SizeOdd, "nan-after-neg-inf", NaN, [4]int{1, 1, 4, 4}, pool(2, 2, 1, 1), pick(negInf, qNaN, negInf, negNaN, posInf)},
		{SizeOdd, "neg-inf", Inf, [4]int{1, 2, 5, 5}, padded(pool(2, 2, 1, 1), 1, 0, 0, 1), mix(0.7, normal(1), cycle(negInf))},
		{SizeOdd, "specials", Specials, [4]int{1, 2, 5, 5}, padded(pool(2, 2, 1, 1), 1, 0, 1, 0), pick(specials...)},
	} {
		cases = append(cases, poolCase(c.size, c.label, c.values, c.x, c.p, c.fx))
	}
	return cases
}

func poolCase(size, label, values string, x [4]int, p accel.Pool2DParams, fx fill) Case {
	xs := x[:]
	return newCase(accel.MaxPool2D, size, label, values, p, func(r *rand.Rand) []Tensor {
		return []Tensor{{Name: "x", Shape: xs, F32: fx(r, elements(xs))}}
	})
}

// poolParts recomputes the last image of the batch alone.
func poolParts(p accel.Pool2DParams, in []Tensor) []Part {
	x := in[0]
	n := x.Shape[0]
	if n < 2 {
		return nil
	}
	per := len(x.F32) / n
	out := poolShape(x.Shape, p)
	last := Tensor{Name: x.Name, Shape: append([]int{1}, x.Shape[1:]...), F32: slices.Clone(x.F32[(n-1)*per:])}
	return []Part{{Name: fmt.Sprintf("image %d", n-1), Inputs: []Tensor{last}, Offset: (n - 1) * elements(out) / n}}
}

// poolShape is the maxpool2d output shape by the contract's formula: as for
// conv2d with dilation 1.
func poolShape(xs []int, p accel.Pool2DParams) []int {
	OH := (xs[2]+p.PadTop+p.PadBottom-p.KernelH)/p.StrideH + 1
	OW := (xs[3]+p.PadLeft+p.PadRight-p.KernelW)/p.StrideW + 1
	return []int{xs[0], xs[1], OH, OW}
}

// specMaxPool2D is maxpool2d of X with shape xs.
func specMaxPool2D(X []float32, xs []int, p accel.Pool2DParams) []float32 {
	N, C, H, W := xs[0], xs[1], xs[2], xs[3]
	ys := poolShape(xs, p)
	OH, OW := ys[2], ys[3]
	Y := make([]float32, N*C*OH*OW)
	for n := 0; n < N; n++ {
		for c := 0; c < C; c++ {
			for oh := 0; oh < OH; oh++ {
				for ow := 0; ow < OW; ow++ {
					var m float32
					first := true
					for kh := 0; kh < p.KernelH; kh++ {
						for kw := 0; kw < p.KernelW; kw++ {
							ih := oh*p.StrideH - p.PadTop + kh
							iw := ow*p.StrideW - p.PadLeft + kw
							if !(0 <= ih && ih < H && 0 <= iw && iw < W) {
								continue // padding is skipped
							}
							v := X[((n*C+c)*H+ih)*W+iw]
							if first {
								m = v
								first = false
							} else if m == m && (v != v || v > m) {
								m = v
							}
						}
					}
					Y[((n*C+c)*OH+oh)*OW+ow] = strictmath.Canon(m)
				}
			}
		}
	}
	return Y
}

// f64MaxPool2D is maxpool2d in float64, which is exact: NaN if the window
// holds one, else its largest value.
func f64MaxPool2D(x []float32, xs []int, p accel.Pool2DParams) []ev {
	ys := poolShape(xs, p)
	N, C, H, W := xs[0], xs[1], xs[2], xs[3]
	y := make([]ev, 0, ys[0]*ys[1]*ys[2]*ys[3])
	for n := range N {
		for c := range C {
			for oh := range ys[2] {
				for ow := range ys[3] {
					m := math.Inf(-1)
					for kh := range p.KernelH {
						for kw := range p.KernelW {
							ih := oh*p.StrideH - p.PadTop + kh
							iw := ow*p.StrideW - p.PadLeft + kw
							if ih >= 0 && ih < H && iw >= 0 && iw < W {
								v := float64(x[((n*C+c)*H+ih)*W+iw])
								if math.IsNaN(v) || v > m {
									m = v
								}
								if math.IsNaN(m) {
									break
								}
							}
						}
					}
					y = append(y, ev{v: m})
				}
			}
		}
	}
	return y
}
