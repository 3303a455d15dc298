// Package ortlib finds ONNX Runtime's shared library and initialises its
// environment, which is global to the process: once, whoever asks first.
// It reads no environment variables: the caller passes the library's
// location (accel.Options.Libraries["ort"]).
package ortlib

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// LibName is the library's file name, as make deps places it in .deps.
const LibName = "libonnxruntime.so.1"

// libNames are the file names looked for in a folder, in order: the
// versioned name, then the development link some installs have instead.
var libNames = []string{LibName, "libonnxruntime.so"}

// Find returns the library to load. where is a file, a folder, or a list of
// folders separated by colons; empty means the standard places:
// .deps beside the executable's folder (bin/../.deps), then .deps in the
// working directory or any folder above it.
func Find(where string) (string, error) {
	if where != "" {
		return findIn(where)
	}
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
	if p, ok := search(dirs); ok {
		return p, nil
	}
	return "", fmt.Errorf("ONNX Runtime library not found: pass its location, or run make deps (looked for %s in %d folders, the first %s)",
		LibName, len(dirs), filepath.Clean(dirs[0]))
}

// findIn resolves an explicit location: a file as it is, a folder or a
// colon-separated list of folders by searching them.
func findIn(where string) (string, error) {
	if !strings.Contains(where, ":") {
		fi, err := os.Stat(where)
		if err != nil {
			return "", fmt.Errorf("ONNX Runtime library: %w", err)
		}
		if !fi.IsDir() {
			return where, nil
		}
	}
	dirs := filepath.SplitList(where)
	if p, ok := search(dirs); ok {
		return p, nil
	}
	return "", fmt.Errorf("ONNX Runtime library not found: no %s in %s", strings.Join(libNames, " or "), where)
}

// search returns the first library file in dirs.
func search(dirs []string) (string, bool) {
	for _, d := range dirs {
		if d == "" {
			continue
		}
		for _, name := range libNames {
			p := filepath.Join(d, name)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
				return filepath.Clean(p), true
			}
		}
	}
	return "", false
}

var (
	mu       sync.Mutex
	loaded   string
	initErr  error
	attempts int
)

// ErrShutDown is returned by Init once Shutdown has destroyed the
// environment: it cannot be created again in the same process.
var ErrShutDown = errors.New("ONNX Runtime was shut down")

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

// Shutdown destroys the environment, at the process's exit, after every
// session has been destroyed. Later calls of Init fail with ErrShutDown.
// It does nothing when the environment was never created.
func Shutdown() error {
	mu.Lock()
	defer mu.Unlock()
	if loaded == "" || initErr != nil {
		return nil
	}
	loaded = ""
	initErr = ErrShutDown
	if err := ort.DestroyEnvironment(); err != nil {
		return fmt.Errorf("destroy the ONNX Runtime environment: %w", err)
	}
	return nil
}
