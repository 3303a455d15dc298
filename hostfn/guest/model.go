//go:build wasip1

package guest

import (
	"encoding/json"
	"unsafe"

	"github.com/accelnode/accelnode/hostfn/abi"
)

// Model is a handle to an ONNX model the node holds. Opening one model
// again gives the same handle.
type Model struct{ handle uint32 }

// Handle is the raw ABI handle.
func (m Model) Handle() uint32 { return m.handle }

// OpenModel looks a model up by the name it was loaded under, or by its
// sha256 (hex, optionally prefixed "sha256:").
func OpenModel(name string) (Model, error) {
	b := []byte(name)
	if len(b) == 0 {
		b = []byte{0} // a valid pointer; the node refuses the length
	}
	mu.Lock()
	errno := modelOpen(unsafe.Pointer(unsafe.SliceData(b)), uint32(len(name)), &scratch.handle)
	h := scratch.handle
	mu.Unlock()
	if err := check("model_open", errno); err != nil {
		return Model{}, err
	}
	return Model{h}, nil
}

// ModelInfo describes a model's inputs and outputs.
type ModelInfo = abi.ModelInfo

// ValueInfo is one input or output: Shape holds -1 for a symbolic
// dimension, named in Dims, and is nil where the rank is unknown.
type ValueInfo = abi.ValueInfo

// Info asks the node for the model's inputs and outputs.
func (m Model) Info() (ModelInfo, error) {
	var mi ModelInfo
	msg, errno := text(func(buf unsafe.Pointer, bufLen uint32, outLen *uint32) uint32 {
		return modelInfo(m.handle, buf, bufLen, outLen)
	})
	if err := check("model_info", uint32(errno)); err != nil {
		return mi, err
	}
	return mi, json.Unmarshal([]byte(msg), &mi)
}

// Run runs the model on inputs, in the order of its inputs, and returns new
// tensors in the order of its outputs; nOutputs must be their number.
func (m Model) Run(nOutputs int, inputs ...Tensor) ([]Tensor, error) {
	in := make([]uint32, len(inputs)+1) // +1: a valid pointer even for none
	for i, t := range inputs {
		in[i] = t.handle
	}
	out := make([]uint32, nOutputs+1)
	errno := modelRun(m.handle, unsafe.Pointer(unsafe.SliceData(in)), uint32(len(inputs)),
		unsafe.Pointer(unsafe.SliceData(out)), uint32(nOutputs))
	if err := check("model_run", errno); err != nil {
		return nil, err
	}
	ts := make([]Tensor, nOutputs)
	for i := range ts {
		ts[i] = Tensor{out[i]}
	}
	return ts, nil
}
