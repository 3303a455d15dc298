package guesttest_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/accelnode/accelnode/internal/guesttest"
)

func TestBuild(t *testing.T) {
	const pkg = "github.com/accelnode/accelnode/engine/testdata/guests/exit"
	wasm := guesttest.Build(t, pkg)
	if !bytes.HasPrefix(wasm, []byte("\x00asm")) {
		t.Fatalf("not WebAssembly: % x", wasm[:min(8, len(wasm))])
	}
	onDisk, err := os.ReadFile(guesttest.Path(t, pkg))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, wasm) {
		t.Error("Path and Build disagree")
	}
	if again := guesttest.Build(t, pkg); &again[0] != &wasm[0] {
		t.Error("built twice")
	}
}
