// Package ort is the ONNX Runtime backend: the node's fast CPU path, on
// ONNX Runtime's MLAS kernels (SIMD on every core), through
// github.com/yalue/onnxruntime_go.
//
// Every operation runs as a small ONNX graph (models/onnx builds them, with
// symbolic dimensions) in a session created on first use and kept for the
// process, one per operation and attribute set. Sessions serve concurrent
// calls: ONNX Runtime allows concurrent Run on one session. Tensors live in
// host memory (accel/hostmem), and ONNX Runtime reads inputs and writes
// outputs in place, without copies.
//
// ONNX Runtime does not implement the numerics contract (its kernels block,
// vectorise and fuse as they like), so the backend is never deterministic in
// the contract's sense and strict mode does not select it. How far it lies
// from the contract is measured by the conformance drivers and reported in
// docs/benchmarks.md.
//
// "ort-cuda" is the same backend on ONNX Runtime's CUDA execution provider,
// available where that provider's libraries are installed beside the core
// library (an official GPU build of ONNX Runtime).
package ort

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/hostmem"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/internal/cpuinfo"
	"github.com/accelnode/accelnode/internal/ortlib"
)

func init() {
	accel.Register("ort", func(o accel.Options) accel.Backend { return New(o, false) })
	accel.Register("ort-cuda", func(o accel.Options) accel.Backend { return New(o, true) })
}

// Backend runs operations on ONNX Runtime. It is safe for concurrent use.
type Backend struct {
	name    string
	cuda    bool
	threads int
	lib     string
	reason  string // why the backend is unavailable, or ""
	// exact serves the inputs where ONNX Runtime's kernels disagree with
	// IEEE arithmetic (see Conv2D and MaxPool2D).
	exact *ref.Backend

	mu       sync.Mutex
	sessions map[string]*cachedSession
	closed   bool
}

var _ accel.Backend = (*Backend)(nil)

// New opens the backend: on the CPU, or with cuda on ONNX Runtime's CUDA
// execution provider. It never fails; Status says why it cannot serve.
func New(o accel.Options, cuda bool) *Backend {
	b := &Backend{name: "ort", cuda: cuda, threads: o.Threads, sessions: map[string]*cachedSession{}}
	if cuda {
		b.name = "ort-cuda"
	}
	if b.threads <= 0 {
		b.threads = runtime.NumCPU()
	}
	b.exact = ref.New(b.threads)
	lib, err := ortlib.Find(o.Libraries["ort"])
	if err == nil {
		err = ortlib.Init(lib)
	}
	if err != nil {
		b.reason = err.Error()
		return b
	}
	b.lib = lib
	if cuda {
		b.reason = cudaProviderMissing(lib)
	}
	return b
}

// cudaProviderMissing says why the CUDA execution provider cannot be used
// with the core library at lib, or returns "" if its library is there.
func cudaProviderMissing(lib string) string {
	provider := filepath.Join(filepath.Dir(lib), "libonnxruntime_providers_cuda.so")
	if _, err := os.Stat(provider); err != nil {
		return fmt.Sprintf("ONNX Runtime's CUDA execution provider is not installed: no %s beside %s "+
			"(it comes with ONNX Runtime's official GPU build, built for a CUDA version that must match the machine's; "+
			"the cuda backend uses the GPU without it)", filepath.Base(provider), lib)
	}
	return ""
}

func (b *Backend) Name() string { return b.name }

func (b *Backend) Status() accel.Status {
	st := accel.Status{Name: b.name, Speed: 50, Threads: b.threads}
	if b.cuda {
		st.Speed = 90
		st.Threads = 0
	}
	if b.reason != "" {
		st.Reason = b.reason
		return st
	}
	st.Available = true
	st.Device = fmt.Sprintf("ONNX Runtime %s (%s), %s", ortlib.Version(), b.lib, cpuinfo.Model())
	if b.cuda {
		st.Device = fmt.Sprintf("ONNX Runtime %s, CUDA execution provider", ortlib.Version())
	}
	return st
}

// Close destroys the cached sessions. The ONNX Runtime environment stays:
// it is the process's, shared with every other user.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	var first error
	for key, s := range b.sessions {
		if s.session != nil {
			if err := s.session.Destroy(); err != nil && first == nil {
				first = fmt.Errorf("ort: destroy session %s: %w", key, err)
			}
		}
		delete(b.sessions, key)
	}
	return first
}

func (b *Backend) Alloc(dt accel.DType, n int) (accel.Buffer, error) {
	if b.reason != "" {
		return nil, fmt.Errorf("%w: %s is unavailable: %s", accel.ErrDevice, b.name, b.reason)
	}
	return hostmem.Alloc(dt, n)
}

func (b *Backend) Write(dst accel.Buffer, first int, src []byte) error {
	return hostmem.Write(dst, first, src)
}

func (b *Backend) Read(src accel.Buffer, first int, dst []byte) error {
	return hostmem.Read(src, first, dst)
}

// cachedSession is one graph's ONNX Runtime session, created once.
type cachedSession struct {
	once    sync.Once
	session *ort.DynamicAdvancedSession
	err     error
}

// session returns the session for key, building its graph with build on
// first use. inputs and outputs are the graph's value names, in the order
// Run takes them.
func (b *Backend) session(key string, build func() []byte, inputs, outputs []string) (*ort.DynamicAdvancedSession, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, fmt.Errorf("%w: %s is closed", accel.ErrDevice, b.name)
	}
	cs := b.sessions[key]
	if cs == nil {
		cs = &cachedSession{}
		b.sessions[key] = cs
	}
	b.mu.Unlock()
	cs.once.Do(func() {
		opts, err := b.sessionOptions()
		if err != nil {
			cs.err = err
			return
		}
		defer opts.Destroy()
		cs.session, cs.err = ort.NewDynamicAdvancedSessionWithONNXData(build(), inputs, outputs, opts)
		if cs.err != nil {
			cs.err = fmt.Errorf("ort: create session for %s: %w", key, cs.err)
		}
	})
	return cs.session, cs.err
}

func (b *Backend) sessionOptions() (*ort.SessionOptions, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("ort: session options: %w", err)
	}
	for _, set := range []func() error{
		func() error { return opts.SetIntraOpNumThreads(b.threads) },
		func() error { return opts.SetInterOpNumThreads(1) },
		func() error { return opts.SetExecutionMode(ort.ExecutionModeSequential) },
		func() error { return opts.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll) },
		func() error {
			if !b.cuda {
				return nil
			}
			cudaOpts, err := ort.NewCUDAProviderOptions()
			if err != nil {
				return err
			}
			defer cudaOpts.Destroy()
			return opts.AppendExecutionProviderCUDA(cudaOpts)
		},
	} {
		if err := set(); err != nil {
			opts.Destroy()
			return nil, fmt.Errorf("ort: session options: %w", err)
		}
	}
	return opts, nil
}

// value is one input or output of a Run: a tensor's data with the shape ONNX
// Runtime should see, or a scalar.
type value struct {
	f32    []float32
	i64    []int64
	shape  []int
	scalar bool
}

func tensorValue(t *accel.Tensor) value { return value{f32: hostmem.F32(t), shape: t.Shape()} }

func scalarValue(x float32) value { return value{f32: []float32{x}, scalar: true} }

// ortValue wraps v for ONNX Runtime without copying its data.
func (v value) ortValue() (ort.Value, error) {
	if v.scalar {
		return ort.NewScalar(v.f32[0])
	}
	dims := make([]int64, len(v.shape))
	for i, d := range v.shape {
		dims[i] = int64(d)
	}
	if v.i64 != nil {
		return ort.NewTensor(ort.NewShape(dims...), v.i64)
	}
	return ort.NewTensor(ort.NewShape(dims...), v.f32)
}

// run runs session on inputs, writing into outputs, whose shapes must be
// the ones the graph produces. A context that ends during the run
// terminates it.
func run(ctx context.Context, op string, s *ort.DynamicAdvancedSession, inputs, outputs []value) (err error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ort: %s: interrupted: %w", op, err)
	}
	values := make([]ort.Value, 0, len(inputs)+len(outputs))
	defer func() {
		for _, v := range values {
			v.Destroy()
		}
	}()
	wrap := func(vs []value) ([]ort.Value, error) {
		out := make([]ort.Value, len(vs))
		for i, v := range vs {
			ov, err := v.ortValue()
			if err != nil {
				return nil, fmt.Errorf("ort: %s: %w", op, err)
			}
			out[i] = ov
			values = append(values, ov)
		}
		return out, nil
	}
	in, err := wrap(inputs)
	if err != nil {
		return err
	}
	out, err := wrap(outputs)
	if err != nil {
		return err
	}
	opts, err := ort.NewRunOptions()
	if err != nil {
		return fmt.Errorf("ort: %s: run options: %w", op, err)
	}
	defer opts.Destroy()
	stop := context.AfterFunc(ctx, func() { opts.Terminate() })
	defer stop()
	if err := s.RunWithOptions(in, out, opts); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("ort: %s: interrupted: %w", op, ctx.Err())
		}
		return fmt.Errorf("ort: %s: %w: %w", op, accel.ErrDevice, err)
	}
	// Tensors were written in place; a scalar has its own storage.
	for i, v := range outputs {
		if v.scalar {
			v.f32[0] = out[i].(*ort.Scalar[float32]).GetData()
		}
	}
	return nil
}
