package runner

import (
	"context"
	"fmt"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance"
)

// Execute uploads the inputs to s, runs op with params on them, and returns
// the outputs read back: one tensor named "y" (for matmul "c"), or for
// tsne_step the new "y", "update" and "gains" and the "kl" divergence (one
// element). The tensors it creates are freed before it returns.
func Execute(ctx context.Context, s *accel.Session, op string, params any, in []Tensor) (_ []Tensor, err error) {
	var live []*accel.Tensor
	defer func() {
		for _, t := range live {
			if ferr := s.Free(t); ferr != nil && err == nil {
				err = ferr
			}
		}
	}()
	ts := make([]*accel.Tensor, len(in))
	for i, x := range in {
		dt, data := accel.F32, []byte(nil)
		if x.I32 != nil {
			dt, data = accel.I32, accel.EncodeInt32(x.I32)
		} else {
			data = accel.EncodeFloat32(x.F32)
		}
		t, err := s.NewTensor(dt, x.Shape)
		if err != nil {
			return nil, fmt.Errorf("allocate %s: %w", x.Name, err)
		}
		live = append(live, t)
		if err := s.Write(t, 0, data); err != nil {
			return nil, fmt.Errorf("write %s: %w", x.Name, err)
		}
		ts[i] = t
	}
	need := func(n int) error {
		if len(in) != n {
			return fmt.Errorf("%s takes %d inputs, got %d", op, n, len(in))
		}
		return nil
	}
	read := func(name string, t *accel.Tensor) (Tensor, error) {
		v, err := s.Float32(t)
		if err != nil {
			return Tensor{}, fmt.Errorf("read %s: %w", name, err)
		}
		return Tensor{Name: name, Shape: t.Shape(), F32: v}, nil
	}
	one := func(name string, t *accel.Tensor, err error) ([]Tensor, error) {
		if err != nil {
			return nil, err
		}
		live = append(live, t)
		out, err := read(name, t)
		if err != nil {
			return nil, err
		}
		return []Tensor{out}, nil
	}

	switch op {
	case OpMatMul:
		p, ok := params.(accel.MatMulParams)
		if err := need(2); err != nil || !ok {
			return nil, badCall(op, params, err)
		}
		t, err := s.MatMul(ctx, ts[0], ts[1], p)
		return one("c", t, err)
	case OpConv2D:
		p, ok := params.(accel.Conv2DParams)
		if !ok || len(in) < 2 || len(in) > 3 {
			return nil, badCall(op, params, fmt.Errorf("conv2d takes 2 or 3 inputs, got %d", len(in)))
		}
		var bias *accel.Tensor
		if len(in) == 3 {
			bias = ts[2]
		}
		t, err := s.Conv2D(ctx, ts[0], ts[1], bias, p)
		return one("y", t, err)
	case OpAddBias:
		p, ok := params.(AddBiasParams)
		if err := need(2); err != nil || !ok {
			return nil, badCall(op, params, err)
		}
		t, err := s.AddBias(ctx, ts[0], ts[1], p.Axis)
		return one("y", t, err)
	case OpRelu:
		if err := need(1); err != nil {
			return nil, err
		}
		t, err := s.Relu(ctx, ts[0])
		return one("y", t, err)
	case OpMaxPool2D:
		p, ok := params.(accel.Pool2DParams)
		if err := need(1); err != nil || !ok {
			return nil, badCall(op, params, err)
		}
		t, err := s.MaxPool2D(ctx, ts[0], p)
		return one("y", t, err)
	case OpSoftmax:
		if err := need(1); err != nil {
			return nil, err
		}
		t, err := s.Softmax(ctx, ts[0])
		return one("y", t, err)
	case OpTSNEStep:
		p, ok := params.(accel.TSNEParams)
		if err := need(6); err != nil || !ok {
			return nil, badCall(op, params, err)
		}
		st := accel.TSNEState{RowPtr: ts[0], Cols: ts[1], Vals: ts[2], Y: ts[3], Update: ts[4], Gains: ts[5]}
		kl, err := s.TSNEStep(ctx, st, p)
		if err != nil {
			return nil, err
		}
		var outs []Tensor
		for _, o := range []struct {
			name string
			t    *accel.Tensor
		}{{"y", st.Y}, {"update", st.Update}, {"gains", st.Gains}} {
			v, err := read(o.name, o.t)
			if err != nil {
				return nil, err
			}
			outs = append(outs, v)
		}
		return append(outs, Tensor{Name: "kl", Shape: []int{1}, F32: []float32{kl}}), nil
	}
	return nil, fmt.Errorf("unknown operation %q", op)
}

func badCall(op string, params any, err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("%s cannot take parameters %T", op, params)
}

// Part is a smaller call whose output must equal part of a case's output:
// some rows of a matmul or a softmax, one image of a conv2d or maxpool2d.
// Batch invariance is that equality, bit for bit.
type Part struct {
	Name   string // "rows 0..0", "image 2"
	Inputs []Tensor
	// The part's first output equals the case's first output from element
	// Offset on.
	Offset int
}

// Parts returns the batch-invariance parts of a case with inputs in (as
// c.Inputs returned them), or none where the operation has no batch.
func Parts(c Case, in []Tensor) []Part {
	var parts []Part
	switch c.Op {
	case OpMatMul:
		p := c.Params.(accel.MatMulParams)
		m, k, n, err := accel.MatMulDims(in[0].Shape, in[1].Shape, p)
		if err != nil {
			return nil
		}
		for _, rs := range conformance.RowSubsets(m) {
			lo, hi := rs[0], rs[1]
			a := in[0]
			a.F32 = conformance.RowsOf(a.F32, m, k, p.TransA, lo, hi)
			if p.TransA {
				a.Shape = []int{k, hi - lo}
			} else {
				a.Shape = []int{hi - lo, k}
			}
			parts = append(parts, Part{Name: fmt.Sprintf("rows %d..%d", lo, hi-1), Inputs: []Tensor{a, in[1]}, Offset: lo * n})
		}
	case OpSoftmax:
		x := in[0]
		l := x.Shape[len(x.Shape)-1]
		rows := len(x.F32) / l
		for _, rs := range conformance.RowSubsets(rows) {
			lo, hi := rs[0], rs[1]
			sub := Tensor{Name: x.Name, Shape: []int{hi - lo, l}, F32: slices.Clone(x.F32[lo*l : hi*l])}
			parts = append(parts, Part{Name: fmt.Sprintf("rows %d..%d", lo, hi-1), Inputs: []Tensor{sub}, Offset: lo * l})
		}
	case OpConv2D, OpMaxPool2D:
		x := in[0]
		n := x.Shape[0]
		if n < 2 {
			return nil
		}
		var outShape []int
		var err error
		if c.Op == OpConv2D {
			var bs []int
			if len(in) > 2 {
				bs = in[2].Shape
			}
			outShape, err = accel.Conv2DShape(x.Shape, in[1].Shape, bs, c.Params.(accel.Conv2DParams))
		} else {
			outShape, err = accel.Pool2DShape(x.Shape, c.Params.(accel.Pool2DParams))
		}
		if err != nil {
			return nil
		}
		per, outPer := len(x.F32)/n, elements(outShape)/n
		last := x
		last.Shape = append([]int{1}, x.Shape[1:]...)
		last.F32 = slices.Clone(x.F32[(n-1)*per:])
		part := Part{Name: fmt.Sprintf("image %d", n-1), Inputs: append([]Tensor{last}, in[1:]...), Offset: (n - 1) * outPer}
		parts = append(parts, part)
	}
	return parts
}
