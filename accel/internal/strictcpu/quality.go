package strictcpu

import (
	"context"
	"math"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// The pieces of embedding_quality's work. qualityBlock points make one work
// item and share each tile of the embedding and of the data (about
// qualityYTile and qualityXTile values) while it is in the cache; the
// context is polled between tiles, and between points for wide data. A data distance stops being summed once it exceeds
// every threshold of its point, checked every qualityProbe features.
//
// With a SIMD distance tile kernel (that of tsne_affinities) the data is
// worked in tiles of qualityCols points, transposed, against the block's
// points as the tile's rows, and no sum stops early.
const (
	qualityBlock = 64 // a multiple of 4, the tile kernel's rows
	qualityYTile = 8192
	qualityXTile = 4096
	qualityProbe = 8
	qualityCols  = 64 // a multiple of knnAlign
	// qualityLinear is the most neighbours that place compares one by one.
	qualityLinear = 16
)

// key is a point j at distance d from the point being ranked, as one
// integer: the bits of d, then j. Distances are +0, positive or +∞, never
// NaN or -0, so their bits order as their values, and keys order as the
// contract orders points, by (d, j); distinct points never tie.
func key(d float32, j int) uint64 { return uint64(math.Float32bits(d))<<32 | uint64(j) }

// keyPoint returns the point of a key.
func keyPoint(k uint64) int { return int(uint32(k)) }

// keyDist returns the distance of a key.
func keyDist(k uint64) float32 { return math.Float32frombits(uint32(k >> 32)) }

// EmbeddingQuality writes [T, A] to out: the trustworthiness of embedding
// y [N,E] of data x [N,D] at k = p.K, and the accuracy of the k-nearest
// neighbour vote of labels (canonical NaN when labels is nil).
//
// For each point i, V_i are its k nearest j ≠ i in y by (dY, j), and
//
//	r(i,j) = 1 + #{m ∉ {i,j} : (dX(i,m), m) < (dX(i,j), j)}
//	S = Σ_i Σ_{j∈V_i} max(0, r(i,j) − k)
//	T = 1 − 2S / (N·k·(2N − 3k − 1))      (binary64, then f32)
//
// Points are worked in blocks: a block's V_i come from one scan of y
// (brute force with a bounded list per point), then one scan of x ranks
// all its thresholds at once. S and the number of correct votes are
// integers, so neither depends on the order of the work or the thread
// count. Memory is O(k) per point of a block being worked.
func (b *Kernels) EmbeddingQuality(ctx context.Context, out, x, y, labels *accel.Tensor, p accel.EmbeddingQualityParams) error {
	n, dimX, dimE, k := x.Shape()[0], x.Shape()[1], y.Shape()[1], p.K
	X, Y := f32(x)[:n*dimX], f32(y)[:n*dimE]
	var L []int32
	if labels != nil {
		L = i32(labels)[:n]
	}

	count, step := chunks(n, qualityBlock)
	sums := make([]int64, count)
	correct := make([]int64, count)
	err := b.forEach(ctx, count, func(c int) {
		first, last := c*step, min((c+1)*step, n)
		q := qualityWork{ctx: ctx, kern: b.kern, X: X, Y: Y, dimX: dimX, dimE: dimE, k: k, first: first, last: last}
		if !q.neighbours() || !q.rank() {
			return // forEach reports the interruption
		}
		sums[c] = q.trust()
		if L != nil {
			correct[c] = q.votes(L)
		}
	})
	if err != nil {
		return err
	}

	var S, good int64
	for c := range count {
		S, good = S+sums[c], good+correct[c]
	}
	// The contract's binary64 operations in its order, on integers
	// converted exactly.
	T := float32(1 - float64(2*S)/((float64(n)*float64(k))*float64(2*n-3*k-1)))
	A := strictmath.NaN()
	if L != nil {
		A = float32(float64(good) / float64(n))
	}
	o := f32(out)
	o[0], o[1] = T, A
	return nil
}

// qualityWork is one block of points [first, last) on its way through
// embedding_quality.
type qualityWork struct {
	ctx         context.Context
	kern        *kernels
	X, Y        []float32
	dimX, dimE  int
	k           int
	first, last int

	// nb holds the keys of each point's k neighbours, k entries a point:
	// a max-heap by (dY, j) while y is scanned, then (dX, j) in
	// increasing order.
	nb []uint64
	// hist counts, for each point and each place p = 0 … k, the m whose
	// (dX(i,m), m) falls after exactly p of the point's neighbours.
	hist []int32
}

// neighbours fills nb with each point's V_i. It reports false if the
// context ended.
func (q *qualityWork) neighbours() bool {
	n, k, E := len(q.Y)/q.dimE, q.k, q.dimE
	q.nb = make([]uint64, (q.last-q.first)*k)
	for o := range q.nb {
		// After every point; its distance reads as a NaN, which no
		// distance exceeds, so nothing is turned away before the heap
		// is full of points.
		q.nb[o] = math.MaxUint64
	}
	tile := max(1, qualityYTile/E)
	for lo := 0; lo < n; lo += tile {
		if lo > 0 && q.ctx.Err() != nil {
			return false
		}
		hi := min(lo+tile, n)
		for i := q.first; i < q.last; i++ {
			h := q.nb[(i-q.first)*k:][:k]
			if E == 2 {
				scanPlane(h, q.Y, i, lo, hi)
				continue
			}
			yi := q.Y[i*E:][:E]
			for j := lo; j < hi; j++ {
				if d := dist(yi, q.Y[j*E:][:E]); !(d > keyDist(h[0])) && j != i {
					offer(h, key(d, j))
				}
			}
		}
	}
	return true
}

// scanPlane offers to heap h the points j of [lo, hi) but i of a
// two-dimensional embedding Y by their distance from point i.
func scanPlane(h []uint64, Y []float32, i, lo, hi int) {
	y0, y1 := Y[2*i], Y[2*i+1]
	pts := Y[2*lo : 2*hi]
	worst := keyDist(h[0])
	for p := 0; p+1 < len(pts); p += 2 {
		dx, dy := y0-pts[p], y1-pts[p+1]
		d := float32(dx*dx) + float32(dy*dy) // the contract's +0 + dx² + dy²: +0 + dx² is dx² exactly
		if d > worst {
			continue
		}
		if j := lo + p/2; j != i {
			offer(h, key(d, j))
			worst = keyDist(h[0])
		}
	}
}

// offer puts c into the max-heap h in place of its greatest element if c
// comes before that.
func offer(h []uint64, c uint64) {
	if c >= h[0] {
		return
	}
	h[0] = c
	for p := 0; ; {
		l := 2*p + 1
		if l >= len(h) {
			return
		}
		if r := l + 1; r < len(h) && h[l] < h[r] {
			l = r
		}
		if h[p] >= h[l] {
			return
		}
		h[p], h[l] = h[l], h[p]
		p = l
	}
}

// dist is the contract's distance: from +0, over the features in order.
func dist(a, b []float32) float32 {
	b = b[:len(a)]
	var s float32
	for t, v := range a {
		d := v - b[t]
		s += float32(d * d)
	}
	return s
}

// dist4 is dist from a to each of b0 … b3, which are as long as a, except
// that it may stop early once all four exceed lim: what it returns then
// exceeds lim too, as the full sums would, since sums of squares only grow.
func dist4(a, b0, b1, b2, b3 []float32, lim float32) (s0, s1, s2, s3 float32) {
	for t0 := 0; t0 < len(a); t0 += qualityProbe {
		a := a[t0:min(t0+qualityProbe, len(a))]
		c0, c1, c2, c3 := b0[t0:][:len(a)], b1[t0:][:len(a)], b2[t0:][:len(a)], b3[t0:][:len(a)]
		for t, v := range a {
			d0, d1, d2, d3 := v-c0[t], v-c1[t], v-c2[t], v-c3[t]
			s0 += float32(d0 * d0)
			s1 += float32(d1 * d1)
			s2 += float32(d2 * d2)
			s3 += float32(d3 * d3)
		}
		if s0 > lim && s1 > lim && s2 > lim && s3 > lim {
			return
		}
	}
	return
}

// rank turns each point's neighbours into their data distances, sorted,
// and counts in hist where every other point of the data falls among them.
// It reports false if the context ended.
func (q *qualityWork) rank() bool {
	n, k, D := len(q.X)/q.dimX, q.k, q.dimX
	for i := q.first; i < q.last; i++ {
		if q.ctx.Err() != nil {
			return false
		}
		h := q.nb[(i-q.first)*k:][:k]
		xi := q.X[i*D:][:D]
		for r, c := range h {
			j := keyPoint(c)
			h[r] = key(dist(xi, q.X[j*D:][:D]), j)
		}
		slices.Sort(h)
	}
	q.hist = make([]int32, (q.last-q.first)*(k+1))
	if knnTileSIMD(q.kern) {
		return q.rankTiles()
	}
	tile := max(4, qualityXTile/D&^3)
	for lo := 0; lo < n; lo += tile {
		if lo > 0 && q.ctx.Err() != nil {
			return false
		}
		hi := min(lo+tile, n)
		for i := q.first; i < q.last; i++ {
			if i > q.first && 4*D > qualityXTile && q.ctx.Err() != nil {
				return false
			}
			h := q.nb[(i-q.first)*k:][:k]
			hist := q.hist[(i-q.first)*(k+1):][:k+1]
			xi, lim := q.X[i*D:][:D], keyDist(h[k-1])
			m := lo
			for ; m+4 <= hi; m += 4 {
				s0, s1, s2, s3 := dist4(xi, q.X[m*D:][:D], q.X[(m+1)*D:][:D], q.X[(m+2)*D:][:D], q.X[(m+3)*D:][:D], lim)
				for o, d := range [4]float32{s0, s1, s2, s3} {
					if d <= lim && m+o != i {
						place(hist, h, key(d, m+o))
					}
				}
			}
			for ; m < hi; m++ {
				if d := dist(xi, q.X[m*D:][:D]); d <= lim && m != i {
					place(hist, h, key(d, m))
				}
			}
		}
	}
	return true
}

// rankTiles is the scan of rank on the SIMD distance tile kernel: each tile
// of qualityCols points of the data, transposed and padded with zeros,
// against the block's points padded to a multiple of 4, its features
// knnFeatures at a time.
func (q *qualityWork) rankTiles() bool {
	n, k, D := len(q.X)/q.dimX, q.k, q.dimX
	ni := q.last - q.first
	rows, nt := (ni+3)&^3, min(D, knnFeatures)
	acc := make([]float32, rows*qualityCols)
	A := make([]float32, rows*nt)
	B := make([]float32, nt*qualityCols)
	for lo := 0; lo < n; lo += qualityCols {
		if lo > 0 && q.ctx.Err() != nil {
			return false
		}
		nj := min(qualityCols, n-lo)
		clear(acc)
		for t0 := 0; t0 < D; t0 += knnFeatures {
			if t0 > 0 && q.ctx.Err() != nil {
				return false
			}
			nt := min(knnFeatures, D-t0)
			A, B := A[:rows*nt], B[:nt*qualityCols]
			for r := range ni {
				copy(A[r*nt:(r+1)*nt], q.X[(q.first+r)*D+t0:])
			}
			if nj < qualityCols {
				clear(B)
			}
			for c := range nj {
				for t, v := range q.X[(lo+c)*D+t0:][:nt] {
					B[t*qualityCols+c] = v
				}
			}
			knnTileRun(q.kern, acc, qualityCols, A, nt, B, rows)
		}
		for r := range ni {
			h := q.nb[r*k:][:k]
			hist := q.hist[r*(k+1):][:k+1]
			i, lim := q.first+r, keyDist(h[k-1])
			for c, d := range acc[r*qualityCols:][:nj] {
				if d <= lim && lo+c != i {
					place(hist, h, key(d, lo+c))
				}
			}
		}
	}
	return true
}

// place counts the point of key c in the bin of hist after the keys of
// sorted at or below it: the point then ranks before every neighbour from
// that place on (not before itself, if it is one). Neither way of counting
// branches on the data, since points land in bins at random: a few keys are
// compared one by one, more searched by halves.
func place(hist []int32, sorted []uint64, c uint64) {
	base := 0
	if len(sorted) <= qualityLinear {
		for _, s := range sorted {
			base += atOrBelow(s, c)
		}
		hist[base]++
		return
	}
	for n := len(sorted); n > 1; {
		half := n / 2
		base += half & -atOrBelow(sorted[base+half], c)
		n -= half
	}
	hist[base+atOrBelow(sorted[base], c)]++
}

// atOrBelow is 1 if s <= c, else 0, without a branch: keys are below 2^63
// (a distance's bits are at most those of +∞), so s − c − 1 wraps around to
// set the top bit exactly when s <= c.
func atOrBelow(s, c uint64) int { return int((s - c - 1) >> 63) }

// trust returns the block's part of S: Σ_{j∈V_i} max(0, r(i,j) − k), where
// the neighbour at place r of the sorted list has the points of bins 0 … r
// before it.
func (q *qualityWork) trust() int64 {
	var S int64
	k := q.k
	for b := range q.last - q.first {
		var before int64
		for _, c := range q.hist[b*(k+1):][:k] {
			before += int64(c)
			S += max(0, 1+before-int64(k))
		}
	}
	return S
}

// votes returns how many of the block's points have their label voted by
// their neighbours' labels: most votes wins, ties to the least label.
func (q *qualityWork) votes(L []int32) int64 {
	k := q.k
	got := make([]int32, k)
	var good int64
	for i := q.first; i < q.last; i++ {
		for r, c := range q.nb[(i-q.first)*k:][:k] {
			got[r] = L[keyPoint(c)]
		}
		slices.Sort(got)
		win, most := got[0], 0
		for lo := 0; lo < k; {
			hi := lo + 1
			for hi < k && got[hi] == got[lo] {
				hi++
			}
			if hi-lo > most {
				win, most = got[lo], hi-lo
			}
			lo = hi
		}
		if win == L[i] {
			good++
		}
	}
	return good
}
