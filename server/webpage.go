package server

// The web page at /: its static files (server/web) answer anyone, like
// /livez, since they hold no data; what the page asks of the node goes
// through the API's authentication like any client's.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"slices"
	"strconv"

	"github.com/accelnode/accelnode/models"
	"github.com/accelnode/accelnode/server/web"
	"github.com/accelnode/accelnode/store"
)

// webModule is a guest the operator chose for the page.
type webModule struct {
	wasm []byte
	hash string
}

// compileWebModules checks the page's guests, compiling each into the
// module cache so that the page's first job need not.
func (s *Server) compileWebModules(ctx context.Context) error {
	s.webModules = map[string]*webModule{}
	for name, wasm := range s.cfg.WebModules {
		mod, err := s.cfg.Node.Compile(ctx, wasm)
		if err != nil {
			return fmt.Errorf("server: web module %s: %w", name, err)
		}
		sum := sha256.Sum256(wasm)
		hash := hex.EncodeToString(sum[:])
		s.modules.put(hash, mod)
		s.webModules[name] = &webModule{wasm: wasm, hash: hash}
	}
	return nil
}

// webRoutes adds the page's routes to mux.
func (s *Server) webRoutes(mux *http.ServeMux, api func(string, http.HandlerFunc)) {
	files := web.Handler(web.Files())
	mux.Handle("GET /{$}", s.instrument("GET /{$}", files))
	mux.Handle("GET /web/", s.instrument("GET /web/", files))
	api("GET /web/config", s.webConfig)
	api("GET /web/mnist", s.webDigits)
	api("GET /web/mnist-conv", s.webConv)
	api("POST /web/modules/{name}", s.webStoreModule)
}

// webConfig is what the page needs to know of the node beyond /v1/info: the
// guests it may run, by name and sha256, and whether digits are offered.
type webConfig struct {
	Modules map[string]string `json:"modules"`
	Digits  bool              `json:"digits"`
	NaCl    bool              `json:"tweetnacl"`
}

func (s *Server) webConfig(w http.ResponseWriter, r *http.Request) {
	c := webConfig{Modules: map[string]string{}, Digits: s.cfg.WebData != "", NaCl: web.HasNaCl()}
	for name, m := range s.webModules {
		c.Modules[name] = m.hash
	}
	writeJSON(w, http.StatusOK, c)
}

// webDigits answers GET /web/mnist?n=N with the first N MNIST test digits.
func (s *Server) webDigits(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n < 1 || n > web.MaxDigits {
		writeProblem(w, r, newProblem("bad-request", "n: want a number of digits from 1 to %d, got %q", web.MaxDigits, r.URL.Query().Get("n")))
		return
	}
	sample, err := s.digits.First(n)
	switch {
	case errors.Is(err, web.ErrNoDigits):
		writeProblem(w, r, newProblem("not-found", "%v", err))
		return
	case errors.Is(err, fs.ErrNotExist):
		writeProblem(w, r, newProblem("not-found", "this node's MNIST digits are missing (%v): its operator can run make deps", err))
		return
	case err != nil:
		writeProblem(w, r, newProblem("internal", "%v", err))
		return
	}
	writeJSON(w, http.StatusOK, sample)
}

// webConv answers GET /web/mnist-conv with the conv layers' weights of the
// node's model mnist, for the page's split learning to compute in the
// browser: web.ConvLen little-endian f32 (web.ConvBytes), the model's
// sha256 as the ETag.
func (s *Server) webConv(w http.ResponseWriter, r *http.Request) {
	m, err := s.cfg.Node.Models().Lookup(web.ConvModel)
	switch {
	case errors.Is(err, models.ErrNotFound):
		writeProblem(w, r, newProblem("not-found", "this node has no model named %q, whose conv layers the page's split learning computes: "+
			"its operator can load one with --model %s=bin/mnist.onnx (make demo writes it)", web.ConvModel, web.ConvModel))
		return
	case err != nil:
		writeProblem(w, r, newProblem("internal", "model %s: %v", web.ConvModel, err))
		return
	}
	conv, err := web.ConvBytes(m.Bytes)
	if err != nil {
		writeProblem(w, r, newProblem("invalid-model", "model %s (sha256 %s): %v", web.ConvModel, m.SHA256, err))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(conv)))
	w.Header().Set("ETag", `"`+m.SHA256+`"`)
	w.WriteHeader(http.StatusOK)
	w.Write(conv)
}

// webStoreModule stores one of the page's guests for the caller, so that
// its jobs can name it: a key may run what the operator chose for the page
// with the invoke scope alone. Storing it again only adds the key's
// reference; it counts against the key's bytes the first time.
func (s *Server) webStoreModule(w http.ResponseWriter, r *http.Request) {
	if !need(w, r, ScopeInvoke) {
		return
	}
	name := r.PathValue("name")
	m := s.webModules[name]
	if m == nil {
		names := make([]string, 0, len(s.webModules))
		for n := range s.webModules {
			names = append(names, n)
		}
		slices.Sort(names)
		writeProblem(w, r, newProblem("not-found", "the page's guest %q is not loaded on this node (it has %q): its operator can start it with --web-module %s=FILE.wasm", name, names, name))
		return
	}
	ctx, owner := r.Context(), caller(r.Context()).Name
	if _, err := s.cfg.Store.StatBlob(ctx, owner, m.hash); errors.Is(err, store.ErrNotFound) {
		if p := s.quota(ctx, int64(len(m.wasm))); p != nil {
			writeProblem(w, r, p)
			return
		}
	}
	info, err := s.cfg.Store.PutBlob(ctx, owner, bytes.NewReader(m.wasm), int64(len(m.wasm)))
	if err != nil {
		writeProblem(w, r, storeProblem(err, "module "+name))
		return
	}
	writeJSON(w, http.StatusOK, blobView(info))
}
