//go:build wasip1

// Command digest runs a fixed sequence of accel operations on fixed
// pseudo-random inputs and prints the sha256 of every output's bits, one
// line per operation and a last line over all of them:
//
//	matmul 3f2a...
//	...
//	all 91c4...
//
// Its output depends on the bits the backend computes and on nothing else
// (no timings, no backend name), so backends that implement the numerics
// contract print the same bytes. `accelnode conformance --guest` compares
// them.
package main

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"math"
	"math/rand/v2"
	"os"

	"github.com/accelnode/accelnode/hostfn/guest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "digest:", err)
		os.Exit(1)
	}
}

// digests hashes each operation's outputs, and all of them together.
type digests struct {
	all hash.Hash
}

func (d *digests) add(op string, outs ...[]float32) {
	h := sha256.New()
	var b [4]byte
	for _, v := range outs {
		for _, x := range v {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(x))
			h.Write(b[:])
			d.all.Write(b[:])
		}
	}
	fmt.Printf("%s %x\n", op, h.Sum(nil))
}

func run() error {
	rng := rand.New(rand.NewPCG(7, 11))
	normal := func(n int, sigma float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(sigma * rng.NormFloat64())
		}
		return v
	}
	d := &digests{all: sha256.New()}
	var live []guest.Tensor
	defer func() { guest.FreeAll(live...) }()
	keep := func(t guest.Tensor, err error) (guest.Tensor, error) {
		if err == nil {
			live = append(live, t)
		}
		return t, err
	}
	// read(op)(t, err) keeps t and adds its content to op's digest.
	read := func(op string) func(guest.Tensor, error) (guest.Tensor, error) {
		return func(t guest.Tensor, err error) (guest.Tensor, error) {
			if _, err := keep(t, err); err != nil {
				return t, fmt.Errorf("%s: %w", op, err)
			}
			v, err := t.Float32()
			if err != nil {
				return t, err
			}
			d.add(op, v)
			return t, nil
		}
	}

	// matmul [33,47]·[29,47]ᵀ, then softmax over its rows.
	a, err := keep(guest.FromFloat32(normal(33*47, 1), 33, 47))
	if err != nil {
		return err
	}
	b, err := keep(guest.FromFloat32(normal(29*47, 1), 29, 47))
	if err != nil {
		return err
	}
	c, err := read("matmul")(guest.MatMul(a, b, guest.TransB))
	if err != nil {
		return err
	}
	if _, err := read("softmax")(guest.Softmax(c)); err != nil {
		return err
	}

	// conv2d of [2,3,9,9] with 4 3×3 filters, pad 1, and a bias; add_bias,
	// relu and a 2×2 max pool on its output.
	x, err := keep(guest.FromFloat32(normal(2*3*9*9, 1), 2, 3, 9, 9))
	if err != nil {
		return err
	}
	w, err := keep(guest.FromFloat32(normal(4*3*3*3, 0.5), 4, 3, 3, 3))
	if err != nil {
		return err
	}
	bias, err := keep(guest.FromFloat32(normal(4, 1), 4))
	if err != nil {
		return err
	}
	y, err := read("conv2d")(guest.Conv2D(x, w, bias, guest.Conv2DParams{PadTop: 1, PadLeft: 1, PadBottom: 1, PadRight: 1}))
	if err != nil {
		return err
	}
	y, err = read("add_bias")(guest.AddBias(y, bias, 1))
	if err != nil {
		return err
	}
	y, err = read("relu")(guest.Relu(y))
	if err != nil {
		return err
	}
	if _, err := read("maxpool2d")(guest.MaxPool2D(y, guest.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2})); err != nil {
		return err
	}

	// Three t-SNE iterations on 60 points, each the neighbour of the next
	// three around a ring.
	const n, k = 60, 3
	var rowPtr, cols []int32
	var vals []float32
	for i := range n {
		rowPtr = append(rowPtr, int32(len(cols)))
		for _, j := range []int{(i + n - 3) % n, (i + n - 2) % n, (i + n - 1) % n, (i + 1) % n, (i + 2) % n, (i + 3) % n} {
			cols = append(cols, int32(j))
			vals = append(vals, 1/float32(2*k*n))
		}
	}
	rowPtr = append(rowPtr, int32(len(cols)))
	var st guest.TSNEState
	if st.RowPtr, err = keep(guest.FromInt32(rowPtr, n+1)); err != nil {
		return err
	}
	if st.Cols, err = keep(guest.FromInt32(cols, len(cols))); err != nil {
		return err
	}
	if st.Vals, err = keep(guest.FromFloat32(vals, len(vals))); err != nil {
		return err
	}
	if st.Y, err = keep(guest.FromFloat32(normal(2*n, 1e-2), n, 2)); err != nil {
		return err
	}
	if st.Update, err = keep(guest.New(guest.F32, n, 2)); err != nil {
		return err
	}
	ones := make([]float32, 2*n)
	for i := range ones {
		ones[i] = 1
	}
	if st.Gains, err = keep(guest.FromFloat32(ones, n, 2)); err != nil {
		return err
	}
	var kls []float32
	for range 3 {
		kl, err := guest.TSNEStep(st, guest.TSNEParams{LearningRate: 200, Momentum: 0.5, Exaggeration: 12, MinGain: 0.01, ComputeKL: true})
		if err != nil {
			return err
		}
		kls = append(kls, kl)
	}
	yv, err := st.Y.Float32()
	if err != nil {
		return err
	}
	uv, err := st.Update.Float32()
	if err != nil {
		return err
	}
	gv, err := st.Gains.Float32()
	if err != nil {
		return err
	}
	d.add("tsne_step", yv, uv, gv, kls)

	fmt.Printf("all %x\n", d.all.Sum(nil))
	return nil
}
