package node_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/hostfn/abi"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/node"
	"github.com/accelnode/accelnode/store"
)

const counterActor = "github.com/accelnode/accelnode/examples/counter-actor"

var testKey = [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}

// actorNode opens a node on the ref backend whose actors live in a store
// in dir, both closed when the test ends.
func actorNode(t *testing.T, dir string, key [32]byte, limits node.ActorLimits) (*node.Node, *store.Disk) {
	t.Helper()
	d, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(context.Background(), node.Config{
		Backend: "ref", CacheDir: guesttest.CacheDir(), Actors: d, SnapshotKey: key, ActorLimits: limits,
	})
	if err != nil {
		d.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Close()
		d.Close()
	})
	return n, d
}

func startCounter(t *testing.T, n *node.Node, spec node.ActorSpec) node.ActorInfo {
	t.Helper()
	if spec.Owner == "" {
		spec.Owner = "alice"
	}
	info, err := n.StartActor(context.Background(), guesttest.BuildReactor(t, counterActor), spec)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func f32s(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func call(t *testing.T, n *node.Node, owner, id, method string, payload []byte) node.CallResult {
	t.Helper()
	res, err := n.CallActor(context.Background(), owner, id, method, payload)
	if err != nil {
		t.Fatalf("%s: %v (%s)\n%s", method, err, res.Outcome, res.Stderr)
	}
	return res
}

// counter reads the counter actor's count and sum.
func counter(t *testing.T, n *node.Node, owner, id string) (uint64, [4]float32) {
	t.Helper()
	r := call(t, n, owner, id, "get", nil).Reply
	if len(r) != 24 {
		t.Fatalf("get replied %d bytes", len(r))
	}
	var sum [4]float32
	for i := range sum {
		sum[i] = math.Float32frombits(binary.LittleEndian.Uint32(r[8+4*i:]))
	}
	return binary.LittleEndian.Uint64(r), sum
}

func state(t *testing.T, n *node.Node, owner, id string) []byte {
	t.Helper()
	b, err := node.ActorState(n, owner, id)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestActorKeepsState(t *testing.T) {
	n, _ := actorNode(t, t.TempDir(), testKey, node.ActorLimits{})
	info := startCounter(t, n, node.ActorSpec{Name: "counter"})
	if !info.Resident || info.Owner != "alice" || info.Backend != "ref" || info.ModuleSHA256 == "" || info.SnapshotBytes == 0 {
		t.Errorf("info after start: %+v", info)
	}
	for i := uint64(1); i <= 3; i++ {
		res := call(t, n, "alice", info.ID, "add", f32s(1, 2, 3, 4))
		if res.Outcome != node.Returned || res.Code != 0 || binary.LittleEndian.Uint64(res.Reply) != i {
			t.Fatalf("add #%d: %+v", i, res)
		}
	}
	if count, sum := counter(t, n, "alice", info.ID); count != 3 || sum != [4]float32{3, 6, 9, 12} {
		t.Errorf("count %d, sum %v; want 3, [3 6 9 12]", count, sum)
	}

	// Payloads of every size come back whole, charged as tensor_write and
	// tensor_read are: 64 units and a unit a byte for each copy.
	for _, size := range []int{0, 1, 300, 1 << 20} {
		payload := make([]byte, size)
		rand.Read(payload)
		res := call(t, n, "alice", info.ID, "echo", payload)
		if !bytes.Equal(res.Reply, payload) {
			t.Errorf("echo of %d bytes replied %d bytes", size, len(res.Reply))
		}
		if want := uint64(2 * (64 + size)); res.Units-res.GuestUnits != want || res.GuestUnits == 0 {
			t.Errorf("echo of %d bytes: %d units, %d of them the guest's own; want %d host units", size, res.Units, res.GuestUnits, want)
		}
	}

	// A method's own error code reaches the client, and its state stays.
	res := call(t, n, "alice", info.ID, "fail", nil)
	if res.Code != 42 || string(res.Reply) != "failed on purpose" || res.Outcome != node.Returned {
		t.Errorf("fail: %+v", res)
	}
	if count, _ := counter(t, n, "alice", info.ID); count != 4 {
		t.Errorf("count after fail = %d, want 4", count)
	}
	info, err := n.ActorInfo("alice", info.ID)
	if err != nil {
		t.Fatal(err)
	}
	// 3 adds, 4 echoes, fail and 2 gets.
	t.Logf("snapshot of %d bytes for %d pages of memory", info.SnapshotBytes, info.MemoryPages)
	if info.Calls != 10 || !info.Resident || info.Tensors != 1 || info.TensorBytes != 16 || info.MemoryPages == 0 || info.LastCall.IsZero() {
		t.Errorf("info: %+v", info)
	}
}

// TestActorCallsSerialised: 16 callers of 10 calls each. Every call sees
// the count the one before it left, so the replies are 1 to 160, each
// once, and the sum is exact.
func TestActorCallsSerialised(t *testing.T) {
	n, _ := actorNode(t, t.TempDir(), testKey, node.ActorLimits{MaxQueue: 32})
	id := startCounter(t, n, node.ActorSpec{}).ID
	const callers, calls = 16, 10
	replies := make(chan uint64, callers*calls)
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			last := uint64(0)
			for i := range calls {
				res, err := n.CallActor(context.Background(), "alice", id, "add", f32s(float32(g*100+i), 1, 0, 0))
				if err != nil {
					t.Error(err)
					return
				}
				c := binary.LittleEndian.Uint64(res.Reply)
				if c <= last {
					t.Errorf("caller %d saw count %d after %d", g, c, last)
				}
				last = c
				replies <- c
			}
		})
	}
	wg.Wait()
	close(replies)
	got := slices.Sorted(func(yield func(uint64) bool) {
		for c := range replies {
			if !yield(c) {
				return
			}
		}
	})
	for i, c := range got {
		if c != uint64(i+1) {
			t.Fatalf("replies %v: want 1 to %d, each once", got, callers*calls)
		}
	}
	if count, sum := counter(t, n, "alice", id); count != callers*calls || sum[1] != callers*calls {
		t.Errorf("count %d, sum %v", count, sum)
	}
}

// TestActorCallsInArrivalOrder: calls that queue behind a busy actor run
// in the order they arrived.
func TestActorCallsInArrivalOrder(t *testing.T) {
	n, _ := actorNode(t, t.TempDir(), testKey, node.ActorLimits{})
	id := startCounter(t, n, node.ActorSpec{}).ID
	release, err := node.HoldActor(n, "alice", id)
	if err != nil {
		t.Fatal(err)
	}
	const calls = 12
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			if _, err := n.CallActor(context.Background(), "alice", id, "add", f32s(float32(i), 0, 0, 0)); err != nil {
				t.Error(err)
			}
		})
		for node.ActorWaiting(n, "alice", id) != i+1 {
			time.Sleep(time.Millisecond)
		}
	}
	release()
	wg.Wait()
	order := call(t, n, "alice", id, "order", nil).Reply
	for i := range calls {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(order[4*i:])); got != float32(i) {
			t.Fatalf("call %d ran as number %v: order %v", i, got, order)
		}
	}
}

// TestActorLimits: each limit stops a call, which leaves the actor as it
// was, or refuses one.
func TestActorLimits(t *testing.T) {
	tests := []struct {
		name    string
		limits  node.Limits
		method  string
		repeat  int // calls of method before the one that fails
		wantErr error
		outcome node.Outcome
		code    uint32 // where the method reports the limit itself
	}{
		{name: "deadline", limits: node.Limits{Timeout: 300 * time.Millisecond}, method: "spin", wantErr: engine.ErrDeadline, outcome: node.Deadline},
		// The budget counts the guest's own instructions: it stops a
		// method that spins without calling the host, as a deadline does.
		{name: "budget", limits: node.Limits{Budget: 20_000_000}, method: "spin", wantErr: engine.ErrBudgetExhausted, outcome: node.Budget},
		{name: "memory", limits: node.Limits{Memory: 40 << 20}, method: "grow", repeat: -1, wantErr: engine.ErrMemoryLimit, outcome: node.Memory},
		{name: "trap", method: "trap", wantErr: engine.ErrTrap, outcome: node.Trapped},
		{name: "trap after an update in place", method: "badstep", wantErr: engine.ErrTrap, outcome: node.Trapped},
		{name: "tensor memory", limits: node.Limits{TensorMemory: 2048}, method: "hoard", outcome: node.Returned, code: uint32(abi.ENOMEM)},
		{name: "tensor count", limits: node.Limits{MaxTensors: 4}, method: "hoard", repeat: 1, outcome: node.Returned, code: uint32(abi.ELIMIT)},
	}
	n, _ := actorNode(t, t.TempDir(), testKey, node.ActorLimits{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := startCounter(t, n, node.ActorSpec{Limits: tt.limits}).ID
			call(t, n, "alice", id, "add", f32s(5, 5, 5, 5))
			call(t, n, "alice", id, "step", f32s(1, -2, 0.25, 8))
			for i := 0; i < tt.repeat; i++ {
				call(t, n, "alice", id, tt.method, f32s(1, 1, 1, 1))
			}
			// What the guest reads from its tensors, besides the state the
			// node saves: a tensor updated in place must be put back too.
			weights := call(t, n, "alice", id, "weights", nil).Reply
			before := state(t, n, "alice", id)
			var res node.CallResult
			var err error
			for range 100 { // grow until the limit stops it
				res, err = n.CallActor(context.Background(), "alice", id, tt.method, f32s(1, 1, 1, 1))
				if tt.repeat >= 0 || err != nil {
					break
				}
				weights = call(t, n, "alice", id, "weights", nil).Reply
				before = state(t, n, "alice", id)
			}
			if res.Outcome != tt.outcome || res.Code != tt.code {
				t.Fatalf("outcome %s, code %d (err %v); want %s, %d", res.Outcome, res.Code, err, tt.outcome, tt.code)
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, node.ErrActorFailed) || !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want ErrActorFailed and %v", err, tt.wantErr)
			}
			if len(res.Reply) != 0 {
				t.Errorf("a failed call replied %q", res.Reply)
			}
			if after := state(t, n, "alice", id); !bytes.Equal(after, before) {
				t.Error("the failed call changed the actor's state")
			}
			if after := call(t, n, "alice", id, "weights", nil).Reply; !bytes.Equal(after, weights) {
				t.Errorf("weights %v after the failed call, %v before", after, weights)
			}
			if tt.name == "trap" && !bytes.Contains(res.Stderr, []byte("trap on purpose")) {
				t.Errorf("stderr of the trap: %q", res.Stderr)
			}
		})
	}
}

func TestActorCountLimits(t *testing.T) {
	n, _ := actorNode(t, t.TempDir(), testKey, node.ActorLimits{MaxActors: 3, MaxPerOwner: 2, MaxQueue: 2})
	a1 := startCounter(t, n, node.ActorSpec{Owner: "alice"})
	startCounter(t, n, node.ActorSpec{Owner: "alice"})
	wasm := guesttest.BuildReactor(t, counterActor)
	if _, err := n.StartActor(context.Background(), wasm, node.ActorSpec{Owner: "alice"}); !errors.Is(err, node.ErrActorLimit) {
		t.Errorf("third of alice's: err = %v, want ErrActorLimit", err)
	}
	startCounter(t, n, node.ActorSpec{Owner: "bob"})
	if _, err := n.StartActor(context.Background(), wasm, node.ActorSpec{Owner: "bob"}); !errors.Is(err, node.ErrActorLimit) {
		t.Errorf("fourth of the node's: err = %v, want ErrActorLimit", err)
	}
	if err := n.StopActor(context.Background(), "alice", a1.ID); err != nil {
		t.Fatal(err)
	}
	a3 := startCounter(t, n, node.ActorSpec{Owner: "alice"})

	// Two calls may wait; the third is refused.
	release, err := node.HoldActor(n, "alice", a3.ID)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() { n.CallActor(context.Background(), "alice", a3.ID, "get", nil) })
		for node.ActorWaiting(n, "alice", a3.ID) != i+1 {
			time.Sleep(time.Millisecond)
		}
	}
	if _, err := n.CallActor(context.Background(), "alice", a3.ID, "get", nil); !errors.Is(err, node.ErrActorLimit) {
		t.Errorf("third waiting call: err = %v, want ErrActorLimit", err)
	}
	// A caller that gives up waiting leaves the queue.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	release()
	wg.Wait()
	if _, err := n.CallActor(ctx, "alice", a3.ID, "add", make([]byte, node.MaxCallPayload+1)); !errors.Is(err, node.ErrActorLimit) {
		t.Errorf("payload over the limit: err = %v", err)
	}
}

func TestActorOwnersAndMethods(t *testing.T) {
	n, _ := actorNode(t, t.TempDir(), testKey, node.ActorLimits{})
	id := startCounter(t, n, node.ActorSpec{}).ID
	for _, f := range []func() error{
		func() error { _, err := n.CallActor(context.Background(), "bob", id, "get", nil); return err },
		func() error { _, err := n.ActorInfo("bob", id); return err },
		func() error { return n.StopActor(context.Background(), "bob", id) },
		func() error {
			_, err := n.CallActor(context.Background(), "alice", store.NewID(), "get", nil)
			return err
		},
	} {
		if err := f(); !errors.Is(err, node.ErrActorNotFound) {
			t.Errorf("err = %v, want ErrActorNotFound", err)
		}
	}
	if got := n.ListActors("bob"); len(got) != 0 {
		t.Errorf("bob lists %d actors", len(got))
	}
	if got := n.ListActors("alice"); len(got) != 1 || got[0].ID != id {
		t.Errorf("alice lists %+v", got)
	}
	for _, m := range []string{"nope", "_initialize", "memory", ""} {
		if _, err := n.CallActor(context.Background(), "alice", id, m, nil); !errors.Is(err, node.ErrBadMethod) {
			t.Errorf("method %q: err = %v, want ErrBadMethod", m, err)
		}
	}
	if count, _ := counter(t, n, "alice", id); count != 0 {
		t.Errorf("count %d after refused calls", count)
	}
}

func TestStartActorRefuses(t *testing.T) {
	n, _ := actorNode(t, t.TempDir(), testKey, node.ActorLimits{})
	if _, err := n.StartActor(context.Background(), guesttest.Build(t, "github.com/accelnode/accelnode/examples/matmul"), node.ActorSpec{Owner: "alice"}); !errors.Is(err, engine.ErrNotReactor) {
		t.Errorf("a command: err = %v, want ErrNotReactor", err)
	}
	if _, err := n.StartActor(context.Background(), []byte("not wasm"), node.ActorSpec{Owner: "alice"}); !errors.Is(err, engine.ErrMalformedModule) {
		t.Errorf("garbage: err = %v, want ErrMalformedModule", err)
	}
	if _, err := n.StartActor(context.Background(), guesttest.BuildReactor(t, counterActor), node.ActorSpec{}); err == nil {
		t.Error("an actor without owner started")
	}
	if got := n.ListActors("alice"); len(got) != 0 {
		t.Errorf("refused starts left %d actors", len(got))
	}
	plain := open(t, node.Config{Backend: "ref"})
	if _, err := plain.StartActor(context.Background(), guesttest.BuildReactor(t, counterActor), node.ActorSpec{Owner: "alice"}); !errors.Is(err, node.ErrNoActors) {
		t.Errorf("node without a store: err = %v, want ErrNoActors", err)
	}
	d, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if n, err := node.Open(context.Background(), node.Config{Backend: "ref", Actors: d}); err == nil {
		n.Close()
		t.Error("a node with actors and a zero key opened")
	}
}

// TestActorEviction: an idle actor is released, and its next call finds
// it as it was, bit for bit.
func TestActorEviction(t *testing.T) {
	for _, lazy := range []bool{false, true} {
		t.Run(fmt.Sprintf("SnapshotOnEvict=%v", lazy), func(t *testing.T) {
			n, d := actorNode(t, t.TempDir(), testKey, node.ActorLimits{})
			id := startCounter(t, n, node.ActorSpec{IdleTimeout: 200 * time.Millisecond, SnapshotOnEvict: lazy}).ID
			for range 3 {
				call(t, n, "alice", id, "add", f32s(0.5, 1.5, -2, 1e-7))
				call(t, n, "alice", id, "step", f32s(1, -2, 0.25, 8)) // in place
			}
			weights := call(t, n, "alice", id, "weights", nil).Reply
			before := state(t, n, "alice", id)
			waitEvicted(t, n, "alice", id)
			if lazy {
				if rec, err := d.Actor(context.Background(), "alice", id); err != nil || rec.SnapshotSize == 0 {
					t.Fatalf("record after eviction: %+v, %v", rec, err)
				}
			}
			if after := state(t, n, "alice", id); !bytes.Equal(after, before) {
				t.Fatal("state after eviction and restore differs")
			}
			if after := call(t, n, "alice", id, "weights", nil).Reply; !bytes.Equal(after, weights) {
				t.Errorf("weights %v after restore, %v before", after, weights)
			}
			if count, sum := counter(t, n, "alice", id); count != 3 || sum != [4]float32{1.5, 4.5, -6, 3e-7} {
				t.Errorf("count %d, sum %v", count, sum)
			}
			if info, _ := n.ActorInfo("alice", id); !info.Resident || info.Calls != 9 {
				t.Errorf("info after restore: %+v", info)
			}
		})
	}
}

func waitEvicted(t *testing.T, n *node.Node, owner, id string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		info, err := n.ActorInfo(owner, id)
		if err != nil {
			t.Fatal(err)
		}
		if !info.Resident {
			if info.Tensors != 0 || info.MemoryPages != 0 {
				t.Errorf("evicted actor: %+v", info)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("actor not evicted")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestActorRestart: a node that stops without a word (as kill -9 stops
// it) loses no call it answered; a new node on the same store and key
// finds its actors and restores each on its first call.
func TestActorRestart(t *testing.T) {
	dir := t.TempDir()
	d1, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n1, err := node.Open(context.Background(), node.Config{Backend: "ref", CacheDir: guesttest.CacheDir(), Actors: d1, SnapshotKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	const marker = "a-secret-the-store-must-not-see-3f9a1c"
	info := startCounter(t, n1, node.ActorSpec{Name: "counter", Env: []string{"MARKER=" + marker}})
	for range 3 {
		call(t, n1, "alice", info.ID, "add", f32s(1, 2, 3, 4))
		call(t, n1, "alice", info.ID, "echo", []byte(marker))
	}
	before := state(t, n1, "alice", info.ID)
	// n1 is dropped as it is: no eviction, no close; the store is closed
	// only to free its lock for the next node.
	d1.Close()
	defer n1.Close()

	// The actor's memory holds the marker (its environment and the echoed
	// payloads); nothing on disk does.
	filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err == nil && bytes.Contains(b, []byte(marker)) {
			t.Errorf("%s holds the actor's memory in the clear", path)
		}
		return err
	})

	n2, _ := actorNode(t, dir, testKey, node.ActorLimits{})
	list := n2.ListActors("alice")
	if len(list) != 1 || list[0].ID != info.ID || list[0].Resident || list[0].Calls != 6 || list[0].Name != "counter" {
		t.Fatalf("the new node lists %+v", list)
	}
	if after := state(t, n2, "alice", info.ID); !bytes.Equal(after, before) {
		t.Error("state in the new node differs")
	}
	if count, sum := counter(t, n2, "alice", info.ID); count != 3 || sum != [4]float32{3, 6, 9, 12} {
		t.Errorf("count %d, sum %v in the new node", count, sum)
	}
	if got := call(t, n2, "alice", info.ID, "add", f32s(1, 1, 1, 1)).Reply; binary.LittleEndian.Uint64(got) != 4 {
		t.Errorf("add in the new node replied count %d", binary.LittleEndian.Uint64(got))
	}
}

// TestActorWrongKey: a node with another key refuses the snapshots.
func TestActorWrongKey(t *testing.T) {
	dir := t.TempDir()
	n1, d1 := actorNode(t, dir, testKey, node.ActorLimits{})
	id := startCounter(t, n1, node.ActorSpec{}).ID
	n1.Close()
	d1.Close()
	other := testKey
	other[31] ^= 1
	n2, _ := actorNode(t, dir, other, node.ActorLimits{})
	if _, err := n2.CallActor(context.Background(), "alice", id, "get", nil); !errors.Is(err, node.ErrSnapshot) {
		t.Errorf("err = %v, want ErrSnapshot", err)
	}
}

// TestActorTamperedSnapshot: a snapshot with any one bit flipped is
// refused, every time; so is another actor's snapshot put in its place.
func TestActorTamperedSnapshot(t *testing.T) {
	dir := t.TempDir()
	n, d := actorNode(t, dir, testKey, node.ActorLimits{})
	a := startCounter(t, n, node.ActorSpec{IdleTimeout: 100 * time.Millisecond})
	b := startCounter(t, n, node.ActorSpec{IdleTimeout: 100 * time.Millisecond})
	call(t, n, "alice", a.ID, "add", f32s(1, 2, 3, 4))
	_, sealed, err := d.LoadActor(context.Background(), "alice", a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := node.OpenSnapshot(n, sealed); err != nil {
		t.Fatalf("the untouched snapshot: %v", err)
	}
	r := mrand.New(mrand.NewPCG(1, 2))
	bits := []int{0, 7, 8*len(sealed) - 1} // the magic, and the last bit
	for range 300 {
		bits = append(bits, r.IntN(8*len(sealed)))
	}
	for _, bit := range bits {
		flipped := bytes.Clone(sealed)
		flipped[bit/8] ^= 1 << (bit % 8)
		if err := node.OpenSnapshot(n, flipped); !errors.Is(err, node.ErrSnapshot) {
			t.Fatalf("bit %d flipped: err = %v, want ErrSnapshot", bit, err)
		}
	}

	// Through the store, as a restore meets it.
	rec, err := d.Actor(context.Background(), "alice", a.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitEvicted(t, n, "alice", a.ID)
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)/2] ^= 0x10
	if err := d.PutActor(context.Background(), rec, nil, flipped); err != nil {
		t.Fatal(err)
	}
	if _, err := n.CallActor(context.Background(), "alice", a.ID, "get", nil); !errors.Is(err, node.ErrSnapshot) {
		t.Errorf("tampered snapshot in the store: err = %v, want ErrSnapshot", err)
	}
	_, other, err := d.LoadActor(context.Background(), "alice", b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.PutActor(context.Background(), rec, nil, other); err != nil {
		t.Fatal(err)
	}
	if _, err := n.CallActor(context.Background(), "alice", a.ID, "get", nil); !errors.Is(err, node.ErrSnapshot) {
		t.Errorf("another actor's snapshot: err = %v, want ErrSnapshot", err)
	}
	if err := d.PutActor(context.Background(), rec, nil, sealed); err != nil {
		t.Fatal(err)
	}
	if count, _ := counter(t, n, "alice", a.ID); count != 1 {
		t.Errorf("count %d with the snapshot put back", count)
	}
}

// TestStopActor: stopping an actor cancels its call and deletes it.
func TestStopActor(t *testing.T) {
	n, d := actorNode(t, t.TempDir(), testKey, node.ActorLimits{})
	id := startCounter(t, n, node.ActorSpec{}).ID
	done := make(chan error, 1)
	go func() {
		_, err := n.CallActor(context.Background(), "alice", id, "spin", nil)
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if err := n.StopActor(context.Background(), "alice", id); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, node.ErrActorFailed) || !errors.Is(err, engine.ErrCanceled) {
		t.Errorf("the spinning call: err = %v, want a cancelled call", err)
	}
	if _, err := n.CallActor(context.Background(), "alice", id, "get", nil); !errors.Is(err, node.ErrActorNotFound) {
		t.Errorf("call after stop: err = %v", err)
	}
	if _, err := d.Actor(context.Background(), "alice", id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("store after stop: err = %v", err)
	}
	if err := n.StopActor(context.Background(), "alice", id); !errors.Is(err, node.ErrActorNotFound) {
		t.Errorf("second stop: err = %v", err)
	}
}
