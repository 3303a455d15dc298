// Package hostfn is the host side of the accel guest ABI: the WebAssembly
// host module "accel" whose functions give guests tensor handles and
// accelerated operations. docs/abi.md specifies every import.
//
// The module is instantiated once per engine and keeps no state of its own.
// Each guest invocation gets an Instance, bound to the invocation's context,
// which owns the guest's tensor handles and frees them when it closes.
package hostfn

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/hostfn/abi"
	"github.com/accelnode/accelnode/models"
)

// Config chooses what serves one guest invocation.
type Config struct {
	Backend accel.Backend
	Mode    accel.Mode
	Limits  accel.Limits
	// Models are the ONNX models guests may open; nil means none.
	Models *models.Registry
	// Logger receives the errors returned to the guest, at debug level, and
	// internal errors at error level. nil means slog.Default().
	Logger *slog.Logger
	// Calls and Occupancy, where set, count this guest's host calls and
	// live tensors together with other guests', for a node's metrics.
	Calls     *Calls
	Occupancy *accel.Occupancy

	// NNBackend returns the backend that serves wasi-nn graphs for an
	// execution target (TargetCPU, TargetGPU, TargetTPU) in Mode, or an
	// error saying why none does. nil serves the target Backend computes
	// on, from Backend, and no other.
	NNBackend func(target string) (accel.Backend, error)
	// NNTargets are the targets of named graphs preloaded for wasi-nn, by
	// name; a graph not here runs on Backend.
	NNTargets map[string]string
}

// Calls counts host calls by function name. It is safe for concurrent use.
type Calls struct {
	counts sync.Map // name → *atomic.Uint64
}

func (c *Calls) add(name string) {
	v, ok := c.counts.Load(name)
	if !ok {
		v, _ = c.counts.LoadOrStore(name, new(atomic.Uint64))
	}
	v.(*atomic.Uint64).Add(1)
}

// Counts returns the calls so far, by function name.
func (c *Calls) Counts() map[string]uint64 {
	out := map[string]uint64{}
	c.counts.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

// Instance is the accel state of one guest invocation: its session on the
// backend and its table of tensor handles. Handles are numbered from 1 and
// never reused, so a freed or foreign handle is always an error.
type Instance struct {
	session *accel.Session
	handles map[uint32]*accel.Tensor
	next    uint32
	lastErr string
	info    []byte
	log     *slog.Logger
	calls   *Calls

	models    *models.Registry
	opened    map[uint32]*models.Model
	nextModel uint32

	// ctx is the context of the host call in progress, or of none; the
	// session's charger meters against it.
	ctx  context.Context
	call call

	// actor is the payload and reply of the actor call in progress, or
	// nil outside one. touched, in an Actor's instance, holds the handles
	// whose tensors may have changed since its last Commit (actor.go).
	actor   *actorCall
	touched map[uint32]struct{}

	// nn is the guest's wasi-nn state (wasinn.go).
	nn        nnState
	nnBackend func(string) (accel.Backend, error)
	nnTargets map[string]string
	limits    accel.Limits
}

// NewInstance prepares the accel state for one guest invocation. It fails
// when cfg's backend cannot serve cfg's mode.
func NewInstance(cfg Config) (*Instance, error) {
	in := &Instance{handles: map[uint32]*accel.Tensor{}, next: 1, log: cfg.Logger, ctx: context.Background(),
		models: cfg.Models, opened: map[uint32]*models.Model{}, nextModel: 1, calls: cfg.Calls,
		nnBackend: cfg.NNBackend, nnTargets: cfg.NNTargets, limits: cfg.Limits}
	if in.models == nil {
		in.models = models.NewRegistry()
	}
	if in.log == nil {
		in.log = slog.Default()
	}
	var err error
	if in.session, err = accel.NewSession(cfg.Backend, cfg.Mode, cfg.Limits, in.charge); err != nil {
		return nil, err
	}
	in.session.Track(cfg.Occupancy)
	st := cfg.Backend.Status()
	in.info, _ = json.Marshal(Info{
		ABI:           abi.Version,
		Backend:       st.Name,
		Device:        st.Device,
		Mode:          cfg.Mode.String(),
		Deterministic: cfg.Mode == accel.Strict,
	})
	return in, nil
}

// Info is what the info import reports to the guest, as JSON.
type Info struct {
	ABI     int    `json:"abi"`
	Backend string `json:"backend"`
	Device  string `json:"device"`
	Mode    string `json:"mode"`
	// Deterministic is true in strict mode: every result follows the
	// numerics contract bit for bit.
	Deterministic bool `json:"deterministic"`
}

func (in *Instance) charge(units uint64) error { return engine.Charge(in.ctx, units) }

// Session is the instance's session on its backend.
func (in *Instance) Session() *accel.Session { return in.session }

// Close frees every tensor the guest still holds, and its wasi-nn graphs.
func (in *Instance) Close() {
	in.nn.close()
	in.session.Close()
	clear(in.handles)
}

type instanceKey struct{}

// Bind returns a context that routes the accel calls of an invocation run
// with it to in.
func (in *Instance) Bind(ctx context.Context) context.Context {
	return context.WithValue(ctx, instanceKey{}, in)
}

func instanceFrom(ctx context.Context) *Instance {
	in, _ := ctx.Value(instanceKey{}).(*Instance)
	return in
}

// Run runs one guest invocation with an accel Instance configured by cfg,
// and frees the guest's tensors when it ends, however it ends.
func Run(ctx context.Context, e *engine.Engine, m *engine.Module, inv engine.Invocation, cfg Config) (engine.Result, error) {
	in, err := NewInstance(cfg)
	if err != nil {
		return engine.Result{}, err
	}
	defer in.Close()
	return e.Run(in.Bind(ctx), m, inv)
}
