package ort

import (
	"context"
	"fmt"
	"reflect"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/internal/hostmem"
)

// interrupted wraps the reason a context ended.
func interrupted(ctx context.Context) error {
	return fmt.Errorf("interrupted: %w", ctx.Err())
}

// values are the ONNX Runtime values of one run, destroyed together.
type values []ort.Value

// destroy destroys every value, skipping the typed nils the binding leaves
// where it failed to convert an output.
func (vs values) destroy() {
	for _, v := range vs {
		if !isNil(v) {
			v.Destroy()
		}
	}
}

// isNil reports whether v holds no value, or a nil pointer in an interface.
func isNil(v ort.Value) bool {
	if v == nil {
		return true
	}
	r := reflect.ValueOf(v)
	return r.Kind() == reflect.Pointer && r.IsNil()
}

// dims converts a shape for ONNX Runtime.
func dims(shape []int) ort.Shape {
	d := make(ort.Shape, len(shape))
	for i, n := range shape {
		d[i] = int64(n)
	}
	return d
}

// wrap makes ONNX Runtime values of f32 data with the shapes given,
// without copying: ONNX Runtime reads and writes the slices in place.
func wrap(data [][]float32, shapes [][]int) (values, error) {
	vs := make(values, 0, len(data))
	for i, d := range data {
		v, err := ort.NewTensor(dims(shapes[i]), d)
		if err != nil {
			vs.destroy()
			return nil, fmt.Errorf("wrap a tensor of shape %s: %w", accel.ShapeString(shapes[i]), err)
		}
		vs = append(vs, v)
	}
	return vs, nil
}

// tensors wraps tensors in host memory with their own shapes.
func tensors(ts ...*accel.Tensor) (values, error) {
	data, shapes := make([][]float32, len(ts)), make([][]int, len(ts))
	for i, t := range ts {
		data[i], shapes[i] = hostmem.F32(t), t.Shape()
	}
	return wrap(data, shapes)
}

// runSession runs s once. Every run carries run options that are
// terminated when ctx ends, so a deadline stops it at ONNX Runtime's next
// check, between kernels or inside the long ones. fail wraps the error of
// a run that failed on its own.
func runSession(ctx context.Context, s *ort.DynamicAdvancedSession, in, out []ort.Value, fail func(error) error) error {
	if ctx.Err() != nil {
		return interrupted(ctx)
	}
	opts, err := ort.NewRunOptions()
	if err != nil {
		return fmt.Errorf("%w: run options: %w", accel.ErrDevice, err)
	}
	// Terminate may still be running when the run returns; the options
	// are destroyed only after it has finished.
	terminated := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(terminated)
		opts.Terminate()
	})
	defer func() {
		if !stop() {
			<-terminated
		}
		opts.Destroy()
	}()
	if err := s.RunWithOptions(in, out, opts); err != nil {
		if ctx.Err() != nil {
			return interrupted(ctx)
		}
		return fail(err)
	}
	return nil
}

// deviceFailure classifies a failed run of an operation's graph: the
// Session checked the call, so the fault is ONNX Runtime's.
func deviceFailure(err error) error { return fmt.Errorf("%w: %w", accel.ErrDevice, err) }

// runOp runs an operation's session on inputs, writing into outputs whose
// shapes are the ones the graph produces, and destroys the values.
func runOp(ctx context.Context, s *ort.DynamicAdvancedSession, in, out values) error {
	defer in.destroy()
	defer out.destroy()
	return runSession(ctx, s, in, out, deviceFailure)
}
