//go:build !amd64 || purego

package strictcpu

// Other architectures, and builds with the purego tag, have the portable Go
// kernels only.

func archKernels() []*kernels { return nil }

func archAllKernels() []*kernels { return nil }
