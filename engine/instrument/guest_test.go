package instrument

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// loopGuest is a Go guest with the two tight loops the metering overhead is
// judged on: a naive float32 matmul and a byte-parsing loop. It prints
// checksums, so that runs can be compared.
const loopGuest = `package main

import (
	"fmt"
	"math"
	"os"
	"strconv"
)

func matmul(n int) float32 {
	a, b, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	for i := range a {
		a[i] = float32(i%7) - 3
		b[i] = float32(i%5) * 0.5
	}
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for k := 0; k < n; k++ {
				s += a[i*n+k] * b[k*n+j]
			}
			c[i*n+j] = s
		}
	}
	var sum float32
	for _, v := range c {
		sum += v
	}
	return sum
}

func parse(n int) int {
	buf := make([]byte, 0, n)
	for i := 0; len(buf) < n; i++ {
		buf = strconv.AppendInt(buf, int64(i*7919%100000), 10)
		buf = append(buf, ',')
	}
	total, cur := 0, 0
	for _, c := range buf {
		if c >= '0' && c <= '9' {
			cur = cur*10 + int(c-'0')
		} else {
			total += cur
			cur = 0
		}
	}
	return total
}

func main() {
	n, _ := strconv.Atoi(os.Args[2])
	switch os.Args[1] {
	case "matmul":
		fmt.Println(math.Float32bits(matmul(n)))
	case "parse":
		fmt.Println(parse(n))
	case "nan":
		z := float32(n - n)
		fmt.Printf("%#x\n", math.Float32bits(z/z))
	}
}
`

var (
	guestOnce sync.Once
	guestBin  []byte
	guestErr  error
)

// buildGo builds a Go guest for wasip1 from a package directory.
func buildGo(t testing.TB, dir, out string) []byte {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", dir, err, msg)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func loopGuestBin(t testing.TB) []byte {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a Go guest")
	}
	guestOnce.Do(func() {
		dir, err := os.MkdirTemp("", "instrument-guest")
		if err != nil {
			guestErr = err
			return
		}
		defer os.RemoveAll(dir)
		os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module guest\n\ngo 1.22\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "main.go"), []byte(loopGuest), 0o644)
		cmd := exec.Command("go", "build", "-o", "g.wasm", ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOFLAGS=-mod=mod")
		if msg, err := cmd.CombinedOutput(); err != nil {
			guestErr = &buildError{err, msg}
			return
		}
		guestBin, guestErr = os.ReadFile(filepath.Join(dir, "g.wasm"))
	})
	if guestErr != nil {
		t.Fatal(guestErr)
	}
	return guestBin
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + string(e.out) }

// wasiRun compiles bin once and returns a function that runs it with args,
// returning its stdout and the units it used.
func wasiRun(t testing.TB, bin []byte) func(args ...string) (string, int64) {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	host := unlimited()
	b := rt.NewHostModuleBuilder(ImportModule)
	b.NewFunctionBuilder().WithGoModuleFunction(goRefill(host), i64s, i64s).Export(ImportName)
	if _, err := b.Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	cm, err := rt.CompileModule(ctx, bin)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return func(args ...string) (string, int64) {
		var out bytes.Buffer
		host.granted = 0
		cfg := wazero.NewModuleConfig().WithName("").WithStdout(&out).WithStderr(os.Stderr).WithArgs(append([]string{"g"}, args...)...)
		m, err := rt.InstantiateModule(ctx, cm, cfg)
		if err != nil {
			t.Fatalf("run %v: %v", args, err)
		}
		var used int64
		if g := m.ExportedGlobal(FuelExport); g != nil {
			used = host.granted - int64(g.Get())
		}
		m.Close(ctx)
		return out.String(), used
	}
}

// A Go guest runs with the same output instrumented as not, and with the
// same count every time.
func TestGoGuest(t *testing.T) {
	bin := loopGuestBin(t)
	plain := wasiRun(t, bin)
	for _, opt := range []Options{{}, {Meter: true}, {Meter: true, CanonicalNaNs: true}} {
		out, err := Instrument(bin, opt)
		if err != nil {
			t.Fatalf("%+v: %v", opt, err)
		}
		run := wasiRun(t, out)
		for _, args := range [][]string{{"matmul", "20"}, {"parse", "5000"}} {
			want, _ := plain(args...)
			got, used := run(args...)
			if got != want {
				t.Errorf("%+v %v: output %q, want %q", opt, args, got, want)
			}
			_, again := run(args...)
			if opt.Meter && (used <= 0 || used != again) {
				t.Errorf("%+v %v: used %d then %d, want the same positive count", opt, args, used, again)
			}
		}
		got, _ := run("nan", "1")
		if opt.CanonicalNaNs && got != "0x7fc00000\n" {
			t.Errorf("%+v: 0/0 in Go printed %q, want 0x7fc00000", opt, got)
		}
	}
}

// Every example guest the repository builds decodes, encodes and
// instruments to a module wazero compiles.
func TestRepoGuests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the repository's guests")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, pkg := range []string{"examples/matmul", "bench/guest"} {
		t.Run(pkg, func(t *testing.T) {
			bin := buildGo(t, filepath.Join(root, pkg), filepath.Join(dir, filepath.Base(pkg)+".wasm"))
			ctx := context.Background()
			rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
			defer rt.Close(ctx)
			for _, opt := range []Options{{}, {Meter: true, CanonicalNaNs: true}} {
				out, err := Instrument(bin, opt)
				if err != nil {
					t.Fatalf("%+v: %v", opt, err)
				}
				if _, err := rt.CompileModule(ctx, out); err != nil {
					t.Fatalf("%+v: compile: %v", opt, err)
				}
			}
		})
	}
}
