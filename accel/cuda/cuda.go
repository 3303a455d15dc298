// Package cuda is the NVIDIA GPU backend. It loads the CUDA driver, cuBLAS,
// cuDNN and NVRTC at run time with dlopen (through purego, without cgo), so
// the node binary is the same on every machine; where a library or a GPU is
// missing the backend reports itself unavailable with the reason.
//
// Tensors live in device memory and move only on Write and Read. One
// backend serves every determinism mode; each operation has two kernels,
// and Kernel picks one per call from the mode:
//
//   - strict: the package's own kernels (kernels/*.cu), compiled once per
//     process by NVRTC without FMA contraction or flush to zero, which
//     implement docs/determinism.md bit for bit, as accel/ref does;
//   - fast and checked: cublasSgemm for matmul (FP32; TF32 only when
//     accel.Options.TF32 asks), cuDNN for conv2d with its algorithm chosen
//     once per shape from cuDNN's heuristics, and the same kernels compiled
//     with FMA contraction for the rest.
//
// The backend is configured by accel.Options alone (the GPU ordinal, the
// detection time limit, TF32 and the library directories) and reads no
// environment variable; Options.CacheDir names where compiled kernels are
// kept between processes.
//
// One goroutine, locked to its OS thread, owns the GPU and makes every CUDA
// call; operations from many guests queue for it. Each operation waits for
// its work to finish, so an asynchronous kernel fault is reported on the
// operation that caused it. A fault that leaves the CUDA context unusable
// marks the backend unhealthy: later calls fail with accel.ErrDevice and
// Status reports it unavailable, while the node keeps serving other
// backends.
package cuda

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/accelnode/accelnode/accel"
)

func init() {
	accel.Register("cuda", func(o accel.Options) accel.Backend { return New(o) })
}

// modes are the determinism modes the backend serves: strict from the
// contract's kernels, fast and checked from cuBLAS, cuDNN and the
// contracted kernels.
var modes = []accel.Mode{accel.Strict, accel.Fast, accel.Checked}

// defaultDetectTimeout is how long GPU detection may take where
// accel.Options.DetectTimeout is 0.
const defaultDetectTimeout = 30 * time.Second

// Backend is the CUDA backend. It is safe for concurrent use.
type Backend struct {
	tf32    bool
	dev     *device // nil when unavailable
	reason  string  // why dev is nil
	libInfo string  // library versions, for Status
	closed  atomic.Bool
	// tables holds the kernels by variant; Kernel picks one by mode.
	tables [numVariants]accel.Kernels
}

var _ accel.Backend = (*Backend)(nil)

// New opens GPU o.Device with the CUDA libraries found in
// o.Libraries["cuda"] and then in the standard places (searchDirs). It
// reads nothing but o: no environment. It never fails: a backend that
// cannot serve says why in Status.
func New(o accel.Options) *Backend {
	b := newBackend(o.TF32)
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Device < 0 {
		b.reason = fmt.Sprintf("invalid GPU ordinal %d", o.Device)
		return b
	}
	limit := o.DetectTimeout
	if limit <= 0 {
		limit = defaultDetectTimeout
	}

	// A wedged driver can block cuInit forever; detection runs aside and
	// is abandoned after the limit.
	type result struct {
		dev  *device
		info string
		err  error
	}
	done := make(chan result, 1)
	detect, places, ordinal, tf32 := detectFunc, o.Libraries["cuda"], o.Device, b.tf32
	go func() { // the search too: a hung file system must not hang New
		d, info, err := detect(searchDirs(places), ordinal, tf32)
		done <- result{d, info, err}
	}()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			b.reason = r.err.Error()
			log.Debug("cuda backend unavailable", "reason", b.reason)
			return b
		}
		b.dev, b.libInfo = r.dev, r.info
		b.dev.cacheDir = o.CacheDir
		log.Debug("cuda backend ready", "device", r.dev.name, "libraries", r.info)
	case <-timer.C:
		b.reason = fmt.Sprintf("GPU detection did not finish within %v (a hung driver?); a longer detection timeout may help", limit)
		log.Warn("cuda backend unavailable", "reason", b.reason)
		go func() { // release the device if detection ever finishes
			if r := <-done; r.dev != nil {
				r.dev.close()
			}
		}()
	}
	return b
}

// newBackend returns a backend without a device, its kernel tables built.
func newBackend(tf32 bool) *Backend {
	b := &Backend{tf32: tf32}
	for v := range b.tables {
		b.tables[v] = b.kernels(variant(v))
	}
	return b
}

// detectFunc is detect, replaced in tests by drivers that hang or record
// what they were asked for.
var detectFunc = detect

// detect loads the libraries from dirs and opens device ordinal.
func detect(dirs []string, ordinal int, tf32 bool) (*device, string, error) {
	drv, err := loadDriver(dirs)
	if err != nil {
		return nil, "", err
	}
	if err := drv.check("cuInit", drv.cuInit(0)); err != nil {
		return nil, "", fmt.Errorf("no usable NVIDIA GPU: %w", err)
	}
	var count int32
	if err := drv.check("cuDeviceGetCount", drv.cuDeviceGetCount(&count)); err != nil {
		return nil, "", err
	}
	if ordinal >= int(count) {
		return nil, "", fmt.Errorf("GPU %d requested, but the driver sees %d", ordinal, count)
	}
	nvrtc, err := loadNVRTC(dirs)
	if err != nil {
		return nil, "", err
	}
	blas, err := loadCUBLAS(dirs)
	if err != nil {
		return nil, "", err
	}
	libs := &libraries{drv: drv, nvrtc: nvrtc, blas: blas}
	libs.dnn, libs.dnnErr = loadCUDNN(dirs)

	var driverVersion int32
	drv.cuDriverGetVersion(&driverVersion)
	info := fmt.Sprintf("CUDA driver API %d.%d, NVRTC %s", driverVersion/1000, driverVersion%1000/10, nvrtc.version())
	if libs.dnn != nil {
		info += ", cuDNN " + libs.dnn.version()
	}

	// Keep at most an eighth of the GPU's memory cached for reuse.
	var total uint64
	drv.cuDeviceTotalMem(&total, int32(ordinal))
	d, err := startDevice(libs, ordinal, int64(total/8), tf32)
	if err != nil {
		return nil, "", err
	}
	return d, info, nil
}

func (b *Backend) Name() string { return "cuda" }

func (b *Backend) Status() accel.Status {
	st := accel.Status{Name: "cuda", Speed: 100}
	switch {
	case b.dev == nil:
		st.Reason = b.reason
		return st
	case b.closed.Load():
		st.Reason = "closed"
	default:
		st.Available = true
		if err := b.dev.faulted(); err != nil {
			st.Available = false
			st.Reason = err.Error()
		}
	}
	if st.Available {
		st.Modes = slices.Clone(modes)
	}
	d := b.dev
	st.MemoryTotal, st.MemoryInUse = int64(d.totalMem), d.pool.inUse.Load()
	var parts []string
	parts = append(parts, fmt.Sprintf("%s (sm_%d%d, %d SMs, %.0f GiB)", d.name, d.major, d.minor, d.sms, float64(d.totalMem)/(1<<30)))
	parts = append(parts, b.libInfo)
	if b.tf32 {
		parts = append(parts, "fast mode: TF32 tensor cores in matmul and conv2d")
	}
	if d.libs.dnn == nil {
		parts = append(parts, "fast conv2d on own kernels: "+d.libs.dnnErr.Error())
	}
	st.Device = strings.Join(parts, "; ")
	return st
}

// Kernel returns op's kernel for mode: the contract's own kernels in
// strict mode; cuBLAS, cuDNN and the contracted kernels in fast and
// checked mode.
func (b *Backend) Kernel(op *accel.Op, mode accel.Mode) accel.Kernel {
	v, ok := variantFor(mode)
	if !ok {
		return nil
	}
	return b.tables[v][op]
}

// variantFor is the kernel variant that serves mode, false for a mode the
// backend does not serve.
func variantFor(mode accel.Mode) (variant, bool) {
	switch mode {
	case accel.Strict:
		return strictKernels, true
	case accel.Fast, accel.Checked:
		return fastKernels, true
	}
	return 0, false
}

func (b *Backend) Close() error {
	if b.dev == nil || b.closed.Swap(true) {
		return nil
	}
	return b.dev.close()
}

// buffer is one tensor's device memory.
type buffer struct {
	dev   *device
	mem   devMem
	elems int
	// finite is true while every element is known to be finite: set for
	// zero-filled memory, kept by host writes of finite data, cleared when a
	// kernel writes the buffer. Fast conv2d uses cuDNN, which multiplies
	// padding by zero, only for weights known finite, where that gives the
	// contract's value.
	finite atomic.Bool
	freed  atomic.Bool
}

func (buf *buffer) Free() {
	if buf.freed.Swap(true) {
		return
	}
	d := buf.dev
	d.do(func() error {
		d.pool.release(d.libs.drv, buf.mem)
		return nil
	})
}

// available refuses work on a backend without a device. Its error names
// neither the backend nor the operation: the Session and the caller do.
func (b *Backend) available() error {
	if b.dev == nil {
		return fmt.Errorf("%w: unavailable: %s", accel.ErrDevice, b.reason)
	}
	return nil
}

func (b *Backend) Alloc(dt accel.DType, n int) (accel.Buffer, error) {
	if err := b.available(); err != nil {
		return nil, err
	}
	if !dt.Valid() || n < 0 || n > accel.MaxElements {
		return nil, fmt.Errorf("%w: %d elements of %v", accel.ErrInvalid, n, dt)
	}
	d := b.dev
	buf := &buffer{dev: d, elems: n}
	buf.finite.Store(true)
	err := d.do(func() error {
		m, err := d.pool.alloc(d.libs.drv, int64(n)*4)
		if err != nil {
			return err
		}
		// Zero-filled, as the interface promises; pooled memory holds old data.
		if err := d.libs.drv.check("cuMemsetD32Async", d.libs.drv.cuMemsetD32Async(m.ptr, 0, uint64(max(n, 1)), d.stream)); err != nil {
			d.pool.release(d.libs.drv, m)
			return err
		}
		buf.mem = m
		return nil
	})
	if err != nil {
		return nil, d.failed("alloc", err)
	}
	return buf, nil
}

// devBuffer returns the device memory behind an accel.Buffer.
func devBuffer(x accel.Buffer) (*buffer, error) {
	buf, ok := x.(*buffer)
	if !ok {
		return nil, fmt.Errorf("%w: buffer of type %T is not a cuda buffer", accel.ErrInvalid, x)
	}
	if buf.freed.Load() {
		return nil, fmt.Errorf("%w: buffer used after free", accel.ErrInvalid)
	}
	return buf, nil
}

func (b *Backend) Write(dst accel.Buffer, first int, src []byte) error {
	buf, err := devBuffer(dst)
	if err != nil {
		return err
	}
	if len(src)%4 != 0 || first < 0 || first > buf.elems || len(src)/4 > buf.elems-first {
		return fmt.Errorf("%w: %d bytes at element %d outside %d elements", accel.ErrInvalid, len(src), first, buf.elems)
	}
	if len(src) == 0 {
		return nil
	}
	if !allFinite(src) {
		buf.finite.Store(false)
	}
	d := buf.dev
	err = d.do(func() error {
		drv := d.libs.drv
		if err := drv.check("cuMemcpyHtoDAsync", drv.cuMemcpyHtoDAsync(buf.mem.ptr+uint64(first)*4, unsafe.Pointer(&src[0]), uint64(len(src)), d.stream)); err != nil {
			return err
		}
		return d.sync()
	})
	return d.failed("write", err)
}

func (b *Backend) Read(src accel.Buffer, first int, dst []byte) error {
	buf, err := devBuffer(src)
	if err != nil {
		return err
	}
	if len(dst)%4 != 0 || first < 0 || first > buf.elems || len(dst)/4 > buf.elems-first {
		return fmt.Errorf("%w: %d bytes at element %d outside %d elements", accel.ErrInvalid, len(dst), first, buf.elems)
	}
	if len(dst) == 0 {
		return nil
	}
	d := buf.dev
	err = d.do(func() error {
		drv := d.libs.drv
		if err := drv.check("cuMemcpyDtoHAsync", drv.cuMemcpyDtoHAsync(unsafe.Pointer(&dst[0]), buf.mem.ptr+uint64(first)*4, uint64(len(dst)), d.stream)); err != nil {
			return err
		}
		return d.sync()
	})
	return d.failed("read", err)
}

// allFinite reports whether every little-endian f32 in b is finite. (For
// i32 data the answer is meaningless and unused.)
func allFinite(b []byte) bool {
	for i := 0; i+4 <= len(b); i += 4 {
		if binary.LittleEndian.Uint32(b[i:])&0x7f800000 == 0x7f800000 {
			return false
		}
	}
	return true
}

// ptr returns a tensor's device address.
func ptr(t *accel.Tensor) uint64 { return t.Buffer().(*buffer).mem.ptr }

// written marks t as holding kernel output, whose finiteness is unknown.
func written(t *accel.Tensor) { t.Buffer().(*buffer).finite.Store(false) }

// run executes op on the owner goroutine once ctx allows, then waits for
// the GPU to finish it. Kernels cannot be interrupted once launched; a
// context that ends first stops the operation before it starts. what names
// the operation in the record of a fault that leaves the GPU unhealthy;
// the error returned names neither the backend nor the operation, which
// the Session and the caller add.
func (b *Backend) run(ctx context.Context, what string, outs []*accel.Tensor, op func(d *device) error) error {
	if err := b.available(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	for _, t := range outs {
		written(t)
	}
	d := b.dev
	err := d.do(func() error {
		if err := op(d); err != nil {
			return err
		}
		return d.sync()
	})
	return d.failed(what, err)
}
