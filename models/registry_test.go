package models

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/models/onnx"
)

// regMLP holds the weights of the registry tests' MLP: Gemm (transB) → Relu
// → Gemm → Softmax, from x [batch,4] to y [batch,3], with 8 hidden units.
type regMLP struct {
	w1, b1, w2, b2 []float32
}

func newRegMLP(seed uint64) regMLP {
	r := rand.New(rand.NewPCG(seed, 7))
	return regMLP{w1: floats(r, 8*4), b1: floats(r, 8), w2: floats(r, 8*3), b2: floats(r, 3)}
}

// model builds the MLP graph; the weights are initializers and the batch is
// symbolic.
func (w regMLP) model() *onnx.Model {
	return &onnx.Model{
		IRVersion:    onnx.IRVersion,
		OpsetVersion: onnx.Opset,
		ProducerName: "registry_test",
		Graph: onnx.Graph{
			Name: "mlp",
			Nodes: []onnx.Node{
				{Name: "fc1", OpType: "Gemm", Inputs: []string{"x", "w1", "b1"}, Outputs: []string{"h"}, Attrs: []onnx.Attribute{onnx.IntAttr("transB", 1)}},
				{Name: "relu", OpType: "Relu", Inputs: []string{"h"}, Outputs: []string{"hr"}},
				{Name: "fc2", OpType: "Gemm", Inputs: []string{"hr", "w2", "b2"}, Outputs: []string{"logits"}},
				{Name: "softmax", OpType: "Softmax", Inputs: []string{"logits"}, Outputs: []string{"y"}, Attrs: []onnx.Attribute{onnx.IntAttr("axis", -1)}},
			},
			Inputs:  []onnx.ValueInfo{{Name: "x", ElemType: onnx.Float, Dims: []onnx.Dim{{Param: "batch"}, {Value: 4}}}},
			Outputs: []onnx.ValueInfo{{Name: "y", ElemType: onnx.Float, Dims: []onnx.Dim{{Param: "batch"}, {Value: 3}}}},
			Initializers: []onnx.Tensor{
				{Name: "w1", Dims: []int64{8, 4}, DataType: onnx.Float, Floats: w.w1},
				{Name: "b1", Dims: []int64{8}, DataType: onnx.Float, Floats: w.b1},
				{Name: "w2", Dims: []int64{8, 3}, DataType: onnx.Float, Floats: w.w2},
				{Name: "b2", Dims: []int64{3}, DataType: onnx.Float, Floats: w.b2},
			},
		},
	}
}

func (w regMLP) bytes() []byte { return onnx.Marshal(w.model()) }

// byHand computes the MLP on s with the session's own ops, as the
// interpreter should map it, and returns y's data.
func (w regMLP) byHand(t testing.TB, s *accel.Session, x []float32, batch int) []float32 {
	t.Helper()
	do := must(t)
	xt := tensor(t, s, x, batch, 4)
	y := do(s.MatMul(bg, xt, tensor(t, s, w.w1, 8, 4), accel.MatMulParams{TransB: true}))
	y = do(s.AddBias(bg, y, tensor(t, s, w.b1, 8), 1))
	y = do(s.Relu(bg, y))
	y = do(s.MatMul(bg, y, tensor(t, s, w.w2, 8, 3), accel.MatMulParams{}))
	y = do(s.AddBias(bg, y, tensor(t, s, w.b2, 3), 1))
	y = do(s.Softmax(bg, y))
	out, err := s.Float32(y)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sha(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func mustAdd(t testing.TB, r *Registry, name string, data []byte) *Model {
	t.Helper()
	m, err := r.Add(name, data)
	if err != nil {
		t.Fatalf("Add(%q): %v", name, err)
	}
	return m
}

func modelNames(r *Registry) []string {
	var names []string
	for _, m := range r.Models() {
		names = append(names, m.Name)
	}
	return names
}

func TestRegistryLookup(t *testing.T) {
	mlp := newRegMLP(1).bytes()
	other := newRegMLP(2).bytes()
	r := NewRegistry()
	mustAdd(t, r, "mlp", mlp)
	mustAdd(t, r, "other", other)
	h := sha(mlp)

	for _, c := range []struct {
		name, key string
		want      string // the model's name, "" for not found
	}{
		{"name", "mlp", "mlp"},
		{"other name", "other", "other"},
		{"hex", h, "mlp"},
		{"upper hex", strings.ToUpper(h), "mlp"},
		{"prefixed hex", "sha256:" + h, "mlp"},
		{"prefixed upper hex", "sha256:" + strings.ToUpper(h), "mlp"},
		{"mixed case hex", strings.ToUpper(h[:32]) + h[32:], "mlp"},
		{"other hex", sha(other), "other"},
		{"unknown name", "nope", ""},
		{"name in other case", "MLP", ""},
		{"empty", "", ""},
		{"unknown hash", sha([]byte("nothing")), ""},
		{"prefixed unknown hash", "sha256:" + sha([]byte("nothing")), ""},
		{"short hex", h[:63], ""},
		{"long hex", h + "0", ""},
		{"prefix only", "sha256:", ""},
		{"other prefix", "sha512:" + h, ""},
		{"upper prefix", "SHA256:" + h, ""}, // the prefix is lowercase only
		{"prefixed name", "sha256:mlp", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := r.Lookup(c.key)
			if c.want == "" {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("Lookup(%q) = %v, %v; want ErrNotFound", c.key, m, err)
				}
				if m != nil {
					t.Errorf("Lookup(%q) returned a model with its error", c.key)
				}
				if !strings.Contains(err.Error(), "mlp, other") {
					t.Errorf("error %q does not list the held models", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Lookup(%q): %v", c.key, err)
			}
			if m.Name != c.want {
				t.Errorf("Lookup(%q) found %q, want %q", c.key, m.Name, c.want)
			}
		})
	}

	t.Run("empty registry", func(t *testing.T) {
		_, err := NewRegistry().Lookup("mlp")
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no models") {
			t.Errorf("Lookup on an empty registry: %v", err)
		}
	})
	if got := modelNames(r); !slices.Equal(got, []string{"mlp", "other"}) {
		t.Errorf("Models() = %v", got)
	}
}

func TestRegistryDescribes(t *testing.T) {
	data := newRegMLP(1).bytes()
	m := mustAdd(t, NewRegistry(), "mlp", data)
	if m.Name != "mlp" || m.SHA256 != sha(data) || !bytes.Equal(m.Bytes, data) {
		t.Errorf("model %q sha256 %s, %d bytes", m.Name, m.SHA256, len(m.Bytes))
	}
	// The initializers are not inputs.
	if len(m.Inputs) != 1 || m.Inputs[0].Name != "x" || DimsString(m.Inputs[0].Dims) != "[batchx4]" {
		t.Errorf("inputs %+v", m.Inputs)
	}
	if len(m.Outputs) != 1 || m.Outputs[0].Name != "y" || DimsString(m.Outputs[0].Dims) != "[batchx3]" {
		t.Errorf("outputs %+v", m.Outputs)
	}
	if m.weights != 8*4+8+8*3+3 {
		t.Errorf("weights %d", m.weights)
	}
	if m.program == nil || m.unsupported != nil {
		t.Errorf("the MLP did not compile: %v", m.unsupported)
	}
}

func TestRegistrySharing(t *testing.T) {
	data := newRegMLP(1).bytes()
	r := NewRegistry()
	a := mustAdd(t, r, "a", data)
	b := mustAdd(t, r, "b", slices.Clone(data)) // equal bytes, other storage

	if a.Name != "a" || b.Name != "b" {
		t.Errorf("names %q and %q", a.Name, b.Name)
	}
	if a.SHA256 != b.SHA256 || a.SHA256 != sha(data) {
		t.Errorf("hashes %s and %s, want %s", a.SHA256, b.SHA256, sha(data))
	}
	if &a.Bytes[0] != &b.Bytes[0] || len(a.Bytes) != len(b.Bytes) {
		t.Error("the same bytes under two names are stored twice")
	}
	if a.program == nil || a.program != b.program {
		t.Error("the same bytes under two names are decoded twice")
	}
	// By hash, the model answers under the first name it was added as.
	if m, err := r.Lookup(a.SHA256); err != nil || m.Name != "a" {
		t.Errorf("Lookup by hash: %v, %v", m, err)
	}

	// Adding a name again with the same bytes is harmless.
	again := mustAdd(t, r, "a", slices.Clone(data))
	if again.SHA256 != a.SHA256 || &again.Bytes[0] != &a.Bytes[0] {
		t.Error("adding a model again under its own name changed it")
	}

	// A name is never reused for other bytes, through Add or LoadFile.
	other := newRegMLP(2).bytes()
	if _, err := r.Add("a", other); !errors.Is(err, accel.ErrInvalid) || !strings.Contains(err.Error(), a.SHA256) {
		t.Errorf("reusing a name for other bytes: %v", err)
	}
	path := filepath.Join(t.TempDir(), "other.onnx")
	if err := os.WriteFile(path, other, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadFile("b", path); !errors.Is(err, accel.ErrInvalid) {
		t.Errorf("reusing a name for another file: %v", err)
	}
	for _, name := range []string{"a", "b"} {
		if m, err := r.Lookup(name); err != nil || m.SHA256 != a.SHA256 {
			t.Errorf("%s after the refused reuse: %v, %v", name, m, err)
		}
	}
	if _, err := r.Lookup(sha(other)); !errors.Is(err, ErrNotFound) {
		t.Errorf("the refused bytes were registered by hash: %v", err)
	}
	if got := modelNames(r); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Models() = %v", got)
	}
}

func TestRegistryInvalidNames(t *testing.T) {
	data := newRegMLP(1).bytes()
	h := sha(data)
	for _, name := range []string{
		"",
		"a=b",
		"=",
		"dir/model",
		"/abs",
		"nul\x00",
		h,
		strings.ToUpper(h),
		"sha256:" + h,
		sha([]byte("another")), // any hash, not only the model's own
	} {
		t.Run(name, func(t *testing.T) {
			r := NewRegistry()
			m, err := r.Add(name, data)
			if !errors.Is(err, accel.ErrInvalid) || m != nil {
				t.Fatalf("Add(%q) = %v, %v; want ErrInvalid", name, m, err)
			}
			if len(r.Models()) != 0 {
				t.Errorf("a refused name registered %v", modelNames(r))
			}
		})
	}
	// Names near the refused ones are fine.
	r := NewRegistry()
	for _, name := range []string{"mnist v2", "sha256:latest", h[:63], "ünïcode", "a.b-c_d"} {
		mustAdd(t, r, name, data)
		if m, err := r.Lookup(name); err != nil || m.Name != name {
			t.Errorf("Lookup(%q): %v, %v", name, m, err)
		}
	}
}

// addBad checks that Add refuses data with an error wrapping ErrInvalid,
// without a panic, and registers nothing.
func addBad(t *testing.T, what string, data []byte) {
	t.Helper()
	r := NewRegistry()
	var m *Model
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("%s: Add panicked: %v", what, p)
			}
		}()
		m, err = r.Add("bad", data)
	}()
	if !errors.Is(err, accel.ErrInvalid) || m != nil {
		t.Errorf("%s (%d bytes): Add = %v, %v; want ErrInvalid", what, len(data), m, err)
	}
	if !strings.Contains(fmt.Sprint(err), "model bad") {
		t.Errorf("%s: error %q does not name the model", what, err)
	}
	if len(r.Models()) != 0 {
		t.Errorf("%s: registered %v", what, modelNames(r))
	}
}

func TestRegistryBadBytes(t *testing.T) {
	valid := newRegMLP(1).model()
	data := onnx.Marshal(valid)

	t.Run("random", func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for i := range 200 {
			b := make([]byte, 1+r.IntN(512))
			for j := range b {
				b[j] = byte(r.Uint32())
			}
			addBad(t, fmt.Sprintf("random %d", i), b)
		}
	})
	t.Run("empty", func(t *testing.T) {
		addBad(t, "nil", nil)
		addBad(t, "empty", []byte{})
	})
	t.Run("truncated", func(t *testing.T) {
		// Marshal writes the opset last: cut just before it, the bytes are
		// a whole model of opset 0. Every other cut ends inside a field or
		// leaves no graph outputs.
		noOpset := *valid
		noOpset.OpsetVersion = 0
		whole := len(onnx.Marshal(&noOpset))
		for n := range len(data) {
			if n != whole {
				addBad(t, fmt.Sprintf("first %d of %d bytes", n, len(data)), data[:n])
			}
		}
	})
	t.Run("corrupted", func(t *testing.T) {
		// Flip bits in the first bytes, where the tags and lengths are.
		for i := range min(64, len(data)) {
			b := slices.Clone(data)
			b[i] ^= 0x80
			r := NewRegistry()
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("byte %d flipped: Add panicked: %v", i, p)
					}
				}()
				if _, err := r.Add("m", b); err != nil && !errors.Is(err, accel.ErrInvalid) {
					t.Errorf("byte %d flipped: %v, want ErrInvalid", i, err)
				}
			}()
		}
	})
	t.Run("no outputs", func(t *testing.T) {
		m := newRegMLP(1).model()
		m.Graph.Outputs = nil
		addBad(t, "graph without outputs", onnx.Marshal(m))
		_, err := NewRegistry().Add("m", onnx.Marshal(m))
		if err == nil || !strings.Contains(err.Error(), "no outputs") {
			t.Errorf("error %v does not say the graph has no outputs", err)
		}
	})
	t.Run("malformed graph", func(t *testing.T) {
		// A node reading a value nothing defines runs on no backend.
		m := newRegMLP(1).model()
		m.Graph.Nodes[1].Inputs = []string{"nowhere"}
		addBad(t, "undefined value", onnx.Marshal(m))
	})
	t.Run("length past the end", func(t *testing.T) {
		// A graph field (7) whose length runs past the data.
		addBad(t, "graph length", []byte{7<<3 | 2, 0xff, 0xff, 0x03, 1, 2, 3})
		// A varint that never ends.
		addBad(t, "endless varint", bytes.Repeat([]byte{0xff}, 16))
	})
}

func TestRegistryLoadFile(t *testing.T) {
	dir := t.TempDir()
	data := newRegMLP(1).bytes()
	good := filepath.Join(dir, "mlp.onnx")
	if err := os.WriteFile(good, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r := NewRegistry()
	m, err := r.LoadFile("mlp", good)
	if err != nil {
		t.Fatal(err)
	}
	if m.SHA256 != sha(data) || !bytes.Equal(m.Bytes, data) {
		t.Errorf("loaded model sha256 %s, want %s", m.SHA256, sha(data))
	}

	t.Run("missing", func(t *testing.T) {
		r := NewRegistry()
		_, err := r.LoadFile("gone", filepath.Join(dir, "gone.onnx"))
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "gone") {
			t.Errorf("missing file: %v", err)
		}
		if len(r.Models()) != 0 {
			t.Errorf("registered %v", modelNames(r))
		}
	})
	t.Run("directory", func(t *testing.T) {
		r := NewRegistry()
		if _, err := r.LoadFile("dir", dir); err == nil {
			t.Error("loaded a directory")
		}
	})
	t.Run("oversized", func(t *testing.T) {
		// A sparse file one byte over the limit: refused before reading.
		big := filepath.Join(dir, "big.onnx")
		f, err := os.Create(big)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := os.Truncate(big, MaxModelBytes+1); err != nil {
			t.Fatalf("making a sparse file: %v", err)
		}
		r := NewRegistry()
		m, err := r.LoadFile("big", big)
		if err == nil || m != nil {
			t.Fatalf("loaded a file over the limit: %v", m)
		}
		if !strings.Contains(err.Error(), "limit") || !strings.Contains(err.Error(), "big") {
			t.Errorf("error %q does not say the file is over the limit", err)
		}
		if len(r.Models()) != 0 {
			t.Errorf("registered %v", modelNames(r))
		}
	})
	t.Run("bad content", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.onnx")
		if err := os.WriteFile(bad, []byte("not a model at all"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := NewRegistry().LoadFile("bad", bad); !errors.Is(err, accel.ErrInvalid) {
			t.Errorf("bad file: %v", err)
		}
	})
}

func sinInput(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)))
	}
	return x
}

func TestRegistryRunRef(t *testing.T) {
	w := newRegMLP(1)
	m := mustAdd(t, NewRegistry(), "mlp", w.bytes())
	for _, batch := range []int{1, 3, 17} {
		t.Run(fmt.Sprint("batch", batch), func(t *testing.T) {
			x := sinInput(batch * 4)
			s := newSession(t, accel.Limits{})
			in := tensor(t, s, x, batch, 4)
			live, liveBytes := s.LiveTensors(), s.LiveBytes()
			outs, err := m.Run(bg, s, []*accel.Tensor{in})
			if err != nil {
				t.Fatal(err)
			}
			if len(outs) != 1 || !slices.Equal(outs[0].Shape(), []int{batch, 3}) {
				t.Fatalf("outputs %v", outs)
			}
			if s.LiveTensors() != live+1 || s.LiveBytes() != liveBytes+outs[0].Bytes() {
				t.Errorf("%d tensors (%d bytes) live after the run, want %d (%d)", s.LiveTensors(), s.LiveBytes(), live+1, liveBytes+outs[0].Bytes())
			}
			got, err := s.Float32(outs[0])
			if err != nil {
				t.Fatal(err)
			}
			want := w.byHand(t, newSession(t, accel.Limits{}), x, batch)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("y[%d] = %v (%#08x), by hand %v (%#08x)", i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
				}
			}
		})
	}
}

func TestRegistryRunErrors(t *testing.T) {
	m := mustAdd(t, NewRegistry(), "mlp", newRegMLP(1).bytes())
	s := newSession(t, accel.Limits{})
	good := tensor(t, s, sinInput(8), 2, 4)
	freed := tensor(t, s, sinInput(8), 2, 4)
	if err := s.Free(freed); err != nil {
		t.Fatal(err)
	}
	i32, err := s.FromInt32(make([]int32, 8), 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		inputs []*accel.Tensor
		want   error
	}{
		{"no inputs", nil, accel.ErrInvalid},
		{"two inputs", []*accel.Tensor{good, good}, accel.ErrInvalid},
		{"nil input", []*accel.Tensor{nil}, accel.ErrInvalid},
		{"freed input", []*accel.Tensor{freed}, accel.ErrFreed},
		{"i32 input", []*accel.Tensor{i32}, accel.ErrInvalid},
		{"rank 1", []*accel.Tensor{tensor(t, s, sinInput(8), 8)}, accel.ErrShape},
		{"rank 3", []*accel.Tensor{tensor(t, s, sinInput(8), 2, 4, 1)}, accel.ErrShape},
		{"fixed dimension", []*accel.Tensor{tensor(t, s, sinInput(10), 2, 5)}, accel.ErrShape},
		{"transposed", []*accel.Tensor{tensor(t, s, sinInput(8), 4, 2)}, accel.ErrShape},
	} {
		t.Run(c.name, func(t *testing.T) {
			live, liveBytes := s.LiveTensors(), s.LiveBytes()
			outs, err := m.Run(bg, s, c.inputs)
			if !errors.Is(err, c.want) {
				t.Fatalf("Run = %v; want %v", err, c.want)
			}
			if outs != nil {
				t.Errorf("a failed run returned outputs %v", outs)
			}
			if !strings.Contains(err.Error(), "mlp") {
				t.Errorf("error %q does not name the model", err)
			}
			if s.LiveTensors() != live || s.LiveBytes() != liveBytes {
				t.Errorf("%d tensors (%d bytes) live after the failed run, %d (%d) before", s.LiveTensors(), s.LiveBytes(), live, liveBytes)
			}
		})
	}
	// The session still runs the model after the failures.
	outs, err := m.Run(bg, s, []*accel.Tensor{good})
	if err != nil || len(outs) != 1 {
		t.Fatalf("run after the failures: %v", err)
	}
}

// TestRegistryConcurrentAdd adds and looks models up from many goroutines;
// run with -race.
func TestRegistryConcurrentAdd(t *testing.T) {
	r := NewRegistry()
	datas := [][]byte{newRegMLP(1).bytes(), newRegMLP(2).bytes()}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				data := datas[(g+i)%2]
				name := fmt.Sprintf("m%d_%d", g, i%4)
				if i%4 == (g+i)%2 { // the same name always gets the same bytes
					name = fmt.Sprintf("shared%d", (g+i)%2)
				}
				if _, err := r.Add(name, data); err != nil {
					t.Errorf("Add(%q): %v", name, err)
				}
				if m, err := r.Lookup(sha(data)); err != nil || m.SHA256 != sha(data) {
					t.Errorf("Lookup by hash: %v, %v", m, err)
				}
				r.Models()
			}
		}()
	}
	wg.Wait()
	for _, m := range r.Models() {
		if m.SHA256 != sha(m.Bytes) {
			t.Errorf("%s: sha256 %s does not match its bytes", m.Name, m.SHA256)
		}
	}
}
