package ort

import (
	"context"
	"fmt"
	"slices"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/models"
)

var _ models.Runner = (*Backend)(nil)

// RunONNX runs a whole model, with one session per model kept for the
// process. Output shapes are known only once it has run, so ONNX Runtime
// allocates the outputs and they are copied out.
func (b *Backend) RunONNX(ctx context.Context, key string, model []byte, inputNames, outputNames []string, inputs []*accel.Tensor) ([]models.Output, error) {
	s, err := b.session("model "+key, func() []byte { return model }, inputNames, outputNames)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", accel.ErrInvalid, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ort: model: interrupted: %w", err)
	}
	in := make([]ort.Value, len(inputs))
	out := make([]ort.Value, len(outputNames))
	defer func() {
		for _, v := range slices.Concat(in, out) {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for i, t := range inputs {
		if in[i], err = tensorValue(t).ortValue(); err != nil {
			return nil, fmt.Errorf("ort: model input %s: %w", inputNames[i], err)
		}
	}
	opts, err := ort.NewRunOptions()
	if err != nil {
		return nil, fmt.Errorf("ort: model: run options: %w", err)
	}
	defer opts.Destroy()
	stop := context.AfterFunc(ctx, func() { opts.Terminate() })
	defer stop()
	if err := s.RunWithOptions(in, out, opts); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("ort: model: interrupted: %w", ctx.Err())
		}
		// Shapes are checked against the declared inputs before, so what
		// ONNX Runtime still refuses is the guest's data for this model.
		return nil, fmt.Errorf("%w: onnx runtime: %w", accel.ErrInvalid, err)
	}
	results := make([]models.Output, len(out))
	for i, v := range out {
		t, ok := v.(*ort.Tensor[float32])
		if !ok {
			return nil, fmt.Errorf("%w: model output %s is %T, not an f32 tensor", accel.ErrUnsupported, outputNames[i], v)
		}
		shape := t.GetShape()
		dims := make([]int, len(shape))
		for d, n := range shape {
			dims[d] = int(n)
		}
		if len(dims) == 0 { // a scalar output becomes a one-element tensor
			dims = []int{1}
		}
		results[i] = models.Output{Shape: dims, Data: slices.Clone(t.GetData())}
	}
	return results, nil
}
