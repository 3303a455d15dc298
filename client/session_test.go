package client_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/accelnode/accelnode/client"
	"github.com/accelnode/accelnode/crypto"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/server"
	"github.com/accelnode/accelnode/server/api"
)

// TestSession runs jobs in an encrypted session: the result comes back
// with a checked receipt from the node's published key; a refusal comes
// back as the node's problem; a closed session refuses to seal.
func TestSession(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, serve(t, server.Limits{}))
	module := putModule(t, c, echoGuest)
	node, err := c.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.OpenSession(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Invoke(ctx, api.JobRequest{Module: module, Stdin: []byte("sealed digits")})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Result.Stdout, []byte("sealed digits")) || got.Receipt.Receipt.Job != got.Job {
		t.Errorf("sealed job %+v", got)
	}
	if signer := got.Receipt.Receipt.Node; signer != b64(node.PublicKey) {
		t.Errorf("receipt signed by %s, the node publishes %s", signer, b64(node.PublicKey))
	}

	_, err = s.Invoke(ctx, api.JobRequest{Module: module, StdinBlob: module})
	var e *client.Error
	if !errors.As(err, &e) || e.Problem.Kind() != "bad-request" {
		t.Errorf("sealed job with a stdin blob: %v, want the node's bad-request, sealed", err)
	}

	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Invoke(ctx, api.JobRequest{Module: module}); !errors.Is(err, client.ErrSessionClosed) {
		t.Errorf("invoke after Close: %v, want ErrSessionClosed", err)
	}
}

// TestReceipt fetches and checks an ordinary job's receipt.
func TestReceipt(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, serve(t, server.Limits{}))
	module := putModule(t, c, digestGuest)
	job, err := c.Submit(ctx, api.JobRequest{Module: module}, "")
	if err != nil {
		t.Fatal(err)
	}
	if job, err = c.Wait(ctx, job.ID); err != nil {
		t.Fatal(err)
	}
	r, err := c.Receipt(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Receipt.Output != job.Result.StdoutSHA256 || r.Receipt.Contract == "" {
		t.Errorf("receipt %+v for result %+v", r.Receipt, job.Result)
	}
	var _ crypto.SignedReceipt = r
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// TestActorCalls starts an actor and calls it in the clear and sealed:
// both answers carry a checked receipt, and the state is shared.
func TestActorCalls(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, serve(t, server.Limits{}))
	wasm := guesttest.BuildReactor(t, "github.com/accelnode/accelnode/examples/counter-actor")
	m, err := c.PutModule(ctx, bytes.NewReader(wasm))
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.StartActor(ctx, api.ActorRequest{Module: m.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	add := make([]byte, 16) // four float32 zeros
	if _, err := c.CallActor(ctx, a.ID, "add", add); err != nil {
		t.Fatal(err)
	}
	s, err := c.OpenSession(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.CallActor(ctx, a.ID, "add", add)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Reply) != 8 || got.Reply[0] != 2 || got.Receipt.Receipt.Args[0] != "add" {
		t.Errorf("second add: reply %v, receipt %+v", got.Reply, got.Receipt.Receipt)
	}
	if _, err := c.CallActor(ctx, a.ID, "trap", nil); !errors.As(err, new(*client.Error)) {
		t.Errorf("trap: %v, want the node's actor-failed", err)
	}
	if err := c.StopActor(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
}
