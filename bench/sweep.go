// Package bench is `accelnode bench`: it sweeps workloads × sizes ×
// backends, times each point with the backend called directly from Go and
// through a WebAssembly guest's host call, times the same computation as
// plain WebAssembly, and reports each as GFLOP/s, a share of the machine's
// measured or looked-up peak, and a speedup over plain WebAssembly.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/hostfn"
	"github.com/accelnode/accelnode/internal/bench/workload"
	"github.com/accelnode/accelnode/models"
)

// Target is one backend in one determinism mode. A target with Skip set is
// reported as skipped, with Skip as the reason.
type Target struct {
	Backend accel.Backend
	Mode    accel.Mode
	Skip    string
}

// Targets chooses, for each mode, the backends to measure from the
// registry opened in that mode: names, or all of them when names is empty.
// Unavailable backends, backends without deterministic kernels in strict
// mode, and in fast mode backends whose kernels are the strict ones already
// measured, are kept with the reason they are skipped.
func Targets(registries map[accel.Mode]*accel.Registry, modes []accel.Mode, names []string) ([]Target, error) {
	strictToo := false
	for _, m := range modes {
		strictToo = strictToo || m == accel.Strict
	}
	var targets []Target
	for _, mode := range modes {
		all := registries[mode].Backends()
		chosen := all
		if len(names) > 0 {
			chosen = nil
			for _, name := range names {
				found := false
				for _, b := range all {
					if b.Name() == name {
						chosen, found = append(chosen, b), true
					}
				}
				if !found {
					known := make([]string, len(all))
					for i, b := range all {
						known[i] = b.Name()
					}
					return nil, fmt.Errorf("%w: unknown backend %q (known: %s)", accel.ErrNoBackend, name, strings.Join(known, ", "))
				}
			}
		}
		for _, b := range chosen {
			t := Target{Backend: b, Mode: mode}
			st := b.Status()
			switch {
			case !st.Available:
				t.Skip = "unavailable: " + st.Reason
			case mode == accel.Strict && !st.Deterministic:
				t.Skip = "does not implement the numerics contract, which strict mode requires"
			case mode == accel.Fast && st.Deterministic && strictToo:
				t.Skip = "its fast kernels are its strict ones, measured in strict mode"
			}
			targets = append(targets, t)
		}
	}
	return targets, nil
}

// Config is one sweep.
type Config struct {
	Points []workload.Point
	Budget workload.Budget
	// MaxRun skips a point whose single run, extrapolated from the same
	// series' last point by FLOPs, would take longer.
	MaxRun time.Duration
	// Guest is the benchmark guest (internal/bench/guest). Without it the
	// plain-WebAssembly baseline and the guest path are skipped, with
	// GuestMissing as the reason.
	Guest        []byte
	GuestMissing string
	// HostCallBatch is how many tiny calls one timed run of the host-call
	// overhead makes.
	HostCallBatch int
	Machine       Machine
	// RemeasureCPU measures the CPU's roofs again after the sweep and keeps
	// the higher (Machine.RemeasureCPU); Quick shortens that measurement.
	RemeasureCPU, Quick bool
	// Progress, if set, is called before each measurement and once at the
	// end with done == total.
	Progress func(done, total int, what string)
}

// series identifies a line of measurements whose times grow with the
// point's FLOPs, for extrapolation.
type series struct{ workload, backend, mode, way string }

type sweep struct {
	cfg         Config
	rep         *Report
	last        map[series][2]float64 // FLOPs and median seconds of the last point
	node, plain *engine.Engine
	nodeMod     *engine.Module
	plainMod    *engine.Module
	models      *models.Registry
	cnn         *models.Model
	done, total int
}

// Run measures every point on every target that is not skipped.
func Run(ctx context.Context, cfg Config, targets []Target) (*Report, error) {
	if err := cfg.Budget.Validate(); err != nil {
		return nil, err
	}
	for _, p := range cfg.Points {
		if err := p.Validate(); err != nil {
			return nil, err
		}
	}
	s := &sweep{cfg: cfg, last: map[series][2]float64{}, models: models.NewRegistry(),
		rep: &Report{Schema: Schema, Machine: cfg.Machine, Budget: budgetOf(cfg), Results: []Result{}, HostCalls: []HostCall{}, Skipped: []Skip{}}}
	var err error
	if s.cnn, err = s.models.Add(workload.CNNName, workload.CNN()); err != nil {
		return nil, fmt.Errorf("load the benchmark model: %w", err)
	}
	if cfg.Guest != nil {
		if err := s.openEngines(ctx); err != nil {
			return nil, err
		}
		defer s.closeEngines()
	}

	var active []Target
	for _, t := range targets {
		if t.Skip != "" {
			s.skip(Skip{Backend: t.Backend.Name(), Mode: t.Mode.String(), Reason: t.Skip})
			continue
		}
		active = append(active, t)
	}
	if cfg.Guest == nil {
		s.skip(Skip{Backend: "wasm", Reason: cfg.GuestMissing})
	}
	// Each point: plain wasm, then every target directly and through the
	// guest; then every target's tiny call both ways.
	ways := 1
	if cfg.Guest != nil {
		ways = 2
	}
	s.total = len(cfg.Points)*(ways-1+ways*len(active)) + ways*len(active)

	for _, p := range cfg.Points {
		var wasm *Result // nil when plain wasm was not measured
		if cfg.Guest != nil {
			var err error
			if wasm, err = s.measurePlain(ctx, p); err != nil {
				return s.rep, err
			}
		}
		for _, t := range active {
			if err := s.measure(ctx, p, t, wasm); err != nil {
				return s.rep, err
			}
		}
	}
	for _, t := range active {
		if err := s.hostCall(ctx, t); err != nil {
			return s.rep, err
		}
	}
	if cfg.RemeasureCPU {
		if err := s.rep.Machine.RemeasureCPU(ctx, cfg.Quick); err != nil {
			return s.rep, err
		}
		for i := range s.rep.Results {
			s.rep.Results[i].applyRoof(s.rep.Machine.roofFor(s.rep.Results[i].Backend))
		}
	}
	s.progress("")
	return s.rep, nil
}

func (s *sweep) openEngines(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			s.closeEngines()
		}
	}()
	mods := []engine.HostModule{hostfn.Module{}}
	if s.node, err = engine.New(ctx, engine.Config{HostModules: mods}); err != nil {
		return err
	}
	if s.plain, err = engine.New(ctx, engine.Config{HostModules: mods, Uninterruptible: true}); err != nil {
		return err
	}
	if s.nodeMod, err = s.node.Compile(ctx, s.cfg.Guest); err != nil {
		return fmt.Errorf("compile the benchmark guest: %w", err)
	}
	if s.plainMod, err = s.plain.Compile(ctx, s.cfg.Guest); err != nil {
		return fmt.Errorf("compile the benchmark guest: %w", err)
	}
	// A guest built from other workload definitions would time other work.
	var out bytes.Buffer
	inv := engine.Invocation{Name: "bench", Args: []string{"-fingerprint"}, Stdout: &out}
	if _, err := hostfn.Run(ctx, s.plain, s.plainMod, inv, hostfn.Config{Backend: ref.New(1)}); err != nil {
		return fmt.Errorf("the benchmark guest does not report its workloads (%w), so it predates this node; rebuild it with `make build`", err)
	}
	if got, want := strings.TrimSpace(out.String()), workload.Fingerprint(); got != want {
		return fmt.Errorf("the benchmark guest was built from other workloads (fingerprint %q, this node's %q); rebuild it with `make build`", got, want)
	}
	return nil
}

func (s *sweep) closeEngines() {
	for _, e := range []*engine.Engine{s.node, s.plain} {
		if e != nil {
			e.Close(context.Background())
		}
	}
	s.node, s.plain = nil, nil
}

func (s *sweep) progress(what string) {
	if s.cfg.Progress != nil {
		if what == "" {
			s.cfg.Progress(s.total, s.total, "")
			return
		}
		s.cfg.Progress(s.done, s.total, what)
	}
	s.done++
}

func (s *sweep) skip(k Skip) { s.rep.Skipped = append(s.rep.Skipped, k) }

// Extrapolation by FLOPs holds for compute-bound runs only: a run shorter
// than minPredictive is mostly call and launch latency, which does not grow
// with the work.
const minPredictive = 10 * time.Millisecond

// plainSeedRate is a slow plain-WebAssembly rate, below every workload's on
// the machines measured, for predicting a plain series' first point: its
// runs cannot be interrupted, so an hour-long one must not start.
const plainSeedRate = 0.2e9 // FLOP/s

// predict extrapolates one run of p in the series from its last point.
func (s *sweep) predict(k series, p workload.Point) (time.Duration, bool) {
	last, ok := s.last[k]
	switch {
	case k.way == "plain" && (!ok || last[0] <= 0 || last[1] <= 0):
		return time.Duration(p.FLOPs() / plainSeedRate * 1e9), true
	case k.way == "plain":
		return time.Duration(last[1] * p.FLOPs() / last[0] * 1e9), true
	case !ok || last[0] <= 0 || time.Duration(last[1]*1e9) < minPredictive:
		return 0, false
	}
	return time.Duration(last[1] * p.FLOPs() / last[0] * 1e9), true
}

// tooLong reports, as a skip reason, a run predicted beyond MaxRun.
func (s *sweep) tooLong(k series, p workload.Point) string {
	if d, ok := s.predict(k, p); ok && s.cfg.MaxRun > 0 && d > s.cfg.MaxRun {
		return fmt.Sprintf("one run would take about %s, over the %s limit (--max-run)", round(d), s.cfg.MaxRun)
	}
	return ""
}

func round(d time.Duration) time.Duration {
	if d > time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// recoverable reports whether err is the point's own failure (the backend
// cannot do it), to be reported as a skip, rather than the sweep's.
func recoverable(ctx context.Context, err error) bool {
	return ctx.Err() == nil && !errors.Is(err, context.Canceled)
}

// measurePlain times p as plain WebAssembly.
func (s *sweep) measurePlain(ctx context.Context, p workload.Point) (*Result, error) {
	k := series{p.Name, "wasm", "strict", "plain"}
	s.progress(fmt.Sprintf("%s %d wasm", p.Name, p.Size))
	if why := s.tooLong(k, p); why != "" {
		s.skip(Skip{Workload: p.Name, Size: p.Size, Backend: "wasm", Mode: "strict", Reason: why})
		return nil, nil
	}
	b := s.cfg.Budget
	if d, ok := s.predict(k, p); ok && d > time.Second {
		b.Warmup = 0 // a long loop gains nothing from a warm-up, and costs
	}
	if d, ok := s.predict(k, p); ok && d > max(b.Time, 2*time.Second) {
		b.MinReps = 1 // the plain loop's runs vary little, and each costs seconds
	}
	st, err := s.runGuest(ctx, s.plain, s.plainMod, "plain", p, b, Target{Backend: nil, Mode: accel.Strict})
	if err != nil {
		if recoverable(ctx, err) {
			s.skip(Skip{Workload: p.Name, Size: p.Size, Backend: "wasm", Mode: "strict", Reason: err.Error()})
			return nil, nil
		}
		return nil, err
	}
	s.last[k] = [2]float64{p.FLOPs(), st.Median}
	r := s.result(p, "wasm", "strict", st)
	one := 1.0
	r.SpeedupVsWasm = &one
	s.rep.Results = append(s.rep.Results, r)
	return &r, nil
}

// measure times p on t directly and through the guest.
func (s *sweep) measure(ctx context.Context, p workload.Point, t Target, wasm *Result) error {
	name, mode := t.Backend.Name(), t.Mode.String()
	k := series{p.Name, name, mode, "direct"}
	s.progress(fmt.Sprintf("%s %d %s %s", p.Name, p.Size, name, mode))
	fail := func(err error) error {
		if recoverable(ctx, err) {
			s.skip(Skip{Workload: p.Name, Size: p.Size, Backend: name, Mode: mode, Reason: err.Error()})
			if s.cfg.Guest != nil {
				s.done++ // the guest measurement is not made either
			}
			return nil
		}
		return err
	}
	if why := s.tooLong(k, p); why != "" {
		return fail(errors.New(why))
	}
	st, err := s.direct(ctx, p, t)
	if err != nil {
		return fail(err)
	}
	s.last[k] = [2]float64{p.FLOPs(), st.Median}
	r := s.result(p, name, mode, st)
	if s.cfg.Guest != nil {
		s.progress(fmt.Sprintf("%s %d %s %s via guest", p.Name, p.Size, name, mode))
		g, err := s.runGuest(ctx, s.node, s.nodeMod, "host", p, s.cfg.Budget, t)
		switch {
		case err == nil:
			r.GuestMedian = g.Median
			r.GuestOverhead = g.Median - st.Median
		case recoverable(ctx, err):
			s.skip(Skip{Workload: p.Name, Size: p.Size, Backend: name, Mode: mode, Reason: "through the guest: " + err.Error()})
		default:
			return err
		}
	}
	if wasm != nil {
		served := r.Median
		if r.GuestMedian > 0 {
			served = r.GuestMedian
		}
		r.WasmMedian = wasm.Median
		if served > 0 {
			sp := wasm.Median / served
			r.SpeedupVsWasm = &sp
		}
	}
	s.rep.Results = append(s.rep.Results, r)
	return nil
}

// direct times p on the backend called from Go, on resident inputs.
func (s *sweep) direct(ctx context.Context, p workload.Point, t Target) (Stats, error) {
	sess := accel.NewSession(t.Backend, t.Mode, accel.Limits{}, nil)
	defer sess.Close()
	bound, err := workload.Bind(sess, p, s.cnn)
	if err != nil {
		return Stats{}, err
	}
	defer bound.Close()
	times, err := s.cfg.Budget.Repeat(ctx, func() error { return bound.Run(ctx) })
	if err != nil {
		return Stats{}, err
	}
	return Summarize(times), nil
}

// guestOutput is what the benchmark guest prints.
type guestOutput struct {
	TimesNS []int64 `json:"times_ns"`
	Error   string  `json:"error"`
}

// runGuest runs the guest once, which times p its way within b.
func (s *sweep) runGuest(ctx context.Context, e *engine.Engine, m *engine.Module, way string, p workload.Point, b workload.Budget, t Target) (Stats, error) {
	args := []string{"-way", way, "-workload", p.Name, "-size", fmt.Sprint(p.Size)}
	return s.invoke(ctx, e, m, args, b, t)
}

func (s *sweep) invoke(ctx context.Context, e *engine.Engine, m *engine.Module, args []string, b workload.Budget, t Target) (Stats, error) {
	args = append(args, "-warmup", fmt.Sprint(b.Warmup), "-min-reps", fmt.Sprint(b.MinReps),
		"-max-reps", fmt.Sprint(b.MaxReps), "-time", b.Time.String())
	var stdout, stderr bytes.Buffer
	inv := engine.Invocation{Name: "bench", Args: args, Stdout: &stdout, Stderr: &stderr,
		SystemClock: true, MemoryLimitPages: 65536}
	cfg := hostfn.Config{Backend: t.Backend, Mode: t.Mode, Models: s.models}
	if cfg.Backend == nil {
		cfg.Backend = ref.New(1) // the plain way calls no host function
	}
	_, runErr := hostfn.Run(ctx, e, m, inv, cfg)
	var out guestOutput
	line := bytes.TrimSpace(stdout.Bytes())
	if err := json.Unmarshal(line, &out); err != nil {
		return Stats{}, fmt.Errorf("benchmark guest: %w (stdout %q, stderr %q)", errors.Join(runErr, err), truncate(line), truncate(stderr.Bytes()))
	}
	if out.Error != "" {
		return Stats{}, errors.New(out.Error)
	}
	if runErr != nil {
		return Stats{}, fmt.Errorf("benchmark guest: %w", runErr)
	}
	if len(out.TimesNS) == 0 {
		return Stats{}, errors.New("benchmark guest timed nothing")
	}
	times := make([]time.Duration, len(out.TimesNS))
	for i, ns := range out.TimesNS {
		times[i] = time.Duration(ns)
	}
	return Summarize(times), nil
}

func truncate(b []byte) string {
	if len(b) > 400 {
		return string(b[:400]) + "..."
	}
	return string(b)
}

// hostCall measures one tiny call, a one-element relu and the free of its
// result, from the guest and from Go.
func (s *sweep) hostCall(ctx context.Context, t Target) error {
	name, mode := t.Backend.Name(), t.Mode.String()
	batch := max(s.cfg.HostCallBatch, 1)
	b := s.cfg.Budget
	s.progress(fmt.Sprintf("host call %s %s", name, mode))
	hc := HostCall{Backend: name, Mode: mode, Op: "relu", Elements: 1, Calls: 2}
	direct, err := s.tinyDirect(ctx, t, batch, b)
	if err != nil {
		if !recoverable(ctx, err) {
			return err
		}
		s.skip(Skip{Workload: "host-call", Backend: name, Mode: mode, Reason: err.Error()})
		if s.cfg.Guest != nil {
			s.done++ // nor through the guest
		}
		return nil
	}
	hc.DirectNS = direct.Median / float64(batch) * 1e9
	if s.cfg.Guest != nil {
		s.progress(fmt.Sprintf("host call %s %s via guest", name, mode))
		g, err := s.invoke(ctx, s.node, s.nodeMod, []string{"-workload", "call", "-batch", fmt.Sprint(batch)}, b, t)
		if err != nil {
			if !recoverable(ctx, err) {
				return err
			}
			s.skip(Skip{Workload: "host-call", Backend: name, Mode: mode, Reason: "through the guest: " + err.Error()})
		} else {
			hc.GuestNS = g.Median / float64(batch) * 1e9
			hc.OverheadNS = hc.GuestNS - hc.DirectNS
			hc.Noise = g.Noise
		}
	}
	s.rep.HostCalls = append(s.rep.HostCalls, hc)
	return nil
}

func (s *sweep) tinyDirect(ctx context.Context, t Target, batch int, b workload.Budget) (Stats, error) {
	sess := accel.NewSession(t.Backend, t.Mode, accel.Limits{}, nil)
	defer sess.Close()
	x, err := sess.FromFloat32([]float32{-1}, 1)
	if err != nil {
		return Stats{}, err
	}
	times, err := b.Repeat(ctx, func() error {
		for range batch {
			r, err := sess.Relu(ctx, x)
			if err != nil {
				return err
			}
			if err := sess.Free(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	return Summarize(times), nil
}

// result fills in a result's derived figures from its statistics.
func (s *sweep) result(p workload.Point, backend, mode string, st Stats) Result {
	r := Result{Op: p.Op, Workload: p.Name, Backend: backend, Mode: mode, Shape: p.Shape(),
		SizeName: p.SizeName, Size: p.Size, FLOPs: p.FLOPs(), Bytes: p.Bytes(), Stats: st, Bound: "compute"}
	if st.Median > 0 {
		r.GFLOPS = r.FLOPs / st.Median / 1e9
	}
	r.applyRoof(s.cfg.Machine.roofFor(backend))
	return r
}

// applyRoof sets the result's bound and share of peak from rf.
func (r *Result) applyRoof(rf roof) {
	r.Device, r.Bound, r.GBps, r.PeakShare = rf.device, "compute", nil, 0
	st := r.Stats
	if st.Median <= 0 { // a clock too coarse to time the point: no rates
		return
	}
	if rf.gflops > 0 && rf.gbps > 0 && r.Bytes > 0 && r.FLOPs/r.Bytes < rf.gflops/rf.gbps {
		r.Bound = "memory"
		gbps := r.Bytes / st.Median / 1e9
		r.GBps = &gbps
		r.PeakShare = gbps / rf.gbps
	} else if rf.gflops > 0 {
		r.PeakShare = r.GFLOPS / rf.gflops
	}
}
