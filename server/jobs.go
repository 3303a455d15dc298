package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/internal/bytesize"
	"github.com/accelnode/accelnode/node"
	"github.com/accelnode/accelnode/server/api"
	"github.com/accelnode/accelnode/store"
)

// The API's types, by their server-side names.
type (
	JobRequest = api.JobRequest
	JobResult  = api.JobResult
	JobFacts   = api.JobFacts
	JobView    = api.Job
)

// record is what the store keeps as a finished job's result.
type record struct {
	Result  *JobResult      `json:"result,omitempty"`
	Receipt json.RawMessage `json:"receipt,omitempty"` // a crypto.SignedReceipt
	// Sealed holds, for a job sent in a session, its result and receipt
	// sealed under the session's keys (an api.SealedAnswer); Result and
	// Receipt are then empty.
	Sealed []byte   `json:"sealed,omitempty"`
	Node   JobFacts `json:"node"`
}

// view is what clients see of j: running while a worker has it.
func (s *Server) view(j store.Job) JobView {
	v := JobView{ID: j.ID, Status: string(j.State)}
	if j.State == store.Queued && s.isRunning(j.ID) {
		v.Status = api.Running
	}
	var rec record
	if len(j.Result) > 0 && json.Unmarshal(j.Result, &rec) == nil {
		v.Result, v.Receipt, v.Sealed, v.Node = rec.Result, rec.Receipt, rec.Sealed, rec.Node
	}
	var sj sealedJob
	if json.Unmarshal(j.Request, &sj) == nil && sj.Session != "" {
		v.Session = sj.Session
	}
	v.Node.Attempts, v.Node.Created = j.Attempts, j.Created
	return v
}

// plan is a checked job request: what the worker needs to run it.
type plan struct {
	req    JobRequest
	lane   *lane
	mode   *accel.Mode
	limits node.Limits
	// sealed: the job came in a session, so its outputs stay inline, to
	// be sealed, rather than stored as blobs in the clear.
	sealed bool
}

// check validates a request against the node and the caller's blobs.
func (s *Server) check(ctx context.Context, owner string, req JobRequest) (*plan, *problem) {
	if !isHash(req.Module) {
		return nil, newProblem("bad-request", "module: want the sha256 of a stored module, got %q", req.Module)
	}
	if _, err := s.cfg.Store.StatBlob(ctx, owner, req.Module); err != nil {
		return nil, storeProblem(err, "module "+req.Module)
	}
	if req.StdinBlob != "" {
		if len(req.Stdin) > 0 {
			return nil, newProblem("bad-request", "give stdin or stdin_blob, not both")
		}
		if !isHash(req.StdinBlob) {
			return nil, newProblem("bad-request", "stdin_blob: want a sha256, got %q", req.StdinBlob)
		}
		if _, err := s.cfg.Store.StatBlob(ctx, owner, req.StdinBlob); err != nil {
			return nil, storeProblem(err, "stdin blob "+req.StdinBlob)
		}
	}
	for _, m := range req.Models {
		if _, err := s.cfg.Node.Models().Lookup(m); err != nil {
			return nil, newProblem("invalid-job", "model %q is not registered on this node", m)
		}
	}
	for _, e := range req.Env {
		if !strings.Contains(e, "=") {
			return nil, newProblem("bad-request", "env: %q is not KEY=VALUE", e)
		}
	}
	p := &plan{req: req}
	backend := req.Backend
	if backend == "" {
		backend = s.cfg.Node.Backend().Name()
	}
	mode := s.cfg.Node.Mode()
	if req.Mode != "" {
		m, err := accel.ParseMode(req.Mode)
		if err != nil {
			return nil, newProblem("bad-request", "mode: %v", err)
		}
		mode = m
		p.mode = &m
	}
	if req.Backend == "" && !s.cfg.Node.Backend().Status().Serves(mode) {
		// The node's backend is out of service (a GPU fault): the next
		// that serves the mode takes its jobs.
		if next, err := s.cfg.Node.Registry().Select(accel.Auto, mode); err == nil {
			backend = next.Name()
		}
	}
	b, ok := s.cfg.Node.Registry().Lookup(backend)
	if !ok {
		return nil, newProblem("invalid-job", "backend %q is not one of this node's", backend)
	}
	if st := b.Status(); !st.Available {
		return nil, newProblem("invalid-job", "backend %s is unavailable here: %s", backend, st.Reason)
	} else if !st.Serves(mode) {
		return nil, newProblem("invalid-job", "backend %s does not serve %s mode (it serves %s)", backend, mode, accel.ModeList(st.Modes))
	}
	p.lane = s.laneFor(backend)

	caps := s.cfg.Limits.Job
	l := caps
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d <= 0 {
			return nil, newProblem("bad-request", "timeout: %q is not a positive duration", req.Timeout)
		}
		if caps.Timeout > 0 && d > caps.Timeout {
			return nil, newProblem("over-limit", "timeout %v is above this node's %v", d, caps.Timeout)
		}
		l.Timeout = d
	}
	if req.Budget > 0 {
		if caps.Budget > 0 && req.Budget > caps.Budget {
			return nil, newProblem("over-limit", "budget %d is above this node's %d units", req.Budget, caps.Budget)
		}
		l.Budget = req.Budget
	}
	for _, f := range []struct {
		name string
		v    string
		cap  int64
		dst  *int64
	}{
		{"memory", req.Memory, caps.Memory, &l.Memory},
		{"tensor_memory", req.TensorMemory, caps.TensorMemory, &l.TensorMemory},
	} {
		if f.v == "" {
			continue
		}
		n, err := bytesize.Parse(f.v)
		if err != nil || n <= 0 {
			return nil, newProblem("bad-request", "%s: %q is not a positive size", f.name, f.v)
		}
		if f.cap > 0 && n > f.cap {
			return nil, newProblem("over-limit", "%s %s is above this node's %s", f.name, bytesize.Format(n), bytesize.Format(f.cap))
		}
		*f.dst = n
	}
	p.limits = l
	return p, nil
}

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// decodeJSON reads the request body into v: at most limit bytes, no unknown
// fields, nothing after the value.
func decodeJSON(body io.Reader, v any) *problem {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooLarge interface{ Error() string }
		if errors.As(err, &tooLarge) && strings.Contains(err.Error(), "request body too large") {
			return newProblem("too-large", "%v", err)
		}
		return newProblem("bad-request", "body: %v", err)
	}
	if dec.More() {
		return newProblem("bad-request", "body: more than one JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return newProblem("bad-request", "body: data after the JSON value")
	}
	return nil
}

// lane is a bounded queue of jobs for one backend, with its workers. A GPU
// backend is one lane, so its jobs take turns on the device; CPU backends
// get workers sized to the cores.
type lane struct {
	backend  string
	capacity int
	workers  int

	mu       sync.Mutex
	cond     *sync.Cond
	queue    []queued
	reserved int
	closed   bool
}

// queued is a job waiting in a lane: a stored one, or a flight.
type queued struct {
	id, owner string
	f         *flight
}

// flight is a job of POST /v1/invoke, which the store sees once, when it has
// ended.
type flight struct {
	job  store.Job // its id, owner, key, request and creation
	plan *plan     // the request, checked as it arrived
	// session is the encrypted session a sealed job came in, or "".
	session string
	done    chan struct{}
	// Once done is closed: what the run gave; stopped, where the node
	// stopped it (nothing is recorded then); refused, where it never ran.
	rec     record
	state   store.State
	stopped bool
	refused *problem
}

func (f *flight) view() JobView {
	v := JobView{ID: f.job.ID, Status: string(f.state), Result: f.rec.Result, Receipt: f.rec.Receipt,
		Session: f.session, Sealed: f.rec.Sealed, Node: f.rec.Node}
	v.Node.Attempts, v.Node.Created = 1, f.job.Created
	return v
}

// flightKey names a flight by its owner and Idempotency-Key.
func flightKey(f *flight) string { return f.job.Owner + "\x00" + f.job.IdempotencyKey }

// fly registers f, unless a flight with its Idempotency-Key is under way:
// then it returns that one. A flight without a key is always new.
func (s *Server) fly(f *flight) *flight {
	if f.job.IdempotencyKey == "" {
		return f
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if other := s.flights[flightKey(f)]; other != nil {
		return other
	}
	s.flights[flightKey(f)] = f
	return f
}

// land unregisters f, once the store holds it or it ended unrecorded.
func (s *Server) land(f *flight) {
	if f.job.IdempotencyKey == "" {
		return
	}
	s.mu.Lock()
	if s.flights[flightKey(f)] == f {
		delete(s.flights, flightKey(f))
	}
	s.mu.Unlock()
}

func newLane(backend string, capacity, workers int) *lane {
	l := &lane{backend: backend, capacity: capacity, workers: workers}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// reserve takes a place in the queue for a job about to be created.
func (l *lane) reserve() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || len(l.queue)+l.reserved >= l.capacity {
		return false
	}
	l.reserved++
	return true
}

// unreserve gives back a place that reserve took.
func (l *lane) unreserve() {
	l.mu.Lock()
	l.reserved--
	l.mu.Unlock()
}

// push queues id; reserved says it holds a place from reserve. Jobs
// recovered at start are queued without one, whatever the bound.
func (l *lane) push(q queued, reserved bool) {
	l.mu.Lock()
	if reserved {
		l.reserved--
	}
	l.queue = append(l.queue, q)
	l.mu.Unlock()
	l.cond.Signal()
}

// pop waits for a job; false when the lane is closed.
func (l *lane) pop() (queued, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.queue) == 0 && !l.closed {
		l.cond.Wait()
	}
	if l.closed {
		return queued{}, false
	}
	q := l.queue[0]
	l.queue = l.queue[1:]
	return q, true
}

func (l *lane) depth() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue)
}

// close stops the lane's workers and returns the jobs still waiting.
func (l *lane) close() []queued {
	l.mu.Lock()
	l.closed = true
	left := l.queue
	l.queue = nil
	l.mu.Unlock()
	l.cond.Broadcast()
	return left
}

// work runs the lane's jobs until it closes.
func (s *Server) work(l *lane) {
	defer s.workers.Done()
	for {
		q, ok := l.pop()
		if !ok {
			return
		}
		s.metrics.queueDepth.WithLabelValues(l.backend).Set(float64(l.depth()))
		s.runJob(q)
	}
}

// errShutdown is the cause of a job's context when the node stops before the
// job ends: the job stays running in the store and runs again at the next
// start.
var errShutdown = errors.New("the node is shutting down")

// errCancelled is the cause when a client cancels the job.
var errCancelled = errors.New("cancelled by the client")

// runJob runs a queued job and records its result. Its start is kept in
// memory only: the store sees one commit per job after the one that
// accepted it, and a job cut short by a crash is still queued there, so it
// runs again at the next start.
func (s *Server) runJob(q queued) {
	ctx, id := s.runCtx, q.id
	job := store.Job{}
	if q.f != nil {
		job = q.f.job
	} else {
		var err error
		job, err = s.cfg.Store.Job(ctx, q.owner, id)
		if err != nil || job.State != store.Queued {
			if err != nil && ctx.Err() == nil {
				s.log.Error("start job", "job", id, "err", err)
			}
			return // cancelled meanwhile, or the node is stopping
		}
	}
	jctx, cancel := context.WithCancelCause(ctx)
	s.mu.Lock()
	s.running[id] = cancel
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.running, id)
		s.mu.Unlock()
		cancel(nil)
	}()

	started := time.Now()
	var checked *plan
	if q.f != nil {
		checked = q.f.plan
	}
	rec, state := s.execute(jctx, job, checked)
	stopped := errors.Is(context.Cause(jctx), errShutdown)
	if errors.Is(context.Cause(jctx), errCancelled) {
		state = store.Cancelled
	}
	rec.Node.Started = started
	rec.Node.Finished = time.Now()
	rec.Node.QueuedSeconds = started.Sub(job.Created).Seconds()
	if q.f != nil && q.f.session != "" {
		s.seal(job.Owner, q.f.session, &rec, state)
	}
	data, _ := json.Marshal(rec)
	record := context.WithoutCancel(ctx)
	backend, mode := rec.Node.Backend, ""
	if !stopped {
		// Counted before the store shows the job, so that a client who
		// sees it ended finds it in the metrics too.
		if rec.Result != nil {
			mode = rec.Result.Mode
			s.metrics.units.WithLabelValues(backend, mode).Add(float64(rec.Result.Units))
		}
		s.metrics.jobs.WithLabelValues(backend, mode, string(state)).Inc()
		s.metrics.jobSeconds.WithLabelValues(backend, mode).Observe(rec.Node.ElapsedSeconds)
	}
	switch {
	case q.f != nil:
		// The client has its answer first; then the store, in a batch
		// with other jobs' records.
		q.f.rec, q.f.state, q.f.stopped = rec, state, stopped
		close(q.f.done)
		if !stopped {
			_, _, err := s.cfg.Store.CreateJob(record, store.NewJob{Owner: job.Owner, IdempotencyKey: job.IdempotencyKey,
				Request: job.Request, ID: id, State: state, Result: data})
			if err != nil {
				s.log.Error("record job result", "job", id, "err", err)
			}
		}
		s.land(q.f)
	case stopped:
		s.log.Warn("job left to run again at the next start", "job", id)
		return
	default:
		if _, err := s.cfg.Store.Transition(record, id, store.Queued, state, data); err != nil {
			s.log.Error("record job result", "job", id, "err", err) // cancelled while it ran: the cancel stands
		}
	}
	if stopped {
		return
	}
	s.log.Info("job finished", "job", id, "owner", job.Owner, "status", state, "backend", backend,
		"elapsed", time.Since(started).Round(time.Microsecond), "err", rec.Node.Error)
	s.notify(id)
}

// execute runs a started job and returns its record and final state. p is
// the job's checked request where it was checked just now (an invoke); a
// stored job, which may have waited or outlived a restart, is checked
// again, since its module or models may have gone meanwhile.
func (s *Server) execute(ctx context.Context, job store.Job, p *plan) (record, store.State) {
	rec := record{}
	fail := func(format string, a ...any) (record, store.State) {
		rec.Node.Error = fmt.Sprintf(format, a...)
		return rec, store.Failed
	}
	if p == nil {
		var req JobRequest
		if err := json.Unmarshal(job.Request, &req); err != nil {
			return fail("the stored request is unreadable: %v", err)
		}
		var prob *problem
		if p, prob = s.check(ctx, job.Owner, req); prob != nil {
			return fail("%s", prob.Detail)
		}
	}
	req := p.req
	mod, err := s.module(ctx, job.Owner, req.Module)
	if err != nil {
		return fail("module %s: %v", req.Module, err)
	}
	stdin := bytes.NewReader(req.Stdin)
	if req.StdinBlob != "" {
		f, _, err := s.cfg.Store.OpenBlob(ctx, job.Owner, req.StdinBlob)
		if err != nil {
			return fail("stdin blob %s: %v", req.StdinBlob, err)
		}
		defer f.Close()
		data, err := io.ReadAll(f)
		if err != nil {
			return fail("stdin blob %s: %v", req.StdinBlob, err)
		}
		stdin = bytes.NewReader(data)
	}
	inv := node.Invocation{
		Name:    "job",
		Args:    req.Args,
		Env:     req.Env,
		Stdin:   stdin,
		Backend: p.lane.backend,
		Mode:    p.mode,
		Limits:  p.limits,
	}
	res, err := s.cfg.Node.Invoke(ctx, mod, inv)
	if st := backendStatus(s.cfg.Node, res.Backend); res.Backend != "" && res.Mode == accel.Strict && !st.Available && ctx.Err() == nil {
		// The backend failed while the job ran (a GPU fault takes it out
		// of service). A strict job's outputs are the same bits on any
		// backend that serves strict mode, so it runs again on the next.
		if next, serr := s.cfg.Node.Registry().Select(accel.Auto, accel.Strict); serr == nil {
			s.log.Error("backend out of service; strict job runs again on another", "job", job.ID,
				"backend", res.Backend, "reason", st.Reason, "next", next.Name())
			inv.Backend = next.Name()
			res, err = s.cfg.Node.Invoke(ctx, mod, inv)
			rec.Node.Error = fmt.Sprintf("backend %s failed while the job ran (%s); it ran again on %s", st.Name, st.Reason, next.Name())
		}
	}
	if errors.Is(err, engine.ErrForgotten) {
		// Evicted from the cache between the lookup and the run: the
		// guest never started, so compile it again and run it.
		s.modules.drop(req.Module, mod)
		if mod, err = s.module(ctx, job.Owner, req.Module); err != nil {
			return fail("module %s: %v", req.Module, err)
		}
		res, err = s.cfg.Node.Invoke(ctx, mod, inv)
	}
	rec.Node.Backend, rec.Node.Device = res.Backend, res.Device
	rec.Node.ElapsedSeconds = res.Elapsed.Seconds()
	rec.Node.MemoryBytes = int64(res.MemoryPages) << 16
	if err != nil {
		rec.Node.Error = strings.TrimPrefix(rec.Node.Error+"; "+err.Error(), "; ")
	}
	if res.Outcome == node.Refused || res.Outcome == "" {
		return rec, store.Failed
	}
	r := &JobResult{
		Outcome:         string(res.Outcome),
		ExitCode:        res.ExitCode,
		StdoutTruncated: res.StdoutTruncated,
		StderrTruncated: res.StderrTruncated,
		Units:           res.Units,
		GuestUnits:      res.GuestUnits,
		Mode:            res.Mode.String(),
		ModuleSHA256:    res.ModuleSHA256,
		StdinSHA256:     res.StdinSHA256,
	}
	var perr error
	r.Stdout, r.StdoutBlob, r.StdoutSHA256, perr = s.output(ctx, job.Owner, res.Stdout, p.sealed)
	if perr == nil {
		r.Stderr, r.StderrBlob, r.StderrSHA256, perr = s.output(ctx, job.Owner, res.Stderr, p.sealed)
	}
	if perr != nil {
		return fail("store the output: %v", perr)
	}
	rec.Result = r
	if rec.Receipt, perr = s.sign(job.ID, req, res, r); perr != nil {
		return fail("sign the receipt: %v", perr)
	}
	return rec, store.Done
}

// backendStatus is the status of n's backend name.
func backendStatus(n *node.Node, name string) accel.Status {
	if b, ok := n.Registry().Lookup(name); ok {
		return b.Status()
	}
	return accel.Status{Name: name}
}

// output returns b inline when small or to be sealed, else stored as a
// blob of owner, with its sha256 either way.
func (s *Server) output(ctx context.Context, owner string, b []byte, sealed bool) (inline []byte, blob, hash string, err error) {
	sum := sha256.Sum256(b)
	hash = hex.EncodeToString(sum[:])
	if len(b) <= s.cfg.Limits.MaxInline || sealed {
		return b, "", hash, nil
	}
	info, err := s.cfg.Store.PutBlob(context.WithoutCancel(ctx), owner, bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, "", "", err
	}
	return nil, info.Hash, hash, nil
}

func (s *Server) isRunning(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running[id] != nil
}

// notify wakes whoever waits on job id.
func (s *Server) notify(id string) {
	s.mu.Lock()
	ch := s.waiters[id]
	delete(s.waiters, id)
	s.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// changed returns a channel closed when job id next ends.
func (s *Server) changed(id string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.waiters[id]
	if ch == nil {
		ch = make(chan struct{})
		s.waiters[id] = ch
	}
	return ch
}

// wait returns job id once it has ended or d has passed.
func (s *Server) wait(ctx context.Context, owner, id string, d time.Duration) (store.Job, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		ch := s.changed(id)
		j, err := s.cfg.Store.Job(ctx, owner, id)
		if err != nil || j.State.Terminal() || d <= 0 {
			// Nobody will close ch for a job that has ended: drop it. A
			// waiter that took it since has seen the end too.
			s.mu.Lock()
			if s.waiters[id] == ch {
				delete(s.waiters, id)
			}
			s.mu.Unlock()
			return j, err
		}
		select {
		case <-ch:
		case <-timer.C:
			return s.cfg.Store.Job(ctx, owner, id)
		case <-ctx.Done():
			return j, nil
		}
	}
}
