package workload

import (
	"context"
	"fmt"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/models"
)

// Bound is a point's inputs resident in a session, ready to run again and
// again: the backend called directly, with no guest in between.
type Bound struct {
	s      *accel.Session
	inputs []*accel.Tensor
	run    func(ctx context.Context) ([]*accel.Tensor, error)
}

// Bind uploads the point's inputs to s. model is the CNN for model
// workloads, loaded once by the caller; nil otherwise.
func Bind(s *accel.Session, p Point, model *models.Model) (*Bound, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b := &Bound{s: s}
	for _, t := range p.Inputs() {
		var x *accel.Tensor
		var err error
		if t.I32 != nil {
			x, err = s.FromInt32(t.I32, t.Shape...)
		} else {
			x, err = s.FromFloat32(t.F32, t.Shape...)
		}
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("upload %s: %w", t.Name, err)
		}
		b.inputs = append(b.inputs, x)
	}
	in := b.inputs
	one := func(t *accel.Tensor, err error) ([]*accel.Tensor, error) {
		if err != nil {
			return nil, err
		}
		return []*accel.Tensor{t}, nil
	}
	switch p.Op {
	case "matmul":
		b.run = func(ctx context.Context) ([]*accel.Tensor, error) {
			return one(s.MatMul(ctx, in[0], in[1], accel.MatMulParams{}))
		}
	case "conv2d":
		params := p.Conv2DParams()
		b.run = func(ctx context.Context) ([]*accel.Tensor, error) {
			return one(s.Conv2D(ctx, in[0], in[1], in[2], params))
		}
	case "tsne_step":
		st := accel.TSNEState{RowPtr: in[0], Cols: in[1], Vals: in[2], Y: in[3], Update: in[4], Gains: in[5]}
		params := p.TSNEParams()
		b.run = func(ctx context.Context) ([]*accel.Tensor, error) {
			_, err := s.TSNEStep(ctx, st, params)
			return nil, err
		}
	case "model":
		if model == nil {
			b.Close()
			return nil, fmt.Errorf("%s: no model given", p.Name)
		}
		b.run = func(ctx context.Context) ([]*accel.Tensor, error) { return model.Run(ctx, s, in) }
	default:
		b.Close()
		return nil, fmt.Errorf("%s: unknown op %q", p.Name, p.Op)
	}
	return b, nil
}

// Run computes the point once and frees what it produced.
func (b *Bound) Run(ctx context.Context) error {
	outs, err := b.run(ctx)
	for _, t := range outs {
		b.s.Free(t)
	}
	return err
}

// Close frees the inputs.
func (b *Bound) Close() {
	for _, t := range b.inputs {
		b.s.Free(t)
	}
	b.inputs = nil
}
