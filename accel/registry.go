package accel

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Options configure backends when a Registry opens them. Backends read
// nothing else: no environment, no files but the libraries named here.
type Options struct {
	// Threads bounds the CPU threads a backend computes with; 0 means one per
	// core.
	Threads int
	// TF32 lets fast-mode GPU matmuls use TF32 tensor cores, which round
	// inputs to 10-bit mantissas. Backends that use it say so in Status.
	TF32 bool
	// Libraries gives the location of a backend's native libraries, by
	// backend name: a file or directory, or a list of directories separated
	// by colons. Empty means the backend searches its standard places.
	Libraries map[string]string
	// Device is the ordinal of the accelerator a device backend opens.
	Device int
	// DetectTimeout bounds how long a device backend may take to find its
	// device before it reports itself unavailable; 0 means 30 seconds.
	DetectTimeout time.Duration
	// CacheDir is a directory where backends may keep compiled device code
	// across processes; empty keeps it in memory.
	CacheDir string
	// Logger receives backend detection and health messages; nil discards
	// them.
	Logger *slog.Logger
}

// Factory opens a backend. It never fails: a backend that cannot serve on
// this machine is returned with Status().Available false and the reason.
type Factory func(Options) Backend

var (
	factoriesMu sync.Mutex
	factories   = map[string]Factory{}
)

// Register makes a backend available by name. Backends call it from init, as
// database/sql drivers do; the program imports the backends it ships.
func Register(name string, f Factory) {
	factoriesMu.Lock()
	defer factoriesMu.Unlock()
	if _, dup := factories[name]; dup {
		panic("accel: backend registered twice: " + name)
	}
	factories[name] = f
}

// Auto is the backend name that asks the registry to choose.
const Auto = "auto"

// ErrNoBackend is returned when no backend fits a selection.
var ErrNoBackend = errors.New("no backend")

// Registry holds one opened instance of every registered backend.
type Registry struct {
	backends []Backend
}

// Open opens every registered backend with opts.
func Open(opts Options) *Registry {
	factoriesMu.Lock()
	names := make([]string, 0, len(factories))
	for name := range factories {
		names = append(names, name)
	}
	sort.Strings(names)
	fs := make([]Factory, len(names))
	for i, name := range names {
		fs[i] = factories[name]
	}
	factoriesMu.Unlock()

	r := &Registry{}
	for _, f := range fs {
		r.backends = append(r.backends, f(opts))
	}
	return r
}

// NewRegistry wraps already opened backends, for tests and embedders.
func NewRegistry(backends ...Backend) *Registry {
	return &Registry{backends: slices.Clone(backends)}
}

// Backends returns every backend, available or not, by name.
func (r *Registry) Backends() []Backend { return slices.Clone(r.backends) }

// Select returns the backend named name, or for Auto the fastest backend
// that serves mode. A named backend must be available and serve mode.
func (r *Registry) Select(name string, mode Mode) (Backend, error) {
	if name == "" || name == Auto {
		var best Backend
		for _, b := range r.backends {
			if st := b.Status(); st.Serves(mode) && (best == nil || st.Speed > best.Status().Speed) {
				best = b
			}
		}
		if best == nil {
			return nil, fmt.Errorf("%w: none available serves %s mode", ErrNoBackend, mode)
		}
		return best, nil
	}
	b, ok := r.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("%w: unknown backend %q (known: %s)", ErrNoBackend, name, strings.Join(r.names(), ", "))
	}
	if err := cannotServe(b, mode); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoBackend, err)
	}
	return b, nil
}

// Lookup finds a backend by name, available or not.
func (r *Registry) Lookup(name string) (Backend, bool) {
	for _, b := range r.backends {
		if b.Name() == name {
			return b, true
		}
	}
	return nil, false
}

func (r *Registry) names() []string {
	names := make([]string, len(r.backends))
	for i, b := range r.backends {
		names[i] = b.Name()
	}
	return names
}

// Close closes every backend.
func (r *Registry) Close() error {
	var errs []error
	for _, b := range r.backends {
		if err := b.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close backend %s: %w", b.Name(), err))
		}
	}
	return errors.Join(errs...)
}
