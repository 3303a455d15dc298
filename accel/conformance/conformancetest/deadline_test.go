package conformancetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance"
)

// scripted is a backend whose relu kernel does what a test says on a call
// of more than one element, and succeeds at once on a single element: the
// driver's small call afterwards.
type scripted struct {
	accel.Backend
	long  accel.Kernel
	small error
	// alloc is how long allocating more than one element takes.
	alloc time.Duration
}

func (s scripted) Alloc(dt accel.DType, n int) (accel.Buffer, error) {
	if n > 1 {
		time.Sleep(s.alloc)
	}
	return s.Backend.Alloc(dt, n)
}

func (s scripted) Kernel(op *accel.Op, mode accel.Mode) accel.Kernel {
	if op != accel.Relu {
		return s.Backend.Kernel(op, mode)
	}
	return func(ctx context.Context, c *accel.Call) error {
		if c.In[0].Len() > 1 {
			return s.long(ctx, c)
		}
		return s.small
	}
}

// After its deadline, sleepThen sleeps for d and returns err, or the
// context's end where err is nil.
func sleepThen(d time.Duration, err error) accel.Kernel {
	return func(ctx context.Context, _ *accel.Call) error {
		<-ctx.Done()
		time.Sleep(d)
		if err != nil {
			return err
		}
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
}

// TestDeadlineVerdicts runs the driver's checks on kernels with known
// faults, with a deadline of 20 ms and a bound of 150 ms, and checks
// that it finds each fault and no other.
func TestDeadlineVerdicts(t *testing.T) {
	const limit, bound = 20 * time.Millisecond, 150 * time.Millisecond
	relu := longCase{name: "tiny", op: accel.Relu, params: accel.NoParams{}, shapes: [][]int{{64}}, small: [][]int{{1}}}
	for _, tc := range []struct {
		name     string
		long     accel.Kernel
		small    error
		alloc    time.Duration
		finished bool
		late     bool     // the kernel starts after the deadline
		want     []string // what the one problem says, if any
	}{
		{name: "prompt", long: sleepThen(0, nil)},
		{name: "late", long: sleepThen(400*time.Millisecond, nil),
			want: []string{"after its deadline of 20ms (the kernel started after", "more than 150ms"}},
		// The Session's allocations are not the kernel's: the bound
		// runs from the kernel's start.
		{name: "slow allocation", long: sleepThen(0, nil), alloc: 400 * time.Millisecond, late: true},
		{name: "slow allocation, late kernel", long: sleepThen(400*time.Millisecond, nil), alloc: 400 * time.Millisecond, late: true,
			want: []string{"more than 150ms"}},
		{name: "late with a result", long: func(ctx context.Context, _ *accel.Call) error {
			<-ctx.Done()
			time.Sleep(400 * time.Millisecond)
			return nil
		}, want: []string{"more than 150ms"}},
		{name: "done as the deadline came", long: func(ctx context.Context, _ *accel.Call) error {
			<-ctx.Done()
			return nil
		}},
		{name: "another error", long: sleepThen(0, errors.New("device lost")),
			want: []string{`"tiny: device lost", which does not wrap context.DeadlineExceeded`}},
		{name: "unusable afterwards", long: sleepThen(0, nil), small: errors.New("wedged"),
			want: []string{"a small call afterwards failed: tiny: wedged"}},
		{name: "too quick", long: func(context.Context, *accel.Call) error { return nil }, finished: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := named{scripted{Backend: conformance.Spec(), long: tc.long, small: tc.small, alloc: tc.alloc}, "tiny"}
			r, err := runLong(t.Context(), b, accel.Strict, relu, limit, bound)
			if err != nil {
				t.Fatal(err)
			}
			if r.finished != tc.finished {
				t.Errorf("finished before the deadline: %v, want %v", r.finished, tc.finished)
			}
			if late := !tc.finished && !r.entered; late != tc.late {
				t.Errorf("the kernel started after the deadline: %v, want %v", late, tc.late)
			}
			if len(r.problems) != min(len(tc.want), 1) {
				t.Fatalf("problems %q, want one saying %q", r.problems, tc.want)
			}
			for _, want := range tc.want {
				if !strings.Contains(r.problems[0], want) {
					t.Errorf("problem %q, want it to say %q", r.problems[0], want)
				}
			}
		})
	}
}

// named renames a backend, so that errors name it.
type named struct {
	accel.Backend
	name string
}

func (n named) Name() string { return n.name }

// TestDeadlineChecksIndexDataFirst checks that the Session's check of
// t-SNE's index data, a pass over every edge, is done before the deadline
// starts: reading the index data takes longer than the deadline here, so
// a timed call that checked it would end before its kernel.
func TestDeadlineChecksIndexDataFirst(t *testing.T) {
	b := slowIndex{Backend: conformance.Spec(), read: 50 * time.Millisecond, long: sleepThen(0, nil)}
	c := longCase{name: "tsne", op: accel.TSNEStep, params: tsne, shapes: tsneShapes(8, 5), small: tsneShapes(4, 3), fill: oneRow}
	r, err := runLong(t.Context(), b, accel.Strict, c, 20*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !r.entered || len(r.problems) != 0 {
		t.Errorf("entered the kernel before the deadline: %v; problems %q", r.entered, r.problems)
	}
}

// slowIndex is a backend whose reads take read, and whose t-SNE kernel
// is long on a call of 8 points or more.
type slowIndex struct {
	accel.Backend
	read time.Duration
	long accel.Kernel
}

func (s slowIndex) Read(src accel.Buffer, first int, dst []byte) error {
	time.Sleep(s.read)
	return s.Backend.Read(src, first, dst)
}

func (s slowIndex) Kernel(op *accel.Op, mode accel.Mode) accel.Kernel {
	k := s.Backend.Kernel(op, mode)
	if op != accel.TSNEStep {
		return k
	}
	return func(ctx context.Context, c *accel.Call) error {
		if accel.TSNEStateOf(c).N() >= 8 {
			return s.long(ctx, c)
		}
		return k(ctx, c)
	}
}

// The modes the driver runs: one set of kernels per backend where fast
// mode is served from the strict kernels.
func TestKernelModes(t *testing.T) {
	for _, tc := range []struct {
		name         string
		modes        []accel.Mode
		fastIsStrict bool
		want         []accel.Mode
	}{
		{"strict kernels in every mode", accel.AllModes, true, []accel.Mode{accel.Strict}},
		{"strict and fast kernels", accel.AllModes, false, []accel.Mode{accel.Strict, accel.Fast}},
		{"fast and checked", []accel.Mode{accel.Fast, accel.Checked}, false, []accel.Mode{accel.Fast}},
		{"fast alone, said to be strict", []accel.Mode{accel.Fast}, true, []accel.Mode{accel.Fast}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := withModes{conformance.Spec(), tc.modes, tc.fastIsStrict}
			if got := kernelModes(t, b); !slices.Equal(got, tc.want) {
				t.Errorf("modes %v, want %v", got, tc.want)
			}
		})
	}
}

// withModes is a backend that says it serves modes.
type withModes struct {
	accel.Backend
	modes        []accel.Mode
	fastIsStrict bool
}

func (w withModes) Status() accel.Status {
	st := w.Backend.Status()
	st.Modes, st.FastIsStrict = w.modes, w.fastIsStrict
	return st
}

// Every operation has a long call, and every case's small call is valid.
func TestLongCases(t *testing.T) {
	for _, op := range accel.Ops() {
		if !slices.ContainsFunc(longCases, func(c longCase) bool { return c.op == op }) {
			t.Errorf("no long call of %s", op)
		}
	}
	s, err := accel.NewSession(conformance.Spec(), accel.Strict, accel.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range longCases {
		params := c.smallParams
		if params == nil {
			params = c.params
		}
		in, err := inputs(s, c.op, c.small, c.fill)
		if err != nil {
			t.Fatalf("%s/%s: %v", c.op, c.name, err)
		}
		out, _, err := s.Run(t.Context(), c.op, params, in...)
		if err != nil {
			t.Errorf("%s/%s: small call: %v", c.op, c.name, err)
		}
		if err := freeAll(s, append(in, out...)); err != nil {
			t.Fatal(err)
		}
	}
}
