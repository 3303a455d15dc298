package cuda

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// The kernels are CUDA C++ text compiled at run time by NVRTC, so the node
// binary is the same on every machine and needs no CUDA toolkit to build.
//
//go:embed kernels/*.cu
var kernelFiles embed.FS

// variant selects how the kernels are compiled.
type variant int

const (
	// strictKernels implement the numerics contract: explicit round-to-
	// nearest intrinsics, no contraction into FMA, no flush to zero.
	strictKernels variant = iota
	// fastKernels let the compiler contract multiply-adds into FMA.
	fastKernels

	numVariants = iota
)

func (v variant) String() string {
	if v == strictKernels {
		return "strict"
	}
	return "fast"
}

// kernelSource is the program for v: ops.cu, which defines the arithmetic
// macros and canon, then the matmul kernels that use them. The strict matmul kernels are left out of the fast program,
// which multiplies through cuBLAS.
func kernelSource(v variant) (string, error) {
	var b strings.Builder
	for _, name := range []string{"ops.cu", "matmul.cu"} {
		if name == "matmul.cu" && v == fastKernels {
			continue
		}
		src, err := kernelFiles.ReadFile("kernels/" + name)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "#line 1 \"%s\"\n", name)
		b.Write(src)
		b.WriteString("\n")
	}
	return b.String(), nil
}

// compileOptions are NVRTC's options for v. Both keep IEEE division and
// square root and subnormals; only strict forbids FMA contraction.
func compileOptions(v variant) []string {
	opts := []string{"--std=c++17", "--ftz=false", "--prec-div=true", "--prec-sqrt=true"}
	if v == strictKernels {
		return append(opts, "--fmad=false", "-DACCEL_STRICT=1")
	}
	return append(opts, "--fmad=true")
}

// module is one compiled and loaded program.
type module struct {
	handle  uintptr
	funcs   map[string]uintptr
	compile time.Duration
}

// module returns v's module, compiling and loading it on first use. Owner
// goroutine only.
func (d *device) module(v variant) (*module, error) {
	if m := d.modules[v]; m != nil {
		return m, nil
	}
	src, err := kernelSource(v)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	image, err := d.libs.nvrtc.cachedCompile(d.cacheDir, "accelnode_"+v.String()+".cu", src, d.major, d.minor, compileOptions(v))
	if err != nil {
		return nil, err
	}
	drv := d.libs.drv
	m := &module{funcs: map[string]uintptr{}, compile: time.Since(start)}
	if err := drv.check("cuModuleLoadData", drv.cuModuleLoadData(&m.handle, unsafe.Pointer(&image[0]))); err != nil {
		return nil, err
	}
	d.modules[v] = m
	return m, nil
}

// function returns the kernel name of v's module.
func (d *device) function(v variant, name string) (uintptr, error) {
	m, err := d.module(v)
	if err != nil {
		return 0, err
	}
	if fn, ok := m.funcs[name]; ok {
		return fn, nil
	}
	var fn uintptr
	if err := d.libs.drv.check("cuModuleGetFunction("+name+")", d.libs.drv.cuModuleGetFunction(&fn, m.handle, name)); err != nil {
		return 0, err
	}
	m.funcs[name] = fn
	return fn, nil
}

// images holds every program compiled in this process, by cacheKey, so that
// each backend instance after the first only loads it.
var images sync.Map

// cacheKey names a compiled program: its source, options, target and
// compiler version.
func (n *nvrtcAPI) cacheKey(src string, major, minor int, options []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d.%d\x00%s\x00", n.version(), major, minor, strings.Join(options, " "))
	h.Write([]byte(src))
	return hex.EncodeToString(h.Sum(nil))
}

// cachedCompile compiles src once per process, and once per machine where
// dir names a cache directory: the machine code is kept in <dir>/cuda. It returns machine code for sm_XY, or PTX where this
// NVRTC cannot emit machine code for the GPU but a newer driver may still
// translate PTX.
func (n *nvrtcAPI) cachedCompile(dir, name, src string, major, minor int, options []string) ([]byte, error) {
	key := n.cacheKey(src, major, minor, options)
	if image, ok := images.Load(key); ok {
		return image.([]byte), nil
	}
	var file string
	if dir != "" {
		file = filepath.Join(dir, "cuda", key+".bin")
		if image, err := os.ReadFile(file); err == nil && len(image) > 0 {
			images.Store(key, image)
			return image, nil
		}
	}
	image, err := n.compile(name, src, major, minor, true, options)
	if err != nil {
		var ptxErr error
		if image, ptxErr = n.compile(name, src, major, minor, false, options); ptxErr != nil {
			return nil, err
		}
	}
	images.Store(key, image)
	if file != "" { // best effort: a read-only cache only costs a compile
		if os.MkdirAll(filepath.Dir(file), 0o755) == nil {
			tmp := fmt.Sprintf("%s.%d.tmp", file, os.Getpid())
			if os.WriteFile(tmp, image, 0o644) == nil {
				os.Rename(tmp, file)
			}
		}
	}
	return image, nil
}
