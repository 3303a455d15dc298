// Package models holds the node's ONNX models: a content-addressed registry
// of loaded models, shared read-only by every guest, and the running of a
// model on any backend. Backends that run ONNX natively (ONNX Runtime)
// implement accel.ONNXRunner; on the others a model runs op by op through
// the session (Program), where every op it uses is one the node implements.
//
// A run is charged once, before anything runs, from shapes alone, and the
// same whether the backend runs the model natively or op by op, so that
// replicas on different backends charge alike: Model.Units gives the
// formula. Nothing inside the run is charged again.
//
// Every input is checked against the model's declaration before anything
// runs: its element type (a FLOAT input takes an f32 tensor, an INT32 input
// an i32 tensor, and an input of any other type cannot be passed), its rank
// and its fixed dimensions. The op-by-op runner takes FLOAT inputs only.
// Outputs are f32 tensors.
//
// Tensors have rank 1 at least, so a scalar (a rank-0 value, such as the
// MatMul of two vectors or a ReduceSum without keepdims) is a [1] tensor:
// the op-by-op runner holds and returns it so, and a native run's rank-0
// output is taken as [1]. An input declared rank 0 takes a [1] tensor.
package models

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/internal/files"
	"github.com/accelnode/accelnode/models/onnx"
)

// ErrNotFound is returned for a name or hash the registry does not hold.
var ErrNotFound = errors.New("no such model")

// MaxModelBytes bounds one model file.
const MaxModelBytes = 1 << 30

// Model is one loaded ONNX model. It is immutable and shared by every guest.
type Model struct {
	Name   string
	SHA256 string // hex
	Bytes  []byte
	// Inputs and Outputs are the graph's inputs (initializers excluded) and
	// outputs.
	Inputs, Outputs []onnx.ValueInfo
	// program runs the model op by op; nil, with unsupported saying why,
	// when it uses an op the node does not implement.
	program     *Program
	unsupported error
	weights     uint64 // float elements in the initializers
}

// Registry holds models by name and by content hash.
type Registry struct {
	mu     sync.RWMutex
	byName map[string]*Model
	byHash map[string]*Model
	// interned are the nameless models that guests pass as bytes, by
	// sha256, held while some guest uses them (Intern).
	interned map[string]*internedModel
}

type internedModel struct {
	m    *Model
	refs int
}

func NewRegistry() *Registry {
	return &Registry{byName: map[string]*Model{}, byHash: map[string]*Model{}, interned: map[string]*internedModel{}}
}

// Intern decodes data as an ONNX model without naming it, or returns the
// model already held for the same bytes, so that guests that pass the same
// model share one decoding. Such a model is not found by Lookup, by name
// or hash: only those who hold its bytes can run it. It stays held until
// every caller has called release.
func (r *Registry) Intern(data []byte) (m *Model, release func(), err error) {
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	r.mu.Lock()
	if named := r.byHash[hash]; named != nil {
		r.mu.Unlock()
		return named, func() {}, nil
	}
	if in := r.interned[hash]; in != nil {
		in.refs++
		r.mu.Unlock()
		return in.m, r.releaser(hash), nil
	}
	r.mu.Unlock()
	// Decoded outside the lock: a large model takes a while.
	m, err = decode(bytes.Clone(data), hash)
	if err != nil {
		return nil, nil, err
	}
	m.Name = "sha256:" + hash[:12]
	r.mu.Lock()
	defer r.mu.Unlock()
	in := r.interned[hash]
	if in == nil { // or another caller decoded it meanwhile: share theirs
		in = &internedModel{m: m}
		r.interned[hash] = in
	}
	in.refs++
	return in.m, r.releaser(hash), nil
}

// releaser drops one reference to the interned model of hash, once.
func (r *Registry) releaser(hash string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			if in := r.interned[hash]; in != nil {
				if in.refs--; in.refs == 0 {
					delete(r.interned, hash)
				}
			}
		})
	}
}

// Interned is the number of nameless models held for guests.
func (r *Registry) Interned() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.interned)
}

// LoadFile reads an ONNX file, a regular file of at most MaxModelBytes,
// and adds it under name. Weights saved as external data (a file beside
// the model, as PyTorch's exporter writes large models) are read into the
// model, from the model's own directory only (onnx.Inline), so that it
// holds all its weights and hashes as one; the limit bounds the whole.
func (r *Registry) LoadFile(name, path string) (*Model, error) {
	data, err := files.ReadRegular(path, MaxModelBytes)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	if data, err = onnx.Inline(data, filepath.Dir(path), MaxModelBytes); err != nil {
		return nil, fmt.Errorf("model %s: %w: %w", name, accel.ErrInvalid, err)
	}
	return r.Add(name, data)
}

// Add decodes data as an ONNX model and registers it under name. The same
// bytes under several names share one Model's storage; a name cannot be
// reused for other bytes.
func (r *Registry) Add(name string, data []byte) (*Model, error) {
	if name == "" || strings.ContainsAny(name, "=/\x00") || isHash(name) {
		return nil, fmt.Errorf("%w: model name %q (want a non-empty name without '=', '/' or NUL that is not a sha256)", accel.ErrInvalid, name)
	}
	data = bytes.Clone(data) // the registry's copy: the caller may reuse its slice
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])

	r.mu.RLock()
	same, named := r.byHash[hash], r.byName[name]
	r.mu.RUnlock()
	if named != nil && named.SHA256 != hash {
		return nil, fmt.Errorf("%w: model name %q is already taken by sha256 %s", accel.ErrInvalid, name, named.SHA256)
	}
	m := same
	if m == nil {
		var err error
		if m, err = decode(data, hash); err != nil {
			return nil, fmt.Errorf("model %s: %w", name, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev := r.byName[name]; prev != nil && prev.SHA256 != hash {
		return nil, fmt.Errorf("%w: model name %q is already taken by sha256 %s", accel.ErrInvalid, name, prev.SHA256)
	}
	if same := r.byHash[hash]; same != nil { // added meanwhile: share its decoding
		m = same
	}
	named = &Model{}
	*named = *m
	named.Name = name
	r.byName[name] = named
	if r.byHash[hash] == nil {
		r.byHash[hash] = named
	}
	return named, nil
}

// decode parses and checks a model.
func decode(data []byte, hash string) (*Model, error) {
	if len(data) > MaxModelBytes {
		return nil, fmt.Errorf("%w: %d bytes, over the %d-byte limit", accel.ErrInvalid, len(data), MaxModelBytes)
	}
	om, err := onnx.Unmarshal(data)
	if err != nil {
		return nil, fmt.Errorf("%w: not a valid ONNX model: %w", accel.ErrInvalid, err)
	}
	if len(om.Graph.Outputs) == 0 {
		return nil, fmt.Errorf("%w: the ONNX graph has no outputs", accel.ErrInvalid)
	}
	if t := om.FirstExternal(); t != nil {
		return nil, fmt.Errorf("%w: tensor %q refers to external data in %q: a model passed as bytes must hold its weights (load it from its file, beside its data, or save it without external data)", accel.ErrInvalid, t.Name, t.External.Location)
	}
	m := &Model{SHA256: hash, Bytes: data, Outputs: om.Graph.Outputs}
	initial := map[string]bool{}
	for _, t := range om.Graph.Initializers {
		initial[t.Name] = true
		if t.DataType == onnx.Float {
			m.weights += uint64(len(t.Floats))
		}
	}
	for _, in := range om.Graph.Inputs {
		if !initial[in.Name] {
			m.Inputs = append(m.Inputs, in)
		}
	}
	// A graph of ops the node lacks still runs on backends that run ONNX
	// natively; a malformed one runs nowhere.
	m.program, m.unsupported = Compile(om)
	if m.unsupported != nil && !errors.Is(m.unsupported, accel.ErrUnsupported) {
		return nil, fmt.Errorf("%w: malformed graph: %w", accel.ErrInvalid, m.unsupported)
	}
	return m, nil
}

// isHash reports whether key looks like a hex sha256.
func isHash(key string) bool {
	key = strings.TrimPrefix(key, "sha256:")
	if len(key) != 64 {
		return false
	}
	_, err := hex.DecodeString(key)
	return err == nil
}

// Lookup finds a model by name, or by sha256 (hex, with or without a
// "sha256:" prefix).
func (r *Registry) Lookup(key string) (*Model, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if m := r.byName[key]; m != nil {
		return m, nil
	}
	if isHash(key) {
		if m := r.byHash[strings.ToLower(strings.TrimPrefix(key, "sha256:"))]; m != nil {
			return m, nil
		}
	}
	return nil, fmt.Errorf("%w: %q (the node holds %s)", ErrNotFound, key, r.listLocked())
}

func (r *Registry) listLocked() string {
	if len(r.byName) == 0 {
		return "no models"
	}
	names := make([]string, 0, len(r.byName))
	for n := range r.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Models lists the registered models by name.
func (r *Registry) Models() []*Model {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*Model, 0, len(r.byName))
	for _, m := range r.byName {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Run runs m on s's backend with inputs in the order of m.Inputs and returns
// new tensors of s in the order of m.Outputs. It checks the inputs against
// the model's declaration and works out the run's shapes, then charges
// m.Units once through s and runs the model, natively where s's backend
// implements accel.ONNXRunner and op by op otherwise, with nothing inside
// charged again. A failed run creates no tensors.
func (m *Model) Run(ctx context.Context, s *accel.Session, inputs []*accel.Tensor) ([]*accel.Tensor, error) {
	outs, err := m.run(ctx, s, inputs)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Name, err)
	}
	return outs, nil
}

func (m *Model) run(ctx context.Context, s *accel.Session, inputs []*accel.Tensor) ([]*accel.Tensor, error) {
	if err := checkInputs(m.Inputs, inputs); err != nil {
		return nil, err
	}
	for _, o := range m.Outputs {
		if o.ElemType != 0 && o.ElemType != onnx.Float {
			return nil, fmt.Errorf("output %q is declared %s: %w (outputs are f32 only)", o.Name, elemTypeName(o.ElemType), accel.ErrUnsupported)
		}
	}
	runner, native := s.Backend().(accel.ONNXRunner)
	if !native {
		if m.program == nil {
			return nil, fmt.Errorf("cannot run on %s: %w", s.Backend().Name(), m.unsupported)
		}
		return m.program.Run(ctx, s, inputs)
	}
	units, pl, err := m.units(shapesOf(inputs))
	if err != nil {
		return nil, err
	}
	var outs []*accel.Tensor
	err = s.Prepaid(units, func() error {
		host, err := runner.RunONNX(ctx, m.SHA256, m.Bytes, valueNames(m.Inputs), valueNames(m.Outputs), inputs)
		if err != nil {
			return fmt.Errorf("%s: %w", s.Backend().Name(), err)
		}
		outs, err = m.adopt(s, host, pl)
		return err
	})
	return outs, err
}

func valueNames(vs []onnx.ValueInfo) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Name
	}
	return out
}

// adopt places a native run's outputs in s. Where the run was planned, each
// must have the shape the plan gives it, the shape it was charged for.
func (m *Model) adopt(s *accel.Session, host []accel.HostTensor, pl *runPlan) ([]*accel.Tensor, error) {
	if len(host) != len(m.Outputs) {
		return nil, fmt.Errorf("%w: %s returned %d outputs, want %d", accel.ErrDevice, s.Backend().Name(), len(host), len(m.Outputs))
	}
	outs := make([]*accel.Tensor, 0, len(host))
	fail := func(err error) ([]*accel.Tensor, error) {
		for _, t := range outs {
			s.Free(t) // best effort: the run is failing already
		}
		return nil, err
	}
	for i, h := range host {
		shape := tensorShape(h.Shape) // a scalar, should the backend give rank 0
		if pl != nil && !slices.Equal(shape, tensorShape(pl.outputs[i])) {
			return fail(fmt.Errorf("%w: %s returned output %q as %s, the graph gives %s", accel.ErrDevice, s.Backend().Name(), m.Outputs[i].Name, accel.ShapeString(shape), accel.ShapeString(tensorShape(pl.outputs[i]))))
		}
		t, err := s.FromFloat32(h.Data, shape...)
		if err != nil {
			return fail(fmt.Errorf("output %q: %w", m.Outputs[i].Name, err))
		}
		outs = append(outs, t)
	}
	return outs, nil
}

// Units is the cost in compute units of a run of m with inputs of these
// shapes: what Run charges, once and before anything runs, on every backend
// that can run it.
//
// Where the node can run every node of the graph op by op for these shapes,
// it is Program.Units, the same whether the backend runs ONNX natively or
// not:
//
//	64 + 4·(elements of the inputs + elements of the outputs
//	        + elements of the model's float initializers)
//	   + the units of every accel operation the nodes map onto
//
// Otherwise the model runs only natively, and the cost is estimated from the
// declared shapes:
//
//	64 + 4·(elements of the inputs + elements of the outputs
//	        + elements of the model's float initializers)
//	   + 2·(elements of the float initializers)·(first dimension of the first input)
//
// the cost of a dense network, where each output counts the elements its
// declaration gives: a fixed dimension its size, a symbolic one the size of
// the input dimension of the same name, and one it cannot size (or an
// output of unknown rank) 1. A scalar counts as one element.
func (m *Model) Units(inputShapes [][]int) (uint64, error) {
	units, _, err := m.units(inputShapes)
	if err != nil {
		return 0, fmt.Errorf("model %s: %w", m.Name, err)
	}
	return units, nil
}

// units returns the cost of a run and, where the node can run it op by op,
// its plan.
func (m *Model) units(shapes [][]int) (uint64, *runPlan, error) {
	if err := checkShapes(m.Inputs, shapes); err != nil {
		return 0, nil, err
	}
	if m.program != nil {
		pl, err := m.program.plan(shapes)
		if err == nil {
			return pl.units, pl, nil
		}
		if !errors.Is(err, accel.ErrUnsupported) {
			return 0, nil, err // the shapes do not fit the graph
		}
	}
	return m.estimate(shapes), nil, nil
}

// estimate is the cost of a run the node cannot plan op by op (see Units).
func (m *Model) estimate(shapes [][]int) uint64 {
	bound := map[string]int{}
	var in uint64
	for i, vi := range m.Inputs {
		in = addSat(in, elements(shapes[i]))
		for j, d := range vi.Dims {
			if _, ok := bound[d.Param]; d.Param != "" && !ok {
				bound[d.Param] = shapes[i][j]
			}
		}
	}
	var out uint64
	for _, o := range m.Outputs {
		n := uint64(1)
		for _, d := range o.Dims {
			switch {
			case d.Param != "" && bound[d.Param] > 0:
				n = mulSat(n, uint64(bound[d.Param]))
			case d.Param == "" && d.Value > 0:
				n = mulSat(n, uint64(d.Value))
			}
		}
		out = addSat(out, n)
	}
	batch := uint64(1)
	if len(shapes) > 0 {
		batch = uint64(shapes[0][0])
	}
	return addSat(ioUnits(in, out, m.weights), mulSat(2*m.weights, batch))
}

// DimsString formats declared dimensions as [batch x 1 x 28 x 28].
func DimsString(dims []onnx.Dim) string {
	parts := make([]string, len(dims))
	for i, d := range dims {
		switch {
		case d.Param != "":
			parts[i] = d.Param
		case d.Value > 0:
			parts[i] = fmt.Sprint(d.Value)
		default:
			parts[i] = "?"
		}
	}
	return "[" + strings.Join(parts, "x") + "]"
}
