package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers, from onnx.proto.
const (
	fModelIRVersion    = 1
	fModelProducerName = 2
	fModelGraph        = 7
	fModelOpsetImport  = 8

	fOpsetDomain  = 1
	fOpsetVersion = 2

	fGraphNode        = 1
	fGraphName        = 2
	fGraphInitializer = 5
	fGraphInput       = 11
	fGraphOutput      = 12

	fNodeInput     = 1
	fNodeOutput    = 2
	fNodeName      = 3
	fNodeOpType    = 4
	fNodeAttribute = 5
	fNodeDomain    = 7

	fAttrName   = 1
	fAttrF      = 2
	fAttrI      = 3
	fAttrS      = 4
	fAttrT      = 5
	fAttrFloats = 7
	fAttrInts   = 8
	fAttrType   = 20

	fValueName = 1
	fValueType = 2

	fTypeTensor  = 1 // TypeProto.tensor_type
	fTensorElem  = 1 // TypeProto.Tensor.elem_type
	fTensorShape = 2 // TypeProto.Tensor.shape
	fShapeDim    = 1
	fDimValue    = 1
	fDimParam    = 2

	fTensorDims      = 1
	fTensorDataType  = 2
	fTensorFloatData = 4
	fTensorInt32Data = 5
	fTensorInt64Data = 7
	fTensorName      = 8
	fTensorRawData   = 9
	fTensorExternal  = 13 // TensorProto.external_data, key-value entries
	fTensorLocation  = 14 // TensorProto.data_location
	fEntryKey        = 1  // StringStringEntryProto.key
	fEntryValue      = 2  // StringStringEntryProto.value

	locationExternal = 1 // TensorProto.DataLocation EXTERNAL
)

// Marshal encodes m as an ONNX ModelProto. Fields are written in field
// number order, so the same Model always gives the same bytes.
//
// A Dim with no Param and a negative Value is written as a dimension of
// unknown size (neither dim_value nor dim_param), which is how Unmarshal
// reads one.
func Marshal(m *Model) []byte {
	if m == nil {
		return nil
	}
	var b []byte
	if m.IRVersion != 0 {
		b = appendVarint(b, fModelIRVersion, uint64(m.IRVersion))
	}
	if m.ProducerName != "" {
		b = appendString(b, fModelProducerName, m.ProducerName)
	}
	b = appendMessage(b, fModelGraph, appendGraph(nil, &m.Graph))
	if m.OpsetVersion != 0 {
		// The default domain is the empty string, which proto2 lets us omit.
		b = appendMessage(b, fModelOpsetImport, appendVarint(nil, fOpsetVersion, uint64(m.OpsetVersion)))
	}
	return b
}

func appendGraph(b []byte, g *Graph) []byte {
	for i := range g.Nodes {
		b = appendMessage(b, fGraphNode, appendNode(nil, &g.Nodes[i]))
	}
	if g.Name != "" {
		b = appendString(b, fGraphName, g.Name)
	}
	for i := range g.Initializers {
		b = appendMessage(b, fGraphInitializer, appendTensor(nil, &g.Initializers[i]))
	}
	for i := range g.Inputs {
		b = appendMessage(b, fGraphInput, appendValueInfo(nil, &g.Inputs[i]))
	}
	for i := range g.Outputs {
		b = appendMessage(b, fGraphOutput, appendValueInfo(nil, &g.Outputs[i]))
	}
	return b
}

func appendNode(b []byte, n *Node) []byte {
	for _, s := range n.Inputs {
		b = appendString(b, fNodeInput, s) // "" too: it keeps later inputs in place
	}
	for _, s := range n.Outputs {
		b = appendString(b, fNodeOutput, s)
	}
	if n.Name != "" {
		b = appendString(b, fNodeName, n.Name)
	}
	b = appendString(b, fNodeOpType, n.OpType)
	for i := range n.Attrs {
		b = appendMessage(b, fNodeAttribute, appendAttr(nil, &n.Attrs[i]))
	}
	if n.Domain != "" {
		b = appendString(b, fNodeDomain, n.Domain)
	}
	return b
}

func appendAttr(b []byte, a *Attribute) []byte {
	b = appendString(b, fAttrName, a.Name)
	// The value of the attribute's kind is written even when zero, since
	// ONNX needs the field present; any other set field is written too, so
	// that nothing a Model holds is lost.
	if a.Type == AttrFloat || a.F != 0 {
		b = protowire.AppendTag(b, fAttrF, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(a.F))
	}
	if a.Type == AttrInt || a.I != 0 {
		b = appendVarint(b, fAttrI, uint64(a.I))
	}
	if a.Type == AttrString || a.S != "" {
		b = appendString(b, fAttrS, a.S)
	}
	if a.T != nil {
		b = appendMessage(b, fAttrT, appendTensor(nil, a.T))
	}
	if len(a.Floats) > 0 {
		b = appendMessage(b, fAttrFloats, packFloats(a.Floats))
	}
	if len(a.Ints) > 0 {
		b = appendMessage(b, fAttrInts, packInt64s(a.Ints))
	}
	return appendVarint(b, fAttrType, uint64(int64(a.Type)))
}

func appendValueInfo(b []byte, v *ValueInfo) []byte {
	b = appendString(b, fValueName, v.Name)
	t := appendVarint(nil, fTensorElem, uint64(int64(v.ElemType)))
	if v.Dims != nil { // nil: no shape at all, i.e. unknown rank
		var s []byte
		for _, d := range v.Dims {
			var db []byte
			switch {
			case d.Param != "":
				db = appendString(db, fDimParam, d.Param)
			case d.Value >= 0:
				db = appendVarint(db, fDimValue, uint64(d.Value))
			}
			s = appendMessage(s, fShapeDim, db)
		}
		t = appendMessage(t, fTensorShape, s)
	}
	return appendMessage(b, fValueType, appendMessage(nil, fTypeTensor, t))
}

func appendTensor(b []byte, t *Tensor) []byte {
	if len(t.Dims) > 0 {
		b = appendMessage(b, fTensorDims, packInt64s(t.Dims))
	}
	b = appendVarint(b, fTensorDataType, uint64(int64(t.DataType)))
	if len(t.Floats) > 0 {
		b = appendMessage(b, fTensorFloatData, packFloats(t.Floats))
	}
	if len(t.Int32s) > 0 {
		var p []byte
		for _, v := range t.Int32s {
			p = protowire.AppendVarint(p, uint64(int64(v))) // int32 is sign-extended on the wire
		}
		b = appendMessage(b, fTensorInt32Data, p)
	}
	if len(t.Int64s) > 0 {
		b = appendMessage(b, fTensorInt64Data, packInt64s(t.Int64s))
	}
	if t.Name != "" {
		b = appendString(b, fTensorName, t.Name)
	}
	if e := t.External; e != nil {
		entry := func(k, v string) []byte { return appendString(appendString(nil, fEntryKey, k), fEntryValue, v) }
		b = appendMessage(b, fTensorExternal, entry("location", e.Location))
		b = appendMessage(b, fTensorExternal, entry("offset", strconv.FormatInt(e.Offset, 10)))
		if e.Length >= 0 {
			b = appendMessage(b, fTensorExternal, entry("length", strconv.FormatInt(e.Length, 10)))
		}
		b = appendVarint(b, fTensorLocation, locationExternal)
	}
	return b
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendMessage(b []byte, num protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

func packFloats(fs []float32) []byte {
	p := make([]byte, 0, 4*len(fs))
	for _, f := range fs {
		p = protowire.AppendFixed32(p, math.Float32bits(f))
	}
	return p
}

func packInt64s(vs []int64) []byte {
	var p []byte
	for _, v := range vs {
		p = protowire.AppendVarint(p, uint64(v))
	}
	return p
}

// Unmarshal decodes an ONNX ModelProto. Fields this package does not model
// are skipped; repeated numbers may be packed or not; a tensor's raw_data is
// read into Floats, Int32s or Int64s by its data type (and left out for
// other types, which a Tensor cannot hold). A dimension of unknown size
// reads as Dim{Value: -1}, a value with no shape as Dims == nil, and a model
// without an opset for the default domain as OpsetVersion 0. Malformed input
// gives an error, never a panic.
func Unmarshal(data []byte) (*Model, error) {
	m, err := parseModel(data)
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	return m, nil
}

// UnmarshalTensor decodes a TensorProto on its own, as the ONNX test data
// files (input_0.pb, output_0.pb) hold one.
func UnmarshalTensor(data []byte) (*Tensor, error) {
	t, err := parseTensor(data)
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	return t, nil
}

// field is one decoded field: u holds a varint or fixed-size value, b the
// contents of a length-delimited one.
type field struct {
	num protowire.Number
	typ protowire.Type
	u   uint64
	b   []byte
}

func (f field) is(num protowire.Number, typ protowire.Type) bool {
	return f.num == num && f.typ == typ
}

// fields calls fn for each field of the message in b. A field with a known
// number but an unexpected wire type is, as in protobuf itself, simply not
// matched by fn and so skipped.
func fields(b []byte, fn func(f field) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.u, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			f.u = uint64(v)
		case protowire.Fixed64Type:
			f.u, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(b)
		default: // groups, skipped whole
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// appendInt64s appends the value of a repeated integer field, packed or not.
func (f field) appendInt64s(dst []int64) ([]int64, error) {
	switch f.typ {
	case protowire.VarintType:
		return append(dst, int64(f.u)), nil
	case protowire.BytesType:
		for b := f.b; len(b) > 0; {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return dst, protowire.ParseError(n)
			}
			dst = append(dst, int64(v))
			b = b[n:]
		}
	}
	return dst, nil
}

// appendFloats appends the value of a repeated float field, packed or not.
func (f field) appendFloats(dst []float32) ([]float32, error) {
	switch f.typ {
	case protowire.Fixed32Type:
		return append(dst, math.Float32frombits(uint32(f.u))), nil
	case protowire.BytesType:
		if len(f.b)%4 != 0 {
			return dst, fmt.Errorf("packed floats of %d bytes", len(f.b))
		}
		for b := f.b; len(b) > 0; b = b[4:] {
			dst = append(dst, math.Float32frombits(binary.LittleEndian.Uint32(b)))
		}
	}
	return dst, nil
}

func parseModel(b []byte) (*Model, error) {
	m := &Model{}
	haveOpset := false
	err := fields(b, func(f field) error {
		switch {
		case f.is(fModelIRVersion, protowire.VarintType):
			m.IRVersion = int64(f.u)
		case f.is(fModelProducerName, protowire.BytesType):
			m.ProducerName = string(f.b)
		case f.is(fModelGraph, protowire.BytesType):
			// Protobuf would merge a second graph into the first; no
			// writer sends two, so the last simply wins.
			g, err := parseGraph(f.b)
			if err != nil {
				return fmt.Errorf("graph: %w", err)
			}
			m.Graph = *g
		case f.is(fModelOpsetImport, protowire.BytesType):
			domain, version, err := parseOpset(f.b)
			if err != nil {
				return fmt.Errorf("opset_import: %w", err)
			}
			if domain == "" || domain == "ai.onnx" { // both name the default domain
				if haveOpset && version != m.OpsetVersion {
					return fmt.Errorf("opset_import: default domain imported at both versions %d and %d", m.OpsetVersion, version)
				}
				m.OpsetVersion, haveOpset = version, true
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func parseOpset(b []byte) (domain string, version int64, err error) {
	err = fields(b, func(f field) error {
		switch {
		case f.is(fOpsetDomain, protowire.BytesType):
			domain = string(f.b)
		case f.is(fOpsetVersion, protowire.VarintType):
			version = int64(f.u)
		}
		return nil
	})
	return domain, version, err
}

func parseGraph(b []byte) (*Graph, error) {
	g := &Graph{}
	err := fields(b, func(f field) error {
		switch {
		case f.is(fGraphNode, protowire.BytesType):
			n, err := parseNode(f.b)
			if err != nil {
				return fmt.Errorf("node %d: %w", len(g.Nodes), err)
			}
			g.Nodes = append(g.Nodes, *n)
		case f.is(fGraphName, protowire.BytesType):
			g.Name = string(f.b)
		case f.is(fGraphInitializer, protowire.BytesType):
			t, err := parseTensor(f.b)
			if err != nil {
				return fmt.Errorf("initializer %d: %w", len(g.Initializers), err)
			}
			g.Initializers = append(g.Initializers, *t)
		case f.is(fGraphInput, protowire.BytesType):
			v, err := parseValueInfo(f.b)
			if err != nil {
				return fmt.Errorf("input %d: %w", len(g.Inputs), err)
			}
			g.Inputs = append(g.Inputs, *v)
		case f.is(fGraphOutput, protowire.BytesType):
			v, err := parseValueInfo(f.b)
			if err != nil {
				return fmt.Errorf("output %d: %w", len(g.Outputs), err)
			}
			g.Outputs = append(g.Outputs, *v)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

func parseNode(b []byte) (*Node, error) {
	n := &Node{}
	err := fields(b, func(f field) error {
		switch {
		case f.is(fNodeInput, protowire.BytesType):
			n.Inputs = append(n.Inputs, string(f.b))
		case f.is(fNodeOutput, protowire.BytesType):
			n.Outputs = append(n.Outputs, string(f.b))
		case f.is(fNodeName, protowire.BytesType):
			n.Name = string(f.b)
		case f.is(fNodeOpType, protowire.BytesType):
			n.OpType = string(f.b)
		case f.is(fNodeAttribute, protowire.BytesType):
			a, err := parseAttr(f.b)
			if err != nil {
				return fmt.Errorf("attribute %d: %w", len(n.Attrs), err)
			}
			n.Attrs = append(n.Attrs, *a)
		case f.is(fNodeDomain, protowire.BytesType):
			n.Domain = string(f.b)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

func parseAttr(b []byte) (*Attribute, error) {
	a := &Attribute{}
	err := fields(b, func(f field) error {
		var err error
		switch {
		case f.is(fAttrName, protowire.BytesType):
			a.Name = string(f.b)
		case f.is(fAttrF, protowire.Fixed32Type):
			a.F = math.Float32frombits(uint32(f.u))
		case f.is(fAttrI, protowire.VarintType):
			a.I = int64(f.u)
		case f.is(fAttrS, protowire.BytesType):
			a.S = string(f.b)
		case f.is(fAttrT, protowire.BytesType):
			if a.T, err = parseTensor(f.b); err != nil {
				return fmt.Errorf("t: %w", err)
			}
		case f.num == fAttrFloats:
			if a.Floats, err = f.appendFloats(a.Floats); err != nil {
				return fmt.Errorf("floats: %w", err)
			}
		case f.num == fAttrInts:
			if a.Ints, err = f.appendInt64s(a.Ints); err != nil {
				return fmt.Errorf("ints: %w", err)
			}
		case f.is(fAttrType, protowire.VarintType):
			a.Type = int(int32(f.u)) // an enum is an int32 on the wire
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

func parseValueInfo(b []byte) (*ValueInfo, error) {
	v := &ValueInfo{}
	err := fields(b, func(f field) error {
		switch {
		case f.is(fValueName, protowire.BytesType):
			v.Name = string(f.b)
		case f.is(fValueType, protowire.BytesType):
			// Types other than tensor_type (sequences, maps, ...) leave
			// ElemType 0 and Dims nil.
			return fields(f.b, func(f field) error {
				if f.is(fTypeTensor, protowire.BytesType) {
					return parseTensorType(f.b, v)
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("value %q: %w", v.Name, err)
	}
	return v, nil
}

func parseTensorType(b []byte, v *ValueInfo) error {
	return fields(b, func(f field) error {
		switch {
		case f.is(fTensorElem, protowire.VarintType):
			v.ElemType = int(int32(f.u))
		case f.is(fTensorShape, protowire.BytesType):
			dims := []Dim{} // present though perhaps empty: a known rank
			err := fields(f.b, func(f field) error {
				if !f.is(fShapeDim, protowire.BytesType) {
					return nil
				}
				d, err := parseDim(f.b)
				dims = append(dims, d)
				return err
			})
			if err != nil {
				return fmt.Errorf("shape: %w", err)
			}
			v.Dims = dims
		}
		return nil
	})
}

func parseDim(b []byte) (Dim, error) {
	d := Dim{Value: -1} // neither field set: unknown size
	err := fields(b, func(f field) error {
		// dim_value and dim_param are a oneof: the last one read wins.
		switch {
		case f.is(fDimValue, protowire.VarintType):
			d = Dim{Value: int64(f.u)}
			if d.Value < 0 {
				d.Value = -1
			}
		case f.is(fDimParam, protowire.BytesType):
			d = Dim{Param: string(f.b)}
		}
		return nil
	})
	return d, err
}

func parseTensor(b []byte) (*Tensor, error) {
	t := &Tensor{}
	var raw []byte
	var entries [][]byte
	var location uint64
	err := fields(b, func(f field) error {
		var err error
		switch {
		case f.num == fTensorDims:
			if t.Dims, err = f.appendInt64s(t.Dims); err != nil {
				return fmt.Errorf("dims: %w", err)
			}
		case f.is(fTensorDataType, protowire.VarintType):
			t.DataType = int(int32(f.u))
		case f.num == fTensorFloatData:
			if t.Floats, err = f.appendFloats(t.Floats); err != nil {
				return fmt.Errorf("float_data: %w", err)
			}
		case f.num == fTensorInt32Data:
			// Decoded as int64s, then narrowed as protobuf narrows int32.
			var vs []int64
			if vs, err = f.appendInt64s(nil); err != nil {
				return fmt.Errorf("int32_data: %w", err)
			}
			for _, v := range vs {
				t.Int32s = append(t.Int32s, int32(v))
			}
		case f.num == fTensorInt64Data:
			if t.Int64s, err = f.appendInt64s(t.Int64s); err != nil {
				return fmt.Errorf("int64_data: %w", err)
			}
		case f.is(fTensorName, protowire.BytesType):
			t.Name = string(f.b)
		case f.is(fTensorRawData, protowire.BytesType):
			raw = f.b
		case f.is(fTensorExternal, protowire.BytesType):
			entries = append(entries, f.b)
		case f.is(fTensorLocation, protowire.VarintType):
			location = f.u
		}
		return nil
	})
	if err == nil && location == locationExternal {
		t.External, err = parseExternal(entries)
		if err == nil && (len(raw) > 0 || len(t.Floats)+len(t.Int32s)+len(t.Int64s) > 0) {
			err = errors.New("external data and data in the model too")
		}
	}
	if err == nil {
		err = t.decodeRaw(raw)
	}
	if err == nil {
		err = t.check()
	}
	if err != nil {
		if t.Name != "" {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		return nil, fmt.Errorf("tensor: %w", err)
	}
	return t, nil
}

// decodeRaw reads raw_data, little-endian, into the field of t's data type.
func (t *Tensor) decodeRaw(raw []byte) error {
	if len(raw) == 0 {
		return nil
	}
	if len(t.Floats)+len(t.Int32s)+len(t.Int64s) > 0 {
		return errors.New("data in both raw_data and a typed field")
	}
	var size int
	switch t.DataType {
	case Float, Int32:
		size = 4
	case Int64:
		size = 8
	default:
		return nil // a type a Tensor cannot hold: its data is left out
	}
	if len(raw)%size != 0 {
		return fmt.Errorf("raw_data of %d bytes for %d-byte elements", len(raw), size)
	}
	n := len(raw) / size
	switch t.DataType {
	case Float:
		t.Floats = make([]float32, n)
		for i := range t.Floats {
			t.Floats[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case Int32:
		t.Int32s = make([]int32, n)
		for i := range t.Int32s {
			t.Int32s[i] = int32(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case Int64:
		t.Int64s = make([]int64, n)
		for i := range t.Int64s {
			t.Int64s[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
		}
	}
	return nil
}

// check verifies that t's dims are sizes and that the data, where there is
// any (an external or zero-size tensor has none), fills them exactly.
func (t *Tensor) check() error {
	for _, d := range t.Dims {
		if d < 0 {
			return fmt.Errorf("negative dimension in %v", t.Dims)
		}
	}
	var count, kinds int
	for _, n := range []int{len(t.Floats), len(t.Int32s), len(t.Int64s)} {
		if n > 0 {
			count, kinds = n, kinds+1
		}
	}
	if kinds == 0 {
		return nil
	}
	if kinds > 1 {
		return errors.New("data in more than one typed field")
	}
	if want, ok := elemCount(t.Dims); !ok || want != int64(count) {
		return fmt.Errorf("%d elements for dims %v", count, t.Dims)
	}
	return nil
}

// elemCount is the product of dims, and false where it overflows.
func elemCount(dims []int64) (int64, bool) {
	n := int64(1)
	for _, d := range dims {
		if d == 0 {
			return 0, true
		}
	}
	for _, d := range dims {
		if n > math.MaxInt64/d {
			return 0, false
		}
		n *= d
	}
	return n, true
}
