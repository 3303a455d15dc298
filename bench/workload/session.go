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
	if p.Op == nil && model == nil {
		return nil, fmt.Errorf("%s: no model given", p.Name)
	}
	b := &Bound{s: s}
	err := p.EachInput(func(t Tensor) error {
		var x *accel.Tensor
		var err error
		if t.I32 != nil {
			x, err = s.FromInt32(t.I32, t.Shape...)
		} else {
			x, err = s.FromFloat32(t.F32, t.Shape...)
		}
		if err != nil {
			return fmt.Errorf("upload %s: %w", t.Name, err)
		}
		b.inputs = append(b.inputs, x)
		return nil
	})
	if err != nil {
		b.Close()
		return nil, err
	}
	in := b.inputs
	if p.Op == nil {
		b.run = func(ctx context.Context) ([]*accel.Tensor, error) { return model.Run(ctx, s, in) }
		return b, nil
	}
	op, params := p.Op, p.Params()
	b.run = func(ctx context.Context) ([]*accel.Tensor, error) {
		out, _, err := s.Run(ctx, op, params, in...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op.Name, err)
		}
		return out, nil
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
