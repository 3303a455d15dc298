package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/checked"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/internal/bytesize"
	"github.com/accelnode/accelnode/internal/files"
	"github.com/accelnode/accelnode/node"
)

func runCommand(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	flags, set := newCommand("run", "run [flags] MODULE.wasm [-- ARGS...]", stderr, serving, backendOpts, limits, guests, logging)
	set.withModels()
	var dirs, env listFlag
	flags.Var(&dirs, "dir", "preopen a host directory: HOST[:GUEST][:ro] (repeatable; none by default)")
	flags.Var(&env, "env", "set a guest environment variable KEY=VALUE (repeatable)")
	if err := parse(flags, args); err != nil {
		return err
	}
	if flags.NArg() == 0 {
		flags.Usage()
		return exitError{exitNode}
	}
	modulePath, guestArgs := flags.Arg(0), flags.Args()[1:]
	if len(guestArgs) > 0 && guestArgs[0] == "--" {
		guestArgs = guestArgs[1:]
	}

	log, err := set.logger(stderr)
	if err != nil {
		return err
	}
	cfg, err := set.config(log)
	if err != nil {
		return err
	}
	mounts, err := parseMounts(dirs)
	if err != nil {
		return err
	}
	wasm, err := files.ReadRegular(modulePath, maxModuleBytes)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintln(stderr, "accelnode:", err)
			return exitError{exitNotFound}
		}
		return err
	}

	n, err := node.Open(ctx, cfg)
	if err != nil {
		return withModeHint(err)
	}
	defer n.Close()
	mod, err := n.Compile(ctx, wasm)
	if err != nil {
		fmt.Fprintln(stderr, "accelnode:", err)
		return exitError{exitModule}
	}
	log.Debug("starting guest", "module", modulePath, "sha256", mod.Hash(), "backend", n.Backend().Name(), "mode", cfg.Mode.String())
	res, err := n.Invoke(ctx, mod, node.Invocation{
		Name:   modulePath,
		Args:   guestArgs,
		Env:    env,
		Stdin:  stdin,
		Stdout: stdout,
		Stderr: stderr,
		Mounts: mounts,
	})
	code := runExitCode(ctx, res, err)
	level := slog.LevelInfo
	if res.Outcome != node.Exited {
		level = slog.LevelWarn
	}
	attrs := []any{"module", modulePath, "backend", res.Backend, "mode", res.Mode.String(),
		"outcome", string(res.Outcome), "exit_code", code, "elapsed", res.Elapsed.Round(10_000),
		"units", res.Units, "guest_units", res.GuestUnits, "memory", bytesize.Format(int64(res.MemoryPages) << 16)}
	if err != nil && res.Outcome != node.Exited {
		attrs = append(attrs, "err", err.Error())
	}
	log.Log(context.Background(), level, "guest finished", attrs...)
	if checks := n.Checks(); checks != nil {
		reportChecks(log, checks, cfg.CheckRate)
	}
	if code == exitNode && err != nil {
		return err
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}

// maxModuleBytes bounds a guest module read from a file.
const maxModuleBytes = 1 << 30

// runExitCode is the process's exit status for a finished run: the guest's
// own code when it exited by itself, else the code reserved for how it
// ended.
func runExitCode(ctx context.Context, res node.Result, err error) int {
	var sig signalled
	switch res.Outcome {
	case node.Exited:
		return int(min(res.ExitCode, 255))
	case node.Deadline:
		return exitDeadline
	case node.Budget:
		return exitBudget
	case node.Memory:
		return exitMemory
	case node.Trapped:
		return exitTrap
	case node.Canceled:
		if errors.As(context.Cause(ctx), &sig) {
			return exitSignalled + int(sig.sig)
		}
	}
	if errors.Is(err, engine.ErrMissingExport) || errors.Is(err, engine.ErrMalformedModule) || errors.Is(err, engine.ErrMemoryLimit) {
		return exitModule
	}
	return exitNode
}

// withModeHint adds to an error choosing a backend which determinism modes
// would serve.
func withModeHint(err error) error {
	var me *accel.ModeError
	if !errors.As(err, &me) || len(me.Serves) == 0 {
		return err
	}
	names := make([]string, len(me.Serves))
	for i, m := range me.Serves {
		names[i] = m.String()
	}
	return fmt.Errorf("%w; use --determinism %s", err, strings.Join(names, " or "))
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
			return nil, fmt.Errorf("--dir: invalid %q (want HOST[:GUEST][:ro])", d)
		}
		if fi, err := os.Stat(m.HostPath); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("--dir %q: %s is not a directory", d, m.HostPath)
		}
		mounts = append(mounts, m)
	}
	return mounts, nil
}

// reportChecks logs what checked mode found, at exit.
func reportChecks(log *slog.Logger, checks map[string]map[string]checked.OpStats, rate float64) {
	for backend, ops := range checks {
		var calls, checkedCalls, beyond uint64
		for op, s := range ops {
			calls += s.Calls
			checkedCalls += s.Checked
			beyond += s.Beyond
			log.Debug("checked mode", "op", op, "calls", s.Calls, "checked", s.Checked, "beyond_bound", s.Beyond, "max_ulp", s.MaxULP)
		}
		level := slog.LevelInfo
		if beyond > 0 {
			level = slog.LevelWarn
		}
		log.Log(context.Background(), level, "checked mode summary", "backend", backend, "rate", rate,
			"calls", calls, "checked", checkedCalls, "beyond_bound", beyond)
	}
}
