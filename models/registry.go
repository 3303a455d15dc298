// Package models holds the node's ONNX models: a content-addressed registry
// of loaded models, shared read-only by every guest, and the running of a
// model on any backend. Backends that run ONNX natively (ONNX Runtime)
// implement Runner; on the others a model runs op by op through the
// session (Program), where every op it uses is one the node implements.
package models

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/accelnode/accelnode/accel"
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
	weights     int64 // float elements in the initializers
}

// Registry holds models by name and by content hash.
type Registry struct {
	mu     sync.RWMutex
	byName map[string]*Model
	byHash map[string]*Model
}

func NewRegistry() *Registry {
	return &Registry{byName: map[string]*Model{}, byHash: map[string]*Model{}}
}

// LoadFile reads an ONNX file and adds it under name.
func (r *Registry) LoadFile(name, path string) (*Model, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	if info.Size() > MaxModelBytes {
		return nil, fmt.Errorf("model %s: %s is %d bytes, over the %d-byte limit", name, path, info.Size(), MaxModelBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
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
	m := &Model{SHA256: hash, Bytes: data, Outputs: om.Graph.Outputs}
	initial := map[string]bool{}
	for _, t := range om.Graph.Initializers {
		initial[t.Name] = true
		m.weights += int64(len(t.Floats))
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

// Output is one output of a natively run model, in host memory.
type Output struct {
	Shape []int
	Data  []float32
}

// Runner is implemented by backends that run whole ONNX models themselves.
// key identifies the model (its sha256) so the backend can keep one session
// per model; inputs are in the order of inputNames.
type Runner interface {
	RunONNX(ctx context.Context, key string, model []byte, inputNames, outputNames []string, inputs []*accel.Tensor) ([]Output, error)
}

// Run runs m on s's backend with inputs in the order of m.Inputs and returns
// new tensors of s in the order of m.Outputs.
func (m *Model) Run(ctx context.Context, s *accel.Session, inputs []*accel.Tensor) ([]*accel.Tensor, error) {
	if err := checkInputs(m.Inputs, inputs); err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Name, err)
	}
	runner, native := s.Backend().(Runner)
	if !native {
		if m.program == nil {
			return nil, fmt.Errorf("model %s cannot run on %s: %w", m.Name, s.Backend().Name(), m.unsupported)
		}
		return m.program.Run(ctx, s, inputs)
	}
	if err := s.Charge(m.units(inputs)); err != nil {
		return nil, err
	}
	names := func(vs []onnx.ValueInfo) []string {
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i] = v.Name
		}
		return out
	}
	outs, err := runner.RunONNX(ctx, m.SHA256, m.Bytes, names(m.Inputs), names(m.Outputs), inputs)
	if err != nil {
		return nil, err
	}
	var results []*accel.Tensor
	for _, o := range outs {
		t, err := s.FromFloat32(o.Data, o.Shape...)
		if err != nil {
			for _, r := range results {
				s.Free(r)
			}
			return nil, fmt.Errorf("model %s output: %w", m.Name, err)
		}
		results = append(results, t)
	}
	return results, nil
}

// units is the metering estimate for a native run, from shapes alone: the
// call, the bytes in, and two operations per weight per example (the cost of
// a dense network), the batch being the first input's first dimension.
func (m *Model) units(inputs []*accel.Tensor) uint64 {
	units, batch := uint64(accel.CallUnits), uint64(1)
	for i, t := range inputs {
		units += uint64(t.Bytes())
		if i == 0 {
			batch = uint64(t.Shape()[0])
		}
	}
	return units + 2*uint64(m.weights)*batch
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
