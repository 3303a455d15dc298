// Package oip serves the Open Inference Protocol (the KServe v2 predict
// protocol) over HTTP/REST for the models a node holds: health, server and
// model metadata, and inference with JSON tensors or with the binary tensor
// data extension. It speaks HTTP and nothing else: the node runs the models
// (node.Infer), by the path a guest's model_run takes.
//
// Handler serves every route under /v2, as full paths; a service mounts it
// for "/v2" and "/v2/" on its own mux. OpenAPI is the document of what it
// serves, also served at /v2/openapi.json. docs/api.md describes the API.
package oip

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/models"
	"github.com/accelnode/accelnode/node"
)

// openAPI is the OpenAPI 3.1 document of the routes Handler serves, written
// from the protocol's specification.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3.1 document of the API Handler serves.
func OpenAPI() []byte { return bytes.Clone(openAPI) }

// DefaultMaxBodyBytes bounds an inference request's body where Options
// gives no bound.
const DefaultMaxBodyBytes = 64 << 20

// Platform is what model metadata reports as every model's platform: the
// specification's name for an ONNX model.
const Platform = "onnx_onnxv1"

// Extensions are the protocol extensions the handler supports, as server
// metadata reports them.
var Extensions = []string{"binary_tensor_data"}

// Options configure a Handler. The zero value serves on the node's own
// backend, mode and limits.
type Options struct {
	// MaxBodyBytes bounds an inference request's body, JSON and binary
	// data together; 0 means DefaultMaxBodyBytes. A larger body is
	// refused with 413.
	MaxBodyBytes int64
	// Name and Version are what server metadata reports; empty means
	// "accelnode" and the module version the binary was built from.
	Name, Version string
	// Backend and Mode, where set, serve inferences from another backend
	// or mode of the node's registry than the node's own; readiness is
	// then theirs.
	Backend string
	Mode    *accel.Mode
	// Limits, where its fields are not zero, replace the node's for each
	// inference: tensor memory, live tensors, timeout and budget.
	Limits node.Limits
	// Logger receives server-side failures; nil means slog.Default().
	Logger *slog.Logger
}

type handler struct {
	n    *node.Node
	opts Options
	log  *slog.Logger
	mux  *http.ServeMux
}

// Handler returns the handler of the Open Inference Protocol's REST API
// for the models n holds:
//
//	GET  /v2                                   server metadata
//	GET  /v2/health/live, /v2/health/ready     liveness, readiness (all models)
//	GET  /v2/models/{name}[/versions/{v}]      model metadata
//	GET  /v2/models/{name}[/versions/{v}]/ready
//	POST /v2/models/{name}[/versions/{v}]/infer
//	GET  /v2/openapi.json                      the API's OpenAPI document
//
// A model's one version is the hex sha256 of its bytes. Errors are
// {"error": "..."} with a 4xx or 5xx status.
func Handler(n *node.Node, opts Options) http.Handler {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Name == "" {
		opts.Name = "accelnode"
	}
	if opts.Version == "" {
		opts.Version = buildVersion()
	}
	h := &handler{n: n, opts: opts, log: opts.Logger, mux: http.NewServeMux()}
	if h.log == nil {
		h.log = slog.Default()
	}
	m := h.mux
	m.HandleFunc("GET /v2", h.serverMetadata)
	m.HandleFunc("GET /v2/health/live", h.live)
	m.HandleFunc("GET /v2/health/ready", h.ready)
	m.HandleFunc("GET /v2/models/{name}", h.modelMetadata)
	m.HandleFunc("GET /v2/models/{name}/versions/{version}", h.modelMetadata)
	m.HandleFunc("GET /v2/models/{name}/ready", h.modelReady)
	m.HandleFunc("GET /v2/models/{name}/versions/{version}/ready", h.modelReady)
	m.HandleFunc("POST /v2/models/{name}/infer", h.infer)
	m.HandleFunc("POST /v2/models/{name}/versions/{version}/infer", h.infer)
	m.HandleFunc("GET /v2/openapi.json", h.openAPI)
	m.HandleFunc("/v2/", h.noRoute)
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// buildVersion is the version of the module the binary was built from.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// noRoute answers a path the API does not have with 404, and a method a
// path does not take with 405.
func (h *handler) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		if method == r.Method || (method == http.MethodGet && r.Method == http.MethodHead) {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = method
		if _, pattern := h.mux.Handler(probe); pattern != "/v2/" && pattern != "" {
			allow = append(allow, method)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", allow[0])
		h.fail(w, r, &requestError{status: http.StatusMethodNotAllowed, msg: fmt.Sprintf("%s takes %s, not %s", r.URL.Path, allow[0], r.Method)})
		return
	}
	h.fail(w, r, &requestError{status: http.StatusNotFound, msg: fmt.Sprintf("no such route: %s %s", r.Method, r.URL.Path)})
}

type serverMetadata struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Extensions []string `json:"extensions"`
}

func (h *handler) serverMetadata(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, serverMetadata{Name: h.opts.Name, Version: h.opts.Version, Extensions: Extensions})
}

func (h *handler) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(openAPI)))
	w.Write(openAPI)
}

// Health answers by status alone: 200 and an empty body for true; for
// false a 4xx with the reason.
func (h *handler) live(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
}

func (h *handler) ready(w http.ResponseWriter, r *http.Request) {
	if err := h.n.Ready(h.opts.Backend, h.opts.Mode); err != nil {
		h.fail(w, r, &requestError{status: http.StatusBadRequest, msg: "not ready: " + err.Error()})
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (h *handler) modelReady(w http.ResponseWriter, r *http.Request) {
	info, err := h.model(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.n.ModelReady(info.SHA256, h.opts.Backend, h.opts.Mode); err != nil {
		h.fail(w, r, &requestError{status: http.StatusBadRequest, msg: "not ready: " + err.Error()})
		return
	}
	w.WriteHeader(http.StatusOK)
}

// model finds the model the path names, at the version it names if any.
func (h *handler) model(r *http.Request) (node.ModelInfo, error) {
	name := r.PathValue("name")
	info, err := h.n.ModelInfo(name)
	if err != nil {
		return info, err
	}
	if v := r.PathValue("version"); v != "" && v != info.SHA256 {
		return info, &requestError{status: http.StatusNotFound, msg: fmt.Sprintf("model %q has no version %q: its one version is the sha256 of its bytes, %s", name, v, info.SHA256)}
	}
	return info, nil
}

type modelMetadata struct {
	Name     string           `json:"name"`
	Versions []string         `json:"versions"`
	Platform string           `json:"platform"`
	Inputs   []metadataTensor `json:"inputs"`
	Outputs  []metadataTensor `json:"outputs"`
}

type metadataTensor struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func (h *handler) modelMetadata(w http.ResponseWriter, r *http.Request) {
	info, err := h.model(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	tensors := func(vs []node.ValueInfo) []metadataTensor {
		out := make([]metadataTensor, len(vs))
		for i, v := range vs {
			out[i] = metadataTensor{Name: v.Name, Datatype: datatypeOf(v), Shape: v.Shape}
			if v.Shape == nil {
				out[i].Shape = []int64{} // unknown rank: no dimensions to tell
			}
		}
		return out
	}
	writeJSON(w, http.StatusOK, modelMetadata{
		Name:     info.Name,
		Versions: []string{info.SHA256},
		Platform: Platform,
		Inputs:   tensors(info.Inputs),
		Outputs:  tensors(info.Outputs),
	})
}

func (h *handler) infer(w http.ResponseWriter, r *http.Request) {
	info, err := h.model(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	declared := make(map[string]string, len(info.Inputs))
	for _, vi := range info.Inputs {
		declared[vi.Name] = datatypeOf(vi)
	}
	req, err := decodeRequest(body, r.Header.Get(headerJSONLength), declared)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	inf := node.Inference{Model: info.Name, Backend: h.opts.Backend, Mode: h.opts.Mode, Limits: h.opts.Limits}
	for _, in := range req.inputs {
		inf.Inputs = append(inf.Inputs, in.tensor)
	}
	var binaryOut []bool
	if req.outputs == nil {
		for range info.Outputs {
			binaryOut = append(binaryOut, req.binaryAll)
		}
	} else {
		inf.Outputs = []string{}
		for _, o := range req.outputs {
			inf.Outputs = append(inf.Outputs, o.name)
			binaryOut = append(binaryOut, req.binaryAll)
			if o.binary != nil {
				binaryOut[len(binaryOut)-1] = *o.binary
			}
		}
	}
	res, err := h.n.Infer(r.Context(), inf)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out, jsonLen, err := encodeResponse(wireResponse{ModelName: info.Name, ModelVersion: info.SHA256, ID: req.id}, res.Outputs, binaryOut)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	if jsonLen >= 0 {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set(headerJSONLength, strconv.Itoa(jsonLen))
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}

// statusOf is the HTTP status that answers err.
func statusOf(err error) int {
	var re *requestError
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &re):
		return re.status
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, models.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, context.Canceled), errors.Is(err, accel.ErrNoBackend):
		return http.StatusServiceUnavailable
	case errors.Is(err, accel.ErrDevice):
		return http.StatusInternalServerError
	case errors.Is(err, accel.ErrOutOfMemory), errors.Is(err, accel.ErrTooMany), errors.Is(err, engine.ErrBudgetExhausted):
		return http.StatusUnprocessableEntity
	case errors.Is(err, accel.ErrUnsupported):
		return http.StatusNotImplemented
	case errors.Is(err, accel.ErrInvalid), errors.Is(err, accel.ErrShape), errors.Is(err, accel.ErrOverflow):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// fail answers with err's status and {"error": its message}.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	msg := err.Error()
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		msg = fmt.Sprintf("the request body is over the %d-byte limit", tooLarge.Limit)
	}
	if status >= 500 {
		h.log.Warn("oip request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"cannot encode the response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}
