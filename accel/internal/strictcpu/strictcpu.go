// Package strictcpu holds the numerics contract's kernels for tensors in host
// memory (accel/internal/hostmem): the reference backend's operations, which
// other CPU backends share for the calls they cannot serve as exactly.
//
// Every operation follows docs/determinism.md bit for bit: sums run in the
// order the contract writes, every product that is added is rounded on its
// own (an explicit float32 conversion, so Go never fuses an FMA), and every
// NaN written is canonical. Work is split across goroutines only along
// independent outputs, so results do not depend on the thread count.
//
// On amd64 the inner loops of matmul and conv2d also come in AVX2 and AVX-512
// assembly (kernels.go), chosen by the CPU at run time. They vectorise across
// outputs: each vector lane owns one output and takes its products in the
// contract's order, a multiply and then an add, never a fused multiply-add,
// so every level computes the same bits. Building with the purego tag leaves
// the portable Go code alone.
package strictcpu

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/internal/hostmem"
)

// Kernels computes the contract's operations on a number of threads with
// one level of inner loops. It is safe for concurrent use.
type Kernels struct {
	threads int
	kern    *kernels // the inner loops: SIMD where the CPU has it
}

// New returns kernels computing with threads goroutines (threads <= 0 means
// runtime.GOMAXPROCS(0)) on the fastest inner loops this CPU runs (AVX-512,
// AVX2 or portable Go on amd64). Every choice gives the same bits.
func New(threads int) *Kernels { return newWithKernels(threads, kernelLevels[0]) }

// NewPortable returns kernels on the portable Go loops alone: the same bits
// as New, for comparing the SIMD loops against.
func NewPortable(threads int) *Kernels { return newWithKernels(threads, scalarKernels) }

func newWithKernels(threads int, kern *kernels) *Kernels {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	return &Kernels{threads: threads, kern: kern}
}

// Threads is the number of goroutines an operation computes with.
func (b *Kernels) Threads() int { return b.threads }

// Level names the inner loops: "avx512", "avx2" or "scalar".
func (b *Kernels) Level() string { return b.kern.name }

// Portable reports whether the inner loops are the portable Go ones.
func (b *Kernels) Portable() bool { return b.kern == scalarKernels }

// Table maps every operation to its kernel.
func (b *Kernels) Table() accel.Kernels {
	t := b.inferenceTable()
	for _, part := range []accel.Kernels{b.convBackwardTable(), b.elementBackwardTable(), b.optimiserTable(), b.tsneTable()} {
		maps.Copy(t, part)
	}
	return t
}

// inferenceTable maps the operations of a forward pass to their kernels.
func (b *Kernels) inferenceTable() accel.Kernels {
	return accel.Kernels{
		accel.MatMul: func(ctx context.Context, c *accel.Call) error {
			return b.MatMul(ctx, c.Out[0], c.In[0], c.In[1], c.Params.(accel.MatMulParams))
		},
		accel.Conv2D: func(ctx context.Context, c *accel.Call) error {
			return b.Conv2D(ctx, c.Out[0], c.In[0], c.In[1], c.In[2], c.Params.(accel.Conv2DParams))
		},
		accel.AddBias: func(ctx context.Context, c *accel.Call) error {
			return b.AddBias(ctx, c.Out[0], c.In[0], c.In[1], c.Params.(accel.AddBiasParams).Axis)
		},
		accel.Relu:    func(ctx context.Context, c *accel.Call) error { return b.Relu(ctx, c.Out[0], c.In[0]) },
		accel.Softmax: func(ctx context.Context, c *accel.Call) error { return b.Softmax(ctx, c.Out[0], c.In[0]) },
		accel.Add:     func(ctx context.Context, c *accel.Call) error { return b.Add(ctx, c.Out[0], c.In[0], c.In[1]) },
		accel.Clip: func(ctx context.Context, c *accel.Call) error {
			return b.Clip(ctx, c.Out[0], c.In[0], c.Params.(accel.ClipParams))
		},
		accel.GlobalAvgPool: func(ctx context.Context, c *accel.Call) error {
			return b.GlobalAvgPool(ctx, c.Out[0], c.In[0])
		},
		accel.Unary: func(ctx context.Context, c *accel.Call) error {
			return b.Unary(ctx, c.Out[0], c.In[0], c.Params.(accel.UnaryParams))
		},
		accel.Binary: func(ctx context.Context, c *accel.Call) error {
			return b.Binary(ctx, c.Out[0], c.In[0], c.In[1], c.Params.(accel.BinaryParams).Func)
		},
		accel.Transpose: func(ctx context.Context, c *accel.Call) error {
			return b.Transpose(ctx, c.Out[0], c.In[0], c.Params.(accel.TransposeParams))
		},
		accel.Concat: func(ctx context.Context, c *accel.Call) error {
			return b.Concat(ctx, c.Out[0], c.In[0], c.In[1], c.Params.(accel.ConcatParams).Axis)
		},
		accel.Slice: func(ctx context.Context, c *accel.Call) error {
			return b.Slice(ctx, c.Out[0], c.In[0], c.Params.(accel.SliceParams))
		},
		accel.Gather: func(ctx context.Context, c *accel.Call) error {
			return b.Gather(ctx, c.Out[0], c.In[0], c.In[1], c.Params.(accel.GatherParams).Axis)
		},
		accel.BatchMatMul: func(ctx context.Context, c *accel.Call) error {
			return b.BatchMatMul(ctx, c.Out[0], c.In[0], c.In[1])
		},
		accel.LayerNorm: func(ctx context.Context, c *accel.Call) error {
			return b.LayerNorm(ctx, c.Out[0], c.In[0], c.In[1], c.In[2], c.Params.(accel.LayerNormParams))
		},
		accel.MaxPool2D: func(ctx context.Context, c *accel.Call) error {
			return b.MaxPool2D(ctx, c.Out[0], c.In[0], c.Params.(accel.Pool2DParams))
		},
		accel.TSNEStep: func(ctx context.Context, c *accel.Call) error {
			kl, err := b.TSNEStep(ctx, accel.TSNEStateOf(c), c.Params.(accel.TSNEParams))
			c.Scalar = kl
			return err
		},
	}
}

// f32 and i32 return the elements of a tensor.
var (
	f32 = hostmem.F32
	i32 = hostmem.I32
)

// interrupted wraps the reason a context ended.
func interrupted(ctx context.Context) error {
	return fmt.Errorf("interrupted: %w", ctx.Err())
}

// forEach calls fn for every item in [0, n) on up to b.threads goroutines,
// handing items out in increasing order through an atomic counter. It stops
// handing items out once ctx is done and then returns the wrapped
// ctx.Err(); items whose work is large poll ctx themselves and return early.
// A panic in fn, a bug in a kernel, is returned as an error rather than
// taking down the node. fn must write only outputs of its own item.
func (b *Kernels) forEach(ctx context.Context, n int, fn func(item int)) (err error) {
	var (
		next    atomic.Int64
		stopped atomic.Bool
		failure atomic.Pointer[error]
		wg      sync.WaitGroup
	)
	done := ctx.Done()
	work := func() {
		defer func() {
			if r := recover(); r != nil {
				e := fmt.Errorf("kernel panicked: %v", r)
				failure.CompareAndSwap(nil, &e)
				stopped.Store(true)
			}
		}()
		for !stopped.Load() {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			select {
			case <-done:
				stopped.Store(true)
				return
			default:
			}
			fn(i)
		}
	}
	if workers := min(b.threads, n); workers <= 1 {
		work()
	} else {
		for range workers {
			wg.Go(work)
		}
		wg.Wait()
	}
	if e := failure.Load(); e != nil {
		return *e
	}
	if ctx.Err() != nil {
		return interrupted(ctx)
	}
	return nil
}

// chunks splits [0, n) into pieces of about size elements (at least one) and
// returns their count; piece k is [k*size, min((k+1)*size, n)).
func chunks(n, size int) (count, step int) {
	step = max(size, 1)
	return (n + step - 1) / step, step
}
