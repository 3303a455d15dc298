package ort

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/internal/hostmem"
	"github.com/accelnode/accelnode/models/onnx"
)

// modelInfo is what a model's session needs to know of its declared
// inputs and outputs, in the order of the session's names.
type modelInfo struct {
	// scalarIn marks inputs declared rank 0: they take a one-element
	// tensor as a scalar.
	scalarIn []bool
	// scalarOut marks outputs of rank 0, declared or found at run time:
	// their values are allocated before the run, because the binding
	// cannot take a rank-0 output that ONNX Runtime allocated.
	scalarOut []atomic.Bool
}

// newModelInfo reads the declared inputs and outputs of model and refuses
// outputs that are not f32, which accel.HostTensor cannot hold.
func newModelInfo(model []byte, inputNames, outputNames []string) (*modelInfo, error) {
	m, err := onnx.Unmarshal(model)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", accel.ErrInvalid, err)
	}
	find := func(vs []onnx.ValueInfo, name string) (onnx.ValueInfo, bool) {
		i := slices.IndexFunc(vs, func(v onnx.ValueInfo) bool { return v.Name == name })
		if i < 0 {
			return onnx.ValueInfo{}, false
		}
		return vs[i], true
	}
	rank0 := func(v onnx.ValueInfo) bool { return v.Dims != nil && len(v.Dims) == 0 }
	info := &modelInfo{scalarIn: make([]bool, len(inputNames)), scalarOut: make([]atomic.Bool, len(outputNames))}
	for i, name := range inputNames {
		if v, ok := find(m.Graph.Inputs, name); ok {
			info.scalarIn[i] = rank0(v)
		}
	}
	for i, name := range outputNames {
		v, ok := find(m.Graph.Outputs, name)
		if !ok {
			continue
		}
		if v.ElemType != 0 && v.ElemType != onnx.Float {
			return nil, fmt.Errorf("%w: output %s has element type %d, not f32", accel.ErrUnsupported, name, v.ElemType)
		}
		info.scalarOut[i].Store(rank0(v))
	}
	return info, nil
}

// RunONNX runs a whole model (accel.ONNXRunner) in its session, created on
// the first run and kept in the model cache under key and the names.
// Inputs reach ONNX Runtime as they are stored, f32 or i32, without
// copies; an input the model declares rank 0 takes a one-element tensor.
// Output shapes are known only once the model has run, so ONNX Runtime
// allocates the outputs and they are copied out; a rank-0 output comes
// back with shape [1].
//
// Errors name neither the backend nor the model: the caller does.
func (b *Backend) RunONNX(ctx context.Context, key string, model []byte, inputNames, outputNames []string, inputs []*accel.Tensor) ([]accel.HostTensor, error) {
	if b.reason != "" {
		return nil, fmt.Errorf("%w: %s is unavailable: %s", accel.ErrDevice, b.name, b.reason)
	}
	if len(inputs) != len(inputNames) {
		return nil, fmt.Errorf("%w: %d inputs for %d names", accel.ErrInvalid, len(inputs), len(inputNames))
	}
	if len(inputs) == 0 {
		// The Go binding indexes the first input unchecked, and would
		// panic.
		return nil, fmt.Errorf("a model without inputs is %w on %s", accel.ErrUnsupported, b.name)
	}
	// The names are part of the key: a session answers for the inputs and
	// outputs it was created with.
	cacheKey := strings.Join([]string{key, strings.Join(inputNames, ","), strings.Join(outputNames, ",")}, "\x00")
	e, err := b.models.acquire(ctx, cacheKey, func() (created, error) {
		info, err := newModelInfo(model, inputNames, outputNames)
		if err != nil {
			return created{}, err
		}
		s, err := b.newSession(model, inputNames, outputNames)
		if err != nil {
			return created{}, fmt.Errorf("%w: create session: %w", accel.ErrInvalid, err)
		}
		return created{session: s, model: info}, nil
	})
	if err != nil {
		return nil, err
	}
	defer b.models.release(e)

	in := make(values, 0, len(inputs))
	defer in.destroy()
	for i, t := range inputs {
		v, err := inputValue(t, e.model.scalarIn[i])
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", inputNames[i], err)
		}
		in = append(in, v)
	}
	out, err := b.runModel(ctx, e, in, outputNames)
	if err != nil {
		return nil, err
	}
	defer out.destroy()
	results := make([]accel.HostTensor, len(out))
	for i, v := range out {
		switch v := v.(type) {
		case *ort.Scalar[float32]:
			results[i] = accel.HostTensor{Shape: []int{1}, Data: []float32{v.GetData()}}
		case *ort.Tensor[float32]:
			shape := make([]int, len(v.GetShape()))
			for d, n := range v.GetShape() {
				shape[d] = int(n)
			}
			// The binding copied ONNX Runtime's output into Go memory,
			// which outlives the value.
			results[i] = accel.HostTensor{Shape: shape, Data: v.GetData()}
		default:
			return nil, fmt.Errorf("%w: output %s is %T, not an f32 tensor", accel.ErrUnsupported, outputNames[i], v)
		}
	}
	return results, nil
}

// runModel runs a model's session and returns its outputs. Where an output
// of undeclared rank turns out to be rank 0, the binding fails to convert
// it (and leaks the outputs after it, once); the output is then marked
// scalar for this session and the run repeated.
func (b *Backend) runModel(ctx context.Context, e *cacheEntry, in values, outputNames []string) (values, error) {
	for {
		out := make(values, len(outputNames))
		for i := range out {
			if !e.model.scalarOut[i].Load() {
				continue
			}
			s, err := ort.NewEmptyScalar[float32]()
			if err != nil {
				out.destroy()
				return nil, fmt.Errorf("%w: output %s: %w", accel.ErrDevice, outputNames[i], err)
			}
			out[i] = s
		}
		err := runSession(ctx, e.session, in, out, func(err error) error {
			// The inputs were checked against the declared ones, so what
			// ONNX Runtime still refuses is the data for this model.
			return fmt.Errorf("%w: onnx runtime: %w", accel.ErrInvalid, err)
		})
		if err == nil {
			return out, nil
		}
		failed := slices.IndexFunc(out, func(v ort.Value) bool { return v != nil && isNil(v) })
		out.destroy()
		if !errors.Is(err, ort.ZeroShapeLengthError) || failed < 0 || e.model.scalarOut[failed].Load() {
			return nil, err
		}
		e.model.scalarOut[failed].Store(true)
	}
}

// inputValue wraps a tensor for a model: f32 or i32 data in place, or a
// scalar where the model declares rank 0 and the tensor has one element.
func inputValue(t *accel.Tensor, scalar bool) (ort.Value, error) {
	scalar = scalar && t.Len() == 1
	switch t.DType() {
	case accel.F32:
		if scalar {
			return ort.NewScalar(hostmem.F32(t)[0])
		}
		return ort.NewTensor(dims(t.Shape()), hostmem.F32(t))
	case accel.I32:
		if scalar {
			return ort.NewScalar(hostmem.I32(t)[0])
		}
		return ort.NewTensor(dims(t.Shape()), hostmem.I32(t))
	}
	return nil, fmt.Errorf("%w: dtype %s", accel.ErrUnsupported, t.DType())
}
