package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"github.com/accelnode/accelnode/models/modeltest"
	"github.com/accelnode/accelnode/server/servertest"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/client"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/models/onnx"
	"github.com/accelnode/accelnode/server/api"
)

// loopbackNode serves a node on ref on loopback, with its store in a
// temporary directory, and returns its URL.
func loopbackNode(t *testing.T) string {
	t.Helper()
	return servertest.Start(t, servertest.Options{}).URL
}

// accelnodeIn is accelnode with stdin.
func accelnodeIn(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func TestClientCommands(t *testing.T) {
	url := loopbackNode(t)
	echo := guesttest.Path(t, "github.com/accelnode/accelnode/engine/testdata/guests/echo")
	exit := guesttest.Path(t, "github.com/accelnode/accelnode/engine/testdata/guests/exit")
	dir := t.TempDir()
	input := filepath.Join(dir, "input.txt")
	if err := os.WriteFile(input, []byte("from a file\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("submit --wait", func(t *testing.T) {
		stdout, stderr, err := accelnode(t, "submit", "--node", url, "--wait", "--stdin", input, "--env", "ECHO_X=1", echo, "--", "a", "b")
		if err != nil || stdout != "from a file\n" || !strings.Contains(stderr, "arg2=b") || !strings.Contains(stderr, "ECHO_X=1") {
			t.Fatalf("err = %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
		}
		stdout, _, err = accelnodeIn(t, "piped\n", "submit", "--node", url, "--wait", "--stdin", "-", echo)
		if err != nil || stdout != "piped\n" {
			t.Fatalf("stdin -: err = %v, stdout %q", err, stdout)
		}
	})
	t.Run("exit code", func(t *testing.T) {
		_, _, err := accelnode(t, "submit", "--node", url, "--wait", exit, "--", "3")
		var e exitError
		if !errors.As(err, &e) || e.code != 3 {
			t.Fatalf("err = %v, want exit status 3", err)
		}
	})
	t.Run("submit then job", func(t *testing.T) {
		stdout, _, err := accelnode(t, "submit", "--node", url, "--idempotency-key", "k", exit, "--", "0")
		id := strings.TrimSpace(stdout)
		if err != nil || id == "" {
			t.Fatalf("submit: %v, %q", err, stdout)
		}
		again, _, err := accelnode(t, "submit", "--node", url, "--idempotency-key", "k", exit, "--", "0")
		if err != nil || strings.TrimSpace(again) != id {
			t.Fatalf("the same key gave %q (%v), not %q", again, err, id)
		}
		// Flags after the id, too.
		stdout, _, err = accelnode(t, "job", "--node", url, id, "--wait", "--format", "json")
		var job api.Job
		if err != nil || json.Unmarshal([]byte(stdout), &job) != nil || job.ID != id || job.Status != api.Done {
			t.Fatalf("job --wait: %v\n%s", err, stdout)
		}
		stdout, _, err = accelnode(t, "job", "list", "--node", url)
		if err != nil || !strings.HasPrefix(stdout, "ID") || !hasRow(stdout, id, "done", "exited", "0", "ref", "strict") {
			t.Fatalf("job list: %v\n%s", err, stdout)
		}
		_, _, err = accelnode(t, "job", "cancel", id, "--node", url)
		if err == nil || !strings.Contains(err.Error(), "already ended") {
			t.Fatalf("cancelling an ended job: %v", err)
		}
	})
	t.Run("models", func(t *testing.T) {
		model := filepath.Join(dir, "linear.onnx")
		if err := os.WriteFile(model, modeltest.Linear(1), 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, err := accelnode(t, "upload", "--node", url, "--chunk", "16KiB", "linear", model)
		if err != nil || !strings.HasPrefix(stdout, "NAME") || !strings.Contains(stdout, "x FLOAT[batch,128]") {
			t.Fatalf("upload: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
		}
		t.Setenv(env.Node.Name, url) // the variable instead of --node
		stdout, _, err = accelnode(t, "models", "--format", "json")
		var models []api.Model
		if err != nil || json.Unmarshal([]byte(stdout), &models) != nil || len(models) != 1 || models[0].Name != "linear" {
			t.Fatalf("models: %v\n%s", err, stdout)
		}
		stdout, _, err = accelnode(t, "models", "linear")
		if err != nil || !strings.Contains(stdout, "linear") || !strings.Contains(stdout, "y FLOAT[batch,256]") {
			t.Fatalf("models linear: %v\n%s", err, stdout)
		}
		_, _, err = accelnode(t, "models", "nonesuch")
		var p *api.Problem
		if !errors.As(err, &p) || p.Kind() != "not-found" {
			t.Fatalf("an unknown model: %v", err)
		}
	})
	t.Run("by sha256", func(t *testing.T) {
		id, _, err := accelnode(t, "submit", "--node", url, echo)
		if err != nil {
			t.Fatal(err)
		}
		stdout, _, err := accelnode(t, "job", "--node", url, "--wait", "--format", "json", strings.TrimSpace(id))
		var job api.Job
		if err != nil || json.Unmarshal([]byte(stdout), &job) != nil || job.Result == nil {
			t.Fatalf("job: %v\n%s", err, stdout)
		}
		stdout, _, err = accelnodeIn(t, "again\n", "submit", "--node", url, "--wait", "--stdin", "-", job.Result.ModuleSHA256)
		if err != nil || stdout != "again\n" {
			t.Fatalf("submit SHA256: %v, %q", err, stdout)
		}
	})
	t.Run("missing module", func(t *testing.T) {
		_, _, err := accelnode(t, "submit", "--node", url, filepath.Join(dir, "none.wasm"))
		var e exitError
		if !errors.As(err, &e) || e.code != exitNotFound {
			t.Fatalf("err = %v, want exit status %d", err, exitNotFound)
		}
	})
	t.Run("no node", func(t *testing.T) {
		_, _, err := accelnode(t, "models", "--node", "127.0.0.1:1")
		if err == nil || !strings.Contains(err.Error(), "--node") {
			t.Fatalf("err = %v", err)
		}
	})
}

// hasRow reports whether a table has a row that begins with cells.
func hasRow(table string, cells ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) >= len(cells) && slices.Equal(f[:len(cells)], cells) {
			return true
		}
	}
	return false
}

// reluSin is relu(sin(i)) for i below n, as infer prints FP32 values.
func reluSin(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.FormatFloat(float64(max(float32(math.Sin(float64(i))), 0)), 'g', -1, 32)
	}
	return out
}

func TestInferCommand(t *testing.T) {
	url := loopbackNode(t)
	dir := t.TempDir()
	model := filepath.Join(dir, "relu.onnx")
	if err := os.WriteFile(model, modeltest.Unary("Relu", onnx.Float, modeltest.Batch4), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := accelnode(t, "upload", "--node", url, "relu", model); err != nil {
		t.Fatal(err)
	}

	t.Run("values", func(t *testing.T) {
		stdout, stderr, err := accelnode(t, "infer", "--node", url, "relu", "--input", "x=1x4:0.5,-1,2,3.25")
		if err != nil || !strings.HasPrefix(stdout, "OUTPUT") || !hasRow(stdout, "y", "FP32", "[1,4]", "0.5", "0", "2", "3.25") {
			t.Fatalf("err = %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
		}
	})
	t.Run("default sin", func(t *testing.T) {
		stdout, _, err := accelnode(t, "infer", "relu", "--node", url)
		if err != nil || !hasRow(stdout, append([]string{"y", "FP32", "[1,4]"}, reluSin(4)...)...) {
			t.Fatalf("err = %v\nstdout:\n%s", err, stdout)
		}
	})
	t.Run("file", func(t *testing.T) {
		var raw []byte
		for _, v := range []float32{-2, 1.5, float32(math.Inf(1)), -0.25, 7, -7, 1e-3, 0} {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
		}
		path := filepath.Join(dir, "x.bin")
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, _, err := accelnode(t, "infer", "--node", url, "relu", "--input", "x=2x4:@"+path)
		if err != nil || !hasRow(stdout, "y", "FP32", "[2,4]", "0", "1.5", "+Inf", "0", "7", "0", "0.001", "0") {
			t.Fatalf("err = %v\nstdout:\n%s", err, stdout)
		}
		_, _, err = accelnode(t, "infer", "--node", url, "relu", "--input", "x=1x4:@"+path)
		if err == nil || !strings.Contains(err.Error(), "holds 32 bytes; FP32[1,4] takes 16") {
			t.Errorf("a file of 32 bytes for [1,4]: %v", err)
		}
	})
	t.Run("large and json", func(t *testing.T) {
		want := reluSin(32)
		var raw []byte
		for _, v := range want {
			f, _ := strconv.ParseFloat(v, 32)
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(float32(f)))
		}
		sum := sha256.Sum256(raw)
		stdout, _, err := accelnode(t, "infer", "--node", url, "relu", "--input", "x=8x4:sin")
		row := append(append([]string{"y", "FP32", "[8,4]"}, want[:10]...), "…", "(32", "values,", "sha256", hex.EncodeToString(sum[:])+")")
		if err != nil || !hasRow(stdout, row...) {
			t.Fatalf("err = %v\nstdout:\n%s\nwant the row %q", err, stdout, row)
		}
		stdout, _, err = accelnode(t, "infer", "--node", url, "relu", "--input", "x=8x4:sin", "--format", "json")
		var res struct {
			Model   string
			Outputs []struct {
				Name, Datatype string
				Shape          []int64
				Data           []float32
				SHA256         string
			}
		}
		if err != nil || json.Unmarshal([]byte(stdout), &res) != nil || res.Model != "relu" || len(res.Outputs) != 1 {
			t.Fatalf("err = %v\n%s", err, stdout)
		}
		o := res.Outputs[0]
		got := client.FromFloat32s(o.Name, o.Shape, o.Data)
		if o.Name != "y" || o.Datatype != "FP32" || !slices.Equal(o.Shape, []int64{8, 4}) || !bytes.Equal(got.Data, raw) || o.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("json: %+v", o)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"relu", "--input", "z=1x4:sin"}, `no input "z"`},
			{[]string{"relu", "--input", "x=1x4:1,2,3"}, "3 values"},
			{[]string{"relu", "--input", "x=1x0:sin"}, "positive integer"},
			{[]string{"relu", "--input", "x=1x4:1,2,3,four"}, "FP32"},
			{[]string{"relu", "--input", "x=sin"}, "SHAPE:VALUES"},
			{[]string{"relu", "--input", "x=2x3:sin"}, "(400 Bad Request)"},
			{[]string{"relu", "--format", "yaml"}, "unknown format"},
		} {
			_, _, err := accelnode(t, append([]string{"infer", "--node", url}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("infer %q: %v, want an error saying %q", tc.args, err, tc.want)
			}
		}
		_, _, err := accelnode(t, "infer", "--node", url, "nonesuch")
		var e *client.InferError
		if !errors.As(err, &e) || e.Status != http.StatusNotFound {
			t.Errorf("an unknown model: %v", err)
		}
	})
}
