package cuda

import (
	"fmt"
	"unsafe"
)

// CUDA driver API result codes the backend treats specially.
const (
	cudaSuccess            = 0
	cudaErrorOutOfMemory   = 2
	cudaErrorNoDevice      = 100
	cudaErrorIllegalAddr   = 700
	cudaErrorLaunchFailed  = 719
	cudaErrorIllegalInstr  = 715
	cudaErrorMisaligned    = 716
	cudaErrorInvalidPC     = 718
	cudaErrorHardwareStack = 714
	cudaErrorInvalidSpace  = 717
	cudaErrorLaunchTimeout = 702
	cudaErrorECC           = 214
)

// Device attributes (CUdevice_attribute).
const (
	attrMultiprocessorCount = 16
	attrComputeMajor        = 75
	attrComputeMinor        = 76
	attrMaxSharedOptin      = 97
	attrClockRate           = 13 // kHz
	attrMemoryClockRate     = 36 // kHz
	attrMemoryBusWidth      = 37 // bits
)

// funcAttrMaxDynamicShared is CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES.
const funcAttrMaxDynamicShared = 8

// driverAPI is the part of libcuda the backend calls. Every function returns
// a CUresult.
type driverAPI struct {
	lib *library

	cuInit                    func(flags uint32) int32
	cuDriverGetVersion        func(v *int32) int32
	cuDeviceGetCount          func(n *int32) int32
	cuDeviceGet               func(dev *int32, ordinal int32) int32
	cuDeviceGetName           func(name *byte, n int32, dev int32) int32
	cuDeviceGetAttribute      func(v *int32, attr int32, dev int32) int32
	cuDeviceTotalMem          func(bytes *uint64, dev int32) int32
	cuDevicePrimaryCtxRetain  func(ctx *uintptr, dev int32) int32
	cuDevicePrimaryCtxRelease func(dev int32) int32
	cuCtxSetCurrent           func(ctx uintptr) int32
	cuStreamCreate            func(stream *uintptr, flags uint32) int32
	cuStreamDestroy           func(stream uintptr) int32
	cuStreamSynchronize       func(stream uintptr) int32
	cuMemAlloc                func(ptr *uint64, bytes uint64) int32
	cuMemFree                 func(ptr uint64) int32
	cuMemGetInfo              func(free, total *uint64) int32
	cuMemcpyHtoDAsync         func(dst uint64, src unsafe.Pointer, bytes uint64, stream uintptr) int32
	cuMemcpyDtoHAsync         func(dst unsafe.Pointer, src uint64, bytes uint64, stream uintptr) int32
	cuMemcpyDtoDAsync         func(dst, src uint64, bytes uint64, stream uintptr) int32
	cuMemsetD32Async          func(dst uint64, value uint32, n uint64, stream uintptr) int32
	cuModuleLoadData          func(mod *uintptr, image unsafe.Pointer) int32
	cuModuleUnload            func(mod uintptr) int32
	cuModuleGetFunction       func(fn *uintptr, mod uintptr, name string) int32
	cuFuncSetAttribute        func(fn uintptr, attr int32, value int32) int32
	cuLaunchKernel            func(fn uintptr, gx, gy, gz, bx, by, bz uint32, shared uint32, stream uintptr, params unsafe.Pointer, extra unsafe.Pointer) int32
	cuGetErrorName            func(code int32, s **byte) int32
	cuGetErrorString          func(code int32, s **byte) int32
}

func loadDriver(dirs []string) (*driverAPI, error) {
	lib, err := openLibrary("the CUDA driver", []string{"libcuda.so.1", "libcuda.so"}, driverDirs(dirs))
	if err != nil {
		return nil, err
	}
	d := &driverAPI{lib: lib}
	err = lib.bindAll(map[string]any{
		"cuInit":                       &d.cuInit,
		"cuDriverGetVersion":           &d.cuDriverGetVersion,
		"cuDeviceGetCount":             &d.cuDeviceGetCount,
		"cuDeviceGet":                  &d.cuDeviceGet,
		"cuDeviceGetName":              &d.cuDeviceGetName,
		"cuDeviceGetAttribute":         &d.cuDeviceGetAttribute,
		"cuDeviceTotalMem_v2":          &d.cuDeviceTotalMem,
		"cuDevicePrimaryCtxRetain":     &d.cuDevicePrimaryCtxRetain,
		"cuDevicePrimaryCtxRelease_v2": &d.cuDevicePrimaryCtxRelease,
		"cuCtxSetCurrent":              &d.cuCtxSetCurrent,
		"cuStreamCreate":               &d.cuStreamCreate,
		"cuStreamDestroy_v2":           &d.cuStreamDestroy,
		"cuStreamSynchronize":          &d.cuStreamSynchronize,
		"cuMemAlloc_v2":                &d.cuMemAlloc,
		"cuMemFree_v2":                 &d.cuMemFree,
		"cuMemGetInfo_v2":              &d.cuMemGetInfo,
		"cuMemcpyHtoDAsync_v2":         &d.cuMemcpyHtoDAsync,
		"cuMemcpyDtoHAsync_v2":         &d.cuMemcpyDtoHAsync,
		"cuMemcpyDtoDAsync_v2":         &d.cuMemcpyDtoDAsync,
		"cuMemsetD32Async":             &d.cuMemsetD32Async,
		"cuModuleLoadData":             &d.cuModuleLoadData,
		"cuModuleUnload":               &d.cuModuleUnload,
		"cuModuleGetFunction":          &d.cuModuleGetFunction,
		"cuFuncSetAttribute":           &d.cuFuncSetAttribute,
		"cuLaunchKernel":               &d.cuLaunchKernel,
		"cuGetErrorName":               &d.cuGetErrorName,
		"cuGetErrorString":             &d.cuGetErrorString,
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// driverDirs adds the places distributions put libcuda to the CUDA search
// directories: the driver is installed with the kernel module, not the
// toolkit.
func driverDirs(dirs []string) []string {
	return append(append([]string{}, dirs...), "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/lib/wsl/lib")
}

// cudaError is a failed CUDA driver call.
type cudaError struct {
	call string
	code int32
	name string
	text string
}

func (e *cudaError) Error() string {
	return fmt.Sprintf("%s failed: %s (%d): %s", e.call, e.name, e.code, e.text)
}

// sticky reports whether the error leaves the context unusable: after a
// kernel fault every later call in the process fails the same way.
func (e *cudaError) sticky() bool {
	switch e.code {
	case cudaErrorIllegalAddr, cudaErrorLaunchFailed, cudaErrorIllegalInstr, cudaErrorMisaligned,
		cudaErrorInvalidPC, cudaErrorHardwareStack, cudaErrorInvalidSpace, cudaErrorLaunchTimeout, cudaErrorECC:
		return true
	}
	return false
}

// check turns a CUresult into an error naming the call, or nil.
func (d *driverAPI) check(call string, code int32) error {
	if code == cudaSuccess {
		return nil
	}
	e := &cudaError{call: call, code: code, name: "CUDA_ERROR_UNKNOWN", text: "unknown error"}
	var s *byte
	if d.cuGetErrorName(code, &s) == cudaSuccess && s != nil {
		e.name = goString(s)
	}
	if d.cuGetErrorString(code, &s) == cudaSuccess && s != nil {
		e.text = goString(s)
	}
	return e
}
