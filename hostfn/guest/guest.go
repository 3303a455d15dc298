//go:build wasip1

package guest

import (
	"encoding/json"
	"fmt"
	"sync"
	"unsafe"

	"github.com/accelnode/accelnode/hostfn/abi"
)

// Error is a failed accel call.
type Error struct {
	Op     string
	Errno  abi.Errno
	Detail string // the node's explanation, from last_error
}

func (e *Error) Error() string {
	if e.Detail != "" { // the node's sentence names the call and the errno
		return "accel " + e.Detail
	}
	return fmt.Sprintf("accel %s: %v", e.Op, e.Errno)
}

// Unwrap makes errors.Is(err, abi.ESHAPE) work.
func (e *Error) Unwrap() error { return e.Errno }

func check(op string, errno uint32) error {
	if errno == 0 {
		return nil
	}
	return &Error{Op: op, Errno: abi.Errno(errno), Detail: LastError()}
}

// scratch holds the imports' out-parameters and parameter structs. A
// pointer to a local would move it to the heap, and a heap allocation costs
// a Go guest several times more than the host call itself. mu guards it for
// guests that call from several goroutines.
var (
	mu      sync.Mutex
	scratch struct {
		handle uint32
		length uint32
		info   [abi.TensorInfoSize / 4]uint32
		units  [2]uint64
		kl     float32
		conv   Conv2DParams
		pool   Pool2DParams
		tsne   tsneParams
		// words holds the parameter structs of the training operations.
		words [12]uint32
	}
)

// produce runs an import that writes a new handle through out.
func produce(op string, f func(out *uint32) uint32) (Tensor, error) {
	mu.Lock()
	errno := f(&scratch.handle)
	h := scratch.handle
	mu.Unlock()
	if err := check(op, errno); err != nil {
		return Tensor{}, err
	}
	return Tensor{h}, nil
}

// text runs info or last_error, which write a string and its length.
func text(f func(buf unsafe.Pointer, bufLen uint32, outLen *uint32) uint32) (string, abi.Errno) {
	buf := make([]byte, 512)
	for {
		mu.Lock()
		errno := abi.Errno(f(unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf)), &scratch.length))
		n := scratch.length
		mu.Unlock()
		if errno != abi.ETOOSMALL {
			return string(buf[:min(n, uint32(len(buf)))]), errno
		}
		buf = make([]byte, n)
	}
}

// LastError is the node's explanation of the most recent failed call.
func LastError() string {
	msg, errno := text(lastError)
	if errno != abi.OK {
		return ""
	}
	return msg
}

// DType is a tensor element type.
type DType uint32

const (
	F32 DType = abi.DTypeF32
	I32 DType = abi.DTypeI32
)

// Tensor is a handle to a tensor held by the node. The zero Tensor is no
// tensor (and means "no bias" to Conv2D).
type Tensor struct{ handle uint32 }

// Handle is the raw ABI handle.
func (t Tensor) Handle() uint32 { return t.handle }

func dims(shape []int) ([]uint32, error) {
	d := make([]uint32, len(shape))
	for i, s := range shape {
		if s < 0 || s > 1<<32-1 {
			return nil, &Error{Op: "tensor_create", Errno: abi.EINVAL, Detail: fmt.Sprintf("dimension %d", s)}
		}
		d[i] = uint32(s)
	}
	return d, nil
}

// New creates a zero-filled tensor.
func New(dt DType, shape ...int) (Tensor, error) {
	d, err := dims(shape)
	if err != nil {
		return Tensor{}, err
	}
	return produce("tensor_create", func(out *uint32) uint32 {
		return tensorCreate(uint32(dt), unsafe.Pointer(unsafe.SliceData(d)), uint32(len(d)), out)
	})
}

// FromFloat32 creates an f32 tensor holding data.
func FromFloat32(data []float32, shape ...int) (Tensor, error) {
	return from(F32, len(data), shape, func(t Tensor) error { return t.WriteFloat32(0, data) })
}

// FromInt32 creates an i32 tensor holding data.
func FromInt32(data []int32, shape ...int) (Tensor, error) {
	return from(I32, len(data), shape, func(t Tensor) error { return t.WriteInt32(0, data) })
}

func from(dt DType, n int, shape []int, write func(Tensor) error) (Tensor, error) {
	want := 1
	for _, d := range shape {
		want *= d
	}
	if n != want {
		return Tensor{}, &Error{Op: "tensor_create", Errno: abi.ESHAPE, Detail: fmt.Sprintf("%d values for shape %v", n, shape)}
	}
	t, err := New(dt, shape...)
	if err != nil {
		return t, err
	}
	if err := write(t); err != nil {
		t.Free()
		return Tensor{}, err
	}
	return t, nil
}

// Shape returns the tensor's element type and dimensions.
func (t Tensor) Shape() (DType, []int, error) {
	mu.Lock()
	errno := tensorInfo(t.handle, unsafe.Pointer(&scratch.info))
	info := scratch.info
	mu.Unlock()
	if err := check("tensor_info", errno); err != nil {
		return 0, nil, err
	}
	shape := make([]int, info[1])
	for i := range shape {
		shape[i] = int(info[2+i])
	}
	return DType(info[0]), shape, nil
}

// Len is the number of elements.
func (t Tensor) Len() (int, error) {
	_, shape, err := t.Shape()
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n, err
}

// WriteFloat32 writes data into the tensor from element first.
func (t Tensor) WriteFloat32(first int, data []float32) error {
	return check("tensor_write", tensorWrite(t.handle, uint32(first), unsafe.Pointer(unsafe.SliceData(data)), uint32(len(data))))
}

// WriteInt32 writes data into an i32 tensor from element first.
func (t Tensor) WriteInt32(first int, data []int32) error {
	return check("tensor_write", tensorWrite(t.handle, uint32(first), unsafe.Pointer(unsafe.SliceData(data)), uint32(len(data))))
}

// ReadFloat32 reads len(dst) elements from element first.
func (t Tensor) ReadFloat32(first int, dst []float32) error {
	return check("tensor_read", tensorRead(t.handle, uint32(first), unsafe.Pointer(unsafe.SliceData(dst)), uint32(len(dst))))
}

// ReadInt32 reads len(dst) elements of an i32 tensor from element first.
func (t Tensor) ReadInt32(first int, dst []int32) error {
	return check("tensor_read", tensorRead(t.handle, uint32(first), unsafe.Pointer(unsafe.SliceData(dst)), uint32(len(dst))))
}

// Float32 reads the whole tensor.
func (t Tensor) Float32() ([]float32, error) {
	n, err := t.Len()
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	return out, t.ReadFloat32(0, out)
}

// Reshape gives the tensor a new shape with as many elements.
func (t Tensor) Reshape(shape ...int) error {
	d, err := dims(shape)
	if err != nil {
		return err
	}
	return check("tensor_reshape", tensorReshape(t.handle, unsafe.Pointer(unsafe.SliceData(d)), uint32(len(d))))
}

// Free releases the tensor. The node frees whatever a guest still holds when
// it ends, so Free matters for long-running guests.
func (t Tensor) Free() error { return check("tensor_free", tensorFree(t.handle)) }

// FreeAll frees each tensor, ignoring zero Tensors, and returns the first error.
func FreeAll(ts ...Tensor) error {
	var first error
	for _, t := range ts {
		if t.handle == 0 {
			continue
		}
		if err := t.Free(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// MatMul flags.
const (
	TransA = abi.MatMulTransA
	TransB = abi.MatMulTransB
)

// MatMul returns a·b for a [M,K] and b [K,N]; flags TransA and TransB say
// that a is stored [K,M] or b [N,K].
func MatMul(a, b Tensor, flags uint32) (Tensor, error) {
	return produce("matmul", func(out *uint32) uint32 { return matmul(a.handle, b.handle, flags, out) })
}

// Conv2DParams mirrors the ABI struct; zero strides, dilations and groups
// mean 1.
type Conv2DParams struct {
	StrideH, StrideW     uint32
	PadTop, PadLeft      uint32
	PadBottom, PadRight  uint32
	DilationH, DilationW uint32
	Groups               uint32
}

// Conv2D convolves x [N,C,H,W] with w [OC,C/groups,KH,KW] and adds bias [OC]
// unless bias is the zero Tensor.
func Conv2D(x, w, bias Tensor, p Conv2DParams) (Tensor, error) {
	return produce("conv2d", func(out *uint32) uint32 {
		scratch.conv = p
		return conv2d(x.handle, w.handle, bias.handle, unsafe.Pointer(&scratch.conv), out)
	})
}

// AddBias returns x + bias, bias broadcast along axis.
func AddBias(x, bias Tensor, axis int) (Tensor, error) {
	return produce("add_bias", func(out *uint32) uint32 { return addBias(x.handle, bias.handle, uint32(axis), out) })
}

// Add returns a + b elementwise, for tensors of one shape.
func Add(a, b Tensor) (Tensor, error) {
	return produce("add", func(out *uint32) uint32 { return add(a.handle, b.handle, out) })
}

// Relu returns max(x, 0).
func Relu(x Tensor) (Tensor, error) {
	return produce("relu", func(out *uint32) uint32 { return relu(x.handle, out) })
}

// Pool2DParams mirrors the ABI struct; zero strides mean 1.
type Pool2DParams struct {
	KernelH, KernelW    uint32
	StrideH, StrideW    uint32
	PadTop, PadLeft     uint32
	PadBottom, PadRight uint32
}

// MaxPool2D returns the window maxima of x [N,C,H,W].
func MaxPool2D(x Tensor, p Pool2DParams) (Tensor, error) {
	return produce("maxpool2d", func(out *uint32) uint32 {
		scratch.pool = p
		return maxpool2d(x.handle, unsafe.Pointer(&scratch.pool), out)
	})
}

// Softmax normalises x along its last axis.
func Softmax(x Tensor) (Tensor, error) {
	return produce("softmax", func(out *uint32) uint32 { return softmax(x.handle, out) })
}

// TSNEState holds the tensors of a t-SNE run: P in CSR form (RowPtr i32[N+1],
// Cols i32[nnz], Vals f32[nnz]) and the f32 [N,2] embedding, update and gains.
type TSNEState struct {
	RowPtr, Cols, Vals Tensor
	Y, Update, Gains   Tensor
}

// TSNEParams are one iteration's hyperparameters.
type TSNEParams struct {
	LearningRate float32
	Momentum     float32
	Exaggeration float32
	MinGain      float32
	ComputeKL    bool
	// Theta is the Barnes-Hut threshold; 0 runs the exact step.
	Theta float32
}

// TSNEStep runs one t-SNE iteration, exact or Barnes-Hut, updating Y,
// Update and Gains in place, and returns the KL divergence when p.ComputeKL
// is set.
func TSNEStep(s TSNEState, p TSNEParams) (float32, error) {
	raw := tsneParams{p.LearningRate, p.Momentum, p.Exaggeration, p.MinGain, 0, p.Theta}
	if p.ComputeKL {
		raw.flags = abi.TSNEComputeKL
	}
	if p.Theta != 0 {
		raw.flags |= abi.TSNEBarnesHut
	}
	mu.Lock()
	scratch.tsne = raw
	errno := tsneStep(s.RowPtr.handle, s.Cols.handle, s.Vals.handle, s.Y.handle, s.Update.handle, s.Gains.handle, unsafe.Pointer(&scratch.tsne), &scratch.kl)
	kl := scratch.kl
	mu.Unlock()
	return kl, check("tsne_step", errno)
}

// tsneParams is the ABI's tsne_step parameter struct.
type tsneParams struct {
	lr, momentum, exaggeration, minGain float32
	flags                               uint32
	theta                               float32
}

// NodeInfo describes what serves this guest.
type NodeInfo struct {
	ABI           int    `json:"abi"`
	Backend       string `json:"backend"`
	Device        string `json:"device"`
	Mode          string `json:"mode"`
	Deterministic bool   `json:"deterministic"`
}

// Info asks the node which backend and determinism mode serve this guest.
func Info() (NodeInfo, error) {
	var ni NodeInfo
	msg, errno := text(info)
	if err := check("info", uint32(errno)); err != nil {
		return ni, err
	}
	return ni, json.Unmarshal([]byte(msg), &ni)
}

// Units reports the compute units this invocation has used and its budget
// (0 when unlimited).
func Units() (used, budget uint64, err error) {
	mu.Lock()
	errno := units(unsafe.Pointer(&scratch.units))
	u := scratch.units
	mu.Unlock()
	return u[0], u[1], check("units", errno)
}

// MatMulF32 returns the [m,n] product of a [m,k] and b [k,n], moving the
// data to the node and back in one call.
func MatMulF32(a []float32, m, k int, b []float32, n int) ([]float32, error) {
	ta, err := FromFloat32(a, m, k)
	if err != nil {
		return nil, err
	}
	defer ta.Free()
	tb, err := FromFloat32(b, k, n)
	if err != nil {
		return nil, err
	}
	defer tb.Free()
	tc, err := MatMul(ta, tb, 0)
	if err != nil {
		return nil, err
	}
	defer tc.Free()
	return tc.Float32()
}
