package ort

import (
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance/conformancetest"
)

func TestConformance(t *testing.T) {
	b := backend(t, 0)
	t.Logf("device: %s", b.Status().Device)
	conformancetest.TestAll(t, b)
}

func TestConformanceOneThread(t *testing.T) {
	conformancetest.TestAll(t, backend(t, 1))
}

// TestConformanceDeadline runs the deadline driver: long calls, on ONNX
// Runtime in pieces and on the contract's kernels, stop soon after their
// deadline.
func TestConformanceDeadline(t *testing.T) { conformancetest.TestDeadline(t, backend(t, 0)) }

// TestCUDAProvider checks ort-cuda: where ONNX Runtime's CUDA execution
// provider is not installed it must say so, and the test skips with that
// reason.
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
	conformancetest.TestAll(t, b)
}
