//go:build !amd64 || purego

package strictcpu

// Other architectures, and builds with the purego tag, compute the distance
// tiles of tsne_affinities in portable Go alone.

func knnTileSIMD(*kernels) bool { return false }

func knnTileRun(*kernels, []float32, int, []float32, int, []float32, int) {
	panic("strictcpu: no distance tile kernel on this architecture")
}
