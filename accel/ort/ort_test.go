package ort

import (
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance"
)

// backend opens the CPU backend, or fails: make deps fetches the library,
// so a missing one is a broken setup, not a reason to skip.
func backend(tb testing.TB, threads int) *Backend {
	tb.Helper()
	b := New(accel.Options{Threads: threads}, false)
	if st := b.Status(); !st.Available {
		tb.Fatalf("ort backend unavailable (run make deps): %s", st.Reason)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	b := backend(t, 0)
	t.Logf("device: %s", b.Status().Device)
	conformance.TestAll(t, b)
}

func TestConformanceOneThread(t *testing.T) {
	conformance.TestAll(t, backend(t, 1))
}

func TestStatus(t *testing.T) {
	st := backend(t, 3).Status()
	if st.Name != "ort" || st.Deterministic || st.Threads != 3 || !strings.Contains(st.Device, "ONNX Runtime 1.30") {
		t.Fatalf("status %+v", st)
	}
	reg := accel.NewRegistry(backend(t, 0))
	if _, err := reg.Select("ort", accel.Strict); err == nil {
		t.Fatal("strict mode selected ort, which does not implement the contract")
	}
	if _, err := reg.Select("ort", accel.Fast); err != nil {
		t.Fatalf("fast mode: %v", err)
	}
}

// TestCUDAProvider checks ort-cuda: where ONNX Runtime's CUDA execution
// provider is not installed, as on the machines this project tests on, it
// must say so, and the test skips with that reason.
func TestCUDAProvider(t *testing.T) {
	b := New(accel.Options{}, true)
	defer b.Close()
	st := b.Status()
	if !st.Available {
		if !strings.Contains(st.Reason, "libonnxruntime_providers_cuda.so") && !strings.Contains(st.Reason, "not found") {
			t.Fatalf("ort-cuda unavailable without saying why clearly: %q", st.Reason)
		}
		t.Skipf("ort-cuda unavailable: %s", st.Reason)
	}
	conformance.TestAll(t, b)
}
