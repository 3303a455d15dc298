package cuda

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/accelnode/accelnode/accel"
)

// These tests need no GPU and run everywhere.

func TestSearchDirsOrder(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "targets", "x86_64-linux", "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CUDA_HOME", home)
	t.Setenv("CUDA_PATH", "")
	dirs := searchDirs("/first:/second::/first")
	want := []string{"/first", "/second", filepath.Join(home, "targets", "x86_64-linux", "lib"), filepath.Join(home, "lib64")}
	if len(dirs) < len(want) || !slices.Equal(dirs[:len(want)], want) {
		t.Fatalf("searchDirs = %v, want it to start with %v", dirs, want)
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
	dir := t.TempDir()
	t.Setenv("ACCELNODE_CUDA_DEVICE", "0")
	b := New(accel.Options{Libraries: map[string]string{"cuda": dir}})
	defer b.Close()
	st := b.Status()
	if st.Available {
		t.Skip("a GPU is present: the unavailable path is not reachable here")
	}
	if st.Reason == "" || st.Name != "cuda" {
		t.Fatalf("unavailable backend status %+v lacks a reason", st)
	}
	if _, err := b.Alloc(accel.F32, 4); err == nil {
		t.Fatal("Alloc on an unavailable backend succeeded")
	}
	t.Logf("reason: %s", st.Reason)

	t.Setenv("ACCELNODE_CUDA_DEVICE", "minus one")
	if st := New(accel.Options{}).Status(); st.Available || !strings.Contains(st.Reason, "ACCELNODE_CUDA_DEVICE") {
		t.Fatalf("bad device ordinal: status %+v", st)
	}
}

func TestDetectionTimeLimit(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	saved := detectFunc
	detectFunc = func([]string, int, bool) (*device, string, error) {
		<-release // a driver that never answers
		return nil, "", nil
	}
	defer func() { detectFunc = saved }()
	t.Setenv("ACCELNODE_CUDA_DETECT_TIMEOUT", "50ms")
	start := time.Now()
	st := New(accel.Options{}).Status()
	if time.Since(start) > 5*time.Second {
		t.Fatalf("New took %v with a 50ms limit", time.Since(start))
	}
	if st.Available || !strings.Contains(st.Reason, "did not finish within 50ms") {
		t.Fatalf("status %+v, want unavailable for a detection timeout", st)
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
