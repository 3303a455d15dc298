package node_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
	_ "github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/node"
)

func open(t *testing.T, cfg node.Config) *node.Node {
	t.Helper()
	n, err := node.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func compile(t testing.TB, n *node.Node, pkg string) (*engine.Module, []byte) {
	t.Helper()
	wasm := guesttest.Build(t, pkg)
	m, err := n.Compile(context.Background(), wasm)
	if err != nil {
		t.Fatal(err)
	}
	return m, wasm
}

func hexSHA(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestInvokeResult(t *testing.T) {
	n := open(t, node.Config{Backend: "ref"})
	m, wasm := compile(t, n, "github.com/accelnode/accelnode/examples/matmul")
	res, err := n.Invoke(context.Background(), m, node.Invocation{Args: []string{"-n", "16", "-reps", "1"}})
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Stderr)
	}
	if res.Outcome != node.Exited || res.ExitCode != 0 {
		t.Errorf("outcome %s, exit code %d", res.Outcome, res.ExitCode)
	}
	if !bytes.Contains(res.Stdout, []byte("bit-identical")) {
		t.Errorf("stdout lacks the guest's report:\n%s", res.Stdout)
	}
	for _, c := range []struct{ name, got, want string }{
		{"module", res.ModuleSHA256, hexSHA(wasm)},
		{"stdin", res.StdinSHA256, hexSHA(nil)},
		{"stdout", res.StdoutSHA256, hexSHA(res.Stdout)},
		{"backend", res.Backend, "ref"},
		{"mode", res.Mode.String(), "strict"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if res.Units == 0 || res.Elapsed <= 0 || res.Device == "" {
		t.Errorf("units %d, elapsed %v, device %q: want all set", res.Units, res.Elapsed, res.Device)
	}
}

func TestInvokeStreamsAndHashes(t *testing.T) {
	n := open(t, node.Config{Backend: "ref"})
	m, _ := compile(t, n, "github.com/accelnode/accelnode/engine/testdata/guests/echo")
	var out bytes.Buffer
	in := "some input\n"
	res, err := n.Invoke(context.Background(), m, node.Invocation{Stdin: strings.NewReader(in), Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != in || res.Stdout != nil {
		t.Errorf("stdout written %q, captured %q; want the input written and nothing captured", out.String(), res.Stdout)
	}
	if res.StdinSHA256 != hexSHA([]byte(in)) || res.StdoutSHA256 != hexSHA([]byte(in)) {
		t.Errorf("stdin %s, stdout %s; want both %s", res.StdinSHA256, res.StdoutSHA256, hexSHA([]byte(in)))
	}
}

func TestCaptureIsBounded(t *testing.T) {
	n := open(t, node.Config{Backend: "ref", MaxOutput: 10})
	m, _ := compile(t, n, "github.com/accelnode/accelnode/engine/testdata/guests/echo")
	in := strings.Repeat("x", 1000)
	res, err := n.Invoke(context.Background(), m, node.Invocation{Stdin: strings.NewReader(in)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Stdout) != 10 || !res.StdoutTruncated {
		t.Errorf("captured %d bytes, truncated %v; want 10 and true", len(res.Stdout), res.StdoutTruncated)
	}
	if res.StdoutSHA256 != hexSHA([]byte(in)) {
		t.Error("the stdout hash does not cover what was dropped")
	}
}

func TestOutcomes(t *testing.T) {
	n := open(t, node.Config{Backend: "ref"})
	tests := []struct {
		name    string
		pkg     string
		inv     node.Invocation
		want    node.Outcome
		wantErr error
	}{
		{"deadline", "github.com/accelnode/accelnode/engine/testdata/guests/spin", node.Invocation{Limits: node.Limits{Timeout: 200 * time.Millisecond}}, node.Deadline, engine.ErrDeadline},
		{"memory", "github.com/accelnode/accelnode/engine/testdata/guests/hog", node.Invocation{Limits: node.Limits{Memory: 16 << 20}}, node.Memory, engine.ErrMemoryLimit},
		{"budget", "github.com/accelnode/accelnode/examples/matmul", node.Invocation{Args: []string{"-n", "64"}, Limits: node.Limits{Budget: 1000}}, node.Budget, engine.ErrBudgetExhausted},
		{"exit code", "github.com/accelnode/accelnode/examples/matmul", node.Invocation{Args: []string{"-no-such-flag"}}, node.Exited, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := compile(t, n, tc.pkg)
			res, err := n.Invoke(context.Background(), m, tc.inv)
			if res.Outcome != tc.want {
				t.Errorf("outcome %s, want %s (err %v)", res.Outcome, tc.want, err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
			var exit *engine.ExitError
			if tc.want == node.Exited && (!errors.As(err, &exit) || res.ExitCode != exit.Code || res.ExitCode == 0) {
				t.Errorf("exit code %d, error %v: want the guest's non-zero code", res.ExitCode, err)
			}
		})
	}
}

func TestOpenRefuses(t *testing.T) {
	tests := []struct {
		name string
		cfg  node.Config
		want string
	}{
		{"unknown backend", node.Config{Backend: "nope"}, `unknown backend "nope"`},
		{"check rate NaN", node.Config{CheckRate: nan()}, "check rate"},
		{"check rate above 1", node.Config{CheckRate: 2}, "check rate"},
		{"memory of 4 GiB", node.Config{Limits: node.Limits{Memory: 4 << 30}}, "memory limit"},
		{"memory below a page", node.Config{Limits: node.Limits{Memory: 100}}, "memory limit"},
		{"negative timeout", node.Config{Limits: node.Limits{Timeout: -time.Second}}, "timeout"},
		{"required backend unknown", node.Config{Require: []string{"nope"}}, `unknown backend "nope"`},
		{"model that is a device", node.Config{Models: []node.ModelFile{{Name: "z", Path: "/dev/zero"}}}, "not a regular file"},
		{"model that is missing", node.Config{Models: []node.ModelFile{{Name: "m", Path: "/nonexistent.onnx"}}}, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := node.Open(context.Background(), tc.cfg)
			if err == nil {
				n.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

func nan() float64 { var z float64; return z / z }

func TestInvocationOverridesBackendAndMode(t *testing.T) {
	n := open(t, node.Config{Backend: "ref"})
	m, _ := compile(t, n, "github.com/accelnode/accelnode/examples/matmul")
	fast := accel.Fast
	res, err := n.Invoke(context.Background(), m, node.Invocation{Args: []string{"-n", "8", "-reps", "1"}, Backend: "ref-portable", Mode: &fast})
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Stderr)
	}
	if res.Backend != "ref-portable" || res.Mode != accel.Fast {
		t.Errorf("served by %s in %s mode, want ref-portable in fast", res.Backend, res.Mode)
	}
}
