package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCrossArchitecture runs scripts/cross-arch.sh: the nans guest and
// matmul on amd64 and, under qemu-user, on arm64, with
// --guest-determinism strict and off. Under strict the nans guest's output
// and both guests' units must be the same on both architectures; the
// script says so and exits 0, or says what differs and exits 1. It exits 2
// where it cannot run, and the test skips with its reason.
func TestCrossArchitecture(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the cross-architecture proof builds accelnode for arm64 with cgo, which takes minutes the first time")
	}
	for _, tool := range []string{"qemu-aarch64-static", "aarch64-linux-gnu-gcc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not on PATH (scripts/cross-arch.sh installs qemu-user-static, gcc-aarch64-linux-gnu and libc6-dev-arm64-cross)", tool)
		}
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", filepath.Join(root, "scripts", "cross-arch.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "OUT="+t.TempDir())
	out, err := cmd.CombinedOutput()
	text := string(out)
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == 2:
		t.Skipf("scripts/cross-arch.sh cannot run here:\n%s", text)
	case err != nil:
		t.Fatalf("scripts/cross-arch.sh: %v\n%s", err, text)
	}
	t.Logf("scripts/cross-arch.sh:\n%s", text)
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if last := lines[len(lines)-1]; last != "cross-arch: PASS" {
		t.Fatalf("scripts/cross-arch.sh exited 0 with the verdict %q, want cross-arch: PASS", last)
	}
	for _, want := range []string{
		"cross-arch: strict: the nans output is the same on amd64 and arm64",
		"cross-arch: strict: nans's guest units are the same on amd64 and arm64",
		"cross-arch: strict: matmul's guest units are the same on amd64 and arm64",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("scripts/cross-arch.sh's output lacks %q", want)
		}
	}
}
