package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

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
		for _, field := range []string{"name", "available", "device", "modes"} {
			if _, ok := b[field]; !ok {
				t.Errorf("backend %v lacks %q", b["name"], field)
			}
		}
		if b["available"] == false && b["reason"] == "" {
			t.Errorf("backend %v is unavailable without a reason", b["name"])
		}
		if b["name"] == "ref" {
			found = true
			if b["available"] != true || fmt.Sprint(b["modes"]) != "[strict fast checked]" {
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
	if err != nil || !strings.HasPrefix(stdout, "NAME") || !strings.Contains(stdout, "strict,fast,checked") {
		t.Fatalf("err = %v, output:\n%s", err, stdout)
	}
}

// TestHelpListsEnvironment checks that the top-level help lists every
// environment variable and a command's help only those it reads.
func TestHelpListsEnvironment(t *testing.T) {
	tests := []struct {
		args       []string
		want, omit []envVar
	}{
		{[]string{"--help"}, env.all(), nil},
		{[]string{"run", "--help"}, slices.DeleteFunc(env.all(), func(v envVar) bool { return slices.Contains(service, v) || slices.Contains(remote, v) }),
			[]envVar{env.Data, env.Listen, env.Node, env.APIKey}},
		{[]string{"serve", "--help"}, []envVar{env.Data, env.Listen, env.Backend, env.Timeout, env.CacheDir}, []envVar{env.Node, env.APIKey}},
		{[]string{"keys", "--help"}, []envVar{env.Data}, []envVar{env.Listen, env.Backend}},
		{[]string{"submit", "--help"}, []envVar{env.Node, env.APIKey}, []envVar{env.Data, env.Backend, env.Threads}},
		{[]string{"backends", "--help"}, []envVar{env.Threads, env.ORTLibrary, env.CUDAPath},
			[]envVar{env.Timeout, env.Budget, env.Determinism, env.Clock}},
		{[]string{"conformance", "--help"}, []envVar{env.Determinism, env.Timeout},
			[]envVar{env.Backend, env.CheckRate, env.Clock}},
		{[]string{"cache", "--help"}, []envVar{env.CacheDir}, []envVar{env.Threads}},
	}
	for _, tc := range tests {
		stdout, stderr, err := accelnode(t, tc.args...)
		if err != nil && !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%v: %v", tc.args, err)
		}
		for _, v := range tc.want {
			if !strings.Contains(stdout+stderr, v.Name) {
				t.Errorf("%v does not list %s", tc.args, v.Name)
			}
		}
		for _, v := range tc.omit {
			if strings.Contains(stdout+stderr, v.Name) {
				t.Errorf("%v lists %s, which it does not read", tc.args, v.Name)
			}
		}
	}
}

func TestRun(t *testing.T) {
	matmul := guesttest.Path(t, "github.com/accelnode/accelnode/examples/matmul")
	spin := guesttest.Path(t, "github.com/accelnode/accelnode/engine/testdata/guests/spin")
	notWasm := filepath.Join(t.TempDir(), "not.wasm")
	if err := os.WriteFile(notWasm, []byte("not webassembly"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantOut  string
		wantCode int    // the exit code; 0 for success
		wantErr  string // error text, for accelnode's own errors (exit 125)
		wantLog  string // text of the log on stderr
	}{
		{"strict", []string{"run", "--cache-dir", "off", matmul, "--", "-n", "32", "-reps", "1"}, "bit-identical", 0, "", "outcome=exited exit_code=0"},
		{"fast", []string{"run", "--cache-dir", "off", "--determinism", "fast", matmul, "--", "-n", "8", "-reps", "1"}, "(fast mode", 0, "", ""},
		{"checked", []string{"run", "--cache-dir", "off", "--determinism", "checked", "--check-rate", "1", matmul, "--", "-n", "16", "-reps", "1"}, "(checked mode", 0, "", ""},
		{"guest exit code", []string{"run", "--cache-dir", "off", matmul, "--", "-no-such-flag"}, "", 2, "", "outcome=exited exit_code=2"},
		{"deadline", []string{"run", "--cache-dir", "off", "--timeout", "200ms", spin}, "", exitDeadline, "", "outcome=deadline exit_code=124"},
		{"memory limit", []string{"run", "--cache-dir", "off", "--memory", "1MiB", matmul}, "", exitModule, "", "memory limit of 1MiB"},
		{"missing module", []string{"run", "/nonexistent.wasm"}, "", exitNotFound, "", "no such file"},
		{"not webassembly", []string{"run", "--cache-dir", "off", notWasm}, "", exitModule, "", "invalid guest module"},
		{"unknown backend", []string{"run", "--backend", "nope", matmul}, "", exitNode, `unknown backend "nope"`, ""},
		{"bad check rate", []string{"run", "--determinism", "checked", "--check-rate", "2", matmul}, "", exitNode, "--check-rate", ""},
		{"NaN check rate", []string{"run", "--determinism", "checked", "--check-rate", "NaN", matmul}, "", exitNode, "is not a number from 0 to 1", ""},
		{"bad mode", []string{"run", "--determinism", "loose", matmul}, "", exitNode, "unknown determinism mode", ""},
		{"bad size", []string{"run", "--memory", "lots", matmul}, "", exitNode, "invalid size", ""},
		{"memory of 4 GiB", []string{"run", "--memory", "4GiB", matmul}, "", exitNode, "between 64 KiB and 4194240KiB", ""},
		{"negative threads", []string{"run", "--threads", "-1", matmul}, "", exitNode, "invalid thread count", ""},
		{"ort library that is not there", []string{"run", "--ort-lib", "/nonexistent/libonnxruntime.so", matmul}, "", exitNode, "ort is unavailable", ""},
		{"bad flag", []string{"run", "--no-such-flag", matmul}, "", exitNode, "", "flag provided but not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := accelnode(t, tc.args...)
			code := 0
			if err != nil {
				code = exitCode(context.Background(), err, &bytes.Buffer{})
			}
			if code != tc.wantCode {
				t.Fatalf("exit code %d (error %v), want %d\n%s", code, err, tc.wantCode, stderr)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
			if !strings.Contains(stdout, tc.wantOut) {
				t.Errorf("stdout lacks %q:\n%s", tc.wantOut, stdout)
			}
			if !strings.Contains(stderr, tc.wantLog) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantLog, stderr)
			}
		})
	}
}

// TestStrictRefusalSuggestsModes checks that asking strict mode of a
// backend that does not serve it says which mode to ask for.
func TestStrictRefusalSuggestsModes(t *testing.T) {
	ortAvailable(t)
	matmul := guesttest.Path(t, "github.com/accelnode/accelnode/examples/matmul")
	_, _, err := accelnode(t, "run", "--backend", "ort", matmul)
	if err == nil || !strings.Contains(err.Error(), "use --determinism fast or checked") {
		t.Errorf("error %v, want it to suggest --determinism fast or checked", err)
	}
}

// TestSignalExitCode checks that a run interrupted by a signal exits with
// 128 plus the signal's number, as shells report it.
func TestSignalExitCode(t *testing.T) {
	spin := guesttest.Path(t, "github.com/accelnode/accelnode/engine/testdata/guests/spin")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(signalled{syscall.SIGTERM})
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"run", "--cache-dir", "off", spin}, strings.NewReader(""), &stdout, &stderr)
	if got := exitCode(ctx, err, &stderr); got != 128+int(syscall.SIGTERM) {
		t.Errorf("exit code %d (error %v), want %d\n%s", got, err, 128+int(syscall.SIGTERM), stderr.String())
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

func TestCacheCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	matmul := guesttest.Path(t, "github.com/accelnode/accelnode/examples/matmul")
	if _, stderr, err := accelnode(t, "run", "--cache-dir", dir, matmul, "--", "-n", "8", "-reps", "1"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	stdout, _, err := accelnode(t, "cache", "--cache-dir", dir)
	if err != nil || !strings.HasPrefix(stdout, dir+": ") || strings.Contains(stdout, ": 0 files") {
		t.Fatalf("cache: %v\n%s", err, stdout)
	}
	if _, _, err := accelnode(t, "cache", "--cache-dir", dir, "--clear"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the cache is still there after --clear: %v", err)
	}
}
