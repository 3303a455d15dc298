package strictcpu

import (
	"context"
	"sync"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// The SIMD matmul. A is packed into panels of mr rows and B into panels of
// nr columns, each laid out k by k (A's panel as [K][mr], B's as [K][nr]),
// straight from whichever layout the transpose flags give. One work item is
// a tile of C, tileRows x tileCols; within it k runs in blocks of kc, and
// for each block every mr x nr block of C goes through the micro-kernel,
// which keeps it in registers, one vector lane per element of C, and adds
// the block's products in increasing k. Between blocks the partial sums wait
// in C. Every C[i,j] therefore starts at +0 and receives its products in
// increasing k, as the contract writes, whatever the tile, the block, the
// lane or the thread.

// maxMicro bounds mr*nr over all levels, the size of the scratch block that
// edge blocks of C go through.
const maxMicro = 8 * 32

// packPools hold the packed copies of A and B between calls.
var packPools [2]sync.Pool

// packBuf returns a buffer of n elements from pool, and the function that
// hands it back.
func packBuf(pool *sync.Pool, n int) ([]float32, func()) {
	p, _ := pool.Get().(*[]float32)
	if p == nil || cap(*p) < n {
		p = new([]float32)
		*p = make([]float32, n)
	}
	return (*p)[:n], func() { pool.Put(p) }
}

// matmulPacked computes C = A·B with the micro-kernel of kr, for A stored
// [M, K] ([K, M] with TransA) and B stored [K, N] ([N, K] with TransB).
func (b *Kernels) matmulPacked(ctx context.Context, kr *kernels, C, A, B []float32, m, k, n int, p accel.MatMulParams) error {
	return b.packedProducts(ctx, kr, A, m, k, n, p, func(i int) ([]float32, []float32, bool) { return C, B, i == 0 })
}

// packedProducts computes C_i = op(A)·op(B_i) for several B_i with one
// packing of A: next(i) gives B_i and C_i [M, N], or false past the last.
func (b *Kernels) packedProducts(ctx context.Context, kr *kernels, A []float32, m, k, n int, p accel.MatMulParams, next func(i int) (C, B []float32, ok bool)) error {
	mr, nr := kr.mr, kr.nr
	rowPanels, colPanels := (m+mr-1)/mr, (n+nr-1)/nr
	ap, putA := packBuf(&packPools[0], rowPanels*mr*k)
	defer putA()
	bp, putB := packBuf(&packPools[1], colPanels*nr*k)
	defer putB()
	err := b.forEach(ctx, rowPanels, func(t int) { packA(ap[t*mr*k:(t+1)*mr*k], A, t*mr, m, k, mr, p.TransA) })
	if err != nil {
		return err
	}
	for i := 0; ; i++ {
		C, B, ok := next(i)
		if !ok {
			return nil
		}
		err := b.forEach(ctx, colPanels, func(t int) { packB(bp[t*nr*k:(t+1)*nr*k], B, t*nr, k, n, nr, p.TransB) })
		if err == nil {
			err = b.packedTiles(ctx, kr, C, ap, bp, m, k, n)
		}
		if err != nil {
			return err
		}
	}
}

// packedTiles computes C from packed A and B, a tile a work item.
func (b *Kernels) packedTiles(ctx context.Context, kr *kernels, C, ap, bp []float32, m, k, n int) error {
	tr, tc := kr.tileRows, kr.tileCols
	rowTiles, colTiles := (m+tr-1)/tr, (n+tc-1)/tc
	return b.forEach(ctx, rowTiles*colTiles, func(t int) {
		i0, j0 := t/colTiles*tr, t%colTiles*tc
		i1, j1 := min(i0+tr, m), min(j0+tc, n)
		packedTile(ctx, kr, C, ap, bp, k, n, i0, i1, j0, j1)
	})
}

// packA writes rows i0 … i0+mr-1 of A (rows past m as zeros) into dst as
// dst[kk*mr+r] = A[i0+r, kk].
func packA(dst, A []float32, i0, m, k, mr int, trans bool) {
	dst = dst[:k*mr]
	rows := min(mr, m-i0)
	if trans { // stored [K, M]: each k holds the panel's rows side by side
		for kk := range k {
			d := dst[kk*mr : kk*mr+mr]
			copy(d, A[kk*m+i0:kk*m+i0+rows])
			clear(d[rows:])
		}
		return
	}
	for r := range rows {
		for kk, v := range A[(i0+r)*k : (i0+r+1)*k] {
			dst[kk*mr+r] = v
		}
	}
	for r := rows; r < mr; r++ {
		for kk := range k {
			dst[kk*mr+r] = 0
		}
	}
}

// packB writes columns j0 … j0+nr-1 of B (columns past n as zeros) into dst
// as dst[kk*nr+j] = B[kk, j0+j]. Columns of B are rows of Bᵀ, so this is
// packA on B read transposed.
func packB(dst, B []float32, j0, k, n, nr int, trans bool) {
	packA(dst, B, j0, n, k, nr, !trans)
}

// packedTile computes C[i0:i1, j0:j1] from the packed panels ap and bp, and
// canonicalises it. i0 and j0 are multiples of mr and nr. Blocks of C that
// the matrix's edge cuts short go through a scratch block, whose extra lanes
// compute products of the zero padding and are dropped. A tile over a long
// K is much work, so it gives up between k blocks once ctx is done; forEach
// then reports the interruption.
func packedTile(ctx context.Context, kr *kernels, C, ap, bp []float32, k, n, i0, i1, j0, j1 int) {
	mr, nr := kr.mr, kr.nr
	for i := i0; i < i1; i++ {
		clear(C[i*n+j0 : i*n+j1])
	}
	var scratch [maxMicro]float32
	edge := scratch[:mr*nr]
	for k0 := 0; k0 < k; k0 += kr.kc {
		if ctx.Err() != nil {
			return
		}
		kc := min(kr.kc, k-k0)
		for j := j0; j < j1; j += nr {
			bpan := bp[j*k+k0*nr : j*k+(k0+kc)*nr] // panel j/nr starts at (j/nr)*nr*k
			cols := min(nr, j1-j)
			for i := i0; i < i1; i += mr {
				apan := ap[i*k+k0*mr : i*k+(k0+kc)*mr]
				if rows := min(mr, i1-i); rows == mr && cols == nr {
					_ = C[(i+mr-1)*n+j+nr-1] // the kernel's last element
					kr.micro(&apan[0], &bpan[0], &C[i*n+j], kc, n)
				} else {
					clear(edge)
					for r := range rows {
						copy(edge[r*nr:r*nr+cols], C[(i+r)*n+j:(i+r)*n+j+cols])
					}
					kr.micro(&apan[0], &bpan[0], &edge[0], kc, nr)
					for r := range rows {
						copy(C[(i+r)*n+j:(i+r)*n+j+cols], edge[r*nr:r*nr+cols])
					}
				}
			}
		}
	}
	for i := i0; i < i1; i++ {
		strictmath.CanonSlice(C[i*n+j0 : i*n+j1])
	}
}

// axpy adds x·w to c, rounding each product before the addition, with the
// backend's kernels.
func (b *Kernels) axpy(c, x []float32, w float32) {
	if f := b.kern.axpy; f != nil {
		f(c, x, w)
		return
	}
	axpy(c, x, w)
}
