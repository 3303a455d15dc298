//go:build !wasip1

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/accel"
	_ "github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/models/modeltest"
	"github.com/accelnode/accelnode/node"
)

// TestClassify runs the guest on an MNIST-shaped network with random
// weights: it must print ten probabilities summing to 1 and their argmax,
// and refuse input of another size and a model the node lacks.
func TestClassify(t *testing.T) {
	wasm := guesttest.Build(t, "github.com/accelnode/accelnode/examples/mnist-classify")
	nd, err := node.Open(context.Background(), node.Config{Backend: "ref", Mode: accel.Strict})
	if err != nil {
		t.Fatal(err)
	}
	defer nd.Close()
	if _, err := nd.Models().Add("mnist", modeltest.CNN(1)); err != nil {
		t.Fatal(err)
	}
	m, err := nd.Compile(context.Background(), wasm)
	if err != nil {
		t.Fatal(err)
	}
	img := make([]byte, 784)
	for i := range img {
		if r, c := i/28, i%28; c >= 12 && c <= 15 && r >= 4 && r <= 23 {
			img[i] = 255 // a 1
		}
	}
	res, err := nd.Invoke(context.Background(), m, node.Invocation{Stdin: bytes.NewReader(img)})
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Stderr)
	}
	var a struct {
		Digit                int
		Probabilities        []float32
		Model, Backend, Mode string
	}
	if err := json.Unmarshal(res.Stdout, &a); err != nil {
		t.Fatalf("stdout %q: %v", res.Stdout, err)
	}
	sum := 0.0
	for c, p := range a.Probabilities {
		sum += float64(p)
		if p > a.Probabilities[a.Digit] {
			t.Errorf("digit %d, but class %d is likelier", a.Digit, c)
		}
	}
	if len(a.Probabilities) != 10 || math.Abs(sum-1) > 1e-5 {
		t.Errorf("%d probabilities summing to %g, want 10 summing to 1", len(a.Probabilities), sum)
	}
	if a.Model != "mnist" || a.Backend != "ref" || a.Mode != "strict" {
		t.Errorf("model %q backend %q mode %q", a.Model, a.Backend, a.Mode)
	}

	for _, c := range []struct {
		name string
		args []string
		in   []byte
		err  string
	}{
		{"short", nil, img[:783], "want one 28×28 image, 784 bytes, got 783"},
		{"long", nil, append(img, 0), "want one 28×28 image, 784 bytes, got 785"},
		{"no model", []string{"-model", "absent"}, img, `model "absent"`},
	} {
		res, _ := nd.Invoke(context.Background(), m, node.Invocation{Args: c.args, Stdin: bytes.NewReader(c.in)})
		if res.ExitCode != 1 || !strings.Contains(string(res.Stderr), c.err) {
			t.Errorf("%s: exit code %d, stderr %q; want 1 and %q", c.name, res.ExitCode, res.Stderr, c.err)
		}
	}
}
