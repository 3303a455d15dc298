package oracle

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/mnist"
	"github.com/accelnode/accelnode/node"
)

// TestGradientsMatchNode runs the training guest (examples/mnist-train)
// on the node for the first batch of real digits and checks every
// gradient and the loss its host calls computed against gorgonia's, from
// the same initial weights and batch: ||ours - gorgonia|| / ||gorgonia|| at
// most GradRelTol per tensor. It runs in strict mode on ref and on its
// portable loops; the two dumps must also be identical to the bit.
func TestGradientsMatchNode(t *testing.T) {
	data, err := mnist.FindDir(".")
	if err != nil {
		t.Skip(err)
	}
	wasm := guesttest.Build(t, "github.com/accelnode/accelnode/examples/mnist-train")
	var first []byte
	for _, backend := range []string{"ref", "ref-portable"} {
		t.Run(backend, func(t *testing.T) {
			n, err := node.Open(context.Background(), node.Config{Backend: backend, Mode: accel.Strict})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			m, err := n.Compile(context.Background(), wasm)
			if err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			res, err := n.Invoke(context.Background(), m, node.Invocation{
				Args: []string{"-grads", "/out/grads.ant", "-batch", "64", "-seed", "3"},
				Mounts: []engine.Mount{{HostPath: data, GuestPath: "/data", ReadOnly: true}, {HostPath: out, GuestPath: "/out"}}})
			if err != nil || res.ExitCode != 0 {
				t.Fatalf("%v, exit code %d\n%s%s", err, res.ExitCode, res.Stdout, res.Stderr)
			}
			raw, err := os.ReadFile(filepath.Join(out, "grads.ant"))
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = raw
			} else if string(raw) != string(first) {
				t.Errorf("%s computed other bits than ref", backend)
			}
			f, err := os.Open(filepath.Join(out, "grads.ant"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			dump, err := mnist.ReadTensors(f)
			if err != nil {
				t.Fatal(err)
			}
			requireDumpMatches(t, dump)
		})
	}
}
