package conformance

// The numerics contract, transcribed.
//
// Each operation's spec function (specMatMul in op_matmul.go, ...) is
// docs/determinism.md written out in Go as literally as possible,
// single-threaded, with no attempt at speed, so that it can be checked
// against the page line by line. Every product the page marks ⊗ is written
// float32(a*b): in Go an explicit conversion rounds and forbids fusing the
// product into an add. Every other operation is on float32 operands and so
// is one IEEE binary32 operation. exp, log, treesum and canon are
// strictmath.Exp, strictmath.Log, strictmath.TreeSum and strictmath.Canon.
// Inputs are never modified.

import (
	"context"
	"fmt"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/internal/hostmem"
)

// Spec returns a backend that computes every operation of the corpus with
// the contract's literal transcription: one thread, no attempt at speed. It
// serves every mode from the same kernels. Checking a backend against it
// checks that backend against docs/determinism.md without trusting any
// other; the reference backend is checked against it so.
func Spec() accel.Backend { return specBackend{} }

type specBackend struct{}

func (specBackend) Name() string { return "spec" }

func (specBackend) Status() accel.Status {
	return accel.Status{Name: "spec", Available: true, Modes: accel.AllModes, FastIsStrict: true, Threads: 1,
		Device: "the numerics contract transcribed (accel/conformance)"}
}

func (specBackend) Close() error { return nil }

func (specBackend) Alloc(dt accel.DType, n int) (accel.Buffer, error) { return hostmem.Alloc(dt, n) }

func (specBackend) Write(dst accel.Buffer, first int, src []byte) error {
	return hostmem.Write(dst, first, src)
}

func (specBackend) Read(src accel.Buffer, first int, dst []byte) error {
	return hostmem.Read(src, first, dst)
}

// Kernel returns the transcription of op, the same in every mode, or nil
// for an operation the corpus does not cover.
func (specBackend) Kernel(op *accel.Op, _ accel.Mode) accel.Kernel {
	o := operations[op]
	if o == nil {
		return nil
	}
	return func(ctx context.Context, c *accel.Call) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted: %w", err)
		}
		in := make([]Tensor, len(c.In))
		for i, t := range c.In {
			if t == nil {
				continue
			}
			in[i] = Tensor{Name: c.Op.Inputs[i].Name, Shape: slices.Clone(t.Shape())}
			if t.DType() == accel.I32 {
				in[i].I32 = slices.Clone(hostmem.I32(t))
			} else {
				in[i].F32 = slices.Clone(hostmem.F32(t))
			}
		}
		return store(c, o.spec(c.Params, in))
	}
}

// store writes results, in the order of results, where a kernel leaves
// them: the outputs, the in-place inputs and the scalar.
func store(c *accel.Call, res []Tensor) error {
	var dst []*accel.Tensor
	dst = append(dst, c.Out...)
	for i, spec := range c.Op.Inputs {
		if spec.InPlace {
			dst = append(dst, c.In[i])
		}
	}
	want := len(dst)
	if c.WantScalar {
		want++
	}
	if len(res) != want {
		return fmt.Errorf("the transcription of %s gives %d results, want %d", c.Op, len(res), want)
	}
	for i, t := range dst {
		if (t.DType() == accel.I32) != (res[i].I32 != nil) {
			return fmt.Errorf("the transcription of %s gives %s the wrong element type", c.Op, t)
		}
		if n := len(res[i].F32) + len(res[i].I32); n != t.Len() {
			return fmt.Errorf("the transcription of %s gives %d elements for %s, want %d", c.Op, n, t, t.Len())
		}
		if t.DType() == accel.I32 {
			copy(hostmem.I32(t), res[i].I32)
		} else {
			copy(hostmem.F32(t), res[i].F32)
		}
	}
	if c.WantScalar {
		c.Scalar = res[len(dst)].F32[0]
	}
	return nil
}
