//go:build amd64 && !purego

package strictcpu

import "golang.org/x/sys/cpu"

// The kernels in matmul_amd64.s and conv_amd64.s. They use VMULPS then
// VADDPS for every product, never a fused multiply-add, and leave MXCSR
// alone, so subnormals are kept as the contract asks.

//go:noescape
func mmKernel6x16AVX2(a, b, c *float32, kc, ldc int)

//go:noescape
func mmKernel8x32AVX512(a, b, c *float32, kc, ldc int)

//go:noescape
func tapsAVX2(y *float32, n int, x *float32, dil, rs, cs int, w *float32, kw, kh, nc, mode int, b *float32)

// tapsAVX512 takes a multiple of 64 outputs.
//
//go:noescape
func tapsAVX512(y *float32, n int, x *float32, dil, rs, cs int, w *float32, kw, kh, nc, mode int, b *float32)

var (
	// avx2Kernels: 6 x 16 tiles of C in twelve ymm accumulators.
	avx2Kernels = &kernels{
		name:  "avx2",
		micro: mmKernel6x16AVX2, mr: 6, nr: 16,
		kc: 256, tileRows: 16 * 6, tileCols: 16 * 16,
		taps: tapsAVX2Slices, axpy: axpyAVX2,
	}
	// avx512Kernels: 8 x 32 tiles of C in sixteen zmm accumulators.
	avx512Kernels = &kernels{
		name:  "avx512",
		micro: mmKernel8x32AVX512, mr: 8, nr: 32,
		kc: 128, tileRows: 12 * 8, tileCols: 8 * 32,
		taps: tapsAVX512Slices, axpy: axpyAVX512,
	}
)

// archKernels returns the SIMD levels this CPU and OS support, fastest first.
func archKernels() []*kernels {
	var ks []*kernels
	if cpu.X86.HasAVX512F {
		ks = append(ks, avx512Kernels)
	}
	if cpu.X86.HasAVX2 {
		ks = append(ks, avx2Kernels)
	}
	return ks
}

// archAllKernels returns every SIMD level of this architecture, fastest
// first, whether this CPU runs it or not.
func archAllKernels() []*kernels { return []*kernels{avx512Kernels, avx2Kernels} }

func tapsAVX2Slices(y, x []float32, dil, rs, cs int, w []float32, kw, kh, nc int, mode tapsMode, b float32) {
	checkTaps(y, x, dil, rs, cs, w, kw, kh, nc, mode)
	tapsAVX2(&y[0], len(y), &x[0], dil, rs, cs, &w[0], kw, kh, nc, int(mode), &b)
}

// tapsAVX512Slices takes blocks of 64 outputs in zmm registers and the rest
// in ymm registers.
func tapsAVX512Slices(y, x []float32, dil, rs, cs int, w []float32, kw, kh, nc int, mode tapsMode, b float32) {
	checkTaps(y, x, dil, rs, cs, w, kw, kh, nc, mode)
	if m := len(y) &^ 63; m > 0 {
		tapsAVX512(&y[0], m, &x[0], dil, rs, cs, &w[0], kw, kh, nc, int(mode), &b)
		y, x = y[m:], x[m:]
	}
	if len(y) > 0 {
		tapsAVX2(&y[0], len(y), &x[0], dil, rs, cs, &w[0], kw, kh, nc, int(mode), &b)
	}
}

func axpyAVX2(y, x []float32, w float32) {
	if len(y) > 0 {
		x = x[:len(y)]
		tapsAVX2(&y[0], len(y), &x[0], 0, 0, 0, &w, 1, 1, 1, 0, nil)
	}
}

func axpyAVX512(y, x []float32, w float32) {
	x = x[:len(y)]
	if m := len(y) &^ 63; m > 0 {
		tapsAVX512(&y[0], m, &x[0], 0, 0, 0, &w, 1, 1, 1, 0, nil)
		y, x = y[m:], x[m:]
	}
	if len(y) > 0 {
		tapsAVX2(&y[0], len(y), &x[0], 0, 0, 0, &w, 1, 1, 1, 0, nil)
	}
}
