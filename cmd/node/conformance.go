package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance/runner"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/hostfn"
)

// openRegistry opens the backends; tests replace it to add their own.
var openRegistry = accel.Open

const conformanceSynopsis = "conformance [--mode strict|fast] [--backends a,b] [--quick] [--repeat N] [--reference ref|spec] [--format table|json|markdown] [--verbose] [--progress] [--guest MODULE.wasm [-- ARGS...]]"

func conformanceCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("conformance", conformanceSynopsis, stderr)
	modeName := fs.String("mode", "fast", "strict: run only backends that implement the numerics contract and fail (exit 1) on any bit that differs from ref or any broken invariance; fast: measure and report (--determinism is an alias)")
	backendList := fs.String("backends", "", "comma-separated backends to test; empty means every registered backend (unavailable ones are listed as skipped)")
	quick := fs.Bool("quick", false, "run the quick corpus (tiny and odd shapes only)")
	repeat := fs.Int("repeat", 3, "runs of every case on every backend; run-to-run stability compares them")
	format := fs.String("format", "table", "output format: table, json or markdown")
	verbose := fs.Bool("verbose", false, "with the table, also one row per case")
	progress := fs.Bool("progress", isTerminal(stderr), "show progress on stderr (default: when stderr is a terminal)")
	refName := fs.String("reference", "ref", "what outputs are compared with: ref, spec (the contract's literal transcription, slow; checks ref itself) or another backend")
	guestPath := fs.String("guest", "", "also run this guest once per backend, with the arguments after --, and compare the sha256 of its standard output")
	bf := addBackendFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	guestArgs := fs.Args()
	if len(guestArgs) > 0 && guestArgs[0] == "--" {
		guestArgs = guestArgs[1:]
	}
	if *guestPath == "" && len(guestArgs) > 0 {
		return fmt.Errorf("unexpected arguments %q (guest arguments need --guest)", guestArgs)
	}
	switch *format {
	case "table", "json", "markdown":
	default:
		return fmt.Errorf("unknown format %q (want table, json or markdown)", *format)
	}
	if *repeat < 1 {
		return fmt.Errorf("invalid --repeat %d (want at least 1)", *repeat)
	}

	// --mode, or its alias --determinism when that alone is given; the
	// environment's determinism mode is not this command's default.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case set["determinism"] && set["mode"] && *bf.mode != *modeName:
		return fmt.Errorf("--mode %s and --determinism %s disagree", *modeName, *bf.mode)
	case set["determinism"]:
		*modeName = *bf.mode
	}
	*bf.mode = *modeName
	mode, opts, err := bf.options(nil)
	if err != nil {
		return err
	}
	if mode != accel.Strict && mode != accel.Fast {
		return fmt.Errorf("conformance runs in strict or fast mode, not %s (fast measures the kernels %s mode serves from)", mode, mode)
	}
	var wasm []byte
	if *guestPath != "" {
		if wasm, err = os.ReadFile(*guestPath); err != nil {
			return err
		}
	}

	reg := openRegistry(opts)
	defer reg.Close()
	all := reg.Backends()
	var chosen []accel.Backend
	if *backendList == "" {
		chosen = all
	} else {
		for _, name := range strings.Split(*backendList, ",") {
			name = strings.TrimSpace(name)
			i := slices.IndexFunc(all, func(b accel.Backend) bool { return b.Name() == name })
			if i < 0 {
				return fmt.Errorf("%w: unknown backend %q (known: %s)", accel.ErrNoBackend, name, backendNames(all))
			}
			if !slices.Contains(chosen, all[i]) {
				chosen = append(chosen, all[i])
			}
		}
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
				o := opts
				o.Threads = threads
				r = openRegistry(o)
				variants[threads] = r
			}
			for _, b := range r.Backends() {
				if b.Name() == name {
					return b, nil
				}
			}
			return nil, fmt.Errorf("%w: %s", accel.ErrNoBackend, name)
		}
	}
	var reference accel.Backend
	if *refName == "spec" {
		reference = runner.Spec()
	} else {
		i := slices.IndexFunc(all, func(b accel.Backend) bool { return b.Name() == *refName })
		if i < 0 {
			return fmt.Errorf("%w: unknown reference backend %q (known: spec, %s)", accel.ErrNoBackend, *refName, backendNames(all))
		}
		if st := all[i].Status(); !st.Available {
			return fmt.Errorf("%w: reference %s is unavailable: %s", accel.ErrNoBackend, *refName, st.Reason)
		}
		reference = all[i]
	}
	var targets []runner.Target
	for _, b := range chosen {
		targets = append(targets, runner.Target{Backend: b, Variant: variant(b.Name())})
	}

	cfg := runner.Config{Mode: mode, Repeat: *repeat, Reference: reference}
	if *progress {
		cfg.Progress = progressBar(stderr)
	}
	rep, err := runner.Run(ctx, cfg, targets, runner.Corpus(*quick))
	if err != nil {
		if *progress {
			fmt.Fprintln(stderr)
		}
		return err
	}

	if wasm != nil {
		runs, err := runGuest(ctx, wasm, *guestPath, guestArgs, mode, targets)
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
		return exitError{1}
	}
	return nil
}

// runGuest runs the guest once on every backend the mode admits, through
// the node's engine as `accelnode run` does, and hashes its standard output.
func runGuest(ctx context.Context, wasm []byte, path string, args []string, mode accel.Mode, targets []runner.Target) ([]runner.GuestRun, error) {
	eng, err := engine.New(ctx, engine.Config{HostModules: []engine.HostModule{hostfn.Module{}}})
	if err != nil {
		return nil, err
	}
	defer eng.Close(context.Background())
	mod, err := eng.Compile(ctx, wasm)
	if err != nil {
		return nil, err
	}
	var runs []runner.GuestRun
	for _, t := range targets {
		st := t.Backend.Status()
		if !st.Available || (mode == accel.Strict && !st.Deterministic) {
			continue
		}
		h := sha256.New()
		var errOut bytes.Buffer
		_, err := hostfn.Run(ctx, eng, mod, engine.Invocation{
			Name:   path,
			Args:   args,
			Stdout: h,
			Stderr: &errOut,
		}, hostfn.Config{Backend: t.Backend, Mode: mode})
		run := runner.GuestRun{Backend: t.Backend.Name(), SHA256: hex.EncodeToString(h.Sum(nil))}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			var exit *engine.ExitError
			if errors.As(err, &exit) {
				run.ExitCode = exit.Code
				run.Error = fmt.Sprintf("exit code %d", exit.Code)
			} else {
				run.Error = err.Error()
			}
			if line := firstLine(errOut.String()); line != "" {
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
