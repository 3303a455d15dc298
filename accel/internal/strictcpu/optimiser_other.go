//go:build !amd64 || purego

package strictcpu

// The SIMD loops do nothing where there are no SIMD kernel levels.

func sgdSIMD(w, g, vel []float32, lr, mu float32) int { return 0 }

func adamSIMD(w, g, m, v []float32, k *adamConsts) int { return 0 }
