package strictcpu

import (
	"context"
	"math"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// optimiserTable maps the loss and the optimiser steps to their kernels.
func (b *Kernels) optimiserTable() accel.Kernels {
	return accel.Kernels{
		accel.SoftmaxCrossEntropy: func(ctx context.Context, c *accel.Call) error {
			loss, err := b.SoftmaxCrossEntropy(ctx, c.Out[0], c.In[0], c.In[1])
			c.Scalar = loss
			return err
		},
		accel.SGDMomentum: func(ctx context.Context, c *accel.Call) error {
			return b.SGDMomentum(ctx, c.In[0], c.In[1], c.In[2], c.Params.(accel.SGDParams))
		},
		accel.Adam: func(ctx context.Context, c *accel.Call) error {
			return b.Adam(ctx, c.In[0], c.In[1], c.In[2], c.In[3], c.Params.(accel.AdamParams))
		},
	}
}

// The optimiser steps update their state in place in pieces of elemChunk
// elements, in parallel, and stop between pieces once the context ends: a
// step cut off by a deadline may have updated part of its tensors
// (docs/abi.md). Every element is its own computation, so pieces and
// threads change nothing in the bits. The SIMD kernel levels take eight
// elements at a time in AVX2 (optimiser_amd64.s), whose lanes round every
// operation as the scalar code does, divisions and square roots included,
// and fuse nothing: two to seven times the speed of the scalar loops,
// which the canonicalisation's branches and Adam's divisions hold back.

// SGDMomentum updates w and velocity in place from grad: v = (μ ⊗
// velocity) + grad, velocity = canon(v), w = canon(w - (η ⊗ v)).
func (b *Kernels) SGDMomentum(ctx context.Context, w, grad, velocity *accel.Tensor, p accel.SGDParams) error {
	W, G, V := f32(w), f32(grad), f32(velocity)
	simd := !b.Portable()
	count, step := chunks(len(W), elemChunk)
	return b.forEach(ctx, count, func(c int) {
		lo, hi := c*step, min((c+1)*step, len(W))
		if simd {
			lo += sgdSIMD(W[lo:hi], G[lo:hi], V[lo:hi], p.LearningRate, p.Momentum)
		}
		sgdMomentum(W[lo:hi], G[lo:hi], V[lo:hi], p.LearningRate, p.Momentum)
	})
}

// sgdMomentum is the portable loop, and the SIMD loop's tail.
func sgdMomentum(w, g, vel []float32, lr, mu float32) {
	g, vel = g[:len(w)], vel[:len(w)]
	for i := range w {
		v := float32(mu*vel[i]) + g[i]
		vel[i] = strictmath.Canon(v)
		w[i] = strictmath.Canon(w[i] - float32(lr*v))
	}
}

// adamConsts are the factors of an Adam step, in the order the assembly
// reads them: β1, 1 - β1, β2, 1 - β2, c1, c2, ε and η.
type adamConsts [8]float32

func newAdamConsts(p accel.AdamParams) *adamConsts {
	return &adamConsts{p.Beta1, 1 - p.Beta1, p.Beta2, 1 - p.Beta2, p.Correction1, p.Correction2, p.Epsilon, p.LearningRate}
}

// Adam updates w and the moments m and v in place from grad, as the
// contract writes it:
//
//	m' = (β1 ⊗ m) + ((1 - β1) ⊗ g),  v' = (β2 ⊗ v) + ((1 - β2) ⊗ (g ⊗ g))
//	w = canon(w - (η ⊗ ((m' / c1) / (sqrt(v' / c2) + ε))))
func (b *Kernels) Adam(ctx context.Context, w, grad, m, v *accel.Tensor, p accel.AdamParams) error {
	W, G, M, V := f32(w), f32(grad), f32(m), f32(v)
	k := newAdamConsts(p)
	simd := !b.Portable()
	count, step := chunks(len(W), elemChunk)
	return b.forEach(ctx, count, func(c int) {
		lo, hi := c*step, min((c+1)*step, len(W))
		if simd {
			lo += adamSIMD(W[lo:hi], G[lo:hi], M[lo:hi], V[lo:hi], k)
		}
		adam(W[lo:hi], G[lo:hi], M[lo:hi], V[lo:hi], k)
	})
}

// adam is the portable loop, and the SIMD loops' tail.
func adam(w, grad, m, v []float32, k *adamConsts) {
	grad, m, v = grad[:len(w)], m[:len(w)], v[:len(w)]
	b1, ob1, b2, ob2, c1, c2, eps, lr := k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]
	for i := range w {
		g := grad[i]
		mi := float32(b1*m[i]) + float32(ob1*g)
		vi := float32(b2*v[i]) + float32(ob2*float32(g*g))
		d := sqrt32(vi/c2) + eps
		w[i] = strictmath.Canon(w[i] - float32(lr*((mi/c1)/d)))
		m[i] = strictmath.Canon(mi)
		v[i] = strictmath.Canon(vi)
	}
}

// sqrt32 is IEEE's correctly rounded float32 square root of x, as the
// contract asks: float64 carries more than twice float32's precision plus
// two bits, so rounding the correctly rounded float64 root to float32 gives
// the correctly rounded float32 root (Figueroa, 1995). On amd64 Go compiles
// it to one SQRTSS.
func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }
