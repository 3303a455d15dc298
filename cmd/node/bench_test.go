package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/internal/guesttest"
)

const benchGuest = "github.com/accelnode/accelnode/internal/bench/guest"

// TestBenchQuick is the short sweep: every workload on every backend that
// can serve here, with the plain-WebAssembly baseline, as JSON, with a
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
		Machine struct {
			CPU struct {
				Model      string `json:"model"`
				PeakGFLOPS struct {
					Value  float64 `json:"value"`
					Source string  `json:"source"`
				} `json:"peak_gflops"`
			} `json:"cpu"`
		} `json:"machine"`
		Results []struct {
			Op, Workload, Backend, Shape, Device string
			Median                               float64  `json:"median_s"`
			GFLOPS                               float64  `json:"gflops"`
			PeakShare                            float64  `json:"peak_share"`
			Speedup                              *float64 `json:"speedup_vs_wasm"`
		} `json:"results"`
		Skipped []struct{ Backend, Reason string } `json:"skipped"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	if rep.Machine.CPU.Model == "" || rep.Machine.CPU.PeakGFLOPS.Source != "measured" || !(rep.Machine.CPU.PeakGFLOPS.Value > 0) {
		t.Errorf("machine = %+v", rep.Machine)
	}
	seen := map[string]bool{}
	for _, r := range rep.Results {
		seen[r.Backend+" "+r.Op] = true
		// A GPU missing from the datasheet table may have no known peak.
		if !(r.Median > 0 && r.GFLOPS > 0 && r.PeakShare >= 0) || r.Speedup == nil || r.Device == "cpu" && !(r.PeakShare > 0) {
			t.Errorf("%s %s on %s: %+v", r.Workload, r.Shape, r.Backend, r)
		}
	}
	for _, want := range []string{"wasm matmul", "ref matmul", "ref conv2d", "ref tsne_step", "ref model", "wasm model"} {
		if !seen[want] {
			t.Errorf("no %s result", want)
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
}

func TestBenchFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "xml"}, "unknown format"},
		{[]string{"--plot", "chart.pdf"}, "want a .svg or .png"},
		{[]string{"--ops", "fft"}, "unknown workload"},
		{[]string{"--sizes", "8,x"}, "invalid size"},
		{[]string{"--sizes", "0"}, "invalid size"},
		{[]string{"--mode", "checked"}, "checked mode"},
		{[]string{"--mode", "lax"}, "unknown determinism mode"},
		{[]string{"--ops", "tsne", "--sizes", "10"}, "too few"},
		{[]string{"--min-reps", "0"}, "invalid budget"},
		{[]string{"--compare", "/nonexistent.json"}, "no such file"},
		{[]string{"--guest", "/nonexistent.wasm"}, "no such file"},
		{[]string{"--backends", "nope", "--ops", "matmul-square", "--sizes", "8"}, "unknown backend"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		_, _, err := accelnode(t, append([]string{"bench"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("bench %v: %v, want an error containing %q", c.args, err, c.want)
		}
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
