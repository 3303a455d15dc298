// Package conformancetest holds the test drivers every accel backend runs,
// in the style of gonum's blas/testblas: each takes the *testing.T and the
// backend under test, and runs the conformance corpus (package
// conformance) through it.
//
// A new backend runs them all with a one-line test:
//
//	func TestMyBackend(t *testing.T) { conformancetest.TestAll(t, mybackend.New()) }
//
// or picks one operation with TestOp, or any cases with TestCases. A backend
// whose Status reports it unavailable on this machine is skipped with the
// reason, and so are the cases of an operation it has no kernel for.
//
// The drivers reach the backend the way a guest does, through an
// accel.Session (NewTensor, Write, Session.Run, Read): in strict mode when
// the backend serves it, and then bit for bit against the contract
// (docs/determinism.md), else in fast mode. Every case of the corpus runs
// as a subtest, "<op>/<case>", and conformance.Verify checks it: accuracy
// against float64 within an error bound, the contract's bits in strict
// mode, inputs read back unchanged, a second run giving the same bits, and
// batch invariance, which fails strict backends and is logged for others.
// Cases run in parallel; under -short only the quick ones (tiny and odd
// sizes) run.
package conformancetest

import (
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance"
)

// TestAll runs the cases of every operation of the corpus as subtests
// named by the operation.
func TestAll(t *testing.T, b accel.Backend) {
	mode := modeOf(t, b)
	for _, op := range conformance.Ops() {
		t.Run(op.Name, func(t *testing.T) { run(t, b, mode, op.Name, corpus(op)) })
	}
}

// TestOp runs the cases of op as subtests. It fails when the corpus has no
// case of op.
func TestOp(t *testing.T, b accel.Backend, op *accel.Op) {
	run(t, b, modeOf(t, b), op.Name, corpus(op))
}

// TestCases runs the given cases, of any operations, as subtests named
// "<op>/<case>": a subset of the corpus, say the quick one
// (conformance.Corpus(true)).
func TestCases(t *testing.T, b accel.Backend, cases []conformance.Case) {
	run(t, b, modeOf(t, b), "", cases)
}

// corpus is the cases of op the drivers run: the quick ones under -short.
func corpus(op *accel.Op) []conformance.Case { return conformance.Cases(op, testing.Short()) }

// modeOf is the mode the drivers run b in: strict where b serves it, else
// fast. It skips t when b serves neither here.
func modeOf(t *testing.T, b accel.Backend) accel.Mode {
	t.Helper()
	st := b.Status()
	switch {
	case !st.Available:
		t.Skipf("backend %s is unavailable: %s", b.Name(), st.Reason)
	case st.Serves(accel.Strict):
		return accel.Strict
	case !st.Serves(accel.Fast):
		t.Skipf("backend %s serves neither strict nor fast mode (it serves %s)", b.Name(), accel.ModeList(st.Modes))
	}
	return accel.Fast
}

// run runs each case as a parallel subtest, named by the case alone when
// every case is of op. A case of an operation b has no kernel for in mode
// is skipped: a backend need not have every operation.
func run(t *testing.T, b accel.Backend, mode accel.Mode, op string, cases []conformance.Case) {
	t.Helper()
	switch {
	case len(cases) > 0:
	case op == "":
		t.Fatal("no cases to run")
	default:
		t.Fatalf("the conformance corpus has no case of %s", op)
	}
	for _, c := range cases {
		name := c.Name
		if c.Op.Name != op {
			name = c.String()
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if b.Kernel(c.Op, mode) == nil {
				t.Skipf("backend %s has no %s kernel in %s mode", b.Name(), c.Op, mode)
			}
			s, err := accel.NewSession(b, mode, accel.Limits{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			problems, err := conformance.Verify(t.Context(), s, c)
			for _, p := range problems {
				if p.Check == conformance.Batch && mode != accel.Strict {
					t.Logf("%s (a backend that does not implement the contract may do so)", p)
					continue
				}
				t.Error(p)
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
