package cuda

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/accelnode/accelnode/accel"
)

// These tests need no GPU and run everywhere.

// testLibraries is where the tests look for the CUDA libraries: the
// directories the environment names, as the CLI reads them, since the
// package itself reads no environment.
func testLibraries() string {
	var places []string
	for _, env := range []string{"ACCELNODE_CUDA_PATH", "CUDA_HOME", "CUDA_PATH"} {
		if v := os.Getenv(env); v != "" {
			places = append(places, v)
		}
	}
	return strings.Join(places, ":")
}

// testOptions opens the GPU the environment names, as the CLI does.
func testOptions(tb testing.TB) accel.Options {
	tb.Helper()
	o := accel.Options{Libraries: map[string]string{"cuda": testLibraries()}}
	if v := os.Getenv("ACCELNODE_CUDA_DEVICE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			tb.Fatalf("ACCELNODE_CUDA_DEVICE: %v", err)
		}
		o.Device = n
	}
	return o
}

func TestSearchDirs(t *testing.T) {
	root := t.TempDir() // a CUDA installation
	target := filepath.Join(root, "targets", "x86_64-linux", "lib")
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	libDir := t.TempDir()
	lib := filepath.Join(libDir, "libcuda.so.1")
	if err := os.WriteFile(lib, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The package must not read these: the program passes them in places.
	t.Setenv("CUDA_HOME", "/from-env/home")
	t.Setenv("CUDA_PATH", "/from-env/path")
	t.Setenv("ACCELNODE_CUDA_PATH", "/from-env/accelnode")

	tests := []struct {
		name   string
		places string
		prefix []string
	}{
		{"directories in order, once", "/first:/second::/first", []string{
			"/first", "/first/lib64", "/first/lib", "/second", "/second/lib64", "/second/lib"}},
		{"installation root", root, []string{root, target, filepath.Join(root, "lib64"), filepath.Join(root, "lib")}},
		{"library file", lib, []string{libDir, filepath.Join(libDir, "lib64"), filepath.Join(libDir, "lib")}},
		{"nothing named", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dirs := searchDirs(tc.places)
			if len(dirs) < len(tc.prefix) || !slices.Equal(dirs[:len(tc.prefix)], tc.prefix) {
				t.Fatalf("searchDirs(%q) = %v, want it to start with %v", tc.places, dirs, tc.prefix)
			}
			for _, d := range dirs[len(tc.prefix):] {
				if !strings.HasPrefix(d, "/usr/local/cuda") {
					t.Errorf("searchDirs(%q) has %s after the named places, want only /usr/local/cuda* installations", tc.places, d)
				}
			}
			seen := map[string]bool{}
			for _, d := range dirs {
				if seen[d] {
					t.Errorf("searchDirs(%q) lists %s twice", tc.places, d)
				}
				seen[d] = true
			}
		})
	}
}

func TestOpenLibraryReportsWhereItLooked(t *testing.T) {
	dir := t.TempDir()
	_, err := openLibrary("the CUDA driver", []string{"libnothing-accelnode.so.1"}, []string{dir})
	if err == nil {
		t.Fatal("a missing library loaded")
	}
	for _, want := range []string{"the CUDA driver", "libnothing-accelnode.so.1", dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	// A file that is there but is no library is reported as such.
	bad := filepath.Join(dir, "libbroken-accelnode.so.1")
	if err := os.WriteFile(bad, []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = openLibrary("cuBLAS", []string{"libbroken-accelnode.so.1"}, []string{dir})
	if err == nil || !strings.Contains(err.Error(), "cannot be loaded") || !strings.Contains(err.Error(), bad) {
		t.Fatalf("broken library: error %v, want one naming %s as unloadable", err, bad)
	}
}

func TestUnavailableWithReason(t *testing.T) {
	b := New(accel.Options{Libraries: map[string]string{"cuda": t.TempDir()}})
	defer b.Close()
	st := b.Status()
	if st.Available {
		t.Skip("a GPU is present: the unavailable path is not reachable here")
	}
	if st.Reason == "" || st.Name != "cuda" || len(st.Modes) != 0 {
		t.Fatalf("unavailable backend status %+v: want a reason and no modes", st)
	}
	if _, err := b.Alloc(accel.F32, 4); !errors.Is(err, accel.ErrDevice) {
		t.Fatalf("Alloc on an unavailable backend: %v, want ErrDevice", err)
	}
	t.Logf("reason: %s", st.Reason)
}

// detectCall is what a detection was asked for.
type detectCall struct {
	dirs    []string
	ordinal int
	tf32    bool
}

// fakeDetect replaces detection for one test with fn.
func fakeDetect(t *testing.T, fn func(dirs []string, ordinal int, tf32 bool) (*device, string, error)) {
	saved := detectFunc
	detectFunc = fn
	t.Cleanup(func() { detectFunc = saved })
}

// TestOptionsChooseDetection checks that the GPU, TF32 and the library
// directories come from the options, never from the environment, which
// here says otherwise in every variable the node knows.
func TestOptionsChooseDetection(t *testing.T) {
	for name, v := range map[string]string{
		"ACCELNODE_CUDA_DEVICE": "7", "ACCELNODE_TF32": "on", "ACCELNODE_CUDA_PATH": "/from-env/accelnode",
		"CUDA_HOME": "/from-env/home", "CUDA_PATH": "/from-env/path", "ACCELNODE_CUDA_DETECT_TIMEOUT": "1h",
	} {
		t.Setenv(name, v)
	}
	tests := []struct {
		name      string
		opts      accel.Options
		ordinal   int
		tf32      bool
		firstDirs []string
	}{
		{"defaults", accel.Options{}, 0, false, nil},
		{"every option", accel.Options{Device: 2, TF32: true, Libraries: map[string]string{"cuda": "/opt/cuda-x/lib64:/opt/cudnn"}},
			2, true, []string{"/opt/cuda-x/lib64", "/opt/cuda-x/lib64/lib64", "/opt/cuda-x/lib64/lib", "/opt/cudnn"}},
		{"another backend's libraries", accel.Options{Libraries: map[string]string{"ort": "/opt/ort"}}, 0, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got detectCall
			calls := 0
			fakeDetect(t, func(dirs []string, ordinal int, tf32 bool) (*device, string, error) {
				got = detectCall{dirs, ordinal, tf32}
				calls++
				return nil, "", errors.New("no GPU in this test")
			})
			b := New(tc.opts)
			if calls != 1 {
				t.Fatalf("detection ran %d times, want once", calls)
			}
			if got.ordinal != tc.ordinal || got.tf32 != tc.tf32 || b.tf32 != tc.tf32 {
				t.Errorf("detection asked for GPU %d, TF32 %v (backend TF32 %v); want GPU %d, TF32 %v", got.ordinal, got.tf32, b.tf32, tc.ordinal, tc.tf32)
			}
			if len(got.dirs) < len(tc.firstDirs) || !slices.Equal(got.dirs[:len(tc.firstDirs)], tc.firstDirs) {
				t.Errorf("detection searched %v, want it to start with %v", got.dirs, tc.firstDirs)
			}
			for _, d := range got.dirs {
				if strings.HasPrefix(d, "/from-env") || strings.HasPrefix(d, "/opt/ort") {
					t.Errorf("detection searched %s, which only the environment or another backend names", d)
				}
			}
			if st := b.Status(); st.Available || st.Reason != "no GPU in this test" {
				t.Errorf("status %+v, want unavailable with the detection's error", st)
			}
		})
	}
}

func TestInvalidDeviceOrdinal(t *testing.T) {
	fakeDetect(t, func([]string, int, bool) (*device, string, error) {
		t.Error("detection ran for an invalid ordinal")
		return nil, "", errors.New("unreachable")
	})
	if st := New(accel.Options{Device: -1}).Status(); st.Available || !strings.Contains(st.Reason, "invalid GPU ordinal -1") {
		t.Fatalf("GPU -1: status %+v, want unavailable naming the ordinal", st)
	}
}

func TestDetectionTimeLimit(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	fakeDetect(t, func([]string, int, bool) (*device, string, error) {
		<-release // a driver that never answers
		return nil, "", errors.New("released")
	})
	t.Setenv("ACCELNODE_CUDA_DETECT_TIMEOUT", "1h") // not read: the option decides
	start := time.Now()
	st := New(accel.Options{DetectTimeout: 50 * time.Millisecond}).Status()
	if time.Since(start) > 5*time.Second {
		t.Fatalf("New took %v with a 50ms limit", time.Since(start))
	}
	if st.Available || !strings.Contains(st.Reason, "did not finish within 50ms") {
		t.Fatalf("status %+v, want unavailable for a detection timeout", st)
	}
}

// TestDetectionDefaultTimeLimit checks that a zero DetectTimeout waits the
// default, not what the environment says.
func TestDetectionDefaultTimeLimit(t *testing.T) {
	fakeDetect(t, func([]string, int, bool) (*device, string, error) {
		time.Sleep(50 * time.Millisecond) // slower than the environment's limit
		return nil, "", errors.New("slow but answered")
	})
	t.Setenv("ACCELNODE_CUDA_DETECT_TIMEOUT", "1ns")
	if st := New(accel.Options{}).Status(); st.Reason != "slow but answered" {
		t.Fatalf("status %+v, want the detection's own answer", st)
	}
}

func TestSizeClass(t *testing.T) {
	for _, c := range []struct{ in, want int64 }{
		{1, 256}, {256, 256}, {257, 320}, {320, 320}, {321, 384}, {512, 512}, {513, 640},
		{1 << 20, 1 << 20}, {1<<20 + 1, 1<<20 + 1<<18}, {3 << 29, 3 << 29},
	} {
		got := sizeClass(c.in)
		if got != c.want {
			t.Errorf("sizeClass(%d) = %d, want %d", c.in, got, c.want)
		}
		if got < c.in || (c.in > 256 && float64(got) > 1.25*float64(c.in)) {
			t.Errorf("sizeClass(%d) = %d wastes more than a quarter", c.in, got)
		}
	}
}

func TestKernelArgs(t *testing.T) {
	a := args(uint64(0xdeadbeef00), int32(-2), int64(-3), float32(1.5))
	if a.n != 4 {
		t.Fatalf("%d arguments, want 4", a.n)
	}
	read32 := func(i int) uint32 { return *(*uint32)(a.ptrs[i]) }
	if got := *(*uint64)(a.ptrs[0]); got != 0xdeadbeef00 {
		t.Errorf("pointer argument %#x", got)
	}
	if got := int32(read32(1)); got != -2 {
		t.Errorf("int32 argument %d", got)
	}
	if got := *(*int64)(a.ptrs[2]); got != -3 {
		t.Errorf("int64 argument %d", got)
	}
	if got := math.Float32frombits(read32(3)); got != 1.5 {
		t.Errorf("float32 argument %g", got)
	}
	for i := range a.n {
		if a.ptrs[i] != unsafe.Pointer(&a.values[i]) {
			t.Errorf("argument %d points outside its slot", i)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("an int argument (neither int32 nor int64) was accepted")
		}
	}()
	args(1)
}

func TestAllFinite(t *testing.T) {
	for _, c := range []struct {
		v    []float32
		want bool
	}{
		{[]float32{0, -1, 3e38, 1e-45}, true},
		{[]float32{1, float32(math.Inf(1))}, false},
		{[]float32{float32(math.Inf(-1))}, false},
		{[]float32{float32(math.NaN()), 1}, false},
		{nil, true},
	} {
		if got := allFinite(accel.EncodeFloat32(c.v)); got != c.want {
			t.Errorf("allFinite(%v) = %v, want %v", c.v, got, c.want)
		}
	}
}

func TestGridFor(t *testing.T) {
	for _, c := range []struct {
		work  int64
		block int
		want  uint32
	}{{0, 256, 1}, {1, 256, 1}, {256, 256, 1}, {257, 256, 2}, {1 << 40, 256, 1 << 20}} {
		if got := gridFor(c.work, c.block); got != c.want {
			t.Errorf("gridFor(%d, %d) = %d, want %d", c.work, c.block, got, c.want)
		}
	}
}
