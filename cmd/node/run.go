package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/checked"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/hostfn"
	"github.com/accelnode/accelnode/internal/envconfig"
	"github.com/accelnode/accelnode/models"
)

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func runCommand(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "run [flags] MODULE.wasm [-- ARGS...]", stderr)
	backendName := fs.String("backend", envconfig.Backend.Value(), "backend that serves the guest: auto, or a name that accelnode backends lists")
	bf := addBackendFlags(fs)
	checkRate := fs.Float64("check-rate", mustFloat(envconfig.CheckRate.Value()), "in checked mode, the share of calls recomputed on ref (0 to 1)")
	memory := fs.String("memory", envconfig.Memory.Value(), "linear-memory limit of the guest, e.g. 256MiB")
	tensorMemory := fs.String("tensor-memory", envconfig.TensorMemory.Value(), "limit on the tensors the guest holds on its backend")
	timeout := fs.String("timeout", envconfig.Timeout.Value(), "deadline of the invocation; 0 means none")
	budget := fs.String("budget", envconfig.Budget.Value(), "compute units the guest may use; 0 means unlimited")
	clock := fs.String("clock", envconfig.Clock.Value(), "clock the guest reads: system or deterministic")
	cacheDir := fs.String("cache-dir", envconfig.CacheDir.Value(), "directory for compiled guest code; \"off\" keeps it in memory")
	logLevel := fs.String("log-level", envconfig.LogLevel.Value(), "log level on stderr: debug, info, warn or error")
	var dirs, env, modelFlags listFlag
	fs.Var(&modelFlags, "model", "load an ONNX model for guests to open: NAME=PATH.onnx (repeatable)")
	fs.Var(&dirs, "dir", "preopen a host directory: HOST[:GUEST][:ro] (repeatable; none by default)")
	fs.Var(&env, "env", "set a guest environment variable KEY=VALUE (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitError{2}
	}
	modulePath, guestArgs := fs.Arg(0), fs.Args()[1:]
	if len(guestArgs) > 0 && guestArgs[0] == "--" {
		guestArgs = guestArgs[1:]
	}

	log, err := newLogger(*logLevel, stderr)
	if err != nil {
		return err
	}
	mode, opts, err := bf.options(log)
	if err != nil {
		return err
	}
	memBytes, err := envconfig.ParseBytes(*memory)
	if err != nil {
		return err
	}
	if memBytes < 65536 || memBytes > 1<<32 {
		return fmt.Errorf("guest memory limit %s must be between 64KiB and 4GiB", *memory)
	}
	tensorBytes, err := envconfig.ParseBytes(*tensorMemory)
	if err != nil {
		return err
	}
	if tensorBytes == 0 {
		return fmt.Errorf("tensor memory limit %s must be positive", *tensorMemory)
	}
	deadline, err := envconfig.ParseDuration(*timeout)
	if err != nil {
		return err
	}
	units, err := strconv.ParseUint(*budget, 10, 64)
	if err != nil {
		return fmt.Errorf("invalid budget %q (want a whole number of units)", *budget)
	}
	if *clock != "system" && *clock != "deterministic" {
		return fmt.Errorf("invalid clock %q (want system or deterministic)", *clock)
	}
	mounts, err := parseMounts(dirs)
	if err != nil {
		return err
	}
	wasm, err := os.ReadFile(modulePath)
	if err != nil {
		return err
	}

	registry := models.NewRegistry()
	for _, spec := range modelFlags {
		name, path, ok := strings.Cut(spec, "=")
		if !ok {
			return fmt.Errorf("invalid --model %q (want NAME=PATH.onnx)", spec)
		}
		m, err := registry.LoadFile(name, path)
		if err != nil {
			return err
		}
		log.Debug("model loaded", "name", m.Name, "sha256", m.SHA256, "inputs", len(m.Inputs), "outputs", len(m.Outputs))
	}

	reg := accel.Open(opts)
	defer reg.Close()
	backend, err := reg.Select(*backendName, mode)
	if err != nil {
		return err
	}
	if mode == accel.Checked {
		if *checkRate < 0 || *checkRate > 1 {
			return fmt.Errorf("check rate %g is not between 0 and 1", *checkRate)
		}
		oracle, err := reg.Select("ref", accel.Strict)
		if err != nil {
			return err
		}
		chk := checked.New(backend, oracle, *checkRate, log)
		backend = chk
		defer reportChecks(log, chk, *checkRate)
	}
	cfg := engine.Config{HostModules: []engine.HostModule{hostfn.Module{}}}
	if *cacheDir != "off" {
		cfg.CacheDir = *cacheDir
	}
	eng, err := engine.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer eng.Close(context.Background())
	mod, err := eng.Compile(ctx, wasm)
	if err != nil {
		return err
	}

	st := backend.Status()
	log.Debug("starting guest", "module", modulePath, "sha256", mod.Hash(), "backend", st.Name, "device", st.Device, "mode", mode.String())
	res, err := hostfn.Run(ctx, eng, mod, engine.Invocation{
		Name:             modulePath,
		Args:             guestArgs,
		Env:              env,
		Stdin:            stdin,
		Stdout:           stdout,
		Stderr:           stderr,
		Mounts:           mounts,
		MemoryLimitPages: uint32(memBytes / 65536),
		Timeout:          deadline,
		Budget:           units,
		SystemClock:      *clock == "system",
	}, hostfn.Config{Backend: backend, Mode: mode, Limits: accel.Limits{MaxBytes: tensorBytes}, Models: registry, Logger: log})
	log.Info("guest finished", "module", modulePath, "backend", st.Name, "mode", mode.String(),
		"exit_code", res.ExitCode, "elapsed", res.Elapsed.Round(10_000), "units", res.UnitsUsed, "memory_pages", res.MemoryPages)

	var exit *engine.ExitError
	if errors.As(err, &exit) {
		return exitError{int(min(exit.Code, 255))}
	}
	return err
}

// parseMounts reads --dir values HOST[:GUEST][:ro].
func parseMounts(dirs []string) ([]engine.Mount, error) {
	var mounts []engine.Mount
	for _, d := range dirs {
		parts := strings.Split(d, ":")
		m := engine.Mount{HostPath: parts[0], GuestPath: "/"}
		if n := len(parts); n > 1 && parts[n-1] == "ro" {
			m.ReadOnly = true
			parts = parts[:n-1]
		}
		switch len(parts) {
		case 1:
		case 2:
			m.GuestPath = parts[1]
		default:
			return nil, fmt.Errorf("invalid --dir %q (want HOST[:GUEST][:ro])", d)
		}
		if fi, err := os.Stat(m.HostPath); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("--dir %q: %s is not a directory", d, m.HostPath)
		}
		mounts = append(mounts, m)
	}
	return mounts, nil
}

// reportChecks logs what checked mode found, at exit.
func reportChecks(log *slog.Logger, c *checked.Backend, rate float64) {
	var calls, checkedCalls, beyond uint64
	for op, s := range c.Stats() {
		calls += s.Calls
		checkedCalls += s.Checked
		beyond += s.Beyond
		log.Debug("checked mode", "op", op, "calls", s.Calls, "checked", s.Checked, "beyond_bound", s.Beyond, "max_ulp", s.MaxULP)
	}
	level := slog.LevelInfo
	if beyond > 0 {
		level = slog.LevelWarn
	}
	log.Log(context.Background(), level, "checked mode summary", "backend", c.Name(), "rate", rate,
		"calls", calls, "checked", checkedCalls, "beyond_bound", beyond)
}

// mustFloat reads a default from the environment, falling back to 0 when it
// does not parse; the flag's own parsing reports bad command-line values.
func mustFloat(s string) float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return v
}
