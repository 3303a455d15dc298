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
	"github.com/accelnode/accelnode/internal/bench"
	"github.com/accelnode/accelnode/internal/bench/workload"
)

const benchSynopsis = "bench [--ops a,b] [--sizes n,m] [--backends a,b] [--mode strict,fast] [--quick] [--format table|json] [--plot FILE.svg|.png] [--compare OLD.json] [--guest bench.wasm] [--progress]"

// benchGuestName is the benchmark guest `make build` puts beside the
// binary.
const benchGuestName = "bench.wasm"

func benchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", benchSynopsis, stderr)
	var names []string
	for _, s := range workload.Specs() {
		names = append(names, s.Name)
	}
	ops := fs.String("ops", "", "workloads ("+strings.Join(names, ", ")+") or ABI ops (matmul, conv2d, tsne_step, model), comma-separated; empty means all")
	sizeList := fs.String("sizes", "", "sizes for every chosen workload, comma-separated (n, rows, batch or points, by workload); empty means each workload's own sweep")
	backendList := fs.String("backends", "", "backends, comma-separated; empty means every registered one (unavailable ones are listed as skipped)")
	modeList := fs.String("mode", "strict,fast", "determinism modes to measure, comma-separated: strict, fast or both")
	quick := fs.Bool("quick", false, "a short sweep: small sizes and short timing budgets")
	format := fs.String("format", "table", "output format: table or json")
	plotPath := fs.String("plot", "", "also draw GFLOP/s against size, one chart per workload, into FILE.svg or FILE.png")

	comparePath := fs.String("compare", "", "also print each point's speedup against an earlier --format json report")
	fromPath := fs.String("from", "", "measure nothing: print (and --plot, --compare) a saved --format json report, such as one from another machine")
	guestPath := fs.String("guest", "", "the benchmark guest; empty means "+benchGuestName+" beside the accelnode binary or in ./bin")
	progress := fs.Bool("progress", isTerminal(stderr), "show progress on stderr (default: when stderr is a terminal)")
	minTime := fs.Duration("time", 0, "keep timing each point until this much time has passed (default 1s, 50ms with --quick)")
	minReps := fs.Int("min-reps", 3, "timed runs of each point at least")
	maxReps := fs.Int("max-reps", 50, "timed runs of each point at most")
	warmup := fs.Int("warmup", 1, "untimed runs before timing (plain WebAssembly skips it for runs predicted over 1 s, and runs once those over 2 s)")
	maxRun := fs.Duration("max-run", 0, "skip a point whose single run, extrapolated from the previous size, would take longer; plain WebAssembly, which cannot be interrupted, predicts its first size at 0.2 GFLOP/s (default 10s, 2s with --quick)")
	bf := addBackendFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *format != "table" && *format != "json" {
		return fmt.Errorf("unknown format %q (want table or json)", *format)
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
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["determinism"] && !set["mode"] {
		*modeList = *bf.mode // --determinism is an alias
	}
	modes, err := parseModes(*modeList)
	if err != nil {
		return err
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
	budget := workload.Budget{Warmup: *warmup, MinReps: *minReps, MaxReps: *maxReps, Time: *minTime}
	if !set["time"] {
		budget.Time = pick(*quick, 50*time.Millisecond, time.Second)
	}
	if !set["max-run"] {
		*maxRun = pick(*quick, 2*time.Second, 10*time.Second)
	}
	if err := budget.Validate(); err != nil {
		return err
	}
	points := bench.Points(specs, sizes, *quick)
	for _, p := range points {
		if err := p.Validate(); err != nil {
			return err
		}
	}

	cfg := bench.Config{Points: points, Budget: budget, MaxRun: *maxRun, HostCallBatch: pick(*quick, 200, 2000),
		RemeasureCPU: true, Quick: *quick}
	cfg.Guest, cfg.GuestMissing, err = loadBenchGuest(*guestPath)
	if err != nil {
		return err
	}

	registries := map[accel.Mode]*accel.Registry{}
	defer func() {
		for _, r := range registries {
			r.Close()
		}
	}()
	var all []accel.Backend
	for _, m := range modes {
		*bf.mode = m.String()
		_, opts, err := bf.options(nil)
		if err != nil {
			return err
		}
		registries[m] = openRegistry(opts)
		all = append(all, registries[m].Backends()...)
	}
	var backendNames []string
	if *backendList != "" {
		for _, name := range strings.Split(*backendList, ",") {
			backendNames = append(backendNames, strings.TrimSpace(name))
		}
	}
	targets, err := bench.Targets(registries, modes, backendNames)
	if err != nil {
		return err
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

// chooseWorkloads reads --ops: workload names, or op names standing for
// every workload of that op.
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
			if (s.Name == name || s.Op == name) && !slices.ContainsFunc(chosen, func(c workload.Spec) bool { return c.Name == s.Name }) {
				chosen, found = append(chosen, s), true
			} else if s.Name == name || s.Op == name {
				found = true
			}
		}
		if !found {
			_, err := workload.Find(name)
			return nil, fmt.Errorf("--ops: %w", err)
		}
	}
	return chosen, nil
}

func parseSizes(list string) ([]int, error) {
	var sizes []int
	if list == "" {
		return nil, nil
	}
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--sizes: invalid size %q (want positive integers)", f)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

// parseModes reads --mode; strict comes first, so that fast mode can skip
// backends whose kernels strict mode already measured.
func parseModes(list string) ([]accel.Mode, error) {
	var modes []accel.Mode
	for _, f := range strings.Split(list, ",") {
		m, err := accel.ParseMode(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("--mode: %w", err)
		}
		if m == accel.Checked {
			return nil, errors.New("--mode: bench measures strict and fast mode; checked mode serves from fast mode's kernels")
		}
		if !slices.Contains(modes, m) {
			modes = append(modes, m)
		}
	}
	slices.Sort(modes)
	return modes, nil
}

// loadBenchGuest reads the benchmark guest from path, or from where `make
// build` and the container image put it. Without one, the reason is
// returned instead and the sweep skips the WebAssembly measurements.
func loadBenchGuest(path string) ([]byte, string, error) {
	if path != "" {
		b, err := os.ReadFile(path)
		return b, "", err
	}
	var places []string
	if exe, err := os.Executable(); err == nil {
		places = append(places, filepath.Join(filepath.Dir(exe), benchGuestName))
	}
	places = append(places, filepath.Join("bin", benchGuestName))
	for _, p := range places {
		if b, err := os.ReadFile(p); err == nil {
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
