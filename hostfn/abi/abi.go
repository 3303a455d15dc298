// Package abi holds the constants of the accel guest ABI that host and guest
// share: the module name, errnos, dtype codes, flags and the sizes of the
// structs guests pass by pointer. docs/abi.md is the full specification.
//
// It has no dependencies so that it compiles for every guest target.
package abi

import "fmt"

// ModuleName is the import module of every accel host function.
const ModuleName = "accel"

// Version is the ABI version that info reports.
const Version = 1

// Errno is the status every accel function returns. 0 is success.
type Errno uint32

const (
	OK           Errno = 0
	EBADHANDLE   Errno = 1  // handle unknown to this guest instance, freed, or 0
	EFAULT       Errno = 2  // a pointer and length reach outside guest memory
	EINVAL       Errno = 3  // an argument is invalid: dtype, rank, flags, parameters, index data
	ESHAPE       Errno = 4  // shapes do not fit the operation
	EOVERFLOW    Errno = 5  // a size product overflows
	EUNSUPPORTED Errno = 6  // the backend or mode cannot serve this call
	ENOMEM       Errno = 7  // out of tensor (device) memory
	EBUDGET      Errno = 8  // the compute budget is exhausted
	ELIMIT       Errno = 9  // too many live tensors
	ECANCELED    Errno = 10 // the invocation's deadline passed or it was cancelled during the call
	EDEVICE      Errno = 11 // the backend or device failed
	EINTERNAL    Errno = 12 // a bug in the node; it is logged
	ETOOSMALL    Errno = 13 // the guest's buffer is too small; the needed size was written
	ENOENT       Errno = 14 // no model by that name or hash
)

var errnoNames = [...]string{
	OK:           "ok",
	EBADHANDLE:   "bad handle",
	EFAULT:       "pointer outside guest memory",
	EINVAL:       "invalid argument",
	ESHAPE:       "shape mismatch",
	EOVERFLOW:    "size overflow",
	EUNSUPPORTED: "unsupported",
	ENOMEM:       "out of tensor memory",
	EBUDGET:      "compute budget exhausted",
	ELIMIT:       "too many live tensors",
	ECANCELED:    "cancelled",
	EDEVICE:      "device failure",
	EINTERNAL:    "internal error",
	ETOOSMALL:    "buffer too small",
	ENOENT:       "no such model",
}

func (e Errno) Error() string {
	if int(e) < len(errnoNames) {
		return errnoNames[e]
	}
	return fmt.Sprintf("errno %d", uint32(e))
}

// Tensor element types.
const (
	DTypeF32 = 1
	DTypeI32 = 2
)

// MaxRank is the largest tensor rank.
const MaxRank = 8

// matmul flags.
const (
	MatMulTransA = 1 << 0 // a is stored [K, M]
	MatMulTransB = 1 << 1 // b is stored [N, K]
)

// tsne_step flags.
const (
	TSNEComputeKL = 1 << 0 // write the KL divergence at kl_ptr
	TSNEBarnesHut = 1 << 1 // the theta field holds the Barnes-Hut threshold
)

// Sizes in bytes of the structs passed by pointer; every field is a
// little-endian u32 or f32 unless noted.
const (
	// TensorInfoSize: dtype, rank, dims[MaxRank] (unused dims are 0).
	TensorInfoSize = 4 * (2 + MaxRank)
	// Conv2DParamsSize: stride_h, stride_w, pad_top, pad_left, pad_bottom,
	// pad_right, dilation_h, dilation_w, groups. Zero strides, dilations and
	// groups are read as 1.
	Conv2DParamsSize = 4 * 9
	// Pool2DParamsSize: kernel_h, kernel_w, stride_h, stride_w, pad_top,
	// pad_left, pad_bottom, pad_right. Zero strides are read as 1.
	Pool2DParamsSize = 4 * 8
	// TSNEParamsSize: f32 learning_rate, f32 momentum, f32 exaggeration,
	// f32 min_gain, u32 flags, f32 theta (read with TSNEBarnesHut only).
	TSNEParamsSize = 4 * 6
	// TSNEAffinitiesParamsSize: f32 perplexity, u32 flags (0).
	TSNEAffinitiesParamsSize = 4 * 2
	// EmbeddingQualityParamsSize: u32 k.
	EmbeddingQualityParamsSize = 4
	// UnitsSize: u64 used, u64 budget (0 means unlimited).
	UnitsSize = 16
)

// ModelInfo is the JSON that model_info writes.
type ModelInfo struct {
	Name    string      `json:"name"`
	SHA256  string      `json:"sha256"`
	Inputs  []ValueInfo `json:"inputs"`
	Outputs []ValueInfo `json:"outputs"`
}

// ValueInfo describes one input or output of a model. Shape holds -1 for a
// symbolic dimension, whose name is in Dims; Shape is null where the rank is
// unknown.
type ValueInfo struct {
	Name  string   `json:"name"`
	DType string   `json:"dtype"`
	Shape []int64  `json:"shape"`
	Dims  []string `json:"dims"`
}
