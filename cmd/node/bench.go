package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/bench"
	"github.com/accelnode/accelnode/bench/workload"
	"github.com/accelnode/accelnode/internal/files"
)

const benchSynopsis = "bench [--ops a,b] [--sizes n,m] [--backends a,b] [--mode strict,fast|both] [--quick] [--format table|json] [--plot FILE.svg|.png] [--compare OLD.json] [--from REPORT.json] [--guest bench.wasm] [--progress] [flags]"

// benchGuestName is the benchmark guest `make build` puts beside the
// binary.
const benchGuestName = "bench.wasm"

// maxSizes bounds the sizes --sizes may list: each is a point of every
// chosen workload on every backend.
const maxSizes = 32

func benchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags, set := newCommand("bench", benchSynopsis, stderr, backendOpts, limits, logging)
	var names, largest []string
	for _, s := range workload.Specs() {
		names = append(names, s.Name)
		largest = append(largest, fmt.Sprintf("%s %d", s.Name, s.MaxSize))
	}
	ops := flags.String("ops", "", "workloads ("+strings.Join(names, ", ")+") or the ops they measure ("+strings.Join(workload.Ops(), ", ")+"), comma-separated; empty means all")
	sizeList := flags.String("sizes", "", fmt.Sprintf("sizes for every chosen workload, comma-separated, at most %d of them (n, rows, batch or points, by workload); empty means each workload's own sweep. "+
		"The largest each takes, a run of a few GiB of tensors and minutes of CPU at most: %s", maxSizes, strings.Join(largest, ", ")))
	backendList := flags.String("backends", "", "backends, comma-separated; empty means every registered one (unavailable ones are listed as skipped)")
	modeList := flags.String("mode", "both", "determinism modes to measure, comma-separated: strict, fast, or both (strict,fast)")
	quick := flags.Bool("quick", false, "a short sweep: small sizes and short timing budgets")
	format := flags.String("format", "table", "output format: table or json")
	plotPath := flags.String("plot", "", "also draw GFLOP/s against size, one chart per workload, into FILE.svg or FILE.png")
	comparePath := flags.String("compare", "", "also print each point's speedup against an earlier --format json report")
	fromPath := flags.String("from", "", "measure nothing: print (and --plot, --compare) a saved --format json report, such as one from another machine")
	guestPath := flags.String("guest", "", "the benchmark guest; empty means "+benchGuestName+" beside the accelnode binary or in ./bin")
	progress := flags.Bool("progress", isTerminal(stderr), "show progress on stderr (default: when stderr is a terminal)")
	minTime := flags.Duration("time", 0, fmt.Sprintf("keep timing each point until this much time has passed, 0 to %v (default 1s, 50ms with --quick)", workload.MaxTime))
	minReps := flags.Int("min-reps", 3, fmt.Sprintf("timed runs of each point at least, 1 to %d", workload.MaxMinReps))
	maxReps := flags.Int("max-reps", 50, fmt.Sprintf("timed runs of each point at most, --min-reps to %d", workload.MaxMaxReps))
	warmup := flags.Int("warmup", 1, fmt.Sprintf("untimed runs before timing, 0 to %d (plain WebAssembly skips them for runs predicted over 1 s, and runs once those over 2 s)", workload.MaxWarmup))
	maxRun := flags.Duration("max-run", 0, fmt.Sprintf("skip a point whose single run, extrapolated from the previous size, would take longer; above 0 and at most %v (default 10s, 2s with --quick). "+
		"Plain WebAssembly without loop checks, which no deadline can stop, predicts its first size at 0.2 GFLOP/s. "+
		"Every guest invocation and every timing from Go runs under a deadline of (--warmup + --min-reps + 2) × --max-run + --time, plus 30s and 1µs an input element to start, which --timeout must not be below", bench.MaxMaxRun))
	if err := parse(flags, args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flags.Args())
	}
	if *format != "table" && *format != "json" {
		return fmt.Errorf("--format: unknown format %q (want table or json)", *format)
	}
	if *plotPath != "" {
		if ext := filepath.Ext(*plotPath); ext != ".svg" && ext != ".png" {
			return fmt.Errorf("--plot %s: want a .svg or .png file", *plotPath)
		}
	}
	specs, err := chooseWorkloads(*ops)
	if err != nil {
		return err
	}
	sizes, err := parseSizes(*sizeList)
	if err != nil {
		return err
	}
	modes, err := parseModes(*modeList)
	if err != nil {
		return err
	}
	given := map[string]bool{}
	flags.Visit(func(f *flag.Flag) { given[f.Name] = true })
	budget := workload.Budget{Warmup: *warmup, MinReps: *minReps, MaxReps: *maxReps, Time: *minTime}
	if !given["time"] {
		budget.Time = pick(*quick, 50*time.Millisecond, time.Second)
	}
	if !given["max-run"] {
		*maxRun = pick(*quick, 2*time.Second, 10*time.Second)
	}
	if err := checkBudget(budget, *maxRun); err != nil {
		return err
	}
	points := bench.Points(specs, sizes, *quick)
	for _, p := range points {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("--sizes: %w", err)
		}
	}

	log, err := set.logger(stderr)
	if err != nil {
		return err
	}
	nodeCfg, err := set.config(log)
	if err != nil {
		return err
	}
	if t := nodeCfg.Limits.Timeout; t > 0 {
		if d, p := bench.LongestDeadline(budget, *maxRun, points); t < d {
			return fmt.Errorf("--timeout %v is shorter than the %v deadline of %s %d's guest invocations ((--warmup + --min-reps + 2) × --max-run + --time, and time to draw its inputs), so honest points could not finish; raise --timeout or lower --max-run", t, d, p.Name, p.Size)
		}
	}

	var old *bench.Report
	if *comparePath != "" {
		if old, err = readBenchReport(*comparePath); err != nil {
			return fmt.Errorf("--compare %s: %w", *comparePath, err)
		}
	}
	if *fromPath != "" {
		rep, err := readBenchReport(*fromPath)
		if err != nil {
			return fmt.Errorf("--from %s: %w", *fromPath, err)
		}
		return writeBenchReport(rep, *format, *plotPath, old, stdout, stderr)
	}

	cfg := bench.Config{Points: points, Budget: budget, MaxRun: *maxRun, HostCallBatch: pick(*quick, 200, 2000),
		RemeasureCPU: true, Quick: *quick}
	cfg.Guest, cfg.GuestMissing, err = loadBenchGuest(*guestPath)
	if err != nil {
		return err
	}

	// One registry serves every mode; both benchmark nodes share it.
	reg := accel.Open(nodeCfg.Backends)
	defer reg.Close()
	if err := requireAvailable(reg, nodeCfg.Require); err != nil {
		return err
	}
	nodeCfg.Registry = reg
	cfg.Node = nodeCfg
	var backendNames []string
	if *backendList != "" {
		for _, name := range strings.Split(*backendList, ",") {
			backendNames = append(backendNames, strings.TrimSpace(name))
		}
	}
	targets, err := bench.Targets(reg, modes, backendNames)
	if err != nil {
		return fmt.Errorf("--backends: %w", err)
	}
	var measured []accel.Backend
	for _, t := range targets {
		if t.Skip == "" {
			measured = append(measured, t.Backend)
		}
	}
	if *progress {
		fmt.Fprint(stderr, "measuring the machine's peaks...")
	}
	cfg.Machine, err = bench.DescribeMachine(ctx, measured, *quick)
	if *progress {
		fmt.Fprint(stderr, "\r                                 \r")
	}
	if err != nil {
		return err
	}
	if *progress {
		cfg.Progress = progressBar(stderr)
	}
	rep, err := bench.Run(ctx, cfg, targets)
	if err != nil {
		if *progress {
			fmt.Fprintln(stderr)
		}
		if rep == nil || ctx.Err() == nil {
			return err
		}
		// Interrupted: keep what was measured, marked partial.
		rep.Partial = true
	}
	rep.Stamp(time.Now(), buildVersion(), "accelnode "+strings.Join(append([]string{"bench"}, args...), " "))
	if werr := writeBenchReport(rep, *format, *plotPath, old, stdout, stderr); werr != nil {
		return werr
	}
	return err
}

// checkBudget checks the timing flags against their documented bounds,
// naming the flag at fault.
func checkBudget(b workload.Budget, maxRun time.Duration) error {
	between := func(flag string, v, lo, hi int) error {
		if v < lo || v > hi {
			return fmt.Errorf("--%s %d: want %d to %d", flag, v, lo, hi)
		}
		return nil
	}
	if err := between("warmup", b.Warmup, 0, workload.MaxWarmup); err != nil {
		return err
	}
	if err := between("min-reps", b.MinReps, 1, workload.MaxMinReps); err != nil {
		return err
	}
	if b.MaxReps < b.MinReps || b.MaxReps > workload.MaxMaxReps {
		return fmt.Errorf("--max-reps %d: want --min-reps (%d) to %d", b.MaxReps, b.MinReps, workload.MaxMaxReps)
	}
	if b.Time < 0 || b.Time > workload.MaxTime {
		return fmt.Errorf("--time %v: want 0 to %v", b.Time, workload.MaxTime)
	}
	if maxRun <= 0 || maxRun > bench.MaxMaxRun {
		return fmt.Errorf("--max-run %v: want above 0 and at most %v", maxRun, bench.MaxMaxRun)
	}
	return b.Validate()
}

// requireAvailable fails unless every backend named is available, as a
// node does for the backends whose library the operator gave: bench must
// not measure without them either, guest or none.
func requireAvailable(reg *accel.Registry, names []string) error {
	for _, name := range names {
		b, ok := reg.Lookup(name)
		if !ok {
			return fmt.Errorf("%w: unknown backend %q", accel.ErrNoBackend, name)
		}
		if st := b.Status(); !st.Available {
			return fmt.Errorf("%w: %s is unavailable: %s", accel.ErrNoBackend, name, st.Reason)
		}
	}
	return nil
}

func writeBenchReport(rep *bench.Report, format, plotPath string, old *bench.Report, stdout, stderr io.Writer) error {
	// The report first: a chart that cannot be drawn must not lose it.
	if format == "json" {
		if err := rep.WriteJSON(stdout); err != nil {
			return err
		}
	} else if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if old != nil {
		w := stdout
		if format == "json" {
			w = stderr // keep stdout one JSON document
		}
		fmt.Fprintln(w)
		if err := rep.WriteComparison(w, old); err != nil {
			return err
		}
	}
	if plotPath != "" {
		if err := bench.Plot(rep, plotPath); err != nil {
			return fmt.Errorf("the report is written, but not the chart: %w", err)
		}
	}
	return nil
}

func pick[T any](quick bool, short, long T) T {
	if quick {
		return short
	}
	return long
}

// chooseWorkloads reads --ops: workload names, or names of the op table's
// operations (and "model") standing for every workload of that op.
func chooseWorkloads(list string) ([]workload.Spec, error) {
	all := workload.Specs()
	if list == "" {
		return all, nil
	}
	var chosen []workload.Spec
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		found := false
		for _, s := range all {
			if s.Name != name && s.OpName() != name {
				continue
			}
			found = true
			if !slices.ContainsFunc(chosen, func(c workload.Spec) bool { return c.Name == s.Name }) {
				chosen = append(chosen, s)
			}
		}
		switch {
		case found:
		case isOp(name):
			return nil, fmt.Errorf("--ops: no workload measures %s (they measure %s)", name, strings.Join(workload.Ops(), ", "))
		default:
			var names []string
			for _, s := range all {
				names = append(names, s.Name)
			}
			return nil, fmt.Errorf("--ops: unknown workload or op %q (workloads: %s; ops: %s)", name, strings.Join(names, ", "), strings.Join(workload.Ops(), ", "))
		}
	}
	return chosen, nil
}

// isOp reports whether name is an operation of the op table.
func isOp(name string) bool {
	_, ok := accel.LookupOp(name)
	return ok
}

func parseSizes(list string) ([]int, error) {
	if list == "" {
		return nil, nil
	}
	fields := strings.Split(list, ",")
	if len(fields) > maxSizes {
		return nil, fmt.Errorf("--sizes: %d sizes, more than the %d a sweep takes", len(fields), maxSizes)
	}
	var sizes []int
	for _, f := range fields {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--sizes: invalid size %q (want positive integers)", f)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

// parseModes reads --mode: mode names, or both for strict and fast.
// Strict comes first, so that fast mode can skip backends whose kernels
// strict mode already measured.
func parseModes(list string) ([]accel.Mode, error) {
	var modes []accel.Mode
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "both" {
			modes = append(modes, accel.Strict, accel.Fast)
			continue
		}
		m, err := accel.ParseMode(f)
		if err != nil {
			return nil, fmt.Errorf("--mode: %w (or both)", err)
		}
		if m == accel.Checked {
			return nil, errors.New("--mode: bench measures strict and fast mode; checked mode serves from fast mode's kernels")
		}
		modes = append(modes, m)
	}
	slices.Sort(modes)
	return slices.Compact(modes), nil
}

// loadBenchGuest reads the benchmark guest from path, or from where `make
// build` and the container image put it. Without one, the reason is
// returned instead and the sweep skips the WebAssembly measurements.
func loadBenchGuest(path string) ([]byte, string, error) {
	if path != "" {
		b, err := files.ReadRegular(path, maxModuleBytes)
		if err != nil {
			return nil, "", fmt.Errorf("--guest: %w", err)
		}
		return b, "", nil
	}
	var places []string
	if exe, err := os.Executable(); err == nil {
		places = append(places, filepath.Join(filepath.Dir(exe), benchGuestName))
	}
	places = append(places, filepath.Join("bin", benchGuestName))
	for _, p := range places {
		if b, err := files.ReadRegular(p, maxModuleBytes); err == nil {
			return b, "", nil
		}
	}
	return nil, fmt.Sprintf("no benchmark guest (looked in %s; `make build` builds it, or pass --guest)", strings.Join(places, ", ")), nil
}

func readBenchReport(path string) (*bench.Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return bench.ReadJSON(f)
}
