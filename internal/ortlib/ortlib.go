// Package ortlib finds ONNX Runtime's shared library and initialises its
// environment, which is global to the process: once, whoever asks first.
package ortlib

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// EnvPath is the environment variable that names the library, the one
// onnxruntime_go's own examples use.
const EnvPath = "ONNXRUNTIME_SHARED_LIBRARY_PATH"

// libName is the library's file name in the .deps folder that make deps
// fills.
const libName = "libonnxruntime.so.1"

// Find returns the library to load: explicit if set, else $EnvPath, else
// .deps/libonnxruntime.so.1 beside the executable's directory (bin/../.deps)
// or in the working directory or one above it.
func Find(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if p := os.Getenv(EnvPath); p != "" {
		return p, nil
	}
	var tried []string
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Join(filepath.Dir(exe), "..", ".deps"))
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			dirs = append(dirs, filepath.Join(d, ".deps"))
			if d == filepath.Dir(d) {
				break
			}
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, libName)
		if _, err := os.Stat(p); err == nil {
			return filepath.Clean(p), nil
		}
		tried = append(tried, filepath.Clean(d))
	}
	return "", fmt.Errorf("ONNX Runtime library not found: set %s, pass its path, or run make deps (looked for %s in %d folders, the first %s)",
		EnvPath, libName, len(tried), tried[0])
}

var (
	mu       sync.Mutex
	loaded   string
	initErr  error
	attempts int
)

// Init initialises the environment with the library at path, or returns the
// error of the first attempt: the library cannot be swapped once loaded.
func Init(path string) error {
	mu.Lock()
	defer mu.Unlock()
	if attempts > 0 {
		if initErr == nil && path != loaded {
			return fmt.Errorf("ONNX Runtime is already loaded from %s; cannot load %s too", loaded, path)
		}
		return initErr
	}
	attempts++
	if _, err := os.Stat(path); err != nil {
		initErr = fmt.Errorf("ONNX Runtime library: %w", err)
		return initErr
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		initErr = fmt.Errorf("load ONNX Runtime from %s: %w", path, err)
		return initErr
	}
	loaded = path
	return nil
}

// Loaded returns the path of the loaded library, or "".
func Loaded() string {
	mu.Lock()
	defer mu.Unlock()
	if initErr != nil {
		return ""
	}
	return loaded
}

// Version is the loaded library's version, or "".
func Version() string {
	if Loaded() == "" {
		return ""
	}
	return ort.GetVersion()
}

// Shutdown destroys the environment, at the process's exit.
func Shutdown() error {
	mu.Lock()
	defer mu.Unlock()
	if loaded == "" || initErr != nil {
		return nil
	}
	loaded = ""
	initErr = errors.New("ONNX Runtime was shut down")
	return ort.DestroyEnvironment()
}
