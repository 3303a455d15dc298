package runner

import (
	"context"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/conformance"
	"github.com/accelnode/accelnode/accel/hostmem"
)

// Spec returns a backend that computes every operation with the contract's
// literal transcription (accel/conformance's Spec functions): one thread, no
// attempt at speed. As Config.Reference it checks the reference backend
// itself against docs/determinism.md.
func Spec() accel.Backend { return specBackend{} }

type specBackend struct{}

func (specBackend) Name() string { return "spec" }

func (specBackend) Status() accel.Status {
	return accel.Status{Name: "spec", Available: true, Deterministic: true, Threads: 1,
		Device: "the numerics contract transcribed (accel/conformance/spec.go)"}
}

func (specBackend) Close() error { return nil }

func (specBackend) Alloc(dt accel.DType, n int) (accel.Buffer, error) { return hostmem.Alloc(dt, n) }

func (specBackend) Write(dst accel.Buffer, first int, src []byte) error {
	return hostmem.Write(dst, first, src)
}

func (specBackend) Read(src accel.Buffer, first int, dst []byte) error {
	return hostmem.Read(src, first, dst)
}

func (specBackend) MatMul(_ context.Context, out, a, b *accel.Tensor, p accel.MatMulParams) error {
	m, k, n, err := accel.MatMulDims(a.Shape(), b.Shape(), p)
	if err != nil {
		return err
	}
	copy(hostmem.F32(out), conformance.SpecMatMul(hostmem.F32(a), hostmem.F32(b), m, k, n, p))
	return nil
}

func (specBackend) Conv2D(_ context.Context, out, x, w, bias *accel.Tensor, p accel.Conv2DParams) error {
	var bv []float32
	if bias != nil {
		bv = hostmem.F32(bias)
	}
	copy(hostmem.F32(out), conformance.SpecConv2D(hostmem.F32(x), x.Shape(), hostmem.F32(w), w.Shape(), bv, p))
	return nil
}

func (specBackend) AddBias(_ context.Context, out, x, bias *accel.Tensor, axis int) error {
	copy(hostmem.F32(out), conformance.SpecAddBias(hostmem.F32(x), x.Shape(), hostmem.F32(bias), axis))
	return nil
}

func (specBackend) Relu(_ context.Context, out, x *accel.Tensor) error {
	copy(hostmem.F32(out), conformance.SpecRelu(hostmem.F32(x)))
	return nil
}

func (specBackend) MaxPool2D(_ context.Context, out, x *accel.Tensor, p accel.Pool2DParams) error {
	copy(hostmem.F32(out), conformance.SpecMaxPool2D(hostmem.F32(x), x.Shape(), p))
	return nil
}

func (specBackend) Softmax(_ context.Context, out, x *accel.Tensor) error {
	shape := x.Shape()
	copy(hostmem.F32(out), conformance.SpecSoftmax(hostmem.F32(x), shape[len(shape)-1]))
	return nil
}

func (specBackend) TSNEStep(_ context.Context, s accel.TSNEState, p accel.TSNEParams) (float32, error) {
	y, u, g, kl := conformance.SpecTSNEStep(hostmem.I32(s.RowPtr), hostmem.I32(s.Cols), hostmem.F32(s.Vals),
		slices.Clone(hostmem.F32(s.Y)), slices.Clone(hostmem.F32(s.Update)), slices.Clone(hostmem.F32(s.Gains)), p)
	copy(hostmem.F32(s.Y), y)
	copy(hostmem.F32(s.Update), u)
	copy(hostmem.F32(s.Gains), g)
	return kl, nil
}
