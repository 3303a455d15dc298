// Package bench is `accelnode bench`: it sweeps workloads × sizes ×
// backends × modes, times each point with the backend called directly from
// Go and through a WebAssembly guest's host call, times the same
// computation as plain WebAssembly, both as the node runs every guest
// (interruptible) and without the loop checks that make that possible, and
// reports each as GFLOP/s, a share of the machine's measured or looked-up
// peak, and a speedup over each plain-WebAssembly baseline.
//
// The guest runs on nodes (package node) assembled over one registry, so
// that it meets the same limits, deadline and host module as any guest of
// `accelnode run`.
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
	"github.com/accelnode/accelnode/bench/workload"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/models"
	"github.com/accelnode/accelnode/node"
)

// The backend names of the two plain-WebAssembly baselines in reports.
const (
	// Wasm is plain WebAssembly compiled without loop checks: the fastest
	// plain code wazero runs, which no deadline can stop.
	Wasm = "wasm"
	// WasmInterruptible is the same code compiled as the node compiles
	// every guest, with the checks that let a deadline stop a loop.
	WasmInterruptible = "wasm-interruptible"
)

// Target is one backend in one determinism mode. A target with Skip set is
// reported as skipped, with Skip as the reason.
type Target struct {
	Backend accel.Backend
	Mode    accel.Mode
	Skip    string
}

// Targets chooses, for each mode, the backends of reg to measure: names,
// or all of them when names is empty. Unavailable backends, backends that
// do not serve the mode, and in fast mode backends whose fast kernels are
// their strict ones (Status.FastIsStrict), when strict mode is measured
// too, are kept with the reason they are skipped.
func Targets(reg *accel.Registry, modes []accel.Mode, names []string) ([]Target, error) {
	all := reg.Backends()
	chosen := all
	if len(names) > 0 {
		chosen = nil
		for _, name := range names {
			b, ok := reg.Lookup(name)
			if !ok {
				known := make([]string, len(all))
				for i, b := range all {
					known[i] = b.Name()
				}
				return nil, fmt.Errorf("%w: unknown backend %q (known: %s)", accel.ErrNoBackend, name, strings.Join(known, ", "))
			}
			chosen = append(chosen, b)
		}
	}
	strictToo := false
	for _, m := range modes {
		strictToo = strictToo || m == accel.Strict
	}
	var targets []Target
	for _, mode := range modes {
		for _, b := range chosen {
			t := Target{Backend: b, Mode: mode}
			st := b.Status()
			switch {
			case !st.Available:
				t.Skip = "unavailable: " + st.Reason
			case mode == accel.Strict && !st.Serves(mode):
				t.Skip = "does not implement the numerics contract, which strict mode requires"
			case !st.Serves(mode):
				t.Skip = fmt.Sprintf("does not serve %s mode (it serves %s)", mode, accel.ModeList(st.Modes))
			case mode == accel.Fast && st.FastIsStrict && strictToo:
				t.Skip = "its fast kernels are its strict ones, measured in strict mode"
			}
			targets = append(targets, t)
		}
	}
	return targets, nil
}

// MaxMaxRun bounds Config.MaxRun (--max-run): the longest single run a
// sweep lets a point take.
const MaxMaxRun = 10 * time.Minute

// setupAllowance and setupPerElement bound what one guest invocation may
// spend beside its timed runs: starting, and drawing and uploading its
// inputs, which took about 0.16 µs an element in an interruptible guest on
// a shared two-core machine. Variables for the tests, which cannot wait as
// long.
var (
	setupAllowance  = 30 * time.Second
	setupPerElement = time.Microsecond
)

// Deadline is the deadline of every guest invocation that times p, and of
// p's timing from Go: room for the warm-up and the least number of timed
// runs, each as long as maxRun, two runs more (the one that crosses the
// time budget, and slack), the time budget itself, and setup for p's
// inputs. A point whose runs keep within maxRun finishes well within it;
// one that does not is stopped and reported as skipped. The zero Point
// stands for a run without inputs, such as the tiny host calls. It is
// rounded up to the second, to read well in messages.
func Deadline(b workload.Budget, maxRun time.Duration, p workload.Point) time.Duration {
	d := time.Duration(b.Warmup+b.MinReps+2)*maxRun + b.Time + setupAllowance + time.Duration(p.InputElements())*setupPerElement
	return (d + time.Second - 1).Truncate(time.Second)
}

// Config is one sweep.
type Config struct {
	Points []workload.Point
	Budget workload.Budget
	// MaxRun skips a point whose single run, extrapolated from the same
	// series' last point by FLOPs, would take longer. It must be positive
	// and at most MaxMaxRun.
	MaxRun time.Duration
	// Guest is the benchmark guest (bench/guest). Without it the
	// plain-WebAssembly baselines and the guest path are skipped, with
	// GuestMissing as the reason.
	Guest        []byte
	GuestMissing string
	// Node configures the two nodes the guest runs on. Its Registry must
	// hold every target's backend; its Limits bound every invocation,
	// whose deadline is Deadline (a Limits.Timeout below a point's is
	// refused). The sweep chooses the rest: the system clock, so that the
	// guest can time itself; one node interruptible and one not; the
	// default backend.
	Node node.Config
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

// Validate checks the budget, the run limit, the points and the nodes'
// timeout against the deadline.
func (c Config) Validate() error {
	if err := c.Budget.Validate(); err != nil {
		return err
	}
	if c.MaxRun <= 0 || c.MaxRun > MaxMaxRun {
		return fmt.Errorf("run limit %v must be above 0 and at most %v", c.MaxRun, MaxMaxRun)
	}
	for _, p := range c.Points {
		if err := p.Validate(); err != nil {
			return err
		}
	}
	if t := c.Node.Limits.Timeout; t > 0 {
		if d, p := LongestDeadline(c.Budget, c.MaxRun, c.Points); t < d {
			return fmt.Errorf("timeout %v is shorter than the %v deadline of %s %d's guest invocations, so honest points could not finish", t, d, p.Name, p.Size)
		}
	}
	return nil
}

// LongestDeadline is the longest Deadline of points, and its point.
func LongestDeadline(b workload.Budget, maxRun time.Duration, points []workload.Point) (time.Duration, workload.Point) {
	var longest time.Duration
	var at workload.Point
	for _, p := range points {
		if d := Deadline(b, maxRun, p); d > longest {
			longest, at = d, p
		}
	}
	return longest, at
}

// series identifies a line of measurements whose times grow with the
// point's FLOPs, for extrapolation.
type series struct{ workload, backend, mode, way string }

type sweep struct {
	cfg  Config
	rep  *Report
	last map[series][2]float64 // FLOPs and median seconds of the last point
	// host runs guests as `accelnode run` does: the host way, and the
	// interruptible plain baseline; plain runs the plain baseline without
	// loop checks.
	host, plain       *node.Node
	hostMod, plainMod *engine.Module
	cnn               *models.Model
	done, total       int
}

// Run measures every point on every target that is not skipped.
func Run(ctx context.Context, cfg Config, targets []Target) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &sweep{cfg: cfg, last: map[series][2]float64{},
		rep: &Report{Schema: Schema, Machine: cfg.Machine, Budget: budgetOf(cfg), Results: []Result{}, HostCalls: []HostCall{}, Skipped: []Skip{}}}
	var err error
	if s.cnn, err = models.NewRegistry().Add(workload.CNNName, workload.CNN()); err != nil {
		return nil, fmt.Errorf("load the benchmark model: %w", err)
	}
	if cfg.Guest != nil {
		if err := s.openNodes(ctx); err != nil {
			return nil, err
		}
		defer s.closeNodes()
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
		s.skip(Skip{Backend: Wasm, Reason: cfg.GuestMissing})
	}
	// Each point: the two plain baselines, then every target directly and
	// through the guest; then every target's tiny call both ways.
	ways, baselines := 1, 0
	if cfg.Guest != nil {
		ways, baselines = 2, 2
	}
	s.total = len(cfg.Points)*(baselines+ways*len(active)) + ways*len(active)

	for _, p := range cfg.Points {
		var wasm, wasmInt *Result // nil where not measured
		if cfg.Guest != nil {
			if wasm, err = s.measurePlain(ctx, p, false); err != nil {
				return s.rep, err
			}
			if wasmInt, err = s.measurePlain(ctx, p, true); err != nil {
				return s.rep, err
			}
			if wasm != nil && wasmInt != nil {
				wasm.SpeedupVsInterruptibleWasm = ratio(wasmInt.Median, wasm.Median)
				wasmInt.SpeedupVsWasm = ratio(wasm.Median, wasmInt.Median)
			}
			for _, r := range []*Result{wasm, wasmInt} {
				if r != nil {
					s.rep.Results = append(s.rep.Results, *r)
				}
			}
		}
		for _, t := range active {
			if err := s.measure(ctx, p, t, wasm, wasmInt); err != nil {
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

// ratio is base over served, or nil where either is not a time.
func ratio(base, served float64) *float64 {
	if !(base > 0 && served > 0) {
		return nil
	}
	r := base / served
	return &r
}

// openNodes assembles the two nodes over the configured registry and
// compiles the guest on each.
func (s *sweep) openNodes(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			s.closeNodes()
		}
	}()
	cfg := s.cfg.Node
	if cfg.Registry == nil {
		return errors.New("the benchmark nodes need the registry the targets come from")
	}
	cfg.Backend, cfg.Mode, cfg.Models = accel.Auto, accel.Strict, nil
	cfg.SystemClock = true // the guest times itself
	cfg.Uninterruptible = false
	if s.host, err = node.Open(ctx, cfg); err != nil {
		return fmt.Errorf("open the benchmark node: %w", err)
	}
	cfg.Uninterruptible = true
	if s.plain, err = node.Open(ctx, cfg); err != nil {
		return fmt.Errorf("open the uninterruptible benchmark node: %w", err)
	}
	if _, err := s.host.Models().Add(workload.CNNName, workload.CNN()); err != nil {
		return fmt.Errorf("load the benchmark model: %w", err)
	}
	if s.plainMod, err = s.plain.Compile(ctx, s.cfg.Guest); err != nil {
		return fmt.Errorf("compile the benchmark guest: %w", err)
	}
	// A guest built from other workload definitions would time other work.
	// The fingerprint is drawn from every workload's inputs: give it time
	// even where the deadline of a point is short.
	res, err := s.plain.Invoke(ctx, s.plainMod, node.Invocation{Name: "bench", Args: []string{"-fingerprint"},
		Limits: node.Limits{Timeout: max(s.deadline(workload.Point{}), time.Minute)}})
	if err != nil {
		return fmt.Errorf("the benchmark guest does not report its workloads (%w), so it predates this node; rebuild it with `make build`", err)
	}
	if got, want := strings.TrimSpace(string(res.Stdout)), workload.Fingerprint(); got != want {
		return fmt.Errorf("the benchmark guest was built from other workloads (fingerprint %q, this node's %q); rebuild it with `make build`", got, want)
	}
	if s.hostMod, err = s.host.Compile(ctx, s.cfg.Guest); err != nil {
		return fmt.Errorf("compile the benchmark guest with loop checks: %w", err)
	}
	return nil
}

func (s *sweep) closeNodes() {
	for _, n := range []*node.Node{s.host, s.plain} {
		if n != nil {
			n.Close()
		}
	}
	s.host, s.plain = nil, nil
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
// the machines measured, for predicting the uninterruptible series' first
// point: its runs cannot be interrupted, so an hour-long one must not start.
const plainSeedRate = 0.2e9 // FLOP/s

// interruptibleSlowdown predicts the interruptible baseline's first point
// from the uninterruptible one: the loop checks made a naive matmul loop
// about 9× slower (0.056 against 0.50 GFLOP/s); 10 errs on the long side.
// A wrong guess costs little: that guest stops at its deadline.
const interruptibleSlowdown = 10

// predict extrapolates one run of p in the series from its last point.
func (s *sweep) predict(k series, p workload.Point) (time.Duration, bool) {
	last, ok := s.last[k]
	ok = ok && last[0] > 0 && last[1] > 0
	switch {
	case ok && (k.way == "plain" || time.Duration(last[1]*1e9) >= minPredictive):
		return time.Duration(last[1] * p.FLOPs() / last[0] * 1e9), true
	case k.way != "plain":
		return 0, false
	case k.backend == WasmInterruptible:
		if u, ok := s.last[series{p.Name, Wasm, k.mode, k.way}]; ok && u[0] == p.FLOPs() && u[1] > 0 {
			return time.Duration(u[1] * interruptibleSlowdown * 1e9), true
		}
		return time.Duration(p.FLOPs() / (plainSeedRate / interruptibleSlowdown) * 1e9), true
	}
	return time.Duration(p.FLOPs() / plainSeedRate * 1e9), true
}

// tooLong reports, as a skip reason, a run predicted beyond MaxRun.
func (s *sweep) tooLong(k series, p workload.Point) string {
	if d, ok := s.predict(k, p); ok && d > s.cfg.MaxRun {
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
// cannot do it, or it ran past its deadline), to be reported as a skip,
// rather than the sweep's.
func recoverable(ctx context.Context, err error) bool {
	return ctx.Err() == nil && !errors.Is(err, context.Canceled)
}

// measurePlain times p as plain WebAssembly, interruptible as the node runs
// every guest or without loop checks. The result is not yet in the report.
func (s *sweep) measurePlain(ctx context.Context, p workload.Point, interruptible bool) (*Result, error) {
	backend, n, m := Wasm, s.plain, s.plainMod
	if interruptible {
		backend, n, m = WasmInterruptible, s.host, s.hostMod
	}
	const mode = "strict" // the reference kernels' loops
	k := series{p.Name, backend, mode, "plain"}
	s.progress(fmt.Sprintf("%s %d %s", p.Name, p.Size, backend))
	if why := s.tooLong(k, p); why != "" {
		s.skip(Skip{Workload: p.Name, Size: p.Size, Backend: backend, Mode: mode, Reason: why})
		return nil, nil
	}
	b := s.cfg.Budget
	if d, ok := s.predict(k, p); ok && d > time.Second {
		b.Warmup = 0 // a long loop gains nothing from a warm-up, and costs
	}
	if d, ok := s.predict(k, p); ok && d > max(b.Time, 2*time.Second) {
		b.MinReps = 1 // the plain loop's runs vary little, and each costs seconds
	}
	st, err := s.runGuest(ctx, n, m, "plain", p, b, nil)
	if err != nil {
		if recoverable(ctx, err) {
			s.skip(Skip{Workload: p.Name, Size: p.Size, Backend: backend, Mode: mode, Reason: err.Error()})
			return nil, nil
		}
		return nil, err
	}
	s.last[k] = [2]float64{p.FLOPs(), st.Median}
	r := s.result(p, backend, mode, st)
	one := 1.0
	if interruptible {
		r.SpeedupVsInterruptibleWasm = &one
	} else {
		r.SpeedupVsWasm = &one
	}
	return &r, nil
}

// measure times p on t directly and through the guest.
func (s *sweep) measure(ctx context.Context, p workload.Point, t Target, wasm, wasmInt *Result) error {
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
		g, err := s.runGuest(ctx, s.host, s.hostMod, "host", p, s.cfg.Budget, &t)
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
	// The speedups are over what a guest sees: the guest's time, or the
	// direct one where the guest path was not measured.
	served := r.Median
	if r.GuestMedian > 0 {
		served = r.GuestMedian
	}
	if wasm != nil {
		r.WasmMedian, r.SpeedupVsWasm = wasm.Median, ratio(wasm.Median, served)
	}
	if wasmInt != nil {
		r.WasmInterruptibleMedian, r.SpeedupVsInterruptibleWasm = wasmInt.Median, ratio(wasmInt.Median, served)
	}
	s.rep.Results = append(s.rep.Results, r)
	return nil
}

// sessionLimits are the nodes' tensor limits, for the timings from Go.
func (s *sweep) sessionLimits() accel.Limits {
	l := s.cfg.Node.Limits
	return accel.Limits{MaxBytes: l.TensorMemory, MaxTensors: l.MaxTensors}
}

// deadline is Deadline for p under the sweep's budget.
func (s *sweep) deadline(p workload.Point) time.Duration {
	return Deadline(s.cfg.Budget, s.cfg.MaxRun, p)
}

// errDeadline is the cause of a timing from Go stopped at the deadline.
var errDeadline = errors.New("deadline")

// withDeadline runs f under deadline d, and says so when that is what
// stopped it.
func withDeadline(ctx context.Context, d time.Duration, f func(ctx context.Context) error) error {
	dctx, cancel := context.WithTimeoutCause(ctx, d, errDeadline)
	defer cancel()
	err := f(dctx)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(dctx), errDeadline) {
		return fmt.Errorf("ran past its deadline of %s (a few times --max-run): %w", d, err)
	}
	return err
}

// direct times p on the backend called from Go, on resident inputs.
func (s *sweep) direct(ctx context.Context, p workload.Point, t Target) (Stats, error) {
	sess, err := accel.NewSession(t.Backend, t.Mode, s.sessionLimits(), nil)
	if err != nil {
		return Stats{}, err
	}
	defer sess.Close()
	var times []time.Duration
	err = withDeadline(ctx, s.deadline(p), func(ctx context.Context) error {
		bound, err := workload.Bind(sess, p, s.cnn)
		if err != nil {
			return err
		}
		defer bound.Close()
		times, err = s.cfg.Budget.Repeat(ctx, func() error { return bound.Run(ctx) })
		return err
	})
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
func (s *sweep) runGuest(ctx context.Context, n *node.Node, m *engine.Module, way string, p workload.Point, b workload.Budget, t *Target) (Stats, error) {
	args := []string{"-way", way, "-workload", p.Name, "-size", fmt.Sprint(p.Size)}
	return s.invoke(ctx, n, m, args, b, s.deadline(p), t)
}

// invoke runs the guest on n under the nodes' limits and deadline d,
// served by t, or by the node's own backend where t is nil (the plain way
// calls no host function).
func (s *sweep) invoke(ctx context.Context, n *node.Node, m *engine.Module, args []string, b workload.Budget, d time.Duration, t *Target) (Stats, error) {
	args = append(args, "-warmup", fmt.Sprint(b.Warmup), "-min-reps", fmt.Sprint(b.MinReps),
		"-max-reps", fmt.Sprint(b.MaxReps), "-time", b.Time.String())
	inv := node.Invocation{Name: "bench", Args: args, Limits: node.Limits{Timeout: d}}
	if t != nil {
		mode := t.Mode
		inv.Backend, inv.Mode = t.Backend.Name(), &mode
	}
	res, runErr := n.Invoke(ctx, m, inv)
	switch res.Outcome {
	case node.Deadline:
		return Stats{}, fmt.Errorf("the guest ran past its deadline of %s (a few times --max-run)", d)
	case node.Budget:
		return Stats{}, fmt.Errorf("the guest exhausted its compute budget (--budget): %w", runErr)
	case node.Memory:
		return Stats{}, fmt.Errorf("the guest exceeded its memory limit (--memory): %w", runErr)
	}
	var out guestOutput
	line := bytes.TrimSpace(res.Stdout)
	if err := json.Unmarshal(line, &out); err != nil {
		return Stats{}, fmt.Errorf("benchmark guest: %w (stdout %q, stderr %q)", errors.Join(runErr, err), truncate(line), truncate(res.Stderr))
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
	hc := HostCall{Backend: name, Mode: mode, Op: accel.Relu.Name, Elements: 1, Calls: 2}
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
		g, err := s.invoke(ctx, s.host, s.hostMod, []string{"-workload", "call", "-batch", fmt.Sprint(batch)}, b, s.deadline(workload.Point{}), &t)
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
	sess, err := accel.NewSession(t.Backend, t.Mode, s.sessionLimits(), nil)
	if err != nil {
		return Stats{}, err
	}
	defer sess.Close()
	x, err := sess.FromFloat32([]float32{-1}, 1)
	if err != nil {
		return Stats{}, err
	}
	var times []time.Duration
	err = withDeadline(ctx, s.deadline(workload.Point{}), func(ctx context.Context) error {
		var err error
		times, err = b.Repeat(ctx, func() error {
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
		return err
	})
	if err != nil {
		return Stats{}, err
	}
	return Summarize(times), nil
}

// result fills in a result's derived figures from its statistics.
func (s *sweep) result(p workload.Point, backend, mode string, st Stats) Result {
	r := Result{Op: p.OpName(), Workload: p.Name, Backend: backend, Mode: mode, Shape: p.Shape(),
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
