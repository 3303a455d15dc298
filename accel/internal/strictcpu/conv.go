package strictcpu

import (
	"context"
	"sync"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// convWork is about how many multiply-adds make one work item: enough to
// amortise handing it out, little enough that a deadline interrupts even a
// convolution with a very long kernel promptly.
const convWork = 1 << 20

// validRange returns the output positions o in [0, out) whose input position
// o*stride - pad + off lies in [0, size), as the half-open range [lo, hi).
func validRange(size, out, stride, pad, off int) (lo, hi int) {
	if d := pad - off; d > 0 {
		lo = (d + stride - 1) / stride
	}
	t := size - 1 + pad - off
	if t < 0 {
		return 0, 0
	}
	hi = min(t/stride+1, out)
	if lo > hi {
		lo = hi
	}
	return lo, hi
}

// Conv2D computes every output plane (n, oc) in rectangles of rows and
// columns, each one work item. Within a rectangle the outputs start at +0
// and receive, for c, kh and kw in order, the products of the inputs that lie
// inside the image, so each output element sums its terms in the contract's
// (c, kh, kw) order with padding skipped; the bias comes last. With SIMD
// kernels and a stride of 1 in W, the output rows that see every kernel row
// are computed whole instead, one vector lane per output column, over all
// channels and kernel taps in that same order (deepRow).
func (b *Kernels) Conv2D(ctx context.Context, out, x, w, bias *accel.Tensor, p accel.Conv2DParams) error {
	xs, ws, ys := x.Shape(), w.Shape(), out.Shape()
	N, C, H, W := xs[0], xs[1], xs[2], xs[3]
	OC, CG, KH, KW := ws[0], ws[1], ws[2], ws[3]
	OH, OW := ys[2], ys[3]
	X, Wt, Y := f32(x), f32(w), f32(out)
	var B []float32
	if bias != nil {
		B = f32(bias)
	}
	if pointwise(p, KH, KW) {
		return b.conv1x1(ctx, Y, X, Wt, B, N, C, OC, H*W)
	}
	if p.Groups == 1 && OC >= mmFewRows && b.kern.micro != nil && finite(Wt) {
		return b.convUnrolled(ctx, Y, X, Wt, B, xs, ws, ys, p)
	}
	ocg := OC / p.Groups

	// Valid output rows per kernel row; they depend on the kernel offset
	// alone. (KH is at most the weights' size, so this is bounded by them.)
	ohLo, ohHi := make([]int, KH), make([]int, KH)
	for kh := range KH {
		ohLo[kh], ohHi[kh] = validRange(H, OH, p.StrideH, p.PadTop, kh*p.DilationH)
	}
	cols := newConvCols(W, OW, KW, p.StrideW, p.PadLeft, p.DilationW)
	cols.taps = b.kern.taps

	// Rectangles of whole rows where a row is cheap, else of columns.
	perOutput := CG * KH * KW
	colStep, bandRows := OW, 1
	if perOutput*OW > convWork {
		colStep = max(1, convWork/perOutput)
	} else {
		bandRows = max(1, min(OH, convWork/(perOutput*OW)))
	}
	colChunks := (OW + colStep - 1) / colStep
	bands := (OH + bandRows - 1) / bandRows
	plane := OH * OW
	// Output rows that see every kernel row. Without SIMD taps, those of
	// a 3x3 kernel take its three rows in one pass per channel; with them,
	// those of any kernel of stride 1 in W take every channel and every
	// kernel row in one pass (deep).
	allLo, allHi := 0, OH
	for kh := range KH {
		allLo, allHi = max(allLo, ohLo[kh]), min(allHi, ohHi[kh])
	}
	deep := cols.taps != nil && p.StrideW == 1
	fused := !deep && KH == 3 && KW == 3 && p.StrideW == 1
	return b.forEach(ctx, N*OC*bands*colChunks, func(item int) {
		pl, rect := item/(bands*colChunks), item%(bands*colChunks)
		n, oc := pl/OC, pl%OC
		g := oc / ocg
		r0, r1 := rect/colChunks*bandRows, min((rect/colChunks+1)*bandRows, OH)
		j0, j1 := rect%colChunks*colStep, min((rect%colChunks+1)*colStep, OW)
		y := Y[pl*plane : (pl+1)*plane]
		// The rows [fLo, fHi) take all their terms in one pass; the
		// others one channel and one kernel row at a time.
		fLo, fHi := max(allLo, r0), min(allHi, r1)
		if fLo >= fHi || !deep && !fused {
			fLo, fHi = r0, r0
		}
		// Deep rows are written whole, bias and canonicalisation
		// included; every other output starts at +0.
		for oh := r0; oh < r1; oh++ {
			if !deep || oh < fLo || oh >= fHi {
				clear(y[oh*OW+j0 : oh*OW+j1])
			}
		}
		if deep {
			xg := X[(n*C+g*CG)*H*W : (n*C+g*CG+CG)*H*W]
			wo := Wt[oc*CG*KH*KW : (oc+1)*CG*KH*KW]
			mode, bv := tapsOut, float32(0)
			if B != nil {
				mode, bv = tapsOutBias, B[oc]
			}
			for oh := fLo; oh < fHi; oh++ {
				ih := oh*p.StrideH - p.PadTop
				cols.deepRow(y[oh*OW:(oh+1)*OW], xg[ih*W:], H*W, p.DilationH*W, wo, CG, KH, j0, j1, mode, bv)
			}
		}
		for c := range CG {
			xc := X[(n*C+g*CG+c)*H*W : (n*C+g*CG+c+1)*H*W]
			wc := Wt[(oc*CG+c)*KH*KW : (oc*CG+c+1)*KH*KW]
			if fused {
				w9 := (*[9]float32)(wc)
				dh := p.DilationH * W
				for oh := fLo; oh < fHi; oh++ {
					ih := oh*p.StrideH - p.PadTop
					cols.row3x3(y[oh*OW:(oh+1)*OW], xc[ih*W:ih*W+W], xc[ih*W+dh:ih*W+dh+W], xc[ih*W+2*dh:ih*W+2*dh+W], w9, j0, j1)
				}
			}
			for kh := range KH {
				wr := wc[kh*KW : kh*KW+KW]
				lo, hi := max(ohLo[kh], r0), min(ohHi[kh], r1)
				for _, rows := range [2][2]int{{lo, min(hi, fLo)}, {max(lo, fHi), hi}} {
					for oh := rows[0]; oh < rows[1]; oh++ {
						ih := oh*p.StrideH - p.PadTop + kh*p.DilationH
						cols.row(y[oh*OW:(oh+1)*OW], xc[ih*W:ih*W+W], wr, j0, j1)
					}
				}
			}
		}
		for oh := r0; oh < r1; oh++ {
			if deep && fLo <= oh && oh < fHi {
				continue // done
			}
			yr := y[oh*OW+j0 : oh*OW+j1]
			if B == nil {
				strictmath.CanonSlice(yr)
				continue
			}
			bv := B[oc]
			for i, v := range yr {
				yr[i] = strictmath.Canon(v + bv)
			}
		}
	})
}

// convCols describes one output row of a convolution: which output columns
// each kernel column reaches inside the input row. It computes them on
// demand, so its size does not grow with the kernel.
type convCols struct {
	w, ow, stride, pad, dil int
	// With stride 1, outputs in [inLo, inHi) see every kernel column, and
	// those in [edgeLo, edgeHi) see at least one.
	inLo, inHi, edgeLo, edgeHi int
	// taps, when not nil, is the SIMD kernel for the interior columns.
	taps func(y, x []float32, dil, rs, cs int, w []float32, kw, kh, nc int, mode tapsMode, b float32)
}

func newConvCols(w, ow, kw, stride, pad, dil int) *convCols {
	cc := &convCols{w: w, ow: ow, stride: stride, pad: pad, dil: dil}
	cc.inLo, cc.inHi, cc.edgeLo, cc.edgeHi = 0, ow, ow, 0
	for k := range kw {
		lo, hi := cc.valid(k)
		if lo < hi {
			cc.edgeLo, cc.edgeHi = min(cc.edgeLo, lo), max(cc.edgeHi, hi)
		}
		cc.inLo, cc.inHi = max(cc.inLo, lo), min(cc.inHi, hi)
	}
	if cc.inLo >= cc.inHi {
		cc.inLo, cc.inHi = cc.edgeLo, cc.edgeLo
	}
	return cc
}

// valid returns the output columns [lo, hi) that kernel column k reaches
// inside the input.
func (cc *convCols) valid(k int) (lo, hi int) {
	return validRange(cc.w, cc.ow, cc.stride, cc.pad, k*cc.dil)
}

// off is the input column of output column 0 for kernel column k (stride 1).
func (cc *convCols) off(k int) int { return k*cc.dil - cc.pad }

// row adds one kernel row wr applied to the input row x into the output
// columns [j0, j1) of the row y, each output column taking its kernel
// columns in increasing order.
func (cc *convCols) row(y, x, wr []float32, j0, j1 int) {
	if cc.stride != 1 {
		for k, wv := range wr {
			lo, hi := cc.valid(k)
			base := cc.off(k)
			for ow := max(lo, j0); ow < min(hi, j1); ow++ {
				y[ow] = y[ow] + float32(x[ow*cc.stride+base]*wv)
			}
		}
		return
	}
	// Edge columns, where some kernel columns fall into padding: one output
	// at a time with every kernel column checked.
	for ow := max(cc.edgeLo, j0); ow < min(cc.inLo, j1); ow++ {
		y[ow] = cc.one(y[ow], x, wr, ow)
	}
	for ow := max(cc.inHi, cc.inLo, j0); ow < min(cc.edgeHi, j1); ow++ {
		y[ow] = cc.one(y[ow], x, wr, ow)
	}
	// Interior columns see every kernel column.
	lo, hi := max(cc.inLo, j0), min(cc.inHi, j1)
	if lo >= hi {
		return
	}
	ys := y[lo:hi]
	if cc.taps != nil {
		cc.taps(ys, x[lo+cc.off(0):hi+cc.off(len(wr)-1)], cc.dil, 0, 0, wr, len(wr), 1, 1, tapsAdd, 0)
		return
	}
	switch len(wr) {
	case 1:
		o := cc.off(0)
		axpy(ys, x[lo+o:hi+o], wr[0])
	case 3:
		o0, o1, o2 := cc.off(0), cc.off(1), cc.off(2)
		tap3(ys, x[lo+o0:hi+o0], x[lo+o1:hi+o1], x[lo+o2:hi+o2], wr[0], wr[1], wr[2])
	default:
		for k, wv := range wr {
			o := cc.off(k)
			axpy(ys, x[lo+o:hi+o], wv)
		}
	}
}

// row3x3 adds a 3x3 kernel w applied to the input rows x0, x1 and x2 into
// the output columns [j0, j1) of the row y (stride 1), each output column
// taking its terms in the order (kernel row, kernel column).
func (cc *convCols) row3x3(y, x0, x1, x2 []float32, w *[9]float32, j0, j1 int) {
	edge := func(ow int) float32 {
		return cc.one(cc.one(cc.one(y[ow], x0, w[0:3], ow), x1, w[3:6], ow), x2, w[6:9], ow)
	}
	for ow := max(cc.edgeLo, j0); ow < min(cc.inLo, j1); ow++ {
		y[ow] = edge(ow)
	}
	for ow := max(cc.inHi, cc.inLo, j0); ow < min(cc.edgeHi, j1); ow++ {
		y[ow] = edge(ow)
	}
	lo, hi := max(cc.inLo, j0), min(cc.inHi, j1)
	if lo >= hi {
		return
	}
	o0, o1, o2 := cc.off(0), cc.off(1), cc.off(2)
	tap9(y[lo:hi],
		x0[lo+o0:hi+o0], x0[lo+o1:hi+o1], x0[lo+o2:hi+o2],
		x1[lo+o0:hi+o0], x1[lo+o1:hi+o1], x1[lo+o2:hi+o2],
		x2[lo+o0:hi+o0], x2[lo+o1:hi+o1], x2[lo+o2:hi+o2], w)
}

// deepRow computes the output columns [j0, j1) of the row y (stride 1) of
// an output row that sees every kernel row, whole: each output is the sum
// from +0 of the terms of the kernel w, nc channels of KH rows of KW
// columns, in the order (c, kh, kw), where kernel row kh of channel c applies
// to the input row x[c*cs+kh*rs : c*cs+kh*rs+W]; then the bias bv is added
// (with mode tapsOutBias) and a NaN made canonical. The interior columns go
// through the SIMD taps, the edge ones one at a time, skipping the kernel
// columns in the padding.
func (cc *convCols) deepRow(y, x []float32, cs, rs int, w []float32, nc, KH, j0, j1 int, mode tapsMode, bv float32) {
	KW := len(w) / (nc * KH)
	edge := func(ow int) {
		s := cc.deepOne(0, x, cs, rs, w, nc, KH, KW, ow)
		if mode == tapsOutBias {
			s = s + bv
		}
		y[ow] = strictmath.Canon(s)
	}
	for ow := j0; ow < min(cc.inLo, j1); ow++ {
		edge(ow)
	}
	for ow := max(cc.inHi, cc.inLo, j0); ow < j1; ow++ {
		edge(ow)
	}
	lo, hi := max(cc.inLo, j0), min(cc.inHi, j1)
	if lo >= hi {
		return
	}
	xs := x[lo+cc.off(0) : (nc-1)*cs+(KH-1)*rs+hi+cc.off(KW-1)] // every input the taps read
	cc.taps(y[lo:hi], xs, cc.dil, rs, cs, w, KW, KH, nc, mode, bv)
}

// deepOne returns s plus the terms of deepRow's kernel at the output column
// ow, in the order (c, kh, kw), skipping the kernel columns that fall
// outside the input.
func (cc *convCols) deepOne(s float32, x []float32, cs, rs int, w []float32, nc, KH, KW, ow int) float32 {
	if cc.dil != 1 {
		tLo, tHi := validRange(cc.w, KW, cc.dil, cc.pad-ow, 0)
		if tLo >= tHi {
			return s
		}
		base := ow + cc.off(tLo)
		for c := range nc {
			for kh := range KH {
				xr := x[c*cs+kh*rs+base:]
				for t, wv := range w[(c*KH+kh)*KW+tLo : (c*KH+kh)*KW+tHi] {
					s = s + float32(xr[t*cc.dil]*wv)
				}
			}
		}
		return s
	}
	// Kernel column t reads input column ow - pad + t.
	tLo, tHi := max(0, cc.pad-ow), min(KW, cc.w+cc.pad-ow)
	if tLo >= tHi {
		return s
	}
	base, taps := ow-cc.pad+tLo, tHi-tLo
	for c := range nc {
		for kh := range KH {
			xr := x[c*cs+kh*rs+base:][:taps]
			for t, wv := range w[(c*KH+kh)*KW+tLo:][:taps] {
				s = s + float32(xr[t]*wv)
			}
		}
	}
	return s
}

// tap9 adds the nine products w[t]·xt to y, in the order t = 0 … 8 for every
// element.
func tap9(y, x0, x1, x2, x3, x4, x5, x6, x7, x8 []float32, w *[9]float32) {
	x0, x1, x2 = x0[:len(y)], x1[:len(y)], x2[:len(y)]
	x3, x4, x5 = x3[:len(y)], x4[:len(y)], x5[:len(y)]
	x6, x7, x8 = x6[:len(y)], x7[:len(y)], x8[:len(y)]
	w0, w1, w2, w3, w4, w5, w6, w7, w8 := w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8]
	for i, s := range y {
		s = s + float32(x0[i]*w0)
		s = s + float32(x1[i]*w1)
		s = s + float32(x2[i]*w2)
		s = s + float32(x3[i]*w3)
		s = s + float32(x4[i]*w4)
		s = s + float32(x5[i]*w5)
		s = s + float32(x6[i]*w6)
		s = s + float32(x7[i]*w7)
		y[i] = s + float32(x8[i]*w8)
	}
}

// one returns s plus the products of the kernel row wr at output column ow,
// skipping kernel columns that fall outside the input (stride 1).
func (cc *convCols) one(s float32, x, wr []float32, ow int) float32 {
	for k, wv := range wr {
		if in := ow + cc.off(k); 0 <= in && in < cc.w {
			s = s + float32(x[in]*wv)
		}
	}
	return s
}

// tap3 adds w0·x0, w1·x1 and w2·x2 to y, in that order for every element.
func tap3(y, x0, x1, x2 []float32, w0, w1, w2 float32) {
	x0, x1, x2 = x0[:len(y)], x1[:len(y)], x2[:len(y)]
	for i, s := range y {
		s = s + float32(x0[i]*w0)
		s = s + float32(x1[i]*w1)
		y[i] = s + float32(x2[i]*w2)
	}
}

// axpy adds x·b to c, rounding each product before the addition.
func axpy(c, b []float32, x float32) {
	c = c[:len(b)]
	for j, v := range b {
		c[j] = c[j] + float32(x*v)
	}
}

// pointwise reports whether a convolution is 1×1 over the whole input:
// one group, stride 1, no padding. Each output is then the sum over c of
// x[c]·w[oc, c] from +0, in increasing c, which is matmul's contract for
// W[OC, C] · X[C, H·W].
func pointwise(p accel.Conv2DParams, kh, kw int) bool {
	return kh == 1 && kw == 1 && p.Groups == 1 && p.StrideH == 1 && p.StrideW == 1 &&
		p.PadTop == 0 && p.PadLeft == 0 && p.PadBottom == 0 && p.PadRight == 0
}

// conv1x1 computes a pointwise convolution image by image as the matmul
// W · X[n], then adds the bias.
func (b *Kernels) conv1x1(ctx context.Context, Y, X, Wt, B []float32, N, C, OC, hw int) error {
	for n := range N {
		y := Y[n*OC*hw : (n+1)*OC*hw]
		if err := b.matmul(ctx, y, Wt, X[n*C*hw:(n+1)*C*hw], OC, C, hw, accel.MatMulParams{}); err != nil {
			return err
		}
		if err := b.addChannelBias(ctx, y, B, OC, hw); err != nil {
			return err
		}
	}
	return nil
}

// addChannelBias adds b[oc] to each of the OC rows of hw outputs of y:
// canon(canon(s) + b) is canon(s + b), the contract's last step.
func (b *Kernels) addChannelBias(ctx context.Context, y, B []float32, OC, hw int) error {
	if B == nil {
		return nil
	}
	count, step := chunks(OC, max(1, elemChunk/hw))
	return b.forEach(ctx, count, func(c int) {
		for oc := c * step; oc < min((c+1)*step, OC); oc++ {
			row, bv := y[oc*hw:(oc+1)*hw], B[oc]
			for j, v := range row {
				row[j] = strictmath.Canon(v + bv)
			}
		}
	})
}

// finite reports whether every value of v is finite.
func finite(v []float32) bool {
	for _, x := range v {
		if x-x != 0 {
			return false
		}
	}
	return true
}

// convUnrolled computes a convolution of one group whose weights are all
// finite image by image, as the matmul W[OC, C·KH·KW] · U[C·KH·KW, OH·OW]
// of the image's windows unrolled, row (c, kh, kw) of U holding the input
// each output sees at that tap, or 0 in the padding. Each output is then
// summed over (c, kh, kw) in increasing order from +0, as the contract
// sums it; a padding tap adds 0·w, a zero, which leaves a sum that starts
// at +0 as it was (where w is finite: 0·Inf would be NaN, hence the
// condition).
func (b *Kernels) convUnrolled(ctx context.Context, Y, X, Wt, B []float32, xs, ws, ys []int, p accel.Conv2DParams) error {
	N, C, H, W := xs[0], xs[1], xs[2], xs[3]
	OC, KH, KW := ws[0], ws[2], ws[3]
	OH, OW := ys[2], ys[3]
	K, hw := C*KH*KW, OH*OW
	U, put := packBuf(&unrollPool, K*hw)
	defer put()
	var failed error
	err := b.packedProducts(ctx, b.kern, Wt, OC, K, hw, accel.MatMulParams{}, func(n int) (y, u []float32, ok bool) {
		if n > 0 {
			// The previous image's outputs are complete: its bias.
			failed = b.addChannelBias(ctx, Y[(n-1)*OC*hw:n*OC*hw], B, OC, hw)
		}
		if n == N || failed != nil {
			return nil, nil, false
		}
		failed = b.unroll(ctx, U, X[n*C*H*W:(n+1)*C*H*W], xs, KH, KW, OH, OW, p)
		return Y[n*OC*hw : (n+1)*OC*hw], U, failed == nil
	})
	if err == nil {
		err = failed
	}
	return err
}

// unroll writes one image's windows into U, row (c, kh, kw) holding for
// each output position the input it sees at that tap, or 0 in the padding.
func (b *Kernels) unroll(ctx context.Context, U, x []float32, xs []int, KH, KW, OH, OW int, p accel.Conv2DParams) error {
	C, H, W := xs[1], xs[2], xs[3]
	hw := OH * OW
	return b.forEach(ctx, C*KH*KW, func(k int) {
		c, kh, kw := k/(KH*KW), k/KW%KH, k%KW
		u := U[k*hw : (k+1)*hw]
		xc := x[c*H*W : (c+1)*H*W]
		lo, hi := validRange(W, OW, p.StrideW, p.PadLeft, kw*p.DilationW)
		for oh := range OH {
			ih := oh*p.StrideH - p.PadTop + kh*p.DilationH
			row := u[oh*OW : (oh+1)*OW]
			if ih < 0 || ih >= H {
				clear(row)
				continue
			}
			clear(row[:lo])
			clear(row[hi:])
			iw := lo*p.StrideW - p.PadLeft + kw*p.DilationW
			xr := xc[ih*W : (ih+1)*W]
			if p.StrideW == 1 {
				copy(row[lo:hi], xr[iw:])
				continue
			}
			for ow := lo; ow < hi; ow++ {
				row[ow] = xr[iw]
				iw += p.StrideW
			}
		}
	})
}

// unrollPool holds the unrolled windows between calls.
var unrollPool sync.Pool
