package web

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/accelnode/accelnode/models/onnx"
)

// ConvModel is the node's model whose convolutional layers the page's
// split learning computes in the browser (split.js): the seed's MNIST
// network, as examples/mnist/model exports it (make demo writes
// bin/mnist.onnx).
const ConvModel = "mnist"

// convParams are the conv layers' initializers, in the order split.js's
// convFromBytes reads them (and splitnet.ConvWeights lays them out).
var convParams = []struct {
	name string
	dims []int64
}{
	{"conv1.w", []int64{16, 1, 5, 5}},
	{"conv1.b", []int64{16}},
	{"conv2.w", []int64{32, 16, 5, 5}},
	{"conv2.b", []int64{32}},
}

// ConvLen is the values of the conv layers: 16·25 + 16 + 32·16·25 + 32.
const ConvLen = 13248

// ConvBytes reads the conv layers' weights from an ONNX model of the MNIST
// network: its float initializers conv1.w [16,1,5,5], conv1.b [16],
// conv2.w [32,16,5,5] and conv2.b [32], concatenated in that order as
// ConvLen little-endian f32, the bytes split.js's convFromBytes takes. An
// error says which initializer is missing or misshapen.
func ConvBytes(model []byte) ([]byte, error) {
	m, err := onnx.Unmarshal(model)
	if err != nil {
		return nil, fmt.Errorf("not a valid ONNX model: %w", err)
	}
	byName := map[string]*onnx.Tensor{}
	for i := range m.Graph.Initializers {
		t := &m.Graph.Initializers[i]
		byName[t.Name] = t
	}
	out := make([]byte, 0, 4*ConvLen)
	for _, p := range convParams {
		t := byName[p.name]
		switch {
		case t == nil:
			return nil, fmt.Errorf("it has no initializer %s %v: the page's split learning wants the MNIST network of examples/mnist/model", p.name, p.dims)
		case t.DataType != onnx.Float || !slices.Equal(t.Dims, p.dims):
			return nil, fmt.Errorf("its initializer %s is of type %d and shape %v, want float %v", p.name, t.DataType, t.Dims, p.dims)
		}
		for _, v := range t.Floats {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
		}
	}
	if len(out) != 4*ConvLen {
		return nil, fmt.Errorf("its conv initializers hold %d values, want %d", len(out)/4, ConvLen)
	}
	return out, nil
}
