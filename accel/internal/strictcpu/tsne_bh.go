package strictcpu

// The Barnes-Hut repulsion of tsne_step (docs/determinism.md, "Barnes-Hut
// (θ > 0)"): a quadtree over 16-bit cell coordinates, whose shape and order
// depend on Y alone, and for each point a depth-first walk that takes a
// far cell's centre in place of its points.
//
// The contract's tree has a cell for every non-empty prefix of the Morton
// codes, levels 0 to 16. A cell with one child holds the child's points,
// sums and centre, and passes the opening test whenever the child does, so
// the tree here keeps only the cells that hold a single point, end at level
// 16 or have at least two children: at most 2N−1 cells, each a run of the
// points in (code, index) order. The cells are stored in depth-first
// preorder, each with the index after its subtree, so a walk is a single
// loop over the array: open a cell by stepping to the next one, skip it by
// jumping past its subtree.

import (
	"context"
	"math"
	"math/bits"

	"github.com/accelnode/accelnode/accel"
)

// bhLevels is the number of levels of the contract's tree below the root:
// a cell coordinate has 16 bits.
const bhLevels = 16

// bhCell is a cell of the compressed quadtree: the points order[first:last]
// at level level, their count c as f32 and centre (cx, cy), and end, the
// index of the first cell after its subtree. 28 bytes.
type bhCell struct {
	cx, cy      float32
	c           float32
	first, last int32
	end         int32
	level       int32
}

// bhTree is the quadtree of an embedding.
type bhTree struct {
	cells []bhCell
	// keys holds code<<32 | i for every point i, sorted: the order of the
	// points, and pts their x, y in that order.
	keys []uint64
	pts  []float32
	// wl2[L] is (w ⊗ 2^-L) ⊗ (w ⊗ 2^-L), a level-L cell's squared width.
	wl2 [bhLevels + 1]float32
}

// bhCellChunk is how many cells, and bhWalkPoll how many steps of a walk,
// come between two looks at the context.
const (
	bhCellChunk = 1 << 10
	bhWalkPoll  = 1 << 12
)

// tsneRepulsionBH computes the Barnes-Hut repulsion sums z[i], rx[i] and
// ry[i] of every point of Y (n x, y pairs) with threshold theta > 0: the
// tree is built once, then every point walks it on its own, in parallel.
// Memory: 80 bytes a point (the sort's keys and its buffer, 16; the sorted
// points, 8; at most two 28-byte cells), within accel.TSNETreeBytes.
func (b *Kernels) tsneRepulsionBH(ctx context.Context, Y []float32, theta float32, z, rx, ry []float32) error {
	n := len(z)
	t, err := b.buildBHTree(ctx, Y)
	if err != nil {
		return err
	}
	theta2 := float32(theta * theta)
	// About tsnePairs cells visited a chunk, by the charge's estimate.
	count, step := chunks(n, tsnePairs/max(1, int(accel.TSNECells(n, theta))))
	// The points in the tree's order, so that the walks of one chunk,
	// neighbours, read the same cells.
	return b.forEach(ctx, count, func(c int) {
		for s := c * step; s < min((c+1)*step, n); s++ {
			i := int(uint32(t.keys[s]))
			var ok bool
			z[i], rx[i], ry[i], ok = t.walk(ctx, int32(s), t.pts[2*s], t.pts[2*s+1], theta2)
			if !ok {
				return // forEach reports the interruption
			}
		}
	})
}

// buildBHTree builds the contract's tree over Y, compressed.
func (b *Kernels) buildBHTree(ctx context.Context, Y []float32) (*bhTree, error) {
	n := len(Y) / 2
	t := &bhTree{}

	// The bounding box and its width w. The contract speaks of finite Y;
	// beyond it, a NaN takes no part in the least and greatest values, and
	// a cell coordinate whose quotient is NaN is 0, so that the tree is
	// still a function of Y alone. (A NaN anywhere makes every repulsion
	// NaN in any case.)
	lox, hix := float32(math.Inf(1)), float32(math.Inf(-1))
	loy, hiy := lox, hix
	for i := range n {
		x, y := Y[2*i], Y[2*i+1]
		if x < lox {
			lox = x
		}
		if x > hix {
			hix = x
		}
		if y < loy {
			loy = y
		}
		if y > hiy {
			hiy = y
		}
	}
	w := hix - lox
	if wy := hiy - loy; wy > w {
		w = wy
	}
	for L := range t.wl2 {
		wl := float32(w * float32(math.Ldexp(1, -L)))
		t.wl2[L] = float32(wl * wl)
	}

	// The codes, and the order by (code, index): a stable radix sort of the
	// codes over the points in index order.
	t.keys = make([]uint64, n)
	for i := range n {
		qx, qy := bhCoord(Y[2*i], lox, w), bhCoord(Y[2*i+1], loy, w)
		t.keys[i] = uint64(bhInterleave(qx, qy))<<32 | uint64(i)
	}
	radixSortCodes(t.keys, make([]uint64, n))
	if ctx.Err() != nil {
		return nil, interrupted(ctx)
	}
	t.pts = make([]float32, 2*n)
	for s, k := range t.keys {
		i := int(uint32(k))
		t.pts[2*s], t.pts[2*s+1] = Y[2*i], Y[2*i+1]
	}

	// The cells, in preorder, then their sums and centres.
	t.cells = make([]bhCell, 0, 2*n-1)
	t.split(0, n, 0)
	count, step := chunks(len(t.cells), bhCellChunk)
	err := b.forEach(ctx, count, func(c int) {
		for k := c * step; k < min((c+1)*step, len(t.cells)); k++ {
			cell := &t.cells[k]
			var sx, sy float32
			for s := cell.first; s < cell.last; s++ {
				sx = sx + t.pts[2*s]
				sy = sy + t.pts[2*s+1]
			}
			cell.cx, cell.cy = sx/cell.c, sy/cell.c
		}
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// bhCoord is the contract's cell coordinate of v in a box from lo of width
// w: min(65535, trunc(((v - lo) / w) ⊗ 65536)), 0 when w = 0 (or, outside
// the contract, when the quotient is NaN).
func bhCoord(v, lo, w float32) uint32 {
	if w == 0 {
		return 0
	}
	f := float32(((v - lo) / w) * 65536)
	switch {
	case f >= 65535:
		return 65535
	case f >= 0:
		return uint32(f) // truncation
	default:
		return 0
	}
}

// bhInterleave puts bit b of qx at bit 2b and bit b of qy at bit 2b+1.
func bhInterleave(qx, qy uint32) uint32 { return spread16(qx) | spread16(qy)<<1 }

// spread16 moves bit b of v (below 2^16) to bit 2b.
func spread16(v uint32) uint32 {
	v &= 0xffff
	v = (v | v<<8) & 0x00ff00ff
	v = (v | v<<4) & 0x0f0f0f0f
	v = (v | v<<2) & 0x33333333
	v = (v | v<<1) & 0x55555555
	return v
}

// radixSortCodes sorts keys (code<<32 | index, indices increasing) by code,
// stably, in four passes of a byte each, with buf as room; passes whose
// byte is the same in every key are skipped. The result is the order by
// (code, index).
func radixSortCodes(keys, buf []uint64) {
	for shift := 32; shift < 64; shift += 8 {
		var count [256]int
		for _, k := range keys {
			count[byte(k>>shift)]++
		}
		if count[byte(keys[0]>>shift)] == len(keys) {
			continue
		}
		at := 0
		for d, c := range count {
			count[d] = at
			at += c
		}
		for _, k := range keys {
			d := byte(k >> shift)
			buf[count[d]] = k
			count[d]++
		}
		copy(keys, buf)
	}
}

// split appends the cell of the run [lo, hi) of the order, which shares its
// codes' top 2·from bits, and its subtree: the run's cell at the deepest
// level whose prefix all its codes share (a single point ends there), then
// one child for each value of the next two bits.
func (t *bhTree) split(lo, hi, from int) {
	k := len(t.cells)
	t.cells = append(t.cells, bhCell{first: int32(lo), last: int32(hi), c: float32(hi - lo), level: bhLevels})
	if hi-lo > 1 {
		level := bhLevels
		if x := uint32(t.keys[lo]>>32) ^ uint32(t.keys[hi-1]>>32); x != 0 {
			level = bits.LeadingZeros32(x) / 2
		}
		t.cells[k].level = int32(level)
		if level < bhLevels {
			shift := 30 - 2*level // the child's two bits
			for s := lo; s < hi; {
				// The child's run ends at the first code of a greater digit
				// (digits increase along the run).
				d := t.keys[s] >> 32 >> shift & 3
				e, top := s+1, hi
				for e < top {
					if mid := int(uint(e+top) >> 1); t.keys[mid]>>32>>shift&3 == d {
						e = mid + 1
					} else {
						top = mid
					}
				}
				t.split(s, e, level+1)
				s = e
			}
		}
	}
	t.cells[k].end = int32(len(t.cells))
}

// walk returns the repulsion sums z, rx, ry of the point at place pi of the
// order, at (xi, yi): the contract's visit from the root, over the
// compressed tree. ok is false if ctx ended during the walk.
func (t *bhTree) walk(ctx context.Context, pi int32, xi, yi, theta2 float32) (z, rx, ry float32, ok bool) {
	cells, pts := t.cells, t.pts
	for k, steps := 0, 0; k < len(cells); steps++ {
		if steps == bhWalkPoll {
			if ctx.Err() != nil {
				return 0, 0, 0, false
			}
			steps = 0
		}
		c := &cells[k]
		if c.last-c.first == 1 { // {i} adds nothing; {j} its centre
			if c.first != pi {
				z, rx, ry = bhAdd(xi, yi, c.cx, c.cy, 1, z, rx, ry)
			}
			k = int(c.end)
			continue
		}
		if pi < c.first || pi >= c.last { // i ∉ C: is it far enough?
			dx, dy := xi-c.cx, yi-c.cy
			d2 := float32(dx*dx) + float32(dy*dy)
			if t.wl2[c.level] < float32(theta2*d2) {
				z, rx, ry = bhAdd(xi, yi, c.cx, c.cy, c.c, z, rx, ry)
				k = int(c.end)
				continue
			}
		}
		if c.level == bhLevels { // the points themselves, in order
			for s := c.first; s < c.last; s++ {
				if s != pi {
					z, rx, ry = bhAdd(xi, yi, pts[2*s], pts[2*s+1], 1, z, rx, ry)
				}
			}
			k = int(c.end)
			continue
		}
		k++ // open the cell: its children follow it
	}
	return z, rx, ry, true
}

// bhAdd is the contract's add: the repulsion on (xi, yi) of c points at
// (cx, cy), added to z, rx and ry.
func bhAdd(xi, yi, cx, cy, c, z, rx, ry float32) (float32, float32, float32) {
	dx := xi - cx
	dy := yi - cy
	d2 := float32(dx*dx) + float32(dy*dy)
	q := 1 / (1 + d2)
	cq := float32(c * q)
	z = z + cq
	m := float32(cq * q)
	rx = rx + float32(m*dx)
	ry = ry + float32(m*dy)
	return z, rx, ry
}
