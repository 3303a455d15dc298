package cuda

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance/conformancetest"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/models"
	"github.com/accelnode/accelnode/models/onnx"
)

// These tests need an NVIDIA GPU and skip, with the reason, without one.

// gpu opens the backend on the GPU the environment names, or skips tb,
// with the reason, when it cannot serve here.
func gpu(tb testing.TB) *Backend {
	tb.Helper()
	b := New(testOptions(tb))
	if st := b.Status(); !st.Available {
		b.Close()
		tb.Skipf("cuda backend unavailable: %s", st.Reason)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}

// TestConformance runs the drivers in every mode the backend serves:
// strict bit for bit against the contract, fast and checked within bounds.
func TestConformance(t *testing.T) {
	b := gpu(t)
	t.Logf("device: %s", b.Status().Device)
	conformancetest.TestAll(t, b)
}

// TestDeadline runs the deadline driver on the strict kernels and on
// cuBLAS and cuDNN: long calls stop soon after their deadline.
func TestDeadline(t *testing.T) { conformancetest.TestDeadline(t, gpu(t)) }

// newSession opens a session on b in mode for one test.
func newSession(tb testing.TB, b accel.Backend, mode accel.Mode, limits accel.Limits) *accel.Session {
	tb.Helper()
	s, err := accel.NewSession(b, mode, limits, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// session is a strict-mode session on b for one test.
func session(tb testing.TB, b accel.Backend) *accel.Session {
	tb.Helper()
	return newSession(tb, b, accel.Strict, accel.Limits{})
}

func randomData(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = rng.Float32()*2 - 1
	}
	return v
}

// sameBits fails t at the first of up to five elements whose bits differ.
func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d elements, want %d", what, len(got), len(want))
	}
	bad := 0
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			if bad < 5 {
				t.Errorf("%s[%d] = %#08x (%g), want %#08x (%g)", what, i, math.Float32bits(got[i]), got[i], math.Float32bits(want[i]), want[i])
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d elements differ", what, bad, len(want))
	}
}

// matmulOn computes one product on backend be.
func matmulOn(t *testing.T, be accel.Backend, a, b []float32, ashape, bshape []int, p accel.MatMulParams) []float32 {
	t.Helper()
	s := session(t, be)
	ta, err := s.FromFloat32(a, ashape...)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := s.FromFloat32(b, bshape...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.MatMul(t.Context(), ta, tb, p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Float32(out)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestStrictMatMulTiles covers what the conformance tables' small shapes
// do not: the unchecked kernels (M and N multiples of 128, K of 16), long K,
// edge tiles and every transpose, bit for bit against ref.
func TestStrictMatMulTiles(t *testing.T) {
	b := gpu(t)
	oracle := ref.New(0)
	rng := rand.New(rand.NewPCG(7, 7))
	shapes := [][3]int{{128, 128, 8}, {256, 384, 528}, {1024, 1024, 1024}, {129, 255, 17}, {1000, 1000, 1000}, {1, 4096, 300}}
	for _, sh := range shapes {
		m, n, k := sh[0], sh[1], sh[2]
		for _, p := range []accel.MatMulParams{{}, {TransA: true}, {TransB: true}, {TransA: true, TransB: true}} {
			t.Run(fmt.Sprintf("%dx%dx%d/ta=%v/tb=%v", m, k, n, p.TransA, p.TransB), func(t *testing.T) {
				ashape, bshape := []int{m, k}, []int{k, n}
				if p.TransA {
					ashape = []int{k, m}
				}
				if p.TransB {
					bshape = []int{n, k}
				}
				a, bv := randomData(rng, m*k), randomData(rng, k*n)
				sameBits(t, "C", matmulOn(t, b, a, bv, ashape, bshape, p), matmulOn(t, oracle, a, bv, ashape, bshape, p))
			})
		}
	}
}

// tsneProblem is a t-SNE state over n points with about k neighbours each.
type tsneProblem struct {
	rowPtr, cols []int32
	vals, y      []float32
	u, g         []float32
}

func newTSNEProblem(rng *rand.Rand, n, k int) tsneProblem {
	var p tsneProblem
	p.rowPtr = make([]int32, n+1)
	for i := range n {
		for range k {
			p.cols = append(p.cols, int32(rng.IntN(n)))
			p.vals = append(p.vals, rng.Float32()/float32(n*k))
		}
		p.rowPtr[i+1] = int32(len(p.cols))
	}
	p.y = make([]float32, 2*n)
	for i := range p.y {
		p.y[i] = float32(rng.NormFloat64() * 1e-2)
	}
	p.u = make([]float32, 2*n)
	p.g = make([]float32, 2*n)
	for i := range p.g {
		p.g[i] = 1
	}
	return p
}

// step runs iters iterations of p on be and returns Y, U, G and the last KL.
func (p tsneProblem) run(t testing.TB, be accel.Backend, iters int, params accel.TSNEParams) ([]float32, []float32, []float32, float32) {
	s := session(t, be)
	n := len(p.rowPtr) - 1
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
	st := accel.TSNEState{RowPtr: mustI(p.rowPtr), Cols: mustI(p.cols), Vals: mustF(p.vals, len(p.vals)),
		Y: mustF(p.y, n, 2), Update: mustF(p.u, n, 2), Gains: mustF(p.g, n, 2)}
	var kl float32
	for range iters {
		var err error
		if kl, err = s.TSNEStep(context.Background(), st, params); err != nil {
			t.Fatal(err)
		}
	}
	read := func(x *accel.Tensor) []float32 {
		v, err := s.Float32(x)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return read(st.Y), read(st.Update), read(st.Gains), kl
}

// TestStrictTSNELarge runs several iterations over thousands of points, so
// the repulsion's shared-memory tiles and the tree sums' levels are all
// exercised, and compares every bit with ref.
func TestStrictTSNELarge(t *testing.T) {
	b := gpu(t)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{2, 127, 129, 3001} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			p := newTSNEProblem(rng, n, min(n, 30))
			params := accel.TSNEParams{LearningRate: 200, Momentum: 0.5, Exaggeration: 12, MinGain: 0.01, ComputeKL: true}
			gy, gu, gg, gkl := p.run(t, b, 3, params)
			wy, wu, wg, wkl := p.run(t, ref.New(0), 3, params)
			sameBits(t, "Y", gy, wy)
			sameBits(t, "U", gu, wu)
			sameBits(t, "G", gg, wg)
			sameBits(t, "KL", []float32{gkl}, []float32{wkl})
		})
	}
}

// TestReciprocalExhaustive checks the t-SNE kernel's fast reciprocal against
// correctly rounded division for every float in its domain [1, 2^126).
func TestReciprocalExhaustive(t *testing.T) {
	b := gpu(t)
	if b.dev.major != 9 || b.dev.minor != 0 {
		t.Skipf("the fast reciprocal is compiled for sm_90 only; this GPU is sm_%d%d", b.dev.major, b.dev.minor)
	}
	const src = `
extern "C" __global__ void rcp_check(unsigned int first, unsigned int count, unsigned int* bad, unsigned int* example) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += gridDim.x * blockDim.x) {
        float d = __uint_as_float(first + i);
        if (__float_as_uint(rcpInRange(d)) != __float_as_uint(__fdiv_rn(1.0f, d))) {
            atomicAdd(bad, 1u);
            *example = first + i;
        }
    }
}`
	first, last := math.Float32bits(1), math.Float32bits(0x1p126)
	bad, example := runCheckKernel(t, b, src, "rcp_check", first, last-first)
	if bad != 0 {
		t.Fatalf("%d reciprocals differ from 1/d, for example d = %g", bad, math.Float32frombits(example))
	}
}

// runCheckKernel compiles src after the strict kernels' source (so it can
// call their device functions) and launches name(first, count, &bad,
// &example) over count items, returning bad and example.
func runCheckKernel(t *testing.T, b *Backend, src, name string, first, count uint32) (uint32, uint32) {
	t.Helper()
	d := b.dev
	var bad, example uint32
	err := d.do(func() error {
		base, err := kernelSource(strictKernels)
		if err != nil {
			return err
		}
		image, err := d.libs.nvrtc.compile("check.cu", base+src, d.major, d.minor, true, compileOptions(strictKernels))
		if err != nil {
			return err
		}
		drv := d.libs.drv
		var mod, fn uintptr
		if err := drv.check("cuModuleLoadData", drv.cuModuleLoadData(&mod, unsafe.Pointer(&image[0]))); err != nil {
			return err
		}
		defer drv.cuModuleUnload(mod)
		if err := drv.check("cuModuleGetFunction", drv.cuModuleGetFunction(&fn, mod, name)); err != nil {
			return err
		}
		out, err := d.pool.alloc(drv, 8)
		if err != nil {
			return err
		}
		defer d.pool.release(drv, out)
		if err := drv.check("cuMemsetD32Async", drv.cuMemsetD32Async(out.ptr, 0, 2, d.stream)); err != nil {
			return err
		}
		if err := d.launch(name, fn, uint32(d.sms*16), 256, 0, args(int32(first), int32(count), out.ptr, out.ptr+4)); err != nil {
			return err
		}
		var words [2]uint32
		if err := drv.check("cuMemcpyDtoHAsync", drv.cuMemcpyDtoHAsync(unsafe.Pointer(&words[0]), out.ptr, 8, d.stream)); err != nil {
			return err
		}
		if err := d.sync(); err != nil {
			return err
		}
		bad, example = words[0], words[1]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return bad, example
}

// addOn computes a + b, and a + a through one tensor for both operands, on
// backend be in mode.
func addOn(t *testing.T, be accel.Backend, mode accel.Mode, a, b []float32) (sum, twice []float32) {
	t.Helper()
	s := newSession(t, be, mode, accel.Limits{})
	ta, err := s.FromFloat32(a, len(a))
	if err != nil {
		t.Fatal(err)
	}
	tb, err := s.FromFloat32(b, len(b))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		x, y *accel.Tensor
		dst  *[]float32
	}{{ta, tb, &sum}, {ta, ta, &twice}} {
		out, err := s.Add(t.Context(), c.x, c.y)
		if err != nil {
			t.Fatalf("%s mode: %v", mode, err)
		}
		if *c.dst, err = s.Float32(out); err != nil {
			t.Fatal(err)
		}
	}
	return sum, twice
}

// TestModesShareOneBackend serves every mode from one backend, the modes
// interleaved as concurrent guests would: add, which rounds once, gives
// ref's bits in every mode, special values and subnormals included, and a
// strict matmul run between fast ones still gives ref's bits.
func TestModesShareOneBackend(t *testing.T) {
	b := gpu(t)
	oracle := ref.New(1)
	rng := rand.New(rand.NewPCG(11, 12))
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	specials := []float32{nan, math.Float32frombits(0xffc01234), inf, -inf, 0, float32(math.Copysign(0, -1)),
		math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32, 0x1p-126, -0x1.fffffcp-127,
		math.MaxFloat32, -math.MaxFloat32, 1, -1, 0x1p-24}
	var x, y []float32
	for _, p := range specials {
		for _, q := range specials {
			x, y = append(x, p), append(y, q)
		}
	}
	x, y = append(x, randomData(rng, 4099)...), append(y, randomData(rng, 4099)...)
	wantSum, wantTwice := addOn(t, oracle, accel.Strict, x, y)

	const m, k, n = 67, 257, 45
	ma, mb := randomData(rng, m*k), randomData(rng, k*n)
	wantC := matmulOn(t, oracle, ma, mb, []int{m, k}, []int{k, n}, accel.MatMulParams{})
	for _, mode := range []accel.Mode{accel.Fast, accel.Strict, accel.Checked, accel.Strict, accel.Fast} {
		t.Run(mode.String(), func(t *testing.T) {
			sum, twice := addOn(t, b, mode, x, y)
			sameBits(t, "a+b", sum, wantSum)
			sameBits(t, "a+a", twice, wantTwice)
			s := newSession(t, b, mode, accel.Limits{})
			ta, err := s.FromFloat32(ma, m, k)
			if err != nil {
				t.Fatal(err)
			}
			tb, err := s.FromFloat32(mb, k, n)
			if err != nil {
				t.Fatal(err)
			}
			out, err := s.MatMul(t.Context(), ta, tb, accel.MatMulParams{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Float32(out)
			if err != nil {
				t.Fatal(err)
			}
			if mode == accel.Strict {
				sameBits(t, "C", got, wantC)
				return
			}
			// Fast: within checked mode's bound for a dot product of k terms.
			for i := range m {
				for j := range n {
					var scale float64
					for l := range k {
						scale += math.Abs(float64(ma[i*k+l]) * float64(mb[l*n+j]))
					}
					if diff := math.Abs(float64(got[i*n+j]) - float64(wantC[i*n+j])); diff > 2*k*0x1p-24*scale {
						t.Fatalf("C[%d,%d] = %g, %g from the contract's %g", i, j, got[i*n+j], diff, wantC[i*n+j])
					}
				}
			}
		})
	}
}

// TestConcurrentGuests runs matmuls from many goroutines, each with its own
// session and data, as concurrent guests do; every result must equal ref's.
func TestConcurrentGuests(t *testing.T) {
	b := gpu(t)
	oracle := ref.New(1)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			m, k, n := 50+g*13, 70+g, 90-g*3
			for range 5 {
				a, bv := randomData(rng, m*k), randomData(rng, k*n)
				got := matmulOn(t, b, a, bv, []int{m, k}, []int{k, n}, accel.MatMulParams{})
				want := matmulOn(t, oracle, a, bv, []int{m, k}, []int{k, n}, accel.MatMulParams{})
				sameBits(t, fmt.Sprintf("guest %d", g), got, want)
			}
		})
	}
	wg.Wait()
}

// TestOutOfDeviceMemory asks for more memory than the GPU has: the answer
// is accel.ErrOutOfMemory, and the device keeps serving.
func TestOutOfDeviceMemory(t *testing.T) {
	b := gpu(t)
	d := b.dev
	err := d.do(func() error {
		m, err := d.pool.alloc(d.libs.drv, int64(d.totalMem)*2)
		if err == nil {
			d.pool.release(d.libs.drv, m)
		}
		return err
	})
	if !errors.Is(err, accel.ErrOutOfMemory) {
		t.Fatalf("allocating twice the GPU's memory: %v, want ErrOutOfMemory", err)
	}
	// Fill the device with tensors until it refuses one, then free them. The
	// session's own limit is set above the GPU's memory, so the refusal is
	// the device's.
	s, err := accel.NewSession(b, accel.Strict, accel.Limits{MaxBytes: 1 << 50}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var refused error
	for i := 0; i < 1000 && refused == nil; i++ {
		_, refused = s.NewTensor(accel.F32, []int{accel.MaxElements})
	}
	s.Close()
	if !errors.Is(refused, accel.ErrOutOfMemory) || !strings.Contains(refused.Error(), "GPU has no room") {
		t.Fatalf("filling the GPU: %v, want the device's ErrOutOfMemory", refused)
	}
	t.Logf("full device: %v", refused)
	got := matmulOn(t, b, []float32{2}, []float32{3}, []int{1, 1}, []int{1, 1}, accel.MatMulParams{})
	if len(got) != 1 || got[0] != 6 {
		t.Fatalf("after running out of memory, 2·3 = %v", got)
	}
	if st := b.Status(); !st.Available {
		t.Fatalf("after running out of memory the backend is unavailable: %s", st.Reason)
	}
}

// TestPoolReuse checks that freed tensors return to the pool and are
// handed out again, and that the pool never caches more than its limit.
func TestPoolReuse(t *testing.T) {
	b := gpu(t)
	s := session(t, b)
	for range 50 {
		x, err := s.NewTensor(accel.F32, []int{1000, 1000})
		if err != nil {
			t.Fatal(err)
		}
		// Fresh tensors read as zero even when their memory is reused.
		v, err := s.Float32(x)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range v {
			if e != 0 {
				t.Fatalf("reused memory not zeroed: element %d is %g", i, e)
			}
		}
		if err := s.Write(x, 0, accel.EncodeFloat32([]float32{1, 2, 3})); err != nil {
			t.Fatal(err)
		}
		if err := s.Free(x); err != nil {
			t.Fatal(err)
		}
	}
	var live, cached, limit int64
	b.dev.do(func() error {
		live, cached, limit = b.dev.pool.live, b.dev.pool.cached, b.dev.pool.limit
		return nil
	})
	if live != 0 || cached != sizeClass(4e6) || cached > limit {
		t.Fatalf("pool after 50 alloc/free cycles: live %d, cached %d (limit %d), want 0 live and one cached block", live, cached, limit)
	}
	// Status reports the device's memory, and what tensors hold of it.
	x, err := s.NewTensor(accel.F32, []int{1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if st := b.Status(); st.MemoryTotal < 1<<30 || st.MemoryInUse != sizeClass(4<<20) {
		t.Errorf("status memory: total %d, in use %d; want the GPU's and %d", st.MemoryTotal, st.MemoryInUse, sizeClass(4<<20))
	}
	s.Free(x)
	if st := b.Status(); st.MemoryInUse != 0 {
		t.Errorf("status memory in use %d after the free, want 0", st.MemoryInUse)
	}
}

// TestKernelFault makes a kernel write to an invalid address, in a child
// process since a fault poisons the CUDA context for the whole process. The
// operation must fail with accel.ErrDevice naming the fault, the backend
// must then report itself unhealthy, and nothing may crash.
func TestKernelFault(t *testing.T) {
	if os.Getenv("ACCELNODE_CUDA_FAULT_CHILD") == "1" {
		faultChild(t)
		return
	}
	gpu(t).Close() // skip without a GPU
	cmd := exec.Command(os.Args[0], "-test.run=^TestKernelFault$", "-test.v")
	cmd.Env = append(os.Environ(), "ACCELNODE_CUDA_FAULT_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, want := range []string{"fault reported:", "CUDA_ERROR_ILLEGAL_ADDRESS", "unhealthy:", "--- PASS"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output lacks %q:\n%s", want, out)
		}
	}
}

func faultChild(t *testing.T) {
	b := gpu(t)
	const src = `extern "C" __global__ void poke(float* p) { p[threadIdx.x * 1048576] = 1.0f; }`
	err := b.run(t.Context(), "poke", nil, func(d *device) error {
		image, err := d.libs.nvrtc.compile("poke.cu", src, d.major, d.minor, true, nil)
		if err != nil {
			return err
		}
		var mod, fn uintptr
		if err := d.libs.drv.check("cuModuleLoadData", d.libs.drv.cuModuleLoadData(&mod, unsafe.Pointer(&image[0]))); err != nil {
			return err
		}
		if err := d.libs.drv.check("cuModuleGetFunction", d.libs.drv.cuModuleGetFunction(&fn, mod, "poke")); err != nil {
			return err
		}
		return d.launch("poke", fn, 1, 32, 0, args(uint64(0x10)))
	})
	// The Session and the caller name the backend and the operation; the
	// record of the fault, which later calls report, names the operation.
	if !errors.Is(err, accel.ErrDevice) || !strings.Contains(err.Error(), "CUDA_ERROR_ILLEGAL_ADDRESS") ||
		strings.HasPrefix(err.Error(), "cuda") || strings.HasPrefix(err.Error(), "poke") {
		t.Fatalf("faulting kernel: %v, want a device error naming the fault, not the backend or the operation", err)
	}
	t.Logf("fault reported: %v", err)
	st := b.Status()
	if st.Available {
		t.Fatal("backend still available after a sticky fault")
	}
	if !strings.Contains(st.Reason, "poke") {
		t.Errorf("unhealthy reason %q does not name the operation that faulted", st.Reason)
	}
	t.Logf("unhealthy: %s", st.Reason)
	if _, err := b.Alloc(accel.F32, 4); !errors.Is(err, accel.ErrDevice) {
		t.Fatalf("Alloc after the fault: %v, want ErrDevice", err)
	}
	if _, err := accel.NewSession(b, accel.Strict, accel.Limits{}, nil); !errors.Is(err, accel.ErrUnsupported) {
		t.Fatalf("a session on the unhealthy backend: %v, want ErrUnsupported", err)
	}
}

// TestModelStrictMatchesRef runs a whole ONNX model (a small CNN: conv,
// relu, maxpool, flatten, dense, softmax) op by op on the GPU in strict mode
// and on ref: every output bit must agree.
func TestModelStrictMatchesRef(t *testing.T) {
	b := gpu(t)
	rng := rand.New(rand.NewPCG(21, 22))
	weights := func(name string, dims ...int64) onnx.Tensor {
		n := int64(1)
		for _, d := range dims {
			n *= d
		}
		return onnx.Tensor{Name: name, Dims: dims, DataType: onnx.Float, Floats: randomData(rng, int(n))}
	}
	shape := onnx.Tensor{Name: "flat", Dims: []int64{2}, DataType: onnx.Int64, Int64s: []int64{0, -1}}
	m := &onnx.Model{IRVersion: onnx.IRVersion, OpsetVersion: onnx.Opset, Graph: onnx.Graph{
		Name: "cnn",
		Nodes: []onnx.Node{
			{OpType: "Conv", Inputs: []string{"x", "w1", "b1"}, Outputs: []string{"c"},
				Attrs: []onnx.Attribute{onnx.IntsAttr("pads", 1, 1, 1, 1)}},
			{OpType: "Relu", Inputs: []string{"c"}, Outputs: []string{"r"}},
			{OpType: "MaxPool", Inputs: []string{"r"}, Outputs: []string{"p"},
				Attrs: []onnx.Attribute{onnx.IntsAttr("kernel_shape", 2, 2), onnx.IntsAttr("strides", 2, 2)}},
			{OpType: "Reshape", Inputs: []string{"p", "flat"}, Outputs: []string{"f"}},
			{OpType: "Gemm", Inputs: []string{"f", "w2", "b2"}, Outputs: []string{"logits"}},
			{OpType: "Softmax", Inputs: []string{"logits"}, Outputs: []string{"probs"}, Attrs: []onnx.Attribute{onnx.IntAttr("axis", -1)}},
		},
		Inputs:       []onnx.ValueInfo{{Name: "x", ElemType: onnx.Float, Dims: []onnx.Dim{{Param: "batch"}, {Value: 3}, {Value: 16}, {Value: 16}}}},
		Outputs:      []onnx.ValueInfo{{Name: "probs", ElemType: onnx.Float, Dims: []onnx.Dim{{Param: "batch"}, {Value: 10}}}},
		Initializers: []onnx.Tensor{weights("w1", 8, 3, 3, 3), weights("b1", 8), weights("w2", 8*8*8, 10), weights("b2", 10), shape},
	}}
	model, err := models.NewRegistry().Add("cnn", onnx.Marshal(m))
	if err != nil {
		t.Fatal(err)
	}
	x := randomData(rng, 32*3*16*16)
	run := func(be accel.Backend) []float32 {
		s := session(t, be)
		in, err := s.FromFloat32(x, 32, 3, 16, 16)
		if err != nil {
			t.Fatal(err)
		}
		outs, err := model.Run(t.Context(), s, []*accel.Tensor{in})
		if err != nil {
			t.Fatalf("%s: %v", be.Name(), err)
		}
		got, err := s.Float32(outs[0])
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	sameBits(t, "probs", run(b), run(ref.New(0)))
}
