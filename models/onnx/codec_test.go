package onnx

import (
	"bytes"
	"encoding/binary"
	"math"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// fullModel uses every feature the types hold.
func fullModel() *Model {
	return &Model{
		IRVersion:    IRVersion,
		OpsetVersion: Opset,
		ProducerName: "test",
		Graph: Graph{
			Name: "full",
			Nodes: []Node{
				{
					Name: "n0", OpType: "Custom", Domain: "com.example",
					Inputs:  []string{"X", "", "W"}, // an omitted optional input
					Outputs: []string{"Y", "Z"},
					Attrs: []Attribute{
						FloatAttr("f", -1.5),
						FloatAttr("f0", 0),
						IntAttr("i", -7),
						IntAttr("i0", 0),
						StringAttr("s", "héllo"),
						StringAttr("s0", ""),
						{Name: "t", Type: AttrTensor, T: &Tensor{Dims: []int64{2}, DataType: Int32, Int32s: []int32{-1, 1 << 30}}},
						{Name: "fs", Type: AttrFloats, Floats: []float32{1, float32(math.Inf(-1)), 1e-30}},
						IntsAttr("is", -1, 0, math.MaxInt64, math.MinInt64),
					},
				},
				{OpType: "Relu", Inputs: []string{"Y"}, Outputs: []string{"R"}},
			},
			Inputs: []ValueInfo{
				{Name: "X", ElemType: Float, Dims: []Dim{{Param: "n"}, {Value: 3}, {Value: -1}, {Value: 0}}},
				{Name: "S", ElemType: Int64, Dims: []Dim{}}, // a scalar
				{Name: "U", ElemType: Float},                // unknown rank
			},
			Outputs: []ValueInfo{
				{Name: "Y", ElemType: Int32, Dims: Sym("a", "b")},
				{Name: "R", ElemType: Bool, Dims: []Dim{{Value: 1 << 40}}},
			},
			Initializers: []Tensor{
				{Name: "W", Dims: []int64{2, 3}, DataType: Float, Floats: []float32{1, -2, 3.5, 0, float32(math.SmallestNonzeroFloat32), -0.25}},
				{Name: "I32", Dims: []int64{3}, DataType: Int32, Int32s: []int32{math.MinInt32, -1, math.MaxInt32}},
				{Name: "I64", Dims: []int64{1, 2}, DataType: Int64, Int64s: []int64{math.MinInt64, 1 << 50}},
				{Name: "scalar", DataType: Float, Floats: []float32{42}},
				{Name: "empty", Dims: []int64{0, 4}, DataType: Float},
				{Name: "external", Dims: []int64{1000}, DataType: Float}, // data elsewhere
				{Name: "in-file", Dims: []int64{2}, DataType: Float, External: &External{Location: "w.bin", Offset: 4, Length: 8}},
				{Name: "rest-of-file", Dims: []int64{3}, DataType: Int64, External: &External{Location: "sub/w.bin", Length: -1}},
			},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		m    *Model
	}{
		{"empty", &Model{}},
		{"full", fullModel()},
	}
	for _, b := range samples() {
		cases = append(cases, struct {
			name string
			m    *Model
		}{b.name, b.m})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := Marshal(tc.m)
			got, err := Unmarshal(data)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.m) {
				t.Errorf("round trip changed the model:\n got %+v\nwant %+v", got, tc.m)
			}
			if again := Marshal(got); !bytes.Equal(again, data) {
				t.Error("Marshal is not deterministic across a round trip")
			}
		})
	}
}

// Helpers that write protobuf by hand, as other writers might.
func vfield(num protowire.Number, v uint64) []byte { return appendVarint(nil, num, v) }
func bfield(num protowire.Number, parts ...[]byte) []byte {
	return appendMessage(nil, num, bytes.Join(parts, nil))
}
func f32field(num protowire.Number, v float32) []byte {
	b := protowire.AppendTag(nil, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, math.Float32bits(v))
}
func sfield(num protowire.Number, s string) []byte { return appendString(nil, num, s) }
func cat(parts ...[]byte) []byte                   { return bytes.Join(parts, nil) }

// modelWith wraps graph fields in a ModelProto.
func modelWith(graphFields ...[]byte) []byte {
	return cat(vfield(fModelIRVersion, 8), bfield(fModelGraph, graphFields...))
}

func rawLE(vals ...any) []byte {
	var b bytes.Buffer
	for _, v := range vals {
		binary.Write(&b, binary.LittleEndian, v)
	}
	return b.Bytes()
}

// TestUnmarshalForeign reads encodings Marshal never writes: raw_data,
// unpacked repeated numbers, unknown fields, groups and other opsets.
func TestUnmarshalForeign(t *testing.T) {
	unknown := cat(
		sfield(1000, "unknown"),
		vfield(999, 5),
		protowire.AppendFixed64(protowire.AppendTag(nil, 998, protowire.Fixed64Type), 1),
		protowire.AppendGroup(protowire.AppendTag(nil, 997, protowire.StartGroupType), 997, vfield(1, 2)),
	)
	tensor := func(name string, dt int, fields ...[]byte) []byte {
		return bfield(fGraphInitializer, cat(sfield(fTensorName, name), vfield(fTensorDataType, uint64(dt)), cat(fields...)))
	}
	data := cat(
		bfield(fModelOpsetImport, sfield(fOpsetDomain, "com.microsoft"), vfield(fOpsetVersion, 1)),
		bfield(fModelOpsetImport, sfield(fOpsetDomain, "ai.onnx"), vfield(fOpsetVersion, 13)),
		unknown,
		modelWith(
			unknown,
			sfield(10, "doc"),
			tensor("rawf", Float, vfield(fTensorDims, 2), vfield(fTensorDims, 2), bfield(fTensorRawData, rawLE(float32(1), float32(-2), float32(0.5), float32(8)))),
			tensor("raw32", Int32, bfield(fTensorDims, protowire.AppendVarint(nil, 2)), bfield(fTensorRawData, rawLE(int32(-3), int32(7)))),
			tensor("raw64", Int64, vfield(fTensorDims, 1), bfield(fTensorRawData, rawLE(int64(-1)))),
			tensor("unpacked", Float, vfield(fTensorDims, 2), f32field(fTensorFloatData, 1.5), f32field(fTensorFloatData, 2.5), unknown),
			tensor("unpacked32", Int32, vfield(fTensorDims, 2), vfield(fTensorInt32Data, uint64(math.MaxUint64)), vfield(fTensorInt32Data, 4)),
			tensor("double", 11, vfield(fTensorDims, 1), bfield(fTensorRawData, rawLE(float64(1)))), // left out
			bfield(fGraphNode,
				sfield(fNodeOpType, "Foo"),
				unknown,
				bfield(fNodeAttribute, sfield(fAttrName, "ints"), vfield(fAttrInts, 3), vfield(fAttrInts, uint64(1<<64-2)), vfield(fAttrType, AttrInts), bfield(6, sfield(2, "a subgraph"))),
				bfield(fNodeAttribute, sfield(fAttrName, "floats"), f32field(fAttrFloats, 0.25), bfield(fAttrFloats, rawLE(float32(4))), vfield(fAttrType, AttrFloats)),
				// A known field number with the wrong wire type is skipped.
				bfield(fNodeAttribute, sfield(fAttrName, "i"), sfield(fAttrI, "not a varint"), vfield(fAttrType, AttrInt)),
			),
			bfield(fGraphInput, sfield(fValueName, "seq"), bfield(fValueType, bfield(4, vfield(1, 1)))), // a sequence type
			bfield(fGraphInput, sfield(fValueName, "dims"), bfield(fValueType, bfield(fTypeTensor,
				vfield(fTensorElem, Float),
				bfield(fTensorShape,
					bfield(fShapeDim, vfield(fDimValue, 4), sfield(fDimParam, "p")), // a oneof: last wins
					bfield(fShapeDim, sfield(3, "denotation")),                      // unknown size
					bfield(fShapeDim, vfield(fDimValue, uint64(1<<64-5))),           // negative: unknown
				),
			))),
		),
	)
	got, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	want := &Model{
		IRVersion:    8,
		OpsetVersion: 13,
		Graph: Graph{
			Nodes: []Node{{OpType: "Foo", Attrs: []Attribute{
				{Name: "ints", Type: AttrInts, Ints: []int64{3, -2}},
				{Name: "floats", Type: AttrFloats, Floats: []float32{0.25, 4}},
				{Name: "i", Type: AttrInt},
			}}},
			Initializers: []Tensor{
				{Name: "rawf", Dims: []int64{2, 2}, DataType: Float, Floats: []float32{1, -2, 0.5, 8}},
				{Name: "raw32", Dims: []int64{2}, DataType: Int32, Int32s: []int32{-3, 7}},
				{Name: "raw64", Dims: []int64{1}, DataType: Int64, Int64s: []int64{-1}},
				{Name: "unpacked", Dims: []int64{2}, DataType: Float, Floats: []float32{1.5, 2.5}},
				{Name: "unpacked32", Dims: []int64{2}, DataType: Int32, Int32s: []int32{-1, 4}},
				{Name: "double", Dims: []int64{1}, DataType: 11},
			},
			Inputs: []ValueInfo{
				{Name: "seq"},
				{Name: "dims", ElemType: Float, Dims: []Dim{{Param: "p"}, {Value: -1}, {Value: -1}}},
			},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if _, err := Unmarshal(nil); err != nil {
		t.Errorf("empty input: %v", err)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	init := func(fields ...[]byte) []byte {
		return modelWith(bfield(fGraphInitializer, cat(sfield(fTensorName, "w"), cat(fields...))))
	}
	cases := []struct {
		name, data, want string
	}{
		{"truncated tag", "\x80", "unexpected EOF"},
		{"field number 0", "\x00\x01", "invalid field number"},
		{"varint overflow", "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "overflow"},
		{"length past end", "\x3a\x05\x0a", "unexpected EOF"},
		{"end group at top", "\x0c", "end group"},
		{"unclosed group", "\x0b\x08\x01", "unexpected EOF"},
		{"bad graph", string(modelWith(bfield(fGraphNode, []byte("\x0a\x09abc")))), "graph: node 0"},
		{"two default opsets", string(cat(
			bfield(fModelOpsetImport, vfield(fOpsetVersion, 13)),
			bfield(fModelOpsetImport, sfield(fOpsetDomain, "ai.onnx"), vfield(fOpsetVersion, 17)))), "default domain"},
		{"packed floats", string(modelWith(bfield(fGraphNode, bfield(fNodeAttribute, bfield(fAttrFloats, []byte("\x00\x00\x80")))))), "floats: packed floats of 3 bytes"},
		{"packed ints", string(modelWith(bfield(fGraphNode, bfield(fNodeAttribute, bfield(fAttrInts, []byte("\x01\x80")))))), "ints"},
		{"raw size", string(init(vfield(fTensorDataType, Float), vfield(fTensorDims, 1), bfield(fTensorRawData, []byte("\x00\x00\x00\x00\x00")))), `tensor "w": raw_data of 5 bytes`},
		{"too few", string(init(vfield(fTensorDataType, Int64), vfield(fTensorDims, 3), vfield(fTensorInt64Data, 1))), "1 elements for dims [3]"},
		{"too many", string(init(vfield(fTensorDataType, Float), bfield(fTensorFloatData, rawLE(float32(1), float32(2))))), "2 elements for dims []"},
		{"overflowing dims", string(init(vfield(fTensorDataType, Float), bfield(fTensorDims, packInt64s([]int64{1 << 40, 1 << 40})), f32field(fTensorFloatData, 1))), "elements for dims"},
		{"negative dim", string(init(vfield(fTensorDataType, Float), vfield(fTensorDims, uint64(1<<64-1)))), "negative dimension"},
		{"raw and typed", string(init(vfield(fTensorDataType, Float), vfield(fTensorDims, 1), f32field(fTensorFloatData, 1), bfield(fTensorRawData, rawLE(float32(1))))), "both raw_data"},
		{"two typed", string(init(vfield(fTensorDataType, Float), vfield(fTensorDims, 1), f32field(fTensorFloatData, 1), vfield(fTensorInt64Data, 1))), "more than one"},
		{"attribute tensor", string(modelWith(bfield(fGraphNode, bfield(fNodeAttribute, bfield(fAttrT, vfield(fTensorDims, 2), f32field(fTensorFloatData, 1)))))), "attribute 0: t: tensor: 1 elements"},
		{"bad shape", string(modelWith(bfield(fGraphOutput, sfield(fValueName, "y"), bfield(fValueType, bfield(fTypeTensor, bfield(fTensorShape, bfield(fShapeDim, []byte("\x08")))))))), `output 0: value "y": shape`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Unmarshal([]byte(tc.data))
			if err == nil {
				t.Fatalf("no error; read %+v", m)
			}
			if !strings.HasPrefix(err.Error(), "onnx: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestUnmarshalTruncated reads every prefix of a model and every one-byte
// corruption of it: each gives a model or an error, never a panic.
func TestUnmarshalTruncated(t *testing.T) {
	data := Marshal(fullModel())
	errs := 0
	for n := range len(data) {
		if _, err := Unmarshal(data[:n]); err != nil {
			errs++
		}
	}
	if errs < len(data)/2 {
		t.Errorf("only %d of %d truncations fail", errs, len(data))
	}
	buf := make([]byte, len(data))
	for i := range data {
		for _, x := range []byte{0x00, 0xff, 0x80, data[i] ^ 0x07} {
			copy(buf, data)
			buf[i] = x
			Unmarshal(buf)
		}
	}
}

// FuzzUnmarshal checks that Unmarshal never panics and that whatever it
// reads, Marshal writes and Unmarshal reads back to the same bytes.
// go test -fuzz FuzzUnmarshal ./models/onnx runs it beyond the seeds.
func FuzzUnmarshal(f *testing.F) {
	f.Add(Marshal(fullModel()))
	for _, b := range samples() {
		f.Add(Marshal(b.m))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Unmarshal(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "onnx: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
			return
		}
		b1 := Marshal(m)
		m2, err := Unmarshal(b1)
		if err != nil {
			t.Fatalf("cannot read what Marshal wrote: %v", err)
		}
		if b2 := Marshal(m2); !bytes.Equal(b1, b2) {
			t.Fatal("Marshal of a re-read model differs")
		}
	})
}
