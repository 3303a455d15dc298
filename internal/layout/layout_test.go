package layout

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/accelnode/accelnode"

type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
	Deps       []string
}

// packages lists the module's packages for the host, as go list sees them.
func packages(t *testing.T) map[string]pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs[strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")] = p
		// Reading the directory here lets go test's cache see a file
		// added to it; it cannot see what go list read.
		os.ReadDir(p.Dir)
	}
	return pkgs
}

// own returns the module's packages that p imports, by path in the module.
func own(p pkg) []string {
	var out []string
	for _, imp := range p.Imports {
		if rest, ok := strings.CutPrefix(imp, module+"/"); ok {
			out = append(out, rest)
		}
	}
	return out
}

func under(path string, dirs ...string) bool {
	for _, d := range dirs {
		if path == d || strings.HasPrefix(path, d+"/") {
			return true
		}
	}
	return false
}

// TestImportRules checks the directions of docs/architecture.md.
func TestImportRules(t *testing.T) {
	pkgs := packages(t)
	backends := []string{"accel/ref", "accel/ort", "accel/cuda"}
	for path, p := range pkgs {
		imports := own(p)
		for _, imp := range imports {
			var broken string
			switch {
			case under(path, "internal") && !under(imp, "internal"):
				broken = "internal/ is the ground floor: it imports nothing of the project above it"
			case path == "accel" || under(path, "accel/strictmath", "accel/internal/hostmem", "accel/internal/ortlib"):
				if !under(imp, "internal", "accel") || under(imp, "accel/ref", "accel/ort", "accel/cuda", "accel/checked", "accel/conformance") {
					broken = "the accel core knows no backend and nothing above it"
				}
			case slices.Contains(backends, path) && under(imp, backends...):
				broken = "backends do not import each other"
			case under(path, "accel") && !under(imp, "accel", "internal") && !strings.HasSuffix(path, "_test"):
				if !(path == "accel/ort" && imp == "models/onnx") {
					broken = "accel and its backends import nothing above them (the ONNX codec aside)"
				}
			case path == "engine" && imp != "internal/bytesize" && imp != "engine/instrument":
				broken = "engine is a generic wazero engine: it knows no host module"
			case path == "engine/instrument":
				// The load-time rewrite is the engine's own, below it.
				broken = "engine/instrument rewrites binaries and imports nothing of the node"
			case under(path, "hostfn", "models") && under(imp, "node", "cmd", "bench", "server"):
				broken = "hostfn and models sit below node"
			case path == "node" && under(imp, "cmd", "bench", "server", "accel/ref", "accel/ort", "accel/cuda"):
				broken = "node assembles what it is given: the program imports the backends it ships"
			case path == "store" && under(imp, "accel", "node", "server", "client", "engine", "hostfn", "models"):
				broken = "store keeps bytes and records: it knows no node"
			case path == "client" && under(imp, "node", "store", "accel", "engine", "hostfn", "models") || path == "client" && imp == "server":
				broken = "client speaks HTTP to a node: it shares the API's types (server/api) and nothing else"
			case path == "server/api" && !strings.HasSuffix(path, "_test") && imp != "":
				broken = "server/api is the API's types alone"
			case under(path, "server") && under(imp, "bench", "accel/ref", "accel/cuda"):
				broken = "server speaks HTTP: it runs guests through node"
			case under(imp, "cmd"):
				broken = "nothing imports a command"
			}
			if broken != "" {
				t.Errorf("%s imports %s: %s", path, imp, broken)
			}
		}
	}
}

// TestBinaryLinksNoTesting checks that the accelnode binary does not link
// package testing (which the conformance corpus once pulled in).
func TestBinaryLinksNoTesting(t *testing.T) {
	p, ok := packages(t)["cmd/node"]
	if !ok {
		t.Fatal("no cmd/node")
	}
	if slices.Contains(p.Deps, "testing") {
		t.Error("cmd/node depends on package testing")
	}
}

// TestNoEnvironmentBelowCmd checks that only the CLI reads environment
// variables: every other package gets its settings through node.Config or
// accel.Options. Guests, examples and test files are their own programs.
func TestNoEnvironmentBelowCmd(t *testing.T) {
	for path, p := range packages(t) {
		if under(path, "cmd", "examples") || strings.Contains(path, "testdata") || under(path, "bench/guest", "internal/guesttest") {
			continue
		}
		for _, f := range p.GoFiles {
			file, err := os.Open(filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(file)
			for line := 1; sc.Scan(); line++ {
				if text := sc.Text(); strings.Contains(text, "os.Getenv(") || strings.Contains(text, "os.LookupEnv(") || strings.Contains(text, "os.Environ(") {
					t.Errorf("%s/%s:%d reads the environment", path, f, line)
				}
			}
			file.Close()
		}
	}
}
