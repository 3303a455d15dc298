package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/accelnode/accelnode/internal/bytesize"
)

// DefaultMemoryLimitPages is the memory limit of an invocation that sets
// none: 16384 pages of 64 KiB, 1 GiB.
const DefaultMemoryLimitPages = 16384

// MaxMemoryPages is the largest memory limit: 4 GiB less one page. A
// memory of exactly 4 GiB has a size that wazero's 32-bit Size reports as
// 0, and offsets near its end wrap, so no guest gets one.
const MaxMemoryPages = 65535

// Invocation is one run of a guest.
type Invocation struct {
	Name string   // argv[0]; empty means "guest"
	Args []string // argv[1:]
	Env  []string // "KEY=VALUE"

	Stdin          io.Reader // nil means empty input
	Stdout, Stderr io.Writer // nil means discard

	// Mounts are the directories the guest may see; without any it has no
	// file system at all.
	Mounts []Mount

	MemoryLimitPages uint32        // 64 KiB pages; 0 means DefaultMemoryLimitPages; at most MaxMemoryPages
	Timeout          time.Duration // 0 means only ctx's own deadline
	Budget           uint64        // host compute units; 0 means unlimited
	Entry            string        // exported function to call; empty means "_start"

	// SystemClock lets the guest read the host's wall and monotonic clocks,
	// so that it can time itself. Without it the guest sees wazero's
	// deterministic clock, which every replica agrees on. Sleeps return at
	// once either way, so a sleeping guest cannot outlast its deadline.
	SystemClock bool
}

// Mount preopens the host directory HostPath for the guest at GuestPath
// ("/" when empty).
type Mount struct {
	HostPath, GuestPath string
	ReadOnly            bool
}

// Result describes how an invocation went. Run fills it in also when it
// returns an error.
type Result struct {
	// Started is true once the guest was instantiated: it ran, however it
	// ended. A guest refused before (its module, its memory at start) did
	// not.
	Started   bool
	ExitCode  uint32 // the guest's exit code, when it exited by itself
	UnitsUsed uint64
	// GuestUnits are the units of the guest's own instructions, counted
	// by its instrumentation (docs/determinism.md, "Guest instructions").
	// Under GuestStrict they are part of UnitsUsed; under GuestOff they
	// are reported only.
	GuestUnits  uint64
	Elapsed     time.Duration
	MemoryPages uint32 // size of the guest's memory at the end
}

// errTimeout is the cause of a deadline set by Invocation.Timeout, which
// tells it apart from a deadline of the caller's context.
var errTimeout = errors.New("invocation timeout")

// Run instantiates m with its own memory, file system and standard streams,
// calls its entry function and closes the instance. The error, if any,
// says why the guest did not succeed; see the Err variables and ExitError.
func (e *Engine) Run(ctx context.Context, m *Module, inv Invocation) (res Result, err error) {
	if m == nil || m.engine != e {
		return res, errors.New("run guest: module was not compiled by this engine")
	}
	if err := e.begin(); err != nil {
		return res, err
	}
	defer e.running.Done()
	if err := e.acquire(m); err != nil {
		return res, err
	}
	defer e.release(m)

	entry := inv.Entry
	if entry == "" {
		entry = "_start"
	}
	if def, ok := m.compiled.ExportedFunctions()[entry]; !ok {
		return res, newError(ErrMissingExport, nil, "guest does not export a function named %q", entry)
	} else if len(def.ParamTypes()) != 0 {
		return res, newError(ErrMissingExport, nil, "guest function %q takes parameters; the entry must take none", entry)
	}
	limit := inv.MemoryLimitPages
	if limit == 0 {
		limit = DefaultMemoryLimitPages
	}
	limit = min(limit, MaxMemoryPages)
	// wazero panics if the allocator cannot provide the minimum, so refuse
	// such a guest up front.
	if m.minPages > limit {
		return res, newError(ErrMemoryLimit, nil,
			"guest needs %s of memory to start, more than its memory limit of %s", bytesize.Format(int64(m.minPages)*pageSize), bytesize.Format(int64(limit)*pageSize))
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopOnClose := context.AfterFunc(e.stop, func() { cancel(ErrClosed) })
	defer stopOnClose()
	if inv.Timeout > 0 {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeoutCause(ctx, inv.Timeout, errTimeout)
		defer cancelTimeout()
	}
	if inv.Stdin != nil {
		// A read of standard input returns when the invocation ends, so
		// a silent pipe cannot hold the guest past its deadline.
		in := newStdin(ctx, inv.Stdin)
		defer in.close()
		inv.Stdin = in
	}
	cfg, err := moduleConfig(inv)
	if err != nil {
		return res, err
	}
	mtr := &meter{budget: inv.Budget, chargeGuest: e.chargeGuest}
	alloc := &limitedAllocator{limit: uint64(limit) * pageSize}
	callCtx := experimental.WithMemoryAllocator(withMeter(ctx, mtr), alloc)

	start := time.Now()
	defer func() {
		res.Elapsed = time.Since(start)
		res.UnitsUsed = mtr.used.Load()
		res.GuestUnits = mtr.guest.Load()
		res.MemoryPages = alloc.pages.Load()
	}()

	if ctx.Err() != nil {
		_, err = classify(ctx, ctx.Err(), mtr, alloc, limit, inv)
		return res, err
	}

	var callErr error
	res.Started = true
	instErr := safely(func() error {
		mod, err := e.rt.InstantiateModule(callCtx, m.compiled, cfg)
		if err != nil {
			return err
		}
		// The module may already be closed by an exit or the deadline;
		// closing again is harmless.
		defer mod.Close(context.WithoutCancel(ctx))
		bindFuel(callCtx, mod)
		callErr = safely(func() error {
			_, err := mod.ExportedFunction(entry).Call(callCtx)
			return err
		})
		return nil
	})
	if instErr != nil {
		var exit *sys.ExitError
		if !errors.As(instErr, &exit) {
			// A start function that exits or is stopped is classified
			// below; anything else means the guest could not be set up.
			if ctx.Err() == nil {
				return res, fmt.Errorf("instantiate guest: %w", instErr)
			}
		}
		callErr = instErr
	}
	mtr.finish()
	res.ExitCode, err = classify(ctx, callErr, mtr, alloc, limit, inv)
	return res, err
}

func moduleConfig(inv Invocation) (wazero.ModuleConfig, error) {
	name := inv.Name
	if name == "" {
		name = "guest"
	}
	// An empty name lets any number of instances of a module coexist; no
	// start functions, so that Run calls the entry itself. Randomness keeps
	// wazero's deterministic default, and so do clocks unless asked.
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithArgs(append([]string{name}, inv.Args...)...)
	if inv.SystemClock {
		cfg = cfg.WithSysWalltime().WithSysNanotime()
	}
	for _, kv := range inv.Env {
		k, v, err := splitEnv(kv)
		if err != nil {
			return nil, fmt.Errorf("run guest: %w", err)
		}
		cfg = cfg.WithEnv(k, v)
	}
	if inv.Stdin != nil {
		cfg = cfg.WithStdin(inv.Stdin)
	}
	if inv.Stdout != nil {
		cfg = cfg.WithStdout(inv.Stdout)
	}
	if inv.Stderr != nil {
		cfg = cfg.WithStderr(inv.Stderr)
	}
	if len(inv.Mounts) > 0 {
		fsCfg := wazero.NewFSConfig()
		for _, mt := range inv.Mounts {
			fi, err := os.Stat(mt.HostPath)
			if err != nil {
				return nil, fmt.Errorf("run guest: mount: %w", err)
			}
			if !fi.IsDir() {
				return nil, fmt.Errorf("run guest: mount %s: not a directory", mt.HostPath)
			}
			guestPath := mt.GuestPath
			if guestPath == "" {
				guestPath = "/"
			}
			if mt.ReadOnly {
				fsCfg = fsCfg.WithReadOnlyDirMount(mt.HostPath, guestPath)
			} else {
				fsCfg = fsCfg.WithDirMount(mt.HostPath, guestPath)
			}
		}
		cfg = cfg.WithFSConfig(fsCfg)
	}
	return cfg, nil
}

// classify turns how the guest ended into Run's error, in order of blame:
// the deadline or cancellation, the compute budget, the memory limit, a
// trap, a non-zero exit. It also returns the guest's exit code, when the
// guest exited by itself.
func classify(ctx context.Context, callErr error, mtr *meter, alloc *limitedAllocator, limit uint32, inv Invocation) (uint32, error) {
	var (
		code    uint32
		exited  = callErr == nil
		stopped error // context.DeadlineExceeded or context.Canceled
	)
	var exit *sys.ExitError
	if errors.As(callErr, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			stopped = context.DeadlineExceeded
		case sys.ExitCodeContextCanceled:
			stopped = context.Canceled
		default:
			code, exited = exit.ExitCode(), true
		}
	}
	if stopped == nil && ctx.Err() != nil {
		// A host function gave up because of the context, and the guest
		// then trapped or exited on its own, possibly with code 0. It did
		// not finish its work in time either way.
		stopped = ctx.Err()
		code, exited = 0, false
	}

	switch {
	case errors.Is(stopped, context.DeadlineExceeded):
		if errors.Is(context.Cause(ctx), errTimeout) {
			return 0, newError(ErrDeadline, context.DeadlineExceeded, "guest exceeded its timeout of %s", inv.Timeout)
		}
		return 0, newError(ErrDeadline, context.DeadlineExceeded, "guest ran past the deadline of its context")
	case stopped != nil:
		if cause := context.Cause(ctx); errors.Is(cause, ErrClosed) {
			return 0, newError(ErrCanceled, ErrClosed, "guest was stopped because its engine closed")
		}
		return 0, newError(ErrCanceled, context.Canceled, "guest was canceled")
	case mtr.exhausted.Load():
		return code, newError(ErrBudgetExhausted, nil, "guest exhausted its compute budget of %d units", mtr.budget)
	case alloc.refused.Load() && (!exited || code != 0):
		return code, newError(ErrMemoryLimit, nil, "guest exceeded its memory limit of %s", bytesize.Format(int64(limit)*pageSize))
	case !exited:
		return 0, fmt.Errorf("%w: %w", ErrTrap, callErr)
	case code != 0:
		return code, &ExitError{Code: code}
	}
	return 0, nil
}
