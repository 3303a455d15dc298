package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/node"
)

// invokeHandler is the smallest service over a node: POST a module, its
// arguments in the query (?arg=...), get the result as JSON. It holds no
// inference logic: the node does it all.
func invokeHandler(n *node.Node) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wasm, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		m, err := n.Compile(r.Context(), wasm)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		res, err := n.Invoke(r.Context(), m, node.Invocation{Args: r.URL.Query()["arg"]})
		body := map[string]any{
			"outcome": res.Outcome, "exit_code": res.ExitCode, "stdout": string(res.Stdout),
			"units": res.Units, "backend": res.Backend, "mode": res.Mode,
			"module_sha256": res.ModuleSHA256, "stdout_sha256": res.StdoutSHA256,
		}
		if err != nil {
			body["error"] = err.Error()
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(body)
	})
}

// TestServerOnNode serves guests over HTTP on loopback from a node opened
// with node.Open, as the service will: two invocations of one module, the
// second compiled from the cache, and a bad module refused.
func TestServerOnNode(t *testing.T) {
	n := open(t, node.Config{Backend: "ref"})
	srv := httptest.NewServer(invokeHandler(n))
	defer srv.Close()
	wasm := guesttest.Build(t, "github.com/accelnode/accelnode/examples/matmul")
	post := func(body []byte, args string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+"/invoke?"+args, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		raw, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(raw, &out); err != nil && resp.StatusCode == http.StatusOK {
			t.Fatalf("not JSON: %v\n%s", err, raw)
		}
		return resp.StatusCode, out
	}
	var first map[string]any
	for i := range 2 {
		code, out := post(wasm, "arg=-n&arg=16&arg=-reps&arg=1")
		if code != http.StatusOK || out["outcome"] != "exited" || out["exit_code"] != 0.0 || !strings.Contains(out["stdout"].(string), "bit-identical") {
			t.Fatalf("invocation %d: %d %v", i, code, out)
		}
		if i == 0 {
			first = out
		} else if out["units"] != first["units"] || out["stdout_sha256"] != first["stdout_sha256"] {
			t.Errorf("two invocations of one request differ: %v and %v", first, out)
		}
	}
	if code, _ := post([]byte("not webassembly"), ""); code != http.StatusUnprocessableEntity {
		t.Errorf("a bad module got %d, want %d", code, http.StatusUnprocessableEntity)
	}
}
