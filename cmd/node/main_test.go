package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/internal/envconfig"
	"github.com/accelnode/accelnode/internal/guesttest"
)

// accelnode runs the CLI in-process and returns its stdout, stderr and error.
func accelnode(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func TestBackendsJSON(t *testing.T) {
	stdout, _, err := accelnode(t, "backends", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var backends []map[string]any
	if err := json.Unmarshal([]byte(stdout), &backends); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	var found bool
	for _, b := range backends {
		for _, field := range []string{"name", "available", "device", "deterministic"} {
			if _, ok := b[field]; !ok {
				t.Errorf("backend %v lacks %q", b["name"], field)
			}
		}
		if b["available"] == false && b["reason"] == "" {
			t.Errorf("backend %v is unavailable without a reason", b["name"])
		}
		if b["name"] == "ref" {
			found = true
			if b["available"] != true || b["deterministic"] != true {
				t.Errorf("ref = %v", b)
			}
		}
	}
	if !found {
		t.Errorf("no ref backend in %s", stdout)
	}
}

func TestBackendsTable(t *testing.T) {
	stdout, _, err := accelnode(t, "backends")
	if err != nil || !strings.HasPrefix(stdout, "NAME") || !strings.Contains(stdout, "\nref ") {
		t.Fatalf("err = %v, output:\n%s", err, stdout)
	}
}

func TestHelpListsEnvironment(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"run", "--help"}} {
		stdout, stderr, err := accelnode(t, args...)
		if err != nil && !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%v: %v", args, err)
		}
		for _, v := range envconfig.All() {
			if !strings.Contains(stdout+stderr, v.Name) {
				t.Errorf("%v does not list %s", args, v.Name)
			}
		}
	}
}

func TestRun(t *testing.T) {
	matmul := guesttest.Path(t, "github.com/accelnode/accelnode/examples/matmul")
	tests := []struct {
		name     string
		args     []string
		wantOut  string
		wantCode int    // exit code through exitError; 0 for none
		wantErr  string // error text for node errors
	}{
		{"strict", []string{"run", "--cache-dir", "off", matmul, "--", "-n", "32", "-reps", "1"}, "bit-identical", 0, ""},
		{"fast", []string{"run", "--cache-dir", "off", "--determinism", "fast", matmul, "--", "-n", "8", "-reps", "1"}, "(fast mode", 0, ""},
		{"guest exit code", []string{"run", "--cache-dir", "off", matmul, "--", "-no-such-flag"}, "", 2, ""},
		{"unknown backend", []string{"run", "--backend", "nope", matmul}, "", 0, `unknown backend "nope"`},
		{"checked", []string{"run", "--cache-dir", "off", "--determinism", "checked", "--check-rate", "1", matmul, "--", "-n", "16", "-reps", "1"}, "(checked mode", 0, ""},
		{"bad check rate", []string{"run", "--determinism", "checked", "--check-rate", "2", matmul}, "", 0, "check rate 2 is not between 0 and 1"},
		{"bad mode", []string{"run", "--determinism", "loose", matmul}, "", 0, "unknown determinism mode"},
		{"memory limit", []string{"run", "--cache-dir", "off", "--memory", "1MiB", matmul}, "", 0, "memory"},
		{"bad size", []string{"run", "--memory", "lots", matmul}, "", 0, "invalid size"},
		{"missing module", []string{"run", "/nonexistent.wasm"}, "", 0, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := accelnode(t, tc.args...)
			var exit exitError
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
			case tc.wantCode != 0:
				if !errors.As(err, &exit) || exit.code != tc.wantCode {
					t.Fatalf("error = %v, want exit code %d\n%s", err, tc.wantCode, stderr)
				}
			case err != nil:
				t.Fatalf("%v\n%s", err, stderr)
			}
			if !strings.Contains(stdout, tc.wantOut) {
				t.Errorf("stdout lacks %q:\n%s", tc.wantOut, stdout)
			}
		})
	}
}

// TestCheckedModeReports checks that checked mode recomputes calls on ref
// and reports the count at exit.
func TestCheckedModeReports(t *testing.T) {
	cnn := guesttest.Path(t, "github.com/accelnode/accelnode/examples/cnn")
	_, stderr, err := accelnode(t, "run", "--cache-dir", "off", "--determinism", "checked", "--check-rate", "1", cnn, "--", "-batch", "2")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	for _, want := range []string{"checked mode summary", "checked=9", "beyond_bound=0"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}
