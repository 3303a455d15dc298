package strictcpu

import (
	"context"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// Gather copies x's blocks along axis at indices into out: for each index
// of the axes before axis and each index in indices, in order, the block of
// x's later axes there, a negative index counting from the end. The
// Session has checked every index against x's size along axis. Work items
// are ranges of those blocks, a block at least each.
func (b *Kernels) Gather(ctx context.Context, out, x, indices *accel.Tensor, axis int) error {
	xs := x.Shape()
	inner := 1
	for _, d := range xs[axis+1:] {
		inner *= d
	}
	d := xs[axis]
	X, I, Y := f32(x), i32(indices), f32(out)
	blocks := len(Y) / inner // (outer index, position in indices) pairs
	count, step := chunks(blocks, max(1, elemChunk/inner))
	return b.forEach(ctx, count, func(c int) {
		lo, hi := c*step, min((c+1)*step, blocks)
		for k := lo; k < hi; k++ {
			o, j := k/len(I), int(I[k%len(I)])
			if j < 0 {
				j += d
			}
			src := (o*d + j) * inner
			copy(Y[k*inner:(k+1)*inner], X[src:src+inner])
		}
		strictmath.CanonSlice(Y[lo*inner : hi*inner])
	})
}
