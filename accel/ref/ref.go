// Package ref is the pure-Go reference backend. Every operation follows the
// numerics contract (docs/determinism.md) bit for bit: sums run in the order
// the contract writes, every product that is added is rounded on its own
// (an explicit float32 conversion, so Go never fuses an FMA), and every NaN
// written is canonical. Work is split across goroutines only along
// independent outputs, so results do not depend on the thread count.
//
// On amd64 the inner loops of matmul and conv2d also come in AVX2 and AVX-512
// assembly (kernels.go), chosen by the CPU at run time. They vectorise across
// outputs: each vector lane owns one output and takes its products in the
// contract's order, a multiply and then an add, never a fused multiply-add,
// so every level computes the same bits. Building with the purego tag leaves
// the portable Go code alone.
package ref

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/hostmem"
	"github.com/accelnode/accelnode/internal/cpuinfo"
)

func init() {
	accel.Register("ref", func(o accel.Options) accel.Backend { return New(o.Threads) })
	accel.Register("ref-portable", func(o accel.Options) accel.Backend { return NewPortable(o.Threads) })
}

// Backend is the reference backend. It is safe for concurrent use.
type Backend struct {
	threads int
	device  string
	kern    *kernels // the inner loops: SIMD where the CPU has it
	name    string
}

var _ accel.Backend = (*Backend)(nil)

// New returns a reference backend computing with threads goroutines; threads
// <= 0 means runtime.GOMAXPROCS(0). Its inner loops are the fastest this CPU
// runs (AVX-512, AVX2 or portable Go on amd64); every choice gives the same
// bits.
func New(threads int) *Backend { return newWithKernels(threads, kernelLevels[0]) }

// NewPortable returns a reference backend on the portable Go loops alone,
// registered as "ref-portable": the same bits as New, for comparing the
// SIMD kernels against (accelnode conformance --backends ref,ref-portable).
func NewPortable(threads int) *Backend {
	b := newWithKernels(threads, scalarKernels)
	b.name = "ref-portable"
	return b
}

// newWithKernels returns a reference backend whose inner loops are kern, one
// of kernelLevels.
func newWithKernels(threads int, kern *kernels) *Backend {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	return &Backend{threads: threads, device: cpuinfo.Model() + ", " + kern.name + " kernels", kern: kern, name: "ref"}
}

func (b *Backend) Name() string { return b.name }

func (b *Backend) Status() accel.Status {
	speed := 1 // above ref-portable, so auto takes the SIMD kernels
	if b.kern == scalarKernels {
		speed = 0
	}
	return accel.Status{
		Name:          b.name,
		Available:     true,
		Device:        b.device,
		Deterministic: true,
		Speed:         speed,
		Threads:       b.threads,
	}
}

func (b *Backend) Close() error { return nil }

func (b *Backend) Alloc(dt accel.DType, n int) (accel.Buffer, error) { return hostmem.Alloc(dt, n) }

func (b *Backend) Write(dst accel.Buffer, first int, src []byte) error {
	return hostmem.Write(dst, first, src)
}

func (b *Backend) Read(src accel.Buffer, first int, dst []byte) error {
	return hostmem.Read(src, first, dst)
}

// f32 and i32 return the elements of a tensor.
var (
	f32 = hostmem.F32
	i32 = hostmem.I32
)

// interrupted wraps the reason a context ended.
func interrupted(ctx context.Context) error {
	return fmt.Errorf("ref: interrupted: %w", ctx.Err())
}

// forEach calls fn for every item in [0, n) on up to b.threads goroutines,
// handing items out in increasing order through an atomic counter. It stops
// handing items out once ctx is done and then returns the wrapped
// ctx.Err(); items whose work is large poll ctx themselves and return early.
// A panic in fn, a bug in a kernel, is returned as an error rather than
// taking down the node. fn must write only outputs of its own item.
func (b *Backend) forEach(ctx context.Context, n int, fn func(item int)) (err error) {
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
				e := fmt.Errorf("ref: kernel panicked: %v", r)
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
