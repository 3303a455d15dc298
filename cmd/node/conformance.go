package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance/runner"
	"github.com/accelnode/accelnode/internal/files"
	"github.com/accelnode/accelnode/node"
)

// openRegistry opens the backends; tests replace it to add their own.
var openRegistry = accel.Open

const conformanceSynopsis = "conformance [--determinism strict|fast] [--backends a,b] [--quick] [--repeat N] [--reference ref|spec] [--format table|json|markdown] [--verbose] [--progress] [--guest MODULE.wasm [-- ARGS...]] | conformance --models DIR [--backends a,b]"

func conformanceCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags, set := newCommand("conformance", conformanceSynopsis, stderr,
		group{env.Determinism}, backendOpts, limits, group{env.CacheDir})
	flags.Lookup("determinism").Usage = "strict: run only backends that serve strict mode and fail (exit 1) on any bit that differs from the reference or any broken invariance; fast: measure and report every backend, failing only on errors"
	backendList := flags.String("backends", "", "comma-separated backends to test; empty means every registered backend (unavailable ones are listed as skipped)")
	quick := flags.Bool("quick", false, "run the quick corpus (tiny and odd shapes only)")
	repeat := flags.Int("repeat", 3, "runs of every case on every backend, 1 to 100; run-to-run stability compares them")
	format := flags.String("format", "table", "output format: table, json or markdown")
	verbose := flags.Bool("verbose", false, "with the table, also one row per case")
	progress := flags.Bool("progress", isTerminal(stderr), "show progress on stderr (default: when stderr is a terminal)")
	refName := flags.String("reference", "ref", "what outputs are compared with: ref, spec (the contract's literal transcription, slow; checks ref itself) or another backend")
	guestPath := flags.String("guest", "", "also run this guest once per backend, under the limits of accelnode run, with the arguments after --, and compare the sha256 of its standard output")
	modelDir := flags.String("models", "", "instead of the corpus, run every NAME.onnx of this folder that has NAME.io.ant beside it (testdata/models) on each backend: strict runs must give the same bits, and every run its outputs within 1e-4 of the file's")
	if err := parse(flags, args); err != nil {
		return err
	}
	guestArgs := flags.Args()
	if len(guestArgs) > 0 && guestArgs[0] == "--" {
		guestArgs = guestArgs[1:]
	}
	if *guestPath == "" && len(guestArgs) > 0 {
		return fmt.Errorf("unexpected arguments %q (guest arguments need --guest)", guestArgs)
	}
	switch *format {
	case "table", "json", "markdown":
	default:
		return fmt.Errorf("--format: unknown format %q (want table, json or markdown)", *format)
	}
	if *repeat < 1 || *repeat > 100 {
		return fmt.Errorf("--repeat: %d is not between 1 and 100", *repeat)
	}
	cfg, err := set.config(nil)
	if err != nil {
		return err
	}
	mode := cfg.Mode
	if mode != accel.Strict && mode != accel.Fast {
		return fmt.Errorf("--determinism: conformance runs in strict or fast mode, not %s (fast measures the kernels %s mode serves from)", mode, mode)
	}
	var wasm []byte
	if *guestPath != "" {
		if wasm, err = files.ReadRegular(*guestPath, maxModuleBytes); err != nil {
			return err
		}
	}

	reg := openRegistry(cfg.Backends)
	defer reg.Close()
	all := reg.Backends()
	var chosen []accel.Backend
	if *backendList == "" {
		chosen = all
	} else {
		for _, name := range strings.Split(*backendList, ",") {
			b, ok := reg.Lookup(strings.TrimSpace(name))
			if !ok {
				return fmt.Errorf("%w: unknown backend %q (known: %s)", accel.ErrNoBackend, strings.TrimSpace(name), backendNames(all))
			}
			if !slices.Contains(chosen, b) {
				chosen = append(chosen, b)
			}
		}
	}
	if *modelDir != "" {
		if *guestPath != "" {
			return errors.New("--models and --guest: run one at a time")
		}
		fails, err := modelsConformance(ctx, *modelDir, chosen, stdout)
		if err != nil {
			return err
		}
		for _, f := range fails {
			fmt.Fprintln(stderr, "accelnode conformance: "+f)
		}
		if len(fails) > 0 {
			return exitError{exitFailed}
		}
		return nil
	}

	// The thread-invariance check opens each backend again with another
	// thread count, from a registry per count.
	variants := map[int]*accel.Registry{}
	defer func() {
		for _, r := range variants {
			r.Close()
		}
	}()
	variant := func(name string) func(int) (accel.Backend, error) {
		return func(threads int) (accel.Backend, error) {
			r := variants[threads]
			if r == nil {
				o := cfg.Backends
				o.Threads = threads
				r = openRegistry(o)
				variants[threads] = r
			}
			if b, ok := r.Lookup(name); ok {
				return b, nil
			}
			return nil, fmt.Errorf("%w: %s", accel.ErrNoBackend, name)
		}
	}
	var reference accel.Backend
	if *refName == "spec" {
		reference = runner.Spec()
	} else {
		b, ok := reg.Lookup(*refName)
		if !ok {
			return fmt.Errorf("%w: unknown reference backend %q (known: spec, %s)", accel.ErrNoBackend, *refName, backendNames(all))
		}
		if err := accel.CheckServes(b, accel.Strict); err != nil {
			return fmt.Errorf("--reference: %w", err)
		}
		reference = b
	}
	var targets []runner.Target
	for _, b := range chosen {
		targets = append(targets, runner.Target{Backend: b, Variant: variant(b.Name())})
	}

	rcfg := runner.Config{Mode: mode, Repeat: *repeat, Reference: reference, Limits: accel.Limits{MaxBytes: cfg.Limits.TensorMemory}}
	if *progress {
		rcfg.Progress = progressBar(stderr)
	}
	rep, err := runner.Run(ctx, rcfg, targets, runner.Corpus(*quick))
	if err != nil {
		if *progress {
			fmt.Fprintln(stderr)
		}
		return err
	}

	if wasm != nil {
		cfg.Registry = reg
		runs, err := runGuest(ctx, cfg, wasm, *guestPath, guestArgs, targets)
		if err != nil {
			return err
		}
		rep.CheckGuest(*guestPath, guestArgs, runs)
	}

	switch *format {
	case "json":
		err = rep.WriteJSON(stdout)
	case "markdown":
		err = rep.WriteMarkdown(stdout)
	default:
		err = rep.WriteTable(stdout, *verbose)
	}
	if err != nil {
		return err
	}
	if fails := rep.Failures(); len(fails) > 0 {
		if *format != "table" { // the table lists them itself
			fmt.Fprintf(stderr, "accelnode conformance: %d failures in %s mode:\n", len(fails), mode)
			for i, f := range fails {
				if i == 20 {
					fmt.Fprintf(stderr, "  ... and %d more\n", len(fails)-i)
					break
				}
				fmt.Fprintln(stderr, "  "+f)
			}
		}
		return exitError{exitFailed}
	}
	return nil
}

// runGuest runs the guest once on every target that serves the mode,
// through a node as `accelnode run` does, under its limits, and hashes its
// standard output.
func runGuest(ctx context.Context, cfg node.Config, wasm []byte, path string, args []string, targets []runner.Target) ([]runner.GuestRun, error) {
	n, err := node.Open(ctx, node.Config{Registry: cfg.Registry, Mode: cfg.Mode, Backend: accel.Auto, Limits: cfg.Limits, CacheDir: cfg.CacheDir, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	defer n.Close()
	mod, err := n.Compile(ctx, wasm)
	if err != nil {
		return nil, err
	}
	var runs []runner.GuestRun
	for _, t := range targets {
		if !t.Backend.Status().Serves(cfg.Mode) {
			continue
		}
		res, err := n.Invoke(ctx, mod, node.Invocation{Name: path, Args: args, Backend: t.Backend.Name()})
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		run := runner.GuestRun{Backend: t.Backend.Name(), SHA256: res.StdoutSHA256, ExitCode: res.ExitCode}
		if err != nil {
			run.Error = err.Error()
			if res.Outcome == node.Exited {
				run.Error = fmt.Sprintf("exit code %d", res.ExitCode)
			}
			if line := firstLine(string(res.Stderr)); line != "" {
				run.Error += "; stderr: " + line
			}
		}
		runs = append(runs, run)
	}
	return runs, nil
}

// firstLine is the first non-empty line of s, cut to 200 bytes.
func firstLine(s string) string {
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); line != "" {
			if len(line) > 200 {
				line = line[:200] + "..."
			}
			return line
		}
	}
	return ""
}

func backendNames(bs []accel.Backend) string {
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = b.Name()
	}
	return strings.Join(names, ", ")
}

// progressBar draws "[#####     ] 12/40 matmul/ort/odd-..." on w, over
// itself, and clears it at the end.
func progressBar(w io.Writer) func(done, total int, what string) {
	const width = 20
	last := 0
	return func(done, total int, what string) {
		if done >= total {
			fmt.Fprintf(w, "\r%s\r", strings.Repeat(" ", last))
			return
		}
		filled := 0
		if total > 0 {
			filled = width * done / total
		}
		line := fmt.Sprintf("[%s%s] %d/%d %s", strings.Repeat("#", filled), strings.Repeat(" ", width-filled), done, total, what)
		pad := max(0, last-len(line))
		fmt.Fprintf(w, "\r%s%s", line, strings.Repeat(" ", pad))
		last = len(line)
	}
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
