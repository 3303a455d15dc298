package onnx

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// externalModel is a one-node model whose initializer W, four floats,
// lies at offset 8 of w.bin (Length 16), and whose initializer B, two
// floats, is in the model.
func externalModel(e External) *Model {
	return &Model{
		IRVersion: IRVersion, OpsetVersion: Opset,
		Graph: Graph{
			Nodes:   []Node{{OpType: "Add", Inputs: []string{"X", "W"}, Outputs: []string{"Y"}}},
			Inputs:  []ValueInfo{{Name: "X", ElemType: Float, Dims: []Dim{{Value: 4}}}},
			Outputs: []ValueInfo{{Name: "Y", ElemType: Float, Dims: []Dim{{Value: 4}}}},
			Initializers: []Tensor{
				{Name: "W", Dims: []int64{4}, DataType: Float, External: &e},
				{Name: "B", Dims: []int64{2}, DataType: Float, Floats: []float32{7, 8}},
			},
		},
	}
}

var weights = []float32{1.5, -2, 3.25, float32(math.Inf(1))}

// modelDir writes w.bin (8 bytes of padding, then weights) into a fresh
// directory, and returns it.
func modelDir(t testing.TB) string {
	dir := t.TempDir()
	data := make([]byte, 8, 24)
	for _, w := range weights {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(w))
	}
	if err := os.WriteFile(filepath.Join(dir, "w.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestInline(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "outside.bin")
	if err := os.WriteFile(outside, make([]byte, 64), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		ext   External
		setup func(t *testing.T, dir string)
		limit int64
		want  string // a fragment of the error; "" for success
	}{
		{name: "offset and length", ext: External{Location: "w.bin", Offset: 8, Length: 16}},
		{name: "length left out", ext: External{Location: "w.bin", Offset: 8, Length: -1}},
		{name: "in a subdirectory", ext: External{Location: "sub/w.bin", Offset: 8, Length: 16}, setup: func(t *testing.T, dir string) {
			must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
			must(t, os.Rename(filepath.Join(dir, "w.bin"), filepath.Join(dir, "sub", "w.bin")))
		}},
		{name: "a link inside the directory", ext: External{Location: "link.bin", Offset: 8, Length: 16}, setup: func(t *testing.T, dir string) {
			must(t, os.Symlink("w.bin", filepath.Join(dir, "link.bin")))
		}},
		{name: "absolute", ext: External{Location: outside, Length: 16}, want: "not a path inside the model's directory"},
		{name: "parent", ext: External{Location: "../outside.bin", Length: 16}, want: "not a path inside the model's directory"},
		{name: "parent, later", ext: External{Location: "sub/../../outside.bin", Length: 16}, want: "not a path inside the model's directory"},
		{name: "a link that leaves", ext: External{Location: "out.bin", Length: 16}, setup: func(t *testing.T, dir string) {
			must(t, os.Symlink(outside, filepath.Join(dir, "out.bin")))
		}, want: "escapes"},
		{name: "a linked directory that leaves", ext: External{Location: "d/outside.bin", Length: 16}, setup: func(t *testing.T, dir string) {
			must(t, os.Symlink(filepath.Dir(outside), filepath.Join(dir, "d")))
		}, want: "escapes"},
		{name: "missing", ext: External{Location: "gone.bin", Length: 16}, want: "no such file"},
		{name: "directory", ext: External{Location: "sub", Length: 16}, setup: func(t *testing.T, dir string) {
			must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
		}, want: "not a regular file"},
		{name: "fifo", ext: External{Location: "fifo", Length: 16}, setup: func(t *testing.T, dir string) {
			must(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
		}, want: "not a regular file"},
		{name: "past the end", ext: External{Location: "w.bin", Offset: 9, Length: 16}, want: "past the end"},
		{name: "offset past the end", ext: External{Location: "w.bin", Offset: 1 << 40, Length: 16}, want: "past the end"},
		{name: "length against dims", ext: External{Location: "w.bin", Offset: 8, Length: 12}, want: "12 bytes for dims [4]"},
		{name: "length left out, from dims", ext: External{Location: "w.bin", Offset: 4, Length: -1}},
		{name: "no location", ext: External{Length: 16}, want: "no location"},
		{name: "over the limit", ext: External{Location: "w.bin", Offset: 8, Length: 16}, limit: 100, want: "over the 100-byte limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := modelDir(t)
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			limit := tc.limit
			if limit == 0 {
				limit = 1 << 20
			}
			data := Marshal(externalModel(tc.ext))
			out, err := Inline(data, dir, limit)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Inline: %v, want an error with %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m, err := Unmarshal(out)
			if err != nil {
				t.Fatal(err)
			}
			if e := m.FirstExternal(); e != nil {
				t.Fatalf("tensor %q still refers to %+v", e.Name, *e.External)
			}
			want := weights
			if tc.ext.Offset == 4 { // four bytes of padding, then three weights
				want = []float32{0, 1.5, -2, 3.25}
			}
			if w := m.Graph.Initializers[0]; !reflect.DeepEqual(w.Floats, want) {
				t.Errorf("W = %v, want %v", w.Floats, want)
			}
			if b := m.Graph.Initializers[1]; !reflect.DeepEqual(b.Floats, []float32{7, 8}) {
				t.Errorf("B = %v, want [7 8]: a tensor in the model must stay as it was", b.Floats)
			}
			// Everything but the initializer is as it was.
			orig, _ := Unmarshal(data)
			orig.Graph.Initializers[0] = m.Graph.Initializers[0]
			if !reflect.DeepEqual(orig, m) {
				t.Errorf("inlined model %+v, want %+v", m, orig)
			}
		})
	}
}

// TestInlineSelfContained: a model without external data comes back as
// the same bytes, and its directory is never opened.
func TestInlineSelfContained(t *testing.T) {
	data := Marshal(fullModelWithoutExternal())
	out, err := Inline(data, "/nonexistent", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(data) || &out[0] != &data[0] {
		t.Error("Inline copied a model that has no external data")
	}
}

func fullModelWithoutExternal() *Model {
	m := fullModel()
	var kept []Tensor
	for _, t := range m.Graph.Initializers {
		if t.External == nil {
			kept = append(kept, t)
		}
	}
	m.Graph.Initializers = kept
	return m
}

// TestInlineMalformed: truncated models give errors, never panics.
func TestInlineMalformed(t *testing.T) {
	dir := modelDir(t)
	data := Marshal(externalModel(External{Location: "w.bin", Offset: 8, Length: 16}))
	for n := range data {
		if _, err := Inline(data[:n], dir, 1<<20); err == nil {
			if _, err := Unmarshal(data[:n]); err == nil {
				continue // a prefix that is itself a valid model
			}
			t.Errorf("Inline of the first %d bytes succeeded where Unmarshal fails", n)
		}
	}
}

func TestParseExternal(t *testing.T) {
	tests := []struct {
		name    string
		entries [][2]string
		want    string // error fragment
	}{
		{"negative offset", [][2]string{{"location", "w"}, {"offset", "-1"}}, "not a size"},
		{"offset not a number", [][2]string{{"location", "w"}, {"offset", "0x10"}}, "not a size"},
		{"twice", [][2]string{{"location", "w"}, {"location", "v"}}, "given twice"},
		{"checksum ignored", [][2]string{{"location", "w"}, {"checksum", "abc"}}, ""},
	}
	for _, tc := range tests {
		var entries [][]byte
		for _, kv := range tc.entries {
			entries = append(entries, appendString(appendString(nil, fEntryKey, kv[0]), fEntryValue, kv[1]))
		}
		_, err := parseExternal(entries)
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// FuzzInline checks that Inline never panics on any bytes, never reads
// outside its directory, and that a model it inlines reads back whole.
func FuzzInline(f *testing.F) {
	for _, e := range []External{
		{Location: "w.bin", Offset: 8, Length: 16},
		{Location: "w.bin", Length: -1},
		{Location: "../w.bin", Length: 16},
	} {
		f.Add(Marshal(externalModel(e)))
	}
	f.Add(Marshal(fullModel()))
	dir := modelDir(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := Inline(data, dir, 1<<20)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "onnx: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
			return
		}
		if _, err := Unmarshal(data); err != nil {
			return // Inline reads only the initializers; the rest may be anything
		}
		m, err := Unmarshal(out)
		if err != nil {
			t.Fatalf("cannot read the inlined model: %v", err)
		}
		for _, init := range m.Graph.Initializers {
			if init.External != nil {
				t.Fatalf("initializer %q still refers to %+v", init.Name, *init.External)
			}
		}
	})
}
