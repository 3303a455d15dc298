package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/nacl/secretbox"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/hostfn"
	"github.com/accelnode/accelnode/store"
)

// An actor is a stateful guest: a reactor (a WASI module that exports
// _initialize and methods, such as a Go program built with
// -buildmode=c-shared) whose instance lives between calls, with its linear
// memory and its tensors, as a canister's does on the Internet Computer.
// Calls to one actor run one at a time, in arrival order; calls to
// different actors run at once.
//
// After every successful call the node seals a snapshot of the actor
// (memory, globals, tensors and their handle numbers) with the node's
// SnapshotKey and writes it to the store before it answers, so that a node
// killed at any moment loses no call it answered. A call that fails leaves
// the actor as it was before the call. An actor idle for its idle timeout
// is evicted: its instance and tensors are released, and its next call
// restores it from the store.

// ActorLimits bound the actors of a node. Zero fields take their defaults.
type ActorLimits struct {
	// MaxActors bounds the actors of the node, resident or evicted.
	// Default 1024.
	MaxActors int
	// MaxPerOwner bounds the actors of one owner. Default 64.
	MaxPerOwner int
	// IdleTimeout is how long an actor stays resident after its last
	// call, and the most an ActorSpec may ask for. Default 10 minutes.
	IdleTimeout time.Duration
	// MaxQueue bounds the calls waiting for one actor. Default 64.
	MaxQueue int
}

// Defaults of ActorLimits, and the largest call payload.
const (
	DefaultMaxActors        = 1024
	DefaultMaxActorsPerUser = 64
	DefaultActorIdleTimeout = 10 * time.Minute
	DefaultActorQueue       = 64
	// MaxCallPayload bounds a call's payload, as hostfn.MaxReply bounds
	// its reply.
	MaxCallPayload = 16 << 20
)

func (l ActorLimits) withDefaults() ActorLimits {
	if l.MaxActors <= 0 {
		l.MaxActors = DefaultMaxActors
	}
	if l.MaxPerOwner <= 0 {
		l.MaxPerOwner = DefaultMaxActorsPerUser
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultActorIdleTimeout
	}
	if l.MaxQueue <= 0 {
		l.MaxQueue = DefaultActorQueue
	}
	return l
}

// Errors of the actor calls; test for them with errors.Is.
var (
	// ErrNoActors: the node has no store for actors (Config.Actors).
	ErrNoActors = errors.New("node keeps no actors")
	// ErrActorNotFound: no such actor for this owner; another owner's
	// actor is not found either.
	ErrActorNotFound = errors.New("actor not found")
	// ErrActorLimit: too many actors for the owner or the node, or too
	// many calls waiting for the actor, or a payload over MaxCallPayload.
	ErrActorLimit = errors.New("actor limit reached")
	// ErrBadMethod: the actor has no method of that name (an export of
	// type () -> () or () -> i32).
	ErrBadMethod = engine.ErrBadMethod
	// ErrActorFailed: the guest trapped, exited, or ran out of time,
	// budget or memory in the call (or in _initialize); the error also
	// wraps the engine's reason. The actor keeps its state from before
	// the call.
	ErrActorFailed = errors.New("actor call failed")
	// ErrSnapshot: the actor's stored snapshot was refused: it does not
	// open with the node's key (it was changed, or sealed by another
	// key), or does not belong to the actor.
	ErrSnapshot = errors.New("actor snapshot refused")
)

// Returned is the Outcome of an actor call whose method returned.
const Returned Outcome = "returned"

// ActorSpec says how to start an actor.
type ActorSpec struct {
	// Owner is the API key the actor belongs to; only it sees the actor.
	Owner string
	// Name is the guest's argv[0]; Args follow it. Env holds "KEY=VALUE".
	// Args and Env are kept only inside the sealed snapshot.
	Name string
	Args []string
	Env  []string
	// Backend and Mode, where set, serve the actor from another backend
	// or mode of the node's registry than the node's own.
	Backend string
	Mode    *accel.Mode
	// Limits, where its fields are not zero, replace the node's: Timeout
	// and Budget bound each call (and _initialize); Memory, TensorMemory
	// and MaxTensors bound the actor for its whole life.
	Limits Limits
	// IdleTimeout, where set and shorter than the node's, evicts the
	// actor sooner.
	IdleTimeout time.Duration
	// SnapshotOnEvict writes the actor's snapshot to the store only when
	// it is evicted and when the node closes, not after every call:
	// calls are faster, and a node that dies loses the calls since.
	SnapshotOnEvict bool
}

// ActorInfo describes an actor.
type ActorInfo struct {
	ID, Owner, Name string
	ModuleSHA256    string
	Backend         string
	Mode            accel.Mode
	Limits          Limits // as resolved when it started
	IdleTimeout     time.Duration
	SnapshotOnEvict bool
	Created         time.Time
	// Calls counts the calls that completed and were kept.
	Calls    uint64
	LastCall time.Time
	// Resident says the actor's instance is loaded; an evicted actor is
	// restored by its next call. MemoryPages, Tensors and TensorBytes
	// describe it while it is resident.
	Resident    bool
	MemoryPages uint32
	Tensors     int
	TensorBytes int64
	// SnapshotBytes is the size of the sealed snapshot last stored.
	SnapshotBytes int64
}

// CallResult describes an actor call. CallActor fills it in also when it
// returns an error.
type CallResult struct {
	// Reply is what the method set with call_reply; empty when the call
	// failed.
	Reply []byte
	// Code is the method's own i32 result where Outcome is Returned (0
	// for a method that returns nothing), and the exit code where it is
	// Exited. A non-zero Code is the method's error: its state is kept.
	Code    uint32
	Outcome Outcome
	Units   uint64
	// GuestUnits are the units of the method's own instructions, as
	// Result.GuestUnits.
	GuestUnits uint64
	Elapsed    time.Duration // the guest's time, without queueing or the snapshot
	// MemoryPages is the size of the actor's memory after the call.
	MemoryPages uint32
	// Stdout and Stderr hold what the call wrote, up to the node's
	// MaxOutput each.
	Stdout, Stderr                   []byte
	StdoutTruncated, StderrTruncated bool
}

// actorTable holds the node's actors.
type actorTable struct {
	mu       sync.Mutex
	closed   bool
	byID     map[string]*actor
	perOwner map[string]int
	mods     map[string]*actorModule // compiled reactors, by module sha256
	limits   ActorLimits
}

type actorModule struct {
	m    *engine.Module
	refs int
}

// actor is one actor of the node.
type actor struct {
	n              *Node
	id, owner, mod string // mod: the module's sha256
	created        time.Time
	q              fifo
	gone           atomic.Bool // stopped, or the node closed: calls find nothing

	// Held by the queue's holder.
	live   *hostfn.Actor // nil while evicted
	module *engine.Module
	hdr    snapshotHeader // what the actor was started with
	state  *hostfn.State  // committed, while resident
	dirty  bool           // with SnapshotOnEvict: state is not in the store yet
	out    callOutput

	mu         sync.Mutex // guards info, idle and cancelCall
	info       ActorInfo
	idle       *time.Timer
	cancelCall context.CancelCauseFunc
}

// snapshotHeader is sealed with the state: who the actor is, and what it
// needs to be rebuilt.
type snapshotHeader struct {
	Version         int
	Owner, ID       string
	Module          string
	Calls           uint64
	Name            string
	Args, Env       []string
	Backend         string
	Mode            accel.Mode
	Limits          Limits
	IdleTimeout     time.Duration
	SnapshotOnEvict bool
	Created         time.Time
}

// actorMeta is the record's description of an actor, in the clear: what
// ActorInfo shows of an evicted actor, without its arguments or
// environment.
type actorMeta struct {
	Name            string
	Backend         string
	Mode            accel.Mode
	Limits          Limits
	IdleTimeout     time.Duration
	SnapshotOnEvict bool
	Calls           uint64
	LastCall        time.Time `json:",omitzero"`
}

// openActors finds the actors the store holds; each is restored by its
// first call.
func (n *Node) openActors(ctx context.Context) error {
	t := &n.actors
	t.byID, t.perOwner, t.mods = map[string]*actor{}, map[string]int{}, map[string]*actorModule{}
	t.limits = n.cfg.ActorLimits.withDefaults()
	if n.cfg.Actors == nil {
		return nil
	}
	if n.cfg.SnapshotKey == ([32]byte{}) {
		return errors.New("actors need a snapshot key: Config.SnapshotKey is zero")
	}
	recs, err := n.cfg.Actors.ListActors(ctx, "")
	if err != nil {
		return fmt.Errorf("list stored actors: %w", err)
	}
	for _, r := range recs {
		var meta actorMeta
		if err := json.Unmarshal(r.Meta, &meta); err != nil {
			n.log.Warn("stored actor has an unreadable record; it is left alone", "actor", r.ID, "err", err)
			continue
		}
		a := &actor{n: n, id: r.ID, owner: r.Owner, mod: r.Module, created: r.Created}
		a.info = ActorInfo{
			ID: r.ID, Owner: r.Owner, Name: meta.Name, ModuleSHA256: r.Module, Backend: meta.Backend, Mode: meta.Mode,
			Limits: meta.Limits, IdleTimeout: meta.IdleTimeout, SnapshotOnEvict: meta.SnapshotOnEvict,
			Created: r.Created, Calls: meta.Calls, LastCall: meta.LastCall, SnapshotBytes: r.SnapshotSize,
		}
		t.byID[r.ID] = a
		t.perOwner[r.Owner]++
	}
	if len(recs) > 0 {
		n.log.Info("actors found in the store", "actors", len(t.byID))
	}
	return nil
}

// closeActors stops the actors' calls and releases their instances,
// storing the snapshots that SnapshotOnEvict held back.
func (n *Node) closeActors() {
	t := &n.actors
	t.mu.Lock()
	t.closed = true
	all := make([]*actor, 0, len(t.byID))
	for _, a := range t.byID {
		all = append(all, a)
	}
	t.mu.Unlock()
	for _, a := range all {
		a.gone.Store(true)
		a.cancelRunning(errors.New("node closing"))
		a.q.lock(context.Background(), 0)
		a.stopTimer()
		if a.live != nil {
			if err := a.flush(context.Background()); err != nil {
				n.log.Error("actor snapshot not stored at close", "actor", a.id, "err", err)
			}
			a.release()
		}
		a.q.unlock()
	}
}

// StartActor starts the reactor wasm as an actor of spec.Owner: it calls
// its _initialize, stores its module and first snapshot, and returns its
// description. It fails with ErrActorLimit when the owner or the node has
// as many actors as allowed; with an error wrapping engine.ErrNotReactor
// or engine.ErrMalformedModule for a module that cannot be an actor; and
// with ErrActorFailed when _initialize fails.
func (n *Node) StartActor(ctx context.Context, wasm []byte, spec ActorSpec) (ActorInfo, error) {
	if n.cfg.Actors == nil {
		return ActorInfo{}, ErrNoActors
	}
	if spec.Owner == "" || len(spec.Owner) > 256 || strings.IndexByte(spec.Owner, 0) >= 0 {
		return ActorInfo{}, fmt.Errorf("actor owner %q: want 1 to 256 bytes without NUL", spec.Owner)
	}
	if err := spec.Limits.Check(); err != nil {
		return ActorInfo{}, err
	}
	t := &n.actors
	name, mode := n.cfg.Backend, n.cfg.Mode
	if spec.Backend != "" {
		name = spec.Backend
	}
	if spec.Mode != nil {
		mode = *spec.Mode
	}
	backend, err := n.serving(name, mode)
	if err != nil {
		return ActorInfo{}, err
	}
	idle := t.limits.IdleTimeout
	if spec.IdleTimeout > 0 {
		idle = min(idle, spec.IdleTimeout)
	}
	sum := sha256.Sum256(wasm)
	now := time.Now().UTC()
	hdr := snapshotHeader{
		Version: 1, Owner: spec.Owner, ID: store.NewID(), Module: hex.EncodeToString(sum[:]),
		Name: spec.Name, Args: spec.Args, Env: spec.Env, Backend: backend.Name(), Mode: mode,
		Limits: n.limits(spec.Limits), IdleTimeout: idle, SnapshotOnEvict: spec.SnapshotOnEvict, Created: now,
	}

	// A place is taken first, so that concurrent starts cannot pass the
	// limits, and given back if the start fails.
	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		return ActorInfo{}, engine.ErrClosed
	case len(t.byID) >= t.limits.MaxActors:
		t.mu.Unlock()
		return ActorInfo{}, fmt.Errorf("%w: the node has %d actors, its limit", ErrActorLimit, len(t.byID))
	case t.perOwner[spec.Owner] >= t.limits.MaxPerOwner:
		t.mu.Unlock()
		return ActorInfo{}, fmt.Errorf("%w: the owner has %d actors, the limit", ErrActorLimit, t.perOwner[spec.Owner])
	}
	a := &actor{n: n, id: hdr.ID, owner: spec.Owner, mod: hdr.Module, created: now, hdr: hdr}
	a.gone.Store(true) // until it is stored
	t.byID[a.id] = a
	t.perOwner[a.owner]++
	t.mu.Unlock()
	a.q.lock(context.Background(), 0)
	defer a.q.unlock()
	started := false
	defer func() {
		if !started {
			a.release()
			t.mu.Lock()
			delete(t.byID, a.id)
			t.perOwner[a.owner]--
			t.mu.Unlock()
		}
	}()

	if err := a.instantiate(ctx, wasm, nil, backend); err != nil {
		return ActorInfo{}, err
	}
	st, err := a.live.Save()
	if err != nil {
		return ActorInfo{}, fmt.Errorf("snapshot new actor: %w", err)
	}
	sealed, err := n.sealState(hdr, st)
	if err != nil {
		return ActorInfo{}, err
	}
	rec := a.record(hdr, time.Time{})
	if err := n.cfg.Actors.PutActor(context.WithoutCancel(ctx), rec, wasm, sealed); err != nil {
		return ActorInfo{}, fmt.Errorf("store new actor: %w", err)
	}
	a.live.Commit(st)
	a.state = st
	a.mu.Lock()
	a.info = ActorInfo{
		ID: a.id, Owner: a.owner, Name: hdr.Name, ModuleSHA256: hdr.Module, Backend: hdr.Backend, Mode: hdr.Mode,
		Limits: hdr.Limits, IdleTimeout: hdr.IdleTimeout, SnapshotOnEvict: hdr.SnapshotOnEvict, Created: now,
		SnapshotBytes: int64(len(sealed)),
	}
	a.mu.Unlock()
	a.updateInfo()
	a.gone.Store(false)
	started = true
	a.resetTimer()
	return a.Info(), nil
}

// record is the store's record of the actor, with hdr's calls.
func (a *actor) record(hdr snapshotHeader, lastCall time.Time) store.Actor {
	meta, _ := json.Marshal(actorMeta{
		Name: hdr.Name, Backend: hdr.Backend, Mode: hdr.Mode, Limits: hdr.Limits, IdleTimeout: hdr.IdleTimeout,
		SnapshotOnEvict: hdr.SnapshotOnEvict, Calls: hdr.Calls, LastCall: lastCall,
	})
	return store.Actor{ID: a.id, Owner: a.owner, Module: a.mod, Meta: meta}
}

// instantiate makes the actor's instance from wasm: a new one (st nil,
// _initialize called) or one restored in st. The queue is held.
func (a *actor) instantiate(ctx context.Context, wasm []byte, st *hostfn.State, backend accel.Backend) error {
	n := a.n
	hdr := a.hdr
	rcfg := engine.ReactorConfig{
		Name: hdr.Name, Args: hdr.Args, Env: hdr.Env,
		Stdout: &a.out.stdout, Stderr: &a.out.stderr,
		MemoryLimitPages: uint32(hdr.Limits.Memory / pageSize),
		SystemClock:      n.cfg.SystemClock,
	}
	hcfg := hostfn.Config{
		Backend:   backend,
		Mode:      hdr.Mode,
		Limits:    accel.Limits{MaxBytes: hdr.Limits.TensorMemory, MaxTensors: hdr.Limits.MaxTensors},
		Models:    n.models,
		Logger:    n.log,
		Calls:     &n.calls,
		Occupancy: n.occupancy(backend.Name()),
		NNBackend: n.nnBackend(backend, hdr.Mode),
		NNTargets: n.nnTargets,
	}
	// A module forgotten by the last actor that ran it, while this one
	// was compiling it, is compiled again.
	for try := 0; ; try++ {
		m, err := n.acquireModule(ctx, wasm)
		if err != nil {
			return err
		}
		var live *hostfn.Actor
		if st == nil {
			var res engine.Result
			live, res, err = hostfn.StartActor(ctx, n.engine, m, rcfg, hcfg, engine.CallLimits{Timeout: hdr.Limits.Timeout, Budget: hdr.Limits.Budget})
			if o, _ := outcome(res, err); err != nil && o != Refused {
				err = fmt.Errorf("%w: _initialize: %w", ErrActorFailed, err)
			}
		} else {
			live, err = hostfn.RestoreActor(ctx, n.engine, m, rcfg, hcfg, st)
		}
		if err != nil {
			n.releaseModule(m)
			if errors.Is(err, engine.ErrForgotten) && try == 0 {
				continue
			}
			return err
		}
		a.live, a.module = live, m
		return nil
	}
}

// acquireModule compiles wasm as a reactor, or returns the module the
// node's actors already run, and counts one more user.
func (n *Node) acquireModule(ctx context.Context, wasm []byte) (*engine.Module, error) {
	t := &n.actors
	sum := sha256.Sum256(wasm)
	hash := hex.EncodeToString(sum[:])
	t.mu.Lock()
	if am := t.mods[hash]; am != nil {
		am.refs++
		t.mu.Unlock()
		return am.m, nil
	}
	t.mu.Unlock()
	m, err := n.engine.CompileReactor(ctx, wasm)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if am := t.mods[hash]; am != nil {
		am.refs++
		return am.m, nil
	}
	t.mods[hash] = &actorModule{m: m, refs: 1}
	return m, nil
}

// releaseModule counts one user less of m, and forgets its code when no
// resident actor runs it.
func (n *Node) releaseModule(m *engine.Module) {
	t := &n.actors
	t.mu.Lock()
	defer t.mu.Unlock()
	am := t.mods[m.Hash()]
	if am == nil || am.m != m {
		return
	}
	if am.refs--; am.refs == 0 {
		delete(t.mods, m.Hash())
		n.engine.Forget(m)
	}
}

// release closes the actor's instance. The queue is held.
func (a *actor) release() {
	if a.live != nil {
		a.live.Close()
		a.live = nil
	}
	if a.module != nil {
		a.n.releaseModule(a.module)
		a.module = nil
	}
	a.state = nil
	a.updateInfo()
}

// lookup finds owner's actor id.
func (n *Node) lookup(owner, id string) (*actor, error) {
	if n.cfg.Actors == nil {
		return nil, ErrNoActors
	}
	t := &n.actors
	t.mu.Lock()
	a, closed := t.byID[id], t.closed
	t.mu.Unlock()
	if closed {
		return nil, engine.ErrClosed
	}
	if a == nil || a.owner != owner || a.gone.Load() {
		return nil, fmt.Errorf("actor %s: %w", id, ErrActorNotFound)
	}
	return a, nil
}

// enter waits for the actor's turn. It fails with ErrActorLimit when too
// many calls wait already, and with ErrActorNotFound when the actor went
// while the call waited.
func (a *actor) enter(ctx context.Context) error {
	if err := a.q.lock(ctx, a.n.actors.limits.MaxQueue); err != nil {
		if errors.Is(err, errQueueFull) {
			return fmt.Errorf("actor %s: %w: %d calls wait already", a.id, ErrActorLimit, a.n.actors.limits.MaxQueue)
		}
		return fmt.Errorf("actor %s: waiting for earlier calls: %w", a.id, err)
	}
	if a.gone.Load() {
		a.q.unlock()
		return fmt.Errorf("actor %s: %w", a.id, ErrActorNotFound)
	}
	a.stopTimer()
	return nil
}

// leave ends the caller's turn.
func (a *actor) leave() {
	a.resetTimer()
	a.q.unlock()
}

// CallActor calls method of owner's actor id with payload, after the calls
// that came before it, and returns the reply. Its error wraps
// ErrActorNotFound, ErrActorLimit, ErrBadMethod, ErrActorFailed (with the
// engine's reason: engine.ErrDeadline, engine.ErrTrap, ...; the actor
// keeps its state from before the call), or ErrSnapshot (the evicted
// actor could not be restored).
func (n *Node) CallActor(ctx context.Context, owner, id, method string, payload []byte) (CallResult, error) {
	res := CallResult{Outcome: Refused}
	a, err := n.lookup(owner, id)
	if err != nil {
		return res, err
	}
	if len(payload) > MaxCallPayload {
		return res, fmt.Errorf("%w: payload of %d bytes, over %d", ErrActorLimit, len(payload), MaxCallPayload)
	}
	if err := a.enter(ctx); err != nil {
		return res, err
	}
	defer a.leave()
	if err := a.load(ctx); err != nil {
		return res, err
	}
	if err := a.module.Method(method); err != nil {
		return res, fmt.Errorf("actor %s: %w", a.id, err)
	}

	callCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	a.mu.Lock()
	a.cancelCall = cancel
	a.mu.Unlock()
	maxOut := n.cfg.MaxOutput
	if maxOut == 0 {
		maxOut = DefaultMaxOutput
	}
	a.out.begin(maxOut)
	reply, code, r, err := a.live.Call(callCtx, method, payload, engine.CallLimits{Timeout: a.hdr.Limits.Timeout, Budget: a.hdr.Limits.Budget})
	res.Stdout, res.StdoutTruncated = a.out.stdout.c.buf.Bytes(), a.out.stdout.c.dropped
	res.Stderr, res.StderrTruncated = a.out.stderr.c.buf.Bytes(), a.out.stderr.c.dropped
	a.out.begin(0)
	a.mu.Lock()
	a.cancelCall = nil
	a.mu.Unlock()
	res.Units, res.GuestUnits, res.Elapsed, res.MemoryPages = r.UnitsUsed, r.GuestUnits, r.Elapsed, r.MemoryPages
	if err != nil {
		res.Outcome, res.Code = outcome(r, err)
		// The instance is gone; the actor returns to its last state.
		if rerr := a.live.Rollback(context.WithoutCancel(ctx)); rerr != nil {
			n.log.Error("actor not rolled back; its next call tries again", "actor", a.id, "err", rerr)
		}
		a.updateInfo()
		return res, fmt.Errorf("actor %s: %s: %w: %w", a.id, method, ErrActorFailed, err)
	}
	res.Outcome, res.Code, res.Reply = Returned, code, reply
	if err := a.commit(context.WithoutCancel(ctx)); err != nil {
		res.Reply = nil
		return res, err
	}
	return res, nil
}

// commit keeps the state the call left: it saves it and, unless the actor
// writes on eviction only, stores it sealed. A state that cannot be
// stored is rolled back, so that what a client was told happened is
// what the store holds.
func (a *actor) commit(ctx context.Context) error {
	n := a.n
	st, err := a.live.Save()
	if err != nil {
		a.live.Rollback(ctx)
		return fmt.Errorf("actor %s: save state: %w", a.id, err)
	}
	hdr := a.hdr
	hdr.Calls++
	now := time.Now().UTC()
	var size int64
	if !hdr.SnapshotOnEvict {
		sealed, err := n.sealState(hdr, st)
		if err == nil {
			err = n.cfg.Actors.PutActor(ctx, a.record(hdr, now), nil, sealed)
		}
		if err != nil {
			if rerr := a.live.Rollback(ctx); rerr != nil {
				n.log.Error("actor not rolled back; its next call tries again", "actor", a.id, "err", rerr)
			}
			return fmt.Errorf("actor %s: the call was undone: its state could not be stored: %w", a.id, err)
		}
		size = int64(len(sealed))
	} else {
		a.dirty = true
	}
	a.live.Commit(st)
	a.state, a.hdr = st, hdr
	a.mu.Lock()
	a.info.Calls, a.info.LastCall = hdr.Calls, now
	if size > 0 {
		a.info.SnapshotBytes = size
	}
	a.mu.Unlock()
	a.updateInfo()
	return nil
}

// flush stores the committed state that SnapshotOnEvict held back. The
// queue is held.
func (a *actor) flush(ctx context.Context) error {
	if !a.dirty {
		return nil
	}
	sealed, err := a.n.sealState(a.hdr, a.state)
	if err == nil {
		a.mu.Lock()
		last := a.info.LastCall
		a.mu.Unlock()
		err = a.n.cfg.Actors.PutActor(ctx, a.record(a.hdr, last), nil, sealed)
	}
	if err != nil {
		return err
	}
	a.dirty = false
	a.mu.Lock()
	a.info.SnapshotBytes = int64(len(sealed))
	a.mu.Unlock()
	return nil
}

// load restores an evicted actor from the store. The queue is held.
func (a *actor) load(ctx context.Context) error {
	if a.live != nil {
		return nil
	}
	n := a.n
	wasm, sealed, err := n.cfg.Actors.LoadActor(ctx, a.owner, a.id)
	if err != nil {
		return fmt.Errorf("actor %s: load: %w", a.id, err)
	}
	hdr, st, err := n.openState(sealed)
	if err != nil {
		return fmt.Errorf("actor %s: %w", a.id, err)
	}
	sum := sha256.Sum256(wasm)
	a.mu.Lock()
	calls := a.info.Calls
	a.mu.Unlock()
	switch {
	case hdr.Owner != a.owner || hdr.ID != a.id || hdr.Module != a.mod || hex.EncodeToString(sum[:]) != a.mod:
		return fmt.Errorf("actor %s: %w: it belongs to actor %s of %q running %s", a.id, ErrSnapshot, hdr.ID, hdr.Owner, hdr.Module)
	case hdr.Calls < calls:
		// A snapshot is stored before its record says how many calls it
		// holds, so it may be ahead, never behind.
		return fmt.Errorf("actor %s: %w: it holds %d calls, its record %d: an older snapshot", a.id, ErrSnapshot, hdr.Calls, calls)
	}
	backend, err := n.serving(hdr.Backend, hdr.Mode)
	if err != nil {
		return fmt.Errorf("actor %s: %w", a.id, err)
	}
	a.hdr = hdr
	if err := a.instantiate(ctx, wasm, st, backend); err != nil {
		return fmt.Errorf("actor %s: restore: %w", a.id, err)
	}
	a.state = st
	a.mu.Lock()
	a.info.Calls = hdr.Calls
	a.info.SnapshotBytes = int64(len(sealed))
	a.mu.Unlock()
	a.updateInfo()
	n.log.Debug("actor restored", "actor", a.id, "calls", hdr.Calls)
	return nil
}

// evict releases an actor idle since its timer was set, unless a call
// holds or waits for it.
func (a *actor) evict() {
	if !a.q.tryLock() {
		return // the call that holds it sets the timer again
	}
	defer a.q.unlock()
	if a.gone.Load() || a.live == nil {
		return
	}
	if err := a.flush(context.Background()); err != nil {
		a.n.log.Error("actor kept resident: its snapshot could not be stored", "actor", a.id, "err", err)
		a.resetTimer()
		return
	}
	a.release()
	a.n.log.Debug("actor evicted", "actor", a.id)
}

func (a *actor) resetTimer() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gone.Load() {
		return
	}
	if a.idle == nil {
		a.idle = time.AfterFunc(a.info.IdleTimeout, a.evict)
		return
	}
	a.idle.Reset(a.info.IdleTimeout)
}

func (a *actor) stopTimer() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.idle != nil {
		a.idle.Stop()
	}
}

func (a *actor) cancelRunning(cause error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cancelCall != nil {
		a.cancelCall(cause)
	}
}

// updateInfo refreshes what ActorInfo says of the instance. The queue is
// held.
func (a *actor) updateInfo() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.info.Resident = a.live != nil
	a.info.MemoryPages, a.info.Tensors, a.info.TensorBytes = 0, 0, 0
	if a.live != nil {
		a.info.MemoryPages = a.live.MemoryPages()
		s := a.live.Session()
		a.info.Tensors, a.info.TensorBytes = s.LiveTensors(), s.LiveBytes()
	}
}

// Info describes the actor.
func (a *actor) Info() ActorInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.info
}

// ActorInfo describes owner's actor id.
func (n *Node) ActorInfo(owner, id string) (ActorInfo, error) {
	a, err := n.lookup(owner, id)
	if err != nil {
		return ActorInfo{}, err
	}
	return a.Info(), nil
}

// ListActors describes owner's actors, oldest first.
func (n *Node) ListActors(owner string) []ActorInfo {
	t := &n.actors
	t.mu.Lock()
	var mine []*actor
	for _, a := range t.byID {
		if a.owner == owner && !a.gone.Load() {
			mine = append(mine, a)
		}
	}
	t.mu.Unlock()
	out := make([]ActorInfo, len(mine))
	for i, a := range mine {
		out[i] = a.Info()
	}
	slices.SortFunc(out, func(x, y ActorInfo) int {
		if c := x.Created.Compare(y.Created); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	return out
}

// StopActor stops owner's actor id and deletes it and its snapshot: the
// call it runs is cancelled, and the calls waiting for it find it gone.
func (n *Node) StopActor(ctx context.Context, owner, id string) error {
	a, err := n.lookup(owner, id)
	if err != nil {
		return err
	}
	a.cancelRunning(errors.New("actor stopped"))
	if err := a.q.lock(ctx, 0); err != nil {
		return fmt.Errorf("actor %s: stop: %w", a.id, err)
	}
	defer a.q.unlock()
	if a.gone.Load() {
		return fmt.Errorf("actor %s: %w", a.id, ErrActorNotFound)
	}
	if err := n.cfg.Actors.DeleteActor(context.WithoutCancel(ctx), owner, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("actor %s: delete: %w", a.id, err)
	}
	a.gone.Store(true)
	a.stopTimer()
	a.release()
	t := &n.actors
	t.mu.Lock()
	delete(t.byID, a.id)
	t.perOwner[a.owner]--
	if t.perOwner[a.owner] == 0 {
		delete(t.perOwner, a.owner)
	}
	t.mu.Unlock()
	return nil
}

// Sealed snapshots. The plaintext is the header's length (u32,
// little-endian), the header as JSON and the hostfn.State; secretbox seals
// it with a random nonce, after a magic that names the format's version:
//
//	"ACTSNAP1" | nonce (24 bytes) | secretbox(plaintext)
//
// A change to any bit fails the magic or the authentication.
const sealMagic = "ACTSNAP1"

func (n *Node) sealState(hdr snapshotHeader, st *hostfn.State) ([]byte, error) {
	head, err := json.Marshal(hdr)
	if err != nil {
		return nil, err
	}
	body, err := st.MarshalBinary()
	if err != nil {
		return nil, err
	}
	plain := make([]byte, 0, 4+len(head)+len(body))
	plain = binary.LittleEndian.AppendUint32(plain, uint32(len(head)))
	plain = append(append(plain, head...), body...)
	var nonce [24]byte
	rand.Read(nonce[:])
	out := make([]byte, 0, len(sealMagic)+len(nonce)+len(plain)+secretbox.Overhead)
	out = append(append(out, sealMagic...), nonce[:]...)
	out = secretbox.Seal(out, plain, &nonce, &n.cfg.SnapshotKey)
	clear(plain) // the actor's memory, in the clear
	return out, nil
}

func (n *Node) openState(sealed []byte) (snapshotHeader, *hostfn.State, error) {
	var hdr snapshotHeader
	if len(sealed) < len(sealMagic)+24+secretbox.Overhead || string(sealed[:len(sealMagic)]) != sealMagic {
		return hdr, nil, fmt.Errorf("%w: not a sealed snapshot of this version", ErrSnapshot)
	}
	var nonce [24]byte
	copy(nonce[:], sealed[len(sealMagic):])
	plain, ok := secretbox.Open(nil, sealed[len(sealMagic)+24:], &nonce, &n.cfg.SnapshotKey)
	if !ok {
		return hdr, nil, fmt.Errorf("%w: it fails authentication: changed, or sealed with another key", ErrSnapshot)
	}
	if len(plain) < 4 || uint64(binary.LittleEndian.Uint32(plain)) > uint64(len(plain)-4) {
		return hdr, nil, fmt.Errorf("%w: header runs past the end", ErrSnapshot)
	}
	headLen := binary.LittleEndian.Uint32(plain)
	dec := json.NewDecoder(bytes.NewReader(plain[4 : 4+headLen]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&hdr); err != nil || hdr.Version != 1 {
		return hdr, nil, fmt.Errorf("%w: header of version %d: %v", ErrSnapshot, hdr.Version, err)
	}
	st := new(hostfn.State)
	if err := st.UnmarshalBinary(plain[4+headLen:]); err != nil {
		return hdr, nil, fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	return hdr, st, nil
}

// callOutput captures what an actor's calls write, for the call in
// progress; outside a call (while _initialize runs) it drops it.
type callOutput struct {
	stdout, stderr switchWriter
}

// begin gives the streams new captures of at most limit bytes each.
func (o *callOutput) begin(limit int64) {
	o.stdout.c, o.stderr.c = capture{limit: limit}, capture{limit: limit}
}

// switchWriter is one stream of callOutput: the instance writes to it
// across calls, each of which gives it a new capture.
type switchWriter struct{ c capture }

func (w *switchWriter) Write(p []byte) (int, error) { return w.c.Write(p) }

// fifo serialises the calls of one actor in the order they arrive, which
// sync.Mutex does not promise. The holder that unlocks hands the turn to
// the longest waiter.
type fifo struct {
	mu      sync.Mutex
	held    bool
	waiters []chan struct{}
}

var errQueueFull = errors.New("queue full")

// lock waits for the turn, unless max (when positive) calls wait already
// or ctx ends first.
func (q *fifo) lock(ctx context.Context, max int) error {
	q.mu.Lock()
	if !q.held {
		q.held = true
		q.mu.Unlock()
		return nil
	}
	if max > 0 && len(q.waiters) >= max {
		q.mu.Unlock()
		return errQueueFull
	}
	ch := make(chan struct{})
	q.waiters = append(q.waiters, ch)
	q.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		q.mu.Lock()
		if i := slices.Index(q.waiters, ch); i >= 0 {
			q.waiters = slices.Delete(q.waiters, i, i+1)
			q.mu.Unlock()
			return ctx.Err()
		}
		q.mu.Unlock()
		q.unlock() // the turn came as ctx ended: pass it on
		return ctx.Err()
	}
}

// tryLock takes the turn only if nobody holds or waits for it.
func (q *fifo) tryLock() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.held {
		return false
	}
	q.held = true
	return true
}

func (q *fifo) unlock() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiters) > 0 {
		close(q.waiters[0])
		q.waiters = q.waiters[1:]
		return
	}
	q.held = false
}

// waiting is the number of calls waiting for the turn.
func (q *fifo) waiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiters)
}
