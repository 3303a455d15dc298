package cuda

import (
	"fmt"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
)

// nvrtcAPI is the runtime compiler. It needs no GPU: kernels compile on any
// machine that has the library.
type nvrtcAPI struct {
	lib *library

	nvrtcVersion           func(major, minor *int32) int32
	nvrtcGetErrorString    func(code int32) string
	nvrtcCreateProgram     func(prog *uintptr, src string, name string, nHeaders int32, headers, includeNames unsafe.Pointer) int32
	nvrtcDestroyProgram    func(prog *uintptr) int32
	nvrtcCompileProgram    func(prog uintptr, nOptions int32, options **byte) int32
	nvrtcGetProgramLogSize func(prog uintptr, n *uint64) int32
	nvrtcGetProgramLog     func(prog uintptr, log *byte) int32
	nvrtcGetPTXSize        func(prog uintptr, n *uint64) int32
	nvrtcGetPTX            func(prog uintptr, ptx *byte) int32
	nvrtcGetCUBINSize      func(prog uintptr, n *uint64) int32
	nvrtcGetCUBIN          func(prog uintptr, cubin *byte) int32
}

var nvrtcSonames = []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"}

func loadNVRTC(dirs []string) (*nvrtcAPI, error) {
	lib, err := openLibrary("NVRTC", nvrtcSonames, dirs)
	if err != nil {
		return nil, err
	}
	// NVRTC loads its builtins library by soname when it first compiles; one
	// found beside it is loaded now, so a directory off the loader's path
	// works without LD_LIBRARY_PATH.
	if filepath.IsAbs(lib.path) {
		builtins, _ := filepath.Glob(filepath.Join(filepath.Dir(lib.path), "libnvrtc-builtins.so*"))
		for _, path := range builtins {
			purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		}
	}
	n := &nvrtcAPI{lib: lib}
	err = lib.bindAll(map[string]any{
		"nvrtcVersion":           &n.nvrtcVersion,
		"nvrtcGetErrorString":    &n.nvrtcGetErrorString,
		"nvrtcCreateProgram":     &n.nvrtcCreateProgram,
		"nvrtcDestroyProgram":    &n.nvrtcDestroyProgram,
		"nvrtcCompileProgram":    &n.nvrtcCompileProgram,
		"nvrtcGetProgramLogSize": &n.nvrtcGetProgramLogSize,
		"nvrtcGetProgramLog":     &n.nvrtcGetProgramLog,
		"nvrtcGetPTXSize":        &n.nvrtcGetPTXSize,
		"nvrtcGetPTX":            &n.nvrtcGetPTX,
		"nvrtcGetCUBINSize":      &n.nvrtcGetCUBINSize,
		"nvrtcGetCUBIN":          &n.nvrtcGetCUBIN,
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

func (n *nvrtcAPI) version() string {
	var major, minor int32
	if n.nvrtcVersion(&major, &minor) != 0 {
		return "unknown"
	}
	return fmt.Sprintf("%d.%d", major, minor)
}

func (n *nvrtcAPI) check(call string, code int32) error {
	if code == 0 {
		return nil
	}
	return fmt.Errorf("%s failed: %s (%d)", call, n.nvrtcGetErrorString(code), code)
}

// compile compiles src for the compute capability major.minor. With cubin
// it returns machine code for that exact GPU (sm_XY); otherwise PTX for
// compute_XY, which the driver translates when it loads it.
func (n *nvrtcAPI) compile(name, src string, major, minor int, cubin bool, options []string) ([]byte, error) {
	var prog uintptr
	if err := n.check("nvrtcCreateProgram", n.nvrtcCreateProgram(&prog, src, name, 0, nil, nil)); err != nil {
		return nil, err
	}
	defer n.nvrtcDestroyProgram(&prog)

	arch := fmt.Sprintf("--gpu-architecture=compute_%d%d", major, minor)
	if cubin {
		arch = fmt.Sprintf("--gpu-architecture=sm_%d%d", major, minor)
	}
	opts := append([]string{arch}, options...)
	cOpts := make([]*byte, len(opts))
	for i, o := range opts {
		cOpts[i] = cString(o)
	}
	code := n.nvrtcCompileProgram(prog, int32(len(cOpts)), &cOpts[0])
	if err := n.check("nvrtcCompileProgram", code); err != nil {
		return nil, fmt.Errorf("compile %s (%s): %w\n%s", name, strings.Join(opts, " "), err, n.log(prog))
	}
	size, get, what := n.nvrtcGetPTXSize, n.nvrtcGetPTX, "PTX"
	if cubin {
		size, get, what = n.nvrtcGetCUBINSize, n.nvrtcGetCUBIN, "CUBIN"
	}
	var length uint64
	if err := n.check("nvrtcGet"+what+"Size", size(prog, &length)); err != nil {
		return nil, err
	}
	if length == 0 {
		return nil, fmt.Errorf("compile %s: NVRTC returned no %s", name, what)
	}
	out := make([]byte, length)
	if err := n.check("nvrtcGet"+what, get(prog, &out[0])); err != nil {
		return nil, err
	}
	return out, nil
}

func (n *nvrtcAPI) log(prog uintptr) string {
	var size uint64
	if n.nvrtcGetProgramLogSize(prog, &size) != 0 || size <= 1 {
		return ""
	}
	buf := make([]byte, size)
	if n.nvrtcGetProgramLog(prog, &buf[0]) != 0 {
		return ""
	}
	return strings.TrimRight(string(buf), "\x00\n")
}
