package onnx

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// parseExternal reads a tensor's external_data entries. The location is
// required; offset defaults to 0 and length to the rest of the file. The
// checksum and keys this package does not know are ignored, as the ONNX
// library ignores them.
func parseExternal(entries [][]byte) (*External, error) {
	e := &External{Length: -1}
	seen := map[string]bool{}
	for _, b := range entries {
		var key, value string
		err := fields(b, func(f field) error {
			switch {
			case f.is(fEntryKey, protowire.BytesType):
				key = string(f.b)
			case f.is(fEntryValue, protowire.BytesType):
				value = string(f.b)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("external_data: %w", err)
		}
		if seen[key] {
			return nil, fmt.Errorf("external_data: key %q given twice", key)
		}
		seen[key] = true
		switch key {
		case "location":
			e.Location = value
		case "offset", "length":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("external_data: %s %q is not a size", key, value)
			}
			if key == "offset" {
				e.Offset = n
			} else {
				e.Length = n
			}
		}
	}
	if e.Location == "" {
		return nil, errors.New("external_data: no location")
	}
	return e, nil
}

// FirstExternal returns the first tensor of the graph, an initializer or a
// node's attribute, whose data lies outside the model, or nil.
func (m *Model) FirstExternal() *Tensor {
	for i := range m.Graph.Initializers {
		if t := &m.Graph.Initializers[i]; t.External != nil {
			return t
		}
	}
	for _, n := range m.Graph.Nodes {
		for _, a := range n.Attrs {
			if a.T != nil && a.T.External != nil {
				return a.T
			}
		}
	}
	return nil
}

// elemSize is the size in bytes of one element of an ONNX data type, and
// 0 for STRING and types this package does not know.
func elemSize(dataType int) int64 {
	switch dataType {
	case 2, 3, 9, 17, 18, 19, 20: // uint8, int8, bool, the float8s
		return 1
	case 4, 5, 10, 16: // uint16, int16, float16, bfloat16
		return 2
	case 1, 6, 12: // float, int32, uint32
		return 4
	case 7, 11, 13, 14: // int64, double, uint64, complex64
		return 8
	case 15: // complex128
		return 16
	}
	return 0
}

// Inline returns the model in data with the external data of its graph's
// initializers read into it as raw_data, so that the result holds all its
// weights and runs wherever it is sent. data itself is returned where no
// initializer has external data.
//
// Every location is confined to dir, the model's own directory: a path
// that is absolute, holds "..", or passes through a link that leaves dir
// is refused, and so is anything but a regular file. Each tensor's offset
// and length are checked against its file and its dims. limit bounds the
// size of the result.
func Inline(data []byte, dir string, limit int64) ([]byte, error) {
	ext := &externalFiles{dir: dir, open: map[string]*os.File{}, size: int64(len(data)), limit: limit}
	defer ext.close()
	out, _, err := rewrite(data, fModelGraph, func(graph []byte) ([]byte, bool, error) {
		return rewrite(graph, fGraphInitializer, ext.inline)
	})
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	return out, nil
}

// rewrite returns msg with the value of every length-delimited field num
// replaced by fn's result, and every other field as it was. It returns msg
// itself, and false, where fn changed nothing.
func rewrite(msg []byte, num protowire.Number, fn func([]byte) ([]byte, bool, error)) ([]byte, bool, error) {
	var out []byte
	copied := 0 // msg[:copied] is in out, where out is not nil
	for i := 0; i < len(msg); {
		n, typ, tagLen := protowire.ConsumeTag(msg[i:])
		if tagLen < 0 {
			return nil, false, protowire.ParseError(tagLen)
		}
		valLen := protowire.ConsumeFieldValue(n, typ, msg[i+tagLen:])
		if valLen < 0 {
			return nil, false, protowire.ParseError(valLen)
		}
		end := i + tagLen + valLen
		if n == num && typ == protowire.BytesType {
			val, _ := protowire.ConsumeBytes(msg[i+tagLen : end])
			repl, changed, err := fn(val)
			if err != nil {
				return nil, false, err
			}
			if changed {
				if out == nil {
					out = make([]byte, 0, len(msg))
				}
				out = append(out, msg[copied:i]...)
				out = appendMessage(out, num, repl)
				copied = end
			}
		}
		i = end
	}
	if out == nil {
		return msg, false, nil
	}
	return append(out, msg[copied:]...), true, nil
}

// externalFiles reads the external data of one model's tensors.
type externalFiles struct {
	dir   string
	root  *os.Root // opened on the first external tensor
	open  map[string]*os.File
	size  int64 // of the model so far, with the data read into it
	limit int64
}

func (x *externalFiles) close() {
	for _, f := range x.open {
		f.Close()
	}
	if x.root != nil {
		x.root.Close()
	}
}

// inline returns the TensorProto in b with its external data read into
// raw_data, or b itself and false where its data is in the model already.
func (x *externalFiles) inline(b []byte) ([]byte, bool, error) {
	var (
		name     string
		dims     []int64
		dataType int
		entries  [][]byte
		location uint64
	)
	err := fields(b, func(f field) error {
		var err error
		switch {
		case f.num == fTensorDims:
			dims, err = f.appendInt64s(dims)
		case f.is(fTensorDataType, protowire.VarintType):
			dataType = int(int32(f.u))
		case f.is(fTensorName, protowire.BytesType):
			name = string(f.b)
		case f.is(fTensorExternal, protowire.BytesType):
			entries = append(entries, f.b)
		case f.is(fTensorLocation, protowire.VarintType):
			location = f.u
		}
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("initializer %q: %w", name, err)
	}
	if location != locationExternal {
		return b, false, nil
	}
	e, err := parseExternal(entries)
	if err == nil {
		var raw []byte
		if raw, err = x.read(dataType, dims, e); err == nil {
			return withRaw(b, raw), true, nil
		}
	}
	return nil, false, fmt.Errorf("initializer %q: %w", name, err)
}

// read reads a tensor's external data, checked against its dims.
func (x *externalFiles) read(dataType int, dims []int64, e *External) ([]byte, error) {
	size := elemSize(dataType)
	if size == 0 {
		return nil, fmt.Errorf("external data of element type %d is not supported", dataType)
	}
	count, ok := elemCount(dims)
	for _, d := range dims {
		ok = ok && d >= 0
	}
	if !ok || count > math.MaxInt64/size {
		return nil, fmt.Errorf("dims %v", dims)
	}
	want := count * size
	if e.Length >= 0 && e.Length != want {
		return nil, fmt.Errorf("external data of %d bytes for dims %v of %d-byte elements (%d bytes)", e.Length, dims, size, want)
	}
	if x.size += want; x.size > x.limit {
		return nil, fmt.Errorf("the model with its external data is over the %d-byte limit", x.limit)
	}
	f, err := x.file(e.Location)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if e.Offset > info.Size() || want > info.Size()-e.Offset {
		return nil, fmt.Errorf("external data at offset %d, %d bytes, lies past the end of %q (%d bytes)", e.Offset, want, e.Location, info.Size())
	}
	raw := make([]byte, want)
	if _, err := io.ReadFull(io.NewSectionReader(f, e.Offset, want), raw); err != nil {
		return nil, fmt.Errorf("reading %q: %w", e.Location, err)
	}
	return raw, nil
}

// file opens a location inside the model's directory, once.
func (x *externalFiles) file(location string) (*os.File, error) {
	if f := x.open[location]; f != nil {
		return f, nil
	}
	// The ONNX library itself once followed such paths out of the model's
	// directory (CVE-2022-25882, CVE-2024-27318).
	if !filepath.IsLocal(location) {
		return nil, fmt.Errorf("external data location %q is not a path inside the model's directory", location)
	}
	if x.root == nil {
		root, err := os.OpenRoot(x.dir)
		if err != nil {
			return nil, fmt.Errorf("external data %q: %w", location, err)
		}
		x.root = root
	}
	// os.Root refuses any link that leaves the directory. Stat before
	// opening: opening a FIFO would block until a writer came.
	info, err := x.root.Stat(location)
	if err != nil {
		return nil, fmt.Errorf("external data: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("external data %q is not a regular file (%s)", location, info.Mode().Type())
	}
	f, err := x.root.Open(location)
	if err != nil {
		return nil, fmt.Errorf("external data: %w", err)
	}
	if opened, err := f.Stat(); err != nil || !os.SameFile(info, opened) {
		f.Close()
		return nil, fmt.Errorf("external data %q changed while it was opened", location)
	}
	x.open[location] = f
	return f, nil
}

// withRaw returns the TensorProto in b, a message already parsed whole,
// without its external_data and data_location, and with raw as its
// raw_data.
func withRaw(b, raw []byte) []byte {
	out := make([]byte, 0, len(b)+len(raw)+16)
	for i := 0; i < len(b); {
		n, typ, tagLen := protowire.ConsumeTag(b[i:])
		valLen := protowire.ConsumeFieldValue(n, typ, b[i+tagLen:])
		end := i + tagLen + valLen
		if n != fTensorExternal && n != fTensorLocation && n != fTensorRawData {
			out = append(out, b[i:end]...)
		}
		i = end
	}
	return appendMessage(out, fTensorRawData, raw)
}
