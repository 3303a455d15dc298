package strictcpu

import (
	"context"
	"math"
	"slices"
	"sync"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// The distances of tsne_affinities are computed tile by tile: the points are
// cut into blocks of knnBlock rows (fewer for wide data), and each pair of
// blocks is one work item that computes every distance between them once and
// offers it to both points' lists. A point's list is a bounded max-heap of its
// k least (d2, j) so far; the k least pairs are unique (ties go to the lower
// index), so the order in which candidates are offered does not matter and
// neither does the thread count. The pairs of blocks are scheduled in rounds
// of a round-robin tournament, in which every block meets every other once
// and each round's pairs are disjoint, so the work items of a round touch
// disjoint lists and need no locks.
const (
	// knnBlock is the most points of a block, a multiple of knnAlign.
	knnBlock = 128
	// knnAlign is the multiple of a block's width that the SIMD tile
	// kernels take: 4 rows by 32 columns at a time.
	knnAlign = 32
	// knnTileWork is about how many pair-features one tile holds, so that
	// wide data gets smaller blocks and a tile stays a bounded piece of work.
	knnTileWork = 1 << 20
	// knnFeatures is how many features the SIMD tile kernels take at a
	// time, their accumulators kept in the tile between pieces.
	knnFeatures = 256
	// affinityRows is how many points make one work item of the precision
	// search and the symmetrisation.
	affinityRows = 64
	// affinityEntries is how many list entries the sequential passes of the
	// symmetrisation handle between polls of the context.
	affinityEntries = 1 << 16
)

// TSNEAffinities computes t-SNE's input affinities P as the contract's
// tsne_affinities section writes them: the k nearest neighbours of every
// point by (d2, j), the precision search of each point's conditional
// distribution c_i, and P[i,j] = (c_i(j) + c_j(i)) / 2N in CSR form.
//
// Memory besides the outputs: the neighbours' keys while they are searched
// (8 bytes a neighbour), then each point's neighbours and their distances,
// later conditional probabilities (8 bytes a neighbour), the transposed
// lists (4 bytes a neighbour) and two offsets a point, within the op's
// scratch bound of 24·N·k + 16·N bytes; plus a tile and its blocks per
// thread.
func (b *Kernels) TSNEAffinities(ctx context.Context, rowPtr, cols, vals, x *accel.Tensor, p accel.TSNEAffinitiesParams) error {
	n, d := x.Shape()[0], x.Shape()[1]
	k := accel.TSNENeighbours(n, p.Perplexity)
	X := f32(x)[:n*d]
	nbr := make([]int32, n*k)
	nd := make([]float32, n*k)

	if err := b.nearest(ctx, X, n, d, k, nbr, nd); err != nil {
		return err
	}
	if err := b.precisions(ctx, nd, n, k, p.Perplexity); err != nil {
		return err
	}
	return b.symmetrise(ctx, nbr, nd, n, k, i32(rowPtr)[:n+1], i32(cols)[:2*n*k], f32(vals)[:2*n*k])
}

// ---- neighbours --------------------------------------------------------------

// knnBuf is one thread's tile: the distances of a block of rows to a block of
// columns, and for the SIMD kernels the two blocks' features, the rows as
// they are and the columns transposed, both padded with zeros to a multiple
// of knnAlign points.
type knnBuf struct {
	acc, a, bt []float32
	thr        []uint64 // the columns' greatest keys
}

var knnPool = sync.Pool{New: func() any { return new(knnBuf) }}

// knnBlockSize returns the points of a block for data of d features.
func knnBlockSize(d int) int {
	bs := int(math.Sqrt(float64(knnTileWork)/float64(d))) / knnAlign * knnAlign
	return min(max(bs, knnAlign), knnBlock)
}

// nearest fills, for each point i, nbr[i*k:(i+1)*k] and nd[i*k:(i+1)*k] with
// its k nearest points j != i and their distances, in increasing (d2, j).
// While it searches, a point's list is a max-heap of keys d2<<32 | j: a
// distance is never negative or NaN, so its bits order as it does, and the
// keys order as the pairs (d2, j).
func (b *Kernels) nearest(ctx context.Context, X []float32, n, d, k int, nbr []int32, nd []float32) error {
	keys := make([]uint64, n*k)
	for e := range keys {
		keys[e] = math.MaxUint64
	}
	bs := knnBlockSize(d)
	nb := (n + bs - 1) / bs
	tile := func(ctx context.Context, a, c int) {
		b.knnTile(ctx, X, n, d, k, bs, a, c, keys)
	}
	// The blocks against themselves, then the rounds of the tournament:
	// with m = nb rounded up to even, block m-1 (a bye when nb is odd)
	// meets block r in round r, and blocks r+q and r-q (mod m-1) meet
	// for q = 1 … m/2-1.
	if err := b.forEach(ctx, nb, func(a int) { tile(ctx, a, a) }); err != nil {
		return err
	}
	m := nb + nb%2
	for r := range m - 1 {
		err := b.forEach(ctx, m/2, func(q int) {
			a, c := m-1, r
			if q > 0 {
				a, c = (r+q)%(m-1), (r-q+m-1)%(m-1)
			}
			if a < nb && c < nb {
				tile(ctx, a, c)
			}
		})
		if err != nil {
			return err
		}
	}
	// Each heap into increasing order.
	count, step := chunks(n, affinityRows)
	return b.forEach(ctx, count, func(c int) {
		for i := c * step; i < min((c+1)*step, n); i++ {
			h := keys[i*k : (i+1)*k]
			heapSort(h)
			for r, key := range h {
				nbr[i*k+r] = int32(uint32(key))
				nd[i*k+r] = math.Float32frombits(uint32(key >> 32))
			}
		}
	})
}

// knnTile offers the distances between the points of block a and those of
// block c (the pairs i < j when a = c) to both points' lists.
func (b *Kernels) knnTile(ctx context.Context, X []float32, n, d, k, bs, a, c int, keys []uint64) {
	i0, j0 := a*bs, c*bs
	ni, nj := min(bs, n-i0), min(bs, n-j0)
	buf := knnPool.Get().(*knnBuf)
	defer knnPool.Put(buf)
	ld := (nj + knnAlign - 1) / knnAlign * knnAlign
	var acc []float32
	if !b.Portable() && knnTileSIMD(b.kern) {
		if acc = b.distSIMD(ctx, buf, X, d, i0, ni, j0, nj, ld); acc == nil {
			return
		}
	} else if acc = grow(&buf.acc, ni*ld); !distPortable(ctx, acc, ld, X, d, i0, ni, j0, nj) {
		return
	}
	// The columns' greatest keys, kept up to date as the rows offer them
	// distances; a row's greatest key likewise.
	if cap(buf.thr) < nj {
		buf.thr = make([]uint64, nj)
	}
	thr := buf.thr[:nj]
	for cc := range thr {
		thr[cc] = keys[(j0+cc)*k]
	}
	for r := range ni {
		i := i0 + r
		hi := keys[i*k : (i+1)*k]
		ti := hi[0]
		first := 0
		if a == c {
			first = r + 1
		}
		row := acc[r*ld : r*ld+nj]
		for cc := first; cc < len(row); cc++ {
			v := uint64(math.Float32bits(row[cc])) << 32
			if key := v | uint64(j0+cc); key < ti {
				ti = heapOffer(hi, key)
			}
			if key := v | uint64(i); key < thr[cc] {
				j := j0 + cc
				thr[cc] = heapOffer(keys[j*k:(j+1)*k], key)
			}
		}
	}
}

// distPortable sets acc[r*ld+c] = d2(i0+r, j0+c) for r < ni and c < nj in
// the contract's order, four columns at a time. It returns false if ctx
// ended first.
func distPortable(ctx context.Context, acc []float32, ld int, X []float32, d, i0, ni, j0, nj int) bool {
	for r := range ni {
		if r > 0 && ctx.Err() != nil {
			return false
		}
		xi := X[(i0+r)*d : (i0+r+1)*d]
		row := acc[r*ld : r*ld+nj]
		c := 0
		for ; c+4 <= nj; c += 4 {
			x0 := X[(j0+c)*d : (j0+c+1)*d]
			x1 := X[(j0+c+1)*d : (j0+c+2)*d]
			x2 := X[(j0+c+2)*d : (j0+c+3)*d]
			x3 := X[(j0+c+3)*d : (j0+c+4)*d]
			x0, x1, x2, x3 = x0[:len(xi)], x1[:len(xi)], x2[:len(xi)], x3[:len(xi)]
			var s0, s1, s2, s3 float32
			for t, v := range xi {
				d0, d1, d2, d3 := v-x0[t], v-x1[t], v-x2[t], v-x3[t]
				s0 = s0 + float32(d0*d0)
				s1 = s1 + float32(d1*d1)
				s2 = s2 + float32(d2*d2)
				s3 = s3 + float32(d3*d3)
			}
			row[c], row[c+1], row[c+2], row[c+3] = s0, s1, s2, s3
		}
		for ; c < nj; c++ {
			xj := X[(j0+c)*d : (j0+c+1)*d]
			xj = xj[:len(xi)]
			var s float32
			for t, v := range xi {
				df := v - xj[t]
				s = s + float32(df*df)
			}
			row[c] = s
		}
	}
	return true
}

// distSIMD computes the tile of distances as distPortable does and returns
// it (nil if ctx ended first), with the SIMD tile kernel over the blocks'
// features knnFeatures at a time: the rows copied as they are, the columns
// transposed, both padded with zeros, to a multiple of 4 rows and to ld
// columns.
func (b *Kernels) distSIMD(ctx context.Context, buf *knnBuf, X []float32, d, i0, ni, j0, nj, ld int) []float32 {
	rows := (ni + 3) &^ 3
	acc := grow(&buf.acc, rows*ld)
	clear(acc)
	for t0 := 0; t0 < d; t0 += knnFeatures {
		if t0 > 0 && ctx.Err() != nil {
			return nil
		}
		nt := min(knnFeatures, d-t0)
		A, B := grow(&buf.a, rows*nt), grow(&buf.bt, nt*ld)
		for r := range rows {
			if r < ni {
				copy(A[r*nt:(r+1)*nt], X[(i0+r)*d+t0:])
			} else {
				clear(A[r*nt : (r+1)*nt])
			}
		}
		clear(B)
		for c := range nj {
			xj := X[(j0+c)*d+t0 : (j0+c)*d+t0+nt]
			for t, v := range xj {
				B[t*ld+c] = v
			}
		}
		knnTileRun(b.kern, acc, ld, A, nt, B, rows)
	}
	return acc
}

// heapOffer puts key into the max-heap h of a point's k least keys so far
// if it is less than the greatest, which it replaces, and returns the new
// greatest.
func heapOffer(h []uint64, key uint64) uint64 {
	if key >= h[0] {
		return h[0]
	}
	siftDown(h, key)
	return h[0]
}

// siftDown puts key at the root of the max-heap h in place of the root and
// restores the heap.
func siftDown(h []uint64, key uint64) {
	k := len(h)
	i := 0
	for {
		c := 2*i + 1
		if c >= k {
			break
		}
		hc := h[c]
		if c+1 < k && h[c+1] > hc {
			c++
			hc = h[c]
		}
		if hc < key {
			break
		}
		h[i] = hc
		i = c
	}
	h[i] = key
}

// heapSort turns the max-heap h into increasing order.
func heapSort(h []uint64) {
	for end := len(h) - 1; end > 0; end-- {
		key := h[end]
		h[end] = h[0]
		siftDown(h[:end], key)
	}
}

// ---- precisions --------------------------------------------------------------

// searchBuf is one thread's room for a point's shifted distances, weights,
// weighted distances and blocksum runs.
type searchBuf struct{ e, w, we, runs []float32 }

var searchPool = sync.Pool{New: func() any { return new(searchBuf) }}

// precisions replaces each point's distances nd[i*k:(i+1)*k], in increasing
// order, by its conditional probabilities c_i, fitting the precision β of
// each point's Gaussian to the perplexity by the contract's bisection.
func (b *Kernels) precisions(ctx context.Context, nd []float32, n, k int, perplexity float32) error {
	target := strictmath.Log(perplexity)
	tol := float32(1e-5)
	count, step := chunks(n, affinityRows)
	return b.forEach(ctx, count, func(c int) {
		buf := searchPool.Get().(*searchBuf)
		defer searchPool.Put(buf)
		e, w, we := grow(&buf.e, k), grow(&buf.w, k), grow(&buf.we, k)
		runs := grow(&buf.runs, (k+strictmath.BlockLen-1)/strictmath.BlockLen)
		for i := c * step; i < min((c+1)*step, n); i++ {
			if ctx.Err() != nil {
				return // forEach reports the interruption
			}
			dd := nd[i*k : (i+1)*k]
			for r, v := range dd {
				e[r] = v - dd[0]
			}
			beta := float32(1)
			var lo, hi float32
			var loSet, hiSet bool
			var S float32
			for range accel.TSNESearchSteps {
				for r, v := range e[:k] {
					w[r] = strictmath.Exp(-float32(beta * v))
					we[r] = float32(w[r] * v)
				}
				S = blockSum(w, runs)
				E := blockSum(we, runs)
				H := strictmath.Log(S) + float32(beta*(E/S))
				delta := H - target
				if math.Float32frombits(math.Float32bits(delta)&0x7fffffff) <= tol {
					break
				}
				if delta > 0 {
					lo, loSet = beta, true
					if hiSet {
						beta = float32((beta + hi) * 0.5)
					} else {
						beta = float32(beta * 2)
					}
				} else {
					hi, hiSet = beta, true
					if loSet {
						beta = float32((beta + lo) * 0.5)
					} else {
						beta = float32(beta * 0.5)
					}
				}
			}
			for r := range dd {
				dd[r] = w[r] / S
			}
		}
	})
}

// blockSum is strictmath.BlockSum with room for the runs' sums given, so
// that it allocates nothing: the runs in order from +0, then their treesum
// computed in place.
func blockSum(v, runs []float32) float32 {
	if len(v) <= strictmath.BlockLen {
		var s float32
		for _, x := range v {
			s += x
		}
		return s
	}
	runs = runs[:(len(v)+strictmath.BlockLen-1)/strictmath.BlockLen]
	for i := range runs {
		var s float32
		for _, x := range v[i*strictmath.BlockLen : min(len(v), (i+1)*strictmath.BlockLen)] {
			s += x
		}
		runs[i] = s
	}
	for m := len(runs); m > 1; m = (m + 1) / 2 {
		for i := 0; i < m/2; i++ {
			runs[i] = runs[2*i] + runs[2*i+1]
		}
		if m%2 == 1 {
			runs[m/2] = runs[m-1]
		}
	}
	return runs[0]
}

// ---- symmetrisation ----------------------------------------------------------

// symmetrise writes P in CSR form from each point's neighbours nbr and
// conditional probabilities c (in increasing (d2, j) order): row i holds
// the columns of n_i ∪ {j : i ∈ n_j} in increasing order, with the values
// (c_i(j) + c_j(i)) / 2N, a missing side counting +0.
func (b *Kernels) symmetrise(ctx context.Context, nbr []int32, c []float32, n, k int, rowPtr, cols []int32, vals []float32) error {
	// Each list in increasing j.
	count, step := chunks(n, affinityRows)
	err := b.forEach(ctx, count, func(ch int) {
		var pairs []nbrPair
		for i := ch * step; i < min((ch+1)*step, n); i++ {
			js, cs := nbr[i*k:(i+1)*k], c[i*k:(i+1)*k]
			pairs = pairs[:0]
			for r, j := range js {
				pairs = append(pairs, nbrPair{j, cs[r]})
			}
			slices.SortFunc(pairs, func(x, y nbrPair) int { return int(x.j - y.j) })
			for r, pr := range pairs {
				js[r], cs[r] = pr.j, pr.c
			}
		}
	})
	if err != nil {
		return err
	}

	// The transposed lists: rev[revPtr[j]:revPtr[j+1]] holds the places
	// i*k+r of the entries n_i[r] = j, in increasing i.
	revPtr := make([]int32, n+1)
	for e, j := range nbr {
		if e%affinityEntries == affinityEntries-1 && ctx.Err() != nil {
			return interrupted(ctx)
		}
		revPtr[j+1]++
	}
	for j := range n {
		revPtr[j+1] += revPtr[j]
	}
	pos := make([]int32, n)
	copy(pos, revPtr[:n])
	rev := make([]int32, n*k)
	for e, j := range nbr {
		if e%affinityEntries == affinityEntries-1 && ctx.Err() != nil {
			return interrupted(ctx)
		}
		rev[pos[j]] = int32(e)
		pos[j]++
	}
	pos = nil

	// Each row's length, then the rows.
	m := float32(2 * n)
	row := func(i int, write bool) int32 {
		js, cs := nbr[i*k:(i+1)*k], c[i*k:(i+1)*k]
		tr := rev[revPtr[i]:revPtr[i+1]]
		var oc []int32
		var ov []float32
		if write {
			oc, ov = cols[rowPtr[i]:rowPtr[i+1]], vals[rowPtr[i]:rowPtr[i+1]]
		}
		var out int32
		r, q := 0, 0
		for r < len(js) || q < len(tr) {
			var j int32
			var a, bv float32
			switch {
			case q == len(tr) || r < len(js) && js[r] < tr[q]/int32(k):
				j, a = js[r], cs[r]
				r++
			case r == len(js) || tr[q]/int32(k) < js[r]:
				j, bv = tr[q]/int32(k), c[tr[q]]
				q++
			default:
				j, a, bv = js[r], cs[r], c[tr[q]]
				r++
				q++
			}
			if write {
				oc[out] = j
				ov[out] = strictmath.Canon((a + bv) / m)
			}
			out++
		}
		return out
	}
	count, step = chunks(n, affinityRows)
	err = b.forEach(ctx, count, func(ch int) {
		for i := ch * step; i < min((ch+1)*step, n); i++ {
			rowPtr[i+1] = row(i, false)
		}
	})
	if err != nil {
		return err
	}
	rowPtr[0] = 0
	for i := range n {
		rowPtr[i+1] += rowPtr[i]
	}
	err = b.forEach(ctx, count, func(ch int) {
		for i := ch * step; i < min((ch+1)*step, n); i++ {
			row(i, true)
		}
	})
	if err != nil {
		return err
	}
	nnz := rowPtr[n]
	clear(cols[nnz:])
	clear(vals[nnz:])
	return nil
}

// nbrPair is a neighbour and its conditional probability.
type nbrPair struct {
	j int32
	c float32
}
