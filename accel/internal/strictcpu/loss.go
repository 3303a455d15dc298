package strictcpu

import (
	"context"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// SoftmaxCrossEntropy writes the gradient of the mean cross-entropy of
// softmax(logits) [N,K] against labels [N] into dlogits and returns the mean,
// as the contract writes them: each row is softmax's sequence (the maximum
// under the maxpool rule, exp, the sum from the left, the divisions), its
// loss is log(s) - (x[label] - m), and the losses are summed by
// strictmath.BlockSum before the division by N. The Session has checked the
// labels.
//
// The losses of a run of BlockLen rows are added in row order, so each work
// item is a whole run, computed by one goroutine that keeps nothing but its
// running sum; the runs' sums are then added by the tree. With fewer rows
// than BlockLen per thread, too few runs to keep every thread busy, the
// rows are spread over the threads instead and every row's loss is kept
// (BlockLen values a thread at most) to be block-summed afterwards, in the
// same order.
func (b *Kernels) SoftmaxCrossEntropy(ctx context.Context, dlogits, logits, labels *accel.Tensor) (float32, error) {
	shape := logits.Shape()
	N, K := shape[0], shape[1]
	X, L, D := f32(logits), i32(labels), f32(dlogits)
	n := float32(N) // exact below 2^24; the contract's N beyond
	// row computes row i's gradient and returns its loss; ok is false once
	// ctx ended within it.
	row := func(i int) (loss float32, ok bool) {
		xs, ds := X[i*K:(i+1)*K], D[i*K:(i+1)*K]
		m, s, ok := softmaxRowExp(ctx, xs, ds)
		if !ok {
			return 0, false
		}
		label := int(L[i])
		eLabel := ds[label] // p - 1 rather than p there
		for lo := 0; lo < K; lo += elemChunk {
			if lo > 0 && ctx.Err() != nil {
				return 0, false
			}
			seg := ds[lo:min(lo+elemChunk, K)]
			for k, e := range seg {
				seg[k] = strictmath.Canon(e / s / n)
			}
		}
		ds[label] = strictmath.Canon((eLabel/s - 1) / n)
		return strictmath.Log(s) - (xs[label] - m), true
	}

	const run = strictmath.BlockLen
	if N < run*b.threads {
		loss := make([]float32, N) // N < BlockLen·threads
		count, step := chunks(N, elemChunk/K)
		err := b.forEach(ctx, count, func(c int) {
			for i := c * step; i < min((c+1)*step, N); i++ {
				var ok bool
				if loss[i], ok = row(i); !ok {
					return // forEach reports the interruption
				}
			}
		})
		if err != nil {
			return 0, err
		}
		return strictmath.Canon(strictmath.BlockSum(loss) / n), nil
	}
	runs := make([]float32, (N+run-1)/run)
	err := b.forEach(ctx, len(runs), func(r int) {
		var sum float32
		work := 0 // elements since ctx was last polled
		for i := r * run; i < min((r+1)*run, N); i++ {
			if work += K; work > elemChunk {
				if ctx.Err() != nil {
					return
				}
				work = 0
			}
			loss, ok := row(i)
			if !ok {
				return
			}
			sum = sum + loss
		}
		runs[r] = sum
	})
	if err != nil {
		return 0, err
	}
	return strictmath.Canon(strictmath.TreeSum(runs) / n), nil
}

// softmaxRowExp is the first half of softmax on one row, in the contract's
// order: m is the row's maximum under the maxpool rule, es[i] = exp(xs[i] -
// m), and s is their sum from +0, left to right. A long row is worked
// through in segments of elemChunk elements; ok is false once ctx ended.
func softmaxRowExp(ctx context.Context, xs, es []float32) (m, s float32, ok bool) {
	L := len(xs)
	es = es[:L]
	m = xs[0]
	for lo := 1; lo < L; lo += elemChunk {
		if lo > 1 && ctx.Err() != nil {
			return 0, 0, false
		}
		for _, v := range xs[lo:min(lo+elemChunk, L)] {
			m = maxRule(m, v)
		}
	}
	for lo := 0; lo < L; lo += elemChunk {
		if lo > 0 && ctx.Err() != nil {
			return 0, 0, false
		}
		hi := min(lo+elemChunk, L)
		for i, v := range xs[lo:hi] {
			e := strictmath.Exp(v - m)
			es[lo+i] = e
			s = s + e
		}
	}
	return m, s, true
}
