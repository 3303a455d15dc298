package engine_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/internal/guesttest"
)

// shared is the engine most tests use, so that each guest is compiled once
// per test binary.
var shared *engine.Engine

func TestMain(m *testing.M) {
	ctx := context.Background()
	var err error
	shared, err = engine.New(ctx, engine.Config{HostModules: []engine.HostModule{meterModule{}}, CacheDir: guesttest.CacheDir()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := shared.Close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// meterModule is the host module "meter" with two functions: charge(i64),
// which charges its argument, and wait(), which returns when the
// invocation's context is done, as a long host call gives up at a deadline.
// When the budget refuses, charge traps, unless soft is set, in which case it
// lets the guest carry on.
type meterModule struct{ soft bool }

func (meterModule) Name() string { return "meter" }

func (h meterModule) Instantiate(ctx context.Context, r wazero.Runtime) error {
	charge := api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
		if err := engine.Charge(ctx, stack[0]); err != nil && !h.soft {
			panic(err)
		}
	})
	wait := api.GoModuleFunc(func(ctx context.Context, _ api.Module, _ []uint64) { <-ctx.Done() })
	_, err := r.NewHostModuleBuilder("meter").
		NewFunctionBuilder().
		WithGoModuleFunction(charge, []api.ValueType{api.ValueTypeI64}, nil).
		Export("charge").
		NewFunctionBuilder().
		WithGoModuleFunction(wait, nil, nil).
		Export("wait").
		Instantiate(ctx)
	return err
}

// goGuest compiles the Go guest in testdata/guests/name on e.
func goGuest(t testing.TB, e *engine.Engine, name string) *engine.Module {
	t.Helper()
	return compile(t, e, guesttest.Build(t, "github.com/accelnode/accelnode/engine/testdata/guests/"+name))
}

func compile(t testing.TB, e *engine.Engine, wasm []byte) *engine.Module {
	t.Helper()
	m, err := e.Compile(context.Background(), wasm)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// output captures a guest's stdout and stderr.
type output struct{ stdout, stderr bytes.Buffer }

func (o *output) into(inv engine.Invocation) engine.Invocation {
	inv.Stdout, inv.Stderr = &o.stdout, &o.stderr
	return inv
}

// healthy checks that e still runs a well-behaved guest.
func healthy(t *testing.T, e *engine.Engine) {
	t.Helper()
	var out output
	_, err := e.Run(context.Background(), goGuest(t, e, "echo"), out.into(engine.Invocation{Stdin: strings.NewReader("still ok")}))
	if err != nil || out.stdout.String() != "still ok" {
		t.Fatalf("healthy guest afterwards: err = %v, stdout = %q", err, out.stdout.String())
	}
}

func TestRun(t *testing.T) {
	ro := t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "a.txt"), []byte("alpha"), 0o644); err != nil {
		t.Fatal(err)
	}
	rw := t.TempDir()

	goMod := func(name string) func(*testing.T) *engine.Module {
		return func(t *testing.T) *engine.Module { return goGuest(t, shared, name) }
	}
	wasmMod := func(wasm []byte) func(*testing.T) *engine.Module {
		return func(t *testing.T) *engine.Module { return compile(t, shared, wasm) }
	}

	tests := []struct {
		name     string
		module   func(*testing.T) *engine.Module
		inv      engine.Invocation
		wantErr  error  // nil means success
		wantCode uint32 // also the *ExitError's code, if any
		want     func(t *testing.T, res engine.Result, out *output, err error)
	}{
		{
			name:   "echo stdio args env",
			module: goMod("echo"),
			inv: engine.Invocation{
				Args:  []string{"one", "two words"},
				Env:   []string{"ECHO_A=1", "ECHO_B=x=y", "OTHER=no"},
				Stdin: strings.NewReader("hello, guest"),
			},
			want: func(t *testing.T, _ engine.Result, out *output, _ error) {
				if got := out.stdout.String(); got != "hello, guest" {
					t.Errorf("stdout = %q", got)
				}
				want := "arg0=guest\narg1=one\narg2=two words\nECHO_A=1\nECHO_B=x=y\n"
				if got := out.stderr.String(); got != want {
					t.Errorf("stderr = %q, want %q", got, want)
				}
			},
		},
		{
			name:   "argv0 and nil stdio",
			module: goMod("echo"),
			inv:    engine.Invocation{Name: "prog"},
			want: func(t *testing.T, _ engine.Result, out *output, _ error) {
				if got := out.stderr.String(); got != "arg0=prog\n" {
					t.Errorf("stderr = %q", got)
				}
			},
		},
		{name: "exit 0", module: goMod("exit"), inv: engine.Invocation{Args: []string{"0"}}},
		{
			name:     "exit code",
			module:   goMod("exit"),
			inv:      engine.Invocation{Args: []string{"3"}},
			wantErr:  &engine.ExitError{Code: 3},
			wantCode: 3,
		},
		{
			name:     "go panic exits 2",
			module:   goMod("panic"),
			wantErr:  &engine.ExitError{Code: 2},
			wantCode: 2,
			want: func(t *testing.T, _ engine.Result, out *output, _ error) {
				if !strings.Contains(out.stderr.String(), "panic: guest panic for testing") {
					t.Errorf("stderr = %q", out.stderr.String())
				}
			},
		},
		{
			name:    "trap",
			module:  wasmMod(trapWasm),
			wantErr: engine.ErrTrap,
			want: func(t *testing.T, _ engine.Result, _ *output, err error) {
				if !strings.Contains(err.Error(), "wasm error: unreachable") {
					t.Errorf("error %q does not name the trap", err)
				}
			},
		},
		{name: "no exports", module: wasmMod(emptyWasm), wantErr: engine.ErrMissingExport},
		{
			name:    "missing entry",
			module:  wasmMod(trapWasm),
			inv:     engine.Invocation{Entry: "main"},
			wantErr: engine.ErrMissingExport,
			want: func(t *testing.T, _ engine.Result, _ *output, err error) {
				if !strings.Contains(err.Error(), `"main"`) {
					t.Errorf("error %q does not name the function", err)
				}
			},
		},
		{
			name:    "minimum memory above limit",
			module:  wasmMod(bigMemoryWasm),
			inv:     engine.Invocation{MemoryLimitPages: 256},
			wantErr: engine.ErrMemoryLimit,
		},
		{
			name:   "minimum memory within default limit",
			module: wasmMod(bigMemoryWasm),
			want: func(t *testing.T, res engine.Result, _ *output, _ error) {
				if res.MemoryPages != 300 {
					t.Errorf("MemoryPages = %d, want 300", res.MemoryPages)
				}
			},
		},
		{
			name:    "grow past limit",
			module:  wasmMod(growWasm),
			inv:     engine.Invocation{MemoryLimitPages: 256},
			wantErr: engine.ErrMemoryLimit,
			want: func(t *testing.T, res engine.Result, _ *output, err error) {
				if !strings.Contains(err.Error(), "memory limit of 16MiB") {
					t.Errorf("error %q does not give the limit", err)
				}
				if res.MemoryPages != 1 {
					t.Errorf("MemoryPages = %d, want 1", res.MemoryPages)
				}
			},
		},
		{
			name:   "grow within limit",
			module: wasmMod(growWasm),
			inv:    engine.Invocation{MemoryLimitPages: 301},
			want: func(t *testing.T, res engine.Result, _ *output, _ error) {
				if res.MemoryPages != 301 {
					t.Errorf("MemoryPages = %d, want 301", res.MemoryPages)
				}
			},
		},
		{
			name:     "go guest out of memory",
			module:   goMod("hog"),
			inv:      engine.Invocation{MemoryLimitPages: 256},
			wantErr:  engine.ErrMemoryLimit,
			wantCode: 2, // Go's runtime exits 2 on a fatal error
			want: func(t *testing.T, res engine.Result, out *output, _ error) {
				if res.MemoryPages > 256 {
					t.Errorf("MemoryPages = %d, over the limit", res.MemoryPages)
				}
				if !strings.Contains(out.stderr.String(), "out of memory") {
					t.Errorf("stderr does not say out of memory: %q", head(out.stderr.String(), 300))
				}
			},
		},
		{
			name:    "timeout stops a go loop",
			module:  goMod("spin"),
			inv:     engine.Invocation{Timeout: 200 * time.Millisecond},
			wantErr: engine.ErrDeadline,
			want: func(t *testing.T, res engine.Result, _ *output, err error) {
				if res.Elapsed > 2*time.Second {
					t.Errorf("stopped after %v", res.Elapsed)
				}
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error %q is not context.DeadlineExceeded", err)
				}
			},
		},
		{
			name:    "timeout stops a wasm loop",
			module:  wasmMod(spinWasm),
			inv:     engine.Invocation{Timeout: 100 * time.Millisecond},
			wantErr: engine.ErrDeadline,
		},
		{
			name:    "budget exhausted",
			module:  wasmMod(chargeWasm),
			inv:     engine.Invocation{Budget: 999},
			wantErr: engine.ErrBudgetExhausted,
			want: func(t *testing.T, res engine.Result, _ *output, _ error) {
				// The refused host charge costs nothing; the guest's own
				// instructions before it do.
				if res.UnitsUsed != res.GuestUnits || res.GuestUnits == 0 {
					t.Errorf("UnitsUsed = %d with %d guest units, want only the guest's", res.UnitsUsed, res.GuestUnits)
				}
			},
		},
		{
			name:   "budget enough",
			module: wasmMod(chargeWasm),
			// 1000 host units and the 2 of the guest's one block.
			inv: engine.Invocation{Budget: 1002},
			want: func(t *testing.T, res engine.Result, _ *output, _ error) {
				if res.UnitsUsed != 1002 || res.GuestUnits != 2 {
					t.Errorf("UnitsUsed = %d with %d guest units, want 1002 with 2", res.UnitsUsed, res.GuestUnits)
				}
			},
		},
		{
			name:   "no budget",
			module: wasmMod(chargeWasm),
			want: func(t *testing.T, res engine.Result, _ *output, _ error) {
				if res.UnitsUsed != 1000+res.GuestUnits || res.GuestUnits == 0 {
					t.Errorf("UnitsUsed = %d with %d guest units, want 1000 more than the guest's", res.UnitsUsed, res.GuestUnits)
				}
			},
		},
		{
			name:     "no file system without mounts",
			module:   goMod("files"),
			inv:      engine.Invocation{Args: []string{"ls", "/"}},
			wantErr:  &engine.ExitError{Code: 1},
			wantCode: 1,
		},
		{
			name:   "read-only mount",
			module: goMod("files"),
			inv: engine.Invocation{
				Args:   []string{"ls", "/data"},
				Mounts: []engine.Mount{{HostPath: ro, GuestPath: "/data", ReadOnly: true}},
			},
			want: func(t *testing.T, _ engine.Result, out *output, _ error) {
				if got := out.stdout.String(); got != "a.txt=alpha\n" {
					t.Errorf("stdout = %q", got)
				}
			},
		},
		{
			name:   "read-only mount refuses writes",
			module: goMod("files"),
			inv: engine.Invocation{
				Args:   []string{"write", "/data/b.txt", "beta"},
				Mounts: []engine.Mount{{HostPath: ro, GuestPath: "/data", ReadOnly: true}},
			},
			wantErr:  &engine.ExitError{Code: 1},
			wantCode: 1,
		},
		{
			name:   "writable mount",
			module: goMod("files"),
			inv: engine.Invocation{
				Args:   []string{"write", "/out/b.txt", "beta"},
				Mounts: []engine.Mount{{HostPath: rw, GuestPath: "/out"}},
			},
			want: func(t *testing.T, _ engine.Result, _ *output, _ error) {
				if b, err := os.ReadFile(filepath.Join(rw, "b.txt")); err != nil || string(b) != "beta" {
					t.Errorf("host file: %q, %v", b, err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.module(t)
			var out output
			res, err := shared.Run(context.Background(), m, out.into(tt.inv))
			checkErr(t, err, tt.wantErr)
			if res.ExitCode != tt.wantCode {
				t.Errorf("ExitCode = %d, want %d", res.ExitCode, tt.wantCode)
			}
			if tt.want != nil {
				tt.want(t, res, &out, err)
			}
			if err != nil {
				t.Logf("error: %v", tail(err.Error(), 300))
				healthy(t, shared)
			}
		})
	}
}

// checkErr compares err with want: nil, a sentinel, or an *ExitError.
func checkErr(t *testing.T, err, want error) {
	t.Helper()
	var wantExit *engine.ExitError
	switch {
	case want == nil:
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
	case errors.As(want, &wantExit):
		var exit *engine.ExitError
		if !errors.As(err, &exit) || exit.Code != wantExit.Code {
			t.Fatalf("error = %v, want exit code %d", err, wantExit.Code)
		}
	case !errors.Is(err, want):
		t.Fatalf("error = %v, want %v", err, want)
	}
}

func head(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func TestRunBadInvocation(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		inv  engine.Invocation
	}{
		{"env without =", engine.Invocation{Env: []string{"NOVALUE"}}},
		{"env without key", engine.Invocation{Env: []string{"=x"}}},
		{"mount missing", engine.Invocation{Mounts: []engine.Mount{{HostPath: filepath.Join(t.TempDir(), "nope")}}}},
		{"mount not a directory", engine.Invocation{Mounts: []engine.Mount{{HostPath: file}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := shared.Run(context.Background(), compile(t, shared, growWasm), tt.inv)
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
		})
	}
}

func TestBudgetExhaustedThoughGuestSucceeded(t *testing.T) {
	ctx := context.Background()
	e, err := engine.New(ctx, engine.Config{HostModules: []engine.HostModule{meterModule{soft: true}}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	res, err := e.Run(ctx, compile(t, e, chargeWasm), engine.Invocation{Budget: 10})
	checkErr(t, err, engine.ErrBudgetExhausted)
	if res.ExitCode != 0 || res.UnitsUsed != res.GuestUnits {
		t.Errorf("result = %+v", res)
	}
}

func TestChargeOutsideRun(t *testing.T) {
	ctx := context.Background()
	if err := engine.Charge(ctx, 1<<60); err != nil {
		t.Errorf("Charge = %v", err)
	}
	if used, budget := engine.Units(ctx); used != 0 || budget != 0 {
		t.Errorf("Units = %d, %d", used, budget)
	}
}

func TestContext(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		wantErr error
	}{
		{
			name: "cancel while running",
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(200*time.Millisecond, cancel)
				return ctx, cancel
			},
			wantErr: engine.ErrCanceled,
		},
		{
			name:    "canceled before",
			ctx:     func() (context.Context, context.CancelFunc) { return canceled, func() {} },
			wantErr: engine.ErrCanceled,
		},
		{
			name: "context deadline",
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 200*time.Millisecond)
			},
			wantErr: engine.ErrDeadline,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			res, err := shared.Run(ctx, goGuest(t, shared, "spin"), engine.Invocation{})
			checkErr(t, err, tt.wantErr)
			if res.Elapsed > 2*time.Second {
				t.Errorf("stopped after %v", res.Elapsed)
			}
			t.Logf("error: %v", err)
			healthy(t, shared)
		})
	}
}

func TestCompile(t *testing.T) {
	ctx := context.Background()
	e, err := engine.New(ctx, engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)

	mods := make([]*engine.Module, 8)
	var wg sync.WaitGroup
	for i := range mods {
		wg.Go(func() {
			var err error
			if mods[i], err = e.Compile(ctx, bytes.Clone(trapWasm)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, m := range mods[1:] {
		if m != mods[0] {
			t.Fatal("same bytes gave different modules")
		}
	}
	if n := engine.Compiles(e); n != 1 {
		t.Errorf("compiled %d times, want once", n)
	}

	m := mods[0]
	sum := sha256.Sum256(trapWasm)
	if m.Hash() != hex.EncodeToString(sum[:]) {
		t.Errorf("Hash = %s", m.Hash())
	}
	if got := m.Exports(); len(got) != 1 || got[0] != "_start" {
		t.Errorf("Exports = %v", got)
	}

	charge := compile(t, e, chargeWasm)
	if got := charge.Imports(); len(got) != 1 || got[0] != (engine.Import{Module: "meter", Name: "charge"}) {
		t.Errorf("Imports = %v", got)
	}
	if got := compile(t, e, bigMemoryWasm).MinMemoryPages(); got != 300 {
		t.Errorf("MinMemoryPages = %d", got)
	}
	// The import of an unknown module is only found when the guest runs.
	if _, err := e.Run(ctx, charge, engine.Invocation{}); err == nil || !strings.Contains(err.Error(), "meter") {
		t.Errorf("running a guest with a missing import: %v", err)
	}

	for _, bad := range [][]byte{garbageWasm, nil, trapWasm[:len(trapWasm)-1]} {
		if _, err := e.Compile(ctx, bad); !errors.Is(err, engine.ErrMalformedModule) {
			t.Errorf("Compile(%q) = %v, want ErrMalformedModule", bad, err)
		}
	}
}

func TestCacheDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e, err := engine.New(ctx, engine.Config{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Run(ctx, compile(t, e, growWasm), engine.Invocation{}); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var files int
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, _ error) error {
		if d != nil && !d.IsDir() {
			files++
		}
		return nil
	})
	if files == 0 {
		t.Error("nothing cached")
	}
}

func TestNew(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		cfg  engine.Config
	}{
		{"duplicate host module", engine.Config{HostModules: []engine.HostModule{meterModule{}, meterModule{}}}},
		{"host module named like wasi", engine.Config{HostModules: []engine.HostModule{named("wasi_snapshot_preview1")}}},
		{"host module instantiating another name", engine.Config{HostModules: []engine.HostModule{named("other")}}},
		{"nil host module", engine.Config{HostModules: []engine.HostModule{nil}}},
		{"cache dir is a file", engine.Config{CacheDir: "/dev/null"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := engine.New(ctx, tt.cfg)
			if err == nil {
				e.Close(ctx)
				t.Fatal("no error")
			}
			t.Log(err)
		})
	}
}

// named claims a name but instantiates "meter".
type named string

func (n named) Name() string { return string(n) }
func (named) Instantiate(ctx context.Context, r wazero.Runtime) error {
	return meterModule{}.Instantiate(ctx, r)
}

func TestClose(t *testing.T) {
	ctx := context.Background()
	e, err := engine.New(ctx, engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	m := compile(t, e, spinWasm)
	done := make(chan error)
	go func() {
		_, err := e.Run(ctx, m, engine.Invocation{})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		checkErr(t, err, engine.ErrCanceled)
		checkErr(t, err, engine.ErrClosed)
	case <-time.After(2 * time.Second):
		t.Fatal("running guest not stopped by Close")
	}
	if _, err := e.Run(ctx, m, engine.Invocation{}); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Run after Close = %v", err)
	}
	if _, err := e.Compile(ctx, trapWasm); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Compile after Close = %v", err)
	}
	if _, err := shared.Run(ctx, m, engine.Invocation{}); err == nil {
		t.Error("ran a module of another engine")
	}
}

// TestHammer runs many echo guests at once, each with its own input.
func TestHammer(t *testing.T) {
	m := goGuest(t, shared, "echo")
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 4 {
				in := fmt.Sprintf("goroutine %d run %d %s", g, i, strings.Repeat("x", 1000*g+i))
				var out output
				_, err := shared.Run(context.Background(), m, out.into(engine.Invocation{
					Stdin: strings.NewReader(in),
					Args:  []string{fmt.Sprint(g, i)},
				}))
				if err != nil {
					t.Error(err)
					return
				}
				if out.stdout.String() != in || !strings.Contains(out.stderr.String(), fmt.Sprintf("arg1=%d %d\n", g, i)) {
					t.Errorf("goroutine %d run %d: wrong output %q / %q", g, i, tail(out.stdout.String(), 40), out.stderr.String())
				}
			}
		})
	}
	wg.Wait()
	checkGoroutines(t, before)
}

// TestNoLeaks checks that guests stopped by a deadline leave no goroutines
// behind.
func TestNoLeaks(t *testing.T) {
	m := compile(t, shared, spinWasm)
	before := runtime.NumGoroutine()
	for range 5 {
		_, err := shared.Run(context.Background(), m, engine.Invocation{Timeout: 20 * time.Millisecond})
		checkErr(t, err, engine.ErrDeadline)
	}
	checkGoroutines(t, before)
}

func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClock(t *testing.T) {
	read := func(system bool) int64 {
		t.Helper()
		var out output
		if _, err := shared.Run(context.Background(), goGuest(t, shared, "clock"), out.into(engine.Invocation{SystemClock: system})); err != nil {
			t.Fatal(err)
		}
		var unix int64
		if _, err := fmt.Sscan(out.stdout.String(), &unix); err != nil {
			t.Fatalf("clock guest printed %q", out.stdout.String())
		}
		return unix
	}
	if a, b := read(false), read(false); a != b {
		t.Errorf("deterministic clock read %d, then %d", a, b)
	}
	if got, now := read(true), time.Now().Unix(); got < now-60 || got > now+60 {
		t.Errorf("system clock read %d, host says %d", got, now)
	}
}

// TestUninterruptibleCacheIsSeparate checks that code compiled without loop
// checks, cached on disk, never serves an engine that needs them: the
// deadline must still stop a spinning guest.
func TestUninterruptibleCacheIsSeparate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fast, err := engine.New(ctx, engine.Config{CacheDir: dir, Uninterruptible: true})
	if err != nil {
		t.Fatal(err)
	}
	compile(t, fast, spinWasm)
	if err := fast.Close(ctx); err != nil {
		t.Fatal(err)
	}
	safe, err := engine.New(ctx, engine.Config{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer safe.Close(ctx)
	_, err = safe.Run(ctx, compile(t, safe, spinWasm), engine.Invocation{Timeout: 200 * time.Millisecond})
	checkErr(t, err, engine.ErrDeadline)
}

// TestDeadlineThenExit checks that a guest whose host call gave up at the
// deadline, and which then exits with code 0 without running a loop that
// would notice the deadline itself, is still reported as out of time.
func TestDeadlineThenExit(t *testing.T) {
	res, err := shared.Run(context.Background(), compile(t, shared, waitThenExitWasm), engine.Invocation{Timeout: 100 * time.Millisecond})
	checkErr(t, err, engine.ErrDeadline)
	if res.ExitCode != 0 {
		t.Errorf("exit code %d", res.ExitCode)
	}
	healthy(t, shared)
}

// TestForget drops a module, once while idle and once while a run uses
// it: the run finishes as it would have, later runs are refused with
// ErrForgotten, and compiling the bytes again gives a new module.
func TestForget(t *testing.T) {
	e, err := engine.New(context.Background(), engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())

	idle := compile(t, e, trapWasm)
	e.Forget(idle)
	e.Forget(idle) // twice is harmless
	_, err = e.Run(context.Background(), idle, engine.Invocation{})
	checkErr(t, err, engine.ErrForgotten)
	before := engine.Compiles(e)
	again := compile(t, e, trapWasm)
	if again == idle || engine.Compiles(e) != before+1 {
		t.Errorf("compiling forgotten bytes gave the old module, or compiled %d times", engine.Compiles(e)-before)
	}
	_, err = e.Run(context.Background(), again, engine.Invocation{})
	checkErr(t, err, engine.ErrTrap)

	busy := compile(t, e, spinWasm)
	done := make(chan error, 1)
	go func() {
		_, err := e.Run(context.Background(), busy, engine.Invocation{Timeout: 300 * time.Millisecond})
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	e.Forget(busy)
	checkErr(t, <-done, engine.ErrDeadline)
	_, err = e.Run(context.Background(), busy, engine.Invocation{})
	checkErr(t, err, engine.ErrForgotten)
}
