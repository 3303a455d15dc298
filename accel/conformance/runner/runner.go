// Package runner measures backends against the reference backend over a
// corpus of cases: the engine of `accelnode conformance`.
//
// Where the drivers of accel/conformance/conformancetest pass or fail a
// backend inside `go test`, the runner reports, for every operation ×
// backend × case of the same corpus (package conformance): the share
// of outputs bit-identical to ref's (which implements the numerics contract,
// docs/determinism.md), their distance in ulps, NaN/Inf disagreements, and
// three invariances: run to run (the same call repeated gives the same
// bits), thread count (the backend opened with one thread and with all cores
// agrees) and batch (the parts of conformance.Parts, such as a matmul's row
// subset or one image of a conv2d, computed alone equal their part of the
// full result).
//
// In strict mode a backend must reproduce ref bit for bit, and every
// invariance must hold; backends that do not serve strict mode are skipped.
// In fast mode everything is measured and only errors fail. A run that
// measures no backend at all fails in either mode.
package runner

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/internal/cpuinfo"
)

// Corpus returns the conformance corpus (conformance.Corpus): every case,
// or with quick only the quick ones (the tiny and odd size classes).
func Corpus(quick bool) []conformance.Case { return conformance.Corpus(quick) }

// Target is a backend under test.
type Target struct {
	Backend accel.Backend
	// Variant opens the same backend computing with the given number of CPU
	// threads, for the thread-invariance check; the caller closes what it
	// returns. nil skips the check.
	Variant func(threads int) (accel.Backend, error)
	// Skip, if set, is why the backend is not run.
	Skip string
}

// Config configures a run.
type Config struct {
	// Mode is the determinism mode the backends were opened in and the
	// sessions run in. Strict skips backends that do not serve it and fails
	// on any difference from the reference.
	Mode accel.Mode
	// Repeat is how many times each case runs on each backend; run-to-run
	// stability compares the runs. 0 means 3.
	Repeat int
	// Reference computes the expected bits; nil means ref.New(0).
	Reference accel.Backend
	// Limits bound each session; zero fields take accel.DefaultLimits.
	Limits accel.Limits
	// Progress, if set, is called before each case on each backend and once
	// at the end, with done == total.
	Progress func(done, total int, what string)
}

// Result is what one case gave on one backend.
type Result struct {
	Op       string `json:"op"`
	Backend  string `json:"backend"`
	Case     string `json:"case"`
	Size     string `json:"size,omitempty"`
	Values   string `json:"values,omitempty"`
	Mode     string `json:"mode"`
	Elements int    `json:"elements"`
	// BitExact is true when every output has the reference's bits.
	BitExact bool `json:"bit_exact"`
	// Identical counts the output elements with the reference's bits, over
	// all outputs; ShareIdentical is their share.
	Identical      int     `json:"identical"`
	ShareIdentical float64 `json:"share_identical"`
	// MaxULP and MeanULP are over the elements where both values are
	// finite (see Diff); NaNInfMismatches counts positions where one is
	// NaN or ±Inf and the other is not the same, NaNBitsMismatches those
	// where both are NaN with different bits, SignedZeroMismatches -0
	// against +0.
	MaxULP               int64   `json:"max_ulp"`
	MeanULP              float64 `json:"mean_ulp"`
	NaNInfMismatches     int     `json:"nan_inf_mismatches"`
	NaNBitsMismatches    int     `json:"nan_bits_mismatches"`
	SignedZeroMismatches int     `json:"signed_zero_mismatches"`
	// The invariances: true or false, or null where not checked (a single
	// run, no thread variant, an operation without a batch).
	RunToRunStable  *bool `json:"run_to_run_stable"`
	ThreadInvariant *bool `json:"thread_invariant"`
	BatchInvariant  *bool `json:"batch_invariant"`
	// Failed is set when the result fails the mode: an error in either mode,
	// and in strict mode any difference from the reference or any broken
	// invariance.
	Failed bool   `json:"failed"`
	Error  string `json:"error,omitempty"`
	// Outputs breaks the comparison down by output: tsne_step has y,
	// update, gains and kl.
	Outputs []Diff `json:"outputs,omitempty"`
	// Notes describe broken invariances.
	Notes []string `json:"notes,omitempty"`

	sumULP   float64 // for aggregates: the sum of the ulp distances
	compared int     // and the number of elements they are over
}

// Summary aggregates a backend's results.
type Summary struct {
	// Strict says that the backend serves strict mode: it implements the
	// numerics contract bit for bit.
	Strict        bool  `json:"strict"`
	Cases         int   `json:"cases"`
	BitExactCases int   `json:"bit_exact_cases"`
	MaxULP        int64 `json:"max_ulp"`
	Failures      int   `json:"failures"`
	Errors        int   `json:"errors"`
	Unstable      int   `json:"run_to_run_unstable"`
	ThreadVariant int   `json:"thread_variant"`
	BatchVariant  int   `json:"batch_variant"`
	ThreadCounts  []int `json:"threads_compared,omitempty"`
	// SkippedReason says why the backend was not run; it then has no
	// results.
	SkippedReason      string `json:"skipped_reason,omitempty"`
	NaNInfMismatch     int    `json:"nan_inf_mismatches"`
	NaNBitsMismatch    int    `json:"nan_bits_mismatches"`
	SignedZeroMismatch int    `json:"signed_zero_mismatches"`
}

// Machine describes where the run happened.
type Machine struct {
	OS        string         `json:"os"`
	Arch      string         `json:"arch"`
	CPU       string         `json:"cpu"`
	CPUs      int            `json:"cpus"`
	GoVersion string         `json:"go_version"`
	Backends  []accel.Status `json:"backends"`
}

// GuestRun is a guest's run on one backend.
type GuestRun struct {
	Backend  string `json:"backend"`
	SHA256   string `json:"stdout_sha256"`
	ExitCode uint32 `json:"exit_code"`
	Error    string `json:"error,omitempty"`
}

// GuestReport is the guest view: one guest run on every backend, its
// standard output hashed.
type GuestReport struct {
	Module string     `json:"module"`
	Args   []string   `json:"args"`
	Runs   []GuestRun `json:"runs"`
	// Agree is true when every run printed the same bytes.
	Agree bool `json:"agree"`
}

// Report is a whole run.
type Report struct {
	Mode string `json:"mode"`
	// Reference names the backend whose bits every output is compared
	// with: "ref", or "spec" for the contract's transcription.
	Reference string  `json:"reference"`
	Machine   Machine `json:"machine"`
	Corpus    string  `json:"corpus"` // "full" or "quick"
	Repeat    int     `json:"repeat"`
	// Results hold one result per case and backend measured, by
	// operation, backend and case. A skipped backend has none: its
	// Summary says why.
	Results []Result           `json:"results"`
	Summary map[string]Summary `json:"summary"`
	Guest   *GuestReport       `json:"guest,omitempty"`

	strict   bool
	backends []string // in the order of the targets
	ops      []string // the operations of the cases, in the op table's order
}

// Measured is the number of backends the run measured: those not skipped.
// A run that measured none proves nothing, and Failures says so.
func (r *Report) Measured() int {
	n := 0
	for _, name := range r.backends {
		if r.Summary[name].SkippedReason == "" {
			n++
		}
	}
	return n
}

// Failures describes everything that fails the run, the guest view first,
// or returns nil.
func (r *Report) Failures() []string {
	var fails []string
	if r.Measured() == 0 {
		fails = append(fails, "no backend was measured: "+r.skips())
	}
	if g := r.Guest; g != nil {
		for _, run := range g.Runs {
			if run.Error != "" {
				fails = append(fails, fmt.Sprintf("guest on %s: %s", run.Backend, run.Error))
			}
		}
		if r.strict && !g.Agree {
			fails = append(fails, "guest: the backends' outputs differ")
		}
	}
	for _, res := range r.Results {
		if !res.Failed {
			continue
		}
		why := res.Error
		if why == "" {
			why = failureText(res)
		}
		fails = append(fails, fmt.Sprintf("%s/%s/%s: %s", res.Op, res.Backend, res.Case, why))
	}
	return fails
}

// skips says why no backend was measured; the summary gives each reason.
func (r *Report) skips() string {
	if len(r.backends) == 0 {
		return "there was none to run"
	}
	return "every one was skipped"
}

func failureText(res Result) string {
	var why []string
	if !res.BitExact {
		why = append(why, fmt.Sprintf("differs from the reference in %d of %d elements (%s)",
			res.Elements-res.Identical, res.Elements, distance(res.MaxULP, res.NaNInfMismatches, res.NaNBitsMismatches, res.SignedZeroMismatches)))
	}
	why = append(why, res.Notes...)
	return strings.Join(why, "; ")
}

// Run runs every case on every target and compares the outputs with the
// reference's. It returns an error only when ctx ends; failures of backends
// are in the report.
func Run(ctx context.Context, cfg Config, targets []Target, cases []conformance.Case) (*Report, error) {
	if cfg.Repeat <= 0 {
		cfg.Repeat = 3
	}
	if cfg.Reference == nil {
		cfg.Reference = ref.New(0)
	}
	rep := &Report{
		Mode:      cfg.Mode.String(),
		Reference: cfg.Reference.Name(),
		Corpus:    "full",
		Repeat:    cfg.Repeat,
		Results:   []Result{},
		Summary:   map[string]Summary{},
		strict:    cfg.Mode == accel.Strict,
		Machine:   Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPU: cpuinfo.Model(), CPUs: runtime.NumCPU(), GoVersion: runtime.Version()},
	}
	if len(cases) > 0 && !slices.ContainsFunc(cases, func(c conformance.Case) bool { return !c.Quick }) {
		rep.Corpus = "quick"
	}

	type active struct {
		Target
		name    string
		variant accel.Backend
		threads [2]int // main, variant
		closeV  bool
	}
	var run []*active
	rep.ops = opsOf(cases)
	for _, t := range targets {
		st := t.Backend.Status()
		name := t.Backend.Name()
		rep.Machine.Backends = append(rep.Machine.Backends, st)
		rep.backends = append(rep.backends, name)
		skip := t.Skip
		switch {
		case skip != "":
		case !st.Available:
			skip = "unavailable: " + st.Reason
		case cfg.Mode == accel.Strict && !st.Serves(accel.Strict):
			skip = "does not implement the numerics contract, which strict mode requires"
		case !st.Serves(cfg.Mode):
			skip = fmt.Sprintf("does not serve %s mode (it serves %s)", cfg.Mode, accel.ModeList(st.Modes))
		}
		if skip != "" {
			rep.Summary[name] = Summary{Strict: st.Serves(accel.Strict), SkippedReason: skip}
			continue
		}
		a := &active{Target: t, name: name}
		if t.Variant != nil {
			main := st.Threads
			if main <= 0 {
				main = runtime.NumCPU()
			}
			other := 1
			if main == 1 {
				other = runtime.NumCPU()
			}
			if other != main {
				v, err := t.Variant(other)
				if err != nil {
					return nil, fmt.Errorf("open %s with %d threads: %w", name, other, err)
				}
				a.variant, a.threads = v, [2]int{main, other}
			}
		}
		run = append(run, a)
	}

	total, done := len(cases)*len(run), 0
	var results []Result
	for _, c := range cases {
		if len(run) == 0 {
			break
		}
		in := c.Inputs()
		want, refErr := execute(ctx, cfg, cfg.Reference, c, in)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var parts []conformance.Part
		for _, a := range run {
			if cfg.Progress != nil {
				cfg.Progress(done, total, c.Op.Name+"/"+a.name+"/"+c.Name)
			}
			done++
			res := Result{Op: c.Op.Name, Backend: a.name, Case: c.Name, Size: c.Size, Values: c.Values, Mode: rep.Mode}
			if refErr != nil {
				res.Error = "reference: " + refErr.Error()
				res.Failed = true
				results = append(results, res)
				continue
			}
			if parts == nil {
				parts = conformance.Parts(c, in)
			}
			if err := measure(ctx, cfg, &res, a.Backend, a.variant, c, in, want, parts); err != nil {
				if ctxErr := ctx.Err(); ctxErr != nil {
					return nil, ctxErr
				}
				res.Error = err.Error()
			}
			res.Failed = res.Error != "" || (rep.strict && (!res.BitExact || isFalse(res.RunToRunStable) || isFalse(res.ThreadInvariant) || isFalse(res.BatchInvariant)))
			results = append(results, res)
		}
	}
	if cfg.Progress != nil {
		cfg.Progress(total, total, "")
	}

	// Results by operation, then backend in the targets' order, then case.
	rep.Results = append(rep.Results, results...)
	order := func(list []string, s string) int { return slices.Index(list, s) }
	slices.SortStableFunc(rep.Results, func(x, y Result) int {
		if d := order(rep.ops, x.Op) - order(rep.ops, y.Op); d != 0 {
			return d
		}
		return order(rep.backends, x.Backend) - order(rep.backends, y.Backend)
	})

	for _, a := range run {
		s := Summary{Strict: a.Backend.Status().Serves(accel.Strict)}
		if a.variant != nil {
			s.ThreadCounts = a.threads[:]
		}
		for _, res := range results {
			if res.Backend != a.name {
				continue
			}
			s.Cases++
			if res.BitExact && res.Error == "" {
				s.BitExactCases++
			}
			s.MaxULP = max(s.MaxULP, res.MaxULP)
			s.NaNInfMismatch += res.NaNInfMismatches
			s.NaNBitsMismatch += res.NaNBitsMismatches
			s.SignedZeroMismatch += res.SignedZeroMismatches
			if res.Failed {
				s.Failures++
			}
			if res.Error != "" {
				s.Errors++
			}
			if isFalse(res.RunToRunStable) {
				s.Unstable++
			}
			if isFalse(res.ThreadInvariant) {
				s.ThreadVariant++
			}
			if isFalse(res.BatchInvariant) {
				s.BatchVariant++
			}
		}
		rep.Summary[a.name] = s
	}
	return rep, nil
}

// CheckGuest records the guest view's runs in the report, and whether they
// agree: every run succeeded and printed the same bytes.
func (r *Report) CheckGuest(module string, args []string, runs []GuestRun) {
	g := &GuestReport{Module: module, Args: args, Runs: runs, Agree: true}
	if args == nil {
		g.Args = []string{}
	}
	for _, run := range runs {
		if run.SHA256 != runs[0].SHA256 || run.Error != "" {
			g.Agree = false
		}
	}
	r.Guest = g
}

func isFalse(b *bool) bool { return b != nil && !*b }

// opsOf names the operations of cases, in the order of the op table.
func opsOf(cases []conformance.Case) []string {
	var ops []string
	for _, op := range accel.Ops() {
		if slices.ContainsFunc(cases, func(c conformance.Case) bool { return c.Op == op }) {
			ops = append(ops, op.Name)
		}
	}
	return ops
}

// execute runs one case on inputs in, on a fresh session of b.
func execute(ctx context.Context, cfg Config, b accel.Backend, c conformance.Case, in []conformance.Tensor) ([]conformance.Tensor, error) {
	s, err := accel.NewSession(b, cfg.Mode, cfg.Limits, nil)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return conformance.Execute(ctx, s, c, in)
}

// measure fills in res for case c on backend b: the comparison with want
// and the invariances.
func measure(ctx context.Context, cfg Config, res *Result, b, variant accel.Backend, c conformance.Case, in, want []conformance.Tensor, parts []conformance.Part) error {
	got, err := execute(ctx, cfg, b, c, in)
	if err != nil {
		return err
	}
	if len(got) != len(want) {
		return fmt.Errorf("%d outputs, want %d", len(got), len(want))
	}
	for i := range want {
		if !slices.Equal(got[i].Shape, want[i].Shape) {
			return fmt.Errorf("output %s has shape %s, want %s", want[i].Name, accel.ShapeString(got[i].Shape), accel.ShapeString(want[i].Shape))
		}
		d := compareOutput(got[i], want[i])
		res.Outputs = append(res.Outputs, d)
		res.Elements += d.Elements
		res.Identical += d.Identical
		res.MaxULP = max(res.MaxULP, d.MaxULP)
		res.sumULP += d.sumULP
		res.compared += d.compared
		res.NaNInfMismatches += d.NaNInf
		res.NaNBitsMismatches += d.NaNBits
		res.SignedZeroMismatches += d.SignedZero
	}
	res.BitExact = res.Identical == res.Elements
	if res.Elements > 0 {
		res.ShareIdentical = float64(res.Identical) / float64(res.Elements)
	}
	if res.compared > 0 {
		res.MeanULP = res.sumULP / float64(res.compared)
	}

	if cfg.Repeat > 1 {
		stable := true
		for r := 1; r < cfg.Repeat; r++ {
			again, err := execute(ctx, cfg, b, c, in)
			if err != nil {
				return fmt.Errorf("run %d: %w", r+1, err)
			}
			if !sameOutputs(again, got) {
				stable = false
				res.Notes = append(res.Notes, fmt.Sprintf("run %d differs from run 1", r+1))
				break
			}
		}
		res.RunToRunStable = &stable
	}

	if variant != nil {
		other, err := execute(ctx, cfg, variant, c, in)
		if err != nil {
			return fmt.Errorf("with %d threads: %w", variant.Status().Threads, err)
		}
		same := sameOutputs(other, got)
		if !same {
			res.Notes = append(res.Notes, fmt.Sprintf("%d threads differ from %d", variant.Status().Threads, b.Status().Threads))
		}
		res.ThreadInvariant = &same
	}

	if len(parts) > 0 {
		same := true
		full := got[0].F32
		for _, p := range parts {
			out, err := execute(ctx, cfg, b, c, p.Inputs)
			if err != nil {
				return fmt.Errorf("%s alone: %w", p.Name, err)
			}
			part := out[0].F32
			if p.Offset+len(part) > len(full) || !sameBits(part, full[p.Offset:p.Offset+len(part)]) {
				same = false
				res.Notes = append(res.Notes, p.Name+" computed alone differs from the full batch")
			}
		}
		res.BatchInvariant = &same
	}
	return nil
}
