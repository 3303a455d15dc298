package strictcpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance"
	"github.com/accelnode/accelnode/accel/conformance/conformancetest"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// The tests here run every kernel level this CPU supports and compare its
// bits with the portable Go code and with the contract written out. Levels
// the CPU lacks are reported as skipped subtests: on an AVX2 machine the
// avx512 subtests skip, so run these tests on an AVX-512 machine too.

// levelByName returns the level called name if this CPU runs it, else nil.
func levelByName(name string) *kernels {
	for _, k := range kernelLevels {
		if k.name == name {
			return k
		}
	}
	return nil
}

// forEachLevel runs fn as a subtest for every level this architecture has,
// skipping those this CPU cannot run.
func forEachLevel(t *testing.T, fn func(t *testing.T, k *kernels)) {
	t.Helper()
	for _, name := range allKernelNames {
		t.Run(name, func(t *testing.T) {
			k := levelByName(name)
			if k == nil {
				t.Skipf("this CPU does not run the %s kernels", name)
			}
			fn(t, k)
		})
	}
}

func TestKernelLevels(t *testing.T) {
	var names []string
	for _, k := range kernelLevels {
		names = append(names, k.name)
		if !slices.Contains(allKernelNames, k.name) {
			t.Errorf("level %s is not in allKernelNames %v", k.name, allKernelNames)
		}
	}
	var skipped []string
	for _, name := range allKernelNames {
		if !slices.Contains(names, name) {
			skipped = append(skipped, name)
		}
	}
	t.Logf("kernel levels run here: %v; not supported by this CPU, so untested here: %v", names, skipped)
	if kernelLevels[len(kernelLevels)-1] != scalarKernels {
		t.Error("the portable kernels are not the last level")
	}
	if got := New(1).kern; got != kernelLevels[0] {
		t.Errorf("New uses %s, want the fastest level %s", got.name, kernelLevels[0].name)
	}
	for _, k := range kernelLevels {
		if k.micro != nil && (k.mr*k.nr > maxMicro || k.tileRows%k.mr != 0 || k.tileCols%k.nr != 0 || k.kc < 1) {
			t.Errorf("level %s: inconsistent matmul blocking %+v", k.name, k)
		}
	}
}

// TestNoFMA checks that no assembly file of the package uses a fused
// multiply-add, which would round a product and a sum once instead of twice.
func TestNoFMA(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(sourceDir(t), "*.s"))
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOARCH == "amd64" && len(files) == 0 {
		t.Fatal("no assembly files found")
	}
	// VFMADD…, VFMSUB…, VFNMADD…, VFNMSUB…, VFMADDSUB…, VFMSUBADD… and
	// the four-operand and V4 forms.
	fma := regexp.MustCompile(`(?i)\bV4?FN?M(ADD|SUB)`)
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(src), "\n") {
			if fma.MatchString(line) {
				t.Errorf("%s:%d uses a fused multiply-add: %s", f, i+1, strings.TrimSpace(line))
			}
		}
	}
}

// sourceDir returns the package's source directory: the working directory
// under go test, else the directory this file was compiled from. It skips t
// when neither holds the sources, as when a test binary runs elsewhere.
func sourceDir(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("kernels.go"); err == nil {
		return "."
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		if dir := filepath.Dir(file); dir != "" {
			if _, err := os.Stat(filepath.Join(dir, "kernels.go")); err == nil {
				return dir
			}
		}
	}
	t.Skip("the package's source files are not in reach of this test binary")
	return ""
}

// Special values for the inputs.
var specials = []float32{
	math.Float32frombits(0x7fc00000), // canonical NaN
	math.Float32frombits(0xffc01234), // NaN with sign and payload
	math.Float32frombits(0x7f800001), // signalling NaN
	inf, -inf, 0, negZ,
	math.Float32frombits(1),          // smallest subnormal
	math.Float32frombits(0x807fffff), // largest negative subnormal
	math.MaxFloat32, -math.MaxFloat32,
	1e-38, -3e38, 2e19, -1e-20,
}

// values returns n inputs of one kind: "uniform" in [-1, 1); "specials",
// uniform with a quarter replaced by special values; "tiny", whose products
// are subnormal or zero; "huge", whose products and sums overflow.
func values(r *rand.Rand, n int, kind string) []float32 {
	v := randF32(r, n)
	switch kind {
	case "specials":
		for i := range v {
			if r.IntN(4) == 0 {
				v[i] = specials[r.IntN(len(specials))]
			}
		}
	case "tiny":
		for i := range v {
			v[i] *= 1e-20
		}
	case "huge":
		for i := range v {
			v[i] *= 3e19
		}
	}
	return v
}

var valueKinds = []string{"uniform", "specials", "tiny", "huge"}

// shortKinds and shortThreads cut the level tests down in -short mode, which
// the race detector's run uses.
func shortKinds() []string {
	if testing.Short() {
		return []string{"specials"}
	}
	return valueKinds
}

func shortThreads() []int {
	if testing.Short() {
		return []int{1, 3}
	}
	return []int{1, 2, 3}
}

// matmulLevel returns the product on a backend with the level k and threads
// threads.
func matmulLevel(t *testing.T, k *kernels, threads int, a, b []float32, m, kk, n int, p accel.MatMulParams) []float32 {
	t.Helper()
	ashape, bshape := []int{m, kk}, []int{kk, n}
	if p.TransA {
		ashape = []int{kk, m}
	}
	if p.TransB {
		bshape = []int{n, kk}
	}
	s := newSessionKernels(t, threads, k)
	out, err := s.MatMul(bg, tensorF32(t, s, ashape, a), tensorF32(t, s, bshape, b), p)
	if err != nil {
		t.Fatalf("matmul %dx%dx%d %+v: %v", m, kk, n, p, err)
	}
	return readF32(t, s, out)
}

var transposes = []accel.MatMulParams{{}, {TransA: true}, {TransB: true}, {TransA: true, TransB: true}}

// sameUpToNaN reports whether got and want hold the same bits, except that
// any NaN matches any NaN: inside the kernels, before the outputs are
// canonicalised, a NaN's payload depends on the instruction.
func sameUpToNaN(got, want []float32) bool {
	return slices.EqualFunc(got, want, func(a, b float32) bool {
		return math.Float32bits(a) == math.Float32bits(b) || a != a && b != b
	})
}

// firstDiff describes the first element where got and want differ.
// firstDiffNaN does the same with any NaN matching any NaN.
func firstDiff(got, want []float32) string {
	for i := range want {
		if i >= len(got) || math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			g := float32(0)
			if i < len(got) {
				g = got[i]
			}
			return fmt.Sprintf("element %d: got %#08x (%g), want %#08x (%g)", i, math.Float32bits(g), g, math.Float32bits(want[i]), want[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(got), len(want))
}

func firstDiffNaN(got, want []float32) string {
	for i := range min(len(got), len(want)) {
		if !sameUpToNaN(got[i:i+1], want[i:i+1]) {
			return firstDiff(got[i:], want[i:]) + fmt.Sprintf(" (from element %d)", i)
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(got), len(want))
}

// TestMatMulLevels checks every level against the contract written out and
// against the portable code, on one thread and on several, over shapes that
// fill the micro-kernel's tiles and shapes that leave every kind of edge.
func TestMatMulLevels(t *testing.T) {
	shapes := [][3]int{
		{1, 1, 1}, {1, 7, 1}, {4, 1, 4}, {5, 3, 17}, {6, 16, 16}, {7, 9, 15}, {8, 32, 32}, {12, 5, 48},
		{13, 31, 47}, {17, 33, 65}, {6, 600, 31}, {37, 257, 129}, {96, 256, 256}, {97, 300, 257},
		{191, 513, 95}, {300, 1, 300}, {4, 1000, 33}, {2, 5, 1000}, {3, 40, 7}, {200, 3, 2}, {64, 129, 513},
	}
	forEachLevel(t, func(t *testing.T, k *kernels) {
		r := newRand(31)
		for _, d := range shapes {
			m, kk, n := d[0], d[1], d[2]
			for _, p := range transposes {
				for _, kind := range shortKinds() {
					a, b := values(r, m*kk, kind), values(r, kk*n, kind)
					want := naiveMatMul(a, b, m, kk, n, p)
					for _, threads := range shortThreads() {
						if got := matmulLevel(t, k, threads, a, b, m, kk, n, p); !sameBits(got, want) {
							t.Errorf("%v %+v %s, %d threads: differs from the contract: %s", d, p, kind, threads, firstDiff(got, want))
						}
					}
				}
			}
		}
	})
}

// TestMatMulGeometries runs the packing, tiling and edge handling of the
// SIMD matmul with the block sizes of every SIMD level, this CPU's or not,
// around a micro-kernel written in Go. With TestSimulatedKernels, which
// checks the AVX-512 micro-kernel itself, this covers the AVX-512 matmul on
// machines without AVX-512.
func TestMatMulGeometries(t *testing.T) {
	shapes := [][3]int{{4, 1, 4}, {7, 9, 15}, {8, 32, 32}, {13, 31, 47}, {17, 300, 65}, {97, 129, 257}, {100, 257, 300}, {300, 2, 33}}
	for _, arch := range archAllKernels() {
		if arch.micro == nil {
			continue
		}
		k := goMicroKernels(arch)
		t.Run(arch.name, func(t *testing.T) {
			r := newRand(38)
			for _, d := range shapes {
				m, kk, n := d[0], d[1], d[2]
				for _, p := range transposes {
					a, b := values(r, m*kk, "specials"), values(r, kk*n, "uniform")
					want := naiveMatMul(a, b, m, kk, n, p)
					for _, threads := range []int{1, 3} {
						if got := matmulLevel(t, k, threads, a, b, m, kk, n, p); !sameBits(got, want) {
							t.Errorf("%v %+v, %d threads: differs from the contract: %s", d, p, threads, firstDiff(got, want))
						}
					}
				}
			}
		})
	}
}

// goMicroKernels returns a level with the matmul geometry of arch and a
// micro-kernel written in Go; it has no SIMD taps.
func goMicroKernels(arch *kernels) *kernels {
	mr, nr := arch.mr, arch.nr
	micro := func(a, b, c *float32, kc, ldc int) {
		A, B := unsafe.Slice(a, kc*mr), unsafe.Slice(b, kc*nr)
		C := unsafe.Slice(c, (mr-1)*ldc+nr)
		for i := range mr {
			for j := range nr {
				s := C[i*ldc+j]
				for k := range kc {
					s = s + float32(A[k*mr+i]*B[k*nr+j])
				}
				C[i*ldc+j] = s
			}
		}
	}
	return &kernels{name: "go-" + arch.name, micro: micro, mr: mr, nr: nr, kc: arch.kc, tileRows: arch.tileRows, tileCols: arch.tileCols}
}

// TestMatMulLevelsLarge compares big products with the portable kernels, on
// one thread and on every core.
func TestMatMulLevelsLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large products in -short mode")
	}
	r := newRand(32)
	for _, c := range []struct {
		m, k, n int
		p       accel.MatMulParams
	}{
		{1000, 1000, 1000, accel.MatMulParams{TransB: true}},
		{1024, 1024, 1024, accel.MatMulParams{}},
		{515, 1037, 771, accel.MatMulParams{TransA: true}},
	} {
		t.Run(fmt.Sprintf("%dx%dx%d", c.m, c.k, c.n), func(t *testing.T) {
			// Sparse special values: a quarter would make every sum NaN.
			a, b := values(r, c.m*c.k, "uniform"), values(r, c.k*c.n, "uniform")
			for _, v := range [][]float32{a, b} {
				for i := range v {
					if r.IntN(3000) == 0 {
						v[i] = specials[r.IntN(len(specials))]
					}
				}
			}
			want := matmulLevel(t, scalarKernels, 0, a, b, c.m, c.k, c.n, c.p)
			nan := 0
			for _, v := range want {
				if v != v {
					nan++
				}
			}
			if nan == len(want) || nan == 0 {
				t.Errorf("%d of %d outputs NaN; the test wants some of each", nan, len(want))
			}
			forEachLevel(t, func(t *testing.T, k *kernels) {
				for _, threads := range []int{1, 0} {
					if got := matmulLevel(t, k, threads, a, b, c.m, c.k, c.n, c.p); !sameBits(got, want) {
						t.Errorf("%+v, %d threads: differs from the portable kernels: %s", c.p, threads, firstDiff(got, want))
					}
				}
			})
		})
	}
}

// TestMicroKernel checks each level's micro-kernel directly: it must continue
// the sums already in C in increasing k and touch nothing outside its block.
func TestMicroKernel(t *testing.T) {
	forEachLevel(t, func(t *testing.T, k *kernels) {
		if k.micro == nil {
			t.Skip("no micro-kernel at this level")
		}
		r := newRand(33)
		mr, nr := k.mr, k.nr
		for _, kc := range []int{1, 2, 3, 4, 5, 7, 8, 9, 255, 256, 257} {
			for _, kind := range valueKinds {
				a, b := values(r, kc*mr, kind), values(r, kc*nr, kind)
				ldc := nr + 3
				c := values(r, (mr+2)*ldc, kind) // a guard row above and below, three guard columns
				want := slices.Clone(c)
				for i := range mr {
					for j := range nr {
						s := want[(i+1)*ldc+j]
						for kk := range kc {
							s = s + float32(a[kk*mr+i]*b[kk*nr+j])
						}
						want[(i+1)*ldc+j] = s
					}
				}
				k.micro(&a[0], &b[0], &c[ldc], kc, ldc)
				if !sameUpToNaN(c, want) {
					t.Errorf("kc %d %s: %s", kc, kind, firstDiffNaN(c, want))
				}
			}
		}
	})
}

// TestTaps checks each level's convolution taps and axpy directly against the
// loop they stand for, over lengths around every block size, and that they
// write nothing past y.
func TestTaps(t *testing.T) {
	forEachLevel(t, func(t *testing.T, k *kernels) {
		if k.taps == nil {
			t.Skip("no SIMD taps at this level")
		}
		r := newRand(34)
		for n := 1; n <= 300; n += 1 + n/16 {
			for _, sh := range [][6]int{ // kw, kh, nc, dil, rs, cs
				{1, 1, 1, 1, 0, 0}, {3, 1, 1, 1, 0, 0}, {3, 3, 1, 1, 40, 0}, {3, 3, 2, 2, 50, 400},
				{2, 5, 3, 3, 23, 300}, {7, 1, 4, 1, 0, 17}, {1, 1, 5, 1, 0, 1},
			} {
				kw, kh, nc, dil, rs, cs := sh[0], sh[1], sh[2], sh[3], sh[4], sh[5]
				kind := valueKinds[r.IntN(len(valueKinds))]
				mode := tapsMode(r.IntN(3))
				x := values(r, (nc-1)*cs+(kh-1)*rs+(kw-1)*dil+n, kind)
				w := values(r, nc*kh*kw, kind)
				y := values(r, n+8, kind) // eight guard elements
				bias := values(r, 1, kind)[0]
				want := slices.Clone(y)
				for i := range n {
					s := want[i]
					if mode != tapsAdd {
						s = 0
					}
					for c := range nc {
						for rr := range kh {
							for tt := range kw {
								s = s + float32(x[i+c*cs+rr*rs+tt*dil]*w[(c*kh+rr)*kw+tt])
							}
						}
					}
					if mode == tapsOutBias {
						s = s + bias
					}
					if mode != tapsAdd {
						s = strictmath.Canon(s)
					}
					want[i] = s
				}
				k.taps(y[:n], x, dil, rs, cs, w, kw, kh, nc, mode, bias)
				// The outputs of tapsOut and tapsOutBias are final: their
				// NaNs must be canonical.
				if mode != tapsAdd && !sameBits(y[:n], want[:n]) {
					t.Errorf("taps n=%d %v mode %d %s: %s", n, sh, mode, kind, firstDiff(y, want))
				} else if !sameUpToNaN(y, want) {
					t.Errorf("taps n=%d %v mode %d %s: %s", n, sh, mode, kind, firstDiffNaN(y, want))
				}
				// axpy is one tap.
				y = values(r, n+8, kind)
				want = slices.Clone(y)
				for i := range n {
					want[i] = want[i] + float32(x[i]*w[0])
				}
				k.axpy(y[:n], x[:n], w[0])
				if !sameUpToNaN(y, want) {
					t.Errorf("axpy n=%d %s: %s", n, kind, firstDiffNaN(y, want))
				}
			}
		}
	})
}

// TestConformanceLevels runs the quick conformance corpus, against the
// contract's literal transcription, on every level, on every core and on
// one thread. accel/ref runs the whole corpus on the fastest level; the
// tests above compare every level with the portable code at length.
func TestConformanceLevels(t *testing.T) {
	if testing.Short() {
		t.Skip("in -short mode; accel/ref runs the conformance corpus on the default level")
	}
	forEachLevel(t, func(t *testing.T, k *kernels) {
		for _, threads := range []int{0, 1} {
			t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) {
				conformancetest.TestCases(t, newBackend(newWithKernels(threads, k)), conformance.Corpus(true))
			})
		}
	})
}

// levelConvCases add to convCases rows long enough for every block size of
// the taps, kernels wider than the input, and strides of 2 beside 1.
var levelConvCases = append(slices.Clone(convCases), []struct {
	xs, ws []int
	p      accel.Conv2DParams
	bias   bool
}{
	{[]int{2, 3, 9, 200}, []int{4, 3, 3, 3}, convParams(1, 1, 1, 1), true},
	{[]int{1, 2, 7, 131}, []int{3, 2, 5, 5}, convParams(1, 2, 1, 1), true},
	{[]int{1, 4, 8, 97}, []int{4, 1, 3, 3}, convParams(1, 1, 2, 4), false},
	{[]int{1, 2, 9, 70}, []int{2, 2, 3, 3}, convParams(2, 1, 1, 1), true},
	{[]int{1, 2, 9, 70}, []int{2, 2, 3, 2}, accel.Conv2DParams{StrideH: 2, StrideW: 1, PadTop: 2, PadLeft: 0, PadBottom: 1, PadRight: 3, DilationH: 2, DilationW: 3, Groups: 1}, true},
	{[]int{1, 1, 5, 6}, []int{2, 1, 3, 9}, convParams(1, 4, 1, 1), true},   // kernel wider than the input
	{[]int{1, 1, 4, 3}, []int{1, 1, 2, 11}, convParams(1, 5, 1, 1), false}, // and than the padded input's interior
	{[]int{3, 1, 28, 28}, []int{5, 1, 3, 3}, convParams(1, 1, 1, 1), true},
	{[]int{1, 8, 6, 56}, []int{8, 8, 1, 1}, convParams(1, 0, 1, 1), true},
	{[]int{1, 3, 4, 300}, []int{2, 3, 1, 65}, convParams(1, 0, 1, 1), true},
}...)

// TestConv2DLevels checks every level against the contract written out and
// against the portable code, on one thread and on several.
func TestConv2DLevels(t *testing.T) {
	forEachLevel(t, func(t *testing.T, k *kernels) {
		r := newRand(35)
		for i, c := range levelConvCases {
			for _, kind := range shortKinds() {
				x, w := values(r, product(c.xs), kind), values(r, product(c.ws), kind)
				if kind == "uniform" {
					// Infinite weights make any multiplication by
					// padding visible as NaN.
					w[0], w[len(w)-1] = inf, -inf
				}
				var bias []float32
				if c.bias {
					bias = values(r, c.ws[0], kind)
				}
				want, _ := naiveConv2D(x, w, bias, c.xs, c.ws, c.p)
				portable := convLevel(t, scalarKernels, 1, x, w, bias, c.xs, c.ws, c.p)
				if !sameBits(portable, want) {
					t.Fatalf("case %d %s: the portable kernels differ from the contract: %s", i, kind, firstDiff(portable, want))
				}
				for _, threads := range shortThreads() {
					if got := convLevel(t, k, threads, x, w, bias, c.xs, c.ws, c.p); !sameBits(got, want) {
						t.Errorf("case %d %v %v %+v %s, %d threads: differs from the contract: %s", i, c.xs, c.ws, c.p, kind, threads, firstDiff(got, want))
					}
				}
			}
		}
	})
}

// convLevel returns the convolution on a backend with the level k and
// threads threads.
func convLevel(t *testing.T, k *kernels, threads int, x, w, bias []float32, xs, ws []int, p accel.Conv2DParams) []float32 {
	t.Helper()
	s := newSessionKernels(t, threads, k)
	var bt *accel.Tensor
	if bias != nil {
		bt = tensorF32(t, s, []int{len(bias)}, bias)
	}
	out, err := s.Conv2D(bg, tensorF32(t, s, xs, x), tensorF32(t, s, ws, w), bt, p)
	if err != nil {
		t.Fatalf("conv2d %v %v %+v: %v", xs, ws, p, err)
	}
	return readF32(t, s, out)
}

// TestSubnormalsKept checks that products and sums below the normal range
// stay subnormal on every level, as the contract asks: nothing may have set
// flush-to-zero or denormals-are-zero.
func TestSubnormalsKept(t *testing.T) {
	forEachLevel(t, func(t *testing.T, k *kernels) {
		const m, kk, n = 12, 2, 40 // through the micro-kernel and the taps' blocks and tails
		a, b := make([]float32, m*kk), make([]float32, kk*n)
		for i := range a {
			a[i] = 1e-20
		}
		for i := range b {
			b[i] = 1e-20
		}
		want := float32(1e-40) + float32(1e-40) // each product is subnormal
		if math.Float32bits(want) == 0 || math.Float32bits(want) >= 1<<23 {
			t.Fatalf("the test's own arithmetic is not subnormal: %g", want)
		}
		for i, v := range matmulLevel(t, k, 1, a, b, m, kk, n, accel.MatMulParams{}) {
			if v != want {
				t.Fatalf("matmul output %d is %g, want the subnormal %g", i, v, want)
			}
		}
		x, w := make([]float32, 3*n), []float32{1e-20, 1e-20}
		for i := range x {
			x[i] = 1e-20
		}
		for i, v := range convLevel(t, k, 1, x, w, nil, []int{1, 1, 3, n}, []int{1, 1, 1, 2}, convParams(1, 0, 1, 1)) {
			if v != want {
				t.Fatalf("conv2d output %d is %g, want the subnormal %g", i, v, want)
			}
		}
	})
}
