package checked

import (
	"context"
	"errors"
	"math"

	"github.com/accelnode/accelnode/accel"
)

// The bounds below are docs/determinism.md's "Checked mode" section: a
// dot product of n terms may lie 2·n·u·Σ|terms| from the contract's value
// (the classic γ_n bound, doubled for the reference's own rounding), which
// the oracle computes by running the same operation on absolute values.

func (b *Backend) MatMul(ctx context.Context, out, a, bm *accel.Tensor, p accel.MatMulParams) error {
	if !b.sample("matmul") {
		return b.fast.MatMul(ctx, out, a, bm, p)
	}
	_, k, _, _ := accel.MatMulDims(a.Shape(), bm.Shape(), p)
	m := b.mirror()
	defer m.close()
	ra, err1 := m.copy(a, false)
	rb, err2 := m.copy(bm, false)
	aa, err3 := m.copy(a, true)
	ab, err4 := m.copy(bm, true)
	if err := b.fast.MatMul(ctx, out, a, bm, p); err != nil {
		return err
	}
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		b.unchecked("matmul", err)
		return nil
	}
	b.finish("matmul", out, func() ([]float32, []float32, error) {
		want, err := m.values(m.session.MatMul(ctx, ra, rb, p))
		if err != nil {
			return nil, nil, err
		}
		mag, err := m.values(m.session.MatMul(ctx, aa, ab, p))
		return want, mag, err
	}, func(mag []float32) func(int) float64 {
		return func(i int) float64 { return 2*float64(k)*u*float64(mag[i]) + float64(k)*tiny }
	})
	return nil
}

func (b *Backend) Conv2D(ctx context.Context, out, x, w, bias *accel.Tensor, p accel.Conv2DParams) error {
	if !b.sample("conv2d") {
		return b.fast.Conv2D(ctx, out, x, w, bias, p)
	}
	ws := w.Shape()
	taps := ws[1] * ws[2] * ws[3]
	m := b.mirror()
	defer m.close()
	rx, err1 := m.copy(x, false)
	rw, err2 := m.copy(w, false)
	rbias, err3 := m.copy(bias, false)
	ax, err4 := m.copy(x, true)
	aw, err5 := m.copy(w, true)
	abias, err6 := m.copy(bias, true)
	if err := b.fast.Conv2D(ctx, out, x, w, bias, p); err != nil {
		return err
	}
	if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil {
		b.unchecked("conv2d", err)
		return nil
	}
	b.finish("conv2d", out, func() ([]float32, []float32, error) {
		want, err := m.values(m.session.Conv2D(ctx, rx, rw, rbias, p))
		if err != nil {
			return nil, nil, err
		}
		mag, err := m.values(m.session.Conv2D(ctx, ax, aw, abias, p))
		return want, mag, err
	}, func(mag []float32) func(int) float64 {
		// taps products, then the bias: taps+1 terms.
		n := float64(taps + 1)
		return func(i int) float64 { return 2*n*u*float64(mag[i]) + n*tiny }
	})
	return nil
}

// exactOp checks an operation whose every output is one correctly rounded
// operation (or none): the bits must agree, NaN payloads aside.
func (b *Backend) exactOp(ctx context.Context, op string, out *accel.Tensor, inputs []*accel.Tensor,
	fast func() error, oracle func(s *accel.Session, in []*accel.Tensor) (*accel.Tensor, error)) error {
	if !b.sample(op) {
		return fast()
	}
	m := b.mirror()
	defer m.close()
	copies := make([]*accel.Tensor, len(inputs))
	var errs []error
	for i, t := range inputs {
		var err error
		copies[i], err = m.copy(t, false)
		errs = append(errs, err)
	}
	if err := fast(); err != nil {
		return err
	}
	if err := errors.Join(errs...); err != nil {
		b.unchecked(op, err)
		return nil
	}
	b.finish(op, out, func() ([]float32, []float32, error) {
		want, err := m.values(oracle(m.session, copies))
		return want, nil, err
	}, func([]float32) func(int) float64 { return exact })
	return nil
}

func (b *Backend) AddBias(ctx context.Context, out, x, bias *accel.Tensor, axis int) error {
	return b.exactOp(ctx, "add_bias", out, []*accel.Tensor{x, bias},
		func() error { return b.fast.AddBias(ctx, out, x, bias, axis) },
		func(s *accel.Session, in []*accel.Tensor) (*accel.Tensor, error) {
			return s.AddBias(ctx, in[0], in[1], axis)
		})
}

func (b *Backend) Relu(ctx context.Context, out, x *accel.Tensor) error {
	return b.exactOp(ctx, "relu", out, []*accel.Tensor{x},
		func() error { return b.fast.Relu(ctx, out, x) },
		func(s *accel.Session, in []*accel.Tensor) (*accel.Tensor, error) { return s.Relu(ctx, in[0]) })
}

func (b *Backend) MaxPool2D(ctx context.Context, out, x *accel.Tensor, p accel.Pool2DParams) error {
	return b.exactOp(ctx, "maxpool2d", out, []*accel.Tensor{x},
		func() error { return b.fast.MaxPool2D(ctx, out, x, p) },
		func(s *accel.Session, in []*accel.Tensor) (*accel.Tensor, error) { return s.MaxPool2D(ctx, in[0], p) })
}

func (b *Backend) Softmax(ctx context.Context, out, x *accel.Tensor) error {
	if !b.sample("softmax") {
		return b.fast.Softmax(ctx, out, x)
	}
	shape := x.Shape()
	L := float64(shape[len(shape)-1])
	m := b.mirror()
	defer m.close()
	rx, err := m.copy(x, false)
	if ferr := b.fast.Softmax(ctx, out, x); ferr != nil {
		return ferr
	}
	if err != nil {
		b.unchecked("softmax", err)
		return nil
	}
	b.finish("softmax", out, func() ([]float32, []float32, error) {
		want, err := m.values(m.session.Softmax(ctx, rx))
		return want, want, err
	}, func(want []float32) func(int) float64 {
		// exp within an ulp, a sum of L terms, a division.
		return func(i int) float64 { return 2*(L+4)*u*math.Abs(float64(want[i])) + tiny }
	})
	return nil
}

func (b *Backend) TSNEStep(ctx context.Context, st accel.TSNEState, p accel.TSNEParams) (float32, error) {
	if !b.sample("tsne_step") {
		return b.fast.TSNEStep(ctx, st, p)
	}
	m := b.mirror()
	defer m.close()
	var copies [6]*accel.Tensor
	var errs []error
	for i, t := range []*accel.Tensor{st.RowPtr, st.Cols, st.Vals, st.Y, st.Update, st.Gains} {
		var err error
		copies[i], err = m.copy(t, false)
		errs = append(errs, err)
	}
	kl, err := b.fast.TSNEStep(ctx, st, p)
	if err != nil {
		return 0, err
	}
	if err := errors.Join(errs...); err != nil {
		b.unchecked("tsne_step", err)
		return kl, nil
	}
	rs := accel.TSNEState{RowPtr: copies[0], Cols: copies[1], Vals: copies[2], Y: copies[3], Update: copies[4], Gains: copies[5]}
	n := float64(st.N())
	var wantKL float32
	b.finish("tsne_step", st.Y, func() ([]float32, []float32, error) {
		var err error
		if wantKL, err = m.session.TSNEStep(ctx, rs, p); err != nil {
			return nil, nil, err
		}
		want, err := m.session.Float32(rs.Y)
		return want, want, err
	}, func(want []float32) func(int) float64 {
		// Sums over all N points, relative to the embedding's scale. The
		// gains are not compared: a gradient within rounding of zero may
		// take either branch of the gain rule.
		scale := 0.0
		for _, v := range want {
			scale = max(scale, math.Abs(float64(v)))
		}
		return func(int) float64 { return 4*n*u*scale + tiny }
	})
	if p.ComputeKL {
		r := compare([]float32{kl}, []float32{wantKL}, func(int) float64 { return 4 * n * u * math.Abs(float64(wantKL)) })
		b.record("tsne_step kl", []int{1}, r)
	}
	return kl, nil
}

// finish computes the oracle's result and the magnitudes its bound needs,
// reads the fast result and records the comparison.
func (b *Backend) finish(op string, out *accel.Tensor,
	oracle func() (want, mag []float32, err error), bound func(mag []float32) func(int) float64) {
	want, mag, err := oracle()
	if err != nil {
		b.unchecked(op, err)
		return
	}
	got, err := b.output(out)
	if err != nil {
		b.unchecked(op, err)
		return
	}
	b.record(op, out.Shape(), compare(got, want, bound(mag)))
}
