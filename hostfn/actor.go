package hostfn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/hostfn/abi"
)

// MaxReply is the most bytes call_reply takes: 16 MiB.
const MaxReply = 16 << 20

// actorCall is the payload and the reply of one actor call.
type actorCall struct {
	input, reply []byte
}

// actorFunctions are the imports of docs/abi.md's "Actors: reactor
// guests".
var actorFunctions = []function{
	{name: "call_input", params: []string{"buf_ptr", "buf_len", "out_len_ptr"}, run: callInput},
	{name: "call_reply", params: []string{"buf_ptr", "buf_len"}, run: callReply},
}

var errNoCall = fail(abi.EUNSUPPORTED, "not in an actor call")

// callInput copies the payload as last_error copies its sentence: the
// length always, the bytes only when they fit. Copying is charged as
// tensor_read charges it.
func callInput(c *call) error {
	if c.in.actor == nil {
		return errNoCall
	}
	input := c.in.actor.input
	lenSlot, err := c.view(c.u32(2), 4, "length")
	if err != nil {
		return err
	}
	if uint64(len(input)) > uint64(c.u32(1)) {
		binary.LittleEndian.PutUint32(lenSlot, uint32(len(input)))
		return fail(abi.ETOOSMALL, "%d bytes needed, buffer holds %d", len(input), c.u32(1))
	}
	buf, err := c.view(c.u32(0), uint64(len(input)), "buffer")
	if err != nil {
		return err
	}
	if err := engine.Charge(c.ctx, accel.CallUnits+uint64(len(input))); err != nil {
		return err
	}
	copy(buf, input)
	binary.LittleEndian.PutUint32(lenSlot, uint32(len(input)))
	return nil
}

// callReply sets the reply, replacing any earlier one; copying is charged
// as tensor_write charges it.
func callReply(c *call) error {
	if c.in.actor == nil {
		return errNoCall
	}
	n := c.u32(1)
	if n > MaxReply {
		return fail(abi.ELIMIT, "reply of %d bytes exceeds the limit of %d", n, MaxReply)
	}
	buf, err := c.view(c.u32(0), uint64(n), "reply")
	if err != nil {
		return err
	}
	if err := engine.Charge(c.ctx, accel.CallUnits+uint64(n)); err != nil {
		return err
	}
	c.in.actor.reply = append(c.in.actor.reply[:0], buf...)
	return nil
}

// touch records that the tensor of handle h may change, in an Actor's
// instance, so that its next State reads it again.
func (in *Instance) touch(h uint32) {
	if in.touched != nil {
		in.touched[h] = struct{}{}
	}
}

// Actor is a reactor guest whose instance, with its accel session and
// tensor handles, lives across calls: the state a model keeps loaded
// (on the GPU where the backend is one). It keeps the State of its last
// Commit, to which Rollback returns it. An Actor is not safe for
// concurrent use.
type Actor struct {
	e     *engine.Engine
	m     *engine.Module
	rcfg  engine.ReactorConfig
	in    *Instance
	r     *engine.Reactor // nil after a failed call until Rollback
	point *State          // of the last Commit, or of the restore
}

// StartActor starts m, compiled by engine.CompileReactor, as an actor
// served as cfg says, calling its _initialize under lim. Commit a first
// State before its first call, so that a failed call has a state to
// return to.
func StartActor(ctx context.Context, e *engine.Engine, m *engine.Module, rcfg engine.ReactorConfig, cfg Config, lim engine.CallLimits) (*Actor, engine.Result, error) {
	in, err := NewInstance(cfg)
	if err != nil {
		return nil, engine.Result{}, err
	}
	in.touched = map[uint32]struct{}{}
	r, res, err := e.StartReactor(in.Bind(ctx), m, rcfg, nil, lim)
	if err != nil {
		in.Close()
		return nil, res, err
	}
	return &Actor{e: e, m: m, rcfg: rcfg, in: in, r: r}, res, nil
}

// RestoreActor starts an actor of m in state st, without calling
// _initialize: its memory, globals, tensors and handle numbers as they
// were. st becomes its committed State.
func RestoreActor(ctx context.Context, e *engine.Engine, m *engine.Module, rcfg engine.ReactorConfig, cfg Config, st *State) (*Actor, error) {
	in, err := NewInstance(cfg)
	if err != nil {
		return nil, err
	}
	in.touched = map[uint32]struct{}{}
	a := &Actor{e: e, m: m, rcfg: rcfg, in: in, point: st}
	if err := a.Rollback(ctx); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// Call calls method with payload and returns the reply the guest set with
// call_reply and the method's own i32 result. After an error other than
// one wrapping engine.ErrBadMethod (the method was not called), the
// actor's state is undefined until Rollback; a Call before that rolls
// back first.
func (a *Actor) Call(ctx context.Context, method string, payload []byte, lim engine.CallLimits) ([]byte, uint32, engine.Result, error) {
	if err := a.m.Method(method); err != nil {
		return nil, 0, engine.Result{}, err
	}
	if a.r == nil {
		if err := a.Rollback(ctx); err != nil {
			return nil, 0, engine.Result{}, err
		}
	}
	a.in.actor = &actorCall{input: payload}
	a.in.lastErr = "" // each call starts with a clean last_error
	defer func() { a.in.actor = nil }()
	code, res, err := a.r.Call(a.in.Bind(ctx), method, lim)
	if err != nil {
		a.r.Close(ctx)
		a.r = nil
		return nil, 0, res, err
	}
	return a.in.actor.reply, code, res, nil
}

// Save returns the actor's state now. Tensors unchanged since the last
// Commit share their bytes with its State instead of being read again
// from the backend.
func (a *Actor) Save() (*State, error) {
	if a.r == nil {
		return nil, errors.New("save actor: its last call failed")
	}
	snap, err := a.r.Snapshot()
	if err != nil {
		return nil, err
	}
	in := a.in
	in.ctx = context.Background() // saving is the node's work, not charged
	st := &State{Reactor: snap, NextHandle: in.next, NextModel: in.nextModel}
	prev := map[uint32]*SavedTensor{}
	if a.point != nil {
		for i := range a.point.Tensors {
			prev[a.point.Tensors[i].Handle] = &a.point.Tensors[i]
		}
	}
	for _, h := range slices.Sorted(maps.Keys(in.handles)) {
		t := in.handles[h]
		if p := prev[h]; p != nil && p.t == t {
			if _, changed := in.touched[h]; !changed {
				st.Tensors = append(st.Tensors, *p)
				continue
			}
		}
		data := make([]byte, t.Bytes())
		if err := in.session.Read(t, 0, data); err != nil {
			return nil, fmt.Errorf("save tensor %d: %w", h, err)
		}
		st.Tensors = append(st.Tensors, SavedTensor{Handle: h, DType: t.DType(), Shape: slices.Clone(t.Shape()), Data: data, t: t})
	}
	for _, h := range slices.Sorted(maps.Keys(in.opened)) {
		st.Models = append(st.Models, SavedModel{Handle: h, SHA256: in.opened[h].SHA256})
	}
	return st, nil
}

// Commit makes st, from Save, the state Rollback returns to.
func (a *Actor) Commit(st *State) {
	a.point = st
	clear(a.in.touched)
}

// Rollback returns the actor to its committed state in a new instance.
// Tensors unchanged since are kept where they are; the others are made
// again from the State. If it fails, the next Call tries again.
func (a *Actor) Rollback(ctx context.Context) error {
	if a.point == nil {
		return errors.New("roll back actor: no state committed")
	}
	if a.r != nil {
		a.r.Close(ctx)
		a.r = nil
	}
	if err := a.in.restore(a.point); err != nil {
		return fmt.Errorf("restore actor tensors: %w", err)
	}
	// Not bound to the instance: guest code that runs at instantiation
	// (a start function) must not touch the restored tensors.
	r, _, err := a.e.StartReactor(ctx, a.m, a.rcfg, a.point.Reactor, engine.CallLimits{})
	if err != nil {
		return fmt.Errorf("restore actor instance: %w", err)
	}
	a.r = r
	return nil
}

// restore makes the instance's tensors, handles and open models those of
// st, keeping the live tensors st was saved from that have not changed.
func (in *Instance) restore(st *State) error {
	in.ctx = context.Background()
	keep := map[uint32]bool{}
	for _, s := range st.Tensors {
		if t, ok := in.handles[s.Handle]; ok && s.t == t {
			if _, changed := in.touched[s.Handle]; !changed {
				keep[s.Handle] = true
			}
		}
	}
	for h, t := range in.handles {
		if !keep[h] {
			if err := in.session.Free(t); err != nil {
				return err
			}
			delete(in.handles, h)
		}
	}
	for i := range st.Tensors {
		s := &st.Tensors[i]
		if keep[s.Handle] {
			continue
		}
		t, err := in.session.NewTensor(s.DType, s.Shape)
		if err != nil {
			return fmt.Errorf("tensor %d: %w", s.Handle, err)
		}
		if err := in.session.Write(t, 0, s.Data); err != nil {
			in.session.Free(t)
			return fmt.Errorf("tensor %d: %w", s.Handle, err)
		}
		in.handles[s.Handle] = t
		s.t = t
	}
	clear(in.opened)
	for _, sm := range st.Models {
		m, err := in.models.Lookup(sm.SHA256)
		if err != nil {
			return fmt.Errorf("model handle %d: %w", sm.Handle, err)
		}
		in.opened[sm.Handle] = m
	}
	in.next, in.nextModel = st.NextHandle, st.NextModel
	in.lastErr = ""
	clear(in.touched)
	return nil
}

// MemoryPages is the size of the actor's memory; 0 after a failed call.
func (a *Actor) MemoryPages() uint32 {
	if a.r == nil {
		return 0
	}
	return a.r.MemoryPages()
}

// Session is the actor's accel session.
func (a *Actor) Session() *accel.Session { return a.in.session }

// Close releases the instance and frees its tensors.
func (a *Actor) Close() {
	if a.r != nil {
		a.r.Close(context.Background())
		a.r = nil
	}
	a.in.Close()
}
