// Package server is the node as an HTTP service: the /v1 API for modules,
// blobs, resumable model uploads and jobs; the Open Inference Protocol at
// /v2; health and Prometheus metrics. It speaks HTTP and nothing else:
// guests run in node, records and bytes live in store.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/accelnode/accelnode/crypto"
	"github.com/accelnode/accelnode/node"
	"github.com/accelnode/accelnode/server/oip"
	"github.com/accelnode/accelnode/server/web"
	"github.com/accelnode/accelnode/store"
)

// Config assembles a server.
type Config struct {
	Node  *node.Node
	Store store.Store
	// Keys are the API keys; with none, every request acts as the key
	// "local" with every scope (the CLI then listens on loopback only).
	Keys *Keys
	// Catalog is the file that lists the models registered through the API,
	// so that they come back at the next start.
	Catalog string
	Limits  Limits
	Logger  *slog.Logger
	// Version is reported by /v1/info and in metrics.
	Version string
	// Identity signs the jobs' receipts; nil makes a key for this run only
	// (the CLI keeps one in the data directory).
	Identity *crypto.Identity
	// SessionTTL is how long an encrypted session lives unless its client
	// asks for less; 0 is crypto's default, 300 s.
	SessionTTL time.Duration
	// WebData is the directory of the MNIST files whose test digits the
	// web page offers for t-SNE (GET /web/mnist); empty offers none.
	WebData string
	// WebModules are the guests the web page runs, by name: "tsne"
	// (examples/tsne-mnist) and "mnist" (examples/mnist-classify). The page
	// stores one for its key (POST /web/modules/{name}) before its first
	// job, so a key with the invoke scope alone can run them.
	WebModules map[string][]byte
}

// Limits bound what clients may send and ask for.
type Limits struct {
	MaxBody   int64 // a JSON request body
	MaxModule int64 // a module
	MaxBlob   int64 // a blob put in one request
	MaxUpload int64 // a resumable upload's total size
	MaxChunk  int64 // one upload chunk
	// MaxSealed is a sealed request's body: its input travels inside it.
	MaxSealed int64
	// MaxInline is the largest output returned inside a job's result;
	// larger output is stored as a blob.
	MaxInline int
	MaxWait   time.Duration // a long-poll
	Queue     int           // jobs waiting per backend
	Workers   int           // jobs running at once per CPU backend
	// GPUWorkers is the jobs running at once on a GPU backend.
	GPUWorkers int
	// Modules is how many compiled modules stay in memory; the least
	// recently used go first, and are compiled again (from the on-disk
	// cache, where the node has one) when a job needs them.
	Modules int
	// Quota applies to every key that sets none of its own.
	Quota Quota
	// Job caps what a job may ask for; its zero fields are the node's.
	Job node.Limits
}

// DefaultLimits are the limits where the Config sets none.
func DefaultLimits() Limits {
	return Limits{
		MaxBody:    1 << 20,
		MaxModule:  256 << 20,
		MaxBlob:    256 << 20,
		MaxUpload:  4 << 30,
		MaxChunk:   64 << 20,
		MaxSealed:  64 << 20,
		MaxInline:  64 << 10,
		MaxWait:    60 * time.Second,
		Queue:      256,
		Workers:    2 * runtime.NumCPU(), // tiny jobs wait on the disk as much as they compute
		GPUWorkers: 1,
		Modules:    64,
		Quota:      Quota{Jobs: 1024, Bytes: 16 << 30},
	}
}

func (l *Limits) fill() {
	d := DefaultLimits()
	for _, f := range []struct{ v, def *int64 }{
		{&l.MaxBody, &d.MaxBody}, {&l.MaxModule, &d.MaxModule}, {&l.MaxBlob, &d.MaxBlob},
		{&l.MaxUpload, &d.MaxUpload}, {&l.MaxChunk, &d.MaxChunk}, {&l.Quota.Bytes, &d.Quota.Bytes},
		{&l.MaxSealed, &d.MaxSealed},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	for _, f := range []struct{ v, def *int }{
		{&l.MaxInline, &d.MaxInline}, {&l.Queue, &d.Queue}, {&l.Workers, &d.Workers},
		{&l.GPUWorkers, &d.GPUWorkers}, {&l.Quota.Jobs, &d.Quota.Jobs}, {&l.Modules, &d.Modules},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	if l.MaxWait <= 0 {
		l.MaxWait = d.MaxWait
	}
}

// Server serves one node.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	handler http.Handler
	catalog *catalog

	// runCtx is the jobs' parent context, canceled with errShutdown when
	// the grace period ends.
	runCtx  context.Context
	stopRun context.CancelCauseFunc
	workers sync.WaitGroup
	closing atomic.Bool

	mu      sync.Mutex
	lanes   map[string]*lane
	running map[string]context.CancelCauseFunc
	waiters map[string]chan struct{}
	modules *moduleCache
	flights map[string]*flight // invokes under way, by key and Idempotency-Key

	sessions *crypto.Sessions

	webModules map[string]*webModule // by name, fixed at New
	digits     *web.Digits
}

// New makes a server, registers the models of its catalog with the node,
// queues the jobs the store holds unfinished, and starts the workers.
func New(cfg Config) (*Server, error) {
	if cfg.Node == nil || cfg.Store == nil {
		return nil, errors.New("server: a node and a store are required")
	}
	cfg.Limits.fill()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		lanes:   map[string]*lane{},
		running: map[string]context.CancelCauseFunc{},
		waiters: map[string]chan struct{}{},
		flights: map[string]*flight{},
	}
	if s.cfg.Identity == nil {
		id, err := crypto.NewIdentity()
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		s.cfg.Identity = id
	}
	s.sessions = crypto.NewSessions(crypto.SessionsConfig{TTL: cfg.SessionTTL})
	s.runCtx, s.stopRun = context.WithCancelCause(context.Background())
	go s.sweepSessions(s.runCtx)
	s.modules = newModuleCache(cfg.Limits.Modules, cfg.Node.Forget)
	s.digits = web.NewDigits(cfg.WebData)
	if err := s.compileWebModules(context.Background()); err != nil {
		s.stopRun(nil)
		return nil, err
	}
	s.metrics = newMetrics(s)
	var err error
	if s.catalog, err = openCatalog(cfg.Catalog); err != nil {
		return nil, err
	}
	ctx := context.Background()
	for _, e := range s.catalog.list() {
		if err := s.registerModel(ctx, e.Owner, e.Name, e.SHA256); err != nil {
			s.log.Error("model from the catalog not registered", "model", e.Name, "sha256", e.SHA256, "err", err)
		}
	}
	waiting, err := cfg.Store.ListJobs(ctx, store.JobFilter{State: store.Queued})
	if err != nil {
		return nil, fmt.Errorf("server: list queued jobs: %w", err)
	}
	for _, j := range waiting {
		backend := s.cfg.Node.Backend().Name()
		var req JobRequest
		if json.Unmarshal(j.Request, &req) == nil && req.Backend != "" {
			backend = req.Backend
		}
		s.laneFor(backend).push(queued{id: j.ID, owner: j.Owner}, false)
	}
	if len(waiting) > 0 {
		s.log.Info("jobs queued again after a restart", "jobs", len(waiting))
	}
	s.handler = s.routes()
	return s, nil
}

// laneFor returns backend's lane, starting it on first use.
func (s *Server) laneFor(backend string) *lane {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.lanes[backend]; l != nil {
		return l
	}
	workers := s.cfg.Limits.Workers
	if strings.Contains(backend, "cuda") {
		workers = s.cfg.Limits.GPUWorkers
	}
	l := newLane(backend, s.cfg.Limits.Queue, workers)
	s.lanes[backend] = l
	if !s.closing.Load() {
		for range workers {
			s.workers.Add(1)
			go s.work(l)
		}
	}
	return l
}

// Handler serves the API.
func (s *Server) Handler() http.Handler { return s.handler }

// Ready reports whether the server takes work.
func (s *Server) Ready() bool { return !s.closing.Load() }

// Shutdown stops taking jobs and waits for the running ones until ctx ends;
// jobs still running then are stopped and stay queued in the store, to run
// again at the next start, like the jobs that were waiting.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	lanes := make([]*lane, 0, len(s.lanes))
	for _, l := range s.lanes {
		lanes = append(lanes, l)
	}
	s.mu.Unlock()
	for _, l := range lanes {
		// Stored jobs stay queued in the store; invokes that never
		// started were never accepted, and their clients hear so.
		for _, q := range l.close() {
			if q.f != nil {
				q.f.stopped = true
				s.land(q.f)
				close(q.f.done)
			}
		}
	}
	done := make(chan struct{})
	go func() {
		s.workers.Wait()
		s.sessions.Close() // the last sealed job has sealed its answer
		s.stopRun(errShutdown)
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.stopRun(errShutdown)
		<-done
		return fmt.Errorf("jobs still running at the end of the grace period were stopped, to run again at the next start: %w", ctx.Err())
	}
}

// routes builds the handler tree: every route is authenticated, counted,
// and bounded by the body limit.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	api := func(pattern string, h http.HandlerFunc) {
		mux.Handle(pattern, s.instrument(pattern, s.authenticate(h)))
	}
	mux.Handle("GET /livez", s.instrument("GET /livez", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})))
	mux.Handle("GET /readyz", s.instrument("GET /readyz", http.HandlerFunc(s.readyz)))
	mux.Handle("GET /metrics", s.instrument("GET /metrics", s.metrics.handler()))
	mux.Handle("GET /v1/openapi.json", s.instrument("GET /v1/openapi.json", http.HandlerFunc(serveOpenAPI)))

	api("GET /v1/info", s.info)
	api("PUT /v1/modules", s.putModule)
	api("GET /v1/modules", s.listModules)
	api("GET /v1/modules/{hash}", s.getModule)
	api("HEAD /v1/modules/{hash}", s.getModule)
	api("DELETE /v1/modules/{hash}", s.deleteBlob)
	api("PUT /v1/blobs", s.putBlob)
	api("GET /v1/blobs", s.listBlobs)
	api("GET /v1/blobs/{hash}", s.getBlob)
	api("HEAD /v1/blobs/{hash}", s.getBlob)
	api("DELETE /v1/blobs/{hash}", s.deleteBlob)
	api("POST /v1/uploads", s.createUpload)
	api("PUT /v1/uploads/{id}", s.putChunk)
	api("HEAD /v1/uploads/{id}", s.uploadOffset)
	api("GET /v1/uploads/{id}", s.uploadStatus)
	api("DELETE /v1/uploads/{id}", s.abortUpload)
	api("POST /v1/uploads/{id}/commit", s.commitUpload)
	api("GET /v1/models", s.listModels)
	api("GET /v1/models/{name}", s.getModel)
	api("POST /v1/jobs", s.submit)
	api("GET /v1/jobs", s.listJobs)
	api("GET /v1/jobs/{id}", s.getJob)
	api("GET /v1/jobs/{id}/result", s.getResult)
	api("DELETE /v1/jobs/{id}", s.cancelJob)
	api("POST /v1/invoke", s.invoke)
	api("GET /v1/jobs/{id}/receipt", s.getReceipt)
	api("GET /v1/node", s.nodeIdentity)
	api("POST /v1/sessions", s.createSession)
	api("GET /v1/sessions/{id}", s.getSession)
	api("DELETE /v1/sessions/{id}", s.endSession)
	api("POST /v1/sessions/{id}/invoke", s.sealedInvoke)
	s.actorRoutes(api)
	s.webRoutes(mux, api)

	// The Open Inference Protocol: health answers anyone, like /livez;
	// the rest needs the invoke scope.
	v2 := oip.Handler(s.cfg.Node, oip.Options{MaxBodyBytes: s.cfg.Limits.MaxBlob, Version: s.cfg.Version,
		Limits: s.cfg.Limits.Job, Logger: s.log})
	mux.Handle("GET /v2/health/", s.instrument("GET /v2/health/", v2))
	guarded := s.authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if need(w, r, ScopeInvoke) {
			v2.ServeHTTP(w, r)
		}
	}))
	mux.Handle("/v2", s.instrument("/v2", guarded))
	mux.Handle("/v2/", s.instrument("/v2/", guarded))
	mux.Handle("/", s.instrument("other", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, newProblem("not-found", "no route %s %s", r.Method, r.URL.Path))
	})))
	return mux
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.Ready() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if st := s.cfg.Node.Backend().Status(); !st.Available {
		http.Error(w, "backend unavailable: "+st.Reason, http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ok\n"))
}
