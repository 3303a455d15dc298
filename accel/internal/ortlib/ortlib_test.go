package ortlib

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// depsLib is the library make deps fetches, found from the package's
// folder; a missing one is a broken setup, not a reason to skip.
func depsLib(t *testing.T) string {
	t.Helper()
	p, err := Find("")
	if err != nil {
		t.Fatalf("find the library (run make deps): %v", err)
	}
	return p
}

// fakeLib writes an empty file called name in a new folder.
func fakeLib(t *testing.T, name string) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, name)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

func TestFind(t *testing.T) {
	dirA, libA := fakeLib(t, LibName)
	dirB, libB := fakeLib(t, "libonnxruntime.so")
	empty := t.TempDir()
	for _, tc := range []struct {
		name, where string
		want        string // "" when Find must fail
		wantErr     string
	}{
		{"file", libB, libB, ""},
		{"folder", dirA, libA, ""},
		{"development link", dirB, libB, ""},
		{"list, first folder empty", empty + ":" + dirB + ":" + dirA, libB, ""},
		{"missing file", filepath.Join(empty, LibName), "", "no such file"},
		{"folder without it", empty, "", "not found"},
		{"list without it", empty + ":" + filepath.Join(empty, "nope"), "", "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Find(tc.where)
			if tc.want == "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Find(%q) = %q, %v; want an error saying %q", tc.where, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Find(%q) = %q, %v; want %q", tc.where, got, err, tc.want)
			}
		})
	}
}

// TestFindIgnoresEnvironment checks that the standard places are searched
// whatever the environment says: the caller passes the location.
func TestFindIgnoresEnvironment(t *testing.T) {
	want := depsLib(t)
	_, decoy := fakeLib(t, LibName)
	t.Setenv("ONNXRUNTIME_SHARED_LIBRARY_PATH", decoy)
	got, err := Find("")
	if err != nil || got != want {
		t.Fatalf("Find(\"\") = %q, %v with the variable set; want %q", got, err, want)
	}
	if filepath.Base(got) != LibName || !strings.Contains(got, ".deps") {
		t.Fatalf("Find(\"\") = %q, want .deps/%s", got, LibName)
	}
}

// TestLifecycle loads the library, refuses another, and shuts down for
// good. It is the package's only test that initialises the environment.
func TestLifecycle(t *testing.T) {
	lib := depsLib(t)
	if err := Init(lib); err != nil {
		t.Fatal(err)
	}
	if Loaded() != lib || !strings.HasPrefix(Version(), "1.30") {
		t.Fatalf("loaded %q, version %q; want %s, 1.30", Loaded(), Version(), lib)
	}
	if err := Init(lib); err != nil {
		t.Fatalf("second Init of the same library: %v", err)
	}
	_, other := fakeLib(t, LibName)
	if err := Init(other); err == nil || !strings.Contains(err.Error(), "already loaded") {
		t.Fatalf("Init of another library: %v, want already loaded", err)
	}
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
	if Loaded() != "" || Version() != "" {
		t.Fatalf("after Shutdown: loaded %q, version %q", Loaded(), Version())
	}
	if err := Init(lib); !errors.Is(err, ErrShutDown) {
		t.Fatalf("Init after Shutdown: %v, want ErrShutDown", err)
	}
	if err := Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}
