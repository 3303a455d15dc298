package conformance

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/accelnode/accelnode/accel"
)

// Execute uploads in (one tensor per c.Op.Inputs, as c.Inputs returns them
// or a Part holds them) to s, calls c's operation with c.Params through
// Session.Run c.Steps times in a row on the same tensors, and returns the
// results read back: the new outputs, in the order of c.Op.Outputs (I32
// set for an i32 output, F32 for the others), then
// the new values of the in-place inputs, then the scalar (shape [1]) where
// the call asks for it. Every tensor it creates is freed before it returns.
func Execute(ctx context.Context, s *accel.Session, c Case, in []Tensor) (_ []Tensor, err error) {
	x, err := upload(s, c.Op, in)
	if err != nil {
		return nil, err
	}
	defer func() {
		if ferr := x.free(); err == nil {
			err = ferr
		}
	}()
	var got []Tensor
	for step := range c.steps() {
		if got, err = x.run(ctx, c.Params); err != nil {
			if c.steps() > 1 {
				err = fmt.Errorf("step %d of %d: %w", step+1, c.steps(), err)
			}
			return nil, err
		}
	}
	return got, nil
}

// execution is a call's input tensors in a session.
type execution struct {
	s       *accel.Session
	op      *accel.Op
	in      []Tensor        // what was uploaded, for names and shapes
	tensors []*accel.Tensor // nil for an absent optional input
}

// upload creates a tensor for each input that is present and writes its
// data.
func upload(s *accel.Session, op *accel.Op, in []Tensor) (*execution, error) {
	if len(in) != len(op.Inputs) {
		return nil, fmt.Errorf("%d inputs for %s, which takes %d", len(in), op, len(op.Inputs))
	}
	x := &execution{s: s, op: op, in: in, tensors: make([]*accel.Tensor, len(in))}
	for i, t := range in {
		if t.Absent() {
			continue
		}
		dt := accel.F32
		if t.I32 != nil {
			dt = accel.I32
		}
		tensor, err := s.NewTensor(dt, t.Shape)
		if err != nil {
			x.free()
			return nil, fmt.Errorf("allocate %s: %w", t.Name, err)
		}
		x.tensors[i] = tensor
		if err := x.write(i, t); err != nil {
			x.free()
			return nil, err
		}
	}
	return x, nil
}

// write overwrites input i with t's data.
func (x *execution) write(i int, t Tensor) error {
	data := accel.EncodeFloat32(t.F32)
	if t.I32 != nil {
		data = accel.EncodeInt32(t.I32)
	}
	if err := x.s.Write(x.tensors[i], 0, data); err != nil {
		return fmt.Errorf("write %s: %w", t.Name, err)
	}
	return nil
}

// read reads input i back, in its dtype.
func (x *execution) read(i int) (Tensor, error) {
	t := x.tensors[i]
	b := make([]byte, t.Bytes())
	if err := x.s.Read(t, 0, b); err != nil {
		return Tensor{}, fmt.Errorf("read %s: %w", x.in[i].Name, err)
	}
	out := Tensor{Name: x.in[i].Name, Shape: t.Shape()}
	if t.DType() == accel.I32 {
		out.I32 = decodeInt32(b)
	} else {
		out.F32 = accel.DecodeFloat32(b)
	}
	return out, nil
}

// run calls the operation once and returns its results; the outputs are
// read and freed.
func (x *execution) run(ctx context.Context, p any) ([]Tensor, error) {
	outs, scalar, err := x.s.Run(ctx, x.op, p, x.tensors...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", x.op, err)
	}
	var res []Tensor
	var readErr error
	for i, t := range outs {
		r := Tensor{Name: x.op.Outputs[i], Shape: t.Shape()}
		var err error
		if x.op.OutputDType(i) == accel.I32 {
			b := make([]byte, t.Bytes())
			if err = x.s.Read(t, 0, b); err == nil {
				r.I32 = decodeInt32(b)
			}
		} else {
			r.F32, err = x.s.Float32(t)
		}
		if err != nil && readErr == nil {
			readErr = fmt.Errorf("read %s: %w", x.op.Outputs[i], err)
		}
		res = append(res, r)
		if err := x.s.Free(t); err != nil && readErr == nil {
			readErr = fmt.Errorf("free %s: %w", x.op.Outputs[i], err)
		}
	}
	if readErr != nil {
		return nil, readErr
	}
	for i, spec := range x.op.Inputs {
		if spec.InPlace {
			t, err := x.read(i)
			if err != nil {
				return nil, err
			}
			res = append(res, t)
		}
	}
	if x.op.WantsScalar(p) {
		res = append(res, Tensor{Name: x.op.Scalar, Shape: []int{1}, F32: []float32{scalar}})
	}
	return res, nil
}

// free releases the input tensors.
func (x *execution) free() error {
	var first error
	for i, t := range x.tensors {
		if t == nil {
			continue
		}
		if err := x.s.Free(t); err != nil && first == nil {
			first = fmt.Errorf("free %s: %w", x.in[i].Name, err)
		}
		x.tensors[i] = nil
	}
	return first
}

// decodeInt32 reads little-endian i32 elements.
func decodeInt32(b []byte) []int32 {
	v := make([]int32, len(b)/4)
	for i := range v {
		v[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// Part is a smaller call whose first result must equal part of a case's
// first result: some rows of a matmul, a softmax or an add, one image of a
// conv2d or a maxpool2d. Batch invariance is that equality, bit for bit.
type Part struct {
	Name   string // "rows 0..0", "image 2"
	Inputs []Tensor
	// The part's first result equals the case's first result from element
	// Offset on.
	Offset int
}

// Parts returns the batch-invariance parts of c with inputs in (as
// c.Inputs returned them); none where the operation has no batch or the
// case runs several steps.
func Parts(c Case, in []Tensor) []Part {
	o := operations[c.Op]
	if o == nil || o.parts == nil || c.steps() > 1 {
		return nil
	}
	return o.parts(c.Params, in)
}

// rowSubsets lists row ranges [lo, hi) of m rows to recompute alone: the
// first row, the last row and a block from the middle.
func rowSubsets(m int) [][2]int {
	if m < 2 {
		return nil
	}
	subs := [][2]int{{0, 1}, {m - 1, m}}
	if m >= 4 {
		subs = append(subs, [2]int{m / 4, m/4 + m/2})
	}
	return subs
}
