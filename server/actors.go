package server

// Actors: stateful guests that keep their memory and tensors between
// calls, started from a stored module and called by method, in the clear
// or sealed in a session.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/crypto"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/node"
	"github.com/accelnode/accelnode/server/api"
)

// SnapshotPurpose names the key a node derives from its identity
// (crypto.Identity.DeriveKey) to seal its actors' snapshots: the same
// identity opens them again after a restart.
const SnapshotPurpose = "actor snapshots v1"

// actorView is what clients see of an actor.
func actorView(a node.ActorInfo) api.Actor {
	v := api.Actor{
		ID: a.ID, Module: a.ModuleSHA256, Backend: a.Backend, Mode: a.Mode.String(),
		IdleTimeout: a.IdleTimeout.String(), Created: a.Created, Calls: a.Calls, Resident: a.Resident,
		MemoryBytes: int64(a.MemoryPages) << 16, Tensors: a.Tensors, TensorBytes: a.TensorBytes,
		SnapshotBytes: a.SnapshotBytes, Snapshot: "every-call",
	}
	if a.SnapshotOnEvict {
		v.Snapshot = "on-evict"
	}
	if !a.LastCall.IsZero() {
		v.LastCall = a.LastCall
	}
	return v
}

// actorProblem maps an error of the node's actors onto a problem.
func actorProblem(err error, what string) *problem {
	switch {
	case errors.Is(err, node.ErrActorNotFound):
		return newProblem("not-found", "%s: not found", what)
	case errors.Is(err, node.ErrBadMethod):
		return newProblem("not-found", "%s: %v", what, err)
	case errors.Is(err, node.ErrActorLimit):
		p := newProblem("actor-limit", "%s: %v", what, err)
		p.retryAfter = time.Second
		return p
	case errors.Is(err, node.ErrActorFailed):
		return newProblem("actor-failed", "%s: %v", what, err)
	case errors.Is(err, engine.ErrNotReactor), errors.Is(err, engine.ErrMalformedModule):
		return newProblem("invalid-module", "%s: %v", what, err)
	case errors.Is(err, node.ErrNoActors):
		return newProblem("unavailable", "this node keeps no actors")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return newProblem("unavailable", "%s: %v", what, err)
	}
	return newProblem("internal", "%s: %v", what, err)
}

// startActor starts an actor from a stored module.
func (s *Server) startActor(w http.ResponseWriter, r *http.Request) {
	if !need(w, r, ScopeInvoke) {
		return
	}
	ctx, owner := r.Context(), caller(r.Context()).Name
	var req api.ActorRequest
	if p := decodeJSON(http.MaxBytesReader(w, r.Body, s.cfg.Limits.MaxBody), &req); p != nil {
		writeProblem(w, r, p)
		return
	}
	// The job's own checks say what a job may ask for; an actor's limits
	// are the same, per call.
	p, prob := s.check(ctx, owner, api.JobRequest{Module: req.Module, Env: req.Env, Backend: req.Backend, Mode: req.Mode,
		Timeout: req.Timeout, Budget: req.Budget, Memory: req.Memory, TensorMemory: req.TensorMemory})
	if prob != nil {
		writeProblem(w, r, prob)
		return
	}
	spec := node.ActorSpec{Owner: owner, Name: "actor", Args: req.Args, Env: req.Env, Backend: p.lane.backend, Mode: p.mode,
		Limits: p.limits, SnapshotOnEvict: req.Snapshot == "on-evict"}
	switch req.Snapshot {
	case "", "every-call", "on-evict":
	default:
		writeProblem(w, r, newProblem("bad-request", "snapshot: %q (want every-call or on-evict)", req.Snapshot))
		return
	}
	if req.IdleTimeout != "" {
		d, err := time.ParseDuration(req.IdleTimeout)
		if err != nil || d <= 0 {
			writeProblem(w, r, newProblem("bad-request", "idle_timeout: %q is not a positive duration", req.IdleTimeout))
			return
		}
		spec.IdleTimeout = d
	}
	f, _, err := s.cfg.Store.OpenBlob(ctx, owner, req.Module)
	if err != nil {
		writeProblem(w, r, storeProblem(err, "module "+req.Module))
		return
	}
	wasm, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		writeProblem(w, r, storeProblem(err, "module "+req.Module))
		return
	}
	info, err := s.cfg.Node.StartActor(ctx, wasm, spec)
	if err != nil {
		writeProblem(w, r, actorProblem(err, "actor of module "+req.Module))
		return
	}
	s.log.Info("actor started", "actor", info.ID, "owner", owner, "module", info.ModuleSHA256, "backend", info.Backend)
	w.Header().Set("Location", "/v1/actors/"+info.ID)
	writeJSON(w, http.StatusCreated, actorView(info))
}

func (s *Server) listActors(w http.ResponseWriter, r *http.Request) {
	actors := []api.Actor{}
	for _, a := range s.cfg.Node.ListActors(caller(r.Context()).Name) {
		actors = append(actors, actorView(a))
	}
	writeJSON(w, http.StatusOK, map[string]any{"actors": actors})
}

func (s *Server) getActor(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	a, err := s.cfg.Node.ActorInfo(caller(r.Context()).Name, id)
	if err != nil {
		writeProblem(w, r, actorProblem(err, "actor "+id))
		return
	}
	writeJSON(w, http.StatusOK, actorView(a))
}

func (s *Server) stopActor(w http.ResponseWriter, r *http.Request) {
	if !need(w, r, ScopeInvoke) {
		return
	}
	id := r.PathValue("id")
	if err := s.cfg.Node.StopActor(r.Context(), caller(r.Context()).Name, id); err != nil {
		writeProblem(w, r, actorProblem(err, "actor "+id))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// callActor calls an actor's method with the body (any bytes) as its
// payload, and answers with the reply and how the call went.
func (s *Server) callActor(w http.ResponseWriter, r *http.Request) {
	if !need(w, r, ScopeInvoke) {
		return
	}
	id, method := r.PathValue("id"), r.PathValue("method")
	payload, p := readBody(w, r, node.MaxCallPayload)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	allowWrite(w, 24*time.Hour) // bounded by the call's own deadline
	owner := caller(r.Context()).Name
	res, err := s.cfg.Node.CallActor(r.Context(), owner, id, method, payload)
	if err != nil {
		writeProblem(w, r, actorProblem(err, "actor "+id+" method "+method))
		return
	}
	c := callView(res)
	if c.Receipt, err = s.signCall(owner, id, method, payload, res); err != nil {
		writeProblem(w, r, newProblem("internal", "sign the receipt of actor %s: %v", id, err))
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// signCall makes the receipt of an actor's call that returned.
func (s *Server) signCall(owner, id, method string, payload []byte, res node.CallResult) (json.RawMessage, error) {
	info, err := s.cfg.Node.ActorInfo(owner, id)
	if err != nil {
		return nil, err
	}
	in, out := sha256.Sum256(payload), sha256.Sum256(res.Reply)
	signed, err := s.cfg.Identity.SignReceipt(crypto.Receipt{
		Version:    crypto.ReceiptVersion,
		Job:        fmt.Sprintf("actor/%s/call/%d", id, info.Calls),
		Module:     info.ModuleSHA256,
		Stdin:      hex.EncodeToString(in[:]),
		Models:     []crypto.ModelHash{},
		Args:       []string{method},
		Backend:    info.Backend,
		Device:     backendStatus(s.cfg.Node, info.Backend).Device,
		Mode:       info.Mode.String(),
		Contract:   accel.ContractVersion,
		Output:     hex.EncodeToString(out[:]),
		Outcome:    string(res.Outcome),
		ExitCode:   res.Code,
		Units:      strconv.FormatUint(res.Units, 10),
		GuestUnits: strconv.FormatUint(res.GuestUnits, 10),
		Issued:     time.Now().UTC().Truncate(time.Second).Format(time.RFC3339),
	})
	if err != nil {
		return nil, err
	}
	return json.Marshal(signed)
}

// callView is the answer of an actor call.
func callView(res node.CallResult) api.ActorCall {
	return api.ActorCall{Reply: res.Reply, Code: res.Code, Outcome: string(res.Outcome), Units: res.Units, GuestUnits: res.GuestUnits,
		ElapsedSeconds: res.Elapsed.Seconds(), MemoryBytes: int64(res.MemoryPages) << 16, Stdout: res.Stdout, Stderr: res.Stderr}
}

// sealedCall calls an actor's method with a payload sent sealed in a
// session, and answers sealed: an api.SealedAnswer holding the call, or
// the problem.
func (s *Server) sealedCall(w http.ResponseWriter, r *http.Request) {
	if !need(w, r, ScopeInvoke) {
		return
	}
	owner, session, id, method := caller(r.Context()).Name, r.PathValue("id"), r.PathValue("actor"), r.PathValue("method")
	var msg api.Sealed
	if p := decodeJSON(http.MaxBytesReader(w, r.Body, s.cfg.Limits.MaxSealed), &msg); p != nil {
		writeProblem(w, r, p)
		return
	}
	payload, err := s.sessions.Open(owner, session, msg.Sealed)
	if err != nil {
		writeProblem(w, r, sessionProblem(err, session))
		return
	}
	answer := func(status int, v any) {
		data, _ := json.Marshal(v)
		sealed, err := s.sessions.Seal(owner, session, data)
		if err != nil {
			writeProblem(w, r, sessionProblem(err, session))
			return
		}
		writeJSON(w, status, api.Sealed{Sealed: sealed})
	}
	allowWrite(w, 24*time.Hour)
	res, err := s.cfg.Node.CallActor(r.Context(), owner, id, method, payload)
	if err != nil {
		p := actorProblem(err, "actor "+id+" method "+method)
		p.Instance = r.URL.Path
		answer(p.Status, api.SealedAnswer{Problem: &p.Problem})
		return
	}
	c := callView(res)
	if c.Receipt, err = s.signCall(owner, id, method, payload, res); err != nil {
		p := newProblem("internal", "sign the receipt of actor %s: %v", id, err)
		answer(p.Status, api.SealedAnswer{Problem: &p.Problem})
		return
	}
	answer(http.StatusOK, api.SealedAnswer{Call: &c})
}

// actorRoutes registers the actor routes.
func (s *Server) actorRoutes(api func(pattern string, h http.HandlerFunc)) {
	api("POST /v1/actors", s.startActor)
	api("GET /v1/actors", s.listActors)
	api("GET /v1/actors/{id}", s.getActor)
	api("DELETE /v1/actors/{id}", s.stopActor)
	api("POST /v1/actors/{id}/call/{method}", s.callActor)
	api("POST /v1/sessions/{id}/actors/{actor}/call/{method}", s.sealedCall)
}
