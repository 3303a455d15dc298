//go:build amd64 && !purego

package strictcpu

// The distance tiles of tsne_affinities in affinities_amd64.s: a subtraction,
// a multiply and an add per feature and pair, never a fused multiply-add.

//go:noescape
func knnTileAVX2(acc, a, bt *float32, nt, rows, cols int)

//go:noescape
func knnTileAVX512(acc, a, bt *float32, nt, rows, cols int)

// knnTileSIMD reports whether level k has a distance tile kernel.
func knnTileSIMD(k *kernels) bool { return k == avx2Kernels || k == avx512Kernels }

// knnTileRun adds to acc[r*cols+c], for r < rows and c < cols, the squared
// differences (a[r*nt+t] - bt[t*cols+c])² for t = 0 … nt-1 in order, on level
// k's kernel. rows is a multiple of 4 and cols of knnAlign.
func knnTileRun(k *kernels, acc []float32, cols int, a []float32, nt int, bt []float32, rows int) {
	if rows < 4 || rows%4 != 0 || cols < knnAlign || cols%knnAlign != 0 || nt < 1 ||
		len(acc) < rows*cols || len(a) < rows*nt || len(bt) < nt*cols {
		panic("strictcpu: distance tile out of bounds")
	}
	if k == avx512Kernels {
		knnTileAVX512(&acc[0], &a[0], &bt[0], nt, rows, cols)
	} else {
		knnTileAVX2(&acc[0], &a[0], &bt[0], nt, rows, cols)
	}
}
