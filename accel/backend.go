package accel

import (
	"context"
	"fmt"
)

// Backend computes the node's operations on one kind of hardware.
//
// A Session validates every argument before calling a backend: shapes agree
// with the operation, outputs are freshly allocated with the right shape,
// tensors belong to this backend and are live, and index data (the t-SNE CSR
// structure) is in range. Backends may rely on that and must not re-check.
//
// Data lives in Buffers, which may be device memory; it moves only through
// Write and Read. Methods may be called from many goroutines at once, each on
// its own tensors.
type Backend interface {
	// Name is the backend's registry name, such as "ref".
	Name() string
	// Status reports whether the backend can serve and what it runs on.
	Status() Status

	// Alloc returns zero-filled storage for n elements of dt, or an error
	// wrapping ErrOutOfMemory when the device has no room.
	Alloc(dt DType, n int) (Buffer, error)
	// Write copies little-endian elements from src into dst starting at element
	// first. src holds a whole number of elements, all inside dst.
	Write(dst Buffer, first int, src []byte) error
	// Read copies elements starting at element first into dst, little-endian.
	Read(src Buffer, first int, dst []byte) error

	// MatMul computes out = op(a)·op(b), where op transposes when asked.
	MatMul(ctx context.Context, out, a, b *Tensor, p MatMulParams) error
	// Conv2D computes a grouped, strided, dilated, padded 2-D convolution in
	// NCHW layout with OIHW weights. bias is nil or has one element per output
	// channel.
	Conv2D(ctx context.Context, out, x, w, bias *Tensor, p Conv2DParams) error
	// AddBias computes out = x + bias broadcast along axis.
	AddBias(ctx context.Context, out, x, bias *Tensor, axis int) error
	// Relu computes out = max(x, +0), NaN preserved.
	Relu(ctx context.Context, out, x *Tensor) error
	// MaxPool2D takes the maximum over each window of an NCHW tensor.
	MaxPool2D(ctx context.Context, out, x *Tensor, p Pool2DParams) error
	// Softmax normalises x along its last axis.
	Softmax(ctx context.Context, out, x *Tensor) error
	// TSNEStep runs one exact-gradient t-SNE iteration, updating s.Y,
	// s.Update and s.Gains in place. It returns the KL divergence when
	// p.ComputeKL is set, and 0 otherwise.
	TSNEStep(ctx context.Context, s TSNEState, p TSNEParams) (kl float32, err error)

	// Close releases the backend's devices and handles.
	Close() error
}

// Buffer is backend-owned storage for one tensor.
type Buffer interface {
	// Free releases the storage. The buffer must not be used afterwards.
	Free()
}

// Status describes a backend for users and for backend selection.
type Status struct {
	Name string `json:"name"`
	// Available is false when the backend cannot serve on this machine;
	// Reason then says why.
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
	// Device names what the backend computes on, such as the CPU model.
	Device string `json:"device"`
	// Deterministic is true when every operation implements the numerics
	// contract (docs/determinism.md) bit for bit.
	Deterministic bool `json:"deterministic"`
	// Speed orders backends for the auto selection: higher is faster.
	Speed int `json:"speed"`
	// Threads is how many CPU threads the backend computes with, if it uses
	// the CPU.
	Threads int `json:"threads,omitempty"`
}

// MatMulParams selects transposed operands: with TransA, a is stored as
// [K, M]; with TransB, b is stored as [N, K].
type MatMulParams struct {
	TransA, TransB bool
}

// Conv2DParams describes a 2-D convolution. Strides, dilations and groups
// are at least 1 (the guest ABI reads a 0 as 1).
type Conv2DParams struct {
	StrideH, StrideW     int
	PadTop, PadLeft      int
	PadBottom, PadRight  int
	DilationH, DilationW int
	Groups               int
}

// Pool2DParams describes a 2-D pooling window. Every padding is smaller than
// the kernel along its axis, so no window lies wholly in padding.
type Pool2DParams struct {
	KernelH, KernelW    int
	StrideH, StrideW    int
	PadTop, PadLeft     int
	PadBottom, PadRight int
}

// TSNEState holds the tensors of one t-SNE iteration. P is the sparse
// symmetric joint-probability matrix in CSR form: RowPtr i32[N+1], Cols
// i32[nnz], Vals f32[nnz]. Y, Update and Gains are f32[N, 2] and are updated
// in place.
type TSNEState struct {
	RowPtr, Cols, Vals *Tensor
	Y, Update, Gains   *Tensor
}

// N is the number of points.
func (s TSNEState) N() int { return s.Y.Shape()[0] }

// TSNEParams are the hyperparameters of one t-SNE iteration.
type TSNEParams struct {
	LearningRate float32
	Momentum     float32
	Exaggeration float32
	MinGain      float32
	ComputeKL    bool
}

// Mode is the node's determinism mode.
type Mode int

const (
	// Strict serves every call from kernels that implement the numerics
	// contract bit for bit, and refuses calls it has no such kernel for.
	Strict Mode = iota
	// Fast serves every call from the backend's fastest kernels.
	Fast
	// Checked serves from the fast kernels and recomputes a sampled share of
	// calls on the reference backend, reporting results beyond each
	// operation's documented bound (package accel/checked).
	Checked
)

func (m Mode) String() string {
	switch m {
	case Strict:
		return "strict"
	case Fast:
		return "fast"
	case Checked:
		return "checked"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// ParseMode reads a mode name.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "strict":
		return Strict, nil
	case "fast":
		return Fast, nil
	case "checked":
		return Checked, nil
	}
	return 0, fmt.Errorf("unknown determinism mode %q (want strict, checked or fast)", s)
}

// Device describes an accelerator for reports that relate a backend's speed
// to its hardware: a benchmark's share of peak, say. Fields the driver does
// not report are zero.
type Device struct {
	// Kind is the class of processor, such as "gpu".
	Kind string `json:"kind"`
	// Name is the model the driver reports, such as "NVIDIA H200".
	Name string `json:"name"`
	// Arch is the instruction-set generation, such as "sm_90".
	Arch string `json:"arch,omitempty"`
	// ComputeUnits counts the independent cores: streaming multiprocessors
	// on an NVIDIA GPU.
	ComputeUnits int `json:"compute_units"`
	// ClockMHz is the peak core clock.
	ClockMHz int `json:"clock_mhz,omitempty"`
	// MemoryBytes is the device's own memory.
	MemoryBytes uint64 `json:"memory_bytes"`
	// MemoryClockMHz and MemoryBusBits describe the memory interface.
	MemoryClockMHz int `json:"memory_clock_mhz,omitempty"`
	MemoryBusBits  int `json:"memory_bus_bits,omitempty"`
}

// DeviceBackend is a Backend that computes on an accelerator rather than on
// the host's CPU. Backends that do not implement it compute on the CPU.
type DeviceBackend interface {
	Backend
	// Device describes the accelerator; false when the backend is
	// unavailable.
	Device() (Device, bool)
	// CopyBandwidth copies bytes from one device buffer to another reps
	// times and returns bytes read plus bytes written per second: the
	// memory bandwidth a kernel can reach.
	CopyBandwidth(ctx context.Context, bytes int64, reps int) (float64, error)
}
