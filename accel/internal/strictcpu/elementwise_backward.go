package strictcpu

// The gradients of relu and maxpool2d, and reduce_sum, the bias gradient
// (docs/determinism.md, "The training operations").

import (
	"context"
	"math"
	"math/bits"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

func (b *Kernels) elementBackwardTable() accel.Kernels {
	return accel.Kernels{
		accel.ReluBackward: func(ctx context.Context, c *accel.Call) error {
			return b.ReluBackward(ctx, c.Out[0], c.In[0], c.In[1])
		},
		accel.MaxPool2DBackward: func(ctx context.Context, c *accel.Call) error {
			return b.MaxPool2DBackward(ctx, c.Out[0], c.In[0], c.In[1], c.Params.(accel.Pool2DParams))
		},
		accel.ReduceSum: func(ctx context.Context, c *accel.Call) error {
			return b.ReduceSum(ctx, c.Out[0], c.In[0], c.Params.(accel.ReduceSumParams).Axes)
		},
	}
}

// ReluBackward computes dx = canonical NaN where x is NaN, canon(dy) where
// x > 0, and +0 elsewhere. It decides on the bits, without branches: the
// signs of random activations would mispredict half of them.
func (b *Kernels) ReluBackward(ctx context.Context, out, x, dy *accel.Tensor) error {
	X, D, Y := f32(x), f32(dy), f32(out)
	count, step := chunks(len(X), elemChunk)
	return b.forEach(ctx, count, func(c int) {
		lo, hi := c*step, min((c+1)*step, len(X))
		xs, ds, ys := X[lo:hi], D[lo:hi], Y[lo:hi]
		ds, ys = ds[:len(xs)], ys[:len(xs)]
		for i, v := range xs {
			xb, r := math.Float32bits(v), math.Float32bits(ds[i])
			if r&absMask > infBits {
				r = strictmath.CanonicalNaN
			}
			if xb-1 >= infBits {
				r = 0 // x is not in (0, +Inf]: a zero, negative or NaN
			}
			if xb&absMask > infBits {
				r = strictmath.CanonicalNaN
			}
			ys[i] = math.Float32frombits(r)
		}
	})
}

const (
	absMask = 0x7fffffff // the bits of a float32 but its sign
	infBits = 0x7f800000 // +Inf: above it (without the sign) lie the NaNs
)

// ---- maxpool2d_backward ----------------------------------------------------

// MaxPool2DBackward sends each window's gradient to the position maxpool2d
// kept. A work item owns a band of input rows of one plane (or several whole
// planes): it clears them, scans every window that meets them in row-major
// order, adds the gradient of each window whose choice lies in the band, and
// makes the band's NaNs canonical. Each position so receives its gradients
// from +0 in the windows' row-major order, as the contract sums them, and
// no two items write one position. Where windows overlap, a window across a
// band's edge is scanned by both bands; bands span at least a window's
// height to bound that repetition.
func (b *Kernels) MaxPool2DBackward(ctx context.Context, out, x, dy *accel.Tensor, p accel.Pool2DParams) error {
	xs, ys := x.Shape(), dy.Shape()
	H, W, OH, OW := xs[2], xs[3], ys[2], ys[3]
	X, DY, DX := f32(x), f32(dy), f32(out)
	planes := xs[0] * xs[1]
	// In float64: a huge window's product of sizes is only a measure here.
	window := float64(p.KernelH) * float64(p.KernelW)
	planeWork := float64(OH)*float64(OW)*window + float64(H*W)
	planesPer, bandRows, bands := 1, OH, 1
	if planeWork <= elemChunk {
		planesPer = max(1, int(elemChunk/planeWork))
	} else {
		minRows := (p.KernelH + p.StrideH - 1) / p.StrideH
		bandRows = min(OH, max(minRows, int(elemChunk/(float64(OW)*window))))
		bands = (OH + bandRows - 1) / bandRows
	}
	items := (planes + planesPer - 1) / planesPer * bands
	return b.forEach(ctx, items, func(item int) {
		first, k := item/bands*planesPer, item%bands
		for pl := first; pl < min(first+planesPer, planes); pl++ {
			// The band owns input rows [lo, hi): from the first row of
			// its first window to the next band's, the first band from
			// the top and the last to the bottom.
			lo, hi := 0, H
			if k > 0 {
				lo = min(H, max(0, k*bandRows*p.StrideH-p.PadTop))
			}
			if k < bands-1 {
				hi = min(H, max(0, (k+1)*bandRows*p.StrideH-p.PadTop))
			}
			if lo >= hi {
				continue
			}
			if !poolBackwardBand(ctx, DX[pl*H*W:(pl+1)*H*W], X[pl*H*W:(pl+1)*H*W], DY[pl*OH*OW:(pl+1)*OH*OW], H, W, OH, OW, lo, hi, p) {
				return // forEach reports the interruption
			}
		}
	})
}

// poolBackwardBand computes rows [lo, hi) of one plane's gradient dx from its
// input xp and output gradient dyp. It returns false if ctx ended first.
// Where windows do not overlap (strides at least the kernel) a position
// takes at most one gradient, canon(+0 + dy), written at once; elsewhere the
// gradients are added in the windows' order and made canonical last.
func poolBackwardBand(ctx context.Context, dx, xp, dyp []float32, H, W, OH, OW, lo, hi int, p accel.Pool2DParams) bool {
	band := dx[lo*W : hi*W]
	clear(band)
	// The windows whose rows [oh*SH - PT, oh*SH - PT + KH) meet [lo, hi).
	ohLo := 0
	if d := lo + p.PadTop - p.KernelH; d >= 0 {
		ohLo = d/p.StrideH + 1
	}
	ohHi := min(OH, (hi+p.PadTop+p.StrideH-1)/p.StrideH)
	disjoint := p.KernelH <= p.StrideH && p.KernelW <= p.StrideW
	tiled2x2 := p.KernelH == 2 && p.KernelW == 2 && p.StrideH == 2 && p.StrideW == 2
	// The windows of a row that lie inside the plane's columns, for the
	// 2x2 loop: iw0 = 2*ow - PL in [0, W-2].
	ow2Lo, ow2Hi := (p.PadLeft+1)/2, min(OW, (W-2+p.PadLeft)/2+1)
	work := 0
	for oh := ohLo; oh < ohHi; oh++ {
		ih0 := oh*p.StrideH - p.PadTop
		ihLo, ihHi := max(ih0, 0), min(ih0+p.KernelH, H)
		g := dyp[oh*OW : (oh+1)*OW]
		owLo, owHi := 0, 0 // the windows rows2x2 took
		if tiled2x2 && ihHi-ihLo == 2 && ow2Lo < ow2Hi {
			owLo, owHi = ow2Lo, ow2Hi
			o := ih0*W + 2*owLo - p.PadLeft
			rows2x2(dx[o:], xp[o:], g[owLo:owHi], W)
		}
		for ow := 0; ow < OW; ow++ {
			if ow == owLo && owHi > owLo {
				ow = owHi - 1
				continue
			}
			iw0 := ow*p.StrideW - p.PadLeft
			iwLo, iwHi := max(iw0, 0), min(iw0+p.KernelW, W)
			win := argmaxWindow(xp, W, ihLo, ihHi, iwLo, iwHi)
			if work += (ihHi - ihLo) * (iwHi - iwLo); work >= elemChunk {
				work = 0
				if ctx.Err() != nil {
					return false
				}
			}
			switch {
			case win < lo*W || win >= hi*W:
			case disjoint:
				dx[win] = math.Float32frombits(gradBits(g[ow]))
			default:
				dx[win] = dx[win] + g[ow]
			}
		}
	}
	if !disjoint {
		strictmath.CanonSlice(band)
	}
	return true
}

// gradBits is the bits of canon(+0 + g), a gradient taken alone: -0 gives
// +0 and a NaN the canonical NaN.
func gradBits(g float32) uint32 {
	r := math.Float32bits(g)
	if r == 1<<31 {
		r = 0
	}
	if r&absMask > infBits {
		r = strictmath.CanonicalNaN
	}
	return r
}

// rows2x2 computes the gradient of the 2x2 windows of stride 2 whose top
// left corners lie at x[2j] (and dx[2j]), rows W apart, from their
// gradients g[j]: the window's choice under poolKey takes canon(+0 +
// g[j]) and its other three positions +0, all written without branches.
func rows2x2(dx, x []float32, g []float32, W int) {
	n := 2 * len(g)
	x0, x1 := x[:n], x[W:W+n]
	d0, d1 := dx[:n:n], dx[W:W+n:W+n]
	for j, gv := range g {
		a, b := poolKey(x0[2*j]), poolKey(x0[2*j+1])
		c, d := poolKey(x1[2*j]), poolKey(x1[2*j+1])
		win, m := 0, a
		if b > m {
			win, m = 1, b
		}
		if c > m {
			win, m = 2, c
		}
		if d > m {
			win = 3
		}
		v := gradBits(gv)
		var r0, r1, r2, r3 uint32
		if win == 0 {
			r0 = v
		}
		if win == 1 {
			r1 = v
		}
		if win == 2 {
			r2 = v
		}
		if win == 3 {
			r3 = v
		}
		d0[2*j], d0[2*j+1] = math.Float32frombits(r0), math.Float32frombits(r1)
		d1[2*j], d1[2*j+1] = math.Float32frombits(r2), math.Float32frombits(r3)
	}
}

// poolKey orders float32 values as maxRule does: by value, with -0 equal to
// +0, and every NaN above every number and equal to every other NaN. The
// first of the greatest keys of a window, under a strict comparison, is
// then the value maxpool2d keeps: a NaN replaces any number and nothing
// replaces a NaN. Integer keys compare without branches, which random data
// would mispredict.
func poolKey(v float32) int32 {
	b := math.Float32bits(v)
	abs := b & absMask
	s := int32(b) >> 31
	k := (int32(abs) ^ s) - s // -abs for a negative sign
	if abs > infBits {
		k = math.MaxInt32
	}
	return k
}

// argmaxWindow returns the offset in xp of the value maxpool2d keeps from the
// window of rows [ihLo, ihHi) and columns [iwLo, iwHi), scanned row-major.
func argmaxWindow(xp []float32, W, ihLo, ihHi, iwLo, iwHi int) int {
	win := ihLo*W + iwLo
	m := poolKey(xp[win])
	for ih := ihLo; ih < ihHi; ih++ {
		o := ih*W + iwLo
		for j, v := range xp[o : o+iwHi-iwLo] {
			if k := poolKey(v); k > m {
				m, win = k, o+j
			}
		}
	}
	return win
}

// ---- reduce_sum ------------------------------------------------------------

// runLen is the length of a BlockSum's runs (strictmath.BlockLen).
const runLen = strictmath.BlockLen

// ones are the weights with which the SIMD convolution taps sum runs of
// rows: a product with 1 is exact, so each lane's sum is the plain sum of
// its terms from +0, bit for bit (a NaN may change payload, which the final
// canonicalisation removes).
var ones = func() (v [runLen]float32) {
	for i := range v {
		v[i] = 1
	}
	return v
}()

// reduceAxes is a reduction with its axes simplified: axes of size 1 dropped
// and neighbours of one kind merged. Neither changes the order of the
// outputs or of any output's terms, and the offset in x of term t of output
// o is then keptOffset(o) + sumOffset(t), each a mixed-radix sum over its
// axes.
type reduceAxes struct {
	keep, sum   []reduceAxis // outermost first; sum is never empty
	outs, terms int
	innerSum    bool // the innermost axis is summed: terms are contiguous
}

type reduceAxis struct{ size, stride int }

func newReduceAxes(shape []int, mask uint32) reduceAxes {
	strides := make([]int, len(shape))
	s := 1
	for i := len(shape) - 1; i >= 0; i-- {
		strides[i] = s
		s *= shape[i]
	}
	r := reduceAxes{outs: 1, terms: 1}
	var prev *[]reduceAxis
	for i, d := range shape {
		if d == 1 {
			continue
		}
		list := &r.keep
		if mask&(1<<i) != 0 {
			list, r.terms = &r.sum, r.terms*d
		} else {
			r.outs *= d
		}
		if list == prev {
			// The axis before (ignoring size 1) is of the same kind: its
			// stride is d times this one's.
			last := &(*list)[len(*list)-1]
			last.size, last.stride = last.size*d, strides[i]
		} else {
			*list = append(*list, reduceAxis{d, strides[i]})
		}
		prev = list
	}
	r.innerSum = prev == &r.sum
	if len(r.sum) == 0 {
		// Every summed axis has size 1: one term, at the output's place.
		r.sum = []reduceAxis{{1, 1}}
	}
	return r
}

// offset is the mixed-radix offset of index i over axes.
func offset(axes []reduceAxis, i int) int {
	off := 0
	for a := len(axes) - 1; a >= 0; a-- {
		off += i % axes[a].size * axes[a].stride
		i /= axes[a].size
	}
	return off
}

// segments calls fn(off, n) for the terms [t0, t1) in order, in pieces along
// the innermost summed axis: term k of a piece lies at off + k*stride of
// that axis, relative to the output's place.
func (r *reduceAxes) segments(t0, t1 int, fn func(off, n int)) {
	in := r.sum[len(r.sum)-1]
	outer := r.sum[:len(r.sum)-1]
	q, pos := t0/in.size, t0%in.size
	base := offset(outer, q)
	for t := t0; t < t1; {
		n := min(in.size-pos, t1-t)
		fn(base+pos*in.stride, n)
		t += n
		if t < t1 {
			q++
			base, pos = offset(outer, q), 0
		}
	}
}

// ReduceSum sums x over the axes set in mask: each output is the canonical
// BlockSum of its terms in row-major order of the summed axes. Work is split
// across outputs alone, and every way of computing an output below gives the
// same run sums, added by the same tree (runTree).
func (b *Kernels) ReduceSum(ctx context.Context, out, x *accel.Tensor, mask uint32) error {
	r := newReduceAxes(x.Shape(), mask)
	X, Y := f32(x), f32(out)
	switch {
	case !r.innerSum && len(r.keep) > 0:
		return b.reduceLanes(ctx, Y, X, &r)
	case len(r.sum) == 1 && r.terms >= 8*runLen:
		return b.reduceRuns(ctx, Y, X, &r)
	default:
		return b.reduceChains(ctx, Y, X, &r)
	}
}

// runs is the number of BlockSum runs of n terms.
func runs(n int) int { return (n + runLen - 1) / runLen }

// pollRuns is how many runs over w outputs make about elemChunk additions,
// after which a long item checks its context.
func pollRuns(w int) int { return max(1, elemChunk/(runLen*w)) }

// reduceLanes serves reductions whose innermost axis is kept, such as the
// bias gradient of a dense layer (axis 0 of [N, K]): the outputs along that
// axis are neighbours in memory and share their terms' offsets, so each is
// a vector lane, and a run is a sum of rows of them.
func (b *Kernels) reduceLanes(ctx context.Context, Y, X []float32, r *reduceAxes) error {
	lane := r.keep[len(r.keep)-1].size // stride 1
	outer := r.keep[:len(r.keep)-1]
	groups := r.outs / lane
	nr := runs(r.terms)
	tile, groupsPer := lane, 1
	switch {
	case lane*r.terms <= elemChunk:
		groupsPer = max(1, elemChunk/(lane*r.terms))
	case nr == 1:
		tile = max(64, elemChunk/r.terms)
	default:
		// Narrower tiles where wide ones would leave threads idle; each
		// takes whole vectors.
		tile = 512
		for tile > 64 && groups*((lane+tile-1)/tile) < 2*b.threads {
			tile /= 2
		}
	}
	tiles := (lane + tile - 1) / tile
	items := (groups + groupsPer - 1) / groupsPer * tiles
	return b.forEach(ctx, items, func(item int) {
		g0, j0 := item/tiles*groupsPer, item%tiles*tile
		j1 := min(lane, j0+tile)
		var tree *runTree
		if nr > 1 {
			tree = newRunTree(j1-j0, nr)
		}
		poll := pollRuns(j1 - j0)
		for g := g0; g < min(g0+groupsPer, groups); g++ {
			base := offset(outer, g) + j0
			ys := Y[g*lane+j0 : g*lane+j1]
			if nr == 1 {
				b.sumRows(ys, X, base, r, 0, r.terms)
				strictmath.CanonSlice(ys)
				continue
			}
			tree.reset()
			for run := range nr {
				if run%poll == poll-1 && ctx.Err() != nil {
					return
				}
				b.sumRows(tree.cur, X, base, r, run*runLen, min(r.terms, (run+1)*runLen))
				tree.push()
			}
			tree.finish(ys)
		}
	})
}

// sumRows sets y[j] to the sum from +0 of the terms [t0, t1) of the outputs
// whose first term lies at x[base+j], on the SIMD taps where the CPU has
// them. NaNs may be left with any payload.
func (b *Kernels) sumRows(y, x []float32, base int, r *reduceAxes, t0, t1 int) {
	stride := r.sum[len(r.sum)-1].stride
	first := true
	r.segments(t0, t1, func(off, n int) {
		xs := x[base+off : base+off+(n-1)*stride+len(y)]
		if taps := b.kern.taps; taps != nil {
			mode := tapsAdd
			if first {
				mode = tapsOut
			}
			taps(y, xs, 0, stride, 0, ones[:n], 1, n, 1, mode, 0)
		} else {
			if first {
				clear(y)
			}
			for k := range n {
				row := xs[k*stride : k*stride+len(y)]
				for j, v := range row {
					y[j] = y[j] + v
				}
			}
		}
		first = false
	})
}

// reduceRuns serves reductions over one contiguous block of at least eight
// runs per output, such as a sum of everything: an output's runs lie one
// after another, and eight of them are summed at once, each in its own
// register, so that the additions of one run do not wait on each other.
func (b *Kernels) reduceRuns(ctx context.Context, Y, X []float32, r *reduceAxes) error {
	nr, full := runs(r.terms), r.terms/runLen
	return b.forEach(ctx, r.outs, func(o int) {
		x := X[offset(r.keep, o):][:r.terms]
		tree := newRunTree(1, nr)
		poll := pollRuns(8)
		run := 0
		for ; run+8 <= full; run += 8 {
			if run/8%poll == poll-1 && ctx.Err() != nil {
				return
			}
			s := sum8Runs(x[run*runLen : (run+8)*runLen])
			for _, v := range s {
				tree.cur[0] = v
				tree.push()
			}
		}
		for ; run < nr; run++ {
			var s float32
			for _, v := range x[run*runLen : min(r.terms, (run+1)*runLen)] {
				s = s + v
			}
			tree.cur[0] = s
			tree.push()
		}
		tree.finish(Y[o : o+1])
	})
}

// sum8Runs returns the sums from +0 of the eight runs of x, in order each.
func sum8Runs(x []float32) [8]float32 {
	x0 := (*[runLen]float32)(x[0*runLen:])
	x1 := (*[runLen]float32)(x[1*runLen:])
	x2 := (*[runLen]float32)(x[2*runLen:])
	x3 := (*[runLen]float32)(x[3*runLen:])
	x4 := (*[runLen]float32)(x[4*runLen:])
	x5 := (*[runLen]float32)(x[5*runLen:])
	x6 := (*[runLen]float32)(x[6*runLen:])
	x7 := (*[runLen]float32)(x[7*runLen : 8*runLen])
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	for k := range runLen {
		s0 = s0 + x0[k]
		s1 = s1 + x1[k]
		s2 = s2 + x2[k]
		s3 = s3 + x3[k]
		s4 = s4 + x4[k]
		s5 = s5 + x5[k]
		s6 = s6 + x6[k]
		s7 = s7 + x7[k]
	}
	return [8]float32{s0, s1, s2, s3, s4, s5, s6, s7}
}

// reduceChains serves the other reductions, whose innermost axis is summed,
// such as the bias gradient of a convolution (axes 0, 2, 3 of NCHW): every
// output's terms lie at the same offsets from its place, so eight outputs
// take each run together, one register each, piece by contiguous piece. A
// last block of fewer outputs repeats its first in the spare registers.
func (b *Kernels) reduceChains(ctx context.Context, Y, X []float32, r *reduceAxes) error {
	blocks := (r.outs + 7) / 8
	nr := runs(r.terms)
	per := max(1, elemChunk/(8*r.terms))
	return b.forEach(ctx, (blocks+per-1)/per, func(item int) {
		var tree *runTree
		if nr > 1 {
			tree = newRunTree(8, nr)
		}
		poll := pollRuns(8)
		for blk := item * per; blk < min((item+1)*per, blocks); blk++ {
			o0 := blk * 8
			n := min(8, r.outs-o0)
			var bases [8]int
			for g := range bases {
				bases[g] = offset(r.keep, o0+g%n)
			}
			var sums [8]float32
			if tree != nil {
				tree.reset()
			}
			for run := range nr {
				if run%poll == poll-1 && ctx.Err() != nil {
					return
				}
				sums = [8]float32{}
				r.segments(run*runLen, min(r.terms, (run+1)*runLen), func(off, k int) {
					chains8(&sums, X, &bases, off, k)
				})
				if tree != nil {
					copy(tree.cur, sums[:])
					tree.push()
				}
			}
			if tree != nil {
				tree.finish(sums[:])
			}
			for g := range n {
				Y[o0+g] = strictmath.Canon(sums[g])
			}
		}
	})
}

// chains8 adds to s[g], for g < 8, the n values from x[bases[g]+off] on, in
// order.
func chains8(s *[8]float32, x []float32, bases *[8]int, off, n int) {
	x0 := x[bases[0]+off:][:n]
	x1 := x[bases[1]+off:][:len(x0)]
	x2 := x[bases[2]+off:][:len(x0)]
	x3 := x[bases[3]+off:][:len(x0)]
	x4 := x[bases[4]+off:][:len(x0)]
	x5 := x[bases[5]+off:][:len(x0)]
	x6 := x[bases[6]+off:][:len(x0)]
	x7 := x[bases[7]+off:][:len(x0)]
	s0, s1, s2, s3, s4, s5, s6, s7 := s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
	for k, v := range x0 {
		s0 = s0 + v
		s1 = s1 + x1[k]
		s2 = s2 + x2[k]
		s3 = s3 + x3[k]
		s4 = s4 + x4[k]
		s5 = s5 + x5[k]
		s6 = s6 + x6[k]
		s7 = s7 + x7[k]
	}
	*s = [8]float32{s0, s1, s2, s3, s4, s5, s6, s7}
}

// runTree adds up the run sums of BlockSums for w outputs at once, as the
// runs come, in strictmath.TreeSum's tree. TreeSum of n values is the sum
// of the first 2^k of them (2^k the largest power of two below n) plus
// TreeSum of the rest, since each level pairs the two parts apart until each
// is one value. Its complete subtrees are so those of the binary digits of
// n, largest first, added from the right: the tree keeps the sum of one
// complete subtree per set bit of the count of runs so far, and merges them
// like a binary counter carries.
type runTree struct {
	n     int         // runs pushed
	level [][]float32 // level[l]: a subtree of 2^l runs, while bit l of n is set
	cur   []float32   // the next run's sums, which the caller writes
}

// newRunTree returns a tree for w outputs of up to runs runs.
func newRunTree(w, runs int) *runTree {
	levels := bits.Len(uint(runs))
	buf := make([]float32, (levels+1)*w)
	t := &runTree{cur: buf[:w:w], level: make([][]float32, levels)}
	for l := range t.level {
		t.level[l] = buf[(l+1)*w : (l+2)*w : (l+2)*w]
	}
	return t
}

func (t *runTree) reset() { t.n = 0 }

// push adds cur as the next run.
func (t *runTree) push() {
	l := 0
	for ; t.n>>l&1 == 1; l++ {
		left := t.level[l][:len(t.cur)]
		for j, v := range t.cur {
			t.cur[j] = left[j] + v
		}
	}
	t.level[l], t.cur = t.cur, t.level[l]
	t.n++
}

// finish writes the canonical sums of the runs pushed to dst.
func (t *runTree) finish(dst []float32) {
	first := true
	for l, sub := range t.level {
		if t.n>>l&1 == 0 {
			continue
		}
		if first {
			copy(t.cur, sub)
			first = false
			continue
		}
		sub = sub[:len(t.cur)]
		for j, v := range t.cur {
			t.cur[j] = sub[j] + v
		}
	}
	dst = dst[:len(t.cur)]
	for j, v := range t.cur {
		dst[j] = strictmath.Canon(v)
	}
}
