package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/accelnode/accelnode/models/modeltest"
	"github.com/accelnode/accelnode/server/servertest"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/models/onnx"
	"github.com/accelnode/accelnode/server"
	"github.com/accelnode/accelnode/server/api"
)

// Guests the tests run: digest prints hashes of a fixed sequence of ops
// (the same bytes on every strict backend); longop holds a worker for
// about a second.
const (
	digestGuest = "github.com/accelnode/accelnode/hostfn/testdata/guests/digest"
	longGuest   = "github.com/accelnode/accelnode/hostfn/testdata/guests/longop"
)

// testServer is a server on a real store and node, behind a loopback
// listener, with request helpers that check the OpenAPI document.
type testServer struct {
	*servertest.Server
	URL string
	Dir string
	t   testing.TB
	// key is sent as the bearer token, where set.
	key string
	// validate checks each request and answer against the OpenAPI
	// document; expectBad logs requests that break it instead of failing.
	validate, expectBad bool
}

type serverOpts struct {
	backend string
	dir     string
	limits  func(*server.Limits)
	keys    func(*server.Keys)
}

func startServer(t testing.TB, o serverOpts) *testServer {
	t.Helper()
	limits := server.Limits{Workers: 2}
	if o.limits != nil {
		o.limits(&limits)
	}
	s := servertest.Start(t, servertest.Options{Backend: o.backend, Dir: o.dir, Limits: limits, Keys: o.keys})
	return &testServer{Server: s, URL: s.URL, Dir: s.Dir, t: t, validate: true}
}

func (ts *testServer) stop() { ts.Server.Stop() }

// The OpenAPI document, loaded once.
var (
	specOnce sync.Once
	spec     routers.Router
	specErr  error
)

func router(t testing.TB) routers.Router {
	specOnce.Do(func() {
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(server.OpenAPI())
		if err != nil {
			specErr = err
			return
		}
		if err := doc.Validate(context.Background()); err != nil {
			specErr = fmt.Errorf("the document is not valid OpenAPI: %w", err)
			return
		}
		spec, specErr = legacy.NewRouter(doc)
	})
	if specErr != nil {
		t.Fatal(specErr)
	}
	return spec
}

// response is an answer, read whole.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

func (r response) problem(t testing.TB) api.Problem {
	t.Helper()
	var p api.Problem
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("status %d with Content-Type %q, want application/problem+json: %s", r.Status, ct, r.Body)
	}
	r.decode(t, &p)
	if p.Status != r.Status {
		t.Errorf("problem status %d in a %d answer", p.Status, r.Status)
	}
	return p
}

// do sends a request, checking it and its answer against the OpenAPI
// document.
func (ts *testServer) do(method, path string, body []byte, header ...string) response {
	ts.t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, bytes.NewReader(body))
	if err != nil {
		ts.t.Fatal(err)
	}
	if body != nil && len(header) == 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if ts.key != "" {
		req.Header.Set("Authorization", "Bearer "+ts.key)
	}
	var input *openapi3filter.RequestValidationInput
	if ts.validate && strings.HasPrefix(path, "/v1/") && path != "/v1/openapi.json" {
		route, params, err := router(ts.t).FindRoute(req)
		if err != nil {
			ts.t.Fatalf("%s %s is not in the OpenAPI document: %v", method, path, err)
		}
		input = &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, ExcludeRequestBody: !strings.Contains(req.Header.Get("Content-Type"), "json")}}
		req2 := req.Clone(context.Background())
		req2.Body = io.NopCloser(bytes.NewReader(body))
		input.Request = req2
		if err := openapi3filter.ValidateRequest(context.Background(), input); err != nil {
			if ts.expectBad {
				ts.t.Logf("request %s %s does not follow the OpenAPI document, as meant: %v", method, path, err)
			} else {
				ts.t.Errorf("request %s %s does not follow the OpenAPI document: %v", method, path, err)
			}
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		ts.t.Fatal(err)
	}
	if input != nil {
		input.Request = req
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: input, Status: resp.StatusCode, Header: resp.Header,
			Options: &openapi3filter.Options{IncludeResponseStatus: true}}
		out.SetBodyBytes(data)
		if method != http.MethodHead && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/octet-stream") && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/wasm") {
			if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
				ts.t.Errorf("answer %d to %s %s does not follow the OpenAPI document: %v\n%s", resp.StatusCode, method, path, err, data)
			}
		}
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

func (ts *testServer) json(method, path string, v any, header ...string) response {
	ts.t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		ts.t.Fatal(err)
	}
	return ts.do(method, path, body, append([]string{"Content-Type", "application/json"}, header...)...)
}

// putModule stores the guest pkg and returns its sha256.
func (ts *testServer) putModule(pkg string) string {
	ts.t.Helper()
	wasm := guesttest.Build(ts.t, pkg)
	r := ts.do(http.MethodPut, "/v1/modules", wasm, "Content-Type", "application/wasm")
	if r.Status != http.StatusCreated {
		ts.t.Fatalf("PUT /v1/modules: %d %s", r.Status, r.Body)
	}
	var b api.Blob
	r.decode(ts.t, &b)
	if b.SHA256 != hash(wasm) {
		ts.t.Fatalf("module stored as %s, want its sha256 %s", b.SHA256, hash(wasm))
	}
	return b.SHA256
}

func (ts *testServer) submit(req api.JobRequest, header ...string) api.Job {
	ts.t.Helper()
	r := ts.json(http.MethodPost, "/v1/jobs", req, header...)
	if r.Status != http.StatusAccepted && r.Status != http.StatusOK {
		ts.t.Fatalf("POST /v1/jobs: %d %s", r.Status, r.Body)
	}
	var j api.Job
	r.decode(ts.t, &j)
	return j
}

// wait long-polls job id until it ends.
func (ts *testServer) wait(id string) api.Job {
	ts.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		r := ts.do(http.MethodGet, "/v1/jobs/"+id+"?wait=30s", nil)
		if r.Status != http.StatusOK {
			ts.t.Fatalf("GET job %s: %d %s", id, r.Status, r.Body)
		}
		var j api.Job
		r.decode(ts.t, &j)
		if j.Ended() {
			return j
		}
	}
	ts.t.Fatalf("job %s did not end in 2 minutes", id)
	return api.Job{}
}

func hash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestJobEndToEnd(t *testing.T) {
	ts := startServer(t, serverOpts{})
	module := ts.putModule(digestGuest)

	job := ts.submit(api.JobRequest{Module: module})
	if job.ID == "" || job.Status != api.Queued && job.Status != api.Running {
		t.Fatalf("submitted job %+v", job)
	}
	done := ts.wait(job.ID)
	if done.Status != api.Done || done.Result == nil || done.Result.Outcome != "exited" || done.Result.ExitCode != 0 {
		t.Fatalf("job ended %+v", done)
	}
	res := done.Result
	if !bytes.HasPrefix(res.Stdout, []byte("matmul ")) || res.StdoutSHA256 != hash(res.Stdout) || res.ModuleSHA256 != module {
		t.Errorf("result %+v", res)
	}
	if res.Units == 0 || res.Mode != "strict" || done.Node.Backend != "ref" || done.Node.Attempts != 1 {
		t.Errorf("result %+v, node %+v", res, done.Node)
	}

	// The result alone, and the same from the synchronous form.
	r := ts.do(http.MethodGet, "/v1/jobs/"+job.ID+"/result", nil)
	if r.Status != http.StatusOK || r.Header.Get("Accelnode-Backend") != "ref" {
		t.Fatalf("result: %d %v %s", r.Status, r.Header, r.Body)
	}
	inv := ts.json(http.MethodPost, "/v1/invoke", api.JobRequest{Module: module})
	if inv.Status != http.StatusOK || !bytes.Equal(inv.Body, r.Body) {
		t.Errorf("invoke answered %d\n%s\nwant the job's result\n%s", inv.Status, inv.Body, r.Body)
	}

	// An Idempotency-Key names one job however often it is sent.
	a := ts.submit(api.JobRequest{Module: module, Args: []string{"x"}}, "Idempotency-Key", "k1")
	b := ts.submit(api.JobRequest{Module: module, Args: []string{"x"}}, "Idempotency-Key", "k1")
	if a.ID != b.ID {
		t.Errorf("one Idempotency-Key made jobs %s and %s", a.ID, b.ID)
	}
	if r := ts.json(http.MethodPost, "/v1/jobs", api.JobRequest{Module: module, Args: []string{"y"}}, "Idempotency-Key", "k1"); r.Status != http.StatusConflict {
		t.Errorf("another request under a used Idempotency-Key: %d %s, want 409", r.Status, r.Body)
	}

	var list struct{ Jobs []api.Job }
	ts.do(http.MethodGet, "/v1/jobs", nil).decode(t, &list)
	if len(list.Jobs) != 3 {
		t.Errorf("listed %d jobs, want 3", len(list.Jobs))
	}
}

func TestCancel(t *testing.T) {
	ts := startServer(t, serverOpts{limits: func(l *server.Limits) { l.Workers = 1 }})
	long := ts.putModule(longGuest)
	running := ts.submit(api.JobRequest{Module: long})
	queued := ts.submit(api.JobRequest{Module: long})
	// The first holds the only worker; cancel the second while it waits.
	r := ts.do(http.MethodDelete, "/v1/jobs/"+queued.ID, nil)
	var j api.Job
	r.decode(t, &j)
	if r.Status != http.StatusOK || j.Status != api.Cancelled {
		t.Fatalf("cancel a queued job: %d %s", r.Status, r.Body)
	}
	for ts.wait(running.ID).Status == "" {
	}
	r = ts.do(http.MethodDelete, "/v1/jobs/"+running.ID, nil)
	if r.Status != http.StatusConflict {
		t.Errorf("cancel a finished job: %d %s, want 409", r.Status, r.Body)
	}

	// Cancel one that is running.
	third := ts.submit(api.JobRequest{Module: long})
	for {
		var j api.Job
		ts.do(http.MethodGet, "/v1/jobs/"+third.ID, nil).decode(t, &j)
		if j.Status == api.Running {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	r = ts.do(http.MethodDelete, "/v1/jobs/"+third.ID, nil)
	r.decode(t, &j)
	if r.Status != http.StatusOK || j.Status != api.Cancelled {
		t.Errorf("cancel a running job: %d %s", r.Status, r.Body)
	}
	if p := ts.do(http.MethodGet, "/v1/jobs/"+third.ID+"/result", nil).problem(t); p.Status != http.StatusConflict {
		t.Errorf("result of a cancelled job: %+v", p)
	}
}

func TestUploadChunks(t *testing.T) {
	ts := startServer(t, serverOpts{})
	model := modeltest.Unary("Relu", onnx.Float, modeltest.Batch4)
	size := len(model)
	var up api.Upload
	r := ts.json(http.MethodPost, "/v1/uploads", api.NewUpload{Size: int64(size)})
	if r.Status != http.StatusCreated {
		t.Fatalf("POST /v1/uploads: %d %s", r.Status, r.Body)
	}
	r.decode(t, &up)

	chunk := func(first, last int) response {
		return ts.do(http.MethodPut, "/v1/uploads/"+up.ID, model[first:last+1],
			"Content-Type", "application/octet-stream", "Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, size))
	}
	third := size / 3
	// Out of order: the last part, then the first, the first again (a
	// retry), then the middle.
	for _, c := range [][2]int{{2 * third, size - 1}, {0, third - 1}, {0, third - 1}} {
		if r := chunk(c[0], c[1]); r.Status != http.StatusOK {
			t.Fatalf("chunk %v: %d %s", c, r.Status, r.Body)
		}
	}
	h := ts.do(http.MethodHead, "/v1/uploads/"+up.ID, nil)
	if h.Header.Get("Upload-Offset") != fmt.Sprint(third) {
		t.Errorf("offset after the first and last parts: %q, want %d", h.Header.Get("Upload-Offset"), third)
	}
	// A retry that differs from what arrived is refused.
	bad := ts.do(http.MethodPut, "/v1/uploads/"+up.ID, bytes.Repeat([]byte{'x'}, 10),
		"Content-Type", "application/octet-stream", "Content-Range", "bytes 0-9/"+fmt.Sprint(size))
	if p := bad.problem(t); p.Status != http.StatusConflict {
		t.Errorf("a conflicting retry: %+v", p)
	}
	// Committing early is refused.
	if p := ts.json(http.MethodPost, "/v1/uploads/"+up.ID+"/commit", api.Commit{Name: "relu", SHA256: hash(model)}).problem(t); p.Status != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("an early commit: %+v", p)
	}
	if r := chunk(third, 2*third-1); r.Status != http.StatusOK {
		t.Fatalf("middle chunk: %d %s", r.Status, r.Body)
	}
	r = ts.json(http.MethodPost, "/v1/uploads/"+up.ID+"/commit", api.Commit{Name: "relu", SHA256: hash(model)})
	if r.Status != http.StatusCreated {
		t.Fatalf("commit: %d %s", r.Status, r.Body)
	}
	var m api.Model
	r.decode(t, &m)
	if m.Name != "relu" || m.SHA256 != hash(model) || len(m.Inputs) != 1 || m.Inputs[0].Type != "FLOAT" || m.Inputs[0].Shape[0] != -1 {
		t.Errorf("model %+v", m)
	}
	var list struct{ Models []api.Model }
	ts.do(http.MethodGet, "/v1/models", nil).decode(t, &list)
	if len(list.Models) != 1 || list.Models[0].Name != "relu" {
		t.Errorf("models %+v", list.Models)
	}
	if r := ts.do(http.MethodGet, "/v1/models/relu", nil); r.Status != http.StatusOK {
		t.Errorf("GET /v1/models/relu: %d", r.Status)
	}

	// The catalogue brings the model back after a restart.
	ts.stop()
	again := startServer(t, serverOpts{dir: ts.Dir})
	if r := again.do(http.MethodGet, "/v1/models/relu", nil); r.Status != http.StatusOK {
		t.Errorf("after a restart, GET /v1/models/relu: %d %s", r.Status, r.Body)
	}
}

// TestBadInput sends what clients get wrong: each answer is the documented
// problem, and nothing is stored.
func TestBadInput(t *testing.T) {
	ts := startServer(t, serverOpts{limits: func(l *server.Limits) {
		l.MaxBody = 4 << 10
		l.MaxModule = 8 << 20
		l.Job.Timeout = time.Minute
	}})
	module := ts.putModule(digestGuest)
	var up api.Upload
	ts.json(http.MethodPost, "/v1/uploads", api.NewUpload{Size: 10}).decode(t, &up)
	blobsBefore := ts.blobCount()

	notONNX := []byte("this is not an ONNX model")
	var bad api.Upload
	ts.json(http.MethodPost, "/v1/uploads", api.NewUpload{Size: int64(len(notONNX))}).decode(t, &bad)
	ts.do(http.MethodPut, "/v1/uploads/"+bad.ID, notONNX, "Content-Type", "application/octet-stream",
		"Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(notONNX)-1, len(notONNX)))

	ok := api.JobRequest{Module: module}
	for _, tc := range []struct {
		name   string
		method string
		path   string
		body   []byte
		header []string
		kind   string
	}{
		{"malformed json", "POST", "/v1/jobs", []byte(`{malformed`), nil, "bad-request"},
		{"two values", "POST", "/v1/jobs", []byte(`{"module":"` + module + `"} {}`), nil, "bad-request"},
		{"unknown field", "POST", "/v1/jobs", []byte(`{"module":"` + module + `","gpu":true}`), nil, "bad-request"},
		{"oversized body", "POST", "/v1/jobs", append([]byte(`{"module":"`+module+`","args":["`), bytes.Repeat([]byte("a"), 8<<10)...), nil, "too-large"},
		{"not a hash", "POST", "/v1/jobs", mustJSON(api.JobRequest{Module: "abc"}), nil, "bad-request"},
		{"unknown module", "POST", "/v1/jobs", mustJSON(api.JobRequest{Module: strings.Repeat("0", 64)}), nil, "not-found"},
		{"unknown model", "POST", "/v1/jobs", mustJSON(with(ok, func(r *api.JobRequest) { r.Models = []string{"nope"} })), nil, "invalid-job"},
		{"unknown backend", "POST", "/v1/jobs", mustJSON(with(ok, func(r *api.JobRequest) { r.Backend = "tpu" })), nil, "invalid-job"},
		{"unknown mode", "POST", "/v1/jobs", mustJSON(with(ok, func(r *api.JobRequest) { r.Mode = "loose" })), nil, "bad-request"},
		{"over the timeout", "POST", "/v1/jobs", mustJSON(with(ok, func(r *api.JobRequest) { r.Timeout = "2h" })), nil, "over-limit"},
		{"bad timeout", "POST", "/v1/jobs", mustJSON(with(ok, func(r *api.JobRequest) { r.Timeout = "-1s" })), nil, "bad-request"},
		{"bad memory", "POST", "/v1/jobs", mustJSON(with(ok, func(r *api.JobRequest) { r.Memory = "lots" })), nil, "bad-request"},
		{"bad env", "POST", "/v1/jobs", mustJSON(with(ok, func(r *api.JobRequest) { r.Env = []string{"NOEQUALS"} })), nil, "bad-request"},
		{"unknown job", "GET", "/v1/jobs/nope", nil, nil, "not-found"},
		{"bad wait", "GET", "/v1/jobs/nope?wait=forever", nil, nil, "bad-request"},
		{"not wasm", "PUT", "/v1/modules", []byte("#!/bin/sh\necho hi\n"), []string{"Content-Type", "application/wasm"}, "invalid-module"},
		{"broken wasm", "PUT", "/v1/modules", []byte("\x00asm\x01\x00\x00\x00\x05garbage"), []string{"Content-Type", "application/wasm"}, "invalid-module"},
		{"oversized module", "PUT", "/v1/modules", append([]byte("\x00asm"), make([]byte, 9<<20)...), []string{"Content-Type", "application/wasm"}, "too-large"},
		{"unknown blob", "GET", "/v1/blobs/" + strings.Repeat("1", 64), nil, nil, "not-found"},
		{"zero upload", "POST", "/v1/uploads", []byte(`{"size":0}`), nil, "bad-request"},
		{"huge upload", "POST", "/v1/uploads", []byte(`{"size":1099511627776000}`), nil, "too-large"},
		{"no range", "PUT", "/v1/uploads/" + up.ID, []byte("0123456789"), []string{"Content-Type", "application/octet-stream"}, "range"},
		{"range past the end", "PUT", "/v1/uploads/" + up.ID, []byte("0123456789"), []string{"Content-Type", "application/octet-stream", "Content-Range", "bytes 5-14/10"}, "range"},
		{"wrong total", "PUT", "/v1/uploads/" + up.ID, []byte("0123456789"), []string{"Content-Type", "application/octet-stream", "Content-Range", "bytes 0-9/11"}, "range"},
		{"body and range differ", "PUT", "/v1/uploads/" + up.ID, []byte("01234"), []string{"Content-Type", "application/octet-stream", "Content-Range", "bytes 0-9/10"}, "range"},
		{"unknown upload", "PUT", "/v1/uploads/nope", []byte("0"), []string{"Content-Type", "application/octet-stream", "Content-Range", "bytes 0-0/1"}, "not-found"},
		{"wrong sha256", "POST", "/v1/uploads/" + bad.ID + "/commit", mustJSON(api.Commit{Name: "m", SHA256: strings.Repeat("a", 64)}), nil, "hash-mismatch"},
		{"unknown model info", "GET", "/v1/models/nope", nil, nil, "not-found"},
		{"no route", "GET", "/v1/nothing", nil, nil, "not-found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts.validate, ts.expectBad = tc.name != "no route", true
			r := ts.do(tc.method, tc.path, tc.body, tc.header...)
			p := r.problem(t)
			if p.Type != api.ProblemPrefix+tc.kind {
				t.Errorf("%d %s, want a %s problem", r.Status, r.Body, tc.kind)
			}
		})
	}
	ts.validate, ts.expectBad = true, false

	// A model that is not ONNX, or one whose weights lie in a file beside
	// it, uploaded whole with the right hash, is refused at commit with the
	// reason and leaves nothing.
	external := onnx.Marshal(&onnx.Model{IRVersion: onnx.IRVersion, OpsetVersion: onnx.Opset, Graph: onnx.Graph{
		Nodes:        []onnx.Node{{OpType: "Add", Inputs: []string{"X", "W"}, Outputs: []string{"Y"}}},
		Inputs:       []onnx.ValueInfo{{Name: "X", ElemType: onnx.Float, Dims: []onnx.Dim{{Value: 4}}}},
		Outputs:      []onnx.ValueInfo{{Name: "Y", ElemType: onnx.Float, Dims: []onnx.Dim{{Value: 4}}}},
		Initializers: []onnx.Tensor{{Name: "W", Dims: []int64{4}, DataType: onnx.Float, External: &onnx.External{Location: "model.onnx.data", Length: 16}}},
	}})
	for _, bad := range []struct {
		name, detail string
		model        []byte
	}{
		{"not ONNX", "not a valid ONNX model", notONNX},
		{"external data", `refers to external data in "model.onnx.data"`, external},
	} {
		var fresh api.Upload
		ts.json(http.MethodPost, "/v1/uploads", api.NewUpload{Size: int64(len(bad.model))}).decode(t, &fresh)
		ts.do(http.MethodPut, "/v1/uploads/"+fresh.ID, bad.model, "Content-Type", "application/octet-stream",
			"Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(bad.model)-1, len(bad.model)))
		r := ts.json(http.MethodPost, "/v1/uploads/"+fresh.ID+"/commit", api.Commit{Name: "m", SHA256: hash(bad.model)})
		if p := r.problem(t); p.Kind() != "invalid-model" || !strings.Contains(p.Detail, bad.detail) {
			t.Errorf("commit of a model, %s: %+v, want invalid-model saying %q", bad.name, p, bad.detail)
		}
	}
	if n := ts.blobCount(); n != blobsBefore {
		t.Errorf("%d blobs after the bad requests, want the %d before", n, blobsBefore)
	}
	var jobs struct{ Jobs []api.Job }
	ts.do(http.MethodGet, "/v1/jobs", nil).decode(t, &jobs)
	if len(jobs.Jobs) != 0 {
		t.Errorf("%d jobs recorded from bad requests", len(jobs.Jobs))
	}
}

func (ts *testServer) blobCount() int {
	var list struct{ Blobs []api.Blob }
	ts.do(http.MethodGet, "/v1/blobs", nil).decode(ts.t, &list)
	return len(list.Blobs)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func with(r api.JobRequest, f func(*api.JobRequest)) api.JobRequest { f(&r); return r }

// TestDeterministicResults runs one request on two nodes, on ref (SIMD
// kernels) and ref-portable (scalar), each with its own data directory: the
// strict result bodies are the same bytes.
func TestDeterministicResults(t *testing.T) {
	var bodies [][]byte
	for _, backend := range []string{"ref", "ref-portable"} {
		ts := startServer(t, serverOpts{backend: backend})
		module := ts.putModule(digestGuest)
		r := ts.json(http.MethodPost, "/v1/invoke", api.JobRequest{Module: module, Stdin: []byte("input"), Args: []string{"a"}})
		if r.Status != http.StatusOK {
			t.Fatalf("%s: invoke: %d %s", backend, r.Status, r.Body)
		}
		if r.Header.Get("Accelnode-Backend") != backend {
			t.Errorf("%s: served by %q", backend, r.Header.Get("Accelnode-Backend"))
		}
		bodies = append(bodies, r.Body)
	}
	if !bytes.Equal(bodies[0], bodies[1]) {
		t.Errorf("strict result bodies differ:\nref          %s\nref-portable %s", bodies[0], bodies[1])
	}
}

// TestKeys checks bearer tokens, scopes, and that no key reaches another
// key's blobs or jobs.
func TestKeys(t *testing.T) {
	var alice, bob, reader string
	ts := startServer(t, serverOpts{keys: func(k *server.Keys) {
		var err error
		if alice, err = k.Add("alice", []string{"invoke", "upload"}); err != nil {
			t.Fatal(err)
		}
		bob, _ = k.Add("bob", []string{"invoke", "upload"})
		reader, _ = k.Add("reader", []string{"invoke"})
	}})
	if r := ts.do(http.MethodGet, "/v1/jobs", nil); r.Status != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("no token: %d", r.Status)
	}
	ts.key = "acn_wrong"
	if r := ts.do(http.MethodGet, "/v1/jobs", nil); r.Status != http.StatusUnauthorized {
		t.Errorf("a wrong token: %d", r.Status)
	}
	ts.key = alice
	module := ts.putModule(digestGuest)
	job := ts.submit(api.JobRequest{Module: module})
	ts.wait(job.ID)

	ts.key = bob
	for _, path := range []string{"/v1/jobs/" + job.ID, "/v1/jobs/" + job.ID + "/result", "/v1/blobs/" + module, "/v1/modules/" + module} {
		if r := ts.do(http.MethodGet, path, nil); r.Status != http.StatusNotFound {
			t.Errorf("bob GET %s: %d, want 404", path, r.Status)
		}
	}
	if r := ts.json(http.MethodPost, "/v1/jobs", api.JobRequest{Module: module}); r.Status != http.StatusNotFound {
		t.Errorf("bob runs alice's module: %d %s", r.Status, r.Body)
	}
	if r := ts.do(http.MethodDelete, "/v1/jobs/"+job.ID, nil); r.Status != http.StatusNotFound {
		t.Errorf("bob cancels alice's job: %d", r.Status)
	}
	ts.key = reader
	if p := ts.do(http.MethodPut, "/v1/modules", []byte("\x00asm"), "Content-Type", "application/wasm").problem(t); p.Kind() != "forbidden" {
		t.Errorf("upload without the scope: %+v", p)
	}
	if r := ts.do(http.MethodGet, "/v1/jobs?all=1", nil); r.Status != http.StatusForbidden {
		t.Errorf("every key's jobs without admin: %d", r.Status)
	}
	data, _ := io.ReadAll(io.LimitReader(bytes.NewReader(mustRead(t, filepath.Join(ts.Dir, "keys.json"))), 1<<20))
	for _, token := range []string{alice, bob, reader} {
		if bytes.Contains(data, []byte(token)) {
			t.Error("keys.json holds a token, not only its hash")
		}
	}
}

func TestQueueFull(t *testing.T) {
	ts := startServer(t, serverOpts{limits: func(l *server.Limits) { l.Workers = 1; l.Queue = 1 }})
	long := ts.putModule(longGuest)
	first := ts.submit(api.JobRequest{Module: long}, "Idempotency-Key", "first")
	var full response
	for range 5 {
		full = ts.json(http.MethodPost, "/v1/jobs", api.JobRequest{Module: long})
		if full.Status == http.StatusTooManyRequests {
			break
		}
	}
	if p := full.problem(t); p.Kind() != "queue-full" || full.Header.Get("Retry-After") == "" {
		t.Errorf("a full queue answered %d %s (Retry-After %q)", full.Status, full.Body, full.Header.Get("Retry-After"))
	}
	// A request sent again under its Idempotency-Key gets its job, full
	// queue or not.
	if again := ts.submit(api.JobRequest{Module: long}, "Idempotency-Key", "first"); again.ID != first.ID {
		t.Errorf("the keyed request sent again made job %s, want %s", again.ID, first.ID)
	}
	ts.wait(first.ID)
}

func TestQuota(t *testing.T) {
	ts := startServer(t, serverOpts{limits: func(l *server.Limits) { l.Workers = 1; l.Quota = server.Quota{Jobs: 1, Bytes: 8 << 20} }})
	long := ts.putModule(longGuest)
	first := ts.submit(api.JobRequest{Module: long})
	r := ts.json(http.MethodPost, "/v1/jobs", api.JobRequest{Module: long, Args: []string{"2"}})
	if p := r.problem(t); p.Kind() != "quota" || r.Header.Get("Retry-After") == "" {
		t.Errorf("a second job over a quota of one: %d %s", r.Status, r.Body)
	}
	// Bytes: the module took about 3 MiB of the 8.
	if p := ts.json(http.MethodPost, "/v1/uploads", api.NewUpload{Size: 6 << 20}).problem(t); p.Kind() != "quota" {
		t.Errorf("an upload past the byte quota: %+v", p)
	}
	ts.wait(first.ID)
}

// TestShutdownRequeues stops a server while a job runs, with no grace: the
// job stays in the store and runs, once, after the next start.
func TestShutdownRequeues(t *testing.T) {
	ts := startServer(t, serverOpts{limits: func(l *server.Limits) { l.Workers = 1 }})
	long := ts.putModule(longGuest)
	digest := ts.putModule(digestGuest)
	running := ts.submit(api.JobRequest{Module: long})
	queued := ts.submit(api.JobRequest{Module: digest})
	for {
		var j api.Job
		ts.do(http.MethodGet, "/v1/jobs/"+running.ID, nil).decode(t, &j)
		if j.Status == api.Running {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ts.Shutdown(ctx); err == nil {
		t.Error("a shutdown with no grace while a job runs reported nothing stopped")
	}
	if r := ts.json(http.MethodPost, "/v1/jobs", api.JobRequest{Module: digest}); r.Status != http.StatusServiceUnavailable {
		t.Errorf("a job sent while shutting down: %d", r.Status)
	}
	ts.stop()

	again := startServer(t, serverOpts{dir: ts.Dir})
	for _, id := range []string{running.ID, queued.ID} {
		j := again.wait(id)
		if j.Status != api.Done || j.Result == nil || j.Result.ExitCode != 0 {
			t.Errorf("job %s after the restart: %+v", id, j)
		}
	}
	var j api.Job
	again.do(http.MethodGet, "/v1/jobs/"+running.ID, nil).decode(t, &j)
	if j.Node.Attempts != 1 {
		t.Errorf("the interrupted job has %d recorded runs, want 1: the run cut short leaves none", j.Node.Attempts)
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	data, err := io.ReadAll(must(openFile(path)))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestInvokeReplicas sends one keyed invoke from many clients at once, as
// the replicas of an Internet Computer subnet do: the guest runs once,
// every client gets the same bytes, and the job is recorded once.
func TestInvokeReplicas(t *testing.T) {
	ts := startServer(t, serverOpts{})
	module := ts.putModule(digestGuest)
	const replicas = 13
	bodies := make([][]byte, replicas)
	ids := make([]string, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() {
			r := ts.json(http.MethodPost, "/v1/invoke", api.JobRequest{Module: module, Args: []string{"call-7"}}, "Idempotency-Key", "call-7")
			if r.Status != http.StatusOK {
				t.Errorf("replica %d: %d %s", i, r.Status, r.Body)
			}
			bodies[i], ids[i] = r.Body, r.Header.Get("Accelnode-Job")
		})
	}
	wg.Wait()
	for i := range replicas {
		if !bytes.Equal(bodies[i], bodies[0]) || ids[i] != ids[0] {
			t.Errorf("replica %d got job %s and\n%s\nreplica 0 job %s and\n%s", i, ids[i], bodies[i], ids[0], bodies[0])
		}
	}
	// The job is recorded once, soon after the answers.
	var list struct{ Jobs []api.Job }
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		ts.do(http.MethodGet, "/v1/jobs", nil).decode(t, &list)
		if len(list.Jobs) > 0 {
			break
		}
	}
	if len(list.Jobs) != 1 || list.Jobs[0].ID != ids[0] || list.Jobs[0].Status != api.Done {
		t.Fatalf("jobs recorded: %+v", list.Jobs)
	}
	m := ts.do(http.MethodGet, "/metrics", nil)
	if !bytes.Contains(m.Body, []byte(`accelnode_jobs_total{backend="ref",mode="strict",status="done"} 1`+"\n")) {
		t.Errorf("the guest did not run exactly once:\n%s", m.Body)
	}
	// digest makes one matmul; all its tensors are gone once it ends.
	for _, want := range []string{`accelnode_host_calls_total{function="matmul"} 1` + "\n", `accelnode_live_tensors{backend="ref"} 0` + "\n", `accelnode_live_tensor_bytes{backend="ref"} 0` + "\n"} {
		if !bytes.Contains(m.Body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Sent again later, the key finds the stored job; another request
	// under it is refused.
	r := ts.json(http.MethodPost, "/v1/invoke", api.JobRequest{Module: module, Args: []string{"call-7"}}, "Idempotency-Key", "call-7")
	if r.Status != http.StatusOK || !bytes.Equal(r.Body, bodies[0]) {
		t.Errorf("the keyed invoke sent again: %d %s", r.Status, r.Body)
	}
	if p := ts.json(http.MethodPost, "/v1/invoke", api.JobRequest{Module: module}, "Idempotency-Key", "call-7").problem(t); p.Kind() != "conflict" {
		t.Errorf("another request under the key: %+v", p)
	}
}

// TestModuleCacheBound keeps one compiled module in memory and runs jobs
// of two, in turns: each job compiles its module again when the other
// pushed it out, and every job succeeds.
func TestModuleCacheBound(t *testing.T) {
	ts := startServer(t, serverOpts{limits: func(l *server.Limits) { l.Modules = 1 }})
	tiny := ts.do(http.MethodPut, "/v1/modules", tinyModule(), "Content-Type", "application/wasm")
	var b api.Blob
	tiny.decode(t, &b)
	digest := ts.putModule(digestGuest)
	var wg sync.WaitGroup
	for i := range 12 {
		module := digest
		if i%2 == 0 {
			module = b.SHA256
		}
		wg.Go(func() {
			r := ts.json(http.MethodPost, "/v1/invoke", api.JobRequest{Module: module})
			var res api.JobResult
			r.decode(t, &res)
			if r.Status != http.StatusOK || res.ExitCode != 0 || res.Outcome != "exited" {
				t.Errorf("job %d of module %s: %d %s", i, module[:8], r.Status, r.Body)
			}
		})
	}
	wg.Wait()
}
