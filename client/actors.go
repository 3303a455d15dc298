package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/accelnode/accelnode/crypto"
	"github.com/accelnode/accelnode/server/api"
)

// StartActor starts an actor, a reactor guest that keeps its state
// between calls, from a module stored with PutModule.
func (c *Client) StartActor(ctx context.Context, req api.ActorRequest) (api.Actor, error) {
	var a api.Actor
	_, err := c.postJSON(ctx, http.MethodPost, "/v1/actors", nil, req, false, &a)
	return a, err
}

// Actor describes actor id.
func (c *Client) Actor(ctx context.Context, id string) (api.Actor, error) {
	var a api.Actor
	err := c.get(ctx, "/v1/actors/"+seg(id), nil, &a)
	return a, err
}

// StopActor stops actor id and deletes its state.
func (c *Client) StopActor(ctx context.Context, id string) error {
	_, err := c.call(ctx, request{method: http.MethodDelete, path: "/v1/actors/" + seg(id)}, nil)
	return err
}

// ActorCall is an actor call's answer with its checked receipt.
type ActorCall struct {
	api.ActorCall
	Receipt crypto.SignedReceipt
}

// CallActor calls method of actor id with payload. A method's own error is
// a non-zero Code, not an error; a call the node refused or that failed
// (the actor then keeps its state from before it) is an *Error.
func (c *Client) CallActor(ctx context.Context, id, method string, payload []byte) (ActorCall, error) {
	var a api.ActorCall
	_, err := c.call(ctx, request{method: http.MethodPost, path: "/v1/actors/" + seg(id) + "/call/" + seg(method),
		body: payload, contentType: "application/octet-stream"}, &a)
	if err != nil {
		return ActorCall{}, err
	}
	return checkCall(id, method, a)
}

// CallActor calls method of actor id with payload sealed in the session;
// the answer comes back sealed.
func (s *Session) CallActor(ctx context.Context, id, method string, payload []byte) (ActorCall, error) {
	a, _, err := s.exchange(ctx, "/v1/sessions/"+seg(s.ID)+"/actors/"+seg(id)+"/call/"+seg(method), payload)
	if err != nil {
		return ActorCall{}, err
	}
	if a.Call == nil {
		return ActorCall{}, fmt.Errorf("client: session %s: the sealed answer holds no call", s.ID)
	}
	return checkCall(id, method, *a.Call)
}

// checkCall checks a call's receipt: its signature, and that it speaks of
// this actor, method and reply.
func checkCall(id, method string, a api.ActorCall) (ActorCall, error) {
	r, err := crypto.VerifyReceipt(a.Receipt)
	if err != nil {
		return ActorCall{}, fmt.Errorf("client: actor %s: %w", id, err)
	}
	rc := r.Receipt
	sum := sha256.Sum256(a.Reply)
	if rc.Output != hex.EncodeToString(sum[:]) || len(rc.Args) != 1 || rc.Args[0] != method || !strings.HasPrefix(rc.Job, "actor/"+id+"/") {
		return ActorCall{}, fmt.Errorf("client: actor %s: the receipt speaks of another call", id)
	}
	return ActorCall{ActorCall: a, Receipt: r}, nil
}
