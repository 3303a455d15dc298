package onnx

// samples are small models of the kinds the node writes and reads, for the
// codec's round-trip and fuzz tests: a single op with symbolic dimensions
// and int attributes, values of unknown rank, and a multi-node graph with
// float and int64 initializers and rank-0 values.
func samples() []struct {
	name string
	m    *Model
} {
	model := func(g Graph) *Model {
		return &Model{IRVersion: IRVersion, OpsetVersion: Opset, ProducerName: "accelnode", Graph: g}
	}
	float := func(name string, dims []Dim) ValueInfo { return ValueInfo{Name: name, ElemType: Float, Dims: dims} }
	return []struct {
		name string
		m    *Model
	}{
		{"gemm", model(Graph{
			Name:    "gemm",
			Nodes:   []Node{{Name: "Gemm", OpType: "Gemm", Inputs: []string{"A", "B"}, Outputs: []string{"Y"}, Attrs: []Attribute{IntAttr("transA", 0), IntAttr("transB", 1)}}},
			Inputs:  []ValueInfo{float("A", Sym("m", "k")), float("B", Sym("n", "k"))},
			Outputs: []ValueInfo{float("Y", Sym("m", "n"))},
		})},
		{"conv", model(Graph{
			Name: "conv",
			Nodes: []Node{{Name: "Conv", OpType: "Conv", Inputs: []string{"X", "W", "B"}, Outputs: []string{"Y"}, Attrs: []Attribute{
				IntsAttr("strides", 2, 1), IntsAttr("pads", 1, 0, 2, 1), IntsAttr("dilations", 1, 2), IntAttr("group", 1)}}},
			Inputs:  []ValueInfo{float("X", Sym("n", "c", "h", "w")), float("W", Sym("oc", "cg", "kh", "kw")), float("B", Sym("oc"))},
			Outputs: []ValueInfo{float("Y", Sym("n", "oc", "oh", "ow"))},
		})},
		{"softmax_any_rank", model(Graph{
			Name:    "softmax",
			Nodes:   []Node{{Name: "Softmax", OpType: "Softmax", Inputs: []string{"X"}, Outputs: []string{"Y"}, Attrs: []Attribute{IntAttr("axis", -1)}}},
			Inputs:  []ValueInfo{float("X", nil)},
			Outputs: []ValueInfo{float("Y", nil)},
		})},
		{"sum_of_squares", model(Graph{
			Name: "sum_of_squares",
			Nodes: []Node{
				{Name: "Mul_0", OpType: "Mul", Inputs: []string{"X", "X"}, Outputs: []string{"Mul_0"}},
				{Name: "Mul_1", OpType: "Mul", Inputs: []string{"Mul_0", "scale"}, Outputs: []string{"Mul_1"}},
				{Name: "s", OpType: "ReduceSum", Inputs: []string{"Mul_1", "axes"}, Outputs: []string{"s"}, Attrs: []Attribute{IntAttr("keepdims", 0)}},
			},
			Inputs:  []ValueInfo{float("X", []Dim{{Param: "n"}, {Value: 2}})},
			Outputs: []ValueInfo{float("s", []Dim{})},
			Initializers: []Tensor{
				{Name: "scale", DataType: Float, Floats: []float32{0.5}},
				{Name: "axes", Dims: []int64{2}, DataType: Int64, Int64s: []int64{0, 1}},
			},
		})},
	}
}
