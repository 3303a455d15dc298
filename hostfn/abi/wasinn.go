package abi

import "fmt"

// The constants of wasi-nn's preview-1 module, as the guests that WasmEdge
// and Wasmtime run import it. Sources: Wasmtime's
// crates/wasi-nn/witx/wasi-nn.witx, the generated.rs of the wasi-nn and
// wasmedge-wasi-nn Rust crates, and WasmEdge's plugins/wasi_nn/types.h.
// docs/abi.md's wasi-nn section has the tables.

// NNModuleName is the import module of the wasi-nn functions.
const NNModuleName = "wasi_ephemeral_nn"

// NNErrno is the status every wasi-nn function returns; the numbering is
// the same in every witx revision and runtime.
type NNErrno uint32

const (
	NNSuccess              NNErrno = 0
	NNInvalidArgument      NNErrno = 1 // a bad pointer, handle, index, type, shape or target
	NNInvalidEncoding      NNErrno = 2 // an encoding the node does not run, or bytes that do not decode as one
	NNMissingMemory        NNErrno = 3 // the guest exports no memory
	NNBusy                 NNErrno = 4 // not returned by this node
	NNRuntimeError         NNErrno = 5 // the backend failed, or the budget or deadline ran out
	NNUnsupportedOperation NNErrno = 6 // the target, or an op of the graph, cannot be served
	NNTooLarge             NNErrno = 7 // a buffer too small, or a limit reached
	NNNotFound             NNErrno = 8 // no graph by that name
)

var nnErrnoNames = [...]string{
	NNSuccess:              "success",
	NNInvalidArgument:      "invalid argument",
	NNInvalidEncoding:      "invalid encoding",
	NNMissingMemory:        "missing memory",
	NNBusy:                 "busy",
	NNRuntimeError:         "runtime error",
	NNUnsupportedOperation: "unsupported operation",
	NNTooLarge:             "too large",
	NNNotFound:             "not found",
}

func (e NNErrno) Error() string {
	if int(e) < len(nnErrnoNames) {
		return nnErrnoNames[e]
	}
	return fmt.Sprintf("wasi-nn errno %d", uint32(e))
}

// Tensor types. The current witx (Wasmtime, and the Rust crates' bindings
// today) numbers f16, f32, f64, u8, i32, i64 from 0; WasmEdge's plugin and
// the older witx number f16, f32, u8, i32. Code 3 is therefore i32 in one
// and u8 in the other: the node tells them apart by the data's length.
const (
	NNTensorF16 = 0
	NNTensorF32 = 1
	NNTensorF64 = 2 // u8 in the old numbering
	NNTensorU8  = 3 // i32 in the old numbering
	NNTensorI32 = 4
	NNTensorI64 = 5

	NNTensorU8Old  = 2
	NNTensorI32Old = 3
)

// Graph encodings, the same in every revision; WasmEdge adds its own from 6.
const (
	NNEncodingOpenVINO       = 0
	NNEncodingONNX           = 1
	NNEncodingTensorflow     = 2
	NNEncodingPyTorch        = 3
	NNEncodingTensorflowLite = 4
	NNEncodingAutodetect     = 5
	NNEncodingGGML           = 6 // WasmEdge
)

// Execution targets; AUTO is WasmEdge's.
const (
	NNTargetCPU  = 0
	NNTargetGPU  = 1
	NNTargetTPU  = 2
	NNTargetAuto = 3
)

// Sizes of the structs passed by pointer, every field a little-endian u32.
const (
	// NNBuilderSize: ptr, len of one graph builder (a byte buffer).
	NNBuilderSize = 8
	// NNTensorSize: dims_ptr, dims_len, type, data_ptr, data_len.
	NNTensorSize = 20
)

// Per-invocation limits of wasi-nn.
const (
	NNMaxGraphs    = 16        // live graphs
	NNMaxContexts  = 64        // live execution contexts
	NNMaxLoadBytes = 256 << 20 // bytes a guest may pass to load, in all
	NNMaxBuilders  = 16        // entries of one builder array
	NNMaxName      = 256       // bytes of a graph name
	NNMaxConfig    = 64 << 10  // bytes of a load_by_name_with_config config
)
