package main

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/internal/guesttest"
)

const benchGuest = "github.com/accelnode/accelnode/bench/guest"

// TestBenchQuick is the short sweep: every workload on every backend that
// can serve here, with both plain-WebAssembly baselines, as JSON, with a
// chart, then compared with itself. It asserts the report's shape, never a
// speed.
func TestBenchQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("the quick sweep takes about half a minute")
	}
	guest := guesttest.Path(t, benchGuest)
	dir := t.TempDir()
	chart := filepath.Join(dir, "bench.svg")
	stdout, stderr, err := accelnode(t, "bench", "--quick", "--format", "json", "--guest", guest, "--plot", chart)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var rep struct {
		Schema  string `json:"schema"`
		Machine struct {
			CPU struct {
				Model      string `json:"model"`
				PeakGFLOPS struct {
					Value  float64 `json:"value"`
					Source string  `json:"source"`
				} `json:"peak_gflops"`
			} `json:"cpu"`
		} `json:"machine"`
		Budget struct {
			DeadlineS float64 `json:"deadline_s"`
		} `json:"budget"`
		Results []struct {
			Op, Workload, Backend, Shape, Device string
			Median                               float64  `json:"median_s"`
			GFLOPS                               float64  `json:"gflops"`
			PeakShare                            float64  `json:"peak_share"`
			Speedup                              *float64 `json:"speedup_vs_wasm"`
			SpeedupInterruptible                 *float64 `json:"speedup_vs_interruptible_wasm"`
		} `json:"results"`
		Skipped []struct{ Workload, Backend, Reason string } `json:"skipped"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	if rep.Schema != "accelnode-bench/2" {
		t.Errorf("schema %q", rep.Schema)
	}
	if rep.Machine.CPU.Model == "" || rep.Machine.CPU.PeakGFLOPS.Source != "measured" || !(rep.Machine.CPU.PeakGFLOPS.Value > 0) {
		t.Errorf("machine = %+v", rep.Machine)
	}
	// --quick: (1 warm-up + 3 runs + 2) × 2 s + 50 ms, and 30 s to
	// start, rounded up to the second.
	if rep.Budget.DeadlineS != 43 {
		t.Errorf("budget.deadline_s = %g, want 43", rep.Budget.DeadlineS)
	}
	seen := map[string]bool{}
	for _, r := range rep.Results {
		seen[r.Backend+" "+r.Op] = true
		// A GPU missing from the datasheet table may have no known peak.
		if !(r.Median > 0 && r.GFLOPS > 0 && r.PeakShare >= 0) || r.Device == "cpu" && !(r.PeakShare > 0) {
			t.Errorf("%s %s on %s: %+v", r.Workload, r.Shape, r.Backend, r)
		}
	}
	for _, want := range []string{"wasm matmul", "wasm-interruptible matmul", "ref matmul", "ref conv2d", "ref tsne_step", "ref model", "wasm model"} {
		if !seen[want] {
			t.Errorf("no %s result", want)
		}
	}
	// Where both baselines of ref's matmul were measured, so are both
	// speedups.
	for _, r := range rep.Results {
		if r.Backend == "ref" && r.Op == "matmul" && (r.Speedup == nil || r.SpeedupInterruptible == nil) {
			t.Errorf("ref %s %s: speedups %v over wasm, %v over interruptible wasm", r.Workload, r.Shape, r.Speedup, r.SpeedupInterruptible)
		}
	}
	for _, s := range rep.Skipped {
		if s.Reason == "" {
			t.Errorf("%s skipped without a reason", s.Backend)
		}
	}
	if fi, err := os.Stat(chart); err != nil || fi.Size() == 0 {
		t.Errorf("chart: %v", err)
	}

	old := filepath.Join(dir, "old.json")
	if err := os.WriteFile(old, []byte(stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err = accelnode(t, "bench", "--quick", "--ops", "matmul-square", "--sizes", "32", "--backends", "ref", "--mode", "strict", "--guest", guest, "--compare", old)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "Against ") || !strings.Contains(stdout, "no point in common") {
		t.Errorf("comparison with no common point:\n%s", stdout)
	}
	for _, want := range []string{"VS WASM", "VS INTERRUPTIBLE WASM", "wasm-interruptible", "as accelnode run runs every guest"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
}

func TestBenchFlags(t *testing.T) {
	// Every case that passes its flag checks goes on to a guest that does
	// not exist, so that a missing check fails at once rather than start a
	// sweep.
	const noGuest = "/nonexistent.wasm"
	many := strings.TrimSuffix(strings.Repeat("8,", maxSizes+1), ",")
	for _, c := range []struct {
		name string
		args []string
		want string // in the error, or for a flag the package refuses, on stderr
	}{
		{"format", []string{"--format", "xml"}, "unknown format"},
		{"plot", []string{"--plot", "chart.pdf"}, "want a .svg or .png"},
		{"unknown op", []string{"--ops", "fft"}, "unknown workload or op"},
		{"op without a workload", []string{"--ops", "relu"}, "no workload measures relu"},
		{"size not a number", []string{"--sizes", "8,x"}, "invalid size"},
		{"size NaN", []string{"--sizes", "NaN"}, "invalid size"},
		{"size zero", []string{"--sizes", "0"}, "invalid size"},
		{"size negative", []string{"--sizes", "-8"}, "invalid size"},
		{"too many sizes", []string{"--sizes", many}, "more than the 32"},
		{"t-SNE too large", []string{"--ops", "tsne", "--sizes", "999999", "--guest", noGuest}, "above the largest it accepts, 70000"},
		{"t-SNE by op, too large", []string{"--ops", "tsne_step", "--sizes", "70001", "--guest", noGuest}, "above the largest"},
		{"matmul too large", []string{"--ops", "matmul-square", "--sizes", "16385", "--guest", noGuest}, "above the largest it accepts, 16384"},
		{"t-SNE too small", []string{"--ops", "tsne", "--sizes", "10"}, "too few"},
		{"checked mode", []string{"--mode", "checked"}, "checked mode"},
		{"unknown mode", []string{"--mode", "lax"}, "unknown determinism mode"},
		{"no determinism alias", []string{"--determinism", "fast"}, "flag provided but not defined: -determinism"},
		{"min-reps zero", []string{"--min-reps", "0"}, "--min-reps 0: want 1 to 100"},
		{"min-reps too many", []string{"--min-reps", "101", "--max-reps", "200", "--guest", noGuest}, "--min-reps 101: want 1 to 100"},
		{"max-reps below min-reps", []string{"--min-reps", "5", "--max-reps", "4"}, "--max-reps 4: want --min-reps (5) to 10000"},
		{"max-reps too many", []string{"--max-reps", "10001", "--guest", noGuest}, "--max-reps 10001"},
		{"warmup negative", []string{"--warmup", "-1"}, "--warmup -1: want 0 to 100"},
		{"warmup too many", []string{"--warmup", "101", "--guest", noGuest}, "--warmup 101"},
		{"time negative", []string{"--time", "-1s"}, "--time -1s: want 0 to 1m0s"},
		{"time too long", []string{"--time", "61s", "--guest", noGuest}, "--time 1m1s"},
		{"time NaN", []string{"--time", "NaN"}, `invalid value "NaN" for flag -time`},
		{"max-run zero", []string{"--max-run", "0s", "--guest", noGuest}, "--max-run 0s: want above 0"},
		{"max-run negative", []string{"--max-run", "-1s"}, "--max-run -1s"},
		{"max-run too long", []string{"--max-run", "11m", "--guest", noGuest}, "at most 10m0s"},
		{"max-run NaN", []string{"--max-run", "NaN"}, `invalid value "NaN" for flag -max-run`},
		{"timeout below the deadline", []string{"--timeout", "30s", "--guest", noGuest}, "--timeout 30s is shorter than"},
		{"timeout below a long max-run's deadline", []string{"--max-run", "10m", "--guest", noGuest}, "shorter than"},
		{"bad timeout", []string{"--timeout", "soon"}, "--timeout"},
		{"bad budget", []string{"--budget", "-1"}, "--budget"},
		{"bad memory", []string{"--memory", "lots"}, "--memory"},
		{"compare missing", []string{"--compare", "/nonexistent.json"}, "no such file"},
		{"guest missing", []string{"--guest", noGuest}, "no such file"},
		{"unknown backend", []string{"--backends", "nope", "--ops", "matmul-square", "--sizes", "8"}, "unknown backend"},
		{"arguments", []string{"extra"}, "unexpected arguments"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, err := accelnode(t, append([]string{"bench"}, c.args...)...)
			if err == nil || !strings.Contains(err.Error()+"\n"+stderr, c.want) {
				t.Errorf("bench %v: %v, want an error containing %q\n%s", c.args, err, c.want, stderr)
			}
			if err != nil && exitCode(t.Context(), err, new(strings.Builder)) != exitNode {
				t.Errorf("bench %v: exit code %d, want %d", c.args, exitCode(t.Context(), err, new(strings.Builder)), exitNode)
			}
		})
	}
}

// TestBenchModes checks that --mode takes what its help offers: both,
// strict and fast, in any order, each measured once, strict first.
func TestBenchModes(t *testing.T) {
	for _, c := range []struct {
		list string
		want []accel.Mode
	}{
		{"both", []accel.Mode{accel.Strict, accel.Fast}},
		{"strict,fast", []accel.Mode{accel.Strict, accel.Fast}},
		{"fast,strict", []accel.Mode{accel.Strict, accel.Fast}},
		{"fast, both", []accel.Mode{accel.Strict, accel.Fast}},
		{"fast", []accel.Mode{accel.Fast}},
		{"strict,strict", []accel.Mode{accel.Strict}},
	} {
		got, err := parseModes(c.list)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("parseModes(%q) = %v, %v; want %v", c.list, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "checked", "strict,checked", "all"} {
		if _, err := parseModes(bad); err == nil {
			t.Errorf("parseModes(%q) accepted", bad)
		}
	}

	// The help's default and every mode word it names parse.
	_, stderr, err := accelnode(t, "bench", "--help")
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("bench --help: %v", err)
	}
	for _, word := range []string{"strict", "fast", "both"} {
		if !strings.Contains(stderr, word) {
			t.Errorf("bench --help does not offer %s", word)
		}
		if _, err := parseModes(word); err != nil {
			t.Errorf("bench --help offers %s, which is refused: %v", word, err)
		}
	}
	if !strings.Contains(stderr, `(default "both")`) {
		t.Errorf("bench --help lacks the default mode:\n%s", stderr)
	}
}

// TestBenchHelp checks that bench's help lists the variables of its
// settings alone, and the bounds of its flags.
func TestBenchHelp(t *testing.T) {
	_, stderr, err := accelnode(t, "bench", "--help")
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("bench --help: %v", err)
	}
	for _, v := range []envVar{env.Threads, env.ORTLibrary, env.Timeout, env.Budget, env.Memory, env.LogLevel} {
		if !strings.Contains(stderr, v.Name) {
			t.Errorf("bench --help does not list %s", v.Name)
		}
	}
	for _, v := range []envVar{env.Determinism, env.Backend, env.CheckRate, env.Clock} {
		if strings.Contains(stderr, v.Name) {
			t.Errorf("bench --help lists %s, which bench does not read", v.Name)
		}
	}
	for _, bound := range []string{"tsne 70000", "matmul-square 16384", "at most 32", "1 to 100", "--min-reps to 10000", "0 to 1m0s", "at most 10m0s", "deadline"} {
		if !strings.Contains(stderr, bound) {
			t.Errorf("bench --help does not say %q", bound)
		}
	}
}

// TestBenchFromOldReports checks that the committed reports, of the
// previous schema, still print, draw and compare.
func TestBenchFromOldReports(t *testing.T) {
	paths, err := filepath.Glob("../../docs/bench/*.json")
	if err != nil || len(paths) < 2 {
		t.Fatalf("reports in docs/bench: %v, %v", paths, err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			chart := filepath.Join(t.TempDir(), "chart.svg")
			stdout, stderr, err := accelnode(t, "bench", "--from", path, "--plot", chart, "--compare", paths[0])
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			for _, want := range []string{"WORKLOAD", "matmul-square", "VS WASM", "Against "} {
				if !strings.Contains(stdout, want) {
					t.Errorf("output lacks %q:\n%s", want, stdout)
				}
			}
			if fi, err := os.Stat(chart); err != nil || fi.Size() == 0 {
				t.Errorf("chart: %v", err)
			}
			stdout, _, err = accelnode(t, "bench", "--from", path, "--format", "json")
			if err != nil || !strings.Contains(stdout, `"schema": "accelnode-bench/1"`) {
				t.Errorf("--format json: %v; the report keeps its schema:\n%.300s", err, stdout)
			}
		})
	}
}

// TestBenchWithoutGuest checks that a missing guest skips the WebAssembly
// measurements with the reason instead of failing.
func TestBenchWithoutGuest(t *testing.T) {
	t.Chdir(t.TempDir()) // no bin/bench.wasm here
	stdout, stderr, err := accelnode(t, "bench", "--quick", "--ops", "matmul-square", "--sizes", "16", "--backends", "ref", "--mode", "strict")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "no benchmark guest") || !strings.Contains(stdout, "ref") {
		t.Errorf("table:\n%s", stdout)
	}
}
