package strictcpu

import (
	"context"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// Slice copies the strided window p of x into out: out's element at
// (i0, …, ik) from x's at (Start[0] + i0·Step[0], …). Work items are
// ranges of output elements; a row of the last axis with step 1 is one
// copy.
func (b *Kernels) Slice(ctx context.Context, out, x *accel.Tensor, p accel.SliceParams) error {
	shape, xs := out.Shape(), x.Shape()
	// stride is the step in x along each output axis, base the first
	// element read.
	stride := make([]int, len(xs))
	base := 0
	for i, step := len(xs)-1, 1; i >= 0; i-- {
		stride[i] = p.Step[i] * step
		base += p.Start[i] * step
		step *= xs[i]
	}
	last := len(shape) - 1
	inner, step := shape[last], stride[last]
	X, Y := f32(x), f32(out)
	count, chunk := chunks(len(Y), elemChunk)
	return b.forEach(ctx, count, func(c int) {
		lo, hi := c*chunk, min((c+1)*chunk, len(Y))
		for i := lo; i < hi; {
			row, col := i/inner, i%inner
			src := base + col*step
			for d, r := last-1, row; d >= 0; d-- {
				src += r % shape[d] * stride[d]
				r /= shape[d]
			}
			end := min(hi, (row+1)*inner)
			if step == 1 {
				copy(Y[i:end], X[src:])
			} else {
				for j := range Y[i:end] {
					Y[i+j] = X[src+j*step]
				}
			}
			i = end
		}
		strictmath.CanonSlice(Y[lo:hi])
	})
}
