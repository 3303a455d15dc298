// Package ref is the pure-Go reference backend. Every operation follows the
// numerics contract (docs/determinism.md) bit for bit: sums run in the order
// the contract writes, every product that is added is rounded on its own
// (an explicit float32 conversion, so Go never fuses an FMA), and every NaN
// written is canonical. Work is split across goroutines only along
// independent outputs, so results do not depend on the thread count.
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
}

// Backend is the reference backend. It is safe for concurrent use.
type Backend struct {
	threads int
	device  string
}

var _ accel.Backend = (*Backend)(nil)

// New returns a reference backend computing with threads goroutines; threads
// <= 0 means runtime.GOMAXPROCS(0).
func New(threads int) *Backend {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	return &Backend{threads: threads, device: cpuinfo.Model()}
}

func (b *Backend) Name() string { return "ref" }

func (b *Backend) Status() accel.Status {
	return accel.Status{
		Name:          "ref",
		Available:     true,
		Device:        b.device,
		Deterministic: true,
		Speed:         0,
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
