// Package node assembles an accelnode: the backends and the one that serves
// guests in the node's determinism mode, the wazero engine with the accel
// host module, the models guests may open, and the limits every guest runs
// under. It is the one place a node is put together: the CLI, the service,
// the benchmarks and the tests get theirs from Open, and Invoke runs a
// guest on it.
//
// Nothing here reads the environment or flags: Config holds every setting,
// and the caller fills it.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/checked"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/hostfn"
	"github.com/accelnode/accelnode/internal/bytesize"
	"github.com/accelnode/accelnode/models"
	"github.com/accelnode/accelnode/store"
)

// Config is every setting of a node.
type Config struct {
	// Backend names the backend that serves guests, or "auto" (or empty)
	// for the fastest that serves Mode.
	Backend string
	// Mode is the determinism mode guests are served in.
	Mode accel.Mode
	// CheckRate is, in checked mode, the share of calls recomputed on the
	// reference backend, 0 to 1.
	CheckRate float64
	// Backends configures how the backends open.
	Backends accel.Options
	// Require names backends that must be available, such as one whose
	// library the operator named: Open fails if one is not, rather than
	// serve from another.
	Require []string
	// Registry, when not nil, provides the backends instead of opening them
	// from Backends; the node does not close it.
	Registry *accel.Registry

	// Limits bound every invocation.
	Limits Limits
	// SystemClock lets guests read the host's clocks, so that they can time
	// themselves; otherwise they see a deterministic clock.
	SystemClock bool
	// CacheDir keeps compiled guest code across processes; empty keeps it
	// in memory.
	CacheDir string
	// Uninterruptible compiles guests without the checks that let a
	// deadline stop a guest in a loop that never calls the host: faster
	// loops, for benchmarks of trusted guests only (engine.Config).
	Uninterruptible bool
	// GuestDeterminism is how guests are instrumented at load: strict
	// meters every instruction against the budget and canonicalises NaNs;
	// off only counts instructions so that deadlines hold. Empty means
	// strict in strict mode and off in the others (engine.Config).
	GuestDeterminism engine.GuestDeterminism

	// Models are the ONNX models guests may open by name.
	Models []ModelFile
	// NNGraphs are the models preloaded for wasi-nn guests, with the
	// execution target their graphs run on (wasinn.go).
	NNGraphs []NNGraph
	// MaxOutput bounds the standard output and error an invocation
	// captures when the caller gives no writer; 0 means DefaultMaxOutput.
	MaxOutput int64

	// Actors keeps the node's actors, stateful guests (actor.go): their
	// records, modules and sealed snapshots. nil means the node runs no
	// actors. The node lists the actors it holds when it opens.
	Actors store.ActorStore
	// SnapshotKey seals actors' snapshots (NaCl secretbox) before they
	// reach Actors, and opens them again; the memory of an actor never
	// reaches the store in the clear. It must not be zero where Actors is
	// set, and must stay the same for the store's actors to be restored.
	SnapshotKey [32]byte
	// ActorLimits bound the node's actors.
	ActorLimits ActorLimits

	// Logger receives the node's log; nil means slog.Default().
	Logger *slog.Logger
}

// guestDeterminism is the configured GuestDeterminism, or the mode's
// default.
func (cfg *Config) guestDeterminism() engine.GuestDeterminism {
	switch {
	case cfg.GuestDeterminism != "":
		return cfg.GuestDeterminism
	case cfg.Mode == accel.Strict:
		return engine.GuestStrict
	}
	return engine.GuestOff
}

// ModelFile is an ONNX model to load: a regular file read whole, at most
// models.MaxModelBytes.
type ModelFile struct {
	Name, Path string
}

// Limits bound one invocation. Zero fields take their defaults.
type Limits struct {
	// Memory bounds the guest's linear memory, in bytes: at least 64 KiB,
	// at most MaxMemory. Default 1 GiB.
	Memory int64
	// TensorMemory bounds the bytes of the tensors the guest holds on its
	// backend. Default 4 GiB.
	TensorMemory int64
	// MaxTensors bounds the guest's live tensors. Default 65,536.
	MaxTensors int
	// Timeout is the invocation's deadline; 0 means none.
	Timeout time.Duration
	// Budget is the compute units the invocation may use; 0 means
	// unlimited.
	Budget uint64
}

// Defaults and bounds.
const (
	DefaultMemory    = 1 << 30
	MaxMemory        = engine.MaxMemoryPages * pageSize
	pageSize         = 1 << 16
	DefaultMaxOutput = 16 << 20
)

// Check reports a limit outside its range.
func (l Limits) Check() error {
	switch {
	case l.Memory != 0 && (l.Memory < pageSize || l.Memory > MaxMemory):
		return fmt.Errorf("memory limit %s must be between 64 KiB and %s", bytesize.Format(l.Memory), bytesize.Format(MaxMemory))
	case l.TensorMemory < 0:
		return fmt.Errorf("tensor memory limit %s must not be negative", bytesize.Format(l.TensorMemory))
	case l.MaxTensors < 0:
		return fmt.Errorf("live-tensor limit %d must not be negative", l.MaxTensors)
	case l.Timeout < 0:
		return fmt.Errorf("timeout %s must not be negative", l.Timeout)
	}
	return nil
}

// Node serves guest invocations. It is safe for concurrent use.
type Node struct {
	cfg      Config
	log      *slog.Logger
	registry *accel.Registry
	ownsReg  bool
	backend  accel.Backend // serves cfg.Mode; a checked.Backend in checked mode
	engine   *engine.Engine
	models   *models.Registry

	mu      sync.Mutex
	checked map[string]*checked.Backend // checked-mode wrappers, by backend name

	calls hostfn.Calls
	occ   sync.Map // backend name → *accel.Occupancy

	actors actorTable

	nnTargets map[string]string // wasi-nn targets of NNGraphs, by name
}

// Open assembles a node. It fails if a setting is out of range, the
// backend cannot serve the mode, a backend whose library was given is
// unavailable, or a model does not load.
func Open(ctx context.Context, cfg Config) (_ *Node, err error) {
	if err := cfg.Limits.Check(); err != nil {
		return nil, err
	}
	if math.IsNaN(cfg.CheckRate) || cfg.CheckRate < 0 || cfg.CheckRate > 1 {
		return nil, fmt.Errorf("check rate %g is not between 0 and 1", cfg.CheckRate)
	}
	if cfg.MaxOutput < 0 {
		return nil, fmt.Errorf("output limit %d must not be negative", cfg.MaxOutput)
	}
	n := &Node{cfg: cfg, log: cfg.Logger, registry: cfg.Registry, models: models.NewRegistry(), checked: map[string]*checked.Backend{}}
	if n.log == nil {
		n.log = slog.Default()
	}
	if n.registry == nil {
		opts := cfg.Backends
		if opts.Logger == nil {
			opts.Logger = n.log
		}
		n.registry, n.ownsReg = accel.Open(opts), true
	}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	for _, name := range cfg.Require {
		b, ok := n.registry.Lookup(name)
		if !ok {
			return nil, fmt.Errorf("%w: unknown backend %q", accel.ErrNoBackend, name)
		}
		if st := b.Status(); !st.Available {
			return nil, fmt.Errorf("%w: %s is unavailable: %s", accel.ErrNoBackend, name, st.Reason)
		}
	}
	if n.backend, err = n.serving(cfg.Backend, cfg.Mode); err != nil {
		return nil, err
	}
	for _, m := range cfg.Models {
		if err := n.loadModel(m); err != nil {
			return nil, err
		}
	}
	if err := n.loadNNGraphs(); err != nil {
		return nil, err
	}
	n.engine, err = engine.New(ctx, engine.Config{
		HostModules:     []engine.HostModule{hostfn.Module{}, hostfn.NN{}},
		CacheDir:        cfg.CacheDir,
		Uninterruptible: cfg.Uninterruptible,
		Guest:           cfg.guestDeterminism(),
	})
	if err != nil {
		return nil, err
	}
	if err := n.openActors(ctx); err != nil {
		return nil, err
	}
	st := n.backend.Status()
	n.log.Debug("node ready", "backend", st.Name, "device", st.Device, "mode", cfg.Mode.String(), "models", len(cfg.Models))
	return n, nil
}

// serving returns the backend that serves mode: the one named, or the
// fastest for "auto"; in checked mode wrapped to check its calls against
// the reference backend.
func (n *Node) serving(name string, mode accel.Mode) (accel.Backend, error) {
	b, err := n.registry.Select(name, mode)
	if err != nil {
		return nil, err
	}
	if mode != accel.Checked {
		return b, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if c := n.checked[b.Name()]; c != nil {
		return c, nil
	}
	oracle, err := n.registry.Select("ref", accel.Strict)
	if err != nil {
		return nil, fmt.Errorf("checked mode needs the reference backend: %w", err)
	}
	c := checked.New(b, oracle, n.cfg.CheckRate, n.log)
	n.checked[b.Name()] = c
	return c, nil
}

func (n *Node) loadModel(m ModelFile) error {
	loaded, err := n.models.LoadFile(m.Name, m.Path)
	if err != nil {
		return err
	}
	n.log.Debug("model loaded", "name", loaded.Name, "sha256", loaded.SHA256, "inputs", len(loaded.Inputs), "outputs", len(loaded.Outputs))
	return nil
}

// Close stops the node's guests and releases its engine and backends. The
// actors' snapshots are in the store already, but for those of actors
// started with SnapshotOnEvict, which are stored now.
func (n *Node) Close() error {
	var errs []error
	if n.actors.byID != nil {
		n.closeActors()
	}
	if n.engine != nil {
		errs = append(errs, n.engine.Close(context.Background()))
	}
	if n.ownsReg && n.registry != nil {
		errs = append(errs, n.registry.Close())
	}
	return errors.Join(errs...)
}

// Backend is the backend that serves guests in the node's mode.
func (n *Node) Backend() accel.Backend { return n.backend }

// Mode is the node's determinism mode.
func (n *Node) Mode() accel.Mode { return n.cfg.Mode }

// Registry holds every backend of the node, available or not.
func (n *Node) Registry() *accel.Registry { return n.registry }

// Models are the models guests may open.
func (n *Node) Models() *models.Registry { return n.models }

// Checks returns, in checked mode, what the checks found so far, by
// operation, for each backend checked; nil otherwise.
func (n *Node) Checks() map[string]map[string]checked.OpStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.checked) == 0 {
		return nil
	}
	out := map[string]map[string]checked.OpStats{}
	for name, c := range n.checked {
		out[name] = c.Stats()
	}
	return out
}

// Compile compiles a guest, or returns the module already compiled from
// the same bytes.
func (n *Node) Compile(ctx context.Context, wasm []byte) (*engine.Module, error) {
	return n.engine.Compile(ctx, wasm)
}

// Backends lists the status of every backend of the node, by name.
// Stats are what the node's guests hold and have called, for metrics.
type Stats struct {
	// Calls counts host calls by import name, since the node opened.
	Calls map[string]uint64
	// Tensors and TensorBytes are the live tensors of running guests and
	// inferences, by backend.
	Tensors, TensorBytes map[string]int64
}

// Stats reports the node's host calls and live tensors.
func (n *Node) Stats() Stats {
	st := Stats{Calls: n.calls.Counts(), Tensors: map[string]int64{}, TensorBytes: map[string]int64{}}
	n.occ.Range(func(k, v any) bool {
		o := v.(*accel.Occupancy)
		st.Tensors[k.(string)], st.TensorBytes[k.(string)] = o.Tensors.Load(), o.Bytes.Load()
		return true
	})
	return st
}

// occupancy is backend's count of live tensors.
func (n *Node) occupancy(backend string) *accel.Occupancy {
	if o, ok := n.occ.Load(backend); ok {
		return o.(*accel.Occupancy)
	}
	o, _ := n.occ.LoadOrStore(backend, new(accel.Occupancy))
	return o.(*accel.Occupancy)
}

// Forget releases m's compiled code once no invocation uses it; see
// engine.Engine.Forget. A service that compiles what clients send bounds
// its memory with it.
func (n *Node) Forget(m *engine.Module) { n.engine.Forget(m) }

func (n *Node) Backends() []accel.Status {
	var out []accel.Status
	for _, b := range n.registry.Backends() {
		out = append(out, b.Status())
	}
	slices.SortFunc(out, func(a, b accel.Status) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}
