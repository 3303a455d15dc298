package oip_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/accelnode/accelnode/models/modeltest"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/accelnode/accelnode/accel"
	_ "github.com/accelnode/accelnode/accel/ort"
	_ "github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/models/onnx"
	"github.com/accelnode/accelnode/node"
	"github.com/accelnode/accelnode/server/oip"
)

// The models the tests serve, built here with the ONNX codec.

// fixtures are the models by name: the cnn, relu (which every backend
// runs), cast, an INT32 input cast to FLOAT, which only a backend that
// runs ONNX natively runs, and cast64, whose INT64 input no tensor of the
// node can pass.
var fixtures = map[string][]byte{
	"cnn":    modeltest.CNN(1),
	"relu":   modeltest.Unary("Relu", onnx.Float, nil),
	"cast":   modeltest.Unary("Cast", onnx.Int32, nil, onnx.IntAttr("to", onnx.Float)),
	"cast64": modeltest.Unary("Cast", onnx.Int64, nil, onnx.IntAttr("to", onnx.Float)),
}

// openNode opens a node on backend holding the named fixtures.
func openNode(t testing.TB, backend string, names ...string) *node.Node {
	t.Helper()
	dir := t.TempDir()
	cfg := node.Config{Backend: backend}
	for _, name := range names {
		path := filepath.Join(dir, name+".onnx")
		if err := os.WriteFile(path, fixtures[name], 0o644); err != nil {
			t.Fatal(err)
		}
		cfg.Models = append(cfg.Models, node.ModelFile{Name: name, Path: path})
	}
	n, err := node.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// modelPath runs a model as a guest's model_run does: the input as a
// tensor of a session on backend b, models.Model.Run, the outputs read
// back, by name.
func modelPath(t testing.TB, n *node.Node, b accel.Backend, mode accel.Mode, name string, x []float32, shape ...int) map[string][]float32 {
	t.Helper()
	m, err := n.Models().Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := accel.NewSession(b, mode, accel.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, err := s.FromFloat32(x, shape...)
	if err != nil {
		t.Fatal(err)
	}
	outs, err := m.Run(context.Background(), s, []*accel.Tensor{in})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]float32{}
	for i, o := range outs {
		if got[m.Outputs[i].Name], err = s.Float32(o); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

// The OpenAPI document, loaded and checked once.
var (
	specOnce sync.Once
	spec     *openapi3.T
	router   routers.Router
	specErr  error
)

func loadSpec(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	specOnce.Do(func() {
		loader := openapi3.NewLoader()
		if spec, specErr = loader.LoadFromData(oip.OpenAPI()); specErr != nil {
			return
		}
		if specErr = spec.Validate(loader.Context); specErr != nil {
			return
		}
		router, specErr = gorillamux.NewRouter(spec)
	})
	if specErr != nil {
		t.Fatalf("the OpenAPI document: %v", specErr)
	}
	return spec, router
}

// client sends requests to a server and validates every request and
// response against the OpenAPI document.
type client struct {
	t    testing.TB
	base string
	hc   *http.Client
}

func serve(t testing.TB, n *node.Node, opts oip.Options) *client {
	t.Helper()
	loadSpec(t)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	srv := httptest.NewServer(oip.Handler(n, opts))
	t.Cleanup(srv.Close)
	return &client{t: t, base: srv.URL, hc: srv.Client()}
}

// response is what came back.
type response struct {
	status int
	header http.Header
	body   []byte
}

// errorText is the error member of an error body, failing the test if the
// body is not one.
func (r response) errorText(t testing.TB) string {
	t.Helper()
	var e struct {
		Error *string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == nil || *e.Error == "" {
		t.Fatalf("status %d: the body is not an error object: %q", r.status, r.body)
	}
	return *e.Error
}

// do sends a request. valid says whether the request should pass the
// document's validation: a request a test makes malformed on purpose may
// not. Every response is validated.
func (c *client) do(method, path string, header http.Header, body []byte, valid bool) response {
	c.t.Helper()
	_, rt := loadSpec(c.t)
	vreq, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range header {
		vreq.Header[k] = v
	}
	route, params, routeErr := rt.FindRoute(vreq)
	var input *openapi3filter.RequestValidationInput
	if routeErr == nil {
		input = &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		err = openapi3filter.ValidateRequest(context.Background(), input)
		if err == nil {
			err = c.validateBinaryHeader(header, body, "inference_request")
		}
	} else {
		err = routeErr
	}
	switch {
	case valid && err != nil:
		c.t.Errorf("%s %s: the request does not follow the OpenAPI document: %v", method, path, err)
	case !valid && err == nil:
		c.t.Errorf("%s %s: the malformed request passes the OpenAPI document's validation", method, path)
	}

	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, body: got}
	if routeErr != nil {
		return r // a route the document lacks: only its error body can be checked, by the caller
	}
	input.Request, _ = http.NewRequest(method, c.base+path, bytes.NewReader(body))
	for k, v := range header {
		input.Request.Header[k] = v
	}
	if err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: input,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(got)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}); err != nil {
		c.t.Errorf("%s %s: the response (%d) does not follow the OpenAPI document: %v\n%.500s", method, path, resp.StatusCode, err, got)
	}
	if err := c.validateBinaryHeader(resp.Header, got, "inference_response"); err != nil && resp.StatusCode == http.StatusOK {
		c.t.Errorf("%s %s: the response's JSON object does not follow the OpenAPI document: %v", method, path, err)
	}
	return r
}

// validateBinaryHeader validates the JSON object at the start of a body
// with binary tensor data against the named schema: OpenAPI describes the
// whole body only as bytes.
func (c *client) validateBinaryHeader(header http.Header, body []byte, schema string) error {
	v := header.Get("Inference-Header-Content-Length")
	if v == "" {
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > len(body) {
		return fmt.Errorf("Inference-Header-Content-Length %q for a body of %d bytes", v, len(body))
	}
	var obj any
	if err := json.Unmarshal(body[:n], &obj); err != nil {
		return err
	}
	doc, _ := loadSpec(c.t)
	return doc.Components.Schemas[schema].Value.VisitJSON(obj, openapi3.EnableJSONSchema2020())
}

// on returns the client reporting to t, a subtest's.
func (c *client) on(t testing.TB) *client {
	d := *c
	d.t = t
	return &d
}

func (c *client) get(path string) response {
	c.t.Helper()
	return c.do(http.MethodGet, path, nil, nil, true)
}

var jsonHeader = http.Header{"Content-Type": {"application/json"}}

// postJSON posts v, marshalled, as an inference request.
func (c *client) postJSON(path string, v any) response {
	c.t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.do(http.MethodPost, path, jsonHeader, body, true)
}

// postBinary posts the JSON object v followed by data, with the binary
// tensor data extension's header.
func (c *client) postBinary(path string, v any, data ...[]byte) response {
	c.t.Helper()
	head, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	body := append(slices.Clone(head), bytes.Join(data, nil)...)
	h := http.Header{"Content-Type": {"application/octet-stream"}, "Inference-Header-Content-Length": {strconv.Itoa(len(head))}}
	return c.do(http.MethodPost, path, h, body, true)
}

// The response's JSON form, as tests read it.
type inferResponse struct {
	ModelName    string  `json:"model_name"`
	ModelVersion string  `json:"model_version"`
	ID           *string `json:"id"`
	Outputs      []struct {
		Name       string         `json:"name"`
		Shape      []int          `json:"shape"`
		Datatype   string         `json:"datatype"`
		Parameters map[string]int `json:"parameters"`
		Data       []any          `json:"data"`
	} `json:"outputs"`
}

// outputs decodes a successful inference response, JSON or binary, into
// each output's shape and values by name.
func outputs(t testing.TB, r response) (inferResponse, map[string][]float32, map[string][]int) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	head, tail := r.body, []byte(nil)
	if v := r.header.Get("Inference-Header-Content-Length"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n > len(r.body) {
			t.Fatalf("Inference-Header-Content-Length %q", v)
		}
		head, tail = r.body[:n], r.body[n:]
		if ct := r.header.Get("Content-Type"); ct != "application/octet-stream" {
			t.Errorf("a binary response's Content-Type is %q", ct)
		}
	} else if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("a JSON response's Content-Type is %q", ct)
	}
	var resp inferResponse
	if err := json.Unmarshal(head, &resp); err != nil {
		t.Fatalf("%v: %s", err, head)
	}
	vals, shapes := map[string][]float32{}, map[string][]int{}
	for _, o := range resp.Outputs {
		if o.Datatype != "FP32" {
			t.Errorf("output %s is %s", o.Name, o.Datatype)
		}
		shapes[o.Name] = o.Shape
		if size, ok := o.Parameters["binary_data_size"]; ok {
			if o.Data != nil || size > len(tail) {
				t.Fatalf("output %s: binary_data_size %d with %d bytes left, data %v", o.Name, size, len(tail), o.Data)
			}
			vals[o.Name] = accel.DecodeFloat32(tail[:size])
			tail = tail[size:]
			continue
		}
		v := make([]float32, len(o.Data))
		for i, e := range o.Data {
			switch e := e.(type) {
			case float64:
				v[i] = float32(e)
			case string:
				f, err := strconv.ParseFloat(e, 32)
				if err != nil {
					t.Fatalf("output %s[%d] = %q", o.Name, i, e)
				}
				v[i] = float32(f)
			default:
				t.Fatalf("output %s[%d] = %v", o.Name, i, e)
			}
		}
		vals[o.Name] = v
	}
	if len(tail) != 0 {
		t.Errorf("%d bytes of binary data no output claims", len(tail))
	}
	return resp, vals, shapes
}

func sameBits(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

// nested writes x [batch,1,28,28] in its natural nested form.
func nested(x []float32, batch int) any {
	out := make([][][][]float32, batch)
	for b := range out {
		out[b] = [][][]float32{make([][]float32, 28)}
		for r := range 28 {
			out[b][0][r] = x[(b*28+r)*28 : (b*28+r+1)*28]
		}
	}
	return out
}

func TestHealthAndMetadata(t *testing.T) {
	n := openNode(t, "ref", "cnn", "relu")
	c := serve(t, n, oip.Options{Version: "1.2.3"})
	for _, path := range []string{"/v2/health/live", "/v2/health/ready", "/v2/models/cnn/ready", "/v2/models/relu/ready"} {
		if r := c.get(path); r.status != http.StatusOK || len(r.body) != 0 {
			t.Errorf("%s: %d %q, want 200 and no body", path, r.status, r.body)
		}
	}

	r := c.get("/v2")
	var server struct {
		Name       string   `json:"name"`
		Version    string   `json:"version"`
		Extensions []string `json:"extensions"`
	}
	if err := json.Unmarshal(r.body, &server); err != nil || r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if server.Name != "accelnode" || server.Version != "1.2.3" || !slices.Contains(server.Extensions, "binary_tensor_data") {
		t.Errorf("server metadata %+v", server)
	}

	info, _ := n.ModelInfo("cnn")
	type tensor struct {
		Name     string  `json:"name"`
		Datatype string  `json:"datatype"`
		Shape    []int64 `json:"shape"`
	}
	var meta struct {
		Name     string   `json:"name"`
		Versions []string `json:"versions"`
		Platform string   `json:"platform"`
		Inputs   []tensor `json:"inputs"`
		Outputs  []tensor `json:"outputs"`
	}
	for _, path := range []string{"/v2/models/cnn", "/v2/models/cnn/versions/" + info.SHA256, "/v2/models/" + info.SHA256} {
		r := c.get(path)
		if err := json.Unmarshal(r.body, &meta); err != nil || r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
		want := []tensor{{"logits", "FP32", []int64{-1, 10}}, {"probs", "FP32", []int64{-1, 10}}}
		if meta.Name != "cnn" || !slices.Equal(meta.Versions, []string{info.SHA256}) || meta.Platform != "onnx_onnxv1" ||
			len(meta.Inputs) != 1 || meta.Inputs[0].Name != "x" || meta.Inputs[0].Datatype != "FP32" || !slices.Equal(meta.Inputs[0].Shape, []int64{-1, 1, 28, 28}) ||
			len(meta.Outputs) != 2 || meta.Outputs[0].Name != want[0].Name || !slices.Equal(meta.Outputs[1].Shape, want[1].Shape) {
			t.Errorf("%s: %+v", path, meta)
		}
	}
	if r := c.get("/v2/models/cnn/versions/" + info.SHA256 + "/ready"); r.status != http.StatusOK {
		t.Errorf("ready at its version: %d %s", r.status, r.body)
	}

	r = c.get("/v2/openapi.json")
	if r.status != http.StatusOK || !bytes.Equal(r.body, oip.OpenAPI()) || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("openapi.json: %d, %d bytes, %s", r.status, len(r.body), r.header.Get("Content-Type"))
	}

	for _, c2 := range []struct {
		path   string
		status int
		match  string
	}{
		{"/v2/models/nope", http.StatusNotFound, `"nope"`},
		{"/v2/models/nope/ready", http.StatusNotFound, `"nope"`},
		{"/v2/models/cnn/versions/1", http.StatusNotFound, "no version"},
		{"/v2/models/cnn/versions/1/ready", http.StatusNotFound, "no version"},
	} {
		r := c.get(c2.path)
		if r.status != c2.status || !strings.Contains(r.errorText(t), c2.match) {
			t.Errorf("%s: %d %s, want %d with %q", c2.path, r.status, r.body, c2.status, c2.match)
		}
	}

	// Routes the document does not have.
	r = c.do(http.MethodGet, "/v2/nowhere", nil, nil, false)
	if r.status != http.StatusNotFound || !strings.Contains(r.errorText(t), "no such route") {
		t.Errorf("unknown route: %d %s", r.status, r.body)
	}
	r = c.do(http.MethodPost, "/v2/health/live", nil, nil, false)
	if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET" || !strings.Contains(r.errorText(t), "takes GET") {
		t.Errorf("POST to a GET route: %d %v %s", r.status, r.header, r.body)
	}
	r = c.do(http.MethodGet, "/v2/models/cnn/infer", nil, nil, false)
	if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" {
		t.Errorf("GET to infer: %d %v %s", r.status, r.header, r.body)
	}
}

// TestNotReady serves a model the backend cannot run: the model and the
// server are not ready, and say why; the others still are.
func TestNotReady(t *testing.T) {
	c := serve(t, openNode(t, "ref", "cnn", "cast"), oip.Options{})
	for _, path := range []string{"/v2/health/ready", "/v2/models/cast/ready"} {
		r := c.get(path)
		if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(t), "cannot run on ref") {
			t.Errorf("%s: %d %s, want 400 saying why", path, r.status, r.body)
		}
	}
	if r := c.get("/v2/models/cnn/ready"); r.status != http.StatusOK {
		t.Errorf("cnn: %d %s", r.status, r.body)
	}
	r := c.get("/v2/models/cast")
	if r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`"inputs":[{"name":"x","datatype":"INT32","shape":[-1]}]`)) {
		t.Errorf("cast metadata: %d %s", r.status, r.body)
	}
	r = c.postJSON("/v2/models/cast/infer", map[string]any{"inputs": []any{map[string]any{"name": "x", "shape": []int{2}, "datatype": "INT32", "data": []int{1, 2}}}})
	if r.status != http.StatusNotImplemented || !strings.Contains(r.errorText(t), "cannot run on ref") {
		t.Errorf("infer: %d %s", r.status, r.body)
	}
}

// TestInfer infers with JSON tensors, flat and nested, and with binary
// data in every combination, and checks every result bit for bit against
// the model path a guest's model_run takes, in strict mode on ref.
func TestInfer(t *testing.T) {
	n := openNode(t, "ref", "cnn", "relu")
	c := serve(t, n, oip.Options{})
	const batch = 2
	x := modeltest.Images(batch)
	want := modelPath(t, n, n.Backend(), accel.Strict, "cnn", x, batch, 1, 28, 28)
	info, _ := n.ModelInfo("cnn")
	shape := []int{batch, 1, 28, 28}
	check := func(what string, r response, names ...string) inferResponse {
		t.Helper()
		resp, vals, shapes := outputs(t, r)
		if resp.ModelName != "cnn" || resp.ModelVersion != info.SHA256 {
			t.Errorf("%s: model %q version %q", what, resp.ModelName, resp.ModelVersion)
		}
		var got []string
		for _, o := range resp.Outputs {
			got = append(got, o.Name)
		}
		if !slices.Equal(got, names) {
			t.Fatalf("%s: outputs %v, want %v", what, got, names)
		}
		for _, name := range names {
			if !sameBits(vals[name], want[name]) || !slices.Equal(shapes[name], []int{batch, 10}) {
				t.Errorf("%s: %s %v differs from the model path:\n got %v\nwant %v", what, name, shapes[name], vals[name], want[name])
			}
		}
		return resp
	}
	in := func(data any, params map[string]any) map[string]any {
		m := map[string]any{"name": "x", "shape": shape, "datatype": "FP32"}
		if data != nil {
			m["data"] = data
		}
		if params != nil {
			m["parameters"] = params
		}
		return m
	}
	xb := accel.EncodeFloat32(x)

	resp := check("flat JSON", c.postJSON("/v2/models/cnn/infer", map[string]any{"id": "42", "inputs": []any{in(x, nil)}}), "logits", "probs")
	if resp.ID == nil || *resp.ID != "42" {
		t.Errorf("id %v, want 42 echoed", resp.ID)
	}
	resp = check("nested JSON", c.postJSON("/v2/models/cnn/versions/"+info.SHA256+"/infer", map[string]any{"inputs": []any{in(nested(x, batch), nil)}}), "logits", "probs")
	if resp.ID != nil {
		t.Errorf("id %q for a request without one", *resp.ID)
	}
	check("outputs empty", c.postJSON("/v2/models/cnn/infer", map[string]any{"inputs": []any{in(x, nil)}, "outputs": []any{}}), "logits", "probs")
	check("one output", c.postJSON("/v2/models/cnn/infer", map[string]any{"inputs": []any{in(x, nil)}, "outputs": []any{map[string]any{"name": "probs"}}}), "probs")
	check("outputs reordered", c.postJSON("/v2/models/cnn/infer", map[string]any{"inputs": []any{in(x, nil)}, "outputs": []any{map[string]any{"name": "probs"}, map[string]any{"name": "logits"}}}), "probs", "logits")

	r := c.postBinary("/v2/models/cnn/infer", map[string]any{"id": "b", "inputs": []any{in(nil, map[string]any{"binary_data_size": len(xb)})}, "parameters": map[string]any{"binary_data_output": true}}, xb)
	check("binary in and out", r, "logits", "probs")
	if !strings.Contains(string(r.body), `"binary_data_size":80`) {
		t.Errorf("binary response lacks binary_data_size: %.300s", r.body)
	}
	check("binary in, JSON out", c.postBinary("/v2/models/cnn/infer", map[string]any{"inputs": []any{in(nil, map[string]any{"binary_data_size": len(xb)})}}, xb), "logits", "probs")
	check("JSON in, one output binary", c.postJSON("/v2/models/cnn/infer", map[string]any{"inputs": []any{in(x, nil)},
		"outputs": []any{map[string]any{"name": "logits", "parameters": map[string]any{"binary_data": true}}, map[string]any{"name": "probs"}}}), "logits", "probs")
	check("binary_data overrides binary_data_output", c.postJSON("/v2/models/cnn/infer", map[string]any{"inputs": []any{in(x, nil)},
		"parameters": map[string]any{"binary_data_output": true},
		"outputs":    []any{map[string]any{"name": "logits", "parameters": map[string]any{"binary_data": false}}, map[string]any{"name": "probs"}}}), "logits", "probs")
}

// TestNonFinite sends and receives NaN and infinities, as JSON strings and
// as binary data.
func TestNonFinite(t *testing.T) {
	n := openNode(t, "ref", "relu")
	c := serve(t, n, oip.Options{})
	data := []any{"NaN", "Infinity", "-Infinity", -1.5, 2.5, 0}
	r := c.postJSON("/v2/models/relu/infer", map[string]any{"inputs": []any{map[string]any{"name": "x", "shape": []int{6}, "datatype": "FP32", "data": data}}})
	if r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`"data":["NaN","Infinity",0,0,2.5,0]`)) {
		t.Errorf("%d %s", r.status, r.body)
	}
	x := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), -1.5, 2.5, 0}
	r = c.postBinary("/v2/models/relu/infer", map[string]any{"inputs": []any{map[string]any{"name": "x", "shape": []int{6}, "datatype": "FP32", "parameters": map[string]any{"binary_data_size": 24}}},
		"outputs": []any{map[string]any{"name": "y", "parameters": map[string]any{"binary_data": true}}}}, accel.EncodeFloat32(x))
	_, vals, _ := outputs(t, r)
	want := modelPath(t, n, n.Backend(), accel.Strict, "relu", x, 6)["y"]
	if !sameBits(vals["y"], want) || !math.IsNaN(float64(vals["y"][0])) || !math.IsInf(float64(vals["y"][1]), 1) {
		t.Errorf("binary: %v, want %v", vals["y"], want)
	}
}

// TestInferOnORT serves from ONNX Runtime in fast mode: the cnn natively,
// equal to the model path there, and the INT32 cast model.
func TestInferOnORT(t *testing.T) {
	n := openNode(t, "ref", "cnn", "cast")
	b, ok := n.Registry().Lookup("ort")
	if !ok || !b.Status().Available {
		t.Skip("ONNX Runtime is unavailable here (make deps fetches it)")
	}
	fast := accel.Fast
	c := serve(t, n, oip.Options{Backend: "ort", Mode: &fast})
	if r := c.get("/v2/health/ready"); r.status != http.StatusOK {
		t.Errorf("ready on ort: %d %s", r.status, r.body)
	}
	x := modeltest.Images(1)
	_, vals, _ := outputs(t, c.postJSON("/v2/models/cnn/infer", map[string]any{"inputs": []any{map[string]any{"name": "x", "shape": []int{1, 1, 28, 28}, "datatype": "FP32", "data": x}}}))
	want := modelPath(t, n, b, accel.Fast, "cnn", x, 1, 1, 28, 28)
	for _, name := range []string{"logits", "probs"} {
		if !sameBits(vals[name], want[name]) {
			t.Errorf("%s on ort differs from the model path", name)
		}
	}
	r := c.postJSON("/v2/models/cast/infer", map[string]any{"inputs": []any{map[string]any{"name": "x", "shape": []int{4}, "datatype": "INT32", "data": []any{-7, 0, 3.0, 2147483647}}}})
	if _, vals, _ := outputs(t, r); !slices.Equal(vals["y"], []float32{-7, 0, 3, 2147483647}) {
		t.Errorf("cast: %v", vals["y"])
	}
	ib := accel.EncodeInt32([]int32{5, -5})
	r = c.postBinary("/v2/models/cast/infer", map[string]any{"inputs": []any{map[string]any{"name": "x", "shape": []int{2}, "datatype": "INT32", "parameters": map[string]any{"binary_data_size": 8}}}}, ib)
	if _, vals, _ := outputs(t, r); !slices.Equal(vals["y"], []float32{5, -5}) {
		t.Errorf("cast, binary: %v", vals["y"])
	}
}

// TestBadInput sends requests that do not fit, each answered with its
// status and an error that says what is wrong; the server serves
// afterwards.
func TestBadInput(t *testing.T) {
	n := openNode(t, "ref", "cnn", "cast", "cast64")
	c := serve(t, n, oip.Options{})
	x := modeltest.Images(1)
	good := func() map[string]any {
		return map[string]any{"name": "x", "shape": []int{1, 1, 28, 28}, "datatype": "FP32", "data": x}
	}
	req := func(inputs ...map[string]any) map[string]any {
		in := make([]any, len(inputs))
		for i, m := range inputs {
			in[i] = m
		}
		return map[string]any{"inputs": in}
	}
	with := func(k string, v any) map[string]any {
		m := good()
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	binHeader := func(n int) http.Header {
		return http.Header{"Content-Type": {"application/octet-stream"}, "Inference-Header-Content-Length": {strconv.Itoa(n)}}
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	binIn := func(size any) []byte {
		return mustJSON(req(map[string]any{"name": "x", "shape": []int{1, 1, 28, 28}, "datatype": "FP32", "parameters": map[string]any{"binary_data_size": size}}))
	}
	xb := accel.EncodeFloat32(x)
	type tc struct {
		name   string
		path   string
		header http.Header
		body   []byte
		valid  bool // the request passes the OpenAPI document's validation
		status int
		match  string
	}
	cases := []tc{
		{"malformed JSON", "", nil, []byte(`{"inputs": [`), false, 400, "malformed inference request"},
		{"empty body", "", nil, nil, false, 400, "the body is empty"},
		{"two JSON values", "", nil, []byte(`{"inputs": []} {}`), true, 400, "more than one JSON value"},
		{"not an object", "", nil, []byte(`[1, 2]`), false, 400, "malformed inference request"},
		{"no inputs", "", nil, []byte(`{"id": "a"}`), false, 400, "has no inputs"},
		{"id not a string", "", nil, mustJSON(map[string]any{"id": 7, "inputs": []any{good()}}), false, 400, "id must be a string"},
		{"unknown model", "/v2/models/nope/infer", nil, mustJSON(req(good())), true, 404, `"nope"`},
		{"unknown version", "/v2/models/cnn/versions/2/infer", nil, mustJSON(req(good())), true, 404, "no version"},
		{"unknown input", "", nil, mustJSON(req(good(), map[string]any{"name": "z", "shape": []int{1}, "datatype": "FP32", "data": []int{1}})), true, 400, `no input "z"`},
		{"missing input", "", nil, mustJSON(req()), true, 400, `input "x" is missing`},
		{"input twice", "", nil, mustJSON(req(good(), good())), true, 400, "given twice"},
		{"no name", "", nil, mustJSON(req(with("name", nil))), false, 400, "input 0 has no name"},
		{"no shape", "", nil, mustJSON(req(with("shape", nil))), false, 400, `input "x" has no shape`},
		{"no datatype", "", nil, mustJSON(req(with("datatype", nil))), false, 400, `input "x" has no datatype`},
		{"no data", "", nil, mustJSON(req(with("data", nil))), false, 400, `input "x" has no data`},
		{"wrong datatype", "", nil, mustJSON(req(with("datatype", "INT32"))), true, 400, `input "x" is INT32; the model declares it FP32`},
		{"another datatype the node lacks", "", nil, mustJSON(req(with("datatype", "INT64"))), true, 400, `input "x" is INT64; the model declares it FP32`},
		{"datatype the node lacks", "/v2/models/cast64/infer", nil, []byte(`{"inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[1]}]}`), true, 400, "datatype INT64 is not supported: the node takes FP32 and INT32 tensors"},
		{"unknown datatype", "", nil, mustJSON(req(with("datatype", "FLOAT"))), false, 400, `unknown datatype "FLOAT"`},
		{"wrong shape", "", nil, mustJSON(req(with("shape", []int{1, 784}))), true, 400, "want [batchx1x28x28]"},
		{"shape and data differ", "", nil, mustJSON(req(with("data", x[:10]))), true, 400, "data has 10 elements; its shape holds 784"},
		{"too much data", "", nil, mustJSON(req(with("data", append(slices.Clone(x), 1)))), true, 400, "more than the 784 elements"},
		{"negative dimension", "", nil, mustJSON(req(with("shape", []int{-1, 1, 28, 28}))), false, 400, "at least 1"},
		{"zero dimension", "", nil, mustJSON(req(with("shape", []int{0, 1, 28, 28}))), true, 400, "at least 1"},
		{"fractional dimension", "", nil, []byte(`{"inputs":[{"name":"x","shape":[1.5],"datatype":"FP32","data":[1]}]}`), false, 400, "not an integer"},
		{"huge dimension", "", nil, []byte(`{"inputs":[{"name":"x","shape":[99999999999999999999],"datatype":"FP32","data":[1]}]}`), true, 400, "over the node's"},
		{"too many elements", "", nil, mustJSON(req(with("shape", []int{65536, 65536}))), true, 400, "more than the node's"},
		{"too many dimensions", "", nil, mustJSON(req(with("shape", []int{1, 1, 1, 1, 1, 1, 1, 1, 1}))), true, 400, "9 dimensions"},
		{"boolean element", "", nil, mustJSON(req(with("data", []any{true}))), true, 400, "true is not an FP32 number"},
		{"string element", "", nil, mustJSON(req(with("data", []any{"one"}))), true, 400, `"one" is not an FP32 number`},
		{"null element", "", nil, []byte(`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[null]}]}`), false, 400, "null is not an FP32 number"},
		{"object element", "", nil, mustJSON(req(with("data", []any{map[string]any{}}))), false, 400, "holds an object"},
		{"data not an array", "", nil, mustJSON(req(with("data", 3))), false, 400, "must be an array"},
		{"out of FP32 range", "", nil, []byte(`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1e39]}]}`), true, 400, "out of FP32's range"},
		{"INT32 not an integer", "/v2/models/cast/infer", nil, []byte(`{"inputs":[{"name":"x","shape":[2],"datatype":"INT32","data":[1, 2.5]}]}`), true, 400, "2.5 is not an INT32 integer"},
		{"INT32 out of range", "/v2/models/cast/infer", nil, []byte(`{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":[2147483648]}]}`), true, 400, "not an INT32 integer"},
		{"unknown output", "", nil, mustJSON(map[string]any{"inputs": []any{good()}, "outputs": []any{map[string]any{"name": "y"}}}), true, 400, `no output "y"`},
		{"output twice", "", nil, mustJSON(map[string]any{"inputs": []any{good()}, "outputs": []any{map[string]any{"name": "probs"}, map[string]any{"name": "probs"}}}), true, 400, "asked for twice"},
		{"output without a name", "", nil, mustJSON(map[string]any{"inputs": []any{good()}, "outputs": []any{map[string]any{}}}), false, 400, "output 0 has no name"},
		{"binary_data not a boolean", "", nil, mustJSON(map[string]any{"inputs": []any{good()}, "outputs": []any{map[string]any{"name": "probs", "parameters": map[string]any{"binary_data": "yes"}}}}), false, 400, "must be true or false"},
		{"binary_data_output not a boolean", "", nil, mustJSON(map[string]any{"inputs": []any{good()}, "parameters": map[string]any{"binary_data_output": 1}}), false, 400, "must be true or false"},
		{"parameter of another type", "", nil, mustJSON(map[string]any{"inputs": []any{good()}, "parameters": map[string]any{"p": []int{1}}}), false, 400, "a parameter is a string, a number or a boolean"},
		{"binary size without the header", "", nil, binIn(len(xb)), true, 400, "no Inference-Header-Content-Length header"},
		{"binary size of another type", "", binHeader(len(binIn("x"))), append(binIn("x"), xb...), false, 400, "must be a non-negative integer"},
		{"binary size wrong", "", binHeader(len(binIn(100))), append(binIn(100), xb...), true, 400, "takes 3136 bytes; binary_data_size is 100"},
		{"binary data short", "", binHeader(len(binIn(len(xb)))), append(binIn(len(xb)), xb[:100]...), true, 400, "only 100 bytes of binary data are left"},
		{"binary data left over", "", binHeader(len(binIn(len(xb)))), append(append(binIn(len(xb)), xb...), 1, 2, 3), true, 400, "3 bytes of binary data follow"},
		{"data and binary size", "", binHeader(len(mustJSON(req(with("parameters", map[string]any{"binary_data_size": len(xb)}))))),
			append(mustJSON(req(with("parameters", map[string]any{"binary_data_size": len(xb)}))), xb...), true, 400, "both data and binary_data_size"},
		{"header length over the body", "", binHeader(1 << 20), mustJSON(req(good())), false, 400, "is not a length between 0 and the body's"},
		{"header length not a number", "", http.Header{"Content-Type": {"application/octet-stream"}, "Inference-Header-Content-Length": {"ten"}}, mustJSON(req(good())), false, 400, `"ten" is not a length`},
		{"header length cuts the JSON", "", binHeader(10), mustJSON(req(good())), false, 400, "malformed inference request"},
		{"a model the backend cannot run", "/v2/models/cast/infer", nil, []byte(`{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":[1]}]}`), true, 501, "cannot run on ref"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path == "" {
				path = "/v2/models/cnn/infer"
			}
			h := tc.header
			if h == nil {
				h = jsonHeader
			}
			r := c.on(t).do(http.MethodPost, path, h, tc.body, tc.valid)
			if msg := r.errorText(t); r.status != tc.status || !strings.Contains(msg, tc.match) {
				t.Errorf("%d %q, want %d with %q", r.status, msg, tc.status, tc.match)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("error Content-Type %q", ct)
			}
		})
	}
	if _, vals, _ := outputs(t, c.postJSON("/v2/models/cnn/infer", req(good()))); len(vals["probs"]) != 10 {
		t.Errorf("after the bad requests: %v", vals)
	}
}

// TestLimits checks the body limit and the node's limits per inference.
func TestLimits(t *testing.T) {
	n := openNode(t, "ref", "cnn")
	x := modeltest.Images(1)
	body := map[string]any{"inputs": []any{map[string]any{"name": "x", "shape": []int{1, 1, 28, 28}, "datatype": "FP32", "data": x}}}
	for _, c := range []struct {
		name   string
		opts   oip.Options
		status int
		match  string
	}{
		{"body", oip.Options{MaxBodyBytes: 4096}, http.StatusRequestEntityTooLarge, "over the 4096-byte limit"},
		{"tensor memory", oip.Options{Limits: node.Limits{TensorMemory: 16 << 10}}, http.StatusUnprocessableEntity, "out of tensor memory"},
		{"budget", oip.Options{Limits: node.Limits{Budget: 1000}}, http.StatusUnprocessableEntity, "compute budget exhausted"},
		{"deadline", oip.Options{Limits: node.Limits{Timeout: 1}}, http.StatusGatewayTimeout, "deadline exceeded"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := serve(t, n, c.opts).postJSON("/v2/models/cnn/infer", body)
			if msg := r.errorText(t); r.status != c.status || !strings.Contains(msg, c.match) {
				t.Errorf("%d %q, want %d with %q", r.status, msg, c.status, c.match)
			}
		})
	}
}

// TestConcurrentInfers hammers one server from several clients at once;
// every answer is the same bits.
func TestConcurrentInfers(t *testing.T) {
	n := openNode(t, "ref", "cnn")
	c := serve(t, n, oip.Options{})
	x := modeltest.Images(1)
	want := modelPath(t, n, n.Backend(), accel.Strict, "cnn", x, 1, 1, 28, 28)
	xb := accel.EncodeFloat32(x)
	head := map[string]any{"inputs": []any{map[string]any{"name": "x", "shape": []int{1, 1, 28, 28}, "datatype": "FP32", "parameters": map[string]any{"binary_data_size": len(xb)}}},
		"parameters": map[string]any{"binary_data_output": true}}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 6 {
				_, vals, _ := outputs(t, c.postBinary("/v2/models/cnn/infer", head, xb))
				if !sameBits(vals["logits"], want["logits"]) || !sameBits(vals["probs"], want["probs"]) {
					t.Errorf("logits %v, want %v", vals["logits"], want["logits"])
				}
			}
		})
	}
	wg.Wait()
}

// TestDocumentCatches checks that the validation the tests rely on does
// refuse responses that break the document, so that passing it means
// something.
func TestDocumentCatches(t *testing.T) {
	_, rt := loadSpec(t)
	for _, c := range []struct {
		why, method, path string
		status            int
		body              string
	}{
		{"no platform", http.MethodGet, "/v2/models/cnn", 200, `{"name":"cnn","inputs":[],"outputs":[]}`},
		{"not a datatype", http.MethodGet, "/v2/models/cnn", 200, `{"name":"cnn","platform":"onnx_onnxv1","inputs":[{"name":"x","datatype":"FLOAT","shape":[1]}],"outputs":[]}`},
		{"no extensions", http.MethodGet, "/v2", 200, `{"name":"accelnode","version":"1"}`},
		{"neither data nor binary_data_size", http.MethodPost, "/v2/models/cnn/infer", 200, `{"model_name":"cnn","outputs":[{"name":"y","shape":[1],"datatype":"FP32"}]}`},
		{"a negative dimension", http.MethodPost, "/v2/models/cnn/infer", 200, `{"model_name":"cnn","outputs":[{"name":"y","shape":[-1],"datatype":"FP32","data":[1]}]}`},
		{"not an error object", http.MethodPost, "/v2/models/cnn/infer", 400, `{"message":"bad"}`},
		{"a status the document lacks", http.MethodGet, "/v2/health/live", 500, ``},
	} {
		req, _ := http.NewRequest(c.method, "http://127.0.0.1/"+strings.TrimPrefix(c.path, "/"), strings.NewReader(`{"inputs":[]}`))
		req.Header.Set("Content-Type", "application/json")
		route, params, err := rt.FindRoute(req)
		if err != nil {
			t.Fatal(err)
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route}
		err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: c.status,
			Header:  http.Header{"Content-Type": {"application/json"}},
			Body:    io.NopCloser(strings.NewReader(c.body)),
			Options: &openapi3filter.Options{IncludeResponseStatus: true},
		})
		if err == nil {
			t.Errorf("%s: %s %s %d %s passes validation", c.why, c.method, c.path, c.status, c.body)
		}
	}
}
