package ort

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
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

// TestConcurrentCalls shares the backend's cached sessions between
// goroutines, as concurrent guests do: every result must equal the one
// computed alone.
func TestConcurrentCalls(t *testing.T) {
	b := backend(t, 2)
	rng := rand.New(rand.NewPCG(1, 2))
	a, w := normals(rng, 64*48), normals(rng, 48*32)
	x, k := normals(rng, 2*3*12*12), normals(rng, 4*3*3*3)
	conv := accel.Conv2DParams{StrideH: 1, StrideW: 1, PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1, DilationH: 1, DilationW: 1, Groups: 1}
	compute := func() ([]float32, []float32, error) {
		s := accel.NewSession(b, accel.Fast, accel.Limits{}, nil)
		defer s.Close()
		ta, _ := s.FromFloat32(a, 64, 48)
		tw, _ := s.FromFloat32(w, 48, 32)
		tx, _ := s.FromFloat32(x, 2, 3, 12, 12)
		tk, _ := s.FromFloat32(k, 4, 3, 3, 3)
		mm, err := result(s)(s.MatMul(t.Context(), ta, tw, accel.MatMulParams{}))
		if err != nil {
			return nil, nil, err
		}
		cv, err := result(s)(s.Conv2D(t.Context(), tx, tk, nil, conv))
		return mm, cv, err
	}
	wantMM, wantConv, err := compute()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for range 20 {
				mm, cv, err := compute()
				if err != nil {
					t.Errorf("goroutine %d: %v", g, err)
					return
				}
				if !slices.Equal(mm, wantMM) || !slices.Equal(cv, wantConv) {
					t.Errorf("goroutine %d: a concurrent result differs from the one computed alone", g)
					return
				}
			}
		})
	}
	wg.Wait()
}
