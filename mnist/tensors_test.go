package mnist

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

// sample covers a scalar, a vector, a 3-d tensor, an empty tensor, a
// non-ASCII name, and float bit patterns: NaN with a payload, ±Inf, -0 and a
// subnormal.
func sample() []Tensor {
	return []Tensor{
		{Name: "step", Shape: nil, Data: []float32{42}},
		{Name: "fc1.bias", Shape: []int{4}, Data: []float32{1, -2.5, 0, 3e-7}},
		{Name: "conv1.weight", Shape: []int{2, 1, 3}, Data: []float32{1, 2, 3, 4, 5, 6}},
		{Name: "empty", Shape: []int{3, 0, 7}, Data: []float32{}},
		{Name: "grad/Δ", Shape: []int{5}, Data: []float32{
			math.Float32frombits(0x7fc01234), float32(math.Inf(1)), float32(math.Inf(-1)),
			math.Float32frombits(0x80000000), math.Float32frombits(1)}},
	}
}

func encode(t testing.TB, ts []Tensor) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteTensors(&buf, ts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func equalTensors(a, b []Tensor) bool {
	return slices.EqualFunc(a, b, func(x, y Tensor) bool {
		return x.Name == y.Name && slices.Equal(x.Shape, y.Shape) &&
			slices.EqualFunc(x.Data, y.Data, func(p, q float32) bool { return math.Float32bits(p) == math.Float32bits(q) })
	})
}

func TestTensorsRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		ts   []Tensor
	}{
		{"none", nil},
		{"sample", sample()},
		{"long name", []Tensor{{Name: strings.Repeat("w", MaxNameLen), Shape: []int{1, 1, 1, 1, 1, 1, 1, 2}, Data: []float32{1, 2}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := encode(t, tc.ts)
			got, err := ReadTensors(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if !equalTensors(got, tc.ts) {
				t.Fatalf("read back %v, want %v", got, tc.ts)
			}
			for _, g := range got {
				if g.Shape == nil {
					t.Errorf("tensor %q: nil Shape, want empty", g.Name)
				}
			}
		})
	}
	// The layout, byte for byte, of one small tensor.
	b := encode(t, []Tensor{{Name: "ab", Shape: []int{2}, Data: []float32{1, -2}}})
	want := []byte("ANT1\x01\x00\x00\x00\x02\x00ab\x01\x02\x00\x00\x00\x00\x00\x80\x3f\x00\x00\x00\xc0")
	if !bytes.Equal(b, want) {
		t.Errorf("encoded % x, want % x", b, want)
	}
}

// tensorsFile assembles a tensors file from parts: strings and byte slices
// as they are, u8/u16/u32 little-endian.
func tensorsFile(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			b = append(b, v...)
		case []byte:
			b = append(b, v...)
		case uint8:
			b = append(b, v)
		case uint16:
			b = binary.LittleEndian.AppendUint16(b, v)
		case uint32:
			b = binary.LittleEndian.AppendUint32(b, v)
		default:
			panic(p)
		}
	}
	return b
}

func TestReadTensorsErrors(t *testing.T) {
	good := encode(t, sample())
	one := func(name string, dims ...uint32) []byte {
		parts := []any{"ANT1", uint32(1), uint16(len(name)), name, uint8(len(dims))}
		for _, d := range dims {
			parts = append(parts, d)
		}
		return tensorsFile(parts...)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "truncated header: 0 of 8 bytes"},
		{"short magic", []byte("ANT"), "truncated header: 3 of 8 bytes"},
		{"bad magic", tensorsFile("ANT2", uint32(0)), `bad magic "ANT2", want "ANT1"`},
		{"bad magic short", []byte("GGUF\x01"), `bad magic "GGUF"`},
		{"truncated count", []byte("ANT1\x01\x00"), "truncated header: 6 of 8 bytes"},
		{"no tensors", tensorsFile("ANT1", uint32(2)), "truncated tensor 0 of 2: name length"},
		{"truncated name", tensorsFile("ANT1", uint32(1), uint16(5), "ab"), "truncated tensor 0: name of 5 bytes"},
		{"name length 0", tensorsFile("ANT1", uint32(1), uint16(0)), "tensor 0: name length 0 is outside 1..255"},
		{"name length 256", tensorsFile("ANT1", uint32(1), uint16(256), strings.Repeat("x", 256)), "name length 256 is outside 1..255"},
		{"name not utf-8", one("a\xffb", 1), `name "a\xffb" is not UTF-8`},
		{"no rank", tensorsFile("ANT1", uint32(1), uint16(1), "w"), `truncated tensor "w": rank`},
		{"rank 9", one("w", 1, 1, 1, 1, 1, 1, 1, 1, 1), `tensor "w": rank 9 is above 8`},
		{"truncated dims", tensorsFile("ANT1", uint32(1), uint16(1), "w", uint8(2), uint32(3), uint16(0)), `truncated tensor "w": dim 1 of 2`},
		{"too many elements", one("w", 1<<14, 1<<14+1), `tensor "w": shape [16384 16385] has 268451840 elements, more than 268435456`},
		{"overflow", one("w", 1<<31, 1<<31, 1<<31), "overflows 64 bits"},
		{"overflow then small", one("w", 1<<32-1, 1<<32-1, 1<<32-1, 1), "overflows 64 bits"},
		{"truncated data", append(one("w", 2, 3), make([]byte, 4*6-3)...), `tensor "w": truncated data: expected 6 values (24 bytes), read 21 bytes`},
		{"truncated scalar", one("s"), `tensor "s": truncated data: expected 1 values (4 bytes), read 0 bytes`},
		{"truncated sample", good[:len(good)-1], `tensor "grad/Δ": truncated data`},
		{"truncated at bound", one("w", 1<<28), "expected 268435456 values (1073741824 bytes), read 0 bytes"},
		{"duplicate", tensorsFile("ANT1", uint32(2),
			uint16(1), "w", uint8(0), uint32(0),
			uint16(1), "w", uint8(0), uint32(0)), `tensor 1: duplicate name "w"`},
		{"trailing", append(bytes.Clone(good), 0), "trailing data after 5 tensors"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, err := ReadTensors(bytes.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "mnist: tensors: ") {
				t.Errorf("error %q lacks its prefix", err)
			}
			if ts != nil {
				t.Errorf("tensors %v beside the error", ts)
			}
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteTensorsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		ts   []Tensor
		want string
	}{
		{"empty name", []Tensor{{Name: "", Data: []float32{1}}}, "tensor 0: name length 0 is outside 1..255"},
		{"long name", []Tensor{{Name: strings.Repeat("x", 256), Data: []float32{1}}}, "name length 256 is outside 1..255"},
		{"not utf-8", []Tensor{{Name: "\xc3", Data: []float32{1}}}, "is not UTF-8"},
		{"duplicate", []Tensor{{Name: "a", Data: []float32{1}}, {Name: "a", Data: []float32{2}}}, `tensor 1: duplicate name "a"`},
		{"rank 9", []Tensor{{Name: "a", Shape: make([]int, 9)}}, `tensor "a": rank 9 is above 8`},
		{"negative dim", []Tensor{{Name: "a", Shape: []int{2, -1}}}, `tensor "a": dim 1 is -1, outside 0..4294967295`},
		{"huge dim", []Tensor{{Name: "a", Shape: []int{1 << 32}}}, "dim 0 is 4294967296"},
		{"too many elements", []Tensor{{Name: "a", Shape: []int{1 << 20, 1 << 9}}}, "more than 268435456"},
		{"short data", []Tensor{{Name: "a", Shape: []int{2, 2}, Data: make([]float32, 3)}}, `tensor "a": shape [2 2] holds 4 elements but Data has 3`},
		{"scalar without data", []Tensor{{Name: "a"}}, "holds 1 elements but Data has 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := WriteTensors(&buf, tc.ts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "mnist: tensors: ") {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes before the error", buf.Len())
			}
		})
	}
	if err := WriteTensors(failWriter{}, sample()); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("writing to a failing writer: error %v", err)
	}
}

// FuzzReadTensors checks that ReadTensors never panics, and that what it
// accepts writes back to the same bytes: the format has one encoding.
func FuzzReadTensors(f *testing.F) {
	f.Add(encode(f, sample()))
	f.Add(encode(f, nil))
	f.Add([]byte("ANT1\x01\x00\x00\x00\x01\x00w\x02\x02\x00\x00\x00\x01\x00\x00\x00\x00\x00\x80\x3f\x00\x00\x00\x40"))
	f.Add([]byte("ANT1\x01\x00\x00\x00\x01\x00w\x01\x00\x00\x00\x10"))
	f.Add([]byte("ANT1"))
	f.Fuzz(func(t *testing.T, in []byte) {
		ts, err := ReadTensors(bytes.NewReader(in))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := WriteTensors(&buf, ts); err != nil {
			t.Fatalf("writing back what was read: %v", err)
		}
		if !bytes.Equal(buf.Bytes(), in) {
			t.Fatalf("wrote back % x, read % x", buf.Bytes(), in)
		}
	})
}
