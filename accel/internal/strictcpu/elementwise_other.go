//go:build !amd64 || purego

package strictcpu

// Other architectures, and builds with the purego tag, compute relu and clip
// in the portable loops alone.

// elemSIMD reports whether the CPU runs SIMD loops of relu and clip.
const elemSIMD = false

func reluSIMD(y, x []float32) int { return 0 }

func clipSIMD(y, x []float32, lo, hi float32) int { return 0 }
