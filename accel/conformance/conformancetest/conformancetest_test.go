package conformancetest

import (
	"context"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance"
	"github.com/accelnode/accelnode/accel/internal/hostmem"
)

// TestSpec runs the drivers on the backend built from the contract's
// transcription, over the quick corpus. The bit checks are then trivially
// met; what this tests is that the transcription stays within the float64
// error bounds, and that the drivers work without any other backend. The
// whole corpus is checked so by accel/ref's conformance test, which finds
// ref's bits equal to the transcription's and within the bounds.
func TestSpec(t *testing.T) { TestCases(t, conformance.Spec(), conformance.Corpus(true)) }

// edited is a backend with one operation's results edited after its
// kernel, and optionally other modes.
type edited struct {
	accel.Backend
	name  string
	op    *accel.Op
	edit  func(c *accel.Call)
	modes []accel.Mode
}

func (e edited) Name() string { return e.name }

func (e edited) Status() accel.Status {
	st := e.Backend.Status()
	st.Name = e.name
	if e.modes != nil {
		st.Modes, st.FastIsStrict = e.modes, false
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
		e.edit(c)
		return nil
	}
}

// nudgeFirst moves the first output element one ulp up, or with
// singleRow only where the output is a single row of several elements, as
// a row computed alone (a one-element output has a tight float64 bound).
func nudgeFirst(singleRow bool) func(c *accel.Call) {
	return func(c *accel.Call) {
		y := hostmem.F32(c.Out[0])
		if y[0] == y[0] && (!singleRow || c.Out[0].Shape()[0] == 1 && len(y) > 1) {
			y[0] = math.Nextafter32(y[0], float32(math.Inf(1)))
		}
	}
}

// unavailable is a backend that cannot serve here.
type unavailable struct{ accel.Backend }

func (unavailable) Status() accel.Status {
	return accel.Status{Name: "gone", Reason: "no such device"}
}

// The backends the child processes of TestVerdicts run matmul on.
var verdictBackends = map[string]accel.Backend{
	"one-ulp":     edited{Backend: conformance.Spec(), name: "one-ulp", op: accel.MatMul, edit: nudgeFirst(false)},
	"gemv-strict": edited{Backend: conformance.Spec(), name: "gemv-strict", op: accel.MatMul, edit: nudgeFirst(true)},
	"gemv-fast":   edited{Backend: conformance.Spec(), name: "gemv-fast", op: accel.MatMul, edit: nudgeFirst(true), modes: []accel.Mode{accel.Fast}},
}

// TestVerdicts runs TestOp on backends with known faults in child
// processes, and checks that the drivers fail or pass each for the right
// reason: a contract difference fails a strict backend, batch variance
// fails a strict backend and is logged for a fast one.
func TestVerdicts(t *testing.T) {
	if name := os.Getenv("CONFORMANCETEST_BACKEND"); name != "" {
		TestOp(t, verdictBackends[name], accel.MatMul)
		return
	}
	for _, c := range []struct {
		backend string
		fails   bool
		want    []string
	}{
		{"one-ulp", true, []string{"c differs from the contract", "1 ulp apart", "FAIL: TestVerdicts/tiny-1x1x1/uniform"}},
		{"gemv-strict", true, []string{"rows 0..0 computed alone differs from the full batch", "FAIL: TestVerdicts/odd-37x53x29/normal", "PASS: TestVerdicts/tiny-1x1x1/normal"}},
		{"gemv-fast", false, []string{"rows 0..0 computed alone differs from the full batch", "may do so", "PASS: TestVerdicts/odd-37x53x29/normal"}},
	} {
		t.Run(c.backend, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestVerdicts$", "-test.count=1", "-test.short", "-test.v")
			cmd.Env = append(os.Environ(), "CONFORMANCETEST_BACKEND="+c.backend)
			out, err := cmd.CombinedOutput()
			if failed := err != nil; failed != c.fails {
				t.Errorf("failed = %v, want %v:\n%s", failed, c.fails, out)
			}
			for _, want := range c.want {
				if !strings.Contains(string(out), want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// A backend that cannot serve here is skipped with the reason.
func TestSkipsUnavailable(t *testing.T) {
	var skipped bool
	t.Run("all", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		TestAll(t, unavailable{conformance.Spec()})
	})
	if !skipped {
		t.Error("TestAll ran an unavailable backend")
	}
	t.Run("op", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		TestOp(t, unavailable{conformance.Spec()}, accel.Relu)
	})
	if !skipped {
		t.Error("TestOp ran an unavailable backend")
	}
}

// lacking is a backend without an operation.
type lacking struct {
	accel.Backend
	op *accel.Op
}

func (l lacking) Kernel(op *accel.Op, mode accel.Mode) accel.Kernel {
	if op == l.op {
		return nil
	}
	return l.Backend.Kernel(op, mode)
}

// The cases of an operation a backend has no kernel for are skipped, not
// failed: a call would fail with accel.ErrUnsupported.
func TestSkipsMissingKernel(t *testing.T) {
	if !t.Run("relu", func(t *testing.T) { TestOp(t, lacking{conformance.Spec(), accel.Relu}, accel.Relu) }) {
		t.Error("the drivers fail a backend without relu")
	}
}
