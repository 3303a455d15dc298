package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/accelnode/accelnode/bench/workload"
)

// Schema names the JSON report's format. Fields are only ever added to it;
// a change to a field's meaning gets a new schema name.
//
// Schema 2 added the interruptible plain-WebAssembly baseline: results of
// backend "wasm-interruptible" beside those of "wasm", and in every result
// wasm_interruptible_median_s and speedup_vs_interruptible_wasm. In schema
// 1 every result but "wasm" was a backend's; a reader that relied on that
// would take the new baseline for a backend, hence the new name.
const Schema = "accelnode-bench/2"

// readable are the schemas ReadJSON accepts: schema 1 reads as schema 2
// without the interruptible baseline.
var readable = []string{Schema, "accelnode-bench/1"}

// Report is a sweep's outcome.
type Report struct {
	Schema  string `json:"schema"`
	Date    string `json:"date"`
	Version string `json:"version"`
	Command string `json:"command"`
	// Partial is set when the sweep was interrupted before its end.
	Partial bool    `json:"partial,omitempty"`
	Machine Machine `json:"machine"`
	Budget  Budget  `json:"budget"`
	// Results has one entry per workload point and backend: the backend
	// called directly (median_s and the figures derived from it), through
	// a guest's host call (guest_median_s), and backends "wasm" and
	// "wasm-interruptible" for the plain-WebAssembly baselines.
	Results   []Result   `json:"results"`
	HostCalls []HostCall `json:"host_calls"`
	Skipped   []Skip     `json:"skipped"`
}

// Budget records the timing rules.
type Budget struct {
	Warmup    int     `json:"warmup"`
	MinReps   int     `json:"min_reps"`
	MaxReps   int     `json:"max_reps"`
	TimeS     float64 `json:"time_s"`
	MaxRunS   float64 `json:"max_run_s"`
	CallBatch int     `json:"host_call_batch"`
	// The deadline of each guest invocation and each timing from Go
	// (Deadline) is DeadlineS, plus DeadlinePerElementS for each element
	// of the point's inputs; absent before schema 2.
	DeadlineS           float64 `json:"deadline_s,omitempty"`
	DeadlinePerElementS float64 `json:"deadline_per_input_element_s,omitempty"`
}

func budgetOf(c Config) Budget {
	return Budget{Warmup: c.Budget.Warmup, MinReps: c.Budget.MinReps, MaxReps: c.Budget.MaxReps,
		TimeS: c.Budget.Time.Seconds(), MaxRunS: c.MaxRun.Seconds(), CallBatch: c.HostCallBatch,
		DeadlineS: Deadline(c.Budget, c.MaxRun, workload.Point{}).Seconds(), DeadlinePerElementS: setupPerElement.Seconds()}
}

// Result is one workload point on one backend.
type Result struct {
	// Op is the ABI operation; Workload the named sweep it belongs to.
	Op       string `json:"op"`
	Workload string `json:"workload"`
	Backend  string `json:"backend"`
	Mode     string `json:"mode"`
	Shape    string `json:"shape"`
	SizeName string `json:"size_name"`
	Size     int    `json:"size"`
	// Device is "cpu" or "gpu": whose peak PeakShare is a share of.
	Device string  `json:"device"`
	FLOPs  float64 `json:"flops"`
	Bytes  float64 `json:"bytes"`
	Stats
	GFLOPS float64 `json:"gflops"`
	// Bound is "memory" where the point's FLOPs per byte are below the
	// device's peak FLOPs per peak byte; GBps is then the effective
	// bandwidth, and PeakShare its share of peak bandwidth.
	Bound     string   `json:"bound"`
	GBps      *float64 `json:"gbps,omitempty"`
	PeakShare float64  `json:"peak_share"`
	// GuestMedian is the same call made by a WebAssembly guest on resident
	// tensors; GuestOverhead is what the guest and host-call layers add.
	GuestMedian   float64 `json:"guest_median_s,omitempty"`
	GuestOverhead float64 `json:"guest_overhead_s,omitempty"`
	// WasmMedian is plain WebAssembly doing the same work without loop
	// checks (backend "wasm"), and SpeedupVsWasm that over the guest's time
	// (or the direct time where the guest path was not measured); null
	// without a baseline.
	WasmMedian    float64  `json:"wasm_median_s,omitempty"`
	SpeedupVsWasm *float64 `json:"speedup_vs_wasm"`
	// WasmInterruptibleMedian and SpeedupVsInterruptibleWasm are the same
	// against plain WebAssembly compiled as the node compiles every guest,
	// with the loop checks that let a deadline stop it (backend
	// "wasm-interruptible"): the baseline of a guest under `accelnode run`.
	// A baseline's own result has a speedup of 1 over itself, and over the
	// other baseline the ratio of their medians: on "wasm",
	// speedup_vs_interruptible_wasm is what the loop checks cost.
	WasmInterruptibleMedian    float64  `json:"wasm_interruptible_median_s,omitempty"`
	SpeedupVsInterruptibleWasm *float64 `json:"speedup_vs_interruptible_wasm"`
}

// HostCall is the cost of one tiny operation: a one-element relu and the
// free of its result (Calls host calls).
type HostCall struct {
	Backend  string `json:"backend"`
	Mode     string `json:"mode"`
	Op       string `json:"op"`
	Elements int    `json:"elements"`
	Calls    int    `json:"calls"`
	// GuestNS and OverheadNS are absent where the guest path was not
	// measured.
	GuestNS    float64 `json:"guest_ns,omitempty"`
	DirectNS   float64 `json:"direct_ns"`
	OverheadNS float64 `json:"overhead_ns,omitempty"`
	Noise      float64 `json:"noise"`
}

// Skip is a measurement not made, and why.
type Skip struct {
	Workload string `json:"workload,omitempty"`
	Size     int    `json:"size,omitempty"`
	Backend  string `json:"backend"`
	Mode     string `json:"mode,omitempty"`
	Reason   string `json:"reason"`
}

// Stamp records when and by what a report was made.
func (r *Report) Stamp(now time.Time, version, command string) {
	r.Date, r.Version, r.Command = now.UTC().Format(time.RFC3339), version, command
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadJSON reads a report written by WriteJSON.
func ReadJSON(rd io.Reader) (*Report, error) {
	var r Report
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("read bench report: %w", err)
	}
	if !slices.Contains(readable, r.Schema) {
		return nil, fmt.Errorf("read bench report: schema %q, want one of %s", r.Schema, strings.Join(readable, ", "))
	}
	return &r, nil
}

// WriteTable writes the machine, every result and the host-call costs as
// borderless tables.
func (r *Report) WriteTable(w io.Writer) error {
	m := r.Machine
	if r.Partial {
		fmt.Fprintln(w, "PARTIAL: the sweep was interrupted; these are the points measured before.")
	}
	fmt.Fprintf(w, "CPU: %s, %d logical CPUs, %s\n", m.CPU.Model, m.CPU.LogicalCPUs, strings.Join(m.CPU.Features, " "))
	fmt.Fprintf(w, "  peak FP32 %s, memory %s\n", figure(m.CPU.PeakGFLOPS, "GFLOP/s"), figure(m.CPU.PeakGBps, "GB/s"))
	for _, g := range m.GPUs {
		fmt.Fprintf(w, "GPU (%s): %s, %s, %d SMs, %.0f GiB\n", g.Backend, g.Name, g.Arch, g.ComputeUnits, float64(g.MemoryBytes)/(1<<30))
		fmt.Fprintf(w, "  peak FP32 %s, memory %s; device copy measured %.0f GB/s\n", figure(g.PeakGFLOPS, "GFLOP/s"), figure(g.PeakGBps, "GB/s"), g.CopyGBps)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "WORKLOAD\tSHAPE\tBACKEND\tMODE\tMEDIAN\tNOISE\tREPS\tGFLOP/s\tGB/s\tOF PEAK\tVIA GUEST\tVS WASM\tVS INTERRUPTIBLE WASM\t")
	interruptible := false
	for _, res := range r.Results {
		gbps, guest := "", ""
		if res.GBps != nil {
			gbps = fmt.Sprintf("%.1f", *res.GBps)
		}
		if res.GuestMedian > 0 {
			guest = seconds(res.GuestMedian)
		}
		// A baseline's speedup over itself says nothing; over the other
		// baseline it is the cost of the loop checks.
		vsWasm, vsInt := speedup(res.SpeedupVsWasm), speedup(res.SpeedupVsInterruptibleWasm)
		switch res.Backend {
		case Wasm:
			vsWasm = ""
		case WasmInterruptible:
			vsInt = ""
		}
		interruptible = interruptible || res.SpeedupVsInterruptibleWasm != nil
		share := fmt.Sprintf("%.1f%%", 100*res.PeakShare)
		if res.Bound == "memory" {
			share += " bw"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.1f%%\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", res.Workload, res.Shape, res.Backend, res.Mode,
			seconds(res.Median), 100*res.Noise, res.Reps, gflops(res.GFLOPS), gbps, share, guest, vsWasm, vsInt)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if interruptible {
		fmt.Fprintln(w, interruptibleNote)
	}
	if len(r.HostCalls) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "One tiny call (a one-element relu and the free of its result):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "BACKEND\tMODE\tFROM A GUEST\tFROM GO\tOVERHEAD\t")
		for _, h := range r.HostCalls {
			guest, over := "", ""
			if h.GuestNS > 0 {
				guest, over = fmt.Sprintf("%.0f ns", h.GuestNS), fmt.Sprintf("%.0f ns", h.OverheadNS)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f ns\t%s\t\n", h.Backend, h.Mode, guest, h.DirectNS, over)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Skipped:")
		for _, k := range r.Skipped {
			what := k.Backend
			if k.Mode != "" {
				what += " " + k.Mode
			}
			if k.Workload != "" {
				what = fmt.Sprintf("%s %d on %s", k.Workload, k.Size, what)
				if k.Size == 0 {
					what = fmt.Sprintf("%s on %s", k.Workload, k.Backend+" "+k.Mode)
				}
			}
			fmt.Fprintf(w, "  %s: %s\n", what, k.Reason)
		}
	}
	return nil
}

// interruptibleNote says, under the table, what the second baseline is.
const interruptibleNote = "VS INTERRUPTIBLE WASM: against plain WebAssembly with the loop checks that let a deadline stop it (wasm-interruptible), as accelnode run runs every guest; VS WASM: without them."

func speedup(v *float64) string {
	if v == nil {
		return ""
	}
	return fmt.Sprintf("%.1f×", *v)
}

func figure(f Figure, unit string) string {
	if f.Value == 0 {
		return "unknown"
	}
	s := fmt.Sprintf("%.0f %s (%s", f.Value, unit, f.Source)
	if f.Detail != "" {
		s += ": " + f.Detail
	}
	return s + ")"
}

func gflops(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// seconds prints a time with a unit that keeps three or four digits.
func seconds(s float64) string {
	switch {
	case s >= 1:
		return fmt.Sprintf("%.2f s", s)
	case s >= 1e-3:
		return fmt.Sprintf("%.2f ms", s*1e3)
	default:
		return fmt.Sprintf("%.1f µs", s*1e6)
	}
}

// key identifies a result across reports.
func (r Result) key() string {
	return fmt.Sprintf("%s|%d|%s|%s", r.Workload, r.Size, r.Backend, r.Mode)
}

// WriteComparison writes, for every result also in old, the ratio of old's
// median time to this one's: above 1 is faster now.
func (r *Report) WriteComparison(w io.Writer, old *Report) error {
	before := map[string]Result{}
	for _, res := range old.Results {
		before[res.key()] = res
	}
	fmt.Fprintf(w, "Against %s (%s, %s):\n", old.Date, old.Version, old.Machine.CPU.Model)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "WORKLOAD\tSHAPE\tBACKEND\tMODE\tTHEN\tNOW\tSPEEDUP\tNOISE NOW\t")
	matched := 0
	for _, res := range r.Results {
		o, ok := before[res.key()]
		if !ok || res.Median <= 0 {
			continue
		}
		matched++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.2f×\t%.1f%%\t\n", res.Workload, res.Shape, res.Backend, res.Mode,
			seconds(o.Median), seconds(res.Median), o.Median/res.Median, 100*res.Noise)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if matched == 0 {
		fmt.Fprintln(w, "  no point in common")
	}
	return nil
}

// Ratios returns old median over new median for every result in both, by
// "workload|size|backend|mode".
func (r *Report) Ratios(old *Report) map[string]float64 {
	before := map[string]float64{}
	for _, res := range old.Results {
		before[res.key()] = res.Median
	}
	out := map[string]float64{}
	for _, res := range r.Results {
		if o, ok := before[res.key()]; ok && res.Median > 0 && !math.IsNaN(o) {
			out[res.key()] = o / res.Median
		}
	}
	return out
}

// Points expands workloads into points: sizes when given, else each
// workload's quick or full sweep.
func Points(specs []workload.Spec, sizes []int, quick bool) []workload.Point {
	var pts []workload.Point
	for _, s := range specs {
		use := s.Sizes
		switch {
		case len(sizes) > 0:
			use = sizes
		case quick:
			use = s.Quick
		}
		for _, n := range use {
			pts = append(pts, s.At(n))
		}
	}
	return pts
}
