// Package accel is the node's compute core: the Backend interface that every
// accelerator implements, the registry that finds them, determinism modes, and
// the Session that validates, meters and accounts every call before a backend
// sees it.
//
// Backends know nothing of WebAssembly: they take tensors and shapes. The guest
// ABI (package hostfn), the conformance drivers and the benchmarks all reach a
// backend through a Session.
package accel

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// DType is a tensor element type. Its numeric values are the ABI's dtype codes.
type DType uint32

const (
	F32 DType = 1 // IEEE 754 binary32, little-endian in guest memory
	I32 DType = 2 // two's complement 32-bit integer, little-endian in guest memory
)

// Size is the width of one element in bytes.
func (d DType) Size() int {
	switch d {
	case F32, I32:
		return 4
	}
	return 0
}

func (d DType) Valid() bool { return d.Size() != 0 }

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case I32:
		return "i32"
	}
	return fmt.Sprintf("dtype(%d)", uint32(d))
}

const (
	// MaxRank bounds the number of dimensions of a tensor.
	MaxRank = 8
	// MaxElements bounds the element count of one tensor, so that every index
	// fits an int32 on every backend and every byte offset fits a uint32 view of
	// guest memory.
	MaxElements = math.MaxInt32 / 4
)

// Errors returned by Session methods. Each maps to one errno of the guest ABI.
var (
	ErrInvalid     = errors.New("invalid argument")
	ErrShape       = errors.New("shape mismatch")
	ErrOverflow    = errors.New("size overflow")
	ErrUnsupported = errors.New("unsupported")
	ErrOutOfMemory = errors.New("out of tensor memory")
	ErrTooMany     = errors.New("too many live tensors")
	ErrFreed       = errors.New("tensor already freed")
	ErrForeign     = errors.New("tensor belongs to another session")
	ErrDevice      = errors.New("device failure")
)

// Tensor is a dense, row-major array owned by one Session and stored by its
// backend. Its shape never changes except through Session.Reshape.
type Tensor struct {
	dtype   DType
	shape   []int
	n       int
	buf     Buffer
	session *Session
}

func (t *Tensor) DType() DType { return t.dtype }

// Shape returns the tensor's dimensions. The caller must not modify it.
func (t *Tensor) Shape() []int { return t.shape }

// Len is the number of elements.
func (t *Tensor) Len() int { return t.n }

// Bytes is the storage size in bytes.
func (t *Tensor) Bytes() int64 { return int64(t.n) * int64(t.dtype.Size()) }

// Buffer is the backend's storage. Backends type-assert it to their own type.
func (t *Tensor) Buffer() Buffer { return t.buf }

func (t *Tensor) String() string {
	if t == nil {
		return "<nil>"
	}
	return t.dtype.String() + ShapeString(t.shape)
}

// ShapeString formats a shape as [2x3x4].
func ShapeString(shape []int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, "x") + "]"
}

// NumElements checks a shape and returns its element count. Every dimension
// must be at least 1, the rank at most MaxRank, and the product at most
// MaxElements.
func NumElements(shape []int) (int, error) {
	if len(shape) == 0 || len(shape) > MaxRank {
		return 0, fmt.Errorf("%w: rank %d not in 1..%d", ErrInvalid, len(shape), MaxRank)
	}
	n := 1
	for _, d := range shape {
		if d < 1 {
			return 0, fmt.Errorf("%w: dimension %d in %s", ErrInvalid, d, ShapeString(shape))
		}
		if d > MaxElements || n > MaxElements/d {
			return 0, fmt.Errorf("%w: %s has more than %d elements", ErrOverflow, ShapeString(shape), MaxElements)
		}
		n *= d
	}
	return n, nil
}

func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}
