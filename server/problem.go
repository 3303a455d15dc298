package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/accelnode/accelnode/server/api"
	"github.com/accelnode/accelnode/store"
)

// problem is an error answer in the form of RFC 9457 (application/problem+json).
// Its Type is stable per kind of error, so clients can branch on it; Errno
// carries the guest errno name where one applies.
type problem struct {
	api.Problem
	retryAfter time.Duration
}

func (p *problem) Error() string { return p.Detail }

// problemTypes are the stable problem kinds, by the last part of their type
// URI, with the status and title each answers with. docs/api.md lists them.
var problemTypes = map[string]struct {
	status int
	title  string
}{
	"bad-request":       {http.StatusBadRequest, "The request is malformed"},
	"unauthorized":      {http.StatusUnauthorized, "A valid API key is required"},
	"forbidden":         {http.StatusForbidden, "The API key lacks the scope this needs"},
	"not-found":         {http.StatusNotFound, "No such resource"},
	"conflict":          {http.StatusConflict, "The request conflicts with what is stored"},
	"too-large":         {http.StatusRequestEntityTooLarge, "The request body is too large"},
	"unsupported-media": {http.StatusUnsupportedMediaType, "The body has the wrong content type"},
	"range":             {http.StatusRequestedRangeNotSatisfiable, "The Content-Range does not fit the upload"},
	"hash-mismatch":     {http.StatusUnprocessableEntity, "The bytes do not have the expected sha256"},
	"invalid-module":    {http.StatusUnprocessableEntity, "The module is not valid WebAssembly for this node"},
	"invalid-model":     {http.StatusUnprocessableEntity, "The model is not an ONNX model this node can load"},
	"invalid-job":       {http.StatusUnprocessableEntity, "The job cannot run on this node"},
	"over-limit":        {http.StatusUnprocessableEntity, "The job asks for more than this node allows"},
	"queue-full":        {http.StatusTooManyRequests, "The backend's queue is full"},
	"quota":             {http.StatusTooManyRequests, "The API key's quota is used up"},
	"session-expired":   {http.StatusGone, "The encrypted session has expired"},
	"replay":            {http.StatusConflict, "The sealed message was received before"},
	"bad-seal":          {http.StatusBadRequest, "The sealed message failed authentication"},
	"actor-limit":       {http.StatusTooManyRequests, "The actor limit is reached"},
	"actor-failed":      {http.StatusUnprocessableEntity, "The actor's call failed; the actor keeps its state from before it"},
	"unavailable":       {http.StatusServiceUnavailable, "The node is not accepting work"},
	"internal":          {http.StatusInternalServerError, "The node failed"},
}

// problemPrefix makes a problem's type URI.
const problemPrefix = api.ProblemPrefix

// newProblem makes a problem of kind with a detail.
func newProblem(kind, format string, a ...any) *problem {
	t, ok := problemTypes[kind]
	if !ok {
		panic("unknown problem kind " + kind)
	}
	return &problem{Problem: api.Problem{Type: problemPrefix + kind, Title: t.title, Status: t.status, Detail: fmt.Sprintf(format, a...)}}
}

// storeProblem maps a store error onto a problem, for what names the thing
// asked for (e.g. "job 0123…").
func storeProblem(err error, what string) *problem {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return newProblem("not-found", "%s: not found", what)
	case errors.Is(err, store.ErrHashMismatch):
		return newProblem("hash-mismatch", "%s: %v", what, err)
	case errors.Is(err, store.ErrRange):
		return newProblem("range", "%s: %v", what, err)
	case errors.Is(err, store.ErrTooLarge):
		return newProblem("too-large", "%s: %v", what, err)
	case errors.Is(err, store.ErrConflict):
		return newProblem("conflict", "%s: %v", what, err)
	case errors.Is(err, store.ErrInvalid):
		return newProblem("bad-request", "%s: %v", what, err)
	}
	return newProblem("internal", "%s: %v", what, err)
}

// writeProblem answers with p.
func writeProblem(w http.ResponseWriter, r *http.Request, p *problem) {
	p.Instance = r.URL.Path
	if p.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(max(1, p.retryAfter.Round(time.Second)/time.Second))))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	json.NewEncoder(w).Encode(p.Problem)
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		body = []byte(`{"type":"` + problemPrefix + `internal","title":"The node failed","status":500}`)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
