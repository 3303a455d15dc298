package strictcpu

import (
	"context"
	"sync"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// Matmul blocking of the portable kernels (matmul_packed.go has the SIMD
// ones). One work item is a tile of C, mmRows x mmCols. Within a
// tile, k runs in blocks of mmDepth; for each block, a micro-kernel computes
// 2 x 3 outputs at a time as dot products of two rows of A with three rows of
// Bᵀ (both contiguous in k), keeping the six sums in registers and storing
// them back to C between k blocks. Every C[i,j] therefore starts at +0 and
// receives its products in increasing k, exactly as the contract writes:
// blocking changes which elements are worked on when, never the order of one
// element's sum. Six accumulators is what the Go compiler keeps in registers
// without spilling on amd64; bigger kernels spill a sum to the stack and run
// at half the speed.
const (
	mmRows  = 64
	mmCols  = 96
	mmDepth = 256

	// mmFewRows is the row count below which a product with B stored
	// [K, N] streams B's rows instead of transposing B.
	mmFewRows = 4
	// mmFewCols is the width of a work item then.
	mmFewCols = 256

	// A work item of a transposition is mmTransposeRows rows of the
	// source by up to mmTransposeCols columns.
	mmTransposeRows = 32
	mmTransposeCols = 1 << 12
)

// MatMul computes C = A·B. With SIMD kernels (and at least mmFewRows rows)
// it packs A and B for their micro-kernel (matmulPacked). Otherwise it works
// with A row-major [M, K] and Bᵀ row-major [N, K]: whichever operand is not
// stored that way is transposed first, which costs O(MK) or O(KN) against
// the product's O(MNK).
func (b *Kernels) MatMul(ctx context.Context, out, a, bm *accel.Tensor, p accel.MatMulParams) error {
	m, k, n, err := accel.MatMulDims(a.Shape(), bm.Shape(), p)
	if err != nil {
		return err
	}
	return b.matmul(ctx, f32(out), f32(a), f32(bm), m, k, n, p)
}

// BatchMatMul computes each product of a batch_matmul with MatMul's
// kernels, one after the other; an operand that repeats along a batch
// axis is read again.
func (b *Kernels) BatchMatMul(ctx context.Context, out, a, bm *accel.Tensor) error {
	_, batches, m, k, n, err := accel.BatchMatMulDims(a.Shape(), bm.Shape())
	if err != nil {
		return err
	}
	at := accel.BatchOffsets(a.Shape(), bm.Shape())
	A, B, C := f32(a), f32(bm), f32(out)
	for i := range batches {
		ia, ib := at(i)
		if err := b.matmul(ctx, C[i*m*n:(i+1)*m*n], A[ia:ia+m*k], B[ib:ib+k*n], m, k, n, accel.MatMulParams{}); err != nil {
			return err
		}
	}
	return nil
}

// matmul is C = op(A)·op(B) on slices, for M, K and N.
func (b *Kernels) matmul(ctx context.Context, C, A, Bt []float32, m, k, n int, p accel.MatMulParams) error {
	var err error
	if kr := b.kern; kr.micro != nil && m >= mmFewRows {
		return b.matmulPacked(ctx, kr, C, A, Bt, m, k, n, p)
	}
	if p.TransA { // stored [K, M]
		if A, err = b.transpose(ctx, A, k, m); err != nil {
			return err
		}
	}
	if !p.TransB && m < mmFewRows {
		// Transposing B would cost as much as the product: stream its
		// rows instead.
		return b.matmulFewRows(ctx, C, A, Bt, m, k, n)
	}
	if !p.TransB { // stored [K, N]
		if Bt, err = b.transpose(ctx, Bt, k, n); err != nil {
			return err
		}
	}
	rowTiles := (m + mmRows - 1) / mmRows
	colTiles := (n + mmCols - 1) / mmCols
	return b.forEach(ctx, rowTiles*colTiles, func(t int) {
		i0, j0 := t/colTiles*mmRows, t%colTiles*mmCols
		i1, j1 := min(i0+mmRows, m), min(j0+mmCols, n)
		matmulTile(ctx, C, A, Bt, k, n, i0, i1, j0, j1)
	})
}

// matmulFewRows computes C = A·B for row-major A [M, K], B [K, N] and C [M,
// N] with few rows: each work item is a block of columns, over which every row
// of C starts at +0 and adds A[i,k]·B[k,:] for k in increasing order.
func (b *Kernels) matmulFewRows(ctx context.Context, C, A, B []float32, m, k, n int) error {
	count, step := chunks(n, mmFewCols)
	return b.forEach(ctx, count, func(t int) {
		j0, j1 := t*step, min((t+1)*step, n)
		for i := range m {
			c := C[i*n+j0 : i*n+j1]
			clear(c)
			for kk, x := range A[i*k : (i+1)*k] {
				if kk%mmDepth == 0 && ctx.Err() != nil {
					return // forEach reports the interruption
				}
				b.axpy(c, B[kk*n+j0:kk*n+j1], x)
			}
			strictmath.CanonSlice(c)
		}
	})
}

// transpose returns the [cols, rows] transpose of the row-major [rows, cols]
// matrix src, in blocks that keep both sides in cache. A work item is
// mmTransposeRows rows by up to mmTransposeCols columns of src, so that a
// deadline interrupts the transposition of a large operand, which took
// half a second for a quarter of a gigabyte.
func (b *Kernels) transpose(ctx context.Context, src []float32, rows, cols int) ([]float32, error) {
	const blk = mmTransposeRows
	dst := make([]float32, rows*cols)
	rowBlocks := (rows + blk - 1) / blk
	colTiles, colStep := chunks(cols, mmTransposeCols)
	err := b.forEach(ctx, rowBlocks*colTiles, func(t int) {
		r0, lo := t/colTiles*blk, t%colTiles*colStep
		r1, hi := min(r0+blk, rows), min(lo+colStep, cols)
		for c0 := lo; c0 < hi; c0 += blk {
			c1 := min(c0+blk, hi)
			for r := r0; r < r1; r++ {
				row := src[r*cols : r*cols+cols]
				for c := c0; c < c1; c++ {
					dst[c*rows+r] = row[c]
				}
			}
		}
	})
	return dst, err
}

// packPool holds per-tile copies of a block of A.
var packPool = sync.Pool{New: func() any { return new([]float32) }}

// matmulTile computes C[i0:i1, j0:j1] for row-major A [M, K], Bᵀ [N, K] and
// C [M, N], and canonicalises it. Each k block of the tile's rows of A is
// first copied into a contiguous buffer, so that the rows, which lie a
// power-of-two stride apart in many shapes, do not compete for the same cache
// sets. A tile over a long K is seconds of work, so it gives up between k
// blocks once ctx is done; forEach then reports the interruption.
func matmulTile(ctx context.Context, C, A, Bt []float32, k, n, i0, i1, j0, j1 int) {
	for i := i0; i < i1; i++ {
		clear(C[i*n+j0 : i*n+j1])
	}
	buf := packPool.Get().(*[]float32)
	defer packPool.Put(buf)
	rows := i1 - i0
	for k0 := 0; k0 < k; k0 += mmDepth {
		if ctx.Err() != nil {
			return
		}
		k1 := min(k0+mmDepth, k)
		kb := k1 - k0
		if cap(*buf) < rows*kb {
			*buf = make([]float32, mmRows*mmDepth)
		}
		pack := (*buf)[:rows*kb]
		for r := range rows {
			copy(pack[r*kb:(r+1)*kb], A[(i0+r)*k+k0:(i0+r)*k+k1])
		}
		j := j0
		for ; j+3 <= j1; j += 3 {
			b0 := Bt[j*k+k0 : j*k+k1]
			b1 := Bt[(j+1)*k+k0 : (j+1)*k+k1]
			b2 := Bt[(j+2)*k+k0 : (j+2)*k+k1]
			r := 0
			for ; r+2 <= rows; r += 2 {
				i := i0 + r
				c0 := (*[3]float32)(C[i*n+j:])
				c1 := (*[3]float32)(C[(i+1)*n+j:])
				dot2x3(pack[r*kb:(r+1)*kb], pack[(r+1)*kb:(r+2)*kb], b0, b1, b2, c0, c1)
			}
			if r < rows {
				a0 := pack[r*kb : (r+1)*kb]
				c := C[(i0+r)*n+j : (i0+r)*n+j+3]
				c[0] = dot(c[0], a0, b0)
				c[1] = dot(c[1], a0, b1)
				c[2] = dot(c[2], a0, b2)
			}
		}
		for ; j < j1; j++ {
			b0 := Bt[j*k+k0 : j*k+k1]
			r := 0
			for ; r+2 <= rows; r += 2 {
				i := i0 + r
				C[i*n+j], C[(i+1)*n+j] = dot2x1(C[i*n+j], C[(i+1)*n+j], pack[r*kb:(r+1)*kb], pack[(r+1)*kb:(r+2)*kb], b0)
			}
			if r < rows {
				i := i0 + r
				C[i*n+j] = dot(C[i*n+j], pack[r*kb:(r+1)*kb], b0)
			}
		}
	}
	for i := i0; i < i1; i++ {
		strictmath.CanonSlice(C[i*n+j0 : i*n+j1])
	}
}

// dot2x3 continues the six sums c0[j] += a0·bj and c1[j] += a1·bj over k in
// increasing order, rounding every product before it is added. All slices
// have the length of a0.
func dot2x3(a0, a1, b0, b1, b2 []float32, c0, c1 *[3]float32) {
	a1, b0, b1, b2 = a1[:len(a0)], b0[:len(a0)], b1[:len(a0)], b2[:len(a0)]
	s00, s01, s02 := c0[0], c0[1], c0[2]
	s10, s11, s12 := c1[0], c1[1], c1[2]
	for k, x := range a0 {
		y := a1[k]
		v := b0[k]
		s00 = s00 + float32(x*v)
		s10 = s10 + float32(y*v)
		v = b1[k]
		s01 = s01 + float32(x*v)
		s11 = s11 + float32(y*v)
		v = b2[k]
		s02 = s02 + float32(x*v)
		s12 = s12 + float32(y*v)
	}
	c0[0], c0[1], c0[2] = s00, s01, s02
	c1[0], c1[1], c1[2] = s10, s11, s12
}

// dot2x1 continues the sums s0 += a0·b and s1 += a1·b.
func dot2x1(s0, s1 float32, a0, a1, b []float32) (float32, float32) {
	a1, b = a1[:len(a0)], b[:len(a0)]
	for k, x := range a0 {
		v := b[k]
		s0 = s0 + float32(x*v)
		s1 = s1 + float32(a1[k]*v)
	}
	return s0, s1
}

// dot continues the sum s += a·b.
func dot(s float32, a, b []float32) float32 {
	b = b[:len(a)]
	for k, x := range a {
		s = s + float32(x*b[k])
	}
	return s
}
