//go:build !wasip1

// Package foreign tests the guests written in C and Rust (examples/c,
// examples/rust): each is built with Debian's toolchains
// (scripts/install-wasm-toolchains.sh), run on the node on ref and on ort,
// and must answer as the Go guests do. A test whose toolchain, data or
// host module is missing skips and says why.
package foreign

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/accelnode/accelnode/accel"
	_ "github.com/accelnode/accelnode/accel/ort"
	_ "github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/examples/internal/mnistnet"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/mnist"
	"github.com/accelnode/accelnode/models/onnx"
	"github.com/accelnode/accelnode/node"
)

// rustc is Debian's rustc, whose wasm32-wasi standard library
// libstd-rust-dev-wasm32 provides; a rustup toolchain first on PATH may
// lack that target.
const rustc = "/usr/bin/rustc"

// root is the module's root, where the guests' sources lie.
var root = func() string {
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..")
}()

var (
	buildMu sync.Mutex
	built   = map[string][]byte{}
)

// buildC builds a C guest with clang and wasi-libc, or skips.
func buildC(t *testing.T, src string) []byte {
	t.Helper()
	clang, err := exec.LookPath("clang")
	if err != nil {
		t.Skip("clang is missing (scripts/install-wasm-toolchains.sh installs it): ", err)
	}
	return build(t, src, func(out string) *exec.Cmd {
		return exec.Command(clang, "--target=wasm32-wasi", "-O2", "-Wall", "-Werror",
			"-I", filepath.Join(root, "hostfn", "guest", "c"), "-o", out, filepath.Join(root, src))
	})
}

// buildRust builds a Rust guest with Debian's rustc for wasm32-wasi, or
// skips.
func buildRust(t *testing.T, src string, flags ...string) []byte {
	t.Helper()
	if _, err := os.Stat(rustc); err != nil {
		t.Skip("Debian's rustc is missing (scripts/install-wasm-toolchains.sh installs it): ", err)
	}
	return build(t, src, func(out string) *exec.Cmd {
		args := []string{"--edition", "2021", "--target", "wasm32-wasi", "-O", "-C", "strip=debuginfo", "-D", "warnings"}
		return exec.Command(rustc, append(append(args, flags...), "-o", out, filepath.Join(root, src))...)
	})
}

// build runs the compiler once per source in this test binary. A compiler
// that lacks the wasm32-wasi target or its C library skips the test; any
// other failure fails it.
func build(t *testing.T, src string, cmd func(out string) *exec.Cmd) []byte {
	buildMu.Lock()
	defer buildMu.Unlock()
	if b, ok := built[src]; ok {
		return b
	}
	out := filepath.Join(t.TempDir(), "guest.wasm")
	c := cmd(out)
	msg, err := c.CombinedOutput()
	if err != nil {
		s := string(msg)
		for _, missing := range []string{"can't find crate for `std`", "can't find crate for `core`", "stdio.h' file not found",
			"unable to find library -lc", "cannot open crt1", "wasm-ld", "libclang_rt.builtins-wasm32.a"} {
			if strings.Contains(s, missing) {
				t.Skipf("%s cannot build for wasm32-wasi (scripts/install-wasm-toolchains.sh installs what it needs): %s", filepath.Base(c.Path), s)
			}
		}
		t.Fatalf("%s: %v\n%s", strings.Join(c.Args, " "), err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	built[src] = b
	return b
}

// digits returns a folder holding the uncompressed MNIST test files, which
// the C and Rust guests read (the Go guests read them too), or skips.
func digits(t *testing.T) string {
	t.Helper()
	dir, err := mnist.FindDir(".")
	if err != nil {
		t.Skip(err)
	}
	out := t.TempDir()
	for _, name := range []string{"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"} {
		if err := gunzip(filepath.Join(dir, name+".gz"), filepath.Join(out, name)); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func gunzip(src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	var b bytes.Buffer
	if _, err := io.Copy(&b, z); err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	return os.WriteFile(dst, b.Bytes(), 0o644)
}

// network writes the seed's MNIST network with He-initialised weights from
// seed: the weights as a tensors file (what examples/mnist-train writes)
// and the ONNX model examples/mnist/model makes of them. Untrained
// weights classify badly but deterministically, which is what a
// comparison of guests needs.
func network(t *testing.T, seed uint64) (weights, model string) {
	t.Helper()
	dir := t.TempDir()
	ts := mnistnet.Init(seed)
	var b bytes.Buffer
	if err := mnist.WriteTensors(&b, ts); err != nil {
		t.Fatal(err)
	}
	weights = filepath.Join(dir, "mnist-weights.ant")
	if err := os.WriteFile(weights, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := mnistnet.Model(ts)
	if err != nil {
		t.Fatal(err)
	}
	model = filepath.Join(dir, "mnist.onnx")
	if err := os.WriteFile(model, onnx.Marshal(m), 0o644); err != nil {
		t.Fatal(err)
	}
	return weights, model
}

// backends are the CPU backends the guests run on: ref in strict mode and
// ort in fast mode, the only mode it serves.
var backends = []struct {
	name string
	mode accel.Mode
}{
	{"ref", accel.Strict},
	{"ort", accel.Fast},
}

func open(t *testing.T, backend string, mode accel.Mode, models ...node.ModelFile) *node.Node {
	t.Helper()
	n, err := node.Open(context.Background(), node.Config{Backend: backend, Mode: mode, Require: []string{backend}, Models: models})
	if err != nil {
		if backend == "ort" {
			t.Skipf("ort: %v (make deps fetches ONNX Runtime into .deps)", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// errNoNN says that the node does not offer wasi_ephemeral_nn.
var errNoNN = errors.New("the node offers no wasi_ephemeral_nn module")

func invoke(t *testing.T, n *node.Node, wasm []byte, mounts []engine.Mount, args ...string) (string, error) {
	t.Helper()
	m, err := n.Compile(context.Background(), wasm)
	if err != nil {
		t.Fatal(err)
	}
	res, err := n.Invoke(context.Background(), m, node.Invocation{Args: args, Mounts: mounts})
	if err != nil && strings.Contains(err.Error(), "wasi_ephemeral_nn") {
		return "", fmt.Errorf("%w: %v", errNoNN, err)
	}
	if err != nil || res.ExitCode != 0 {
		return "", fmt.Errorf("%v, exit code %d\n%s%s", err, res.ExitCode, res.Stdout, res.Stderr)
	}
	return string(res.Stdout), nil
}

var (
	accuracyLine = regexp.MustCompile(`(?m)^accuracy [0-9.]+% \(\d+ of \d+\)`)
	confusion    = regexp.MustCompile(`(?ms)^confusion matrix.*?\n(?:(?: +\d+)+\n){11}`)
	predictions  = regexp.MustCompile(`(?m)^first predictions:(?: \d)+$`)
)

// answers is what must agree between guests: the accuracy line without
// the speed, and the confusion matrix.
func answers(t *testing.T, who, out string) string {
	t.Helper()
	a, c := accuracyLine.FindString(out), confusion.FindString(out)
	if a == "" || c == "" {
		t.Fatalf("%s printed no accuracy line or confusion matrix:\n%s", who, out)
	}
	return a + "\n" + c
}

// TestMNIST classifies test digits with the Go guest examples/mnist, the
// Rust guest examples/rust/mnist-accel (model_run, then single host calls
// on the same weights) and the C guest examples/c/mnist-wasinn (wasi-nn),
// on ref and on ort: each must print the Go guest's accuracy and confusion
// matrix, and the C and Rust guests the same first predictions. On ref,
// in strict mode, the host-call network is bit for bit the model's, so it
// must agree too; on ort, whose model runs in ONNX Runtime's own kernels,
// it may differ in a digit or two of a thousand.
func TestMNIST(t *testing.T) {
	data := digits(t)
	weights, model := network(t, 7)
	goWasm := guesttest.Build(t, "github.com/accelnode/accelnode/examples/mnist")
	rust := buildRust(t, "examples/rust/mnist-accel/main.rs")
	cGuest := buildC(t, "examples/c/mnist-wasinn/main.c")
	count := "1000"
	if testing.Short() {
		count = "300"
	}
	args := []string{"-data", "/data", "-n", count, "-batch", "100"}
	mounts := []engine.Mount{
		{HostPath: data, GuestPath: "/data", ReadOnly: true},
		{HostPath: filepath.Dir(weights), GuestPath: "/w", ReadOnly: true},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			n := open(t, b.name, b.mode, node.ModelFile{Name: "mnist", Path: model})
			goOut, err := invoke(t, n, goWasm, mounts, args...)
			if err != nil {
				t.Fatalf("go guest: %v", err)
			}
			want := answers(t, "the Go guest", goOut)
			t.Logf("go guest:\n%s", goOut)
			if strings.Count(want, "\n") < 12 {
				t.Fatalf("the Go guest's answers are short:\n%s", want)
			}

			rustOut, err := invoke(t, n, rust, mounts, args...)
			if err != nil {
				t.Fatalf("rust guest, model_run: %v", err)
			}
			if got := answers(t, "the Rust guest", rustOut); got != want {
				t.Errorf("the Rust guest (model_run) answers\n%s\nthe Go guest\n%s", got, want)
			}
			if first := strings.SplitN(rustOut, "\n", 2)[0]; first != strings.SplitN(goOut, "\n", 2)[0] {
				t.Errorf("the Rust guest's first line %q, the Go guest's %q", first, strings.SplitN(goOut, "\n", 2)[0])
			}
			wantPred := predictions.FindString(rustOut)
			if wantPred == "" {
				t.Fatalf("the Rust guest printed no predictions:\n%s", rustOut)
			}

			opsOut, err := invoke(t, n, rust, mounts, append(args, "-mode", "ops", "-weights", "/w/mnist-weights.ant")...)
			if err != nil {
				t.Fatalf("rust guest, host calls: %v", err)
			}
			t.Logf("rust guest, host calls:\n%s", opsOut)
			if b.mode == accel.Strict {
				if got := answers(t, "the Rust guest (host calls)", opsOut); got != want {
					t.Errorf("the Rust guest (host calls) answers\n%s\nthe Go guest (model_run)\n%s", got, want)
				}
				if got := predictions.FindString(opsOut); got != wantPred {
					t.Errorf("host calls predict %q, model_run %q", got, wantPred)
				}
			} else if d := differ(t, opsOut, rustOut); d > 2 {
				t.Errorf("on %s the host-call network and the model disagree on %d digits", b.name, d)
			}

			t.Run("wasi-nn", func(t *testing.T) {
				cOut, err := invoke(t, n, cGuest, mounts[:1], args...)
				if errors.Is(err, errNoNN) {
					t.Skip(err)
				}
				if err != nil {
					t.Fatalf("C guest (wasi-nn): %v", err)
				}
				t.Logf("C guest (wasi-nn):\n%s", cOut)
				if got := answers(t, "the C guest", cOut); got != want {
					t.Errorf("the C guest (wasi-nn) answers\n%s\nthe Go guest\n%s", got, want)
				}
				if got := predictions.FindString(cOut); got != wantPred {
					t.Errorf("the C guest predicts %q, the Rust guest %q", got, wantPred)
				}
			})
		})
	}
}

// differ counts the digits on which two outputs' confusion matrices
// disagree: half the sum of the absolute differences of their cells.
func differ(t *testing.T, a, b string) int {
	t.Helper()
	cells := func(s string) []int {
		var v []int
		for _, line := range strings.Split(confusion.FindString(s), "\n")[2:] {
			for _, f := range strings.Fields(line)[min(1, len(strings.Fields(line))):] {
				n, _ := strconv.Atoi(f)
				v = append(v, n)
			}
		}
		return v
	}
	x, y := cells(a), cells(b)
	if len(x) != 100 || len(y) != 100 {
		t.Fatalf("confusion matrices of %d and %d cells", len(x), len(y))
	}
	d := 0
	for i := range x {
		d += max(x[i]-y[i], y[i]-x[i])
	}
	return d / 2
}

// TestErrors checks the wrappers' errors: a model the node lacks makes the
// Rust guest exit 1 naming the model and the node's ENOENT sentence, and
// the C wasi-nn guest naming not_found.
func TestErrors(t *testing.T) {
	data := digits(t)
	rust := buildRust(t, "examples/rust/mnist-accel/main.rs")
	cGuest := buildC(t, "examples/c/mnist-wasinn/main.c")
	n := open(t, "ref", accel.Strict)
	mounts := []engine.Mount{{HostPath: data, GuestPath: "/data", ReadOnly: true}}
	for _, c := range []struct {
		name string
		wasm []byte
		want []string
	}{
		{"rust", rust, []string{`mnist-accel: model "absent": accel model_open: no such model: "absent"`}},
		{"c", cGuest, []string{`mnist-wasinn: load_by_name("absent"): not_found (wasi-nn error 8)`}},
	} {
		m, err := n.Compile(context.Background(), c.wasm)
		if err != nil {
			t.Fatal(err)
		}
		res, err := n.Invoke(context.Background(), m, node.Invocation{Mounts: mounts, Args: []string{"-n", "10", "-model", "absent"}})
		if err != nil && strings.Contains(err.Error(), "wasi_ephemeral_nn") {
			t.Logf("%s: %v", c.name, err)
			continue
		}
		if res.ExitCode != 1 {
			t.Errorf("%s: exit code %d (%v), want 1\n%s", c.name, res.ExitCode, err, res.Stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(string(res.Stderr), w) {
				t.Errorf("%s: stderr %q lacks %q", c.name, res.Stderr, w)
			}
		}
	}
}

// topFive is the WasmEdge examples' way of printing the five best classes.
var topFive = regexp.MustCompile(`(?m)^   ([1-5])\.\) \[(\d+)\]\((-?[0-9.]+)\)$`)

// TestClassifyMobileNet runs examples/c/wasinn-classify, written as
// WasmEdge's wasi-nn examples are, on the MobileNetV2 of testdata/models
// preloaded as "default", with the fixture's input image: on ort and on
// ref it must print WasmEdge's lines and five distinct classes in falling
// order whose scores are PyTorch's for them (the fixture's output), and
// are PyTorch's five highest, within the fixtures' tolerance.
func TestClassifyMobileNet(t *testing.T) {
	dir := filepath.Join(root, "testdata", "models")
	model := filepath.Join(dir, "mobilenet_v2.onnx")
	if _, err := os.Stat(model); err != nil {
		t.Skip("no MobileNetV2 to classify with: ", err)
	}
	f, err := os.Open(filepath.Join(dir, "mobilenet_v2.io.ant"))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := mnist.ReadTensors(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	var input, want []float32
	for _, x := range ts {
		switch x.Name {
		case "input":
			input = x.Data
		case "output":
			want = x.Data
		}
	}
	if len(input) != 3*224*224 || len(want) != 1000 {
		t.Fatalf("the fixture holds an input of %d values and an output of %d", len(input), len(want))
	}
	img := t.TempDir()
	raw := make([]byte, 0, 4*len(input))
	for _, v := range input {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
	}
	if err := os.WriteFile(filepath.Join(img, "input.f32"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	// The fixtures' tolerance (max|got − want| / max|want| within 1e-4),
	// plus the 5e-5 of printing four decimals.
	top, fifth := 0.0, 0.0
	sorted := slices.Clone(want)
	slices.Sort(sorted)
	for _, v := range want {
		top = max(top, math.Abs(float64(v)))
	}
	fifth = float64(sorted[len(sorted)-5])
	tol := 1e-4*top + 5e-5

	wasm := buildC(t, "examples/c/wasinn-classify/main.c")
	mounts := []engine.Mount{{HostPath: img, GuestPath: "/img", ReadOnly: true}}
	for _, b := range backends {
		n := open(t, b.name, b.mode, node.ModelFile{Name: "default", Path: model})
		out, err := invoke(t, n, wasm, mounts, "default", "/img/input.f32")
		if errors.Is(err, errNoNN) {
			t.Skip(err)
		}
		if err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
		t.Logf("%s:\n%s", b.name, out)
		for _, line := range []string{"Loaded graph into wasi-nn with ID: ", "Created wasi-nn execution context with ID: ",
			"Read input tensor, size in bytes: 602112\n", "Executed graph inference\n"} {
			if !strings.Contains(out, line) {
				t.Errorf("%s: no %q in\n%s", b.name, line, out)
			}
		}
		rows := topFive.FindAllStringSubmatch(out, -1)
		if len(rows) != 5 {
			t.Fatalf("%s: %d top-5 rows in\n%s", b.name, len(rows), out)
		}
		var classes []int
		prev := math.Inf(1)
		for i, r := range rows {
			score, _ := strconv.ParseFloat(r[3], 64)
			c, _ := strconv.Atoi(r[2])
			if r[1] != strconv.Itoa(i+1) || c >= 1000 || slices.Contains(classes, c) || score > prev {
				t.Fatalf("%s: row %q out of order or repeated", b.name, r[0])
			}
			if d := math.Abs(score - float64(want[c])); d > tol {
				t.Errorf("%s: class %d scores %g, PyTorch %g", b.name, c, score, want[c])
			}
			if score < fifth-tol {
				t.Errorf("%s: class %d (%g) is not among PyTorch's five best (the fifth scores %g)", b.name, c, score, fifth)
			}
			classes, prev = append(classes, c), score
		}
	}
}

// TestPublishedBindings runs a guest built against wasi-nn's published
// Rust bindings, unmodified (testdata/wasi-nn-rust, see its NOTICE), on
// ref: with the graph found by name and with the graph loaded from the
// model's bytes, it must predict what the Rust guest of the accel ABI
// predicts and count as many right answers.
func TestPublishedBindings(t *testing.T) {
	data := digits(t)
	_, model := network(t, 11)
	accelGuest := buildRust(t, "examples/rust/mnist-accel/main.rs")
	// The bindings declare more than the guest uses: no lints for them.
	published := buildRust(t, "examples/foreign/testdata/wasi-nn-rust/main.rs", "--cap-lints", "allow")
	n := open(t, "ref", accel.Strict, node.ModelFile{Name: "mnist", Path: model})
	mounts := []engine.Mount{
		{HostPath: data, GuestPath: "/data", ReadOnly: true},
		{HostPath: filepath.Dir(model), GuestPath: "/m", ReadOnly: true},
	}
	out, err := invoke(t, n, accelGuest, mounts, "-n", "200", "-batch", "100")
	if err != nil {
		t.Fatal(err)
	}
	wantPred := predictions.FindString(out)
	acc := regexp.MustCompile(`\((\d+) of 200\)`).FindStringSubmatch(out)
	if wantPred == "" || acc == nil {
		t.Fatalf("the accel guest printed no predictions or accuracy:\n%s", out)
	}
	for _, args := range [][]string{{"200"}, {"200", "/m/mnist.onnx"}} {
		got, err := invoke(t, n, published, mounts, args...)
		if errors.Is(err, errNoNN) {
			t.Skip(err)
		}
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if p := predictions.FindString(got); p != wantPred {
			t.Errorf("%v: the published bindings' guest predicts %q, the accel guest %q", args, p, wantPred)
		}
		if want := "right " + acc[1] + " of 200"; !strings.Contains(got, want) {
			t.Errorf("%v: printed %q, want %q", args, got, want)
		}
	}
}

// TestAccelHeader runs a C guest of hostfn/guest/c/accelnode.h
// (testdata/accel-c) on ref: every wrapper must give the results worked
// out here by hand, and a refused call its errno and the node's sentence.
func TestAccelHeader(t *testing.T) {
	wasm := buildC(t, "examples/foreign/testdata/accel-c/main.c")
	_, model := network(t, 5)
	n := open(t, "ref", accel.Strict, node.ModelFile{Name: "mnist", Path: model})
	out, err := invoke(t, n, wasm, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", out)
	// The 2×2 window sums of 0..15 less 12: -2 2 6 / 14 18 22 / 30 34 38,
	// the -2 a 0 after relu; their 2×2 maxima: 18 22 34 38. The softmax
	// of those plus (0, 0, 0, 0.001), worked out in float64.
	for _, want := range []string{
		"matmul 7 10 15 22\n",
		"pool rank 4 dims 1x1x2x2: 18 22 34 38\n",
		"softmax 0.000000 0.000000 0.017969 0.982031\n",
		"refused ESHAPE: matmul",
		"model_run probabilities sum 1.0000\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}
