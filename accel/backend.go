package accel

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Backend computes the node's operations on one kind of hardware.
//
// A Session checks every call before a backend sees it (see Kernel), so
// backends may rely on that and must not re-check. Data lives in Buffers,
// which may be device memory; it moves only through Write and Read. Methods
// may be called from many goroutines at once, each on its own tensors.
type Backend interface {
	// Name is the backend's registry name, such as "ref".
	Name() string
	// Status reports whether the backend can serve, in which determinism
	// modes, and what it runs on.
	Status() Status

	// Alloc returns zero-filled storage for n elements of dt, or an error
	// wrapping ErrOutOfMemory when the device has no room.
	Alloc(dt DType, n int) (Buffer, error)
	// Write copies little-endian elements from src into dst starting at element
	// first. src holds a whole number of elements, all inside dst.
	Write(dst Buffer, first int, src []byte) error
	// Read copies elements starting at element first into dst, little-endian.
	Read(src Buffer, first int, dst []byte) error

	// Kernel returns the backend's kernel for op in mode, or nil where it
	// has none; the Session then refuses the call with ErrUnsupported. In
	// Strict mode a kernel must implement the numerics contract bit for
	// bit (docs/determinism.md).
	Kernel(op *Op, mode Mode) Kernel

	// Close releases the backend's devices and handles.
	Close() error
}

// Kernels maps operations to a backend's kernels, for a Backend's Kernel
// method to look them up.
type Kernels map[*Op]Kernel

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
	// Modes are the determinism modes the backend serves. Strict means
	// every operation it has implements the numerics contract bit for bit.
	Modes []Mode `json:"modes"`
	// FastIsStrict says that the backend serves fast mode from its strict
	// kernels: it has no faster ones.
	FastIsStrict bool `json:"fast_is_strict,omitempty"`
	// Speed orders backends for the auto selection: higher is faster.
	Speed int `json:"speed"`
	// Threads is how many CPU threads the backend computes with, if it uses
	// the CPU.
	Threads int `json:"threads,omitempty"`
	// MemoryTotal and MemoryInUse are a device's own memory and the bytes
	// of it that tensors hold, where the backend has such a device (a
	// GPU); zero otherwise.
	MemoryTotal int64 `json:"memory_total,omitempty"`
	MemoryInUse int64 `json:"memory_in_use,omitempty"`
}

// Serves reports whether the backend is available and serves mode.
func (s Status) Serves(mode Mode) bool { return s.Available && slices.Contains(s.Modes, mode) }

// ContractVersion names the version of the numerics contract
// (docs/determinism.md) that strict mode implements. It changes whenever an
// operation's bits change or an operation is added; receipts carry it.
const ContractVersion = "2026-12-06-3"

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

// AllModes lists the modes, strict first.
var AllModes = []Mode{Strict, Fast, Checked}

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
	for _, m := range AllModes {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown determinism mode %q (want strict, checked or fast)", s)
}

func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	*m = v
	return err
}

// ModeList formats modes as "strict, fast and checked", or "none".
func ModeList(modes []Mode) string {
	names := make([]string, len(modes))
	for i, m := range modes {
		names[i] = m.String()
	}
	switch len(names) {
	case 0:
		return "none"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
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

// ONNXRunner is implemented by backends that run whole ONNX models
// themselves (ONNX Runtime) rather than op by op through a Session. key
// identifies the model (its sha256) so that the backend can keep what it
// prepared for it; inputs are in the order of inputNames and have been
// checked against the model's declared inputs. The outputs come back in
// host memory, in the order of outputNames, for the caller to place in its
// session.
type ONNXRunner interface {
	RunONNX(ctx context.Context, key string, model []byte, inputNames, outputNames []string, inputs []*Tensor) ([]HostTensor, error)
}

// HostTensor is an f32 tensor in host memory.
type HostTensor struct {
	Shape []int
	Data  []float32
}
