package strictcpu

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// The gradients of conv2d (docs/determinism.md, "conv2d_backward_data" and
// "conv2d_backward_filter").

func (b *Kernels) convBackwardTable() accel.Kernels {
	return accel.Kernels{
		accel.Conv2DBackwardData: func(ctx context.Context, c *accel.Call) error {
			return b.Conv2DBackwardData(ctx, c.Out[0], c.In[0], c.In[1], c.Params.(accel.Conv2DBackwardDataParams))
		},
		accel.Conv2DBackwardFilter: func(ctx context.Context, c *accel.Call) error {
			return b.Conv2DBackwardFilter(ctx, c.Out[0], c.In[0], c.In[1], c.Params.(accel.Conv2DBackwardFilterParams))
		},
	}
}

// convGeom holds the dimensions of a convolution x [N,C,H,W] * w
// [OC,CG,KH,KW] = y [N,OC,OH,OW] and its parameters.
type convGeom struct {
	N, C, H, W, OC, CG, OCG, KH, KW, OH, OW, G int
	p                                          accel.Conv2DParams
}

func newConvGeom(xs, ws, ys []int, p accel.Conv2DParams) convGeom {
	return convGeom{N: xs[0], C: xs[1], H: xs[2], W: xs[3], OC: ws[0], CG: ws[1], KH: ws[2], KW: ws[3],
		OH: ys[2], OW: ys[3], G: p.Groups, OCG: ws[0] / p.Groups, p: p}
}

// Sizes of the work of the backward data kernel.
const (
	// bdItemWork is about how many multiply-adds make one work item, and
	// how many a long item does between looks at its context.
	bdItemWork = 1 << 21
	// bdPadCap bounds a thread's padded copy of the output gradient, and
	// bdAccCap its sums, in elements.
	bdPadCap = 1 << 16
	bdAccCap = 1 << 15
	// bdMaxPhases bounds SH·SW for bdFlat: beyond, most phases are a few
	// rows or none.
	bdMaxPhases = 64
)

// Conv2DBackwardData computes dx from the output gradient dy and the weights
// w. With strides of 1 it is conv2d of dy, padded by DH*(KH-1)-PT rows on
// top and so on, with the weights flipped in both spatial axes and their
// channel axes swapped: the contract walks the window backwards so that the
// terms come in that convolution's order. With larger strides, the inputs
// whose rows are alike modulo SH and columns modulo SW (a phase) see the same
// kernel positions, spaced evenly: each phase is such a convolution too,
// with part of the kernel. bdFlat computes them on the SIMD taps. Its
// padding adds products of +0, which change no sum while every weight is
// finite, since a sum from +0 is never -0; weights with Inf or NaN, and
// shapes beyond its bounded blocks, take the contract's loop (bdDirect).
func (b *Kernels) Conv2DBackwardData(ctx context.Context, out, dy, w *accel.Tensor, p accel.Conv2DBackwardDataParams) error {
	g := newConvGeom(out.Shape(), w.Shape(), dy.Shape(), p.Conv2DParams)
	DX, DY, Wt := f32(out), f32(dy), f32(w)
	if f, ok := newBDFlat(g); ok {
		turned := make([]float32, len(Wt)) // in the op's declared scratch
		finite, err := b.turnWeights(ctx, turned, Wt, f)
		if err != nil {
			return err
		}
		if finite {
			return b.bdFlat(ctx, f, DX, DY, turned)
		}
	}
	return b.bdDirect(ctx, g, DX, DY, Wt)
}

// bdPhase is one phase of an axis of the input: the positions a + S*i, i in
// [0, out), for a stride S. The kernel positions that reach the gradient
// from them are k0, k0-step, … (m of them, falling as the contract takes
// them), and kernel position k0 - u*step reads gradient position i + e0 +
// u*d.
type bdPhase struct{ k0, m, step, e0, d, out int }

// span is the extent of the phase's kernel positions in the gradient.
func (ph bdPhase) span() int { return max(0, ph.m-1) * ph.d }

// bdPhases returns the phases of an axis of size positions, for a kernel of
// K positions dil apart, a stride and a padding pad before.
func bdPhases(size, K, dil, stride, pad int) []bdPhase {
	gcd := func(a, b int) int {
		for b != 0 {
			a, b = b, a%b
		}
		return a
	}
	step := stride / gcd(dil, stride)
	phases := make([]bdPhase, min(stride, size))
	for a := range phases {
		ph := bdPhase{step: step, d: dil / gcd(dil, stride), out: (size - a + stride - 1) / stride}
		// At most one of any step consecutive kernel positions reaches.
		for k := K - 1; k >= max(0, K-step); k-- {
			if t := a + pad - k*dil; t%stride == 0 {
				ph.k0, ph.m, ph.e0 = k, k/step+1, t/stride
				break
			}
		}
		phases[a] = ph
	}
	return phases
}

// bdFlatPlan is the work of bdFlat. The gradient of one image and group,
// cropped or padded to the rows and columns a phase reads (padRows x Wp),
// is a convolution's input; its rows laid end to end make the input (i, j)
// of the phase the element i*Ws + j of one long row, whose terms lie at
// fixed distances (o*cs + u*d*Ws + v*d'): one call of the taps computes a
// band of the phase's rows whole, and the elements between two rows are
// computed and dropped. Ws is Wp, or the gradient's width where the phase
// reads it in place. A work item is a band of rows of one phase, image,
// group and range of input channels; its thread pads the band's rows of
// the gradient, ochunk channels at a time.
type bdFlatPlan struct {
	convGeom
	rows, cols     []bdPhase
	mhPre, mwPre   []int // the kernel rows (columns) of the phases before each
	mwAll          int   // the kernel columns of every column phase
	bandRows       int
	bands          int
	cchunk, ochunk int
	cchunks        int
	seg            int // outputs per taps call of ochunk channels, between looks at the context
}

// newBDFlat plans bdFlat for g, or reports that bdFlat does not take it:
// too many phases, or rows too long for its bounded blocks.
func newBDFlat(g convGeom) (bdFlatPlan, bool) {
	p := g.p
	f := bdFlatPlan{convGeom: g}
	if p.StrideH*p.StrideW > bdMaxPhases {
		return f, false
	}
	f.rows = bdPhases(g.H, g.KH, p.DilationH, p.StrideH, p.PadTop)
	f.cols = bdPhases(g.W, g.KW, p.DilationW, p.StrideW, p.PadLeft)
	var outH, spanH, mh, wp, mw int
	for _, ph := range f.rows {
		f.mhPre = append(f.mhPre, mh)
		mh += ph.m
		outH, spanH = max(outH, ph.out), max(spanH, ph.span())
	}
	for _, ph := range f.cols {
		f.mwPre = append(f.mwPre, f.mwAll)
		f.mwAll += ph.m
		wp, mw = max(wp, ph.out+ph.span()), max(mw, ph.m)
	}
	ws := max(wp, g.OW) // the widest row of sums
	if wp > bdPadCap/(1+spanH) || ws > bdAccCap {
		return f, false
	}
	taps := 0
	for _, ph := range f.rows {
		taps = max(taps, ph.m*mw)
	}
	perRow := max(1, g.OCG*taps*ws) // multiply-adds of one row of one channel
	rows := min(outH, max(1, bdItemWork/perRow), bdPadCap/wp-spanH, bdAccCap/ws)
	f.bandRows, f.bands = rows, (outH+rows-1)/rows
	L := rows * ws
	f.cchunks = min(g.CG, max(1, (g.CG*g.OCG*taps*L)/bdItemWork))
	f.cchunk = min((g.CG+f.cchunks-1)/f.cchunks, max(1, bdAccCap/L))
	f.cchunks = (g.CG + f.cchunk - 1) / f.cchunk
	f.ochunk = min(g.OCG, bdPadCap/((rows+spanH)*wp))
	f.seg = max(64, bdItemWork/max(1, f.ochunk*taps))
	return f, true
}

// weights returns the offset in the turned weights of those of phase (a, b).
func (f *bdFlatPlan) weights(a, b int) int {
	return f.C * f.OCG * (f.mhPre[a]*f.mwAll + f.rows[a].m*f.mwPre[b])
}

// turnWeights writes the weights w [OC,CG,KH,KW] as the phases'
// convolutions take them: for phase (a, b), [C,OCG,mh,mw], where kernel row
// u of the phase is the row k0 - u*step of w (so falling for a stride of 1,
// the weights flipped) and likewise for columns. It reports whether every
// weight is finite.
func (b *Kernels) turnWeights(ctx context.Context, turned, w []float32, f bdFlatPlan) (bool, error) {
	p := f.p
	// phase returns a kernel position's phase and its index there, or a
	// phase of -1 for a position that reaches no input.
	phase := func(phases []bdPhase, k, dil, stride, pad int) (int, int) {
		a := ((k*dil-pad)%stride + stride) % stride
		if a >= len(phases) {
			return -1, 0
		}
		return a, (phases[a].k0 - k) / phases[a].step
	}
	per := f.KH * f.KW
	count, step := chunks(f.OC, max(1, convWork/max(1, f.CG*per)))
	var bad atomic.Bool
	err := b.forEach(ctx, count, func(item int) {
		nonFinite := false
		for oc := item * step; oc < min((item+1)*step, f.OC); oc++ {
			grp, o := oc/f.OCG, oc%f.OCG
			for ci := range f.CG {
				c := grp*f.CG + ci
				src := w[(oc*f.CG+ci)*per : (oc*f.CG+ci+1)*per]
				for kh := range f.KH {
					a, u := phase(f.rows, kh, p.DilationH, p.StrideH, p.PadTop)
					if a < 0 {
						continue
					}
					mh := f.rows[a].m
					for kw, v := range src[kh*f.KW : (kh+1)*f.KW] {
						nonFinite = nonFinite || v-v != 0
						bb, t := phase(f.cols, kw, p.DilationW, p.StrideW, p.PadLeft)
						if bb < 0 {
							continue
						}
						mw := f.cols[bb].m
						turned[f.weights(a, bb)+((c*f.OCG+o)*mh+u)*mw+t] = v
					}
				}
			}
		}
		if nonFinite {
			bad.Store(true)
		}
	})
	return !bad.Load(), err
}

// bdBufs are a thread's blocks for bdFlat.
type bdBufs struct{ pad, acc []float32 }

var bdPool = sync.Pool{New: func() any { return new(bdBufs) }}

// bdFlat computes dx from dy and the turned weights (turnWeights) by
// bdFlatPlan f.
func (b *Kernels) bdFlat(ctx context.Context, f bdFlatPlan, DX, DY, turned []float32) error {
	taps := b.kern.taps
	if taps == nil {
		taps = tapsGo
	}
	phases := len(f.rows) * len(f.cols)
	per := phases * f.bands * f.cchunks
	SH, SW := f.p.StrideH, f.p.StrideW
	return b.forEach(ctx, f.N*f.G*per, func(item int) {
		ng, rest := item/per, item%per
		n, grp := ng/f.G, ng%f.G
		ph, rest := rest/(f.bands*f.cchunks), rest%(f.bands*f.cchunks)
		a, bb := ph/len(f.cols), ph%len(f.cols)
		rp, cp := f.rows[a], f.cols[bb]
		i0 := rest / f.cchunks * f.bandRows
		if i0 >= rp.out {
			return // the phase has fewer rows than the tallest
		}
		i1 := min(i0+f.bandRows, rp.out)
		c0 := rest % f.cchunks * f.cchunk
		c1 := min(c0+f.cchunk, f.CG)
		rows, Wj := i1-i0, cp.out
		// out returns row r of the band of input channel ci.
		out := func(ci, r int) []float32 {
			return DX[((n*f.C+grp*f.CG+ci)*f.H+a+SH*(i0+r))*f.W:]
		}
		if rp.m == 0 || cp.m == 0 {
			// No kernel position reaches the gradient from here.
			for ci := c0; ci < c1; ci++ {
				for r := range rows {
					d := out(ci, r)
					for j := range Wj {
						d[bb+SW*j] = 0
					}
				}
			}
			return
		}

		spanH, spanW := rp.span(), cp.span()
		padRows, Wp := rows+spanH, Wj+spanW
		g0 := i0 + rp.e0 // the gradient row of the band's first padded row
		inPlace := g0 >= 0 && g0+padRows <= f.OH && cp.e0 >= 0 && cp.e0+Wp <= f.OW
		Ws := Wp
		if inPlace {
			Ws = f.OW
		}
		L := (rows-1)*Ws + Wj
		nt := rp.m * cp.m
		wbase := f.weights(a, bb)

		bufs := bdPool.Get().(*bdBufs)
		defer bdPool.Put(bufs)
		acc := grow(&bufs.acc, (c1-c0)*L)
		clear(acc)
		for o0 := 0; o0 < f.OCG; o0 += f.ochunk {
			on := min(f.ochunk, f.OCG-o0)
			plane := DY[(n*f.OC+grp*f.OCG+o0)*f.OH*f.OW:]
			var x []float32
			cs := f.OH * f.OW
			if inPlace {
				x = plane[g0*f.OW+cp.e0:]
			} else {
				x, cs = grow(&bufs.pad, on*padRows*Wp), padRows*Wp
				f.padBand(x, plane, on, g0, padRows, cp.e0, Wp)
			}
			for ci := c0; ci < c1; ci++ {
				c := grp*f.CG + ci
				wv := turned[wbase+(c*f.OCG+o0)*nt : wbase+(c*f.OCG+o0+on)*nt]
				y := acc[(ci-c0)*L : (ci-c0+1)*L]
				for s0 := 0; s0 < L; s0 += f.seg {
					if ctx.Err() != nil {
						return // forEach reports the interruption
					}
					s1 := min(s0+f.seg, L)
					taps(y[s0:s1], x[s0:], cp.d, rp.d*Ws, cs, wv, cp.m, rp.m, on, tapsAdd, 0)
				}
			}
		}
		for ci := c0; ci < c1; ci++ {
			y := acc[(ci-c0)*L:]
			for r := range rows {
				d, yr := out(ci, r), y[r*Ws:r*Ws+Wj]
				if SW == 1 {
					for j, v := range yr {
						d[j] = strictmath.Canon(v)
					}
					continue
				}
				for j, v := range yr {
					d[bb+SW*j] = strictmath.Canon(v)
				}
			}
		}
	})
}

// padBand writes padRows rows of Wp columns of the gradient of on
// channels, whose first plane starts at plane, into x: padded row r and
// column q hold the gradient's row g0 + r and column q + e0, or +0 where
// that lies outside it.
func (f *bdFlatPlan) padBand(x, plane []float32, on, g0, padRows, e0, Wp int) {
	lo := min(Wp, max(0, -e0)) // the columns inside: [lo, hi)
	hi := max(lo, min(Wp, f.OW-e0))
	for o := range on {
		src := plane[o*f.OH*f.OW : (o+1)*f.OH*f.OW]
		for r := range padRows {
			dst := x[(o*padRows+r)*Wp : (o*padRows+r+1)*Wp]
			sr := g0 + r
			if sr < 0 || sr >= f.OH {
				clear(dst)
				continue
			}
			clear(dst[:lo])
			if lo < hi {
				copy(dst[lo:hi], src[sr*f.OW+lo+e0:sr*f.OW+hi+e0])
			}
			clear(dst[hi:])
		}
	}
}

// grow returns (*buf)[:n], reallocating it if it is too short.
func grow(buf *[]float32, n int) []float32 {
	if cap(*buf) < n {
		*buf = make([]float32, n)
	}
	return (*buf)[:n]
}

// tapsGo is kernels.taps with mode tapsAdd in portable Go: every y[i]
// receives its products in the order (c, r, t), one tap at a time over
// the whole of y.
func tapsGo(y, x []float32, dil, rs, cs int, w []float32, kw, kh, nc int, _ tapsMode, _ float32) {
	checkTaps(y, x, dil, rs, cs, w, kw, kh, nc, tapsAdd)
	for c := range nc {
		for r := range kh {
			for t, wv := range w[(c*kh+r)*kw : (c*kh+r+1)*kw] {
				o := c*cs + r*rs + t*dil
				axpy(y, x[o:o+len(y)], wv)
			}
		}
	}
}

// bdDirect computes dx by the contract's loop, in rectangles of rows and
// columns of one input plane, each one work item. The kernel rows that reach
// an output row of the gradient, and the columns that reach a column, are
// found once per input position, in the contract's order (kh and kw
// falling), and then taken for every output channel.
func (b *Kernels) bdDirect(ctx context.Context, g convGeom, DX, DY, Wt []float32) error {
	p := g.p
	perOut := max(1, g.OCG*g.KH*g.KW)
	colStep, bandRows := g.W, 1
	if perOut*g.W > convWork {
		colStep = max(1, convWork/perOut)
	} else {
		bandRows = max(1, min(g.H, convWork/(perOut*g.W)))
	}
	colChunks := (g.W + colStep - 1) / colStep
	bands := (g.H + bandRows - 1) / bandRows
	taps := g.KH * g.KW
	return b.forEach(ctx, g.N*g.C*bands*colChunks, func(item int) {
		pl, rect := item/(bands*colChunks), item%(bands*colChunks)
		n, c := pl/g.C, pl%g.C
		grp, ci := c/g.CG, c%g.CG
		r0, r1 := rect/colChunks*bandRows, min((rect/colChunks+1)*bandRows, g.H)
		j0, j1 := rect%colChunks*colStep, min((rect%colChunks+1)*colStep, g.W)
		buf := bdTapPool.Get().(*[]int)
		defer bdTapPool.Put(buf)
		if cap(*buf) < 2*(g.KH+g.KW) {
			*buf = make([]int, 2*(g.KH+g.KW))
		}
		rowTaps, colTaps := (*buf)[:2*g.KH], (*buf)[2*g.KH:2*(g.KH+g.KW)]
		for ih := r0; ih < r1; ih++ {
			// Pairs (kh, gradient row) in the contract's order.
			nh := reaching(rowTaps, ih+p.PadTop, g.KH, p.DilationH, p.StrideH, g.OH)
			for iw := j0; iw < j1; iw++ {
				nw := reaching(colTaps, iw+p.PadLeft, g.KW, p.DilationW, p.StrideW, g.OW)
				var s float32
				for o := range g.OCG {
					oc := grp*g.OCG + o
					wt := Wt[(oc*g.CG+ci)*taps : (oc*g.CG+ci+1)*taps]
					dy := DY[(n*g.OC+oc)*g.OH*g.OW : (n*g.OC+oc+1)*g.OH*g.OW]
					for i := 0; i < 2*nh; i += 2 {
						wr := wt[rowTaps[i]*g.KW : (rowTaps[i]+1)*g.KW]
						row := dy[rowTaps[i+1]*g.OW : (rowTaps[i+1]+1)*g.OW]
						for j := 0; j < 2*nw; j += 2 {
							s = s + float32(row[colTaps[j+1]]*wr[colTaps[j]])
						}
					}
				}
				DX[((n*g.C+c)*g.H+ih)*g.W+iw] = strictmath.Canon(s)
			}
		}
		if ctx.Err() != nil {
			return // forEach reports the interruption
		}
	})
}

var bdTapPool = sync.Pool{New: func() any { return new([]int) }}

// reaching writes into taps the pairs (k, o) of the kernel positions k,
// falling from K-1 to 0, whose gradient position t = pos - k*dil is a
// multiple of stride with o = t/stride in [0, out), and returns their count.
func reaching(taps []int, pos, K, dil, stride, out int) int {
	n := 0
	for k := K - 1; k >= 0; k-- {
		t := pos - k*dil // grows as k falls
		if t < 0 || t%stride != 0 {
			continue
		}
		if t/stride >= out {
			break
		}
		taps[2*n], taps[2*n+1] = k, t/stride
		n++
	}
	return n
}

// ---- conv2d_backward_filter -------------------------------------------------

// Conv2DBackwardFilter computes dw from the input x and the output gradient
// dy. Each run of BlockLen terms t = (n·OH + oh)·OW + ow of every weight is a
// dot product from +0 in increasing t, so the runs of all weights of a group
// are the matrix product of the run's gradients [OCG, run] and its unrolled
// input windows [run, CG·KH·KW]: the matmul micro-kernel computes them, one
// vector lane per weight, from blocks packed for it (bfPlan.run). Padding in
// the windows is +0, whose products change no sum while the gradient is
// finite; a run that holds Inf or NaN in its gradient and padding in its
// windows is computed term by term instead. Each run's sums go to a plane of
// partial sums (the first plane is dw itself), and treesum over the planes,
// level by level in place, gives dw.
func (b *Kernels) Conv2DBackwardFilter(ctx context.Context, out, x, dy *accel.Tensor, p accel.Conv2DBackwardFilterParams) error {
	g := newConvGeom(x.Shape(), out.Shape(), dy.Shape(), p.Conv2DParams)
	DW, X, DY := f32(out), f32(x), f32(dy)
	T := g.N * g.OH * g.OW
	runs := (T + strictmath.BlockLen - 1) / strictmath.BlockLen
	E := len(DW)
	partial := make([]float32, (runs-1)*E) // in the op's declared scratch
	plane := func(r int) []float32 {
		if r == 0 {
			return DW
		}
		return partial[(r-1)*E : r*E]
	}

	kr := b.kern
	J := g.CG * g.KH * g.KW
	mr, nr, kc, tileRows, tileCols := kr.mr, kr.nr, kr.kc, kr.tileRows, kr.tileCols
	if kr.micro == nil {
		// The portable loops: a row of the gradients at a time against the
		// whole tile of windows.
		mr, kc, tileRows, tileCols = 1, strictmath.BlockLen, 64, 256
		nr = min(tileCols, J)
	}
	ocTiles := (g.OCG + tileRows - 1) / tileRows
	jTiles := (J + tileCols - 1) / tileCols
	f := bfPlan{convGeom: g, T: T, J: J, mr: mr, nr: nr, kc: kc, micro: kr.micro, axpy: b.axpy, taps: make([]bfTap, J)}
	for j := range f.taps {
		ci, kh, kw := j/(g.KH*g.KW), j/g.KW%g.KH, j%g.KW
		dh, dw := kh*p.DilationH, kw*p.DilationW
		f.taps[j] = bfTap{off: (ci*g.H+dh)*g.W + dw, dh: dh, dw: dw}
	}
	per := g.G * ocTiles * jTiles
	err := b.forEach(ctx, runs*per, func(item int) {
		r, rest := item/per, item%per
		grp, rest := rest/(ocTiles*jTiles), rest%(ocTiles*jTiles)
		oc0 := grp*g.OCG + rest/jTiles*tileRows
		oc1 := min(oc0+tileRows, (grp+1)*g.OCG)
		j0 := rest % jTiles * tileCols
		j1 := min(j0+tileCols, J)
		f.run(plane(r), X, DY, r, grp, oc0, oc1, j0, j1)
	})
	if err != nil {
		return err
	}
	if runs == 1 {
		strictmath.CanonSlice(DW)
		return nil
	}
	// treesum over the planes, for a range of weights at a time.
	count, step := chunks(E, max(1, (1<<18)/runs))
	return b.forEach(ctx, count, func(item int) {
		e0, e1 := item*step, min((item+1)*step, E)
		for n := runs; n > 1; n = (n + 1) / 2 {
			for i := range n / 2 {
				dst, a, c := plane(i)[e0:e1], plane(2 * i)[e0:e1], plane(2*i + 1)[e0:e1]
				for k := range dst {
					dst[k] = a[k] + c[k]
				}
			}
			if n%2 == 1 {
				copy(plane(n / 2)[e0:e1], plane(n - 1)[e0:e1])
			}
		}
		strictmath.CanonSlice(DW[e0:e1])
	})
}

// bfPlan is the work of Conv2DBackwardFilter: its geometry and the blocking
// of its kernel level.
type bfPlan struct {
	convGeom
	T, J   int // the terms of each weight; the weights of an output channel
	mr, nr int // the micro-kernel's rows and columns; mr 1 for the portable loops
	kc     int // the depth of one call of the micro-kernel
	micro  func(a, b, c *float32, kc, ldc int)
	axpy   func(c, x []float32, w float32)
	// taps[j] is where weight column j = (ci*KH + kh)*KW + kw reads the
	// input, relative to its window's origin.
	taps []bfTap
}

// bfTap is the position of a weight column in the window: its offset in
// the group's input, and its row and column offsets.
type bfTap struct{ off, dh, dw int }

// bfSeg is a stretch of a run's terms along one output row: terms kk0 …
// kk0+ow1-ow0-1 of the run are (n, oh, ow) for ow in [ow0, ow1).
type bfSeg struct{ kk0, n, oh, ow0, ow1 int }

// bfBufs are a thread's blocks for one run: the run's stretches, the packed
// gradients and windows, and a block of C cut short by an edge.
type bfBufs struct {
	segs []bfSeg
	a, b []float32
	edge [maxMicro]float32
}

var bfPool = sync.Pool{New: func() any { return new(bfBufs) }}

// run writes into the plane pl ([OC, J]) the sums of run r of the weights
// of output channels [oc0, oc1) (of group grp) and columns [j0, j1).
func (f *bfPlan) run(pl, X, DY []float32, r, grp, oc0, oc1, j0, j1 int) {
	bufs := bfPool.Get().(*bfBufs)
	defer bfPool.Put(bufs)
	t0 := r * strictmath.BlockLen
	kn := min(strictmath.BlockLen, f.T-t0)
	segs := f.segments(bufs.segs[:0], t0, kn)
	bufs.segs = segs

	rows, cols := oc1-oc0, j1-j0
	rowPanels, colPanels := (rows+f.mr-1)/f.mr, (cols+f.nr-1)/f.nr
	ap := grow(&bufs.a, rowPanels*f.mr*kn)
	bp := grow(&bufs.b, colPanels*f.nr*kn)
	padded := f.packWindows(bp, X, segs, kn, grp, j0, j1)
	nonFinite := false
	for q := range rowPanels {
		nonFinite = f.packGradients(ap[q*f.mr*kn:(q+1)*f.mr*kn], DY, segs, kn, oc0+q*f.mr, min(oc0+(q+1)*f.mr, oc1)) || nonFinite
	}
	if padded && nonFinite {
		f.exact(pl, X, DY, segs, grp, oc0, oc1, j0, j1)
		return
	}

	for oc := oc0; oc < oc1; oc++ {
		clear(pl[oc*f.J+j0 : oc*f.J+j1])
	}
	if f.micro == nil {
		// mr = 1 and one panel of columns: a row of sums at a time, each
		// taking its terms in increasing t.
		for oc := oc0; oc < oc1; oc++ {
			c := pl[oc*f.J+j0 : oc*f.J+j1]
			a := ap[(oc-oc0)*kn : (oc-oc0+1)*kn]
			for kk, v := range a {
				f.axpy(c, bp[kk*f.nr:kk*f.nr+cols], v)
			}
		}
		return
	}
	edge := bufs.edge[:f.mr*f.nr]
	for k0 := 0; k0 < kn; k0 += f.kc {
		kc := min(f.kc, kn-k0)
		for q := range colPanels {
			j := j0 + q*f.nr
			bpan := bp[q*f.nr*kn+k0*f.nr:]
			w := min(f.nr, j1-j)
			for s := range rowPanels {
				oc := oc0 + s*f.mr
				apan := ap[s*f.mr*kn+k0*f.mr:]
				if h := min(f.mr, oc1-oc); h == f.mr && w == f.nr {
					_ = pl[(oc+f.mr-1)*f.J+j+f.nr-1] // the kernel's last element
					f.micro(&apan[0], &bpan[0], &pl[oc*f.J+j], kc, f.J)
				} else {
					for i := range h {
						copy(edge[i*f.nr:i*f.nr+w], pl[(oc+i)*f.J+j:(oc+i)*f.J+j+w])
					}
					f.micro(&apan[0], &bpan[0], &edge[0], kc, f.nr)
					for i := range h {
						copy(pl[(oc+i)*f.J+j:(oc+i)*f.J+j+w], edge[i*f.nr:i*f.nr+w])
					}
				}
			}
		}
	}
}

// segments appends to segs the stretches of the kn terms from t0 along
// output rows.
func (f *bfPlan) segments(segs []bfSeg, t0, kn int) []bfSeg {
	t, end := t0, t0+kn
	for t < end {
		n, rem := t/(f.OH*f.OW), t%(f.OH*f.OW)
		oh, ow := rem/f.OW, rem%f.OW
		ow1 := min(f.OW, ow+end-t)
		segs = append(segs, bfSeg{kk0: t - t0, n: n, oh: oh, ow0: ow, ow1: ow1})
		t += ow1 - ow
	}
	return segs
}

// packGradients writes the run's gradients of output channels [oc0, oc1)
// into a panel of mr rows, a[kk*mr+i] = dy[t0+kk, oc0+i] (rows past oc1 as
// +0), and reports whether any is infinite or NaN.
func (f *bfPlan) packGradients(a, DY []float32, segs []bfSeg, kn, oc0, oc1 int) bool {
	mr := f.mr
	nonFinite := false
	for oc := oc0; oc < oc1; oc++ {
		i := oc - oc0
		for _, s := range segs {
			src := DY[((s.n*f.OC+oc)*f.OH+s.oh)*f.OW+s.ow0 : ((s.n*f.OC+oc)*f.OH+s.oh)*f.OW+s.ow1]
			dst := a[s.kk0*mr+i:]
			for k, v := range src {
				dst[k*mr] = v
				nonFinite = nonFinite || v-v != 0
			}
		}
	}
	for i := oc1 - oc0; i < mr; i++ {
		for kk := range kn {
			a[kk*mr+i] = 0
		}
	}
	return nonFinite
}

// packWindows writes the run's unrolled input windows of columns [j0, j1)
// into panels of nr columns, b[q*nr*kn + kk*nr + jj] = x[n, grp*CG+ci,
// oh*SH-PT+kh*DH, ow*SW-PL+kw*DW] for column j = j0 + q*nr + jj = (ci*KH +
// kh)*KW + kw and term t0+kk = (n, oh, ow), +0 where that lies in padding
// and in the columns past j1, and reports whether any lies in padding. It
// writes a row of a panel at a time; a window that lies inside the input
// is a gather at fixed offsets.
func (f *bfPlan) packWindows(bp, X []float32, segs []bfSeg, kn, grp, j0, j1 int) bool {
	p, nr := f.p, f.nr
	panels := (j1 - j0 + nr - 1) / nr
	spanH, spanW := p.DilationH*(f.KH-1), p.DilationW*(f.KW-1)
	padded := false
	for _, s := range segs {
		xg := X[(s.n*f.C+grp*f.CG)*f.H*f.W : (s.n*f.C+(grp+1)*f.CG)*f.H*f.W]
		ihb := s.oh*p.StrideH - p.PadTop
		rowsIn := ihb >= 0 && ihb+spanH < f.H
		for ow := s.ow0; ow < s.ow1; ow++ {
			kk := s.kk0 + ow - s.ow0
			iwb := ow*p.StrideW - p.PadLeft
			inside := rowsIn && iwb >= 0 && iwb+spanW < f.W
			for q := range panels {
				row := bp[(q*kn+kk)*nr : (q*kn+kk+1)*nr]
				taps := f.taps[j0+q*nr : min(j0+(q+1)*nr, j1)]
				if inside {
					xs := xg[ihb*f.W+iwb:]
					for jj, tp := range taps {
						row[jj] = xs[tp.off]
					}
				} else {
					for jj, tp := range taps {
						ih, iw := ihb+tp.dh, iwb+tp.dw
						if 0 <= ih && ih < f.H && 0 <= iw && iw < f.W {
							row[jj] = xg[tp.off+ihb*f.W+iwb]
						} else {
							row[jj] = 0
							padded = true
						}
					}
				}
				clear(row[len(taps):])
			}
		}
	}
	return padded
}

// exact writes the sums of the run's terms as the contract writes them,
// skipping the terms in padding: for a run whose gradient holds Inf or NaN
// where its windows meet padding, whose products with +0 would be NaN.
func (f *bfPlan) exact(pl, X, DY []float32, segs []bfSeg, grp, oc0, oc1, j0, j1 int) {
	p := f.p
	for oc := oc0; oc < oc1; oc++ {
		for j := j0; j < j1; j++ {
			ci, kh, kw := j/(f.KH*f.KW), j/f.KW%f.KH, j%f.KW
			var s float32
			for _, sg := range segs {
				ih := sg.oh*p.StrideH - p.PadTop + kh*p.DilationH
				for ow := sg.ow0; ow < sg.ow1; ow++ {
					iw := ow*p.StrideW - p.PadLeft + kw*p.DilationW
					if 0 <= ih && ih < f.H && 0 <= iw && iw < f.W {
						s = s + float32(DY[((sg.n*f.OC+oc)*f.OH+sg.oh)*f.OW+ow]*
							X[((sg.n*f.C+grp*f.CG+ci)*f.H+ih)*f.W+iw])
					}
				}
			}
			pl[oc*f.J+j] = s
		}
	}
}
