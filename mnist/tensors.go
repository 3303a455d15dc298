package mnist

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"unicode/utf8"
)

// A tensors file holds named float32 tensors, for checkpoints and gradient
// dumps. All integers are little-endian:
//
//	"ANT1"                  magic
//	u32                     count of tensors
//	then for each tensor:
//	u16                     name length, 1..MaxNameLen
//	name                    UTF-8, unique in the file
//	u8                      rank, 0..MaxRank
//	rank × u32              dims
//	product(dims) × f32     values, last dim fastest; rank 0 holds one value
//
// Nothing may follow the last tensor.
const (
	tensorsMagic = "ANT1"
	// MaxNameLen is the longest tensor name, in bytes.
	MaxNameLen = 255
	// MaxRank is the most dims a tensor may have.
	MaxRank = 8
	// MaxElements bounds one tensor's element count (1 GiB of float32).
	MaxElements = 1 << 28
)

// Tensor is one named tensor of a tensors file.
type Tensor struct {
	// Name is 1..MaxNameLen bytes of UTF-8, unique in a file.
	Name string
	// Shape holds 0..MaxRank dims; nil or empty is a scalar.
	Shape []int
	// Data holds the product of Shape's dims values (one for a scalar),
	// last dim fastest.
	Data []float32
}

// WriteTensors writes ts to w as a tensors file. It checks every tensor
// before writing anything: a name that is empty, too long, not UTF-8 or
// repeated, a rank above MaxRank, a negative dim or one above 2^32-1, more
// than MaxElements elements, or Data whose length is not the shape's
// element count are errors.
func WriteTensors(w io.Writer, ts []Tensor) error {
	if uint64(len(ts)) > math.MaxUint32 {
		return fmt.Errorf("mnist: tensors: %d tensors, more than a file holds", len(ts))
	}
	seen := make(map[string]bool, len(ts))
	for i, t := range ts {
		if err := checkName(t.Name, seen); err != nil {
			return fmt.Errorf("mnist: tensors: tensor %d: %w", i, err)
		}
		if len(t.Shape) > MaxRank {
			return fmt.Errorf("mnist: tensors: tensor %q: rank %d is above %d", t.Name, len(t.Shape), MaxRank)
		}
		dims := make([]uint64, len(t.Shape))
		for j, d := range t.Shape {
			if d < 0 || uint64(d) > math.MaxUint32 {
				return fmt.Errorf("mnist: tensors: tensor %q: dim %d is %d, outside 0..%d", t.Name, j, d, uint32(math.MaxUint32))
			}
			dims[j] = uint64(d)
		}
		n, err := elements(dims)
		if err != nil {
			return fmt.Errorf("mnist: tensors: tensor %q: shape %v %w", t.Name, t.Shape, err)
		}
		if uint64(len(t.Data)) != n {
			return fmt.Errorf("mnist: tensors: tensor %q: shape %v holds %d elements but Data has %d", t.Name, t.Shape, n, len(t.Data))
		}
	}

	bw := bufio.NewWriter(w)
	var b [4]byte
	bw.WriteString(tensorsMagic)
	bw.Write(binary.LittleEndian.AppendUint32(b[:0], uint32(len(ts))))
	for _, t := range ts {
		bw.Write(binary.LittleEndian.AppendUint16(b[:0], uint16(len(t.Name))))
		bw.WriteString(t.Name)
		bw.WriteByte(uint8(len(t.Shape)))
		for _, d := range t.Shape {
			bw.Write(binary.LittleEndian.AppendUint32(b[:0], uint32(d)))
		}
		for _, v := range t.Data {
			bw.Write(binary.LittleEndian.AppendUint32(b[:0], math.Float32bits(v)))
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("mnist: tensors: %w", err)
	}
	return nil
}

// ReadTensors reads a tensors file from r, which must end where the file
// does. A scalar comes back with an empty, non-nil Shape. It refuses a bad
// magic, a file cut short, trailing bytes, a name that is empty, longer than
// MaxNameLen, not UTF-8 or repeated, a rank above MaxRank, and a shape whose
// element count overflows or exceeds MaxElements. Memory grows with the
// bytes actually read, not with the counts a header declares.
func ReadTensors(r io.Reader) ([]Tensor, error) {
	ts, err := readTensors(bufio.NewReader(r))
	if err != nil {
		return nil, fmt.Errorf("mnist: tensors: %w", err)
	}
	return ts, nil
}

func readTensors(r *bufio.Reader) ([]Tensor, error) {
	var head [8]byte
	if n, err := io.ReadFull(r, head[:]); err != nil {
		if n >= 4 && string(head[:4]) != tensorsMagic {
			return nil, fmt.Errorf("bad magic %q, want %q", head[:4], tensorsMagic)
		}
		return nil, truncated(err, fmt.Sprintf("header: %d of 8 bytes", n))
	}
	if string(head[:4]) != tensorsMagic {
		return nil, fmt.Errorf("bad magic %q, want %q", head[:4], tensorsMagic)
	}
	count := binary.LittleEndian.Uint32(head[4:])
	ts := make([]Tensor, 0, min(count, 1024))
	seen := make(map[string]bool, min(count, 1024))
	var b [4]byte
	for i := range count {
		if _, err := io.ReadFull(r, b[:2]); err != nil {
			return nil, truncated(err, fmt.Sprintf("tensor %d of %d: name length", i, count))
		}
		nameLen := int(binary.LittleEndian.Uint16(b[:2]))
		if nameLen == 0 || nameLen > MaxNameLen {
			return nil, fmt.Errorf("tensor %d: name length %d is outside 1..%d", i, nameLen, MaxNameLen)
		}
		name := make([]byte, nameLen)
		if _, err := io.ReadFull(r, name); err != nil {
			return nil, truncated(err, fmt.Sprintf("tensor %d: name of %d bytes", i, nameLen))
		}
		if err := checkName(string(name), seen); err != nil {
			return nil, fmt.Errorf("tensor %d: %w", i, err)
		}
		t := Tensor{Name: string(name)}
		rank, err := r.ReadByte()
		if err != nil {
			return nil, truncated(err, fmt.Sprintf("tensor %q: rank", t.Name))
		}
		if rank > MaxRank {
			return nil, fmt.Errorf("tensor %q: rank %d is above %d", t.Name, rank, MaxRank)
		}
		dims := make([]uint64, rank)
		t.Shape = make([]int, rank)
		for j := range dims {
			if _, err := io.ReadFull(r, b[:]); err != nil {
				return nil, truncated(err, fmt.Sprintf("tensor %q: dim %d of %d", t.Name, j, rank))
			}
			dims[j] = uint64(binary.LittleEndian.Uint32(b[:]))
			t.Shape[j] = int(dims[j])
		}
		n, err := elements(dims)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: shape %v %w", t.Name, t.Shape, err)
		}
		if t.Data, err = readFloats(r, int(n)); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		ts = append(ts, t)
	}
	if _, err := r.ReadByte(); err == nil {
		return nil, fmt.Errorf("trailing data after %d tensors", count)
	} else if err != io.EOF {
		return nil, err
	}
	return ts, nil
}

// checkName checks a tensor name and records it in seen.
func checkName(name string, seen map[string]bool) error {
	switch {
	case len(name) == 0 || len(name) > MaxNameLen:
		return fmt.Errorf("name length %d is outside 1..%d", len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("name %q is not UTF-8", name)
	case seen[name]:
		return fmt.Errorf("duplicate name %q", name)
	}
	seen[name] = true
	return nil
}

// elements returns the element count of dims: 1 for no dims, 0 where a dim
// is 0, and an error where the product overflows or exceeds MaxElements.
func elements(dims []uint64) (uint64, error) {
	if slices.Contains(dims, 0) {
		return 0, nil
	}
	n := uint64(1)
	for _, d := range dims {
		hi, lo := bits.Mul64(n, d)
		if hi != 0 {
			return 0, errors.New("has an element count that overflows 64 bits")
		}
		n = lo
	}
	if n > MaxElements {
		return 0, fmt.Errorf("has %d elements, more than %d", n, MaxElements)
	}
	return n, nil
}

// readFloats reads n little-endian float32s, allocating as they arrive
// beyond the first 1 Mi.
func readFloats(r io.Reader, n int) ([]float32, error) {
	const chunk = 1 << 20
	out := make([]float32, 0, min(n, chunk))
	buf := make([]byte, 4*min(n, chunk))
	for len(out) < n {
		k := min(n-len(out), chunk)
		m, err := io.ReadFull(r, buf[:4*k])
		out = slices.Grow(out, m/4)
		for i := 0; i+4 <= m; i += 4 {
			out = append(out, math.Float32frombits(binary.LittleEndian.Uint32(buf[i:])))
		}
		if err != nil {
			return nil, truncated(err, fmt.Sprintf("data: expected %d values (%d bytes), read %d bytes", n, 4*n, 4*len(out)+m%4))
		}
	}
	return out, nil
}

// truncated reports a read that ended early as "truncated <what>", and
// passes other read errors on.
func truncated(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("truncated %s", what)
	}
	return fmt.Errorf("reading %s: %w", what, err)
}
