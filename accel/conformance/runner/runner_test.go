package runner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance"
	"github.com/accelnode/accelnode/accel/conformance/runner"
	"github.com/accelnode/accelnode/accel/internal/hostmem"
	"github.com/accelnode/accelnode/accel/ref"
)

// refTarget is ref with its thread variant.
func refTarget(threads int) runner.Target {
	return runner.Target{Backend: ref.New(threads), Variant: func(n int) (accel.Backend, error) { return ref.New(n), nil }}
}

func run(t *testing.T, mode accel.Mode, cases []conformance.Case, targets ...runner.Target) *runner.Report {
	t.Helper()
	rep, err := runner.Run(t.Context(), runner.Config{Mode: mode}, targets, cases)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func only(ops ...*accel.Op) []conformance.Case {
	var cases []conformance.Case
	for _, c := range runner.Corpus(true) {
		if slices.Contains(ops, c.Op) {
			cases = append(cases, c)
		}
	}
	return cases
}

func TestCompare(t *testing.T) {
	nan, negNaN := math.Float32frombits(0x7fc00000), math.Float32frombits(0xffc00000)
	inf, negZero := float32(math.Inf(1)), math.Float32frombits(0x80000000)
	got := []float32{1, math.Nextafter32(1, 2), nan, negNaN, inf, 5, negZero, -inf, 7}
	want := []float32{1, 1, nan, nan, math.MaxFloat32, nan, 0, inf, 4}
	d := runner.Compare("y", got, want)
	if d.Elements != 9 || d.Identical != 2 || d.NaNBits != 1 || d.NaNInf != 3 || d.SignedZero != 1 || d.MaxULP != 0x600000 {
		t.Errorf("Compare = %+v", d)
	}
	if d.BitExact() {
		t.Error("BitExact")
	}
}

// ref is bit-exact with itself and keeps every invariance, over the whole
// quick corpus in strict mode; the report's formats show it.
func TestRefQuick(t *testing.T) {
	cases := runner.Corpus(true)
	rep := run(t, accel.Strict, cases, refTarget(0))
	if f := rep.Failures(); len(f) > 0 {
		t.Fatalf("ref fails its own corpus:\n%s", strings.Join(f, "\n"))
	}
	if len(rep.Results) != len(cases) || rep.Measured() != 1 {
		t.Fatalf("%d results for %d cases, %d backends measured", len(rep.Results), len(cases), rep.Measured())
	}
	batch := 0
	for _, r := range rep.Results {
		if !r.BitExact || r.ShareIdentical != 1 || r.MaxULP != 0 || r.RunToRunStable == nil || !*r.RunToRunStable ||
			(r.ThreadInvariant != nil && !*r.ThreadInvariant) || (r.BatchInvariant != nil && !*r.BatchInvariant) {
			t.Errorf("%+v", r)
		}
		if r.BatchInvariant != nil {
			batch++
		}
	}
	if batch == 0 {
		t.Error("no batch-invariance checks")
	}
	s := rep.Summary["ref"]
	if s.Cases != len(cases) || s.BitExactCases != len(cases) || s.Failures != 0 || !s.Strict {
		t.Errorf("summary %+v", s)
	}

	var buf bytes.Buffer
	if err := rep.WriteTable(&buf, true); err != nil {
		t.Fatal(err)
	}
	// Rows name the op, then the backend, in columns as wide as the
	// longest name.
	for _, want := range []string{`(?m)^tsne_step +ref `, `(?m)^add +ref `, `odd-37x53x29/tf32`, `max 0 ulp, 0 failures \(strict mode`} {
		if !regexp.MustCompile(want).MatchString(buf.String()) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
	buf.Reset()
	if err := rep.WriteMarkdown(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "| ref | bit-exact (") {
		t.Errorf("markdown:\n%s", buf.String())
	}
	buf.Reset()
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var decoded map[string]any
	if err := json.Unmarshal(buf.Bytes(), &decoded); err != nil {
		t.Fatal(err)
	}
}

// mayBeNaN reports whether outputs of a value class may be NaN, which
// nudge leaves as it is.
func mayBeNaN(values string) bool {
	return slices.Contains([]string{conformance.NaN, conformance.Inf, conformance.Overflow, conformance.Specials}, values)
}

// nudge moves x one ulp: towards zero, or away from it for a zero.
func nudge(x float32) float32 {
	switch {
	case x != x:
		return x
	case x == 0:
		return math.Nextafter32(x, 1)
	}
	return math.Nextafter32(x, 0)
}

// edited is a backend whose kernel for op runs edit on the call after the
// wrapped backend's kernel, and whose status the status func may change.
type edited struct {
	accel.Backend
	name   string
	op     *accel.Op
	edit   func(b accel.Backend, c *accel.Call) error
	status func(st accel.Status) accel.Status
}

func (e edited) Name() string { return e.name }

func (e edited) Status() accel.Status {
	st := e.Backend.Status()
	st.Name = e.name
	if e.status != nil {
		st = e.status(st)
	}
	return st
}

func (e edited) Kernel(op *accel.Op, mode accel.Mode) accel.Kernel {
	k := e.Backend.Kernel(op, mode)
	if op != e.op || k == nil {
		return k
	}
	return func(ctx context.Context, c *accel.Call) error {
		if err := k(ctx, c); err != nil {
			return err
		}
		return e.edit(e.Backend, c)
	}
}

// nudgeFirst moves the first element of the first output one ulp.
func nudgeFirst(_ accel.Backend, c *accel.Call) error {
	y := hostmem.F32(c.Out[0])
	y[0] = nudge(y[0])
	return nil
}

func TestOneULPInOneElement(t *testing.T) {
	target := runner.Target{Backend: edited{Backend: ref.New(0), name: "one-ulp", op: accel.MatMul, edit: nudgeFirst}}
	rep := run(t, accel.Strict, runner.Corpus(true), target)
	var caught int
	for _, r := range rep.Results {
		switch {
		case r.Op != accel.MatMul.Name:
			if !r.BitExact || r.Failed {
				t.Errorf("%s/%s: %+v", r.Op, r.Case, r)
			}
		case r.BitExact:
			// Only where C[0,0] may be NaN.
			if !mayBeNaN(r.Values) {
				t.Errorf("%s: bit-exact", r.Case)
			}
		default:
			if r.Elements-r.Identical != 1 || r.MaxULP > 1 || !r.Failed {
				t.Errorf("%s: %+v", r.Case, r)
			}
			if r.MaxULP == 1 {
				caught++
			}
		}
	}
	if caught < 5 {
		t.Errorf("only %d matmul cases show the one-ulp error", caught)
	}
	if s := rep.Summary["one-ulp"]; s.MaxULP != 1 || s.Failures == 0 {
		t.Errorf("summary %+v", s)
	}
	if len(rep.Failures()) == 0 {
		t.Error("strict mode does not fail")
	}
	var buf bytes.Buffer
	rep.WriteMarkdown(&buf)
	if !strings.Contains(buf.String(), "max 1 ulp") {
		t.Errorf("markdown:\n%s", buf.String())
	}

	// Fast mode reports the same and does not fail.
	rep = run(t, accel.Fast, only(accel.MatMul), target)
	if f := rep.Failures(); len(f) > 0 {
		t.Errorf("fast mode fails: %v", f)
	}
	if s := rep.Summary["one-ulp"]; s.MaxULP != 1 || s.BitExactCases == s.Cases {
		t.Errorf("summary %+v", s)
	}
}

// flaky is ref whose relu is one ulp off on every other call.
func flaky() edited {
	var calls atomic.Int64
	return edited{Backend: ref.New(0), name: "flaky", op: accel.Relu, edit: func(b accel.Backend, c *accel.Call) error {
		if calls.Add(1)%2 == 0 {
			return nudgeFirst(b, c)
		}
		return nil
	}}
}

func TestRunToRun(t *testing.T) {
	rep := run(t, accel.Strict, only(accel.Relu, accel.AddBias), runner.Target{Backend: flaky()})
	for _, r := range rep.Results {
		unstable := r.RunToRunStable != nil && !*r.RunToRunStable
		if r.Op == accel.Relu.Name && mayBeNaN(r.Values) {
			continue
		}
		if unstable != (r.Op == accel.Relu.Name) || r.Failed != (r.Op == accel.Relu.Name) {
			t.Errorf("%s/%s: stable %v, failed %v", r.Op, r.Case, *r.RunToRunStable, r.Failed)
		}
	}
	if s := rep.Summary["flaky"]; s.Unstable == 0 {
		t.Errorf("summary %+v", s)
	}
}

// threaded is ref whose softmax is one ulp off on one thread.
func threaded(threads int) edited {
	return edited{Backend: ref.New(threads), name: "threaded", op: accel.Softmax, edit: func(b accel.Backend, c *accel.Call) error {
		if b.Status().Threads == 1 {
			return nudgeFirst(b, c)
		}
		return nil
	}}
}

func TestThreadInvariance(t *testing.T) {
	var opened []int
	target := runner.Target{
		Backend: threaded(4),
		Variant: func(n int) (accel.Backend, error) {
			opened = append(opened, n)
			return threaded(n), nil
		},
	}
	rep := run(t, accel.Strict, only(accel.Softmax, accel.Relu), target)
	if !slices.Equal(opened, []int{1}) {
		t.Errorf("variants opened with %v threads, want [1]", opened)
	}
	for _, r := range rep.Results {
		if r.ThreadInvariant == nil {
			t.Fatalf("%s/%s: thread invariance not checked", r.Op, r.Case)
		}
		softmax := r.Op == accel.Softmax.Name
		if softmax && mayBeNaN(r.Values) {
			continue
		}
		if *r.ThreadInvariant == softmax || r.Failed != softmax || !r.BitExact {
			t.Errorf("%s/%s: thread invariant %v, failed %v, bit-exact %v", r.Op, r.Case, *r.ThreadInvariant, r.Failed, r.BitExact)
		}
	}
	if s := rep.Summary["threaded"]; s.ThreadVariant == 0 || !slices.Equal(s.ThreadCounts, []int{4, 1}) {
		t.Errorf("summary %+v", s)
	}
}

// gemv is ref whose matmul is one ulp off when it has one row.
var gemv = edited{Backend: ref.New(0), name: "gemv", op: accel.MatMul, edit: func(b accel.Backend, c *accel.Call) error {
	if c.Out[0].Shape()[0] == 1 {
		return nudgeFirst(b, c)
	}
	return nil
}}

func TestBatchInvariance(t *testing.T) {
	rep := run(t, accel.Fast, only(accel.MatMul), runner.Target{Backend: gemv})
	var variant int
	for _, r := range rep.Results {
		if r.Size != conformance.SizeOdd {
			continue
		}
		if r.BatchInvariant == nil || (*r.BatchInvariant && !mayBeNaN(r.Values)) || !r.BitExact {
			t.Errorf("%s: %+v", r.Case, r)
		}
		if r.BatchInvariant != nil && !*r.BatchInvariant {
			variant++
		}
	}
	if variant == 0 || rep.Summary["gemv"].BatchVariant != variant {
		t.Errorf("%d batch-variant cases, summary %+v", variant, rep.Summary["gemv"])
	}
}

// fastOnly is ref claiming fast mode alone.
var fastOnly = edited{Backend: ref.New(1), name: "fast-only", status: func(st accel.Status) accel.Status {
	st.Modes, st.FastIsStrict = []accel.Mode{accel.Fast}, false
	return st
}}

// gone is a backend that cannot serve here, with a long reason.
var gone = edited{Backend: ref.New(1), name: "gone", status: func(st accel.Status) accel.Status {
	st.Available, st.Reason = false, "libcuda.so.1: cannot open shared object file: No such file or directory (searched /usr/local/cuda/lib64, /usr/lib/x86_64-linux-gnu)"
	return st
}}

// Strict mode skips backends that do not claim the contract, and
// unavailable ones, with the reason; they have no results.
func TestSkips(t *testing.T) {
	unwanted := runner.Target{Backend: edited{Backend: ref.New(1), name: "unwanted"}, Skip: "not wanted"}
	rep := run(t, accel.Strict, only(accel.Relu), runner.Target{Backend: fastOnly}, runner.Target{Backend: gone}, unwanted, refTarget(1))
	if len(rep.Results) != len(only(accel.Relu)) || rep.Measured() != 1 {
		t.Fatalf("%d results, %d measured", len(rep.Results), rep.Measured())
	}
	for name, why := range map[string]string{"fast-only": "numerics contract", "gone": "unavailable: libcuda", "unwanted": "not wanted", "ref": ""} {
		if got := rep.Summary[name].SkippedReason; !strings.Contains(got, why) || (why == "") != (got == "") {
			t.Errorf("%s skipped for %q, want %q", name, got, why)
		}
	}
	if f := rep.Failures(); len(f) > 0 {
		t.Errorf("failures %v", f)
	}
}

// A run in which every backend was skipped measured nothing, and fails.
func TestAllSkipped(t *testing.T) {
	rep := run(t, accel.Strict, only(accel.Relu), runner.Target{Backend: fastOnly}, runner.Target{Backend: gone})
	if rep.Measured() != 0 || len(rep.Results) != 0 {
		t.Fatalf("%d measured, %d results", rep.Measured(), len(rep.Results))
	}
	f := rep.Failures()
	if len(f) != 1 || f[0] != "no backend was measured: every one was skipped" {
		t.Errorf("failures %q", f)
	}
	var buf bytes.Buffer
	if err := rep.WriteTable(&buf, false); err != nil {
		t.Fatal(err)
	}
	table := buf.String()
	if !strings.Contains(table, "1 failures:\n  no backend was measured") || strings.Count(table, rep.Summary["gone"].SkippedReason) != 1 {
		t.Errorf("table:\n%s", table)
	}
	if rep := run(t, accel.Fast, only(accel.Relu)); rep.Measured() != 0 || len(rep.Failures()) != 1 {
		t.Errorf("no targets: %d measured, failures %q", rep.Measured(), rep.Failures())
	}
}

// Skipped rows keep the table's columns aligned with the measured ones,
// and each skip reason appears once in every format.
func TestSkippedRows(t *testing.T) {
	rep := run(t, accel.Strict, only(accel.Relu, accel.Add), runner.Target{Backend: gone}, refTarget(1), runner.Target{Backend: fastOnly})
	var buf bytes.Buffer
	if err := rep.WriteTable(&buf, false); err != nil {
		t.Fatal(err)
	}
	table := buf.String()
	lines := strings.Split(table[:strings.Index(table, "\n\n")], "\n")
	if len(lines) != 1+2*3 {
		t.Fatalf("%d table lines:\n%s", len(lines), table)
	}
	// Columns start where the header's titles do, counted in characters.
	header := []rune(lines[0])
	for _, col := range []string{"CASES", "IDENTICAL", "NAN BITS", "RUN-TO-RUN", "BATCH"} {
		at := len([]rune(lines[0][:strings.Index(lines[0], col)]))
		for _, line := range lines[1:] {
			if l := []rune(line); at >= len(l) || l[at] == ' ' || l[at-1] != ' ' {
				t.Errorf("column %s does not start at %d in %q:\n%s", col, at, line, table)
			}
		}
	}
	if len(header) == 0 {
		t.Fatal("no header")
	}
	if !regexp.MustCompile(`(?m)^relu +gone +skipped +- +-`).MatchString(table) {
		t.Errorf("no skipped row:\n%s", table)
	}
	reason := rep.Summary["gone"].SkippedReason
	for format, write := range map[string]func(io.Writer) error{
		"table":    func(w io.Writer) error { return rep.WriteTable(w, true) },
		"markdown": rep.WriteMarkdown,
		"json":     rep.WriteJSON,
	} {
		buf.Reset()
		if err := write(&buf); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(buf.String(), reason); n != 1 {
			t.Errorf("%s holds the skip reason %d times:\n%s", format, n, buf.String())
		}
	}
}

// The table explains its columns, and a difference that ulps do not
// measure never reads "max 0 ulp".
func TestLegendAndDistance(t *testing.T) {
	// relu writes NaNs with a payload: its only differences are NaN bits.
	payload := edited{Backend: ref.New(1), name: "payload", op: accel.Relu, edit: func(_ accel.Backend, c *accel.Call) error {
		for i, v := range hostmem.F32(c.Out[0]) {
			if v != v {
				hostmem.F32(c.Out[0])[i] = math.Float32frombits(0xffc00001)
			}
		}
		return nil
	}}
	rep := run(t, accel.Fast, only(accel.Relu), runner.Target{Backend: payload})
	s := rep.Summary["payload"]
	defer func() {
		if t.Failed() {
			var buf bytes.Buffer
			rep.WriteTable(&buf, true)
			t.Log(buf.String())
		}
	}()
	if s.MaxULP != 0 || s.NaNBitsMismatch == 0 || s.BitExactCases == s.Cases {
		t.Fatalf("summary %+v", s)
	}
	var table, markdown bytes.Buffer
	if err := rep.WriteTable(&table, false); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteMarkdown(&markdown); err != nil {
		t.Fatal(err)
	}
	for _, col := range []string{"CASES", "BIT-EXACT", "IDENTICAL", "MAX ULP", "MEAN ULP", "NAN/INF", "NAN BITS", "±0", "RUN-TO-RUN", "THREADS", "BATCH", "NO (n)", "skipped"} {
		if !regexp.MustCompile(`(?m)^(|.*[ ,])` + regexp.QuoteMeta(col) + `[:,]`).MatchString(table.String()) {
			t.Errorf("the legend does not explain %s:\n%s", col, table.String())
		}
	}
	wantNaN := fmt.Sprintf("%d NaN-bit mismatches", s.NaNBitsMismatch)
	for format, out := range map[string]string{"table": table.String(), "markdown": markdown.String()} {
		if strings.Contains(out, "max 0 ulp") || !strings.Contains(out, "NaN-bit mismatches") {
			t.Errorf("%s reads max 0 ulp, or hides the NaN bits:\n%s", format, out)
		}
	}
	if !regexp.MustCompile(`(?m)^payload: \d+ of \d+ cases bit-exact with ref, ` + wantNaN + `, 0 failures`).MatchString(table.String()) {
		t.Errorf("summary line lacks %q:\n%s", wantNaN, table.String())
	}
}

func TestDistance(t *testing.T) {
	for _, c := range []struct {
		ulp               int64
		nanInf, nan, zero int
		want              string
	}{
		{0, 0, 0, 0, "max 0 ulp"},
		{872415232, 0, 0, 0, "max 872,415,232 ulp"},
		{0, 0, 3, 0, "3 NaN-bit mismatches"},
		{2, 1, 0, 4, "max 2 ulp, 1 NaN/Inf and 4 ±0 mismatches"},
		{0, 1, 2, 3, "1 NaN/Inf, 2 NaN-bit and 3 ±0 mismatches"},
	} {
		res := runner.Result{BitExact: c.ulp+int64(c.nanInf+c.nan+c.zero) == 0, Elements: 10, Identical: 9, MaxULP: c.ulp,
			NaNInfMismatches: c.nanInf, NaNBitsMismatches: c.nan, SignedZeroMismatches: c.zero, Failed: true, Op: "x", Backend: "b", Case: "c"}
		rep := &runner.Report{Results: []runner.Result{res}}
		f := rep.Failures()
		if res.BitExact {
			continue
		}
		if len(f) == 0 || !strings.HasSuffix(f[len(f)-1], "("+c.want+")") {
			t.Errorf("failure %q, want it to end (%s)", f, c.want)
		}
	}
}

// The full corpus runs on ref in strict mode without a failure.
func TestRefFull(t *testing.T) {
	if testing.Short() {
		t.Skip("the full corpus")
	}
	rep := run(t, accel.Strict, runner.Corpus(false), refTarget(0))
	if f := rep.Failures(); len(f) > 0 {
		t.Fatalf("ref fails its own corpus:\n%s", strings.Join(f, "\n"))
	}
}

// ref matches the contract's transcription bit for bit over the quick
// corpus (the whole corpus without -short).
func TestRefAgainstSpec(t *testing.T) {
	rep, err := runner.Run(t.Context(), runner.Config{Mode: accel.Strict, Repeat: 1, Reference: runner.Spec()},
		[]runner.Target{{Backend: ref.New(0)}}, runner.Corpus(testing.Short()))
	if err != nil {
		t.Fatal(err)
	}
	if f := rep.Failures(); len(f) > 0 {
		t.Fatalf("ref differs from the contract:\n%s", strings.Join(f, "\n"))
	}
	if rep.Reference != "spec" {
		t.Errorf("reference %q", rep.Reference)
	}
}

// A backend that errors fails the run in fast mode too.
func TestErrors(t *testing.T) {
	broken := edited{Backend: ref.New(1), name: "broken", op: accel.Softmax, edit: func(accel.Backend, *accel.Call) error { return accel.ErrDevice }}
	rep := run(t, accel.Fast, only(accel.Softmax, accel.Relu), runner.Target{Backend: broken})
	for _, r := range rep.Results {
		softmax := r.Op == accel.Softmax.Name
		if (r.Error != "") != softmax || r.Failed != softmax {
			t.Errorf("%s/%s: error %q, failed %v", r.Op, r.Case, r.Error, r.Failed)
		}
	}
	s := rep.Summary["broken"]
	if s.Errors == 0 || s.Errors != s.Failures || len(rep.Failures()) != s.Failures {
		t.Errorf("summary %+v, failures %v", s, rep.Failures())
	}
	var buf bytes.Buffer
	rep.WriteTable(&buf, false)
	if !strings.Contains(buf.String(), "errors)") {
		t.Errorf("table:\n%s", buf.String())
	}
}
