package ref

import (
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

func TestStatus(t *testing.T) {
	st := New(0).Status()
	if st.Name != "ref" || !st.Available || !st.Serves(accel.Strict) || st.Speed != 1 {
		t.Errorf("status %+v, want available ref serving strict mode with speed 1", st)
	}
	if !slices.Equal(st.Modes, accel.AllModes) || !st.FastIsStrict {
		t.Errorf("modes %v, fast is strict %v: want every mode from the strict kernels", st.Modes, st.FastIsStrict)
	}
	if p := NewPortable(0).Status(); p.Name != "ref-portable" || !p.Serves(accel.Strict) || p.Speed != 0 || !strings.Contains(p.Device, "scalar kernels") {
		t.Errorf("portable status %+v, want ref-portable serving strict mode with speed 0 on the scalar kernels", p)
	}
	if st.Threads != runtime.GOMAXPROCS(0) {
		t.Errorf("threads %d, want GOMAXPROCS %d", st.Threads, runtime.GOMAXPROCS(0))
	}
	if st.Device == "" {
		t.Error("empty device")
	}
	if got := New(3).Status().Threads; got != 3 {
		t.Errorf("New(3) has %d threads", got)
	}
	if New(1).Name() != "ref" {
		t.Error("name is not ref")
	}
}

// Every operation has a kernel in every mode.
func TestKernels(t *testing.T) {
	b := New(1)
	for _, op := range accel.Ops() {
		for _, mode := range accel.AllModes {
			if b.Kernel(op, mode) == nil {
				t.Errorf("no %s kernel in %s mode", op, mode)
			}
		}
	}
}

func TestRegistered(t *testing.T) {
	r := accel.Open(accel.Options{Threads: 2})
	defer r.Close()
	b, err := r.Select("ref", accel.Strict)
	if err != nil {
		t.Fatalf("select ref: %v", err)
	}
	if got := b.Status().Threads; got != 2 {
		t.Errorf("registered ref has %d threads, want 2", got)
	}
}
