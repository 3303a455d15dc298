package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/models"
	"github.com/accelnode/accelnode/node"
	"github.com/accelnode/accelnode/server/api"
	"github.com/accelnode/accelnode/store"
)

// info describes the node: its backends and the limits clients must keep.
func (s *Server) info(w http.ResponseWriter, r *http.Request) {
	type backend struct {
		Name      string   `json:"name"`
		Available bool     `json:"available"`
		Modes     []string `json:"modes,omitempty"`
		Device    string   `json:"device,omitempty"`
		Reason    string   `json:"reason,omitempty"`
	}
	var bs []backend
	for _, st := range s.cfg.Node.Backends() {
		b := backend{Name: st.Name, Available: st.Available, Device: st.Device, Reason: st.Reason}
		for _, m := range st.Modes {
			b.Modes = append(b.Modes, m.String())
		}
		bs = append(bs, b)
	}
	l := s.cfg.Limits
	writeJSON(w, http.StatusOK, map[string]any{
		"version":  s.cfg.Version,
		"backend":  s.cfg.Node.Backend().Name(),
		"mode":     s.cfg.Node.Mode().String(),
		"backends": bs,
		"key":      caller(r.Context()).Name,
		"limits": map[string]any{
			"max_body": l.MaxBody, "max_module": l.MaxModule, "max_blob": l.MaxBlob,
			"max_upload": l.MaxUpload, "max_chunk": l.MaxChunk, "max_inline_output": l.MaxInline,
			"max_wait_seconds": l.MaxWait.Seconds(), "queue": l.Queue,
		},
	})
}

// readBody reads at most limit bytes of the body, answering 413 past it.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *problem) {
	if r.ContentLength > limit {
		return nil, newProblem("too-large", "the body of %d bytes is over this route's limit of %d", r.ContentLength, limit)
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, newProblem("too-large", "the body is over this route's limit of %d bytes", limit)
		}
		return nil, newProblem("bad-request", "read the body: %v", err)
	}
	return data, nil
}

// quota answers 429 where storing more bytes would put the caller over its
// quota.
func (s *Server) quota(ctx context.Context, more int64) *problem {
	k := caller(ctx)
	q := s.cfg.Limits.Quota
	if k.Quota.Bytes > 0 {
		q.Bytes = k.Quota.Bytes
	}
	u, err := s.cfg.Store.Usage(ctx, k.Name)
	if err != nil {
		return storeProblem(err, "usage of key "+k.Name)
	}
	if u.BlobBytes+u.UploadBytes+more > q.Bytes {
		return newProblem("quota", "key %s stores %d bytes; %d more would pass its quota of %d", k.Name, u.BlobBytes+u.UploadBytes, more, q.Bytes)
	}
	return nil
}

func (s *Server) putModule(w http.ResponseWriter, r *http.Request) {
	if !need(w, r, ScopeUpload) {
		return
	}
	wasm, p := readBody(w, r, s.cfg.Limits.MaxModule)
	if p == nil && !bytes.HasPrefix(wasm, []byte("\x00asm")) {
		p = newProblem("invalid-module", "the body is not a WebAssembly binary (it lacks the \\0asm header)")
	}
	if p == nil {
		p = s.quota(r.Context(), int64(len(wasm)))
	}
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	mod, err := s.cfg.Node.Compile(r.Context(), wasm)
	if err != nil {
		writeProblem(w, r, newProblem("invalid-module", "%v", err))
		return
	}
	info, err := s.cfg.Store.PutBlob(r.Context(), caller(r.Context()).Name, bytes.NewReader(wasm), int64(len(wasm)))
	if err != nil {
		writeProblem(w, r, storeProblem(err, "module"))
		return
	}
	s.modules.put(info.Hash, mod)
	w.Header().Set("Location", "/v1/modules/"+info.Hash)
	writeJSON(w, http.StatusCreated, blobView(info))
}

// module returns owner's module hash, compiled.
func (s *Server) module(ctx context.Context, owner, hash string) (*engine.Module, error) {
	if mod := s.modules.get(hash); mod != nil {
		return mod, nil
	}
	f, _, err := s.cfg.Store.OpenBlob(ctx, owner, hash)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	wasm, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	mod, err := s.cfg.Node.Compile(ctx, wasm)
	if err != nil {
		return nil, err
	}
	s.modules.put(hash, mod)
	return mod, nil
}

func blobView(b store.BlobInfo) api.Blob {
	return api.Blob{SHA256: b.Hash, Size: b.Size, Created: b.Time}
}

func (s *Server) putBlob(w http.ResponseWriter, r *http.Request) {
	if !need(w, r, ScopeUpload) {
		return
	}
	if r.ContentLength > s.cfg.Limits.MaxBlob {
		writeProblem(w, r, newProblem("too-large", "the body of %d bytes is over the blob limit of %d; use /v1/uploads", r.ContentLength, s.cfg.Limits.MaxBlob))
		return
	}
	if p := s.quota(r.Context(), max(r.ContentLength, 0)); p != nil {
		writeProblem(w, r, p)
		return
	}
	info, err := s.cfg.Store.PutBlob(r.Context(), caller(r.Context()).Name, http.MaxBytesReader(w, r.Body, s.cfg.Limits.MaxBlob), s.cfg.Limits.MaxBlob)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			err = fmt.Errorf("%w: over %d bytes", store.ErrTooLarge, s.cfg.Limits.MaxBlob)
		}
		writeProblem(w, r, storeProblem(err, "blob"))
		return
	}
	w.Header().Set("Location", "/v1/blobs/"+info.Hash)
	writeJSON(w, http.StatusCreated, blobView(info))
}

func (s *Server) listBlobs(w http.ResponseWriter, r *http.Request) {
	list, err := s.cfg.Store.ListBlobs(r.Context(), caller(r.Context()).Name)
	if err != nil {
		writeProblem(w, r, storeProblem(err, "blobs"))
		return
	}
	out := make([]api.Blob, len(list))
	for i, b := range list {
		out[i] = blobView(b)
	}
	writeJSON(w, http.StatusOK, map[string]any{"blobs": out})
}

// isModule reports whether owner's blob hash is a WebAssembly module.
func (s *Server) isModule(ctx context.Context, owner, hash string) bool {
	f, _, err := s.cfg.Store.OpenBlob(ctx, owner, hash)
	if err != nil {
		return false
	}
	defer f.Close()
	var head [4]byte
	_, err = io.ReadFull(f, head[:])
	return err == nil && string(head[:]) == "\x00asm"
}

func (s *Server) listModules(w http.ResponseWriter, r *http.Request) {
	owner := caller(r.Context()).Name
	list, err := s.cfg.Store.ListBlobs(r.Context(), owner)
	if err != nil {
		writeProblem(w, r, storeProblem(err, "modules"))
		return
	}
	out := []api.Blob{}
	for _, b := range list {
		if s.isModule(r.Context(), owner, b.Hash) {
			out = append(out, blobView(b))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"modules": out})
}

func (s *Server) getModule(w http.ResponseWriter, r *http.Request) {
	hash := r.PathValue("hash")
	if !s.isModule(r.Context(), caller(r.Context()).Name, hash) {
		writeProblem(w, r, newProblem("not-found", "module %s: not found", hash))
		return
	}
	s.serveBlob(w, r, hash, "application/wasm")
}

func (s *Server) getBlob(w http.ResponseWriter, r *http.Request) {
	s.serveBlob(w, r, r.PathValue("hash"), "application/octet-stream")
}

// serveBlob answers GET and HEAD with the caller's blob, ranges included.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, hash, contentType string) {
	if !isHash(hash) {
		writeProblem(w, r, newProblem("bad-request", "%q is not a sha256 in lowercase hex", hash))
		return
	}
	f, info, err := s.cfg.Store.OpenBlob(r.Context(), caller(r.Context()).Name, hash)
	if err != nil {
		writeProblem(w, r, storeProblem(err, "blob "+hash))
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("ETag", `"`+info.Hash+`"`)
	w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
	http.ServeContent(w, r, "", info.Time, f)
}

func (s *Server) deleteBlob(w http.ResponseWriter, r *http.Request) {
	if !need(w, r, ScopeUpload) {
		return
	}
	hash := r.PathValue("hash")
	if !isHash(hash) {
		writeProblem(w, r, newProblem("bad-request", "%q is not a sha256 in lowercase hex", hash))
		return
	}
	owner := caller(r.Context()).Name
	for _, e := range s.catalog.list() {
		if e.SHA256 == hash && e.Owner == owner {
			writeProblem(w, r, newProblem("conflict", "blob %s holds the registered model %s", hash, e.Name))
			return
		}
	}
	if err := s.cfg.Store.DeleteBlob(r.Context(), owner, hash); err != nil {
		writeProblem(w, r, storeProblem(err, "blob "+hash))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Uploads.

func uploadView(u store.Upload) api.Upload {
	rs := make([]api.Range, len(u.Received))
	for i, r := range u.Received {
		rs[i] = api.Range{Start: r.Start, End: r.End}
	}
	return api.Upload{ID: u.ID, Size: u.Size, SHA256: u.SHA256, Offset: u.Offset, Received: rs, Complete: u.Complete()}
}

func (s *Server) createUpload(w http.ResponseWriter, r *http.Request) {
	if !need(w, r, ScopeUpload) {
		return
	}
	var req api.NewUpload
	if p := decodeJSON(http.MaxBytesReader(w, r.Body, s.cfg.Limits.MaxBody), &req); p != nil {
		writeProblem(w, r, p)
		return
	}
	switch {
	case req.Size <= 0:
		writeProblem(w, r, newProblem("bad-request", "size: want the upload's total size in bytes, got %d", req.Size))
		return
	case req.Size > s.cfg.Limits.MaxUpload:
		writeProblem(w, r, newProblem("too-large", "an upload of %d bytes is over this node's limit of %d", req.Size, s.cfg.Limits.MaxUpload))
		return
	case req.SHA256 != "" && !isHash(req.SHA256):
		writeProblem(w, r, newProblem("bad-request", "sha256: %q is not 64 lowercase hex digits", req.SHA256))
		return
	}
	if p := s.quota(r.Context(), req.Size); p != nil {
		writeProblem(w, r, p)
		return
	}
	u, err := s.cfg.Store.CreateUpload(r.Context(), caller(r.Context()).Name, req.Size, req.SHA256)
	if err != nil {
		writeProblem(w, r, storeProblem(err, "upload"))
		return
	}
	w.Header().Set("Location", "/v1/uploads/"+u.ID)
	writeJSON(w, http.StatusCreated, uploadView(u))
}

var contentRange = regexp.MustCompile(`^bytes (\d{1,19})-(\d{1,19})/(\d{1,19}|\*)$`)

// parseContentRange reads "bytes FIRST-LAST/TOTAL" for an upload of size.
func parseContentRange(h string, size int64) (offset, n int64, p *problem) {
	m := contentRange.FindStringSubmatch(strings.TrimSpace(h))
	if m == nil {
		return 0, 0, newProblem("range", "Content-Range %q: want bytes FIRST-LAST/TOTAL", h)
	}
	first, err1 := strconv.ParseInt(m[1], 10, 64)
	last, err2 := strconv.ParseInt(m[2], 10, 64)
	if err1 != nil || err2 != nil || last < first {
		return 0, 0, newProblem("range", "Content-Range %q: the range is malformed", h)
	}
	if m[3] != "*" {
		total, err := strconv.ParseInt(m[3], 10, 64)
		if err != nil || total != size {
			return 0, 0, newProblem("range", "Content-Range %q: the upload's size is %d", h, size)
		}
	}
	if last >= size {
		return 0, 0, newProblem("range", "Content-Range %q: past the upload's end at %d", h, size)
	}
	return first, last - first + 1, nil
}

func (s *Server) putChunk(w http.ResponseWriter, r *http.Request) {
	if !need(w, r, ScopeUpload) {
		return
	}
	ctx, owner, id := r.Context(), caller(r.Context()).Name, r.PathValue("id")
	u, err := s.cfg.Store.Upload(ctx, owner, id)
	if err != nil {
		writeProblem(w, r, storeProblem(err, "upload "+id))
		return
	}
	offset, n, p := parseContentRange(r.Header.Get("Content-Range"), u.Size)
	if p == nil && n > s.cfg.Limits.MaxChunk {
		p = newProblem("too-large", "a chunk of %d bytes is over this node's limit of %d", n, s.cfg.Limits.MaxChunk)
	}
	if p == nil && r.ContentLength >= 0 && r.ContentLength != n {
		p = newProblem("range", "the body has %d bytes and the Content-Range %d", r.ContentLength, n)
	}
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	u, err = s.cfg.Store.WriteChunk(ctx, owner, id, offset, n, http.MaxBytesReader(w, r.Body, n))
	if err != nil {
		writeProblem(w, r, storeProblem(err, "upload "+id))
		return
	}
	w.Header().Set("Upload-Offset", strconv.FormatInt(u.Offset, 10))
	writeJSON(w, http.StatusOK, uploadView(u))
}

func (s *Server) uploadOffset(w http.ResponseWriter, r *http.Request) {
	u, err := s.cfg.Store.Upload(r.Context(), caller(r.Context()).Name, r.PathValue("id"))
	if err != nil {
		writeProblem(w, r, storeProblem(err, "upload "+r.PathValue("id")))
		return
	}
	w.Header().Set("Upload-Offset", strconv.FormatInt(u.Offset, 10))
	w.Header().Set("Upload-Length", strconv.FormatInt(u.Size, 10))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

func (s *Server) uploadStatus(w http.ResponseWriter, r *http.Request) {
	u, err := s.cfg.Store.Upload(r.Context(), caller(r.Context()).Name, r.PathValue("id"))
	if err != nil {
		writeProblem(w, r, storeProblem(err, "upload "+r.PathValue("id")))
		return
	}
	w.Header().Set("Upload-Offset", strconv.FormatInt(u.Offset, 10))
	writeJSON(w, http.StatusOK, uploadView(u))
}

func (s *Server) abortUpload(w http.ResponseWriter, r *http.Request) {
	if !need(w, r, ScopeUpload) {
		return
	}
	if err := s.cfg.Store.AbortUpload(r.Context(), caller(r.Context()).Name, r.PathValue("id")); err != nil {
		writeProblem(w, r, storeProblem(err, "upload "+r.PathValue("id")))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// commitUpload checks an upload's bytes and registers them as a model.
func (s *Server) commitUpload(w http.ResponseWriter, r *http.Request) {
	if !need(w, r, ScopeUpload) {
		return
	}
	var req api.Commit
	if p := decodeJSON(http.MaxBytesReader(w, r.Body, s.cfg.Limits.MaxBody), &req); p != nil {
		writeProblem(w, r, p)
		return
	}
	if !isHash(req.SHA256) {
		writeProblem(w, r, newProblem("bad-request", "sha256: want the upload's sha256 in lowercase hex, got %q", req.SHA256))
		return
	}
	if m, err := s.cfg.Node.Models().Lookup(req.Name); req.Name == "" || (err == nil && m.Name == req.Name && m.SHA256 != req.SHA256) {
		writeProblem(w, r, newProblem("conflict", "model name %q: empty or taken by other bytes", req.Name))
		return
	}
	ctx, owner, id := r.Context(), caller(r.Context()).Name, r.PathValue("id")
	info, err := s.cfg.Store.CommitUpload(ctx, owner, id, req.SHA256)
	if err != nil {
		writeProblem(w, r, storeProblem(err, "upload "+id))
		return
	}
	if err := s.registerModel(ctx, owner, req.Name, info.Hash); err != nil {
		s.cfg.Store.DeleteBlob(context.WithoutCancel(ctx), owner, info.Hash)
		writeProblem(w, r, newProblem("invalid-model", "%v", err))
		return
	}
	if err := s.catalog.add(catalogEntry{Name: req.Name, SHA256: info.Hash, Owner: owner}); err != nil {
		writeProblem(w, r, newProblem("internal", "%v", err))
		return
	}
	mi, _ := s.cfg.Node.ModelInfo(req.Name)
	w.Header().Set("Location", "/v1/models/"+req.Name)
	writeJSON(w, http.StatusCreated, modelView(mi))
}

// registerModel adds owner's blob hash to the node's models as name.
func (s *Server) registerModel(ctx context.Context, owner, name, hash string) error {
	f, info, err := s.cfg.Store.OpenBlob(ctx, owner, hash)
	if err != nil {
		return err
	}
	defer f.Close()
	if info.Size > models.MaxModelBytes {
		return fmt.Errorf("model %s: %d bytes is over the limit of %d", name, info.Size, models.MaxModelBytes)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	_, err = s.cfg.Node.Models().Add(name, data)
	return err
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request) {
	infos := s.cfg.Node.ModelInfos()
	out := make([]api.Model, len(infos))
	for i, mi := range infos {
		out[i] = modelView(mi)
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": out})
}

func (s *Server) getModel(w http.ResponseWriter, r *http.Request) {
	mi, err := s.cfg.Node.ModelInfo(r.PathValue("name"))
	if err != nil {
		writeProblem(w, r, newProblem("not-found", "model %q: not registered", r.PathValue("name")))
		return
	}
	writeJSON(w, http.StatusOK, modelView(mi))
}

func modelView(mi node.ModelInfo) api.Model {
	values := func(vs []node.ValueInfo) []api.Value {
		out := make([]api.Value, len(vs))
		for i, v := range vs {
			out[i] = api.Value{Name: v.Name, Type: v.Type, Shape: v.Shape, Dims: v.Dims}
		}
		return out
	}
	return api.Model{Name: mi.Name, SHA256: mi.SHA256, Inputs: values(mi.Inputs), Outputs: values(mi.Outputs)}
}

// Jobs.

// request is a checked job request, with what admitting it needs.
type request struct {
	req  JobRequest
	body []byte // req as the store keeps it
	plan *plan
	key  Key
	idem string // the Idempotency-Key, or ""
}

// accept reads and checks a job request. A request sent again under its
// Idempotency-Key returns the stored job it made, if any.
func (s *Server) accept(w http.ResponseWriter, r *http.Request) (*request, *store.Job, *problem) {
	if !s.Ready() {
		return nil, nil, newProblem("unavailable", "the node is shutting down")
	}
	rq := &request{key: caller(r.Context()), idem: r.Header.Get("Idempotency-Key")}
	if p := decodeJSON(http.MaxBytesReader(w, r.Body, s.cfg.Limits.MaxBody), &rq.req); p != nil {
		return nil, nil, p
	}
	if len(rq.idem) > 255 {
		return nil, nil, newProblem("bad-request", "Idempotency-Key is longer than 255 bytes")
	}
	ctx := r.Context()
	var prob *problem
	if rq.plan, prob = s.check(ctx, rq.key.Name, rq.req); prob != nil {
		return nil, nil, prob
	}
	rq.body, _ = json.Marshal(rq.req)
	if rq.idem == "" {
		return rq, nil, nil
	}
	// A request sent again gets its job, whatever the queue and quota say
	// now.
	job, err := s.cfg.Store.JobByKey(ctx, rq.key.Name, rq.idem)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return rq, nil, nil
	case err != nil:
		return nil, nil, storeProblem(err, "job")
	case !bytes.Equal(job.Request, rq.body):
		return nil, nil, newProblem("conflict", "Idempotency-Key %q was used for job %s with another request", rq.idem, job.ID)
	}
	return rq, &job, nil
}

// reserve takes a place in rq's lane, within the key's quota.
func (s *Server) reserve(ctx context.Context, rq *request) *problem {
	q := s.cfg.Limits.Quota
	if rq.key.Quota.Jobs > 0 {
		q.Jobs = rq.key.Quota.Jobs
	}
	u, err := s.cfg.Store.Usage(ctx, rq.key.Name)
	if err != nil {
		return storeProblem(err, "usage")
	}
	if u.Queued+u.Running >= q.Jobs {
		pr := newProblem("quota", "key %s has %d jobs queued or running, its limit", rq.key.Name, u.Queued+u.Running)
		pr.retryAfter = time.Second
		return pr
	}
	if !rq.plan.lane.reserve() {
		pr := newProblem("queue-full", "backend %s has %d jobs waiting", rq.plan.lane.backend, rq.plan.lane.capacity)
		pr.retryAfter = time.Second
		return pr
	}
	return nil
}

// submit queues a job, recorded in the store before it is acknowledged.
func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
	if !need(w, r, ScopeInvoke) {
		return
	}
	ctx := r.Context()
	rq, old, p := s.accept(w, r)
	if p == nil && old == nil {
		p = s.reserve(ctx, rq)
	}
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	status := http.StatusOK
	job := old
	if job == nil {
		j, created, err := s.cfg.Store.CreateJob(ctx, store.NewJob{Owner: rq.key.Name, IdempotencyKey: rq.idem, Request: rq.body})
		if err != nil || !created {
			rq.plan.lane.unreserve()
			if err != nil {
				writeProblem(w, r, storeProblem(err, "job"))
				return
			}
		} else {
			status = http.StatusAccepted
			rq.plan.lane.push(queued{id: j.ID, owner: j.Owner}, true)
			s.log.Info("job accepted", "job", j.ID, "request_id", requestID(ctx), "key", j.Owner, "backend", rq.plan.lane.backend)
			s.metrics.queueDepth.WithLabelValues(rq.plan.lane.backend).Set(float64(rq.plan.lane.depth()))
		}
		job = &j
	}
	w.Header().Set("Location", "/v1/jobs/"+job.ID)
	writeJSON(w, status, s.view(*job))
}

// waitParam reads ?wait=DURATION, bounded by the server's long-poll limit.
func (s *Server) waitParam(r *http.Request) (time.Duration, *problem) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, newProblem("bad-request", "wait: %q is not a duration", v)
	}
	return min(d, s.cfg.Limits.MaxWait), nil
}

// allowWrite lets the answer to a request that waits d be written that
// much later than the server's write timeout would.
func allowWrite(w http.ResponseWriter, d time.Duration) {
	if d > 0 {
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d + time.Minute))
	}
}

// waited reads the job of a GET, long-polling as ?wait asks; false when it
// has answered with a problem.
func (s *Server) waited(w http.ResponseWriter, r *http.Request) (store.Job, bool) {
	d, p := s.waitParam(r)
	if p != nil {
		writeProblem(w, r, p)
		return store.Job{}, false
	}
	allowWrite(w, d)
	job, err := s.wait(r.Context(), caller(r.Context()).Name, r.PathValue("id"), d)
	if err != nil {
		writeProblem(w, r, storeProblem(err, "job "+r.PathValue("id")))
		return store.Job{}, false
	}
	return job, true
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	if job, ok := s.waited(w, r); ok {
		writeJSON(w, http.StatusOK, s.view(job))
	}
}

// getResult answers with a finished job's result alone: for the same
// request in strict mode, the same bytes on every node. Node-local facts
// go into headers.
func (s *Server) getResult(w http.ResponseWriter, r *http.Request) {
	if job, ok := s.waited(w, r); ok {
		writeResult(w, r, s.view(job))
	}
}

// writeResult answers with v's result, or a problem saying why there is
// none.
func writeResult(w http.ResponseWriter, r *http.Request, v JobView) {
	w.Header().Set("Accelnode-Job", v.ID)
	w.Header().Set("Accelnode-Status", v.Status)
	if v.Node.Backend != "" {
		w.Header().Set("Accelnode-Backend", v.Node.Backend)
		w.Header().Set("Accelnode-Elapsed", strconv.FormatFloat(v.Node.ElapsedSeconds, 'f', 6, 64))
	}
	switch {
	case v.Status == api.Cancelled:
		writeProblem(w, r, newProblem("conflict", "job %s was cancelled", v.ID))
	case v.Status == api.Failed:
		writeProblem(w, r, newProblem("invalid-job", "job %s failed: %s", v.ID, v.Node.Error))
	case v.Result != nil:
		writeJSON(w, http.StatusOK, v.Result)
	default:
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusAccepted, v)
	}
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	f := store.JobFilter{Owner: caller(r.Context()).Name, State: store.State(r.URL.Query().Get("status")), Limit: 1000}
	if r.URL.Query().Get("all") == "1" && need(w, r, ScopeAdmin) {
		f.Owner = ""
	} else if r.URL.Query().Get("all") == "1" {
		return
	}
	jobs, err := s.cfg.Store.ListJobs(r.Context(), f)
	if err != nil {
		writeProblem(w, r, storeProblem(err, "jobs"))
		return
	}
	out := make([]JobView, len(jobs))
	for i, j := range jobs {
		out[i] = s.view(j)
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": out})
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) {
	if !need(w, r, ScopeInvoke) {
		return
	}
	ctx, owner, id := r.Context(), caller(r.Context()).Name, r.PathValue("id")
	job, err := s.cfg.Store.Job(ctx, owner, id)
	if err != nil {
		writeProblem(w, r, storeProblem(err, "job "+id))
		return
	}
	s.mu.Lock()
	cancel := s.running[id]
	s.mu.Unlock()
	if cancel != nil {
		cancel(errCancelled) // its worker records the cancel
	} else if job.State == store.Queued {
		if job, err = s.cfg.Store.Transition(ctx, id, store.Queued, store.Cancelled, nil); err == nil {
			s.notify(id)
			writeJSON(w, http.StatusOK, s.view(job))
			return
		}
	}
	job, err = s.wait(ctx, owner, id, 5*time.Second)
	if err != nil {
		writeProblem(w, r, storeProblem(err, "job "+id))
		return
	}
	if job.State.Terminal() && job.State != store.Cancelled {
		writeProblem(w, r, newProblem("conflict", "job %s had already ended: %s", id, job.State))
		return
	}
	writeJSON(w, http.StatusOK, s.view(job))
}

// invoke is the synchronous form of submit: it answers with the result, as
// GET /v1/jobs/{id}/result does, once the job ends. Its acceptance is the
// answer, so the job is recorded once, when it has ended, and nothing
// waits for the disk before it runs: a node that stops while it runs has
// accepted nothing, and the client sends the request again (under its
// Idempotency-Key, every copy of which joins the one job, stored or
// running).
func (s *Server) invoke(w http.ResponseWriter, r *http.Request) {
	if !need(w, r, ScopeInvoke) {
		return
	}
	ctx := r.Context()
	rq, old, p := s.accept(w, r)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	allowWrite(w, 24*time.Hour) // bounded by the job's own deadline
	if old != nil {
		s.answerStored(w, r, *old)
		return
	}
	f := &flight{job: store.Job{ID: store.NewID(), Owner: rq.key.Name, IdempotencyKey: rq.idem, Request: rq.body,
		Created: time.Now().UTC(), State: store.Queued}, plan: rq.plan, done: make(chan struct{})}
	if joined := s.fly(f); joined != f {
		if !bytes.Equal(joined.job.Request, rq.body) {
			writeProblem(w, r, newProblem("conflict", "Idempotency-Key %q was used for job %s with another request", rq.idem, joined.job.ID))
			return
		}
		f = joined
	} else {
		if p := s.reserve(ctx, rq); p != nil {
			f.refused = p // for requests that joined it meanwhile
			s.land(f)
			close(f.done)
			writeProblem(w, r, p)
			return
		}
		rq.plan.lane.push(queued{id: f.job.ID, owner: f.job.Owner, f: f}, true)
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		return // the client left; the job runs on and is recorded
	}
	if f.refused != nil {
		writeProblem(w, r, f.refused)
		return
	}
	if f.stopped {
		writeProblem(w, r, newProblem("unavailable", "the node stopped before job %s ended: send the request again", f.job.ID))
		return
	}
	writeResult(w, r, f.view())
}

// answerStored answers an invoke whose Idempotency-Key names a stored job,
// once that job has ended.
func (s *Server) answerStored(w http.ResponseWriter, r *http.Request, job store.Job) {
	for !job.State.Terminal() {
		var err error
		job, err = s.wait(r.Context(), job.Owner, job.ID, time.Hour)
		if err != nil {
			writeProblem(w, r, storeProblem(err, "job "+job.ID))
			return
		}
		if r.Context().Err() != nil {
			return
		}
	}
	writeResult(w, r, s.view(job))
}
