//go:build !wasip1

package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/mnist"
	"github.com/accelnode/accelnode/server/servertest"
)

// TestSecureML runs the seed application against a real node on loopback:
// a sealed t-SNE job and split-learning rounds through an actor, every
// receipt checked against the node's published key (run fails otherwise).
func TestSecureML(t *testing.T) {
	data, err := mnist.FindDir(".")
	if err != nil {
		t.Skip(err) // the message says to run make deps
	}
	examples := t.TempDir()
	for name, wasm := range map[string][]byte{
		"tsne-mnist.wasm":  guesttest.Build(t, "github.com/accelnode/accelnode/examples/tsne-mnist"),
		"split-dense.wasm": guesttest.BuildReactor(t, "github.com/accelnode/accelnode/examples/split-dense"),
	} {
		if err := os.WriteFile(filepath.Join(examples, name), wasm, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv := servertest.Start(t, servertest.Options{})
	if err := run(context.Background(), srv.URL, "", examples, data, "", 200, 250, 3, 16); err != nil {
		t.Fatal(err)
	}
}
