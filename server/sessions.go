package server

// Encrypted sessions and signed receipts: the node's identity, sessions in
// NaCl box, jobs sent sealed, and the receipt every finished job gets.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/crypto"
	"github.com/accelnode/accelnode/hostfn/abi"
	"github.com/accelnode/accelnode/node"
	"github.com/accelnode/accelnode/server/api"
	"github.com/accelnode/accelnode/store"
)

// sealedJob is what the store keeps as the request of a job sent sealed:
// the session and the ciphertext, never the plaintext.
type sealedJob struct {
	Session string `json:"session"`
	Sealed  []byte `json:"sealed"`
}

// nodeIdentity answers GET /v1/node.
func (s *Server) nodeIdentity(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.NodeIdentity{
		PublicKey:   s.cfg.Identity.PublicKey(),
		Fingerprint: s.cfg.Identity.Fingerprint(),
		Contract:    accel.ContractVersion,
		ABI:         abi.Version,
		Version:     s.cfg.Version,
	})
}

// sessionProblem maps an error of the session table onto a problem.
func sessionProblem(err error, id string) *problem {
	switch {
	case errors.Is(err, crypto.ErrUnknownSession):
		return newProblem("not-found", "session %s: not found (it may have ended, or the node restarted)", id)
	case errors.Is(err, crypto.ErrExpired):
		return newProblem("session-expired", "session %s has expired: open a new one", id)
	case errors.Is(err, crypto.ErrReplay):
		return newProblem("replay", "session %s: this message was received before; seal every message with a fresh nonce", id)
	case errors.Is(err, crypto.ErrAuth):
		return newProblem("bad-seal", "session %s: the message failed authentication: it was altered, or sealed with other keys", id)
	case errors.Is(err, crypto.ErrTooMany):
		p := newProblem("quota", "session %s: %v", id, err)
		p.retryAfter = time.Second
		return p
	case errors.Is(err, crypto.ErrInvalid):
		return newProblem("bad-request", "session %s: %v", id, err)
	}
	return newProblem("internal", "session %s: %v", id, err)
}

// createSession opens an encrypted session with the client's public key.
func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	if !need(w, r, ScopeInvoke) {
		return
	}
	var req api.SessionRequest
	if p := decodeJSON(http.MaxBytesReader(w, r.Body, s.cfg.Limits.MaxBody), &req); p != nil {
		writeProblem(w, r, p)
		return
	}
	if len(req.PublicKey) != 32 {
		writeProblem(w, r, newProblem("bad-request", "public_key: want 32 bytes (an X25519 key, base64), got %d", len(req.PublicKey)))
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			writeProblem(w, r, newProblem("bad-request", "ttl: %q is not a positive duration", req.TTL))
			return
		}
		ttl = d
	}
	sess, err := s.sessions.Create(caller(r.Context()).Name, [32]byte(req.PublicKey), ttl)
	if err != nil {
		writeProblem(w, r, sessionProblem(err, "(new)"))
		return
	}
	w.Header().Set("Location", "/v1/sessions/"+sess.ID)
	writeJSON(w, http.StatusCreated, api.Session{ID: sess.ID, PublicKey: sess.NodePublicKey[:], ExpiresAt: sess.ExpiresAt.UTC()})
}

// getSession reports a live session of the caller's.
func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sess, err := s.sessions.Lookup(caller(r.Context()).Name, id)
	if err != nil {
		writeProblem(w, r, sessionProblem(err, id))
		return
	}
	writeJSON(w, http.StatusOK, api.Session{ID: sess.ID, PublicKey: sess.NodePublicKey[:], ExpiresAt: sess.ExpiresAt.UTC()})
}

// endSession ends a session and wipes its keys.
func (s *Server) endSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.sessions.End(caller(r.Context()).Name, id); err != nil {
		writeProblem(w, r, sessionProblem(err, id))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// sealedInvoke runs a job sent sealed and waits for it: the answer, result
// and receipt, or the problem that stopped it, goes back sealed under the
// same session. The plaintext request lives in memory only; the store
// keeps the ciphertexts.
func (s *Server) sealedInvoke(w http.ResponseWriter, r *http.Request) {
	if !need(w, r, ScopeInvoke) {
		return
	}
	if !s.Ready() {
		writeProblem(w, r, newProblem("unavailable", "the node is shutting down"))
		return
	}
	ctx, owner, id := r.Context(), caller(r.Context()).Name, r.PathValue("id")
	var msg api.Sealed
	if p := decodeJSON(http.MaxBytesReader(w, r.Body, s.cfg.Limits.MaxSealed), &msg); p != nil {
		writeProblem(w, r, p)
		return
	}
	plain, err := s.sessions.Open(owner, id, msg.Sealed)
	if err != nil {
		writeProblem(w, r, sessionProblem(err, id))
		return
	}
	// From here every answer is sealed: even a problem's words may repeat
	// what the request said.
	answer := func(status int, job string, a api.SealedAnswer) {
		data, _ := json.Marshal(a)
		sealed, err := s.sessions.Seal(owner, id, data)
		if err != nil {
			writeProblem(w, r, sessionProblem(err, id))
			return
		}
		writeJSON(w, status, api.Sealed{Job: job, Sealed: sealed})
	}
	refuse := func(p *problem) {
		p.Instance = r.URL.Path
		answer(p.Status, "", api.SealedAnswer{Problem: &p.Problem})
	}
	var req api.JobRequest
	if p := decodeJSON(bytes.NewReader(plain), &req); p != nil {
		refuse(p)
		return
	}
	if req.StdinBlob != "" {
		refuse(newProblem("bad-request", "stdin_blob: a sealed job carries its input inline, sealed; blobs are stored in the clear"))
		return
	}
	plan, prob := s.check(ctx, owner, req)
	if prob != nil {
		refuse(prob)
		return
	}
	plan.sealed = true
	allowWrite(w, 24*time.Hour) // bounded by the job's own deadline
	body, _ := json.Marshal(sealedJob{Session: id, Sealed: msg.Sealed})
	rq := &request{req: req, body: body, plan: plan, key: caller(ctx)}
	if p := s.reserve(ctx, rq); p != nil {
		refuse(p)
		return
	}
	f := &flight{job: store.Job{ID: store.NewID(), Owner: owner, Request: body, Created: time.Now().UTC(), State: store.Queued},
		plan: plan, session: id, done: make(chan struct{})}
	plan.lane.push(queued{id: f.job.ID, owner: owner, f: f}, true)
	select {
	case <-f.done:
	case <-ctx.Done():
		return // the client left; the job runs on and is recorded, sealed
	}
	switch {
	case f.stopped:
		refuse(newProblem("unavailable", "the node stopped before job %s ended: send the request again", f.job.ID))
	case f.rec.Sealed == nil:
		// The session ended before the job did: nothing could be sealed.
		writeProblem(w, r, newProblem("session-expired", "session %s ended before job %s did; its result was dropped", id, f.job.ID))
	default:
		status := http.StatusOK
		if f.state != store.Done {
			status = http.StatusUnprocessableEntity
		}
		writeJSON(w, status, api.Sealed{Job: f.job.ID, Sealed: f.rec.Sealed})
	}
}

// seal replaces a sealed job's record by its sealed form: the result and
// receipt go into Sealed, under the job's session, and leave the record.
func (s *Server) seal(owner, session string, rec *record, state store.State) {
	a := api.SealedAnswer{Result: rec.Result, Receipt: rec.Receipt}
	if state != store.Done {
		detail := "job failed"
		if rec.Node.Error != "" {
			detail = "job failed: " + rec.Node.Error
		}
		p := newProblem("invalid-job", "%s", detail)
		a.Problem = &p.Problem
	}
	data, _ := json.Marshal(a)
	sealed, err := s.sessions.Seal(owner, session, data)
	rec.Result, rec.Receipt, rec.Sealed = nil, nil, sealed
	if err != nil {
		rec.Node.Error = "the session ended before the job did, so its result was dropped: " + err.Error()
	}
}

// sign makes the receipt of a job that ran: what went in, where and how it
// ran, and what came out, signed with the node's key.
func (s *Server) sign(jobID string, req api.JobRequest, res node.Result, r *api.JobResult) (json.RawMessage, error) {
	input := req.StdinBlob
	if input == "" {
		sum := sha256.Sum256(req.Stdin)
		input = hex.EncodeToString(sum[:])
	}
	models := []crypto.ModelHash{}
	for _, name := range req.Models {
		m, err := s.cfg.Node.Models().Lookup(name)
		if err != nil {
			return nil, err
		}
		models = append(models, crypto.ModelHash{Name: name, SHA256: m.SHA256})
	}
	args := req.Args
	if args == nil {
		args = []string{}
	}
	signed, err := s.cfg.Identity.SignReceipt(crypto.Receipt{
		Version:    crypto.ReceiptVersion,
		Job:        jobID,
		Module:     r.ModuleSHA256,
		Stdin:      input,
		Models:     models,
		Args:       args,
		Backend:    res.Backend,
		Device:     res.Device,
		Mode:       r.Mode,
		Contract:   accel.ContractVersion,
		Output:     r.StdoutSHA256,
		Outcome:    r.Outcome,
		ExitCode:   r.ExitCode,
		Units:      strconv.FormatUint(r.Units, 10),
		GuestUnits: strconv.FormatUint(r.GuestUnits, 10),
		Issued:     time.Now().UTC().Truncate(time.Second).Format(time.RFC3339),
	})
	if err != nil {
		return nil, err
	}
	return json.Marshal(signed)
}

// getReceipt answers with a finished job's signed receipt.
func (s *Server) getReceipt(w http.ResponseWriter, r *http.Request) {
	job, ok := s.waited(w, r)
	if !ok {
		return
	}
	v := s.view(job)
	switch {
	case v.Receipt != nil:
		writeJSON(w, http.StatusOK, v.Receipt)
	case v.Session != "":
		writeProblem(w, r, newProblem("not-found", "job %s was sent sealed: its receipt is in its sealed answer", v.ID))
	case !job.State.Terminal():
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusAccepted, v)
	default:
		writeProblem(w, r, newProblem("not-found", "job %s has no receipt: it ended %s without running to an outcome", v.ID, v.Status))
	}
}

// sweepSessions ends expired sessions until ctx ends.
func (s *Server) sweepSessions(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sessions.Sweep()
		}
	}
}
