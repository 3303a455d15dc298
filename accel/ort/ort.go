// Package ort is the ONNX Runtime backend: the node's fast CPU path, on
// ONNX Runtime's MLAS kernels (SIMD on every core), through
// github.com/yalue/onnxruntime_go.
//
// Operations run as small ONNX graphs (graphs.go, with symbolic dimensions)
// in sessions created on first use, one per operation and attribute set,
// and whole models (accel.ONNXRunner) in one session per model. Sessions
// serve concurrent calls: ONNX Runtime allows concurrent Run on one
// session. They are kept in two bounded LRU caches, DefaultOpSessions
// sessions of operations and DefaultModelSessions of models, so that
// operations with ever new attributes cannot evict the models' sessions;
// CacheStats counts their hits, misses and evictions. A session serving a
// call is destroyed only once the call has released it. Tensors live in
// host memory (accel/internal/hostmem), and ONNX Runtime reads inputs and
// writes outputs in place, without copies.
//
// Every run carries run options that are terminated when the call's
// context ends. ONNX Runtime looks at them only between the nodes of a
// graph, so a long operation runs as several runs on parts of its tensors
// (ops.go), and a deadline stops it within one part.
//
// Some calls do not go to ONNX Runtime but to the contract's CPU kernels
// (accel/internal/strictcpu), on the same tensors:
//   - calls too small to repay ONNX Runtime's fixed cost per run (see
//     routing.go for the rule and its measurements);
//   - inputs ONNX Runtime's kernels get wrong: a padded Conv with a
//     non-finite weight, a MaxPool over NaN or -Inf (see onORT);
//   - every tsne_step: exact t-SNE as ONNX graphs is many times slower and
//     holds O(N·block) intermediates.
//
// ONNX Runtime does not implement the numerics contract (its kernels block,
// vectorise and fuse as they like), so the backend serves fast and checked
// mode only, never strict. How far it lies from the contract is measured by
// the conformance drivers and reported in docs/benchmarks.md.
//
// "ort-cuda" is the same backend on ONNX Runtime's CUDA execution provider,
// available where that provider's libraries are installed beside the core
// library (an official GPU build of ONNX Runtime).
//
// ONNX Runtime's environment belongs to the process: the first backend
// opened creates it, and Shutdown destroys it at exit.
package ort

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/internal/hostmem"
	"github.com/accelnode/accelnode/accel/internal/ortlib"
	"github.com/accelnode/accelnode/accel/internal/strictcpu"
	"github.com/accelnode/accelnode/internal/cpuinfo"
)

func init() {
	accel.Register("ort", func(o accel.Options) accel.Backend { return New(o, false) })
	accel.Register("ort-cuda", func(o accel.Options) accel.Backend { return New(o, true) })
}

// Backend runs operations and models on ONNX Runtime. It is safe for
// concurrent use.
type Backend struct {
	name    string
	cuda    bool
	threads int
	lib     string
	reason  string // why the backend is unavailable, or ""

	// strict serves the calls ONNX Runtime should not (see the package
	// comment).
	strict *strictcpu.Kernels
	// viaORT are the kernels on ONNX Runtime alone; table routes between
	// them and strict.
	viaORT, table accel.Kernels

	ops, models *sessionCache
	// pieces counts the runs of operations' graphs, one per piece.
	pieces atomic.Uint64
}

var (
	_ accel.Backend    = (*Backend)(nil)
	_ accel.ONNXRunner = (*Backend)(nil)
)

// New opens the backend: on the CPU, or with cuda on ONNX Runtime's CUDA
// execution provider. The library is o.Libraries["ort"] (a file, a folder
// or a colon-separated list of folders), else .deps/libonnxruntime.so.1
// beside the executable or above the working directory. It never fails;
// Status says why it cannot serve.
func New(o accel.Options, cuda bool) *Backend {
	b := &Backend{
		name: "ort", cuda: cuda, threads: o.Threads,
		ops: newSessionCache(DefaultOpSessions), models: newSessionCache(DefaultModelSessions),
	}
	if cuda {
		b.name = "ort-cuda"
	}
	if b.threads <= 0 {
		b.threads = runtime.NumCPU()
	}
	b.strict = strictcpu.New(b.threads)
	b.table = b.kernels()
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

// Shutdown destroys the process's ONNX Runtime environment, at exit, after
// every backend has been closed. Backends opened later are unavailable.
func Shutdown() error { return ortlib.Shutdown() }

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
	st := accel.Status{Name: b.name, Speed: 50, Threads: b.threads, Modes: []accel.Mode{accel.Fast, accel.Checked}}
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

// Kernel returns the kernel for op in fast and checked mode. There are none
// in strict mode, and none while the backend is unavailable.
func (b *Backend) Kernel(op *accel.Op, mode accel.Mode) accel.Kernel {
	if b.reason != "" || (mode != accel.Fast && mode != accel.Checked) {
		return nil
	}
	return b.table[op]
}

// CacheStats returns the counts of the session caches.
func (b *Backend) CacheStats() CacheStats {
	return CacheStats{Ops: b.ops.stats(), Models: b.models.stats()}
}

// Close destroys the cached sessions; sessions serving a call are destroyed
// when it ends. The ONNX Runtime environment stays: it is the process's,
// shared with every other user (see Shutdown).
func (b *Backend) Close() error {
	errOps, errModels := b.ops.close(), b.models.close()
	if errOps != nil {
		return errOps
	}
	return errModels
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

// sessionOptions are the options of every session the backend creates.
func (b *Backend) sessionOptions() (*ort.SessionOptions, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	for _, set := range []func() error{
		func() error { return opts.SetIntraOpNumThreads(b.threads) },
		func() error { return opts.SetInterOpNumThreads(1) },
		func() error { return opts.SetExecutionMode(ort.ExecutionModeSequential) },
		func() error { return opts.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll) },
		// Idle workers sleep rather than spin: a session's spinning
		// workers took the cores from the next session's run and from
		// the contract's kernels, making a cnn forward pass up to six
		// times slower warm, and its first pass seven times slower.
		func() error { return opts.AddSessionConfigEntry("session.intra_op.allow_spinning", "0") },
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
			return nil, fmt.Errorf("session options: %w", err)
		}
	}
	return opts, nil
}

// newSession creates a session on an encoded graph or model with the
// backend's options.
func (b *Backend) newSession(graph []byte, inputs, outputs []string) (*ort.DynamicAdvancedSession, error) {
	opts, err := b.sessionOptions()
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	return ort.NewDynamicAdvancedSessionWithONNXData(graph, inputs, outputs, opts)
}
