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
	op:    accel.MaxPool2DBackward,
	cases: poolBackwardCases,
	spec: func(p accel.Pool2DParams, in []Tensor) [][]float32 {
		return [][]float32{specMaxPool2DBackward(in[0].F32, in[0].Shape, in[1].F32, p)}
	},
	float64: func(p accel.Pool2DParams, in []Tensor) reference {
		return reference{results: [][]ev{f64MaxPool2DBackward(in[0].F32, in[0].Shape, in[1].F32, p)}}
	},
	parts: poolBackwardParts,
})

func poolBackwardCases() []Case {
	var cases []Case
	// The grid: every value class of the input, which decides the windows'
	// choices, and of the gradient, which overlapping windows add up, on
	// every size class: overlapping windows with padding, a long window
	// and the non-overlapping 2x2 pool of an MNIST network.
	for _, sh := range []struct {
		size string
		x    [4]int
		p    accel.Pool2DParams
	}{
		{SizeTiny, [4]int{1, 1, 1, 1}, pool(1, 1, 1, 1)},
		{SizeOdd, [4]int{2, 3, 7, 6}, padded(pool(3, 3, 2, 1), 1, 1, 1, 0)},
		{SizeTall, [4]int{2, 1, 2, 1000}, padded(pool(2, 600, 1, 7), 1, 599, 0, 599)},
		{SizeLarge, [4]int{8, 16, 28, 28}, pool(2, 2, 2, 2)},
	} {
		for _, class := range exactClasses {
			fx, fdy := elementFill(class), elementFill(class)
			if class == NegZero {
				// Windows of zeros and negatives, where -0 and +0 tie,
				// and gradients of -0.
				fx = mix(0.2, pick(0, negZero, negZero, -1), normal(1))
			}
			label := sh.size + "-" + dims(sh.x[:]...) + "-k" + dims(sh.p.KernelH, sh.p.KernelW)
			cases = append(cases, poolBackwardCase(sh.size, label, class, sh.x, sh.p, fx, fdy))
		}
	}

	// Strides, padding and windows the grid misses; ties, NaN, and sums
	// of gradients that overflow or cancel where many windows choose one
	// position.
	for _, c := range []struct {
		size, label, values string
		x                   [4]int // N, C, H, W
		p                   accel.Pool2DParams
		fx, fdy             fill
	}{
		{SizeOdd, "k2-s2", Normal, [4]int{2, 4, 8, 8}, pool(2, 2, 2, 2), normal(1), normal(1)},
		{SizeOdd, "k2-s2-odd-size", Normal, [4]int{1, 2, 7, 9}, pool(2, 2, 2, 2), normal(1), normal(1)},
		{SizeOdd, "k2-s2-pad", Normal, [4]int{1, 2, 7, 9}, padded(pool(2, 2, 2, 2), 1, 1, 1, 1), normal(1), normal(1)},
		{SizeOdd, "k2-s1", Normal, [4]int{2, 2, 6, 7}, pool(2, 2, 1, 1), normal(1), normal(1)},
		{SizeOdd, "k3-s1-pad1", Normal, [4]int{2, 3, 7, 6}, padded(pool(3, 3, 1, 1), 1, 1, 1, 1), normal(1), normal(1)},
		{SizeOdd, "pad-asymmetric-stride", Normal, [4]int{1, 2, 5, 7}, padded(pool(3, 2, 2, 1), 2, 0, 1, 1), normal(1), normal(1)},
		// Positions no window covers get +0.
		{SizeOdd, "stride-over-kernel", Normal, [4]int{1, 2, 10, 9}, pool(2, 2, 3, 4), normal(1), normal(1)},
		// Every window holds the whole input: one position takes every
		// gradient.
		{SizeOdd, "kernel-over-input", Normal, [4]int{1, 1, 2, 2}, padded(pool(3, 3, 1, 1), 1, 1, 1, 1), normal(1), normal(1)},
		{SizeOdd, "kernel-1x1-stride", Normal, [4]int{1, 2, 5, 5}, pool(1, 1, 2, 2), normal(1), normal(1)},
		// Of equal values the first wins, -0 and +0 included.
		{SizeOdd, "zero-ties", NegZero, [4]int{1, 3, 6, 6}, pool(2, 2, 1, 1), pick(0, negZero), normal(1)},
		{SizeOdd, "zero-ties-k2-s2", NegZero, [4]int{2, 2, 6, 6}, pool(2, 2, 2, 2), pick(0, negZero), normal(1)},
		{SizeOdd, "zero-ties-pad", NegZero, [4]int{1, 2, 5, 5}, padded(pool(3, 2, 1, 1), 2, 1, 0, 1), pick(0, negZero, -1), normal(1)},
		// A single gradient of -0 gives +0, and so does a sum of them.
		{SizeOdd, "neg-zero-gradients", NegZero, [4]int{1, 2, 6, 6}, pool(2, 2, 2, 2), normal(1), cycle(negZero)},
		{SizeOdd, "neg-zero-gradients-overlap", NegZero, [4]int{1, 2, 6, 6}, padded(pool(3, 3, 1, 1), 1, 1, 1, 1), normal(1), pick(negZero, negZero, 1)},
		// The first NaN of a window wins, whatever its payload and
		// whatever follows; NaN gradients come out canonical.
		{SizeOdd, "nan-x", NaN, [4]int{2, 2, 6, 6}, padded(pool(3, 3, 2, 2), 1, 1, 1, 1), mix(0.1, normal(1), pick(qNaN, negNaN, sNaN)), normal(1)},
		{SizeOdd, "nan-after-neg-inf", NaN, [4]int{1, 1, 4, 4}, pool(2, 2, 1, 1), pick(negInf, qNaN, negInf, negNaN, posInf), normal(1)},
		{SizeOdd, "nan-gradients", NaN, [4]int{1, 2, 6, 6}, padded(pool(3, 3, 1, 1), 1, 1, 1, 1), normal(1), mix(0.1, normal(1), pick(negNaN, sNaN))},
		// Many windows choose the peak of a small plane: their gradients
		// overflow, meet +Inf and -Inf, or cancel.
		{SizeOdd, "peak-overflow", Overflow, [4]int{1, 2, 6, 6}, padded(pool(4, 4, 1, 1), 3, 3, 3, 3), normal(1), pick(maxFloat, 3e38, -3e38, 1e38)},
		{SizeOdd, "peak-inf", Inf, [4]int{1, 2, 6, 6}, padded(pool(4, 4, 1, 1), 3, 3, 3, 3), normal(1), mix(0.1, normal(1), pick(posInf, negInf))},
		{SizeOdd, "peak-cancel", Cancel, [4]int{1, 2, 6, 6}, padded(pool(4, 4, 1, 1), 3, 3, 3, 3), normal(1), bigPairs},
		{SizeOdd, "peak-wide", Wide, [4]int{1, 2, 6, 6}, padded(pool(4, 4, 1, 1), 3, 3, 3, 3), normal(1), magnitudes(-40, 40)},
		{SizeOdd, "peak-subnormal", Subnormal, [4]int{1, 2, 6, 6}, padded(pool(4, 4, 1, 1), 3, 3, 3, 3), normal(1), pick(minSub, -minSub, maxSub, minNormal)},
		{SizeOdd, "specials", Specials, [4]int{1, 2, 5, 5}, padded(pool(2, 2, 1, 1), 1, 0, 1, 0), pick(specials...), pick(specials...)},
		{SizeLarge, "batch", Normal, [4]int{4, 8, 16, 16}, padded(pool(3, 3, 2, 2), 1, 1, 1, 1), normal(1), normal(1)},
		// Planes that a backend may split among workers.
		{SizeLarge, "large-plane", Normal, [4]int{1, 2, 300, 300}, padded(pool(2, 3, 1, 1), 1, 0, 0, 2), normal(1), normal(1)},
		{SizeLarge, "large-plane-k2-s2", Normal, [4]int{1, 1, 600, 300}, pool(2, 2, 2, 2), normal(1), normal(1)},
		{SizeTall, "long-window", Normal, [4]int{1, 1, 2, 1000}, padded(pool(2, 600, 1, 1), 1, 599, 1, 599), normal(1), normal(1)},
	} {
		cases = append(cases, poolBackwardCase(c.size, c.label, c.values, c.x, c.p, c.fx, c.fdy))
	}
	return cases
}

func poolBackwardCase(size, label, values string, x [4]int, p accel.Pool2DParams, fx, fdy fill) Case {
	xs := x[:]
	ys := poolShape(xs, p)
	return newCase(accel.MaxPool2DBackward, size, label, values, p, func(r *rand.Rand) []Tensor {
		return []Tensor{{Name: "x", Shape: xs, F32: fx(r, elements(xs))}, {Name: "dy", Shape: ys, F32: fdy(r, elements(ys))}}
	})
}

// poolBackwardParts recomputes the last image of the batch alone.
func poolBackwardParts(p accel.Pool2DParams, in []Tensor) []Part {
	x, dy := in[0], in[1]
	n := x.Shape[0]
	if n < 2 {
		return nil
	}
	last := func(t Tensor) Tensor {
		per := len(t.F32) / n
		return Tensor{Name: t.Name, Shape: append([]int{1}, t.Shape[1:]...), F32: slices.Clone(t.F32[(n-1)*per:])}
	}
	return []Part{{Name: fmt.Sprintf("image %d", n-1), Inputs: []Tensor{last(x), last(dy)}, Offset: (n - 1) * len(x.F32) / n}}
}

// windowsOver returns the windows o in [0, out) whose positions
// o*stride - pad … o*stride - pad + kernel - 1 include i, as [lo, hi).
func windowsOver(i, out, stride, pad, kernel int) (lo, hi int) {
	for lo = 0; lo < out && lo*stride-pad+kernel-1 < i; lo++ {
	}
	for hi = lo; hi < out && hi*stride-pad <= i; hi++ {
	}
	return lo, hi
}

// specMaxPool2DBackward is maxpool2d_backward of input X with shape xs and
// output gradient dY.
func specMaxPool2DBackward(X []float32, xs []int, dY []float32, p accel.Pool2DParams) []float32 {
	N, C, H, W := xs[0], xs[1], xs[2], xs[3]
	ys := poolShape(xs, p)
	OH, OW := ys[2], ys[3]
	// chose[n,c,oh,ow] is the position ih*W + iw that the window kept:
	// the maxpool2d scan, remembering where m came from.
	chose := make([]int, N*C*OH*OW)
	for n := 0; n < N; n++ {
		for c := 0; c < C; c++ {
			for oh := 0; oh < OH; oh++ {
				for ow := 0; ow < OW; ow++ {
					var m float32
					at := -1
					for kh := 0; kh < p.KernelH; kh++ {
						for kw := 0; kw < p.KernelW; kw++ {
							ih := oh*p.StrideH - p.PadTop + kh
							iw := ow*p.StrideW - p.PadLeft + kw
							if !(0 <= ih && ih < H && 0 <= iw && iw < W) {
								continue // padding is skipped
							}
							v := X[((n*C+c)*H+ih)*W+iw]
							if at < 0 {
								m, at = v, ih*W+iw
							} else if m == m && (v != v || v > m) {
								m, at = v, ih*W+iw
							}
						}
					}
					chose[((n*C+c)*OH+oh)*OW+ow] = at
				}
			}
		}
	}
	dX := make([]float32, len(X))
	for n := 0; n < N; n++ {
		for c := 0; c < C; c++ {
			for ih := 0; ih < H; ih++ {
				for iw := 0; iw < W; iw++ {
					s := float32(0)
					// The windows in row-major order; only those over
					// (ih, iw) can have chosen it.
					ohLo, ohHi := windowsOver(ih, OH, p.StrideH, p.PadTop, p.KernelH)
					owLo, owHi := windowsOver(iw, OW, p.StrideW, p.PadLeft, p.KernelW)
					for oh := ohLo; oh < ohHi; oh++ {
						for ow := owLo; ow < owHi; ow++ {
							w := ((n*C+c)*OH+oh)*OW + ow
							if chose[w] == ih*W+iw {
								s = s + dY[w]
							}
						}
					}
					dX[((n*C+c)*H+ih)*W+iw] = strictmath.Canon(s)
				}
			}
		}
	}
	return dX
}

// f64MaxPool2DBackward is maxpool2d_backward in float64: each window's
// maximum in float64 (NaN if it holds one), the first position in the
// window that equals it (or is NaN) takes its gradient, and each position
// sums what it takes with the error bound of a sum.
func f64MaxPool2DBackward(x []float32, xs []int, dy []float32, p accel.Pool2DParams) []ev {
	N, C, H, W := xs[0], xs[1], xs[2], xs[3]
	ys := poolShape(xs, p)
	OH, OW := ys[2], ys[3]
	sums := make([]sum, len(x))
	for pl := range N * C {
		xp := x[pl*H*W : (pl+1)*H*W]
		for oh := range OH {
			for ow := range OW {
				ihLo, ihHi := max(0, oh*p.StrideH-p.PadTop), min(H, oh*p.StrideH-p.PadTop+p.KernelH)
				iwLo, iwHi := max(0, ow*p.StrideW-p.PadLeft), min(W, ow*p.StrideW-p.PadLeft+p.KernelW)
				m := math.Inf(-1)
				for ih := ihLo; ih < ihHi; ih++ {
					for iw := iwLo; iw < iwHi; iw++ {
						m = max(m, float64(xp[ih*W+iw])) // a NaN gives NaN
					}
				}
				at := -1
				for ih := ihLo; ih < ihHi && at < 0; ih++ {
					for iw := iwLo; iw < iwHi && at < 0; iw++ {
						v := float64(xp[ih*W+iw])
						if v == m || math.IsNaN(v) && math.IsNaN(m) {
							at = ih*W + iw
						}
					}
				}
				sums[pl*H*W+at].add(exact(dy[(pl*OH+oh)*OW+ow]))
			}
		}
	}
	dx := make([]ev, len(x))
	for i := range sums {
		dx[i] = sums[i].ev()
	}
	return dx
}
