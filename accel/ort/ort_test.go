package ort

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/internal/hostmem"
)

// backend opens the CPU backend, or fails: make deps fetches the library,
// so a missing one is a broken setup, not a reason to skip.
func backend(tb testing.TB, threads int) *Backend {
	tb.Helper()
	b := New(accel.Options{Threads: threads}, false)
	if st := b.Status(); !st.Available {
		tb.Fatalf("ort backend unavailable (run make deps): %s", st.Reason)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return b
}

func normals(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// hostData is a tensor's storage, shared with it.
func hostData(t *accel.Tensor) []float32 { return hostmem.F32(t) }

// read returns a tensor's data, or fails.
func read(tb testing.TB, s *accel.Session, t *accel.Tensor) []float32 {
	tb.Helper()
	v, err := s.Float32(t)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// input uploads random normal data of shape.
func input(tb testing.TB, s *accel.Session, rng *rand.Rand, shape ...int) *accel.Tensor {
	tb.Helper()
	t, err := s.FromFloat32(normals(rng, shapeLen(shape)), shape...)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

func TestStatus(t *testing.T) {
	st := backend(t, 3).Status()
	if st.Name != "ort" || st.Threads != 3 || !strings.Contains(st.Device, "ONNX Runtime 1.30") ||
		!slices.Equal(st.Modes, []accel.Mode{accel.Fast, accel.Checked}) {
		t.Fatalf("status %+v", st)
	}
	reg := accel.NewRegistry(backend(t, 0))
	for _, tc := range []struct {
		mode accel.Mode
		ok   bool
	}{{accel.Strict, false}, {accel.Fast, true}, {accel.Checked, true}} {
		_, err := reg.Select("ort", tc.mode)
		if (err == nil) != tc.ok {
			t.Errorf("select ort in %s mode: %v, want ok=%t", tc.mode, err, tc.ok)
		}
	}
}

// TestKernels checks that every operation has a kernel in fast and checked
// mode and none in strict mode, which ONNX Runtime cannot serve.
func TestKernels(t *testing.T) {
	b := backend(t, 1)
	for _, op := range accel.Ops() {
		for _, tc := range []struct {
			mode accel.Mode
			want bool
		}{{accel.Strict, false}, {accel.Fast, true}, {accel.Checked, true}} {
			if got := b.Kernel(op, tc.mode) != nil; got != tc.want {
				t.Errorf("%s in %s mode: kernel %t, want %t", op, tc.mode, got, tc.want)
			}
		}
	}
}

// TestUnavailable opens the backend on a folder without the library: it
// must say why, offer no kernels, and refuse sessions.
func TestUnavailable(t *testing.T) {
	dir := t.TempDir()
	b := New(accel.Options{Libraries: map[string]string{"ort": dir}}, false)
	defer b.Close()
	st := b.Status()
	if st.Available || !strings.Contains(st.Reason, dir) {
		t.Fatalf("status %+v, want unavailable naming %s", st, dir)
	}
	if b.Kernel(accel.MatMul, accel.Fast) != nil {
		t.Error("an unavailable backend offers a kernel")
	}
	if _, err := accel.NewSession(b, accel.Fast, accel.Limits{}, nil); !errors.Is(err, accel.ErrUnsupported) {
		t.Errorf("session on an unavailable backend: %v, want ErrUnsupported", err)
	}
	if _, err := b.RunONNX(t.Context(), "k", nil, nil, nil, nil); !errors.Is(err, accel.ErrDevice) {
		t.Errorf("RunONNX on an unavailable backend: %v, want ErrDevice", err)
	}
}

// TestConcurrentCalls shares the backend's cached sessions between
// goroutines, as concurrent guests do: every result must equal the one
// computed alone.
func TestConcurrentCalls(t *testing.T) {
	b := backend(t, 2)
	rng := rand.New(rand.NewPCG(1, 2))
	a, w := normals(rng, 256*128), normals(rng, 128*64)
	x, k := normals(rng, 4*8*32*32), normals(rng, 16*8*3*3)
	conv := conv2DParams(1, 1, 1, 1, 1, 1, 1, 1, 1)
	compute := func() ([]float32, []float32, error) {
		s, err := accel.NewSession(b, accel.Fast, accel.Limits{}, nil)
		if err != nil {
			return nil, nil, err
		}
		defer s.Close()
		ta, _ := s.FromFloat32(a, 256, 128)
		tw, _ := s.FromFloat32(w, 128, 64)
		tx, _ := s.FromFloat32(x, 4, 8, 32, 32)
		tk, _ := s.FromFloat32(k, 16, 8, 3, 3)
		mm, err := s.MatMul(t.Context(), ta, tw, accel.MatMulParams{})
		if err != nil {
			return nil, nil, err
		}
		cv, err := s.Conv2D(t.Context(), tx, tk, nil, conv)
		if err != nil {
			return nil, nil, err
		}
		mmData, _ := s.Float32(mm)
		cvData, err := s.Float32(cv)
		return mmData, cvData, err
	}
	wantMM, wantConv, err := compute()
	if err != nil {
		t.Fatal(err)
	}
	if st := b.CacheStats().Ops; st.Misses != 2 {
		t.Fatalf("the calls created %d sessions, want 2: they are meant for ONNX Runtime", st.Misses)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for range 10 {
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

// TestDeadline runs a matmul that takes seconds on ONNX Runtime under a
// short deadline: it must stop soon after the deadline, with an error that
// wraps it and names neither the backend twice nor the operation.
func TestDeadline(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 200 MB")
	}
	const n = 4096
	b := backend(t, 0)
	s := session(t, b)
	rng := rand.New(rand.NewPCG(3, 4))
	x, y := input(t, s, rng, n, n), input(t, s, rng, n, n)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.MatMul(ctx, x, y, accel.MatMulParams{})
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("matmul under a deadline: %v, want DeadlineExceeded", err)
	}
	if want := "ort: interrupted: context deadline exceeded"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	t.Logf("returned after %v", took)
	// Generous: the deadline is 100 ms, and ONNX Runtime stops between
	// the pieces of the call (ops.go).
	if took > 3*time.Second {
		t.Errorf("returned %v after the start, long after the deadline", took)
	}
}

// TestErrorMessages checks that kernel errors name neither the backend
// (the Session adds it) nor the operation (the caller adds it), on both
// kinds of path: ONNX Runtime's and the contract kernels'.
func TestErrorMessages(t *testing.T) {
	b := backend(t, 1)
	s := session(t, b)
	rng := rand.New(rand.NewPCG(5, 6))
	big, tiny := input(t, s, rng, 512, 512), input(t, s, rng, 2, 2)
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tc := range []struct {
		name string
		x    *accel.Tensor
	}{{"onnx runtime", big}, {"contract kernel", tiny}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.MatMul(cancelled, tc.x, tc.x, accel.MatMulParams{})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v, want context.Canceled", err)
			}
			if want := "ort: interrupted: context canceled"; err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
		})
	}
}

// usesORT runs f and reports whether it looked up an ONNX Runtime session.
func usesORT(b *Backend, f func()) bool {
	before := b.CacheStats().Ops
	f()
	after := b.CacheStats().Ops
	return after.Hits+after.Misses != before.Hits+before.Misses
}

// bitsEqual compares float32 slices bit for bit.
func bitsEqual(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

// TestSpecialValues checks the inputs ONNX Runtime's kernels get wrong:
// they must be served by the contract's kernels, bit for bit, while the
// same calls on ordinary values go to ONNX Runtime.
func TestSpecialValues(t *testing.T) {
	b := backend(t, 2)
	s := session(t, b)
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	pad1 := conv2DParams(1, 1, 1, 1, 1, 1, 1, 1, 1)
	pool := accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2}
	padPool := accel.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2, PadTop: 1, PadLeft: 1}
	for _, tc := range []struct {
		name    string
		op      *accel.Op
		params  any
		shapes  [][]int
		poison  int // the input given a special value
		value   float32
		special bool // whether ONNX Runtime gets it wrong
	}{
		{"conv padded, +Inf weight", accel.Conv2D, pad1, [][]int{{8, 8, 32, 32}, {16, 8, 3, 3}, {16}}, 1, inf, true},
		{"conv padded, NaN weight", accel.Conv2D, pad1, [][]int{{8, 8, 32, 32}, {16, 8, 3, 3}, nil}, 1, nan, true},
		{"conv unpadded, +Inf weight", accel.Conv2D, conv2DParams(1, 1, 0, 0, 0, 0, 1, 1, 1), [][]int{{8, 8, 32, 32}, {16, 8, 3, 3}, nil}, 1, inf, false},
		{"conv padded, +Inf input", accel.Conv2D, pad1, [][]int{{8, 8, 32, 32}, {16, 8, 3, 3}, nil}, 0, inf, false},
		{"maxpool, NaN", accel.MaxPool2D, pool, [][]int{{8, 16, 64, 64}}, 0, nan, true},
		{"maxpool padded, -Inf", accel.MaxPool2D, padPool, [][]int{{8, 16, 64, 64}}, 0, -inf, true},
		{"maxpool, +Inf", accel.MaxPool2D, pool, [][]int{{8, 16, 64, 64}}, 0, inf, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCall(t, s, rand.New(rand.NewPCG(7, 8)), tc.op, tc.params, tc.shapes...)
			data := hostData(c.In[tc.poison])
			for i := 0; i < len(data); i += 97 {
				data[i] = tc.value
			}
			// With padding 1, the first window holds data[0] alone: ONNX
			// Runtime lets the padding win over -Inf, giving -MaxFloat32.
			var ran bool
			got := runKernel(t, b.Kernel(tc.op, accel.Fast), c, &ran, b)
			if ran == tc.special {
				t.Errorf("ran on ONNX Runtime: %t, want %t", ran, !tc.special)
			}
			if !tc.special {
				return
			}
			want := runKernel(t, b.strict.Table()[tc.op], c, nil, b)
			if !bitsEqual(got, want) {
				t.Error("result differs from the contract kernel's")
			}
		})
	}
}

// runKernel runs k on c and returns a copy of its first output; with ran,
// it records whether the call used an ONNX Runtime session.
func runKernel(t *testing.T, k accel.Kernel, c *accel.Call, ran *bool, b *Backend) []float32 {
	t.Helper()
	var err error
	used := usesORT(b, func() { err = k(t.Context(), c) })
	if err != nil {
		t.Fatal(err)
	}
	if ran != nil {
		*ran = used
	}
	return slices.Clone(hostData(c.Out[0]))
}

// TestTSNEStep checks that tsne_step is the contract's kernel, bit for bit,
// without ONNX Runtime.
func TestTSNEStep(t *testing.T) {
	b := backend(t, 2)
	klORT, yORT, used := tsneOnce(t, b, b.Kernel(accel.TSNEStep, accel.Fast))
	if used {
		t.Error("tsne_step used an ONNX Runtime session")
	}
	klStrict, yStrict, _ := tsneOnce(t, b, b.strict.Table()[accel.TSNEStep])
	if math.Float32bits(klORT) != math.Float32bits(klStrict) || !bitsEqual(yORT, yStrict) {
		t.Errorf("tsne_step differs from the contract kernel's: KL %g vs %g", klORT, klStrict)
	}
}

// tsneOnce runs one t-SNE iteration with KL over 500 points with k.
func tsneOnce(t *testing.T, b *Backend, k accel.Kernel) (float32, []float32, bool) {
	const n, perRow = 500, 20
	rng := rand.New(rand.NewPCG(17, 19))
	rowPtr := make([]int32, n+1)
	var cols []int32
	var vals []float32
	for i := range n {
		for range perRow {
			cols = append(cols, int32(rng.IntN(n)))
			vals = append(vals, rng.Float32()/(n*perRow))
		}
		rowPtr[i+1] = int32(len(cols))
	}
	gains := make([]float32, 2*n)
	for i := range gains {
		gains[i] = 1
	}
	s := session(t, b)
	mustF := func(v []float32, shape ...int) *accel.Tensor {
		x, err := s.FromFloat32(v, shape...)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	mustI := func(v []int32) *accel.Tensor {
		x, err := s.FromInt32(v, len(v))
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	c := &accel.Call{Op: accel.TSNEStep, Mode: accel.Fast, WantScalar: true,
		Params: accel.TSNEParams{LearningRate: 200, Momentum: 0.5, Exaggeration: 4, MinGain: 0.01, ComputeKL: true},
		In: []*accel.Tensor{mustI(rowPtr), mustI(cols), mustF(vals, len(vals)),
			mustF(normals(rng, 2*n), n, 2), mustF(make([]float32, 2*n), n, 2), mustF(gains, n, 2)}}
	var err error
	used := usesORT(b, func() { err = k(t.Context(), c) })
	if err != nil {
		t.Fatal(err)
	}
	return c.Scalar, read(t, s, c.In[3]), used
}

// TestAdd checks add on both paths against the exact sum: one rounding,
// the same on every kernel.
func TestAdd(t *testing.T) {
	b := backend(t, 2)
	s := session(t, b)
	rng := rand.New(rand.NewPCG(9, 10))
	for _, shape := range [][]int{{3}, {4, 5}, {64, 64, 64}} {
		x, y := input(t, s, rng, shape...), input(t, s, rng, shape...)
		for _, k := range []struct {
			name   string
			kernel accel.Kernel
		}{{"onnx runtime", b.viaORT[accel.Add]}, {"routed", b.Kernel(accel.Add, accel.Fast)}} {
			c := &accel.Call{Op: accel.Add, Mode: accel.Fast, Params: accel.NoParams{}, In: []*accel.Tensor{x, y}}
			out, err := s.NewTensor(accel.F32, shape)
			if err != nil {
				t.Fatal(err)
			}
			c.Out = []*accel.Tensor{out}
			if err := k.kernel(t.Context(), c); err != nil {
				t.Fatalf("%s %s: %v", k.name, accel.ShapeString(shape), err)
			}
			xs, ys, got := hostData(x), hostData(y), hostData(out)
			for i := range got {
				if got[i] != xs[i]+ys[i] {
					t.Fatalf("%s %s: element %d is %g, want %g", k.name, accel.ShapeString(shape), i, got[i], xs[i]+ys[i])
				}
			}
		}
	}
}
