// Package onnx reads and writes ONNX models (the ModelProto protobuf) in
// plain Go, with google.golang.org/protobuf/encoding/protowire and no
// generated code, with small helpers for building attributes and symbolic
// dimensions.
//
// Only what the node uses is modelled: a graph's nodes, inputs, outputs and
// initializers, attributes of the common kinds, and float32, int32 and int64
// tensors. Unknown fields are skipped when reading, so any valid model can be
// read for its inputs and outputs; Marshal writes only what the types hold.
package onnx

// Element types (TensorProto.DataType).
const (
	Float = 1
	Int32 = 6
	Int64 = 7
	Bool  = 9
)

// Versions written by Marshal: IR version 8 and the default-domain opset 17
// are read by every ONNX Runtime since 1.13.
const (
	IRVersion = 8
	Opset     = 17
)

// Model is a ModelProto.
type Model struct {
	IRVersion    int64
	OpsetVersion int64 // of the default domain ""
	ProducerName string
	Graph        Graph
}

// Graph is a GraphProto.
type Graph struct {
	Name         string
	Nodes        []Node
	Inputs       []ValueInfo
	Outputs      []ValueInfo
	Initializers []Tensor
}

// Node is a NodeProto: one operator application.
type Node struct {
	Name    string
	OpType  string
	Domain  string
	Inputs  []string // "" marks an omitted optional input
	Outputs []string
	Attrs   []Attribute
}

// Attr returns the node's attribute called name, if it has one.
func (n *Node) Attr(name string) (Attribute, bool) {
	for _, a := range n.Attrs {
		if a.Name == name {
			return a, true
		}
	}
	return Attribute{}, false
}

// Attribute kinds (AttributeProto.AttributeType).
const (
	AttrFloat   = 1
	AttrInt     = 2
	AttrString  = 3
	AttrTensor  = 4
	AttrFloats  = 6
	AttrInts    = 7
	AttrStrings = 8
)

// Attribute is an AttributeProto of one of the kinds above.
type Attribute struct {
	Name   string
	Type   int
	F      float32
	I      int64
	S      string
	T      *Tensor
	Floats []float32
	Ints   []int64
}

// Dim is one dimension of a value's shape: a fixed size, or a named
// symbolic one when Param is set.
type Dim struct {
	Value int64
	Param string
}

// ValueInfo is a ValueInfoProto of a tensor type.
type ValueInfo struct {
	Name     string
	ElemType int
	// Dims is nil for a value of unknown rank.
	Dims []Dim
}

// Tensor is a TensorProto holding float32, int32 or int64 data.
type Tensor struct {
	Name     string
	Dims     []int64
	DataType int
	Floats   []float32
	Int32s   []int32
	Int64s   []int64
	// External is set, and the data fields are empty, for a tensor whose
	// data lies in a file beside the model (data_location EXTERNAL);
	// Inline reads it into the model.
	External *External
}

// External says where a tensor's data lies outside the model: Length bytes
// at Offset of the file Location, a path relative to the model's
// directory. Length is -1 where the model leaves it out; the tensor's
// dims then say how many bytes it takes.
type External struct {
	Location string
	Offset   int64
	Length   int64
}
