package server_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/http"
	"sync"
	"testing"

	"github.com/accelnode/accelnode/crypto"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/server"
	"github.com/accelnode/accelnode/server/api"
)

const counterActor = "github.com/accelnode/accelnode/examples/counter-actor"

// putReactor stores the reactor guest pkg and returns its sha256.
func (ts *testServer) putReactor(pkg string) string {
	ts.t.Helper()
	wasm := guesttest.BuildReactor(ts.t, pkg)
	r := ts.do(http.MethodPut, "/v1/modules", wasm, "Content-Type", "application/wasm")
	if r.Status != http.StatusCreated {
		ts.t.Fatalf("PUT /v1/modules (reactor): %d %s", r.Status, r.Body)
	}
	return hash(wasm)
}

func (ts *testServer) startActor(req api.ActorRequest) api.Actor {
	ts.t.Helper()
	r := ts.json(http.MethodPost, "/v1/actors", req)
	if r.Status != http.StatusCreated {
		ts.t.Fatalf("POST /v1/actors: %d %s", r.Status, r.Body)
	}
	var a api.Actor
	r.decode(ts.t, &a)
	return a
}

// call calls method with payload; the answer's status and the call.
func (ts *testServer) call(actor, method string, payload []byte) (int, api.ActorCall) {
	ts.t.Helper()
	r := ts.do(http.MethodPost, "/v1/actors/"+actor+"/call/"+method, payload, "Content-Type", "application/octet-stream")
	var c api.ActorCall
	if r.Status == http.StatusOK {
		r.decode(ts.t, &c)
	} else {
		ts.t.Logf("%s: %d %s", method, r.Status, r.Body)
	}
	return r.Status, c
}

func floats32(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

// counterState reads the counter actor's count and sums.
func (ts *testServer) counterState(actor string) (uint64, [4]float32) {
	ts.t.Helper()
	status, c := ts.call(actor, "get", nil)
	if status != http.StatusOK || len(c.Reply) != 8+16 {
		ts.t.Fatalf("get: %d %+v", status, c)
	}
	var sum [4]float32
	for i := range sum {
		sum[i] = math.Float32frombits(binary.LittleEndian.Uint32(c.Reply[8+4*i:]))
	}
	return binary.LittleEndian.Uint64(c.Reply), sum
}

// TestActorsHTTP starts an actor over HTTP and calls it: its state stays
// between calls; concurrent calls are serialised, none lost; a method's own
// error keeps the state, a trap undoes the call; unknown methods and other
// keys' actors are not found.
func TestActorsHTTP(t *testing.T) {
	var alice, bob string
	ts := startServer(t, serverOpts{keys: func(k *server.Keys) {
		alice = mustAddKey(t, k, "alice")
		bob = mustAddKey(t, k, "bob")
	}})
	ts.key = alice
	module := ts.putReactor(counterActor)
	a := ts.startActor(api.ActorRequest{Module: module, Timeout: "2s"})
	if a.ID == "" || a.Module != module || a.Snapshot != "every-call" {
		t.Fatalf("actor %+v", a)
	}

	const callers, calls = 8, 5
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			for range calls {
				if status, c := ts.call(a.ID, "add", floats32(1, 2, float32(g), 0.5)); status != http.StatusOK || c.Code != 0 {
					t.Errorf("add: %d %+v", status, c)
				}
			}
		})
	}
	wg.Wait()
	count, sum := ts.counterState(a.ID)
	if count != callers*calls || sum[0] != callers*calls || sum[1] != 2*callers*calls || sum[3] != 0.5*callers*calls {
		t.Errorf("after %d adds: count %d, sum %v", callers*calls, count, sum)
	}

	// Each call that returned has a receipt for its payload and reply.
	_, got := ts.call(a.ID, "get", nil)
	rc, err := crypto.VerifyReceipt(got.Receipt)
	if err != nil {
		t.Fatalf("receipt of a call: %v", err)
	}
	if rc.Receipt.Output != hash(got.Reply) || rc.Receipt.Stdin != hash(nil) || len(rc.Receipt.Args) != 1 || rc.Receipt.Args[0] != "get" ||
		rc.Receipt.Module != module || rc.Receipt.Job != fmt.Sprintf("actor/%s/call/%d", a.ID, callers*calls+2) {
		t.Errorf("receipt %+v of get, reply sha256 %s", rc.Receipt, hash(got.Reply))
	}

	// The method's own error: code 42, state kept (fail counts itself).
	if status, c := ts.call(a.ID, "fail", nil); status != http.StatusOK || c.Code != 42 {
		t.Errorf("fail: %d %+v, want code 42", status, c)
	}
	// A trap: 422, and the actor is as before the call.
	r := ts.do(http.MethodPost, "/v1/actors/"+a.ID+"/call/trap", nil, "Content-Type", "application/octet-stream")
	if r.Status != http.StatusUnprocessableEntity || kind(r.problem(t)) != "actor-failed" {
		t.Errorf("trap: %d %s, want 422 actor-failed", r.Status, r.Body)
	}
	if after, _ := ts.counterState(a.ID); after != count+1 {
		t.Errorf("count %d after fail and trap, want %d", after, count+1)
	}
	// A spinning call stops at its deadline; the actor goes on.
	if r := ts.do(http.MethodPost, "/v1/actors/"+a.ID+"/call/spin", nil, "Content-Type", "application/octet-stream"); r.Status != http.StatusUnprocessableEntity {
		t.Errorf("spin: %d %s, want 422", r.Status, r.Body)
	}
	if r := ts.do(http.MethodPost, "/v1/actors/"+a.ID+"/call/no_such_method", nil, "Content-Type", "application/octet-stream"); r.Status != http.StatusNotFound {
		t.Errorf("unknown method: %d %s, want 404", r.Status, r.Body)
	}

	ts.key = bob
	if r := ts.do(http.MethodGet, "/v1/actors/"+a.ID, nil); r.Status != http.StatusNotFound {
		t.Errorf("bob reads alice's actor: %d, want 404", r.Status)
	}
	if status, _ := ts.call(a.ID, "get", nil); status != http.StatusNotFound {
		t.Errorf("bob calls alice's actor: %d, want 404", status)
	}
	var list struct{ Actors []api.Actor }
	ts.do(http.MethodGet, "/v1/actors", nil).decode(t, &list)
	if len(list.Actors) != 0 {
		t.Errorf("bob lists %d actors", len(list.Actors))
	}

	ts.key = alice
	if r := ts.do(http.MethodDelete, "/v1/actors/"+a.ID, nil); r.Status != http.StatusNoContent {
		t.Fatalf("DELETE actor: %d %s", r.Status, r.Body)
	}
	if status, _ := ts.call(a.ID, "get", nil); status != http.StatusNotFound {
		t.Errorf("a stopped actor answered %d, want 404", status)
	}
	// A command guest is not an actor.
	if r := ts.json(http.MethodPost, "/v1/actors", api.ActorRequest{Module: ts.putModule(echoGuest)}); r.Status != http.StatusUnprocessableEntity {
		t.Errorf("a command as an actor: %d %s, want 422", r.Status, r.Body)
	}
}

// TestActorSealedCall calls an actor with a payload sealed in a session.
func TestActorSealedCall(t *testing.T) {
	ts := startServer(t, serverOpts{})
	a := ts.startActor(api.ActorRequest{Module: ts.putReactor(counterActor)})
	c := ts.openSession("")
	sealed := c.sealBytes(floats32(3, 0, 0, 0))
	r := ts.json(http.MethodPost, "/v1/sessions/"+c.id+"/actors/"+a.ID+"/call/add", api.Sealed{Sealed: sealed})
	if r.Status != http.StatusOK {
		t.Fatalf("sealed call: %d %s", r.Status, r.Body)
	}
	var ans api.Sealed
	r.decode(t, &ans)
	got := c.open(ans.Sealed)
	if got.Call == nil || got.Call.Code != 0 || len(got.Call.Reply) != 8 || binary.LittleEndian.Uint64(got.Call.Reply) != 1 {
		t.Errorf("sealed call answer %+v", got)
	}
	// The same message again is a replay, and the call is not repeated.
	if r := ts.json(http.MethodPost, "/v1/sessions/"+c.id+"/actors/"+a.ID+"/call/add", api.Sealed{Sealed: sealed}); r.Status != http.StatusConflict {
		t.Errorf("replayed sealed call: %d, want 409", r.Status)
	}
	if count, _ := ts.counterState(a.ID); count != 1 {
		t.Errorf("count %d after one sealed add and its replay", count)
	}
}

// TestActorSurvivesKill9 kills a server process with SIGKILL after an
// actor's calls were answered, and starts another on the same data
// directory: the actor resumes with every answered call kept.
func TestActorSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills server processes")
	}
	dir := t.TempDir()
	first := startChild(t, dir)
	ts := first.client(t, dir)
	a := ts.startActor(api.ActorRequest{Module: ts.putReactor(counterActor)})
	for i := range 7 {
		if status, c := ts.call(a.ID, "add", floats32(float32(i), 1, 0, 0)); status != http.StatusOK || c.Code != 0 {
			t.Fatalf("add: %d %+v", status, c)
		}
	}
	first.kill()

	second := startChild(t, dir)
	ts = second.client(t, dir)
	count, sum := ts.counterState(a.ID)
	if count != 7 || sum[0] != 21 || sum[1] != 7 {
		t.Errorf("after kill -9 and restart: count %d, sum %v; want 7 and [21 7 0 0]", count, sum)
	}
	var info api.Actor
	ts.do(http.MethodGet, "/v1/actors/"+a.ID, nil).decode(t, &info)
	if info.Calls < 7 {
		t.Errorf("actor after restart %+v", info)
	}
}
