package strictcpu

import (
	"context"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// Concat copies a then b along the axis into out: for each index of the
// axes before it, a's block, then b's. Work items are ranges of those
// outer indices, a block at least each.
func (b *Kernels) Concat(ctx context.Context, out, x, y *accel.Tensor, axis int) error {
	xs, ys := x.Shape(), y.Shape()
	inner := 1
	for _, d := range xs[axis+1:] {
		inner *= d
	}
	na, nb := xs[axis]*inner, ys[axis]*inner
	outer := len(f32(x)) / na
	A, B, Y := f32(x), f32(y), f32(out)
	count, step := chunks(outer, max(1, elemChunk/(na+nb)))
	return b.forEach(ctx, count, func(c int) {
		lo, hi := c*step, min((c+1)*step, outer)
		for o := lo; o < hi; o++ {
			copy(Y[o*(na+nb):], A[o*na:(o+1)*na])
			copy(Y[o*(na+nb)+na:], B[o*nb:(o+1)*nb])
		}
		strictmath.CanonSlice(Y[lo*(na+nb) : hi*(na+nb)])
	})
}
