// Package engine runs WebAssembly guests that target WASI preview 1 (for
// example Go programs built with GOOS=wasip1 GOARCH=wasm) on wazero, with a
// memory limit, a deadline and a budget of host compute units per
// invocation. Host modules, such as the accelerator functions, are handed
// to New; the engine itself knows none of them.
package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/accelnode/accelnode/engine/instrument"
)

// HostModule is a module of host functions that guests import by Name.
// Instantiate must define it in r under that name; it is called once per
// Engine, and the functions it defines are shared by every invocation, so
// per-invocation state belongs in the context they receive.
type HostModule interface {
	Name() string
	Instantiate(ctx context.Context, r wazero.Runtime) error
}

// Config configures an Engine.
type Config struct {
	HostModules []HostModule
	// CacheDir, if set, keeps compiled code on disk across processes.
	// Empty means compiled code lives in memory only.
	CacheDir string
	// Guest says how guests are rewritten at load (package
	// engine/instrument): GuestStrict, the default, meters their
	// instructions against the invocation's budget and canonicalises their
	// NaNs; GuestOff only counts their instructions, so that a deadline can
	// still stop them.
	Guest GuestDeterminism
	// Uninterruptible runs guests as they are, without instrumentation: no
	// instruction count, no canonical NaNs, and nothing that lets a
	// deadline or cancellation stop a guest that never calls the host. Nor
	// can Go's garbage collector stop such a guest's goroutine, so while it
	// runs every stop-the-world of the process waits for it: instrumented
	// guests cross into the host every few milliseconds, which bounds that
	// wait. It is the baseline of the benchmarks, and for trusted, short
	// guests only.
	Uninterruptible bool

	// closeOnContextDone turns on wazero's check of the context at every
	// loop iteration, the way the engine stopped guests before they were
	// instrumented. Set only by the benchmarks (export_test.go), which
	// compare it against the instrumentation.
	closeOnContextDone bool
}

// GuestDeterminism is how an engine instruments guests.
type GuestDeterminism string

const (
	// GuestStrict meters every instruction against the budget and rewrites
	// every NaN a float instruction makes to the canonical NaN, so that
	// the count, the point where a budget runs out and the guest's float
	// bits are the same on every machine.
	GuestStrict GuestDeterminism = "strict"
	// GuestOff counts instructions only to check deadlines; they are
	// reported but not charged, and NaNs are left as the CPU makes them.
	GuestOff GuestDeterminism = "off"
)

// ParseGuestDeterminism reads "strict" or "off".
func ParseGuestDeterminism(s string) (GuestDeterminism, error) {
	switch g := GuestDeterminism(s); g {
	case GuestStrict, GuestOff:
		return g, nil
	}
	return "", fmt.Errorf("guest determinism %q is not strict or off", s)
}

// Engine compiles and runs guests. It is safe for concurrent use.
type Engine struct {
	rt    wazero.Runtime
	cache wazero.CompilationCache // nil without CacheDir
	// instr is how guests are instrumented, nil if they are not; instrDir
	// keeps instrumented binaries across processes (empty: in memory only).
	instr       *instrument.Options
	chargeGuest bool
	instrDir    string

	mu       sync.Mutex
	closed   bool
	modules  map[string]*compilation
	running  sync.WaitGroup
	stop     context.Context // canceled, with cause ErrClosed, by Close
	stopRuns context.CancelCauseFunc

	compiles atomic.Int64 // for tests
}

// compilation is one Compile of some bytes, shared by concurrent callers.
type compilation struct {
	done chan struct{}
	mod  *Module
	err  error
}

// New creates an Engine: one wazero runtime with WASI preview 1 and
// cfg.HostModules instantiated in it.
func New(ctx context.Context, cfg Config) (_ *Engine, err error) {
	// The default config picks the compiler where wazero supports it and
	// the interpreter elsewhere. A guest stuck in a loop is stopped by its
	// instrumentation, which crosses into the host to check the context
	// every deadlineChunk units; wazero's own check at every loop
	// iteration (WithCloseOnContextDone) costs about nine times that.
	rc := wazero.NewRuntimeConfig()
	if cfg.closeOnContextDone {
		rc = rc.WithCloseOnContextDone(true)
	}
	var cache wazero.CompilationCache
	if cfg.CacheDir != "" {
		// wazero's cache is keyed by the bytes it compiles, which differ
		// with the instrumentation, so engines configured differently can
		// share a directory.
		cache, err = wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("open compilation cache in %s: %w", cfg.CacheDir, err)
		}
		rc = rc.WithCompilationCache(cache)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	defer func() {
		if err != nil {
			_ = rt.Close(ctx)
			if cache != nil {
				_ = cache.Close(ctx)
			}
		}
	}()

	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return nil, fmt.Errorf("instantiate wasi: %w", err)
	}
	seen := map[string]bool{wasi_snapshot_preview1.ModuleName: true, instrument.ImportModule: true}
	e := &Engine{rt: rt, cache: cache, modules: map[string]*compilation{}}
	if !cfg.Uninterruptible {
		guest := cfg.Guest
		if guest == "" {
			guest = GuestStrict
		}
		if _, err := ParseGuestDeterminism(string(guest)); err != nil {
			return nil, err
		}
		e.instr = &instrument.Options{Meter: true, CanonicalNaNs: guest == GuestStrict}
		e.chargeGuest = guest == GuestStrict
		if cfg.CacheDir != "" {
			e.instrDir = filepath.Join(cfg.CacheDir, "instrumented")
		}
		if err := instantiateMeter(ctx, rt); err != nil {
			return nil, err
		}
	}
	for _, hm := range cfg.HostModules {
		if hm == nil {
			return nil, errors.New("nil host module")
		}
		name := hm.Name()
		if name == "" || seen[name] {
			return nil, fmt.Errorf("host module name %q is empty or taken", name)
		}
		seen[name] = true
		if err := safely(func() error { return hm.Instantiate(ctx, rt) }); err != nil {
			return nil, fmt.Errorf("instantiate host module %s: %w", name, err)
		}
		if rt.Module(name) == nil {
			return nil, fmt.Errorf("host module %s did not instantiate a module of that name", name)
		}
	}

	e.stop, e.stopRuns = context.WithCancelCause(context.Background())
	return e, nil
}

// Close stops the guests still running (they fail with ErrCanceled), waits
// for them until ctx is done, and releases the runtime. Later calls to
// Compile and Run fail with ErrClosed.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()

	e.stopRuns(ErrClosed)
	waited := make(chan struct{})
	go func() {
		e.running.Wait()
		close(waited)
	}()
	var err error
	select {
	case <-waited:
	case <-ctx.Done():
		// A guest blocked in a host function that ignores its context
		// cannot be stopped from here; close the runtime under it.
		err = fmt.Errorf("close engine: guests still running: %w", ctx.Err())
	}
	err = errors.Join(err, e.rt.Close(ctx))
	if e.cache != nil {
		err = errors.Join(err, e.cache.Close(ctx))
	}
	return err
}

// begin registers a call in progress, so that Close waits for it.
func (e *Engine) begin() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	e.running.Add(1)
	return nil
}

// Module is a compiled guest. It is read-only and shared by invocations.
type Module struct {
	engine   *Engine
	hash     string
	key      string // in engine.modules: the hash, with "reactor:" before it for a reactor
	compiled wazero.CompiledModule
	// runs counts the runs using compiled, and forgotten says Forget was
	// called: the code goes when both say so. Guarded by engine.mu.
	runs      int
	forgotten bool
	minPages  uint32
	imports   []Import
	exports   []string
	// reactor is set by CompileReactor; globals are the mutable globals
	// it exported for snapshots.
	reactor bool
	globals []global
}

// Import is a function a guest imports.
type Import struct {
	Module, Name string
}

// Hash is the hex SHA-256 of the module's bytes.
func (m *Module) Hash() string { return m.hash }

// Forget drops m from the engine's modules, so that a program that keeps
// compiling new modules (a service) can bound the memory their code takes.
// The code is released once no run uses it; Run then fails with
// ErrForgotten, and Compile of the same bytes compiles them again.
func (e *Engine) Forget(m *Module) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if m.forgotten {
		return
	}
	m.forgotten = true
	if c := e.modules[m.key]; c != nil && c.mod == m {
		delete(e.modules, m.key)
	}
	if m.runs == 0 {
		m.compiled.Close(context.Background())
	}
}

// acquire marks a run of m, or refuses a forgotten module.
func (e *Engine) acquire(m *Module) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if m.forgotten {
		return fmt.Errorf("run guest %s: %w", m.hash, ErrForgotten)
	}
	m.runs++
	return nil
}

// release ends a run of m, releasing the code of a forgotten module that
// no run uses any more.
func (e *Engine) release(m *Module) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m.runs--
	if m.forgotten && m.runs == 0 {
		m.compiled.Close(context.Background())
	}
}

// Imports lists the functions the guest imports, in import order.
func (m *Module) Imports() []Import { return slices.Clone(m.imports) }

// Exports lists the names of the functions the guest exports, sorted.
func (m *Module) Exports() []string { return slices.Clone(m.exports) }

// MinMemoryPages is the number of 64 KiB pages of memory the guest needs
// to start.
func (m *Module) MinMemoryPages() uint32 { return m.minPages }

// Compile compiles wasm, or returns the Module already compiled from the
// same bytes. Concurrent calls with the same bytes compile once. Bytes that
// are not a valid module give an error wrapping ErrMalformedModule.
func (e *Engine) Compile(ctx context.Context, wasm []byte) (*Module, error) {
	return e.compileOnce(ctx, wasm, false)
}

// compileOnce compiles wasm as a command or a reactor, once for concurrent
// callers and for later ones until Forget.
func (e *Engine) compileOnce(ctx context.Context, wasm []byte, reactor bool) (*Module, error) {
	if err := e.begin(); err != nil {
		return nil, err
	}
	defer e.running.Done()

	sum := sha256.Sum256(wasm)
	hash := hex.EncodeToString(sum[:])
	key := hash
	if reactor {
		key = "reactor:" + hash
	}
	e.mu.Lock()
	c, ok := e.modules[key]
	if !ok {
		c = &compilation{done: make(chan struct{})}
		e.modules[key] = c
	}
	e.mu.Unlock()

	if ok {
		select {
		case <-c.done:
			return c.mod, c.err
		case <-ctx.Done():
			return nil, fmt.Errorf("compile guest: %w", ctx.Err())
		}
	}

	c.mod, c.err = e.compile(ctx, key, hash, wasm, reactor)
	if c.err != nil {
		// Forget failures, so that a retry compiles again.
		e.mu.Lock()
		delete(e.modules, key)
		e.mu.Unlock()
	}
	close(c.done)
	return c.mod, c.err
}

func (e *Engine) compile(ctx context.Context, key, hash string, wasm []byte, reactor bool) (*Module, error) {
	e.compiles.Add(1)
	var globals []global
	if reactor {
		rb, err := prepareReactor(wasm)
		if err != nil {
			return nil, err
		}
		wasm, globals = rb.bin, rb.globals
	}
	if e.instr != nil {
		var err error
		if wasm, err = e.instrument(key, wasm); err != nil {
			return nil, newError(ErrMalformedModule, err, "invalid guest module")
		}
	}
	var compiled wazero.CompiledModule
	err := safely(func() (err error) {
		compiled, err = e.rt.CompileModule(ctx, wasm)
		return err
	})
	if err != nil {
		return nil, newError(ErrMalformedModule, err, "invalid guest module")
	}
	minPages, _, err := minMemoryPages(wasm)
	if err != nil {
		_ = compiled.Close(ctx)
		return nil, newError(ErrMalformedModule, err, "invalid guest module")
	}
	m := &Module{
		engine:   e,
		hash:     hash,
		key:      key,
		compiled: compiled,
		minPages: minPages,
		reactor:  reactor,
		globals:  globals,
	}
	for _, f := range compiled.ImportedFunctions() {
		mod, name, _ := f.Import()
		if mod == instrument.ImportModule {
			continue // the instrumentation's own
		}
		m.imports = append(m.imports, Import{Module: mod, Name: name})
	}
	for name := range compiled.ExportedFunctions() {
		m.exports = append(m.exports, name)
	}
	slices.Sort(m.exports)
	return m, nil
}

// safely runs f, turning a panic into an error.
func safely(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

// splitEnv splits "KEY=VALUE".
func splitEnv(kv string) (string, string, error) {
	k, v, ok := strings.Cut(kv, "=")
	if !ok || k == "" {
		return "", "", fmt.Errorf("environment entry %q is not KEY=VALUE", kv)
	}
	return k, v, nil
}
