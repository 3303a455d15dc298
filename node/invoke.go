package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/hostfn"
)

// Invocation is one run of a guest on the node.
type Invocation struct {
	// Name is the guest's argv[0]; Args follow it. Env holds "KEY=VALUE".
	Name string
	Args []string
	Env  []string
	// Stdin is the guest's standard input; nil means empty.
	Stdin io.Reader
	// Stdout and Stderr receive the guest's output as it is written; where
	// nil, the output is captured into the Result, up to the node's
	// MaxOutput (the rest is dropped, and the Result says so).
	Stdout, Stderr io.Writer
	// Mounts are the host directories the guest may see.
	Mounts []engine.Mount

	// Backend and Mode, where set, serve this invocation from another
	// backend or mode of the node's registry than the node's own.
	Backend string
	Mode    *accel.Mode
	// Limits, where its fields are not zero, replace the node's.
	Limits Limits
}

// Outcome says how an invocation ended.
type Outcome string

const (
	Exited   Outcome = "exited"   // the guest returned or exited by itself, ExitCode says how
	Deadline Outcome = "deadline" // stopped by its deadline
	Canceled Outcome = "canceled" // stopped because its context or the node was canceled
	Budget   Outcome = "budget"   // exhausted its compute budget
	Memory   Outcome = "memory"   // exceeded its memory limit
	Trapped  Outcome = "trap"     // trapped
	Refused  Outcome = "refused"  // could not start: a bad module, or a backend that cannot serve
)

// Result describes how an invocation went. Invoke fills it in also when it
// returns an error.
type Result struct {
	Outcome Outcome
	// ExitCode is the guest's own exit code, when Outcome is Exited.
	ExitCode uint32
	// Stdout and Stderr hold the captured output, where the Invocation gave
	// no writer; StdoutTruncated and StderrTruncated say that some was
	// dropped at the node's MaxOutput.
	Stdout, Stderr                   []byte
	StdoutTruncated, StderrTruncated bool

	Units uint64 // compute units charged
	// GuestUnits are the units of the guest's own instructions
	// (docs/determinism.md, "Guest instructions"): part of Units under
	// strict guest determinism, reported only under off.
	GuestUnits  uint64
	MemoryPages uint32 // size of the guest's memory at the end
	Elapsed     time.Duration
	Backend     string // the backend that served the guest
	Device      string
	Mode        accel.Mode

	// ModuleSHA256, StdinSHA256 and StdoutSHA256 are the hex sha256 of the
	// module, of the input the guest read and of all it wrote to stdout: a
	// replica can compare runs by them.
	ModuleSHA256, StdinSHA256, StdoutSHA256 string
}

// Invoke runs m, compiled by this node, and waits for it to end. The error
// says why the guest did not succeed: engine.ErrDeadline,
// engine.ErrBudgetExhausted, engine.ErrMemoryLimit, engine.ErrTrap,
// engine.ErrCanceled, an *engine.ExitError for a non-zero exit, or an error
// setting the run up; Result.Outcome says the same in one word.
func (n *Node) Invoke(ctx context.Context, m *engine.Module, inv Invocation) (Result, error) {
	res := Result{Outcome: Refused, Mode: n.cfg.Mode, ModuleSHA256: m.Hash()}
	backend := n.backend
	if inv.Backend != "" || inv.Mode != nil {
		name, mode := n.cfg.Backend, n.cfg.Mode
		if inv.Backend != "" {
			name = inv.Backend
		}
		if inv.Mode != nil {
			mode = *inv.Mode
		}
		var err error
		if backend, err = n.serving(name, mode); err != nil {
			return res, err
		}
		res.Mode = mode
	}
	st := backend.Status()
	res.Backend, res.Device = st.Name, st.Device
	if err := inv.Limits.Check(); err != nil {
		return res, err
	}
	lim := n.limits(inv.Limits)

	stdinHash, stdoutHash := sha256.New(), sha256.New()
	var stdin io.Reader
	if inv.Stdin != nil {
		stdin = io.TeeReader(inv.Stdin, stdinHash)
	}
	maxOut := n.cfg.MaxOutput
	if maxOut == 0 {
		maxOut = DefaultMaxOutput
	}
	var outCap, errCap *capture
	stdout, stderr := inv.Stdout, inv.Stderr
	if stdout == nil {
		outCap = &capture{limit: maxOut}
		stdout = outCap
	}
	if stderr == nil {
		errCap = &capture{limit: maxOut}
		stderr = errCap
	}
	r, err := hostfn.Run(ctx, n.engine, m, engine.Invocation{
		Name:             inv.Name,
		Args:             inv.Args,
		Env:              inv.Env,
		Stdin:            stdin,
		Stdout:           io.MultiWriter(stdout, stdoutHash),
		Stderr:           stderr,
		Mounts:           inv.Mounts,
		MemoryLimitPages: uint32(lim.Memory / pageSize),
		Timeout:          lim.Timeout,
		Budget:           lim.Budget,
		SystemClock:      n.cfg.SystemClock,
	}, hostfn.Config{
		Backend:   backend,
		Mode:      res.Mode,
		Limits:    accel.Limits{MaxBytes: lim.TensorMemory, MaxTensors: lim.MaxTensors},
		Models:    n.models,
		Logger:    n.log,
		Calls:     &n.calls,
		Occupancy: n.occupancy(backend.Name()),
		NNBackend: n.nnBackend(backend, res.Mode),
		NNTargets: n.nnTargets,
	})
	res.Units, res.GuestUnits, res.MemoryPages, res.Elapsed = r.UnitsUsed, r.GuestUnits, r.MemoryPages, r.Elapsed
	res.StdinSHA256 = hex.EncodeToString(stdinHash.Sum(nil))
	res.StdoutSHA256 = hex.EncodeToString(stdoutHash.Sum(nil))
	if outCap != nil {
		res.Stdout, res.StdoutTruncated = outCap.buf.Bytes(), outCap.dropped
	}
	if errCap != nil {
		res.Stderr, res.StderrTruncated = errCap.buf.Bytes(), errCap.dropped
	}
	res.Outcome, res.ExitCode = outcome(r, err)
	return res, err
}

// limits fills the zero fields of l from the node's limits and defaults.
func (n *Node) limits(l Limits) Limits {
	base := n.cfg.Limits
	pick := func(v, node, def int64) int64 {
		switch {
		case v != 0:
			return v
		case node != 0:
			return node
		}
		return def
	}
	out := Limits{
		Memory:       pick(l.Memory, base.Memory, DefaultMemory),
		TensorMemory: pick(l.TensorMemory, base.TensorMemory, accel.DefaultLimits.MaxBytes),
		MaxTensors:   int(pick(int64(l.MaxTensors), int64(base.MaxTensors), int64(accel.DefaultLimits.MaxTensors))),
		Timeout:      time.Duration(pick(int64(l.Timeout), int64(base.Timeout), 0)),
		Budget:       uint64(pick(int64(l.Budget), int64(base.Budget), 0)),
	}
	return out
}

// outcome names how a run ended from engine.Run's error.
func outcome(r engine.Result, err error) (Outcome, uint32) {
	var exit *engine.ExitError
	switch {
	case err == nil:
		return Exited, 0
	case errors.As(err, &exit):
		return Exited, exit.Code
	case errors.Is(err, engine.ErrDeadline):
		return Deadline, 0
	case errors.Is(err, engine.ErrCanceled):
		return Canceled, 0
	case errors.Is(err, engine.ErrBudgetExhausted):
		return Budget, r.ExitCode
	case errors.Is(err, engine.ErrMemoryLimit) && r.Started:
		return Memory, r.ExitCode
	case errors.Is(err, engine.ErrTrap):
		return Trapped, 0
	}
	return Refused, 0
}

// capture keeps the first limit bytes written to it and counts the rest
// as dropped, so that a guest cannot fill the node's memory with output.
type capture struct {
	limit   int64
	buf     bytes.Buffer
	dropped bool
}

func (c *capture) Write(p []byte) (int, error) {
	room := c.limit - int64(c.buf.Len())
	if int64(len(p)) > room {
		c.buf.Write(p[:max(room, 0)])
		c.dropped = true
		return len(p), nil
	}
	return c.buf.Write(p)
}

// String describes a result in one line, for logs.
func (r Result) String() string {
	if r.Outcome == Exited {
		return fmt.Sprintf("exited with code %d", r.ExitCode)
	}
	return string(r.Outcome)
}
