package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/accelnode/accelnode/internal/bytesize"
)

// CompileReactor compiles wasm as a reactor: a module whose instance lives
// across calls of its exported functions (its methods), such as a Go
// program built with -buildmode=c-shared. It refuses, with an error
// wrapping ErrNotReactor, a command (a module that exports _start), a
// module that exports a name beginning with GlobalPrefix, one with a
// mutable global of a type a Snapshot cannot hold, and one whose code
// changes a table (table.set, table.grow, table.fill, table.copy,
// table.init, elem.drop), since tables are not in a Snapshot.
//
// Every mutable global, exported or not, is exported under GlobalPrefix so
// that Snapshot can save it. Like Compile, it compiles the same bytes once.
func (e *Engine) CompileReactor(ctx context.Context, wasm []byte) (*Module, error) {
	return e.compileOnce(ctx, wasm, true)
}

// Method checks that the reactor m has a method called name: an exported
// function of type () -> () or () -> i32 other than _initialize. The
// error wraps ErrBadMethod.
func (m *Module) Method(name string) error {
	if !m.reactor {
		return newError(ErrBadMethod, nil, "guest %s was not compiled as a reactor", m.hash)
	}
	def, ok := m.compiled.ExportedFunctions()[name]
	switch {
	case !ok || name == "_initialize":
		return newError(ErrBadMethod, nil, "guest has no method %q", name)
	case len(def.ParamTypes()) != 0 || len(def.ResultTypes()) > 1 || len(def.ResultTypes()) == 1 && def.ResultTypes()[0] != api.ValueTypeI32:
		return newError(ErrBadMethod, nil, "guest function %q is not a method: it must take nothing and return nothing or an i32", name)
	}
	return nil
}

// ReactorConfig sets up a reactor's instance. Its standard input is empty
// and it sees no files.
type ReactorConfig struct {
	Name string   // argv[0]; empty means "guest"
	Args []string // argv[1:]
	Env  []string // "KEY=VALUE"
	// Stdout and Stderr receive what every call writes; nil discards it.
	Stdout, Stderr io.Writer
	// MemoryLimitPages bounds the instance's memory for its whole life;
	// 0 means DefaultMemoryLimitPages.
	MemoryLimitPages uint32
	// SystemClock is as in Invocation.
	SystemClock bool
}

// CallLimits bound one call of a reactor, as an Invocation's bound a run.
type CallLimits struct {
	Timeout time.Duration // 0 means only ctx's own deadline
	Budget  uint64        // host compute units; 0 means unlimited
}

// Snapshot is the state of a reactor's instance that its code can change:
// its linear memory and its mutable globals. Tables are not in it (see
// CompileReactor), nor the state of WASI, which a reactor without files
// or standard input does not keep.
type Snapshot struct {
	Pages   uint32    // size of the memory, in 64 KiB pages
	Memory  []Segment // the bytes that are not zero, by ascending offset
	Globals []uint64  // the mutable globals in index order, as api.Global.Get gives them
}

// Segment is a run of memory starting at Offset.
type Segment struct {
	Offset uint32
	Data   []byte
}

// Reactor is a running instance of a reactor. Its calls run one at a time:
// it is not safe for concurrent use. After a call fails, the instance is
// no longer usable: its memory may be half-changed, or wazero has closed
// it. Restore a Snapshot into a new one instead.
type Reactor struct {
	e      *Engine
	m      *Module
	mod    api.Module
	alloc  *limitedAllocator
	limit  uint32
	broken error // why the instance may not be called any more
}

// StartReactor instantiates m, compiled by CompileReactor. With snap nil it
// then calls _initialize, if m exports it, under lim; otherwise it restores
// snap instead, and _initialize is not called. Its Result describes the
// instantiation and _initialize, and its error says, as Run's does, why
// they failed.
func (e *Engine) StartReactor(ctx context.Context, m *Module, cfg ReactorConfig, snap *Snapshot, lim CallLimits) (*Reactor, Result, error) {
	if m == nil || m.engine != e {
		return nil, Result{}, errors.New("start reactor: module was not compiled by this engine")
	}
	if !m.reactor {
		return nil, Result{}, newError(ErrNotReactor, nil, "start reactor: guest %s was not compiled by CompileReactor", m.hash)
	}
	limit := cfg.MemoryLimitPages
	if limit == 0 {
		limit = DefaultMemoryLimitPages
	}
	limit = min(limit, MaxMemoryPages)
	if m.minPages > limit {
		return nil, Result{}, newError(ErrMemoryLimit, nil,
			"guest needs %s of memory to start, more than its memory limit of %s", bytesize.Format(int64(m.minPages)*pageSize), bytesize.Format(int64(limit)*pageSize))
	}
	if snap != nil && snap.Pages > limit {
		return nil, Result{}, newError(ErrMemoryLimit, nil,
			"snapshot holds %s of memory, more than the memory limit of %s", bytesize.Format(int64(snap.Pages)*pageSize), bytesize.Format(int64(limit)*pageSize))
	}
	modCfg, err := moduleConfig(Invocation{Name: cfg.Name, Args: cfg.Args, Env: cfg.Env, Stdout: cfg.Stdout, Stderr: cfg.Stderr, SystemClock: cfg.SystemClock})
	if err != nil {
		return nil, Result{}, err
	}
	if err := e.acquire(m); err != nil {
		return nil, Result{}, err
	}
	r := &Reactor{e: e, m: m, alloc: &limitedAllocator{limit: uint64(limit) * pageSize}, limit: limit}
	var instErr error
	res, err := r.guard(ctx, lim, func(ctx context.Context) error {
		mod, err := e.rt.InstantiateModule(experimental.WithMemoryAllocator(ctx, r.alloc), m.compiled, modCfg)
		if err != nil {
			instErr = err
			return err
		}
		r.mod = mod
		bindFuel(ctx, mod)
		if snap != nil {
			return r.restore(snap)
		}
		if init := mod.ExportedFunction("_initialize"); init != nil {
			_, err := init.Call(ctx)
			return err
		}
		return nil
	})
	if err != nil {
		var exit *ExitError
		if instErr != nil && !errors.Is(err, ErrDeadline) && !errors.Is(err, ErrCanceled) && !errors.As(err, &exit) {
			err = fmt.Errorf("instantiate guest: %w", instErr)
		}
		r.Close(ctx)
		return nil, res, err
	}
	return r, res, nil
}

// Call calls the method name (see Module.Method) under lim and returns its
// i32 result, 0 for a method that returns nothing. The error says, as
// Run's does, why the call did not succeed; a guest that exits during a
// call, even with code 0, fails with an *ExitError. After an error the
// reactor refuses further calls.
func (r *Reactor) Call(ctx context.Context, name string, lim CallLimits) (uint32, Result, error) {
	if r.broken != nil {
		return 0, Result{}, fmt.Errorf("call %s: %w", name, r.broken)
	}
	if err := r.m.Method(name); err != nil {
		return 0, Result{}, err
	}
	var code uint32
	res, err := r.guard(ctx, lim, func(ctx context.Context) error {
		out, err := r.mod.ExportedFunction(name).Call(ctx)
		if err == nil && len(out) == 1 {
			code = api.DecodeU32(out[0])
		}
		return err
	})
	if err != nil {
		return 0, res, err
	}
	return code, res, nil
}

// guard runs f, guest code, under lim as Run runs an invocation: with its
// own deadline, budget and cancellation, stopped when the engine closes,
// its failure classified. Any failure breaks the reactor.
func (r *Reactor) guard(ctx context.Context, lim CallLimits, f func(context.Context) error) (res Result, err error) {
	if err := r.e.begin(); err != nil {
		return res, err
	}
	defer r.e.running.Done()
	defer func() {
		if err != nil && r.broken == nil {
			r.broken = fmt.Errorf("an earlier call failed: %w", err)
		}
	}()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopOnClose := context.AfterFunc(r.e.stop, func() { cancel(ErrClosed) })
	defer stopOnClose()
	if lim.Timeout > 0 {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeoutCause(ctx, lim.Timeout, errTimeout)
		defer cancelTimeout()
	}
	mtr := &meter{budget: lim.Budget, chargeGuest: r.e.chargeGuest}
	r.alloc.refused.Store(false)
	inv := Invocation{Timeout: lim.Timeout}

	start := time.Now()
	defer func() {
		res.Elapsed = time.Since(start)
		res.UnitsUsed = mtr.used.Load()
		res.GuestUnits = mtr.guest.Load()
		res.MemoryPages = r.alloc.pages.Load()
	}()
	if ctx.Err() != nil {
		_, err = classify(ctx, ctx.Err(), mtr, r.alloc, r.limit, inv)
		return res, err
	}
	res.Started = true
	ctx = withMeter(ctx, mtr)
	if r.mod != nil {
		// The instance keeps its fuel global from call to call; this
		// call's meter starts it empty.
		bindFuel(ctx, r.mod)
	}
	callErr := safely(func() error { return f(ctx) })
	mtr.finish()
	var exit *sys.ExitError
	exited := errors.As(callErr, &exit) && exit.ExitCode() != sys.ExitCodeDeadlineExceeded && exit.ExitCode() != sys.ExitCodeContextCanceled
	res.ExitCode, err = classify(ctx, callErr, mtr, r.alloc, r.limit, inv)
	switch {
	case err != nil:
	case exited:
		// A reactor that exits is gone, whatever its code.
		err = &ExitError{Code: exit.ExitCode()}
	case r.mod != nil && r.mod.IsClosed():
		err = newError(ErrCanceled, nil, "guest instance was closed during the call")
	}
	return res, err
}

// restore fills a new instance's memory and globals from snap.
func (r *Reactor) restore(snap *Snapshot) error {
	if len(snap.Globals) != len(r.m.globals) {
		return fmt.Errorf("snapshot holds %d globals, the guest has %d", len(snap.Globals), len(r.m.globals))
	}
	mem := r.mod.Memory()
	switch {
	case mem == nil && (snap.Pages > 0 || len(snap.Memory) > 0):
		return errors.New("snapshot holds memory, the guest has none")
	case mem != nil:
		have := mem.Size() / pageSize
		if snap.Pages < have {
			return fmt.Errorf("snapshot holds %d pages of memory, fewer than the guest starts with (%d)", snap.Pages, have)
		}
		if snap.Pages > have {
			if _, ok := mem.Grow(snap.Pages - have); !ok {
				return newError(ErrMemoryLimit, nil, "memory of %d pages does not fit the memory limit of %d", snap.Pages, r.limit)
			}
		}
		buf, _ := mem.Read(0, mem.Size())
		end := uint64(0)
		for _, s := range snap.Memory {
			if uint64(s.Offset) < end || uint64(s.Offset)+uint64(len(s.Data)) > uint64(len(buf)) {
				return fmt.Errorf("snapshot segment at %d of %d bytes is out of order or outside memory", s.Offset, len(s.Data))
			}
			clearNonZero(buf[end:s.Offset])
			copy(buf[s.Offset:], s.Data)
			end = uint64(s.Offset) + uint64(len(s.Data))
		}
		clearNonZero(buf[end:])
	}
	for i, g := range r.m.globals {
		mg, ok := r.mod.ExportedGlobal(g.name).(api.MutableGlobal)
		if !ok {
			return fmt.Errorf("global %s is not a mutable export", g.name)
		}
		mg.Set(snap.Globals[i])
	}
	return nil
}

// block is the unit in which memory is scanned for zeros.
const block = 4096

var zeroBlock [block]byte

// clearNonZero zeroes b, writing only the blocks that are not zero
// already, so that untouched pages of a mapping stay uncommitted.
func clearNonZero(b []byte) {
	for len(b) > 0 {
		n := min(len(b), block)
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			clear(b[:n])
		}
		b = b[n:]
	}
}

// Snapshot copies the instance's memory and mutable globals. The copy
// keeps only blocks that are not zero, so a sparse memory takes little.
func (r *Reactor) Snapshot() (*Snapshot, error) {
	if r.broken != nil {
		return nil, fmt.Errorf("snapshot: %w", r.broken)
	}
	snap := &Snapshot{Globals: make([]uint64, len(r.m.globals))}
	for i, g := range r.m.globals {
		snap.Globals[i] = r.mod.ExportedGlobal(g.name).Get()
	}
	mem := r.mod.Memory()
	if mem == nil {
		return snap, nil
	}
	buf, _ := mem.Read(0, mem.Size())
	snap.Pages = uint32(len(buf) / pageSize)
	// Two passes: find the runs of blocks that hold something, then copy
	// them into one allocation.
	type run struct{ start, end int }
	var runs []run
	total := 0
	for off := 0; off < len(buf); off += block {
		end := min(off+block, len(buf))
		if bytes.Equal(buf[off:end], zeroBlock[:end-off]) {
			continue
		}
		if n := len(runs); n > 0 && runs[n-1].end == off {
			runs[n-1].end = end
		} else {
			runs = append(runs, run{off, end})
		}
		total += end - off
	}
	data := make([]byte, 0, total)
	for _, rn := range runs {
		data = append(data, buf[rn.start:rn.end]...)
		snap.Memory = append(snap.Memory, Segment{Offset: uint32(rn.start), Data: data[len(data)-(rn.end-rn.start):]})
	}
	return snap, nil
}

// MemoryPages is the size of the instance's memory.
func (r *Reactor) MemoryPages() uint32 { return r.alloc.pages.Load() }

// Close releases the instance. It may be called more than once.
func (r *Reactor) Close(ctx context.Context) error {
	if r.m == nil {
		return nil
	}
	var err error
	if r.mod != nil {
		err = r.mod.Close(context.WithoutCancel(ctx))
	}
	r.e.release(r.m)
	r.m, r.mod = nil, nil
	if r.broken == nil {
		r.broken = errors.New("reactor closed")
	}
	return err
}
