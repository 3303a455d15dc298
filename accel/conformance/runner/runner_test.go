package runner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance/runner"
	"github.com/accelnode/accelnode/accel/hostmem"
	"github.com/accelnode/accelnode/accel/ref"
)

// refTarget is ref with its thread variant.
func refTarget(threads int) runner.Target {
	return runner.Target{Backend: ref.New(threads), Variant: func(n int) (accel.Backend, error) { return ref.New(n), nil }}
}

func run(t *testing.T, mode accel.Mode, cases []runner.Case, targets ...runner.Target) *runner.Report {
	t.Helper()
	rep, err := runner.Run(t.Context(), runner.Config{Mode: mode}, targets, cases)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func only(ops ...string) []runner.Case {
	var cases []runner.Case
	for _, c := range runner.Corpus(true) {
		if slices.Contains(ops, c.Op) {
			cases = append(cases, c)
		}
	}
	return cases
}

func TestCorpus(t *testing.T) {
	full, quick := runner.Corpus(false), runner.Corpus(true)
	if len(quick) == 0 || len(quick) >= len(full) {
		t.Fatalf("%d quick cases of %d", len(quick), len(full))
	}
	seen := map[string]bool{}
	classes := map[string]map[string]bool{}
	for _, c := range full {
		if seen[c.String()] {
			t.Errorf("case %s twice", c)
		}
		seen[c.String()] = true
		if classes[c.Op] == nil {
			classes[c.Op] = map[string]bool{}
		}
		classes[c.Op][c.Values] = true
		if c.Quick != (c.Size == runner.SizeTiny || c.Size == runner.SizeOdd) {
			t.Errorf("%s: quick = %v", c, c.Quick)
		}
	}
	for _, op := range runner.Ops {
		if len(classes[op]) < 8 {
			t.Errorf("%s has value classes %v", op, classes[op])
		}
	}
	for _, op := range []string{runner.OpMatMul, runner.OpConv2D} {
		if len(classes[op]) != len(runner.ValueClasses) {
			t.Errorf("%s has value classes %v, want all of %v", op, classes[op], runner.ValueClasses)
		}
	}
	// Inputs are the same on every call.
	for _, c := range quick {
		a, b := c.Inputs(), c.Inputs()
		for i := range a {
			if !slices.Equal(bitsOf(a[i].F32), bitsOf(b[i].F32)) || !slices.Equal(a[i].I32, b[i].I32) {
				t.Errorf("%s: input %s differs between calls", c, a[i].Name)
			}
		}
	}
}

func bitsOf(v []float32) []uint32 {
	b := make([]uint32, len(v))
	for i, x := range v {
		b[i] = math.Float32bits(x)
	}
	return b
}

// The exact class is what it claims: every matmul sum gives the same
// float32 forwards, backwards and in float64.
func TestExactlySummable(t *testing.T) {
	for _, c := range runner.Corpus(false) {
		if c.Op != runner.OpMatMul || c.Values != runner.Exact {
			continue
		}
		in := c.Inputs()
		p := c.Params.(accel.MatMulParams)
		m, k, n, err := accel.MatMulDims(in[0].Shape, in[1].Shape, p)
		if err != nil {
			t.Fatal(err)
		}
		at := func(i, kk int) float32 {
			if p.TransA {
				return in[0].F32[kk*m+i]
			}
			return in[0].F32[i*k+kk]
		}
		bt := func(kk, j int) float32 {
			if p.TransB {
				return in[1].F32[j*k+kk]
			}
			return in[1].F32[kk*n+j]
		}
		for i := range m {
			for j := range n {
				var fwd, bwd float32
				var exact float64
				for kk := range k {
					fwd += float32(at(i, kk) * bt(kk, j))
					bwd += float32(at(i, k-1-kk) * bt(k-1-kk, j))
					exact += float64(at(i, kk)) * float64(bt(kk, j))
				}
				if fwd != bwd || float64(fwd) != exact {
					t.Fatalf("%s: C[%d,%d] is %g forwards, %g backwards, %g exactly", c, i, j, fwd, bwd, exact)
				}
			}
		}
	}
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
	if len(rep.Results) != len(cases) {
		t.Fatalf("%d results for %d cases", len(rep.Results), len(cases))
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
	if s.Cases != len(cases) || s.BitExactCases != len(cases) || s.Failures != 0 {
		t.Errorf("summary %+v", s)
	}

	var buf bytes.Buffer
	if err := rep.WriteTable(&buf, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "tsne_step  ref") || !strings.Contains(buf.String(), "odd-37x53x29/tf32") {
		t.Errorf("table:\n%s", buf.String())
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
	return values == runner.NaN || values == runner.Inf || values == runner.Overflow
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

// oneULP is ref with matmul's element [0,0] one ulp off.
type oneULP struct{ *ref.Backend }

func (oneULP) Name() string { return "one-ulp" }

func (b oneULP) MatMul(ctx context.Context, out, a, bm *accel.Tensor, p accel.MatMulParams) error {
	if err := b.Backend.MatMul(ctx, out, a, bm, p); err != nil {
		return err
	}
	y := hostmem.F32(out)
	y[0] = nudge(y[0])
	return nil
}

func TestOneULPInOneElement(t *testing.T) {
	target := runner.Target{Backend: oneULP{ref.New(0)}}
	rep := run(t, accel.Strict, runner.Corpus(true), target)
	var caught int
	for _, r := range rep.Results {
		switch {
		case r.Op != runner.OpMatMul:
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
	rep = run(t, accel.Fast, only(runner.OpMatMul), target)
	if f := rep.Failures(); len(f) > 0 {
		t.Errorf("fast mode fails: %v", f)
	}
	if s := rep.Summary["one-ulp"]; s.MaxULP != 1 || s.BitExactCases == s.Cases {
		t.Errorf("summary %+v", s)
	}
}

// flaky is ref whose relu is one ulp off on every other call.
type flaky struct {
	*ref.Backend
	calls *atomic.Int64
}

func (flaky) Name() string { return "flaky" }

func (b flaky) Relu(ctx context.Context, out, x *accel.Tensor) error {
	if err := b.Backend.Relu(ctx, out, x); err != nil {
		return err
	}
	if b.calls.Add(1)%2 == 0 {
		y := hostmem.F32(out)
		y[0] = nudge(y[0])
	}
	return nil
}

func TestRunToRun(t *testing.T) {
	target := runner.Target{Backend: flaky{ref.New(0), new(atomic.Int64)}}
	rep := run(t, accel.Strict, only(runner.OpRelu, runner.OpAddBias), target)
	for _, r := range rep.Results {
		unstable := r.RunToRunStable != nil && !*r.RunToRunStable
		if r.Op == runner.OpRelu && mayBeNaN(r.Values) {
			continue
		}
		if unstable != (r.Op == runner.OpRelu) || r.Failed != (r.Op == runner.OpRelu) {
			t.Errorf("%s/%s: stable %v, failed %v", r.Op, r.Case, *r.RunToRunStable, r.Failed)
		}
	}
	if s := rep.Summary["flaky"]; s.Unstable == 0 {
		t.Errorf("summary %+v", s)
	}
}

// threaded is ref whose softmax is one ulp off on one thread.
type threaded struct{ *ref.Backend }

func (threaded) Name() string { return "threaded" }

func (b threaded) Softmax(ctx context.Context, out, x *accel.Tensor) error {
	if err := b.Backend.Softmax(ctx, out, x); err != nil {
		return err
	}
	if b.Status().Threads == 1 {
		y := hostmem.F32(out)
		y[0] = nudge(y[0])
	}
	return nil
}

func TestThreadInvariance(t *testing.T) {
	var opened []int
	target := runner.Target{
		Backend: threaded{ref.New(4)},
		Variant: func(n int) (accel.Backend, error) {
			opened = append(opened, n)
			return threaded{ref.New(n)}, nil
		},
	}
	rep := run(t, accel.Strict, only(runner.OpSoftmax, runner.OpRelu), target)
	if !slices.Equal(opened, []int{1}) {
		t.Errorf("variants opened with %v threads, want [1]", opened)
	}
	for _, r := range rep.Results {
		if r.ThreadInvariant == nil {
			t.Fatalf("%s/%s: thread invariance not checked", r.Op, r.Case)
		}
		if r.Op == runner.OpSoftmax && mayBeNaN(r.Values) {
			continue
		}
		if *r.ThreadInvariant != (r.Op == runner.OpRelu) || r.Failed != (r.Op == runner.OpSoftmax) || !r.BitExact {
			t.Errorf("%s/%s: thread invariant %v, failed %v, bit-exact %v", r.Op, r.Case, *r.ThreadInvariant, r.Failed, r.BitExact)
		}
	}
	if s := rep.Summary["threaded"]; s.ThreadVariant == 0 || !slices.Equal(s.ThreadCounts, []int{4, 1}) {
		t.Errorf("summary %+v", s)
	}
}

// gemv is ref whose matmul is one ulp off when it has one row.
type gemv struct{ *ref.Backend }

func (gemv) Name() string { return "gemv" }

func (b gemv) MatMul(ctx context.Context, out, a, bm *accel.Tensor, p accel.MatMulParams) error {
	if err := b.Backend.MatMul(ctx, out, a, bm, p); err != nil {
		return err
	}
	if out.Shape()[0] == 1 {
		y := hostmem.F32(out)
		y[0] = nudge(y[0])
	}
	return nil
}

func TestBatchInvariance(t *testing.T) {
	rep := run(t, accel.Fast, only(runner.OpMatMul), runner.Target{Backend: gemv{ref.New(0)}})
	var variant int
	for _, r := range rep.Results {
		if r.Size == runner.SizeOdd {
			if r.BatchInvariant == nil || (*r.BatchInvariant && !mayBeNaN(r.Values)) || !r.BitExact {
				t.Errorf("%s: %+v", r.Case, r)
			}
			if r.BatchInvariant != nil && !*r.BatchInvariant {
				variant++
			}
		}
	}
	if variant == 0 || rep.Summary["gemv"].BatchVariant != variant {
		t.Errorf("%d batch-variant cases, summary %+v", variant, rep.Summary["gemv"])
	}
}

// Strict mode skips backends that do not claim the contract, and
// unavailable ones, with the reason.
func TestSkips(t *testing.T) {
	rep := run(t, accel.Strict, only(runner.OpRelu), runner.Target{Backend: notDeterministic{ref.New(1)}}, runner.Target{Backend: ref.New(1), Skip: "not wanted"})
	if len(rep.Results) != 2 {
		t.Fatalf("%d results: %+v", len(rep.Results), rep.Results)
	}
	for _, r := range rep.Results {
		if r.SkippedReason == "" || r.Case != "*" || r.Failed {
			t.Errorf("%+v", r)
		}
	}
	if f := rep.Failures(); len(f) > 0 {
		t.Errorf("failures %v", f)
	}
}

type notDeterministic struct{ *ref.Backend }

func (notDeterministic) Name() string { return "fast-only" }

func (b notDeterministic) Status() accel.Status {
	st := b.Backend.Status()
	st.Name, st.Deterministic = "fast-only", false
	return st
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

// broken is ref whose softmax fails.
type broken struct{ *ref.Backend }

func (broken) Name() string { return "broken" }

func (broken) Softmax(context.Context, *accel.Tensor, *accel.Tensor) error {
	return accel.ErrDevice
}

// A backend that errors fails the run in fast mode too.
func TestErrors(t *testing.T) {
	rep := run(t, accel.Fast, only(runner.OpSoftmax, runner.OpRelu), runner.Target{Backend: broken{ref.New(1)}})
	for _, r := range rep.Results {
		if (r.Error != "") != (r.Op == runner.OpSoftmax) || r.Failed != (r.Op == runner.OpSoftmax) {
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
