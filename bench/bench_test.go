package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/bench/workload"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/node"
)

// cacheDir keeps the guest's compiled code across the tests' nodes, so
// that each compiles it once.
var cacheDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bench-test-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cacheDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// nodeConfig is the nodes' configuration over backends.
func nodeConfig(backends ...accel.Backend) node.Config {
	return node.Config{Registry: accel.NewRegistry(backends...), CacheDir: cacheDir}
}

func ms(v ...float64) []time.Duration {
	d := make([]time.Duration, len(v))
	for i, x := range v {
		d[i] = time.Duration(x * float64(time.Millisecond))
	}
	return d
}

func TestSummarize(t *testing.T) {
	for _, c := range []struct {
		name  string
		times []time.Duration
		want  Stats
	}{
		{"one", ms(2), Stats{Reps: 1, Median: 0.002, Min: 0.002, Max: 0.002}},
		{"odd", ms(3, 1, 2), Stats{Reps: 3, Median: 0.002, Min: 0.001, Max: 0.003, Noise: 0.5}},
		{"even", ms(4, 1, 2, 3), Stats{Reps: 4, Median: 0.0025, Min: 0.001, Max: 0.004, Noise: 0.4}},
		// One slow outlier moves neither the median nor the noise much.
		{"outlier", ms(10, 10, 10, 11, 1000), Stats{Reps: 5, Median: 0.010, Min: 0.010, Max: 1, Noise: 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Summarize(c.times)
			near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-12+1e-9*math.Abs(b) }
			if got.Reps != c.want.Reps || !near(got.Median, c.want.Median) || !near(got.Min, c.want.Min) ||
				!near(got.Max, c.want.Max) || !near(got.Noise, c.want.Noise) {
				t.Errorf("Summarize = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestLookupGPU(t *testing.T) {
	for _, c := range []struct{ driverName, want string }{
		{"NVIDIA H200", "H200 SXM"},
		{"NVIDIA H200 NVL", "H200 NVL"},
		{"NVIDIA H100 80GB HBM3", "H100 SXM"},
		{"NVIDIA H100 PCIe", "H100 PCIe"},
		{"NVIDIA H100 NVL", "H100 NVL"},
		{"NVIDIA A100-SXM4-80GB", "A100 80GB SXM"},
		{"NVIDIA A100 80GB PCIe", "A100 80GB PCIe"},
		{"NVIDIA A100-SXM4-40GB", "A100 40GB"},
		{"NVIDIA L4", "L4"},
		{"NVIDIA L40S", "L40S"},
		{"NVIDIA L40", "L40"},
		{"Tesla T4", "T4"},
		{"NVIDIA A10G", "A10G"},
		{"Tesla V100-SXM2-16GB", "V100 SXM2"},
		{"NVIDIA GeForce RTX 4090", "GeForce RTX 4090"},
		{"NVIDIA B300 SXM6 AC", ""},
		{"NVIDIA GeForce GTX 1080", ""},
	} {
		part, ok := lookupGPU(c.driverName)
		if ok != (c.want != "") || part.name != c.want {
			t.Errorf("lookupGPU(%q) = %q, %v; want %q", c.driverName, part.name, ok, c.want)
		}
		if ok && (part.fp32TFLOPS <= 0 || part.bandwidthGBps <= 0) {
			t.Errorf("%s: empty datasheet figures", part.name)
		}
	}
}

func TestDerivedFP32(t *testing.T) {
	// An H200 as its driver reports it: 132 SMs of 128 FP32 lanes at
	// 1980 MHz, the datasheet's 67 TFLOP/s.
	h200 := accel.Device{Name: "NVIDIA H200", Arch: "sm_90", ComputeUnits: 132, ClockMHz: 1980}
	if got := derivedFP32(h200) / 1e12; math.Abs(got-66.9) > 0.1 {
		t.Errorf("derived H200 FP32 = %.2f TFLOP/s, want 66.9", got)
	}
	a100 := accel.Device{Arch: "sm_80", ComputeUnits: 108, ClockMHz: 1410}
	if got := derivedFP32(a100) / 1e12; math.Abs(got-19.5) > 0.1 {
		t.Errorf("derived A100 FP32 = %.2f TFLOP/s, want 19.5", got)
	}
	if got := derivedFP32(accel.Device{Arch: "sm_99", ComputeUnits: 10, ClockMHz: 1000}); got != 0 {
		t.Errorf("an unknown architecture derives %g, want 0", got)
	}
}

// TestDescribeMachine checks that the CPU's roofs are measured, not looked
// up, and that a machine without a GPU backend lists no GPU.
func TestDescribeMachine(t *testing.T) {
	m, err := DescribeMachine(context.Background(), []accel.Backend{ref.New(1)}, true)
	if err != nil {
		t.Fatal(err)
	}
	if m.CPU.Model == "" || m.CPU.LogicalCPUs < 1 || m.CPU.FMAKernel == "" {
		t.Errorf("CPU = %+v", m.CPU.CPU)
	}
	for name, f := range map[string]Figure{"FP32": m.CPU.PeakGFLOPS, "bandwidth": m.CPU.PeakGBps} {
		if f.Source != "measured" || !(f.Value > 0) || f.Detail == "" {
			t.Errorf("CPU %s peak = %+v, want a measured positive figure with its method", name, f)
		}
	}
	if len(m.GPUs) != 0 {
		t.Errorf("GPUs = %+v for the CPU backend alone", m.GPUs)
	}
	if r := m.roofFor("ref"); r.device != "cpu" || r.gflops != m.CPU.PeakGFLOPS.Value {
		t.Errorf("ref's roof = %+v", r)
	}
}

// unavailable is a backend that cannot serve here; the sweep must skip it
// with its reason and never call it.
type unavailable struct{ accel.Backend }

func (unavailable) Name() string { return "gone" }
func (unavailable) Status() accel.Status {
	return accel.Status{Name: "gone", Reason: "its library is not installed"}
}

// fastOnly is ref claiming no contract, as ONNX Runtime does: it serves
// fast and checked mode only.
type fastOnly struct{ *ref.Backend }

func (fastOnly) Name() string { return "fast-only" }
func (b fastOnly) Status() accel.Status {
	st := b.Backend.Status()
	st.Name, st.Modes, st.FastIsStrict = "fast-only", []accel.Mode{accel.Fast, accel.Checked}, false
	return st
}

// strictOnly is ref serving strict mode alone.
type strictOnly struct{ *ref.Backend }

func (strictOnly) Name() string { return "strict-only" }
func (b strictOnly) Status() accel.Status {
	st := b.Backend.Status()
	st.Name, st.Modes, st.FastIsStrict = "strict-only", []accel.Mode{accel.Strict}, false
	return st
}

func TestTargets(t *testing.T) {
	reg := accel.NewRegistry(ref.New(1), unavailable{}, fastOnly{ref.New(1)}, strictOnly{ref.New(1)})
	describe := func(targets []Target) string {
		var got []string
		for _, tg := range targets {
			got = append(got, tg.Backend.Name()+" "+tg.Mode.String()+": "+tg.Skip)
		}
		return strings.Join(got, "\n")
	}
	for _, c := range []struct {
		name  string
		modes []accel.Mode
		names []string
		want  []string
	}{
		{"both modes, every backend", []accel.Mode{accel.Strict, accel.Fast}, nil, []string{
			"ref strict: ",
			"gone strict: unavailable: its library is not installed",
			"fast-only strict: does not implement the numerics contract, which strict mode requires",
			"strict-only strict: ",
			"ref fast: its fast kernels are its strict ones, measured in strict mode",
			"gone fast: unavailable: its library is not installed",
			"fast-only fast: ",
			"strict-only fast: does not serve fast mode (it serves strict)",
		}},
		// Fast mode alone measures ref's kernels too.
		{"fast mode alone", []accel.Mode{accel.Fast}, []string{"ref"}, []string{"ref fast: "}},
		{"named, in the order given", []accel.Mode{accel.Strict}, []string{"fast-only", "ref"}, []string{
			"fast-only strict: does not implement the numerics contract, which strict mode requires",
			"ref strict: ",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			targets, err := Targets(reg, c.modes, c.names)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := describe(targets), strings.Join(c.want, "\n"); got != want {
				t.Errorf("targets:\n%s\nwant:\n%s", got, want)
			}
		})
	}
	if _, err := Targets(reg, []accel.Mode{accel.Fast}, []string{"nope"}); !errors.Is(err, accel.ErrNoBackend) || !strings.Contains(err.Error(), "known: ref, gone") {
		t.Errorf("an unknown backend name: %v, want ErrNoBackend listing the known ones", err)
	}
}

const guestPkg = "github.com/accelnode/accelnode/bench/guest"

// sweepReport runs a small sweep on ref and fast-only, with the
// unavailable backend among the targets, through the real guest.
func sweepReport(t *testing.T) *Report {
	t.Helper()
	if swept == nil {
		swept = sweep1(t)
	}
	rep := *swept
	rep.Results = append([]Result(nil), swept.Results...)
	return &rep
}

// swept is the one sweep the tests share; it takes seconds.
var swept *Report

func sweep1(t *testing.T) *Report {
	guest := guesttest.Build(t, guestPkg)
	m, err := DescribeMachine(context.Background(), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	matmul, _ := workload.Find("matmul-square")
	cnn, _ := workload.Find("model-cnn")
	dense, _ := workload.Find("matmul-dense")
	refB, fast, gone := ref.New(1), fastOnly{ref.New(1)}, unavailable{}
	cfg := Config{
		Points:        []workload.Point{matmul.At(16), matmul.At(32), dense.At(1), cnn.At(2)},
		Budget:        workload.Budget{Warmup: 1, MinReps: 2, MaxReps: 3},
		MaxRun:        time.Minute,
		Guest:         guest,
		Node:          nodeConfig(refB, fast, gone),
		HostCallBatch: 10,
		Machine:       m,
		RemeasureCPU:  true,
		Quick:         true,
	}
	var calls, lastDone, lastTotal int
	cfg.Progress = func(done, total int, what string) {
		calls++
		if done > total || done < lastDone || (done < total && what == "") || (done == total && what != "") {
			t.Errorf("progress %d/%d %q after %d/%d", done, total, what, lastDone, lastTotal)
		}
		lastDone, lastTotal = done, total
	}
	targets := []Target{{Backend: refB, Mode: accel.Strict}, {Backend: fast, Mode: accel.Fast},
		{Backend: gone, Mode: accel.Fast, Skip: "unavailable: its library is not installed"}}
	rep, err := Run(context.Background(), cfg, targets)
	if err != nil {
		t.Fatal(err)
	}
	// Every measurement was made, so the bar counted each: 4 points × (2
	// baselines + 2 backends × 2 ways) + 2 host calls × 2 ways, then the
	// final call.
	if want := 4*6 + 4; calls != want+1 || lastDone != want || lastTotal != want {
		t.Errorf("progress: %d calls ending at %d/%d, want %d ending at %d/%d", calls, lastDone, lastTotal, want+1, want, want)
	}
	rep.Stamp(time.Unix(0, 0), "test", "accelnode bench")
	return rep
}

func TestSweep(t *testing.T) {
	rep := sweepReport(t)
	// Four points on both baselines, ref and fast-only.
	if len(rep.Results) != 16 {
		t.Fatalf("%d results, want 16", len(rep.Results))
	}
	baselines := map[string]int{}
	for _, r := range rep.Results {
		what := r.Workload + " " + r.Shape + " " + r.Backend
		if !(r.Median > 0 && r.Min <= r.Median && r.Median <= r.Max && r.Reps >= 2 && r.GFLOPS > 0 && r.PeakShare > 0) {
			t.Errorf("%s: implausible figures %+v", what, r)
		}
		if r.SpeedupVsWasm == nil || !(*r.SpeedupVsWasm > 0) || r.SpeedupVsInterruptibleWasm == nil || !(*r.SpeedupVsInterruptibleWasm > 0) {
			t.Errorf("%s: no speedup over one of the plain-wasm baselines: %v, %v", what, r.SpeedupVsWasm, r.SpeedupVsInterruptibleWasm)
		}
		switch r.Backend {
		case Wasm, WasmInterruptible:
			baselines[r.Backend]++
			if r.GuestMedian != 0 || r.Mode != "strict" || r.WasmMedian != 0 || r.WasmInterruptibleMedian != 0 {
				t.Errorf("%s: a baseline with a guest time or a baseline of its own: %+v", what, r)
			}
			// Each baseline's speedup over itself is 1, and over the other
			// the ratio of their times.
			self, other, otherMedian := r.SpeedupVsWasm, r.SpeedupVsInterruptibleWasm, 0.0
			if r.Backend == WasmInterruptible {
				self, other = other, self
			}
			for _, o := range rep.Results {
				if o.Workload == r.Workload && o.Size == r.Size && o.Backend != r.Backend && (o.Backend == Wasm || o.Backend == WasmInterruptible) {
					otherMedian = o.Median
				}
			}
			if self != nil && *self != 1 || other != nil && math.Abs(*other-otherMedian/r.Median) > 1e-9**other {
				t.Errorf("%s: speedups %v over itself and %v over the other baseline (its median %g, this one's %g)", what, *self, *other, otherMedian, r.Median)
			}
		default:
			if !(r.GuestMedian > 0) {
				t.Errorf("%s: not measured through the guest", what)
			}
			if !(r.WasmMedian > 0 && r.WasmInterruptibleMedian > 0) ||
				math.Abs(*r.SpeedupVsWasm-r.WasmMedian/r.GuestMedian) > 1e-9**r.SpeedupVsWasm ||
				math.Abs(*r.SpeedupVsInterruptibleWasm-r.WasmInterruptibleMedian/r.GuestMedian) > 1e-9**r.SpeedupVsInterruptibleWasm {
				t.Errorf("%s: speedups %g and %g are not the baselines' medians %g and %g over the guest's %g", what,
					*r.SpeedupVsWasm, *r.SpeedupVsInterruptibleWasm, r.WasmMedian, r.WasmInterruptibleMedian, r.GuestMedian)
			}
		}
		if (r.Bound == "memory") != (r.GBps != nil) {
			t.Errorf("%s: bound %s with GB/s %v", what, r.Bound, r.GBps)
		}
	}
	if baselines[Wasm] != 4 || baselines[WasmInterruptible] != 4 {
		t.Errorf("baseline results = %v, want 4 of each", baselines)
	}
	if len(rep.HostCalls) != 2 {
		t.Errorf("host calls = %+v, want ref and fast-only", rep.HostCalls)
	}
	for _, h := range rep.HostCalls {
		if !(h.GuestNS > 0 && h.DirectNS > 0) {
			t.Errorf("host call %+v", h)
		}
	}
	if len(rep.Skipped) != 1 || rep.Skipped[0].Backend != "gone" || !strings.Contains(rep.Skipped[0].Reason, "not installed") {
		t.Errorf("skipped = %+v, want the unavailable backend with its reason", rep.Skipped)
	}
	if want := Deadline(workload.Budget{Warmup: 1, MinReps: 2, MaxReps: 3}, time.Minute, workload.Point{}).Seconds(); rep.Budget.DeadlineS != want || rep.Budget.DeadlinePerElementS != setupPerElement.Seconds() {
		t.Errorf("budget deadline %g s plus %g s an input element, want %g plus %g", rep.Budget.DeadlineS, rep.Budget.DeadlinePerElementS, want, setupPerElement.Seconds())
	}
}

// TestJSONSchema pins the report's field names: other tools read them.
func TestJSONSchema(t *testing.T) {
	rep := sweepReport(t)
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	has := func(obj map[string]any, where string, keys ...string) {
		for _, k := range keys {
			if _, ok := obj[k]; !ok {
				t.Errorf("%s lacks %q", where, k)
			}
		}
	}
	has(doc, "report", "schema", "date", "version", "command", "machine", "budget", "results", "host_calls", "skipped")
	if doc["schema"] != Schema {
		t.Errorf("schema = %v", doc["schema"])
	}
	machine := doc["machine"].(map[string]any)
	has(machine, "machine", "os", "arch", "go_version", "cpu", "wasm_baseline", "wasm_interruptible_baseline")
	cpu := machine["cpu"].(map[string]any)
	has(cpu, "machine.cpu", "model", "logical_cpus", "features", "vector_bits", "peak_gflops", "peak_gbps")
	has(cpu["peak_gflops"].(map[string]any), "peak_gflops", "value", "source")
	for i, r := range doc["results"].([]any) {
		res := r.(map[string]any)
		where := fmt.Sprintf("results[%d]", i)
		has(res, where, "op", "workload", "backend", "mode", "shape", "size",
			"median_s", "min_s", "max_s", "noise", "reps", "gflops", "bound", "peak_share", "speedup_vs_wasm", "speedup_vs_interruptible_wasm")
		if b := res["backend"]; b != Wasm && b != WasmInterruptible {
			has(res, where, "guest_median_s", "wasm_median_s", "wasm_interruptible_median_s")
		}
	}
	has(doc["budget"].(map[string]any), "budget", "warmup", "min_reps", "max_reps", "time_s", "max_run_s", "deadline_s")
	has(doc["host_calls"].([]any)[0].(map[string]any), "host_calls[0]", "backend", "mode", "guest_ns", "direct_ns", "overhead_ns")

	back, err := ReadJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != len(rep.Results) || back.Machine.CPU.Model != rep.Machine.CPU.Model {
		t.Error("the report does not survive a JSON round trip")
	}
	if _, err := ReadJSON(strings.NewReader(`{"schema":"other/9"}`)); err == nil || !strings.Contains(err.Error(), "accelnode-bench/1") {
		t.Errorf("ReadJSON of another schema = %v, want a refusal naming the schemas it reads", err)
	}
}

func TestCompare(t *testing.T) {
	rep := sweepReport(t)
	old := *rep
	old.Results = append([]Result(nil), rep.Results...)
	for i := range old.Results {
		old.Results[i].Median *= 2
	}
	old.Results = old.Results[1:] // a point the old run lacks
	ratios := rep.Ratios(&old)
	if len(ratios) != len(rep.Results)-1 {
		t.Errorf("%d ratios, want %d", len(ratios), len(rep.Results)-1)
	}
	for k, v := range ratios {
		if math.Abs(v-2) > 1e-9 {
			t.Errorf("%s: ratio %g, want 2", k, v)
		}
	}
	var buf bytes.Buffer
	if err := rep.WriteComparison(&buf, &old); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "2.00×") {
		t.Errorf("comparison lacks the ratios:\n%s", buf.String())
	}
}

func TestTableAndPlot(t *testing.T) {
	rep := sweepReport(t)
	var buf bytes.Buffer
	if err := rep.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"peak FP32", "measured", "WORKLOAD", "model-cnn", "VS WASM", "VS INTERRUPTIBLE WASM", interruptibleNote,
		"wasm-interruptible", "One tiny call", "Skipped:", "not installed"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
	dir := t.TempDir()
	for _, name := range []string{"chart.svg", "chart.png"} {
		path := filepath.Join(dir, name)
		if err := Plot(rep, path); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if name == "chart.svg" && !(bytes.Contains(data, []byte("<svg")) && bytes.Contains(data, []byte("matmul-square")) && bytes.Contains(data, []byte("CPU FP32 peak")) &&
			bytes.Contains(data, []byte("plain wasm")) && bytes.Contains(data, []byte("plain wasm, interruptible"))) {
			t.Errorf("%s lacks the chart's svg, title, peak line or one of the baselines' lines", name)
		}
		if name == "chart.png" && !bytes.HasPrefix(data, []byte("\x89PNG")) {
			t.Errorf("%s is not a PNG", name)
		}
	}
	if err := Plot(rep, filepath.Join(dir, "chart.pdf")); err == nil {
		t.Error("Plot accepted a .pdf")
	}
	if err := Plot(&Report{}, filepath.Join(dir, "empty.svg")); err == nil {
		t.Error("Plot drew an empty report")
	}
}

// TestStaleGuest checks that a guest that is not this node's benchmark
// guest is refused before anything is timed, with the remedy.
func TestStaleGuest(t *testing.T) {
	other := guesttest.Build(t, "github.com/accelnode/accelnode/hostfn/testdata/guests/callbench")
	matmul, _ := workload.Find("matmul-square")
	b := ref.New(1)
	cfg := Config{Points: []workload.Point{matmul.At(8)}, Budget: workload.Budget{MinReps: 1, MaxReps: 1}, MaxRun: time.Second,
		Guest: other, Node: nodeConfig(b)}
	_, err := Run(context.Background(), cfg, []Target{{Backend: b, Mode: accel.Strict}})
	if err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("Run with another guest = %v, want a refusal naming make build", err)
	}
}

func TestConfigValidate(t *testing.T) {
	matmul, _ := workload.Find("matmul-square")
	tsne, _ := workload.Find("tsne")
	budget := workload.Budget{Warmup: 1, MinReps: 3, MaxReps: 50, Time: time.Second}
	ok := Config{Points: []workload.Point{matmul.At(64)}, Budget: budget, MaxRun: 10 * time.Second}
	for _, c := range []struct {
		name   string
		change func(*Config)
		want   string // empty: valid
	}{
		{"valid", func(*Config) {}, ""},
		{"timeout above the deadline", func(c *Config) { c.Node.Limits.Timeout = time.Hour }, ""},
		{"no run limit", func(c *Config) { c.MaxRun = 0 }, "run limit"},
		{"negative run limit", func(c *Config) { c.MaxRun = -time.Second }, "run limit"},
		{"run limit above its bound", func(c *Config) { c.MaxRun = MaxMaxRun + time.Second }, "run limit"},
		{"timeout below the deadline", func(c *Config) { c.Node.Limits.Timeout = time.Minute }, "honest points could not finish"},
		{"t-SNE above its largest size", func(c *Config) { c.Points = []workload.Point{tsne.At(999999)} }, "above the largest"},
		{"reps above their bound", func(c *Config) { c.Budget.MaxReps = workload.MaxMaxReps + 1 }, "invalid budget"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := ok
			c.change(&cfg)
			err := cfg.Validate()
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Errorf("Validate() = %v, want %q", err, c.want)
			}
		})
	}
	// 6 runs of 10 s, the time budget and the setup allowance, and for a
	// point its inputs' setup: two 64×64 matrices.
	if got, want := Deadline(budget, 10*time.Second, workload.Point{}), 61*time.Second+setupAllowance; got != want {
		t.Errorf("Deadline without inputs = %v, want %v", got, want)
	}
	if got, want := Deadline(budget, 10*time.Second, matmul.At(64)), 62*time.Second+setupAllowance; got != want { // 8192 µs rounded up
		t.Errorf("Deadline of matmul-square 64 = %v, want %v", got, want)
	}
	if d, p := LongestDeadline(budget, time.Second, []workload.Point{matmul.At(64), tsne.At(20000), matmul.At(128)}); p.Name != "tsne" || d != Deadline(budget, time.Second, tsne.At(20000)) {
		t.Errorf("LongestDeadline = %v at %s %d, want tsne 20000's", d, p.Name, p.Size)
	}
}

// hanging is ref whose matmul, after its first `after` calls, waits for
// its context to end: a point that runs far past its budget.
type hanging struct {
	*ref.Backend
	name  string
	after int32
	calls atomic.Int32
}

func (h *hanging) Name() string { return h.name }
func (h *hanging) Status() accel.Status {
	st := h.Backend.Status()
	st.Name = h.name
	return st
}
func (h *hanging) Kernel(op *accel.Op, mode accel.Mode) accel.Kernel {
	k := h.Backend.Kernel(op, mode)
	if op != accel.MatMul || k == nil {
		return k
	}
	return func(ctx context.Context, c *accel.Call) error {
		if h.calls.Add(1) > h.after {
			<-ctx.Done()
			return ctx.Err()
		}
		return k(ctx, c)
	}
}

// TestDeadlines checks that a point that overruns is stopped at the
// deadline, from Go and through the guest, and reported as skipped with
// the reason, and that the sweep goes on.
func TestDeadlines(t *testing.T) {
	defer func(d time.Duration) { setupAllowance = d }(setupAllowance)
	setupAllowance = 500 * time.Millisecond
	guest := guesttest.Build(t, guestPkg)
	matmul, _ := workload.Find("matmul-square")
	now := &hanging{Backend: ref.New(1), name: "hangs"}
	later := &hanging{Backend: ref.New(1), name: "hangs-later", after: 1}
	budget := workload.Budget{MinReps: 1, MaxReps: 1}
	cfg := Config{Points: []workload.Point{matmul.At(8)}, Budget: budget, MaxRun: 100 * time.Millisecond,
		Guest: guest, Node: nodeConfig(ref.New(1), now, later)}
	deadline := Deadline(budget, cfg.MaxRun, matmul.At(8))
	start := time.Now()
	rep, err := Run(context.Background(), cfg, []Target{{Backend: now, Mode: accel.Strict}, {Backend: later, Mode: accel.Strict}})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, k := range rep.Skipped {
		if k.Workload == matmul.Name {
			reasons[k.Backend] = k.Reason
		}
	}
	if r := reasons["hangs"]; !strings.Contains(r, "ran past its deadline of "+deadline.String()) || strings.Contains(r, "through the guest") {
		t.Errorf("hangs: skipped for %q, want the deadline from Go", r)
	}
	if r := reasons["hangs-later"]; !strings.Contains(r, "through the guest") || !strings.Contains(r, "deadline of "+deadline.String()) {
		t.Errorf("hangs-later: skipped for %q, want the guest's deadline", r)
	}
	// Both baselines and the direct time of hangs-later were measured.
	if len(rep.Results) != 3 {
		t.Errorf("%d results, want 3: %+v", len(rep.Results), rep.Results)
	}
	// Two deadlines, a little work and two guests' start: far less than a
	// point left to run would take, which is forever.
	if took := time.Since(start); took > 2*time.Minute {
		t.Errorf("the sweep took %v", took)
	}
}

// TestReadOldReports checks that the committed reports, of schema 1, still
// read, print and draw: schema 2 only added fields and the interruptible
// baseline, which they lack.
func TestReadOldReports(t *testing.T) {
	paths, err := filepath.Glob("../docs/bench/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no reports in docs/bench: %v", err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rep, err := ReadJSON(f)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Schema != "accelnode-bench/1" || len(rep.Results) == 0 {
				t.Fatalf("schema %q with %d results", rep.Schema, len(rep.Results))
			}
			var buf bytes.Buffer
			if err := rep.WriteTable(&buf); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(buf.String(), "VS WASM") || strings.Contains(buf.String(), interruptibleNote) {
				t.Errorf("table of a report without the interruptible baseline:\n%s", buf.String())
			}
			if err := Plot(rep, filepath.Join(t.TempDir(), "chart.svg")); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestResultFigures checks the derived figures against a fixed roof of 100
// GFLOP/s and 10 GB/s, whose ridge is 10 FLOPs a byte.
func TestResultFigures(t *testing.T) {
	s := &sweep{cfg: Config{Machine: Machine{CPU: CPU{PeakGFLOPS: Figure{Value: 100}, PeakGBps: Figure{Value: 10}}}}}
	square, _ := workload.Find("matmul-square")
	dense, _ := workload.Find("matmul-dense")
	for _, c := range []struct {
		name      string
		p         workload.Point
		median    float64
		bound     string
		gflops    float64
		peakShare float64
	}{
		// 2·512³ FLOPs over 3·512²·4 bytes: 85 FLOPs a byte, compute-bound.
		{"square", square.At(512), 0.01, "compute", 2 * 512 * 512 * 512 / 0.01 / 1e9, 2 * 512 * 512 * 512 / 0.01 / 1e9 / 100},
		// One row: 2·1024² FLOPs over about 4·1024² bytes, memory-bound.
		{"gemv", dense.At(1), 0.001, "memory", 2 * 1024 * 1024 / 0.001 / 1e9, dense.At(1).Bytes() / 0.001 / 1e9 / 10},
		// A clock too coarse to see the run: no rates, and still valid JSON.
		{"zero median", square.At(8), 0, "compute", 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := s.result(c.p, "ref", "strict", Stats{Reps: 1, Median: c.median})
			near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Abs(b) }
			if r.Bound != c.bound || !near(r.GFLOPS, c.gflops) || !near(r.PeakShare, c.peakShare) || r.Device != "cpu" {
				t.Errorf("result = bound %s, %g GFLOP/s, share %g on %s; want %s, %g, %g on cpu", r.Bound, r.GFLOPS, r.PeakShare, r.Device, c.bound, c.gflops, c.peakShare)
			}
			if (r.Bound == "memory") != (r.GBps != nil) {
				t.Errorf("bound %s with GB/s %v", r.Bound, r.GBps)
			}
			if _, err := json.Marshal(r); err != nil {
				t.Errorf("result does not encode: %v", err)
			}
		})
	}
}

// device is ref presented as an accelerator: what DescribeMachine sees of a
// GPU backend, here on any machine.
type device struct {
	*ref.Backend
	name    string
	dev     accel.Device
	copyErr error
}

func (d device) Name() string                 { return d.name }
func (d device) Device() (accel.Device, bool) { return d.dev, true }
func (d device) CopyBandwidth(ctx context.Context, bytes int64, reps int) (float64, error) {
	return 3000e9, d.copyErr
}

func TestDescribeMachineGPU(t *testing.T) {
	h200 := device{Backend: ref.New(1), name: "gpu-a", dev: accel.Device{Kind: "gpu", Name: "NVIDIA H200", Arch: "sm_90", ComputeUnits: 132, ClockMHz: 1980}}
	unknown := device{Backend: ref.New(1), name: "gpu-b", dev: accel.Device{Kind: "gpu", Name: "Future GPU", Arch: "sm_90", ComputeUnits: 100, ClockMHz: 2000}}
	noCopy := device{Backend: ref.New(1), name: "gpu-c", dev: accel.Device{Kind: "gpu", Name: "Odd GPU", Arch: "sm_99"}, copyErr: errors.New("no copy")}
	// The same backend measured in two modes is one device.
	m, err := DescribeMachine(context.Background(), []accel.Backend{h200, h200, unknown, noCopy}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.GPUs) != 3 {
		t.Fatalf("%d GPUs, want 3: %+v", len(m.GPUs), m.GPUs)
	}
	a, b, c := m.GPUs[0], m.GPUs[1], m.GPUs[2]
	if a.PeakGFLOPS.Source != "table" || a.PeakGFLOPS.Value != 67000 || a.PeakGBps.Source != "table" || a.CopyGBps != 3000 {
		t.Errorf("known part: %+v", a)
	}
	if b.PeakGFLOPS.Source != "derived" || math.Abs(b.PeakGFLOPS.Value-100*128*2*2000e6/1e9) > 1e-6 || b.PeakGBps.Source != "measured" || b.PeakGBps.Value != 3000 {
		t.Errorf("unknown part: %+v", b)
	}
	if c.PeakGFLOPS.Value != 0 || c.PeakGBps.Value != 0 || c.CopyGBps != 0 {
		t.Errorf("a part with neither table entry, known architecture nor copy: %+v", c)
	}
	if r := m.roofFor("gpu-a"); r.device != "gpu" || r.gflops != 67000 || r.gbps != 4800 {
		t.Errorf("gpu-a's roof = %+v", r)
	}
}

// TestRemeasureCPU checks that a second measurement keeps the higher roof:
// one measured low under a neighbour's load is replaced, a higher one kept.
func TestRemeasureCPU(t *testing.T) {
	for _, c := range []struct {
		name     string
		old      float64
		replaced bool
	}{
		{"measured low", 1e-6, true},
		{"measured high", 1e12, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := Machine{CPU: CPU{PeakGFLOPS: Figure{Value: c.old}, PeakGBps: Figure{Value: c.old}}}
			if err := m.RemeasureCPU(context.Background(), true); err != nil {
				t.Fatal(err)
			}
			for _, f := range []Figure{m.CPU.PeakGFLOPS, m.CPU.PeakGBps} {
				if (f.Value != c.old) != c.replaced || !strings.Contains(f.Detail, "before and after") {
					t.Errorf("roof %g became %+v, replaced want %v", c.old, f, c.replaced)
				}
			}
		})
	}
}
