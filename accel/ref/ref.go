// Package ref is the pure-Go reference backend. Every operation follows the
// numerics contract (docs/determinism.md) bit for bit: sums run in the order
// the contract writes, every product that is added is rounded on its own
// (an explicit float32 conversion, so Go never fuses an FMA), and every NaN
// written is canonical. Work is split across goroutines only along
// independent outputs, so results do not depend on the thread count.
package ref

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/accelnode/accelnode/accel"
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
	return &Backend{threads: threads, device: cpuModel()}
}

// cpuModel returns the CPU model name from /proc/cpuinfo, or GOARCH.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(key) == "model name" {
			if v := strings.TrimSpace(val); v != "" {
				return v
			}
		}
	}
	return runtime.GOARCH
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

// buffer holds a tensor's elements: f for f32, i for i32.
type buffer struct {
	f []float32
	i []int32
}

func (buf *buffer) Free() { buf.f, buf.i = nil, nil }

// words views the elements as raw 32-bit words.
func (buf *buffer) words() []uint32 {
	if buf.f != nil {
		return unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(buf.f))), len(buf.f))
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(buf.i))), len(buf.i))
}

func (b *Backend) Alloc(dt accel.DType, n int) (accel.Buffer, error) {
	if n < 0 {
		return nil, fmt.Errorf("%w: %d elements", accel.ErrInvalid, n)
	}
	switch dt {
	case accel.F32:
		return &buffer{f: make([]float32, n)}, nil
	case accel.I32:
		return &buffer{i: make([]int32, n)}, nil
	}
	return nil, fmt.Errorf("%w: dtype %v", accel.ErrInvalid, dt)
}

// littleEndian is true when the host stores words in little-endian order, so
// element bytes can be copied as they are.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// span returns the words of buf from element first on, with room for n bytes.
func span(buf accel.Buffer, first, n int) ([]uint32, error) {
	bb, ok := buf.(*buffer)
	if !ok {
		return nil, fmt.Errorf("%w: buffer of type %T is not a ref buffer", accel.ErrInvalid, buf)
	}
	w := bb.words()
	if n%4 != 0 || first < 0 || first > len(w) || n/4 > len(w)-first {
		return nil, fmt.Errorf("%w: %d bytes at element %d outside %d elements", accel.ErrInvalid, n, first, len(w))
	}
	return w[first : first+n/4], nil
}

func (b *Backend) Write(dst accel.Buffer, first int, src []byte) error {
	w, err := span(dst, first, len(src))
	if err != nil {
		return err
	}
	if littleEndian {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(w))), 4*len(w)), src)
		return nil
	}
	for i := range w {
		w[i] = binary.LittleEndian.Uint32(src[4*i:])
	}
	return nil
}

func (b *Backend) Read(src accel.Buffer, first int, dst []byte) error {
	w, err := span(src, first, len(dst))
	if err != nil {
		return err
	}
	if littleEndian {
		copy(dst, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(w))), 4*len(w)))
		return nil
	}
	for i, v := range w {
		binary.LittleEndian.PutUint32(dst[4*i:], v)
	}
	return nil
}

// f32 returns the elements of an f32 tensor.
func f32(t *accel.Tensor) []float32 { return t.Buffer().(*buffer).f }

// i32 returns the elements of an i32 tensor.
func i32(t *accel.Tensor) []int32 { return t.Buffer().(*buffer).i }

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
