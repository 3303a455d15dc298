// Package envconfig names every environment variable the node reads, with
// its default and meaning, so that flags, --help and the docs agree.
package envconfig

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Var is one environment variable.
type Var struct {
	Name        string
	Default     string
	Description string
}

// Value returns the variable's value, or its default when unset or empty.
func (v Var) Value() string {
	if s := strings.TrimSpace(os.Getenv(v.Name)); s != "" {
		return s
	}
	return v.Default
}

var (
	Backend      = Var{"ACCELNODE_BACKEND", "auto", "backend that serves guests: auto, or a name that accelnode backends lists"}
	Determinism  = Var{"ACCELNODE_DETERMINISM", "strict", "determinism mode: strict (bit-identical on every backend), checked (fast, with a sampled share of calls recomputed on ref) or fast"}
	CheckRate    = Var{"ACCELNODE_CHECK_RATE", "0.01", "in checked mode, the share of calls recomputed on ref (0 to 1)"}
	Threads      = Var{"ACCELNODE_THREADS", "0", "CPU threads per backend; 0 means one per core"}
	Memory       = Var{"ACCELNODE_MEMORY", "1GiB", "linear-memory limit of each guest"}
	TensorMemory = Var{"ACCELNODE_TENSOR_MEMORY", "4GiB", "limit on the tensors each guest holds on its backend"}
	Timeout      = Var{"ACCELNODE_TIMEOUT", "1h", "deadline of each guest invocation; 0 means none"}
	Budget       = Var{"ACCELNODE_BUDGET", "0", "compute units each invocation may use (FLOPs plus bytes moved); 0 means unlimited"}
	Clock        = Var{"ACCELNODE_CLOCK", "system", "clock guests read: system (the host's, so guests can time themselves) or deterministic"}
	CacheDir     = Var{"ACCELNODE_CACHE_DIR", defaultCacheDir(), "directory for compiled guest code; \"off\" keeps it in memory"}
	LogLevel     = Var{"ACCELNODE_LOG_LEVEL", "info", "log level on stderr: debug, info, warn or error"}

	CUDAPath          = Var{"ACCELNODE_CUDA_PATH", "", "directories (colon-separated) searched first for the CUDA driver, cuBLAS, cuDNN and NVRTC"}
	CUDADevice        = Var{"ACCELNODE_CUDA_DEVICE", "0", "ordinal of the GPU the cuda backend uses"}
	CUDADetectTimeout = Var{"ACCELNODE_CUDA_DETECT_TIMEOUT", "30s", "how long GPU detection may take before the cuda backend is reported unavailable"}
	TF32              = Var{"ACCELNODE_TF32", "off", "on lets fast-mode GPU matmul and conv2d use TF32 tensor cores (inputs rounded to 10-bit mantissas)"}
	ORTLibrary        = Var{"ONNXRUNTIME_SHARED_LIBRARY_PATH", "", "ONNX Runtime's shared library for the ort backend; empty means .deps/libonnxruntime.so.1 (make deps)"}
)

// All lists every variable, for --help.
func All() []Var {
	return []Var{Backend, Determinism, CheckRate, Threads, Memory, TensorMemory, Timeout, Budget, Clock, CacheDir, LogLevel,
		CUDAPath, CUDADevice, CUDADetectTimeout, TF32, ORTLibrary}
}

func defaultCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "off"
	}
	return dir + "/accelnode"
}

// Help formats the variables as an indented list.
func Help() string {
	var b strings.Builder
	for _, v := range All() {
		fmt.Fprintf(&b, "  %-24s %s (default %q)\n", v.Name, v.Description, v.Default)
	}
	return b.String()
}

// ParseBytes reads a size such as 65536, 64KiB, 256MiB or 1GiB.
func ParseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		scale  int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}}
	num, scale := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, scale = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.scale
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/scale {
		return 0, fmt.Errorf("invalid size %q (want a byte count such as 65536, 256MiB or 1GiB)", s)
	}
	return n * scale, nil
}

// ParseDuration reads a duration such as 30s or 10m; "0" means none.
func ParseDuration(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 30s, 10m or 0)", s)
	}
	return d, nil
}
