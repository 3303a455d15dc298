// Package guesttest builds Go programs as WASI preview 1 guests for tests.
package guesttest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

type build struct {
	once sync.Once
	path string
	wasm []byte
	err  error
}

// builds holds one *build per package path, so that each guest is built
// once per test binary however many tests ask for it.
var builds sync.Map

// Build builds the Go main package at import path pkg (which may lie under a
// testdata directory of the module) with GOOS=wasip1 GOARCH=wasm and returns
// the WebAssembly binary. It fails tb with go's output if the build fails.
func Build(tb testing.TB, pkg string) []byte {
	tb.Helper()
	return get(tb, pkg).wasm
}

// Path is like Build but returns the path of the built file. The file must
// not be modified.
func Path(tb testing.TB, pkg string) string {
	tb.Helper()
	return get(tb, pkg).path
}

// BuildReactor is like Build for a reactor guest, an actor: the package
// is built with -buildmode=c-shared, so that it exports _initialize and its
// //go:wasmexport functions instead of _start.
func BuildReactor(tb testing.TB, pkg string) []byte {
	tb.Helper()
	return get(tb, reactorPrefix+pkg).wasm
}

// reactorPrefix marks a reactor build among the builds.
const reactorPrefix = "reactor:"

func get(tb testing.TB, pkg string) *build {
	tb.Helper()
	v, _ := builds.LoadOrStore(pkg, new(build))
	b := v.(*build)
	b.once.Do(func() { b.path, b.wasm, b.err = compile(pkg) })
	if b.err != nil {
		tb.Fatalf("guesttest: %v", b.err)
	}
	return b
}

// PrebuiltEnv names a directory of guests built ahead of time, as
// NAME.wasm for the package whose last path element is NAME. Test binaries
// cross-built for a machine without Go (a GPU server, say) find their guests
// there instead of building them.
const PrebuiltEnv = "ACCELNODE_TEST_GUESTS"

func compile(pkg string) (string, []byte, error) {
	args := []string{"build"}
	if p, ok := strings.CutPrefix(pkg, reactorPrefix); ok {
		pkg, args = p, append(args, "-buildmode=c-shared")
	}
	if dir := os.Getenv(PrebuiltEnv); dir != "" {
		path := filepath.Join(dir, filepath.Base(pkg)+".wasm")
		wasm, err := os.ReadFile(path)
		if err != nil {
			return "", nil, fmt.Errorf("prebuilt guest for %s: %w", pkg, err)
		}
		return path, wasm, nil
	}
	goBin, err := goTool()
	if err != nil {
		return "", nil, err
	}
	// A fixed directory, rather than one temp dir per process, keeps repeated
	// test runs from piling up binaries; the rename keeps concurrent test
	// binaries from reading each other's half-written files.
	dir := filepath.Join(os.TempDir(), "guesttest-"+strconv.Itoa(os.Getuid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("create build directory: %w", err)
	}
	sum := sha256.Sum256([]byte(strings.Join(append(args, pkg), " ")))
	out := filepath.Join(dir, filepath.Base(pkg)+"-"+hex.EncodeToString(sum[:6])+".wasm")
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())

	cmd := exec.Command(goBin, append(args, "-o", tmp, pkg)...)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if output, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", nil, fmt.Errorf("build %s: %v\n%s", pkg, err, output)
	}
	wasm, err := os.ReadFile(tmp)
	if err != nil {
		return "", nil, fmt.Errorf("read build of %s: %w", pkg, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return "", nil, fmt.Errorf("move build of %s: %w", pkg, err)
	}
	return out, wasm, nil
}

// goTool prefers the go command of the toolchain running the tests, so that
// guests are built by the same Go version.
func goTool() (string, error) {
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if runtime.GOOS == "windows" {
		p += ".exe"
	}
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	p, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("find the go command: %w", err)
	}
	return p, nil
}

// CacheDir is a compilation cache for the engines of test binaries, shared
// by every test run on the machine: wazero compiles a Go guest in seconds
// (many more under the race detector), and a guest compiled by one run
// (go test) serves the next (go test -race) from the cache. wazero keys
// its entries by its version and the module's bytes.
func CacheDir() string {
	return filepath.Join(os.TempDir(), "accelnode-test-wazero-cache")
}
