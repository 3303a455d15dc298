//go:build amd64 && !purego

package strictcpu

import "golang.org/x/sys/cpu"

// relu and clip eight elements at a time in elementwise_amd64.s, which the
// SIMD kernel levels use where the CPU has AVX2.

// elemSIMD reports whether the CPU runs the AVX2 loops of relu and clip.
var elemSIMD = cpu.X86.HasAVX2

// reluAVX2 computes relu over n elements, a multiple of 8.
//
//go:noescape
func reluAVX2(y, x *float32, n int)

// clipAVX2 computes clip between lo and hi over n elements, a multiple of 8.
//
//go:noescape
func clipAVX2(y, x *float32, n int, lo, hi float32)

// reluSIMD computes relu over the longest prefix of x whose length is a
// multiple of 8 and returns that length: 0 where the CPU lacks AVX2.
func reluSIMD(y, x []float32) int {
	n := len(x) &^ 7
	if n == 0 || !elemSIMD {
		return 0
	}
	y = y[:n]
	reluAVX2(&y[0], &x[0], n)
	return n
}

// clipSIMD computes clip between lo and hi over the longest prefix of x
// whose length is a multiple of 8 and returns that length: 0 where the CPU
// lacks AVX2.
func clipSIMD(y, x []float32, lo, hi float32) int {
	n := len(x) &^ 7
	if n == 0 || !elemSIMD {
		return 0
	}
	y = y[:n]
	clipAVX2(&y[0], &x[0], n, lo, hi)
	return n
}
