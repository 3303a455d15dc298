//go:build amd64 && !purego

package strictcpu

// The SIMD kernel levels run the optimiser steps in AVX2, which both have.

// adamAVX2 runs Adam's step over n elements, a multiple of 8, in
// optimiser_amd64.s.
//
//go:noescape
func adamAVX2(w, grad, m, v *float32, n int, k *adamConsts)

// sgdAVX2 runs a step of SGD with momentum over n elements, a multiple of
// 8, in optimiser_amd64.s.
//
//go:noescape
func sgdAVX2(w, grad, vel *float32, n int, lr, mu float32)

// sgdSIMD runs a step of SGD with momentum over the longest prefix of w
// whose length is a multiple of 8 and returns that length.
func sgdSIMD(w, g, vel []float32, lr, mu float32) int {
	n := len(w) &^ 7
	if n == 0 {
		return 0
	}
	g, vel = g[:n], vel[:n]
	sgdAVX2(&w[0], &g[0], &vel[0], n, lr, mu)
	return n
}

// adamSIMD runs Adam's step over the longest prefix of w whose length is a
// multiple of 8 and returns that length.
func adamSIMD(w, g, m, v []float32, k *adamConsts) int {
	n := len(w) &^ 7
	if n == 0 {
		return 0
	}
	g, m, v = g[:n], m[:n], v[:n]
	adamAVX2(&w[0], &g[0], &m[0], &v[0], n, k)
	return n
}
