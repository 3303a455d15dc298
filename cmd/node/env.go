// The environment variables the node reads, each with
// the flag it stands behind, its default and its meaning, so that flags,
// --help and the docs agree. Only the CLI reads the environment.
package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// envVar is one environment variable and the flag that overrides it.
type envVar struct {
	Name        string
	Flag        string
	Default     string
	Description string
}

// Value returns the variable's value, or its default when unset or empty.
func (v envVar) Value() string {
	if s := strings.TrimSpace(os.Getenv(v.Name)); s != "" {
		return s
	}
	return v.Default
}

// envVars are every variable the node reads.
type envVars struct {
	Backend, Determinism, CheckRate, Threads, Memory, TensorMemory, Timeout, Budget, Clock, GuestDeterminism, CacheDir, LogLevel, CUDAPath, CUDADevice, CUDADetectTimeout, TF32, ORTLibrary, Data, Listen, Node, APIKey envVar
}

var env = envVars{
	Backend:           envVar{"ACCELNODE_BACKEND", "backend", "auto", "backend that serves guests: auto (the fastest that serves the mode), or a name that accelnode backends lists"},
	Determinism:       envVar{"ACCELNODE_DETERMINISM", "determinism", "strict", "determinism mode: strict (bit-identical on every backend), checked (fast, with a sampled share of calls recomputed on ref) or fast"},
	CheckRate:         envVar{"ACCELNODE_CHECK_RATE", "check-rate", "0.01", "in checked mode, the share of calls recomputed on ref (0 to 1)"},
	Threads:           envVar{"ACCELNODE_THREADS", "threads", "0", "CPU threads per backend; 0 means one per core"},
	Memory:            envVar{"ACCELNODE_MEMORY", "memory", "1GiB", "linear-memory limit of each guest (64KiB to 4194240KiB, 4 GiB less one page)"},
	TensorMemory:      envVar{"ACCELNODE_TENSOR_MEMORY", "tensor-memory", "4GiB", "limit on the tensors each guest holds on its backend"},
	Timeout:           envVar{"ACCELNODE_TIMEOUT", "timeout", "1h", "deadline of each guest invocation; 0 means none"},
	Budget:            envVar{"ACCELNODE_BUDGET", "budget", "0", "compute units each invocation may use (FLOPs plus bytes moved); 0 means unlimited"},
	Clock:             envVar{"ACCELNODE_CLOCK", "clock", "system", "clock guests read: system (the host's, so guests can time themselves) or deterministic"},
	GuestDeterminism:  envVar{"ACCELNODE_GUEST_DETERMINISM", "guest-determinism", "", "how guests' own code is instrumented at load: strict (every instruction metered against the budget, NaNs canonical) or off (instructions counted for deadlines only); empty means strict in strict mode and off otherwise"},
	CacheDir:          envVar{"ACCELNODE_CACHE_DIR", "cache-dir", defaultCacheDir(), "directory for compiled guest code and GPU kernels; \"off\" keeps them in memory"},
	LogLevel:          envVar{"ACCELNODE_LOG_LEVEL", "log-level", "info", "log level on stderr: debug, info, warn or error"},
	CUDAPath:          envVar{"ACCELNODE_CUDA_PATH", "cuda-path", "", "directories (colon-separated) searched first for the CUDA driver, cuBLAS, cuDNN and NVRTC; $CUDA_HOME and $CUDA_PATH follow"},
	CUDADevice:        envVar{"ACCELNODE_CUDA_DEVICE", "cuda-device", "0", "ordinal of the GPU the cuda backend uses"},
	CUDADetectTimeout: envVar{"ACCELNODE_CUDA_DETECT_TIMEOUT", "cuda-detect-timeout", "30s", "how long GPU detection may take before the cuda backend is reported unavailable"},
	TF32:              envVar{"ACCELNODE_TF32", "tf32", "off", "on lets fast-mode GPU matmul and conv2d use TF32 tensor cores (inputs rounded to 10-bit mantissas)"},
	Data:              envVar{"ACCELNODE_DATA", "data", defaultDataDir(), "data directory of accelnode serve: stored modules, blobs, uploads, job records, API keys and the model catalogue"},
	Listen:            envVar{"ACCELNODE_LISTEN", "listen", "127.0.0.1:8080", "address accelnode serve listens on; a public one needs TLS and API keys, or --allow-public"},
	Node:              envVar{"ACCELNODE_NODE", "node", "http://127.0.0.1:8080", "URL of the node that upload, submit, job, models and infer talk to"},
	APIKey:            envVar{"ACCELNODE_API_KEY", "api-key", "", "API key that upload, submit, job, models and infer send to the node"},
	ORTLibrary:        envVar{"ONNXRUNTIME_SHARED_LIBRARY_PATH", "ort-lib", "", "ONNX Runtime's shared library for the ort backend; empty means .deps/libonnxruntime.so.1 (make deps). A library given must load, or the node does not start"},
}

// all lists every variable, for the top-level --help.
func (e envVars) all() []envVar {
	return []envVar{e.Backend, e.Determinism, e.CheckRate, e.Threads, e.Memory, e.TensorMemory, e.Timeout, e.Budget, e.Clock, e.GuestDeterminism, e.CacheDir, e.LogLevel, e.CUDAPath, e.CUDADevice, e.CUDADetectTimeout, e.TF32, e.ORTLibrary, e.Data, e.Listen, e.Node, e.APIKey}
}

// defaultCacheDir is accelnode's folder in the user's cache directory
// ($XDG_CACHE_HOME, or ~/.cache), or "off" where there is none.
func defaultCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "off"
	}
	return dir + "/accelnode"
}

// defaultDataDir is accelnode's folder in the user's data directory
// ($XDG_DATA_HOME, or ~/.local/share).
func defaultDataDir() string {
	if dir := os.Getenv("XDG_DATA_HOME"); dir != "" {
		return dir + "/accelnode"
	}
	if home, err := os.UserHomeDir(); err == nil {
		return home + "/.local/share/accelnode"
	}
	return "accelnode-data"
}

// envHelp formats vars as an indented list.
func envHelp(vars []envVar) string {
	var b strings.Builder
	for _, v := range vars {
		fmt.Fprintf(&b, "  %-32s %s (default %q)\n", v.Name, v.Description, v.Default)
	}
	return b.String()
}

// parseDuration reads a duration such as 30s or 10m; "0" means none.
func parseDuration(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 30s, 10m or 0)", s)
	}
	return d, nil
}
