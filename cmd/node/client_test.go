package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/models/onnx"
	"github.com/accelnode/accelnode/node"
	"github.com/accelnode/accelnode/server"
	"github.com/accelnode/accelnode/server/api"
	"github.com/accelnode/accelnode/store"
)

// loopbackNode serves a node on ref on loopback, with its store in a
// temporary directory, and returns its URL.
func loopbackNode(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "store"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(context.Background(), node.Config{Backend: "ref"})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Node: n, Store: st, Catalog: filepath.Join(dir, "models.json")})
	if err != nil {
		n.Close()
		st.Close()
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		n.Close()
		st.Close()
	})
	return ts.URL
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
		if err := os.WriteFile(model, linearModel(), 0o644); err != nil {
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

// linearModel is y [batch, 256] = x [batch, 128] W, about 128 KiB.
func linearModel() []byte {
	w := make([]float32, 128*256)
	for i := range w {
		w[i] = float32(i%7) / 7
	}
	return onnx.Marshal(&onnx.Model{
		IRVersion:    onnx.IRVersion,
		OpsetVersion: onnx.Opset,
		Graph: onnx.Graph{
			Name:         "linear",
			Nodes:        []onnx.Node{{Name: "matmul", OpType: "MatMul", Inputs: []string{"x", "w"}, Outputs: []string{"y"}}},
			Inputs:       []onnx.ValueInfo{{Name: "x", ElemType: onnx.Float, Dims: []onnx.Dim{{Param: "batch"}, {Value: 128}}}},
			Outputs:      []onnx.ValueInfo{{Name: "y", ElemType: onnx.Float, Dims: []onnx.Dim{{Param: "batch"}, {Value: 256}}}},
			Initializers: []onnx.Tensor{{Name: "w", Dims: []int64{128, 256}, DataType: onnx.Float, Floats: w}},
		},
	})
}
