package cuda

import (
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/accelnode/accelnode/accel"
)

// device owns one GPU. A CUDA context is current per OS thread and Go moves
// goroutines between threads, so every CUDA call runs on one goroutine
// locked to its thread; other goroutines hand it work through do.
type device struct {
	libs *libraries
	// cacheDir keeps compiled kernels across processes, in its subfolder
	// cuda; empty keeps them in the process only.
	cacheDir string
	ordinal  int32
	dev      int32
	ctx      uintptr
	stream   uintptr

	name         string
	sms          int
	major, minor int
	totalMem     uint64
	maxShared    int
	// For reports only; zero where the driver no longer reports them.
	clockKHz, memClockKHz, memBusBits int

	jobs chan func()
	quit chan struct{}
	// fault is the first error that left the context unusable (a kernel
	// fault); once set, the device refuses all work.
	fault atomic.Pointer[error]

	// Owner-goroutine state.
	pool      memoryPool
	modules   map[variant]*module
	blas      uintptr
	dnn       uintptr
	plans     map[convKey]*convPlan
	workspace devMem
	tf32      bool
}

// libraries are the loaded CUDA libraries. dnn is nil, with dnnErr saying
// why, where cuDNN is missing: only fast conv2d needs it.
type libraries struct {
	drv    *driverAPI
	nvrtc  *nvrtcAPI
	blas   *cublasAPI
	dnn    *cudnnAPI
	dnnErr error
}

// devMem is one device allocation from the pool.
type devMem struct {
	ptr   uint64
	class int64 // the allocation's size, a pool size class
}

// errClosed is returned for work sent to a closed device.
var errClosed = errors.New("backend closed")

// startDevice creates the context and stream of device ordinal on a new
// owner goroutine and returns once they exist.
func startDevice(libs *libraries, ordinal int, poolCap int64, tf32 bool) (*device, error) {
	d := &device{
		libs:    libs,
		ordinal: int32(ordinal),
		jobs:    make(chan func()),
		quit:    make(chan struct{}),
		modules: map[variant]*module{},
		plans:   map[convKey]*convPlan{},
		tf32:    tf32,
	}
	d.pool = memoryPool{free: map[int64][]uint64{}, limit: poolCap}
	ready := make(chan error, 1)
	go d.own(ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	return d, nil
}

// own is the owner goroutine: it sets the device up, then runs jobs until
// close.
func (d *device) own(ready chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := d.setUp(); err != nil {
		ready <- err
		return
	}
	ready <- nil
	for {
		select {
		case job := <-d.jobs:
			job()
		case <-d.quit:
			return
		}
	}
}

func (d *device) setUp() error {
	drv := d.libs.drv
	if err := drv.check("cuDeviceGet", drv.cuDeviceGet(&d.dev, d.ordinal)); err != nil {
		return err
	}
	name := make([]byte, 256)
	if err := drv.check("cuDeviceGetName", drv.cuDeviceGetName(&name[0], int32(len(name)), d.dev)); err != nil {
		return err
	}
	d.name = goString(&name[0])
	for _, a := range []struct {
		attr int32
		dst  *int
	}{
		{attrMultiprocessorCount, &d.sms},
		{attrComputeMajor, &d.major},
		{attrComputeMinor, &d.minor},
		{attrMaxSharedOptin, &d.maxShared},
	} {
		var v int32
		if err := drv.check("cuDeviceGetAttribute", drv.cuDeviceGetAttribute(&v, a.attr, d.dev)); err != nil {
			return err
		}
		*a.dst = int(v)
	}
	for _, a := range []struct {
		attr int32
		dst  *int
	}{
		{attrClockRate, &d.clockKHz},
		{attrMemoryClockRate, &d.memClockKHz},
		{attrMemoryBusWidth, &d.memBusBits},
	} {
		var v int32
		if drv.cuDeviceGetAttribute(&v, a.attr, d.dev) == cudaSuccess {
			*a.dst = int(v)
		}
	}
	if err := drv.check("cuDeviceTotalMem", drv.cuDeviceTotalMem(&d.totalMem, d.dev)); err != nil {
		return err
	}
	if err := drv.check("cuDevicePrimaryCtxRetain", drv.cuDevicePrimaryCtxRetain(&d.ctx, d.dev)); err != nil {
		return err
	}
	if err := drv.check("cuCtxSetCurrent", drv.cuCtxSetCurrent(d.ctx)); err != nil {
		drv.cuDevicePrimaryCtxRelease(d.dev)
		return err
	}
	if err := drv.check("cuStreamCreate", drv.cuStreamCreate(&d.stream, 1 /* non-blocking */)); err != nil {
		drv.cuDevicePrimaryCtxRelease(d.dev)
		return err
	}
	return nil
}

// do runs fn on the owner goroutine and returns its error. A device that
// has faulted refuses work.
func (d *device) do(fn func() error) error {
	if err := d.faulted(); err != nil {
		return err
	}
	done := make(chan error, 1)
	job := func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("internal error: %v", r)
			}
		}()
		done <- fn()
	}
	select {
	case d.jobs <- job:
	case <-d.quit:
		return errClosed
	}
	return <-done
}

// faulted returns the device-unhealthy error, or nil.
func (d *device) faulted() error {
	if f := d.fault.Load(); f != nil {
		return fmt.Errorf("%w: the GPU is unhealthy since an earlier failure: %v", accel.ErrDevice, *f)
	}
	return nil
}

// failed classifies err from the operation op: a sticky CUDA error marks
// the device unhealthy, and the record of it names op, since later calls
// report it. Every device failure wraps accel.ErrDevice. The error returned
// names neither the backend nor op: the Session and the caller add them.
func (d *device) failed(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, accel.ErrOutOfMemory) || errors.Is(err, accel.ErrDevice) || errors.Is(err, accel.ErrUnsupported) {
		return err
	}
	var ce *cudaError
	if errors.As(err, &ce) && ce.sticky() {
		e := fmt.Errorf("%s: %w", op, err)
		d.fault.CompareAndSwap(nil, &e)
	}
	return fmt.Errorf("%w: %w", accel.ErrDevice, err)
}

// sync waits for the stream, so that an asynchronous fault is reported on
// the operation that caused it.
func (d *device) sync() error {
	return d.libs.drv.check("cuStreamSynchronize", d.libs.drv.cuStreamSynchronize(d.stream))
}

// close frees everything on the owner goroutine and stops it.
func (d *device) close() error {
	err := d.do(func() error {
		drv := d.libs.drv
		for _, p := range d.plans {
			d.libs.dnn.destroy(p)
		}
		if d.dnn != 0 {
			d.libs.dnn.cudnnDestroy(d.dnn)
		}
		if d.blas != 0 {
			d.libs.blas.cublasDestroy(d.blas)
		}
		for _, m := range d.modules {
			drv.cuModuleUnload(m.handle)
		}
		if d.workspace.ptr != 0 {
			drv.cuMemFree(d.workspace.ptr)
		}
		d.pool.trim(drv)
		drv.cuStreamDestroy(d.stream)
		drv.cuDevicePrimaryCtxRelease(d.dev)
		close(d.quit)
		return nil
	})
	if errors.Is(err, errClosed) {
		return nil
	}
	return err
}

// memoryPool keeps freed allocations for reuse, by size class, up to limit
// bytes; the rest go back to the driver. Owner goroutine only.
type memoryPool struct {
	free   map[int64][]uint64
	cached int64
	limit  int64
	live   int64
	// inUse mirrors live for Status, which any goroutine may call.
	inUse atomic.Int64
}

// sizeClass rounds bytes up to one of four sizes per power of two (at most
// 25% waste), at least 256 bytes.
func sizeClass(bytes int64) int64 {
	if bytes <= 256 {
		return 256
	}
	// bytes lies in (2^(p-1), 2^p]; that range holds four classes.
	p := bits.Len64(uint64(bytes - 1))
	step := int64(1) << (p - 3)
	return (bytes + step - 1) / step * step
}

// alloc returns device memory for bytes. When the device is full it first
// gives the pool's cached memory back and tries again.
func (p *memoryPool) alloc(drv *driverAPI, bytes int64) (devMem, error) {
	class := sizeClass(bytes)
	if list := p.free[class]; len(list) > 0 {
		ptr := list[len(list)-1]
		p.free[class] = list[:len(list)-1]
		p.cached -= class
		p.live += class
		p.inUse.Store(p.live)
		return devMem{ptr: ptr, class: class}, nil
	}
	var ptr uint64
	code := drv.cuMemAlloc(&ptr, uint64(class))
	if code == cudaErrorOutOfMemory && p.cached > 0 {
		p.trim(drv)
		code = drv.cuMemAlloc(&ptr, uint64(class))
	}
	if code == cudaErrorOutOfMemory {
		return devMem{}, fmt.Errorf("%w: the GPU has no room for %d more bytes (%d bytes in use by tensors)", accel.ErrOutOfMemory, class, p.live)
	}
	if err := drv.check("cuMemAlloc", code); err != nil {
		return devMem{}, err
	}
	p.live += class
	p.inUse.Store(p.live)
	return devMem{ptr: ptr, class: class}, nil
}

// release returns m to the pool, or to the driver when the pool is full.
func (p *memoryPool) release(drv *driverAPI, m devMem) {
	p.live -= m.class
	p.inUse.Store(p.live)
	if p.cached+m.class <= p.limit {
		p.free[m.class] = append(p.free[m.class], m.ptr)
		p.cached += m.class
		return
	}
	drv.cuMemFree(m.ptr)
}

// trim gives every cached allocation back to the driver.
func (p *memoryPool) trim(drv *driverAPI) {
	for class, list := range p.free {
		for _, ptr := range list {
			drv.cuMemFree(ptr)
		}
		delete(p.free, class)
	}
	p.cached = 0
}

// kernelArgs marshals kernel parameters the way cuLaunchKernel takes them:
// an array of pointers, one to each argument's value.
type kernelArgs struct {
	values [32]uint64
	ptrs   [32]unsafe.Pointer
	n      int
}

func (a *kernelArgs) add(v uint64) {
	a.values[a.n] = v
	a.ptrs[a.n] = unsafe.Pointer(&a.values[a.n])
	a.n++
}

// args builds kernelArgs from devMem pointers (uint64), int32, int64 and
// float32 values. int32 and float32 occupy the low four bytes of their slot,
// which is where a little-endian kernel reads them.
func args(vals ...any) *kernelArgs {
	a := &kernelArgs{}
	for _, v := range vals {
		switch x := v.(type) {
		case uint64:
			a.add(x)
		case int32:
			a.add(uint64(uint32(x)))
		case int64:
			a.add(uint64(x))
		case float32:
			a.add(uint64(*(*uint32)(unsafe.Pointer(&x))))
		default:
			panic(fmt.Sprintf("kernel argument of type %T", v))
		}
	}
	return a
}

// launch starts fn over grid blocks of block threads on the stream.
func (d *device) launch(name string, fn uintptr, grid, block, shared uint32, a *kernelArgs) error {
	var params unsafe.Pointer
	if a.n > 0 {
		params = unsafe.Pointer(&a.ptrs[0])
	}
	code := d.libs.drv.cuLaunchKernel(fn, grid, 1, 1, block, 1, 1, shared, d.stream, params, nil)
	runtime.KeepAlive(a)
	return d.libs.drv.check("cuLaunchKernel("+name+")", code)
}

// gridFor returns enough blocks of block threads to cover work items, at
// most maxBlocks; kernels loop over the rest.
func gridFor(work int64, block int) uint32 {
	const maxBlocks = 1 << 20
	g := (work + int64(block) - 1) / int64(block)
	return uint32(max(1, min(g, maxBlocks)))
}
