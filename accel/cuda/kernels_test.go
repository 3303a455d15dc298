package cuda

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// kernelNames lists every kernel the Go side launches, by variant.
func kernelNames(v variant) []string {
	names := []string{"conv2d_direct", "add_bias", "add", "clip", "global_avgpool", "unary", "binary", "transpose", "layer_norm", "concat", "slice", "gather", "relu", "maxpool2d", "softmax_rows",
		"tsne_repulse", "tsne_update", "treesum", "tsne_recentre"}
	if v == strictKernels {
		for _, t := range []string{"nn", "nt", "tn", "tt"} {
			names = append(names, "matmul_"+t, "matmul_"+t+"_edge")
		}
	}
	slices.Sort(names)
	return names
}

// TestKernelsCompile compiles both variants with NVRTC, which needs no GPU,
// and checks the PTX: every kernel the Go side launches is there, and the
// strict variant contracts no product into a sum, flushes nothing to zero
// and divides only with correctly rounded division. The one FMA use allowed
// is the t-SNE reciprocal's refinement (ops.cu, rcpInRange): two FMAs after
// each hardware reciprocal estimate, which compute the exact residual and
// give the correctly rounded 1/d.
func TestKernelsCompile(t *testing.T) {
	nvrtc, err := loadNVRTC(searchDirs(testLibraries()))
	if err != nil {
		t.Skipf("NVRTC is not installed, so the kernels cannot be compiled here: %v", err)
	}
	entry := regexp.MustCompile(`\.entry\s+(\w+)\(`)
	for _, v := range []variant{strictKernels, fastKernels} {
		t.Run(v.String(), func(t *testing.T) {
			src, err := kernelSource(v)
			if err != nil {
				t.Fatal(err)
			}
			ptx, err := nvrtc.compile("accelnode_"+v.String()+".cu", src, 9, 0, false, compileOptions(v))
			if err != nil {
				t.Fatalf("NVRTC %s: %v", nvrtc.version(), err)
			}
			text := string(ptx)
			var found []string
			for _, m := range entry.FindAllStringSubmatch(text, -1) {
				found = append(found, m[1])
			}
			for _, name := range kernelNames(v) {
				if !slices.Contains(found, name) {
					t.Errorf("kernel %s missing from the %s PTX (found %v)", name, v, found)
				}
			}
			if v != strictKernels {
				return
			}
			for _, banned := range []string{"mad.f32", "mad.rn.f32", "div.approx", "div.full", "ex2.approx", "lg2.approx", "sqrt.approx"} {
				if strings.Contains(text, banned) {
					line := text[strings.Index(text, banned):]
					line, _, _ = strings.Cut(line, "\n")
					t.Errorf("strict PTX contains %q: %s", banned, line)
				}
			}
			rcp := strings.Count(text, "rcp.approx.ftz.f32")
			if fma := strings.Count(text, "fma.rn.f32"); fma != 2*rcp {
				t.Errorf("strict PTX has %d fma.rn.f32 for %d reciprocal estimates: a product was contracted into a sum", fma, rcp)
			}
			if ftz := strings.Count(text, ".ftz."); ftz != rcp {
				t.Errorf("strict PTX has %d flush-to-zero instructions beyond the %d reciprocal estimates", ftz-rcp, rcp)
			}
		})
	}
}

// TestKernelCacheDir checks that compiled kernels are looked for in the
// directory the options name, and nowhere without one, with an
// NVRTC stand-in whose every compile fails.
func TestKernelCacheDir(t *testing.T) {
	nvrtc := &nvrtcAPI{
		nvrtcVersion:        func(major, minor *int32) int32 { *major, *minor = 12, 4; return 0 },
		nvrtcGetErrorString: func(int32) string { return "compiler unavailable in this test" },
		nvrtcCreateProgram: func(*uintptr, string, string, int32, unsafe.Pointer, unsafe.Pointer) int32 {
			return 1
		},
	}
	dir := t.TempDir()
	t.Setenv("ACCELNODE_CACHE_DIR", dir) // not read: only the options count
	tests := []struct {
		name   string
		set    string
		cached bool // whether the stored image is found
	}{
		{"directory", dir, true},
		{"none", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := "// " + t.Name() // a program of its own: the process keeps what it loads
			opts := compileOptions(strictKernels)
			file := filepath.Join(dir, "cuda", nvrtc.cacheKey(src, 9, 0, opts)+".bin")
			if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, []byte("machine code"), 0o644); err != nil {
				t.Fatal(err)
			}
			image, err := nvrtc.cachedCompile(tc.set, "test.cu", src, 9, 0, opts)
			switch {
			case tc.cached && (err != nil || string(image) != "machine code"):
				t.Fatalf("cachedCompile = %q, %v; want the stored image", image, err)
			case !tc.cached && err == nil:
				t.Fatalf("cachedCompile = %q without compiling; want the stand-in compiler's error", image)
			}
		})
	}
}

// TestArgsHoldBinary: binary's launch, three pointers, n, the function,
// the rank and three sets of eight dims, fits the argument array.
func TestArgsHoldBinary(t *testing.T) {
	vals := []any{uint64(1), uint64(2), uint64(3), int64(4), int32(1), int32(8)}
	for i := range 24 {
		vals = append(vals, int64(i))
	}
	a := args(vals...)
	if a.n != 30 || a.values[29] != 23 || a.values[4] != 1 {
		t.Errorf("args holds %d values (last %d), want 30 ending in 23", a.n, a.values[29])
	}
}
