package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
	"time"

	"golang.org/x/crypto/nacl/box"

	"github.com/accelnode/accelnode/crypto"
	"github.com/accelnode/accelnode/server/api"
)

// Node returns who signs the node's receipts: GET /v1/node.
func (c *Client) Node(ctx context.Context) (api.NodeIdentity, error) {
	var n api.NodeIdentity
	err := c.get(ctx, "/v1/node", nil, &n)
	return n, err
}

// Receipt returns the signed receipt of finished job id, checked: its
// signature must hold. Who signed it is the receipt's Node; compare it
// with the key of the node you trust.
func (c *Client) Receipt(ctx context.Context, id string) (crypto.SignedReceipt, error) {
	resp, err := c.send(ctx, request{method: http.MethodGet, path: "/v1/jobs/" + seg(id) + "/receipt", retry: true})
	if err != nil {
		return crypto.SignedReceipt{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusAccepted {
		return crypto.SignedReceipt{}, fmt.Errorf("receipt of job %s: the job has not ended", id)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return crypto.SignedReceipt{}, fmt.Errorf("receipt of job %s: %w", id, err)
	}
	r, err := crypto.VerifyReceipt(data)
	if err != nil {
		return crypto.SignedReceipt{}, fmt.Errorf("receipt of job %s: %w", id, err)
	}
	return r, nil
}

// Session is an encrypted session with the node (NaCl box): requests and
// answers travel sealed, so that neither a proxy nor the node's disk sees
// them in the clear. Safe for concurrent use.
type Session struct {
	c         *Client
	ID        string
	ExpiresAt time.Time
	// NodeKey is the node's key for this session.
	NodeKey [32]byte

	mu     sync.Mutex
	shared [32]byte
	closed bool
}

// OpenSession opens a session with a fresh key pair; ttl 0 takes the
// node's default lifetime.
func (c *Client) OpenSession(ctx context.Context, ttl time.Duration) (*Session, error) {
	pub, priv, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("client: session key: %w", err)
	}
	defer clear(priv[:])
	req := api.SessionRequest{PublicKey: pub[:]}
	if ttl > 0 {
		req.TTL = ttl.String()
	}
	var s api.Session
	if _, err := c.postJSON(ctx, http.MethodPost, "/v1/sessions", nil, req, false, &s); err != nil {
		return nil, err
	}
	if len(s.PublicKey) != 32 {
		return nil, fmt.Errorf("client: session %s: the node's key has %d bytes, want 32", s.ID, len(s.PublicKey))
	}
	sess := &Session{c: c, ID: s.ID, ExpiresAt: s.ExpiresAt, NodeKey: [32]byte(s.PublicKey)}
	box.Precompute(&sess.shared, &sess.NodeKey, priv)
	return sess, nil
}

// ErrSessionClosed: the session was closed on this side.
var ErrSessionClosed = errors.New("session closed")

// seal seals b with a fresh random nonce: the nonce, then the box.
func (s *Session) seal(b []byte) ([]byte, error) {
	var nonce [24]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrSessionClosed
	}
	return box.SealAfterPrecomputation(nonce[:], b, &nonce, &s.shared), nil
}

// open opens what the node sealed.
func (s *Session) open(sealed []byte) ([]byte, error) {
	if len(sealed) < 24+box.Overhead {
		return nil, errors.New("the sealed answer is too short")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrSessionClosed
	}
	plain, ok := box.OpenAfterPrecomputation(nil, sealed[24:], (*[24]byte)(sealed[:24]), &s.shared)
	if !ok {
		return nil, errors.New("the sealed answer failed authentication")
	}
	return plain, nil
}

// Sealed is what a sealed job gave: its id, result and checked receipt.
type Sealed struct {
	Job     string
	Result  api.JobResult
	Receipt crypto.SignedReceipt
}

// Invoke runs a job sent sealed and waits for it. The receipt's signature
// is checked, and so is that it speaks of this result. A problem the node
// answered with (sealed too) comes back as an *Error, as from the other
// calls.
func (s *Session) Invoke(ctx context.Context, req api.JobRequest) (Sealed, error) {
	plain, err := json.Marshal(req)
	if err != nil {
		return Sealed{}, fmt.Errorf("client: %w", err)
	}
	a, job, err := s.exchange(ctx, "/v1/sessions/"+seg(s.ID)+"/invoke", plain)
	if err != nil {
		return Sealed{}, err
	}
	if a.Result == nil || a.Receipt == nil {
		return Sealed{}, fmt.Errorf("client: session %s: the sealed answer has no result or no receipt", s.ID)
	}
	receipt, err := crypto.VerifyReceipt(a.Receipt)
	if err != nil {
		return Sealed{}, fmt.Errorf("client: job %s: %w", job, err)
	}
	if receipt.Receipt.Output != a.Result.StdoutSHA256 || receipt.Receipt.Job != job {
		return Sealed{}, fmt.Errorf("client: job %s: the receipt speaks of another job or output", job)
	}
	return Sealed{Job: job, Result: *a.Result, Receipt: receipt}, nil
}

// exchange seals plain, posts it to path, and opens the sealed answer,
// returning it with the job it names, if any. A problem in it comes back
// as an *Error.
func (s *Session) exchange(ctx context.Context, path string, plain []byte) (api.SealedAnswer, string, error) {
	sealed, err := s.seal(plain)
	if err != nil {
		return api.SealedAnswer{}, "", fmt.Errorf("client: session %s: %w", s.ID, err)
	}
	body, _ := json.Marshal(api.Sealed{Sealed: sealed})
	hreq, err := s.c.newRequest(ctx, http.MethodPost, s.c.base+path, bytes.NewReader(body), nil, "application/json, application/problem+json")
	if err != nil {
		return api.SealedAnswer{}, "", err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := s.c.hc.Do(hreq)
	if err != nil {
		return api.SealedAnswer{}, "", err
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" && resp.StatusCode >= 400 {
		// Refused before the request could be opened (nothing to seal
		// with), or by a proxy.
		return api.SealedAnswer{}, "", readProblem(http.MethodPost, path, resp)
	}
	var ans api.Sealed
	if err := decodeJSON(resp, &ans); err != nil {
		return api.SealedAnswer{}, "", err
	}
	data, err := s.open(ans.Sealed)
	if err != nil {
		return api.SealedAnswer{}, "", fmt.Errorf("client: session %s: %w", s.ID, err)
	}
	var a api.SealedAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		return api.SealedAnswer{}, "", fmt.Errorf("client: session %s: the sealed answer is not the JSON expected: %w", s.ID, err)
	}
	if a.Problem != nil {
		return api.SealedAnswer{}, "", &Error{Method: http.MethodPost, Path: path, Problem: a.Problem}
	}
	return a, ans.Job, nil
}

// Close ends the session on the node and forgets its key here.
func (s *Session) Close(ctx context.Context) error {
	s.mu.Lock()
	clear(s.shared[:])
	s.closed = true
	s.mu.Unlock()
	_, err := s.c.call(ctx, request{method: http.MethodDelete, path: "/v1/sessions/" + seg(s.ID)}, nil)
	return err
}
