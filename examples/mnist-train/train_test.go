//go:build !wasip1

package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/accelnode/accelnode/accel"
	_ "github.com/accelnode/accelnode/accel/ort"
	_ "github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/mnist"
	"github.com/accelnode/accelnode/node"
)

// TestStrictHashesAgree trains on a few hundred real digits on every CPU
// configuration of strict mode: ref with one thread and with several, and
// its portable Go loops. (ort serves fast mode only; cuda is checked on
// the GPU machine by scripts/gpu-check.sh.) The weight hashes after every
// epoch must be identical.
func TestStrictHashesAgree(t *testing.T) {
	data, err := mnist.FindDir(".")
	if err != nil {
		t.Skip(err)
	}
	wasm := guesttest.Build(t, "github.com/accelnode/accelnode/examples/mnist-train")
	args := []string{"-train", "384", "-batch", "64", "-epochs", "2", "-test", "300", "-eval-batch", "150"}
	if testing.Short() {
		args[5] = "1"
	}
	configs := []struct {
		name    string
		backend string
		threads int
	}{
		{"ref, 1 thread", "ref", 1},
		{"ref, 3 threads", "ref", 3},
		{"ref-portable, 2 threads", "ref-portable", 2},
	}
	hashLine := regexp.MustCompile(`(?m)^epoch (\d+): .*weights ([0-9a-f]{64})$`)
	var want [][]string
	for _, c := range configs {
		n, err := node.Open(context.Background(), node.Config{Backend: c.backend, Mode: accel.Strict, Backends: accel.Options{Threads: c.threads}})
		if err != nil {
			t.Fatal(err)
		}
		m, err := n.Compile(context.Background(), wasm)
		if err != nil {
			n.Close()
			t.Fatal(err)
		}
		res, err := n.Invoke(context.Background(), m, node.Invocation{Args: args,
			Mounts: []engine.Mount{{HostPath: data, GuestPath: "/data", ReadOnly: true}}})
		n.Close()
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("%s: %v, exit code %d\n%s%s", c.name, err, res.ExitCode, res.Stdout, res.Stderr)
		}
		got := hashLine.FindAllStringSubmatch(string(res.Stdout), -1)
		if len(got) < 2 {
			t.Fatalf("%s printed no weight hashes:\n%s", c.name, res.Stdout)
		}
		t.Logf("%s:\n%s", c.name, res.Stdout)
		if want == nil {
			want = got
			continue
		}
		if !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("%s trained other weights than %s:\n%v\nwant\n%v", c.name, configs[0].name, got, want)
		}
	}
	if want[0][2] == want[len(want)-1][2] {
		t.Error("training left the weights as they were")
	}
}

// TestExportedModelServes writes the weights of a short run, exports them
// as ONNX and classifies test digits with the model through model_run, on
// ref in strict mode: the accuracy it prints comes from the trained
// weights, so it must beat chance (10 %) by far.
func TestExportedModelServes(t *testing.T) {
	data, err := mnist.FindDir(".")
	if err != nil {
		t.Skip(err)
	}
	out := t.TempDir()
	n, err := node.Open(context.Background(), node.Config{Backend: "ref"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	m, err := n.Compile(context.Background(), guesttest.Build(t, "github.com/accelnode/accelnode/examples/mnist-train"))
	if err != nil {
		t.Fatal(err)
	}
	mounts := []engine.Mount{{HostPath: data, GuestPath: "/data", ReadOnly: true}, {HostPath: out, GuestPath: "/out"}}
	res, err := n.Invoke(context.Background(), m, node.Invocation{Mounts: mounts,
		Args: []string{"-train", "1024", "-epochs", "1", "-test", "100", "-out", "/out"}})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("train: %v, exit code %d\n%s%s", err, res.ExitCode, res.Stdout, res.Stderr)
	}
	model := filepath.Join(out, "mnist.onnx")
	cmd := exec.Command("go", "run", "github.com/accelnode/accelnode/examples/mnist/model",
		"-weights", filepath.Join(out, "mnist-weights.ant"), "-o", model)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("export: %v\n%s", err, b)
	}
	served, err := node.Open(context.Background(), node.Config{Backend: "ref", Models: []node.ModelFile{{Name: "mnist", Path: model}}})
	if err != nil {
		t.Fatal(err)
	}
	defer served.Close()
	classify, err := served.Compile(context.Background(), guesttest.Build(t, "github.com/accelnode/accelnode/examples/mnist"))
	if err != nil {
		t.Fatal(err)
	}
	res, err = served.Invoke(context.Background(), classify, node.Invocation{Mounts: mounts[:1], Args: []string{"-n", "1000", "-batch", "100"}})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("classify: %v, exit code %d\n%s%s", err, res.ExitCode, res.Stdout, res.Stderr)
	}
	t.Logf("%s", res.Stdout)
	acc := regexp.MustCompile(`accuracy ([0-9.]+)% \((\d+) of 1000\)`).FindStringSubmatch(string(res.Stdout))
	if acc == nil {
		t.Fatalf("no accuracy printed:\n%s", res.Stdout)
	}
	// 70 to 75 % after 16 steps; untrained weights score about 10 %.
	if right, _ := strconv.Atoi(acc[2]); right < 500 {
		t.Errorf("%d of 1000 test digits right after training on 1024: the exported model does not carry the trained weights", right)
	}
}
