package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/internal/guesttest"
)

const digestGuest = "github.com/accelnode/accelnode/hostfn/testdata/guests/digest"

// ortAvailable skips t unless ONNX Runtime can serve here.
func ortAvailable(t *testing.T) {
	t.Helper()
	reg := accel.Open(accel.Options{})
	defer reg.Close()
	if _, err := reg.Select("ort", accel.Fast); err != nil {
		t.Skipf("ort: %v (run make deps)", err)
	}
}

// offByOne is ref, claiming the contract, with matmul's element [0,0] one
// ulp off.
type offByOne struct{ *ref.Backend }

func (offByOne) Name() string { return "off-by-one" }

func (b offByOne) Status() accel.Status {
	st := b.Backend.Status()
	st.Name = "off-by-one"
	return st
}

// Kernel serves ref's kernels, with matmul's first output nudged up one
// ulp.
func (b offByOne) Kernel(op *accel.Op, mode accel.Mode) accel.Kernel {
	k := b.Backend.Kernel(op, mode)
	if op != accel.MatMul {
		return k
	}
	return func(ctx context.Context, c *accel.Call) error {
		if err := k(ctx, c); err != nil {
			return err
		}
		var word [4]byte
		if err := b.Read(c.Out[0].Buffer(), 0, word[:]); err != nil {
			return err
		}
		y := math.Float32frombits(binary.LittleEndian.Uint32(word[:]))
		if y == y {
			binary.LittleEndian.PutUint32(word[:], math.Float32bits(math.Nextafter32(y, float32(math.Inf(1)))))
		}
		return b.Write(c.Out[0].Buffer(), 0, word[:])
	}
}

// withOffByOne adds the off-by-one backend to the registry for t.
func withOffByOne(t *testing.T) {
	t.Cleanup(func() { openRegistry = accel.Open })
	openRegistry = func(o accel.Options) *accel.Registry {
		return accel.NewRegistry(ref.New(o.Threads), offByOne{ref.New(o.Threads)})
	}
}

// codeOf is the exit code a command's error carries, or -1.
func codeOf(err error) int {
	var exit exitError
	if errors.As(err, &exit) {
		return exit.code
	}
	return -1
}

// quickCases is the size of the quick corpus, and opNames the operations
// in the order of the reports' columns.
var (
	quickCases = len(conformance.Corpus(true))
	opNames    = func() []string {
		var names []string
		for _, op := range conformance.Ops() {
			names = append(names, op.Name)
		}
		return names
	}()
)

func TestConformanceStrictRef(t *testing.T) {
	stdout, stderr, err := accelnode(t, "conformance", "--determinism", "strict", "--backends", "ref", "--quick")
	if err != nil {
		t.Fatalf("%v\n%s%s", err, stdout, stderr)
	}
	for _, want := range []string{`OP `, `(?m)^matmul +ref `, `(?m)^tsne_step +ref `, fmt.Sprintf(`ref: %d of %d cases bit-exact with ref, max 0 ulp, 0 failures \(strict mode`, quickCases, quickCases)} {
		if !regexp.MustCompile(want).MatchString(stdout) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if stderr != "" {
		t.Errorf("stderr (no progress bar unless asked): %q", stderr)
	}
}

// Against the contract's transcription, ref is bit-exact too.
func TestConformanceReferenceSpec(t *testing.T) {
	stdout, _, err := accelnode(t, "conformance", "--determinism", "strict", "--backends", "ref", "--reference", "spec", "--quick", "--repeat", "1")
	if err != nil || !strings.Contains(stdout, fmt.Sprintf("ref: %d of %d cases bit-exact with spec, max 0 ulp, 0 failures", quickCases, quickCases)) {
		t.Errorf("error %v, output:\n%s", err, stdout)
	}
}

func TestConformanceRefOrt(t *testing.T) {
	ortAvailable(t)
	stdout, stderr, err := accelnode(t, "conformance", "--determinism", "fast", "--backends", "ref,ort", "--quick")
	if err != nil {
		t.Fatalf("%v\n%s%s", err, stdout, stderr)
	}
	t.Logf("\n%s", stdout)
	// ort's matmul is not bit-exact: its row shows a real distance.
	row := regexp.MustCompile(`(?m)^matmul +ort +42 +(\d+)/42 +[\d.]+% +([\d,]+) `).FindStringSubmatch(stdout)
	if row == nil || row[1] == "42" || row[2] == "0" {
		t.Errorf("no ort matmul row with a distance: %q\n%s", row, stdout)
	}
	if !regexp.MustCompile(`(?m)^relu +ort `).MatchString(stdout) || !strings.Contains(stdout, "(fast mode") {
		t.Errorf("output:\n%s", stdout)
	}
}

func TestConformanceJSON(t *testing.T) {
	ortAvailable(t)
	stdout, _, err := accelnode(t, "conformance", "--determinism", "fast", "--backends", "ref,ort", "--quick", "--repeat", "2", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Mode    string                    `json:"mode"`
		Machine map[string]any            `json:"machine"`
		Results []map[string]any          `json:"results"`
		Summary map[string]map[string]any `json:"summary"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	if rep.Mode != "fast" || rep.Machine["cpus"] == nil || len(rep.Results) != 2*quickCases {
		t.Fatalf("mode %q, machine %v, %d results", rep.Mode, rep.Machine, len(rep.Results))
	}
	fields := []string{"op", "backend", "case", "mode", "bit_exact", "share_identical", "max_ulp", "mean_ulp",
		"nan_inf_mismatches", "run_to_run_stable", "thread_invariant", "batch_invariant"}
	var ortMax float64
	for _, r := range rep.Results {
		for _, f := range fields {
			if _, ok := r[f]; !ok {
				t.Fatalf("result lacks %q: %v", f, r)
			}
		}
		if r["backend"] == "ref" && (r["bit_exact"] != true || r["run_to_run_stable"] != true || r["thread_invariant"] != true) {
			t.Errorf("ref: %v", r)
		}
		if r["backend"] == "ort" && r["op"] == "matmul" {
			ortMax = max(ortMax, r["max_ulp"].(float64))
		}
	}
	if ortMax == 0 {
		t.Error("ort's matmul agrees with ref bit for bit everywhere")
	}
	for _, name := range []string{"ref", "ort"} {
		s := rep.Summary[name]
		for _, f := range []string{"cases", "bit_exact_cases", "max_ulp", "failures"} {
			if _, ok := s[f]; !ok {
				t.Errorf("summary of %s lacks %q: %v", name, f, s)
			}
		}
	}
	if rep.Summary["ref"]["bit_exact_cases"] != float64(quickCases) || rep.Summary["ort"]["failures"] != float64(0) {
		t.Errorf("summary %v", rep.Summary)
	}
}

func TestConformanceMarkdown(t *testing.T) {
	stdout, _, err := accelnode(t, "conformance", "--determinism", "fast", "--backends", "ref,ort", "--quick", "--repeat", "1", "--format", "markdown")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| backend | " + strings.Join(opNames, " | ") + " |\n| --- |",
		"| ref | bit-exact (42/42) | bit-exact (45/45) |",
		"\n| ort | ",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("markdown lacks %q:\n%s", want, stdout)
		}
	}
}

// Strict mode skips ort, which does not claim the contract, and passes.
func TestConformanceStrictSkipsOrt(t *testing.T) {
	stdout, _, err := accelnode(t, "conformance", "--determinism", "strict", "--backends", "ort,ref", "--quick", "--repeat", "1")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^matmul +ort +skipped +-`).MatchString(stdout) || !strings.Contains(stdout, "ort: skipped: ") {
		t.Errorf("output:\n%s", stdout)
	}
}

// A backend that claims the contract and is one ulp off in one element of
// matmul fails strict mode with exit code 1, and only reports in fast mode.
func TestConformanceStrictFails(t *testing.T) {
	withOffByOne(t)
	stdout, stderr, err := accelnode(t, "conformance", "--determinism", "strict", "--quick", "--format", "json")
	if codeOf(err) != 1 {
		t.Fatalf("error %v, want exit code 1\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "matmul/off-by-one/") || !strings.Contains(stderr, "max 1 ulp") {
		t.Errorf("stderr:\n%s", stderr)
	}
	var rep struct {
		Summary map[string]struct {
			MaxULP   int64 `json:"max_ulp"`
			Failures int   `json:"failures"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if s := rep.Summary["off-by-one"]; s.MaxULP != 1 || s.Failures == 0 || rep.Summary["ref"].Failures != 0 {
		t.Errorf("summary %+v", rep.Summary)
	}

	stdout, _, err = accelnode(t, "conformance", "--determinism", "fast", "--quick", "--repeat", "1")
	if err != nil {
		t.Fatalf("fast mode: %v\n%s", err, stdout)
	}
	if !regexp.MustCompile(`(?m)^matmul +off-by-one +42 +\d+/42 +[\d.]+% +1 `).MatchString(stdout) {
		t.Errorf("output:\n%s", stdout)
	}
}

func TestConformanceGuest(t *testing.T) {
	digest := guesttest.Path(t, digestGuest)
	hash := regexp.MustCompile(`^[0-9a-f]{64}$`)

	t.Run("fast", func(t *testing.T) {
		ortAvailable(t)
		stdout, _, err := accelnode(t, "conformance", "--determinism", "fast", "--backends", "ref,ort", "--quick", "--repeat", "1", "--format", "json", "--guest", digest)
		if err != nil {
			t.Fatal(err)
		}
		var rep struct {
			Guest struct {
				Runs []struct {
					Backend string `json:"backend"`
					SHA256  string `json:"stdout_sha256"`
					Error   string `json:"error"`
				} `json:"runs"`
				Agree bool `json:"agree"`
			} `json:"guest"`
		}
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatal(err)
		}
		runs := rep.Guest.Runs
		if len(runs) != 2 || runs[0].Backend != "ref" || runs[1].Backend != "ort" {
			t.Fatalf("runs %+v", runs)
		}
		for _, r := range runs {
			if !hash.MatchString(r.SHA256) || r.Error != "" {
				t.Errorf("run %+v", r)
			}
		}
		t.Logf("ref %s, ort %s, agree %v", runs[0].SHA256, runs[1].SHA256, rep.Guest.Agree)
	})

	t.Run("strict", func(t *testing.T) {
		stdout, stderr, err := accelnode(t, "conformance", "--determinism", "strict", "--backends", "ref", "--quick", "--repeat", "1", "--guest", digest)
		if err != nil {
			t.Fatalf("%v\n%s%s", err, stdout, stderr)
		}
		if !regexp.MustCompile(`(?m)^  ref: stdout sha256 [0-9a-f]{64}$`).MatchString(stdout) || !strings.Contains(stdout, "every backend printed the same output") {
			t.Errorf("output:\n%s", stdout)
		}
	})

	t.Run("strict differs", func(t *testing.T) {
		withOffByOne(t)
		stdout, _, err := accelnode(t, "conformance", "--determinism", "strict", "--quick", "--repeat", "1", "--guest", digest)
		if codeOf(err) != 1 {
			t.Fatalf("error %v, want exit code 1\n%s", err, stdout)
		}
		if !strings.Contains(stdout, "off-by-one: stdout sha256") || !strings.Contains(stdout, "guest: the backends' outputs differ") {
			t.Errorf("output:\n%s", stdout)
		}
	})

	t.Run("failing guest", func(t *testing.T) {
		matmul := guesttest.Path(t, "github.com/accelnode/accelnode/examples/matmul")
		stdout, _, err := accelnode(t, "conformance", "--backends", "ref", "--quick", "--repeat", "1", "--guest", matmul, "--", "-no-such-flag")
		if codeOf(err) != 1 || !strings.Contains(stdout, "ref: error: exit code 2") {
			t.Errorf("error %v, want exit code 1\n%s", err, stdout)
		}
	})
}

func TestConformanceUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--determinism", "loose"}, "unknown determinism mode"},
		{[]string{"--determinism", "checked"}, "strict or fast mode"},
		{[]string{"--format", "xml"}, "unknown format"},
		{[]string{"--backends", "ref,nope"}, `unknown backend "nope"`},
		{[]string{"--repeat", "0"}, "--repeat: 0 is not between 1 and 100"},
		{[]string{"--repeat", "1000"}, "--repeat: 1000 is not between 1 and 100"},
		{[]string{"stray"}, "unexpected arguments"},
		{[]string{"--reference", "nope"}, `unknown reference backend "nope"`},
		{[]string{"--guest", "/nonexistent.wasm"}, "no such file"},
	} {
		_, _, err := accelnode(t, append([]string{"conformance", "--quick"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

func TestConformanceProgress(t *testing.T) {
	_, stderr, err := accelnode(t, "conformance", "--backends", "ref", "--quick", "--repeat", "1", "--progress")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "\r[") || !strings.Contains(stderr, fmt.Sprintf("/%d matmul/ref/tiny-1x1x1/uniform", quickCases)) {
		t.Errorf("stderr %q", stderr[:min(len(stderr), 300)])
	}
}

// TestConformanceStrictCPU runs the whole corpus in strict mode on ref's
// SIMD kernels and on its portable Go loops: every output must be the
// contract's bits (against the literal transcription), so the command exits 0.
func TestConformanceStrictCPU(t *testing.T) {
	stdout, stderr, err := accelnode(t, "conformance", "--determinism", "strict", "--backends", "ref,ref-portable", "--reference", "spec")
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, stdout, stderr)
	}
	all := len(conformance.Corpus(false))
	for _, want := range []string{fmt.Sprintf("ref: %d of %d cases bit-exact", all, all), fmt.Sprintf("ref-portable: %d of %d cases bit-exact", all, all)} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
}

// TestConformanceAllSkippedFails checks that a run that measured nothing,
// every backend asked for being skipped, does not pass.
func TestConformanceAllSkippedFails(t *testing.T) {
	ortAvailable(t)
	stdout, stderr, err := accelnode(t, "conformance", "--determinism", "strict", "--backends", "ort", "--quick", "--repeat", "1")
	if codeOf(err) != 1 {
		t.Fatalf("error %v, want exit code 1\n%s%s", err, stdout, stderr)
	}
	if !strings.Contains(stdout, "no backend was measured") {
		t.Errorf("output does not say nothing was measured:\n%s", stdout)
	}
}

// TestConformanceReadsDeterminism checks that conformance takes its mode
// from ACCELNODE_DETERMINISM, as its help says, and from --determinism over
// it: one flag, one variable.
func TestConformanceReadsDeterminism(t *testing.T) {
	t.Setenv("ACCELNODE_DETERMINISM", "fast")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "fast"},
		{[]string{"--determinism", "strict"}, "strict"},
	} {
		args := append([]string{"conformance", "--backends", "ref", "--quick", "--repeat", "1", "--format", "json"}, tc.args...)
		stdout, _, err := accelnode(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		var rep struct{ Mode string }
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.Mode != tc.want {
			t.Errorf("%v: mode %q (%v), want %q", tc.args, rep.Mode, err, tc.want)
		}
	}
}

// TestConformanceModels runs the shared exported networks on ref and
// ref-portable (and ort where it is installed): the strict runs agree bit
// for bit and every run with PyTorch's outputs. A reference output nudged
// past the tolerance fails the command.
func TestConformanceModels(t *testing.T) {
	const dir = "../../testdata/models"
	stdout, stderr, err := accelnode(t, "conformance", "--models", dir, "--backends", "ref,ref-portable")
	if err != nil {
		t.Fatalf("%v\n%s%s", err, stdout, stderr)
	}
	for _, want := range []string{
		`(?m)^mobilenet_v2 +ref +strict .* reference$`,
		`(?m)^mobilenet_v2 +ref-portable +strict .* same bits as ref$`,
		`(?m)^resnet18_quarter +ref-portable +strict .* same bits as ref$`,
		`4 runs of 2 models, 0 failures`,
	} {
		if !regexp.MustCompile(want).MatchString(stdout) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}

	// The ResNet, its weights beside it, with one reference output off.
	bad := t.TempDir()
	for _, f := range []string{"resnet18_quarter.onnx", "resnet18_quarter.onnx.data", "resnet18_quarter.io.ant"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".io.ant") {
			// The last float of the file is the output's last element.
			v := math.Float32frombits(binary.LittleEndian.Uint32(data[len(data)-4:]))
			binary.LittleEndian.PutUint32(data[len(data)-4:], math.Float32bits(v+1))
		}
		if err := os.WriteFile(filepath.Join(bad, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stdout, stderr, err = accelnode(t, "conformance", "--models", bad, "--backends", "ref")
	if codeOf(err) != exitFailed || !strings.Contains(stderr, "from the reference, over 0.0001") {
		t.Errorf("a wrong reference output: %v\n%s%s", err, stdout, stderr)
	}
	if _, _, err := accelnode(t, "conformance", "--models", t.TempDir()); err == nil || !strings.Contains(err.Error(), "no NAME.onnx with NAME.io.ant") {
		t.Errorf("an empty folder: %v", err)
	}
}
