package server_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/nacl/box"

	"github.com/accelnode/accelnode/crypto"
	"github.com/accelnode/accelnode/server"
	"github.com/accelnode/accelnode/server/api"
)

const echoGuest = "github.com/accelnode/accelnode/engine/testdata/guests/echo"

// sessionClient is a client's side of an encrypted session, written with
// the box primitives alone, as tweetnacl would be used.
type sessionClient struct {
	ts     *testServer
	id     string
	shared [32]byte
}

func (ts *testServer) openSession(ttl string) *sessionClient {
	ts.t.Helper()
	pub, priv, err := box.GenerateKey(rand.Reader)
	if err != nil {
		ts.t.Fatal(err)
	}
	r := ts.json(http.MethodPost, "/v1/sessions", api.SessionRequest{PublicKey: pub[:], TTL: ttl})
	if r.Status != http.StatusCreated {
		ts.t.Fatalf("POST /v1/sessions: %d %s", r.Status, r.Body)
	}
	var s api.Session
	r.decode(ts.t, &s)
	if len(s.PublicKey) != 32 || s.ID == "" || !s.ExpiresAt.After(time.Now()) {
		ts.t.Fatalf("session %+v", s)
	}
	c := &sessionClient{ts: ts, id: s.ID}
	box.Precompute(&c.shared, (*[32]byte)(s.PublicKey), priv)
	return c
}

func (c *sessionClient) seal(v any) []byte {
	plain, _ := json.Marshal(v)
	return c.sealBytes(plain)
}

// sealBytes seals plain with a fresh random nonce: the nonce, then the box.
func (c *sessionClient) sealBytes(plain []byte) []byte {
	var nonce [24]byte
	rand.Read(nonce[:])
	return box.SealAfterPrecomputation(nonce[:], plain, &nonce, &c.shared)
}

func (c *sessionClient) open(sealed []byte) api.SealedAnswer {
	c.ts.t.Helper()
	if len(sealed) < 24 {
		c.ts.t.Fatalf("sealed answer of %d bytes", len(sealed))
	}
	plain, ok := box.OpenAfterPrecomputation(nil, sealed[24:], (*[24]byte)(sealed[:24]), &c.shared)
	if !ok {
		c.ts.t.Fatal("the node's sealed answer fails authentication")
	}
	var a api.SealedAnswer
	if err := json.Unmarshal(plain, &a); err != nil {
		c.ts.t.Fatalf("sealed answer %s: %v", plain, err)
	}
	return a
}

// send posts sealed bytes to the session's invoke route.
func (c *sessionClient) send(sealed []byte) response {
	return c.ts.json(http.MethodPost, "/v1/sessions/"+c.id+"/invoke", api.Sealed{Sealed: sealed})
}

// TestSealedJob runs a job sent sealed: its answer opens to the result and
// a receipt that verifies and names the output; the same message sent
// again is refused as a replay; and no byte of the plaintext input or
// output reaches the data directory.
func TestSealedJob(t *testing.T) {
	ts := startServer(t, serverOpts{})
	module := ts.putModule(echoGuest)
	c := ts.openSession("")
	secret := []byte("the patient's record 7f3a9c, never on disk")

	msg := c.seal(api.JobRequest{Module: module, Stdin: secret, Args: []string{"--flag"}})
	r := c.send(msg)
	if r.Status != http.StatusOK {
		t.Fatalf("sealed invoke: %d %s", r.Status, r.Body)
	}
	var ans api.Sealed
	r.decode(t, &ans)
	a := c.open(ans.Sealed)
	if a.Problem != nil || a.Result == nil || a.Receipt == nil {
		t.Fatalf("sealed answer %+v", a)
	}
	if !bytes.Equal(a.Result.Stdout, secret) {
		t.Errorf("stdout %q, want the input echoed", a.Result.Stdout)
	}
	rc, err := crypto.VerifyReceipt(a.Receipt)
	if err != nil {
		t.Fatalf("receipt: %v", err)
	}
	if rc.Receipt.Job != ans.Job || rc.Receipt.Output != hash(secret) || rc.Receipt.Stdin != hash(secret) ||
		rc.Receipt.Module != module || len(rc.Receipt.Args) != 1 || rc.Receipt.Args[0] != "--flag" {
		t.Errorf("receipt %+v does not describe job %s", rc.Receipt, ans.Job)
	}

	// The stored job shows its session and its sealed answer only. The
	// store records it just after the answer went out.
	jr := ts.do(http.MethodGet, "/v1/jobs/"+ans.Job, nil)
	for deadline := time.Now().Add(10 * time.Second); jr.Status == http.StatusNotFound && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		jr = ts.do(http.MethodGet, "/v1/jobs/"+ans.Job, nil)
	}
	var job api.Job
	jr.decode(t, &job)
	if job.Session != c.id || job.Result != nil || job.Receipt != nil || !bytes.Equal(job.Sealed, ans.Sealed) {
		t.Errorf("stored job %+v", job)
	}
	if p := ts.do(http.MethodGet, "/v1/jobs/"+ans.Job+"/receipt", nil); p.Status != http.StatusNotFound {
		t.Errorf("GET receipt of a sealed job: %d, want 404", p.Status)
	}

	if p := c.send(msg); p.Status != http.StatusConflict || kind(p.problem(t)) != "replay" {
		t.Errorf("replayed message: %d %s, want 409 replay", p.Status, p.Body)
	}
	if p := c.send(ans.Sealed); p.Status != http.StatusConflict || kind(p.problem(t)) != "replay" {
		t.Errorf("the node's own answer sent back: %d %s, want 409 replay", p.Status, p.Body)
	}

	ts.stop()
	filepath.WalkDir(ts.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err == nil && bytes.Contains(data, []byte("7f3a9c")) {
			t.Errorf("%s holds the sealed job's plaintext", path)
		}
		return nil
	})
}

// TestSealedRefusals: every way a sealed message can be wrong is refused
// with its own problem, and a refusal after the request was opened comes
// back sealed.
func TestSealedRefusals(t *testing.T) {
	ts := startServer(t, serverOpts{})
	module := ts.putModule(echoGuest)
	c := ts.openSession("")

	tampered := c.seal(api.JobRequest{Module: module})
	tampered[30] ^= 1
	if r := c.send(tampered); r.Status != http.StatusBadRequest || kind(r.problem(t)) != "bad-seal" {
		t.Errorf("tampered: %d %s, want 400 bad-seal", r.Status, r.Body)
	}
	other := &sessionClient{ts: ts, id: "00000000000000000000000000000000", shared: c.shared}
	if r := other.send(c.seal(api.JobRequest{Module: module})); r.Status != http.StatusNotFound {
		t.Errorf("unknown session: %d %s, want 404", r.Status, r.Body)
	}

	// A request the node opened but refuses: the problem is sealed.
	r := c.send(c.seal(api.JobRequest{Module: hash([]byte("no such module"))}))
	if r.Status != http.StatusNotFound || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("unknown module, sealed: %d %s %s", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	var ans api.Sealed
	r.decode(t, &ans)
	if a := c.open(ans.Sealed); a.Problem == nil || a.Problem.Kind() != "not-found" || a.Result != nil {
		t.Errorf("sealed refusal %+v", a)
	}

	// Ended: its keys are gone.
	if r := ts.do(http.MethodDelete, "/v1/sessions/"+c.id, nil); r.Status != http.StatusNoContent {
		t.Fatalf("DELETE session: %d %s", r.Status, r.Body)
	}
	if r := c.send(c.seal(api.JobRequest{Module: module})); r.Status != http.StatusNotFound {
		t.Errorf("ended session: %d %s, want 404", r.Status, r.Body)
	}
}

// TestSessionExpiry: a session past its lifetime answers 410, and its
// requests are refused.
func TestSessionExpiry(t *testing.T) {
	ts := startServer(t, serverOpts{})
	module := ts.putModule(echoGuest)
	c := ts.openSession("1s")
	time.Sleep(1100 * time.Millisecond)
	if r := c.send(c.seal(api.JobRequest{Module: module})); r.Status != http.StatusGone || kind(r.problem(t)) != "session-expired" {
		t.Errorf("expired session: %d %s, want 410 session-expired", r.Status, r.Body)
	}
}

// TestSessionOfAnotherKey: one key's session is not found under another.
func TestSessionOfAnotherKey(t *testing.T) {
	var alice, bob string
	ts := startServer(t, serverOpts{keys: func(k *server.Keys) {
		alice = mustAddKey(t, k, "alice")
		bob = mustAddKey(t, k, "bob")
	}})
	ts.key = alice
	module := ts.putModule(echoGuest)
	c := ts.openSession("")
	ts.key = bob
	if r := c.send(c.seal(api.JobRequest{Module: module})); r.Status != http.StatusNotFound {
		t.Errorf("alice's session used by bob: %d %s, want 404", r.Status, r.Body)
	}
	if r := ts.do(http.MethodGet, "/v1/sessions/"+c.id, nil); r.Status != http.StatusNotFound {
		t.Errorf("GET alice's session as bob: %d, want 404", r.Status)
	}
}

// TestReceipts: an ordinary job's receipt verifies, names the node's
// published key and the job's hashes, and fails once any byte changes.
func TestReceipts(t *testing.T) {
	ts := startServer(t, serverOpts{})
	module := ts.putModule(digestGuest)
	done := ts.wait(ts.submit(api.JobRequest{Module: module, Mode: "strict"}).ID)
	if done.Receipt == nil {
		t.Fatalf("done job %s has no receipt", done.ID)
	}
	r := ts.do(http.MethodGet, "/v1/jobs/"+done.ID+"/receipt", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET receipt: %d %s", r.Status, r.Body)
	}
	rc, err := crypto.VerifyReceipt(r.Body)
	if err != nil {
		t.Fatalf("receipt: %v", err)
	}
	var id api.NodeIdentity
	ts.do(http.MethodGet, "/v1/node", nil).decode(t, &id)
	if rc.Receipt.Node != b64(id.PublicKey) || id.Fingerprint != crypto.Fingerprint(id.PublicKey) {
		t.Errorf("receipt signed by %s, node publishes %s (%s)", rc.Receipt.Node, b64(id.PublicKey), id.Fingerprint)
	}
	want := crypto.Receipt{Version: crypto.ReceiptVersion, Node: rc.Receipt.Node, Job: done.ID, Module: module, Stdin: hash(nil),
		Models: []crypto.ModelHash{}, Args: []string{}, Backend: "ref", Device: rc.Receipt.Device, Mode: "strict",
		Contract: id.Contract, Output: done.Result.StdoutSHA256, Outcome: "exited", ExitCode: 0,
		Units: strconv.FormatUint(done.Result.Units, 10), GuestUnits: strconv.FormatUint(done.Result.GuestUnits, 10), Issued: rc.Receipt.Issued}
	got, _ := json.Marshal(rc.Receipt)
	if wantJSON, _ := json.Marshal(want); !bytes.Equal(got, wantJSON) {
		t.Errorf("receipt\n%s\nwant\n%s", got, wantJSON)
	}
	if rc.Receipt.Units != strconv.FormatUint(done.Result.Units, 10) {
		t.Errorf("receipt units %s, result %d", rc.Receipt.Units, done.Result.Units)
	}
	// The receipt survives a restart with the same identity.
	ts.stop()
	again := startServer(t, serverOpts{dir: ts.Dir})
	var id2 api.NodeIdentity
	again.do(http.MethodGet, "/v1/node", nil).decode(t, &id2)
	if !bytes.Equal(id2.PublicKey, id.PublicKey) {
		t.Errorf("the node's key changed across a restart")
	}
	r2 := again.do(http.MethodGet, "/v1/jobs/"+done.ID+"/receipt", nil)
	if !bytes.Equal(r2.Body, r.Body) {
		t.Errorf("receipt after restart differs:\n%s\n%s", r2.Body, r.Body)
	}
}

// TestReplicasAgree: two nodes with their own keys, on ref and
// ref-portable, sign the same output for a strict job.
func TestReplicasAgree(t *testing.T) {
	var outputs []string
	for _, backend := range []string{"ref", "ref-portable"} {
		ts := startServer(t, serverOpts{backend: backend})
		module := ts.putModule(digestGuest)
		done := ts.wait(ts.submit(api.JobRequest{Module: module, Mode: "strict"}).ID)
		rc, err := crypto.VerifyReceipt(ts.do(http.MethodGet, "/v1/jobs/"+done.ID+"/receipt", nil).Body)
		if err != nil {
			t.Fatal(err)
		}
		if rc.Receipt.Backend != backend {
			t.Errorf("receipt names backend %s, want %s", rc.Receipt.Backend, backend)
		}
		outputs = append(outputs, rc.Receipt.Output)
	}
	if outputs[0] != outputs[1] {
		t.Errorf("strict outputs differ between ref and ref-portable: %v", outputs)
	}
}

func mustAddKey(t *testing.T, k *server.Keys, name string) string {
	t.Helper()
	token, err := k.Add(name, []string{"invoke", "upload"})
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func kind(p api.Problem) string { return p.Kind() }
