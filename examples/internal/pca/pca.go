//go:build wasip1

// Package pca computes a principal component analysis of data on the node,
// for guests: every product of O(N·D) or O(D²·q) work is a host matmul, and
// only the small matrices of the subspace iteration (O(D·q²), O(q³)) are
// worked on in the guest, in float64.
//
// For data X [N,D], Fit computes the mean μ with reduce_sum, Xc = X − μ with
// add_bias, and the scatter matrix C = Xcᵀ·Xc. Randomized subspace
// iteration then finds C's leading q = K + Oversample eigenvectors: from a
// seeded Gaussian Q [D,q], PowerIters times Q ← orth(C·Q), the product on
// the node and Gram–Schmidt in the guest; then the Rayleigh quotient
// B = Qᵀ·C·Q [q,q] is diagonalised by Jacobi rotations, B = W·Λ·Wᵀ, and
// the components are V = Q·W[:, :K], each with its largest entry positive.
// The projection is Xc·V [N,K]. The guest keeps Q and V transposed, a
// direction a row, so that its loops run over contiguous memory.
//
// Seven iterations on C are what scikit-learn's randomized PCA runs (each of
// its passes, X·(Xᵀ·Q), is one product by C), and ten extra directions its
// oversampling. Nothing depends on time, threads or map order, and the
// host's calls are bit-exact in strict mode, so a fit is the same on every
// backend.
package pca

import (
	"errors"
	"fmt"

	"github.com/accelnode/accelnode/hostfn/guest"
)

// Options tunes Fit; zero fields take the defaults.
type Options struct {
	// Oversample is how many directions beyond K the iteration carries
	// (default 10): the K-th converges at the rate (λ_{q+1}/λ_K)^PowerIters.
	Oversample int
	// PowerIters is the number of products by C (default 7).
	PowerIters int
	// Seed seeds the Gaussian start.
	Seed uint64
}

// Result is a fitted PCA.
type Result struct {
	// Mean holds the D column means of X.
	Mean []float32
	// Components is Vᵀ [K,D], row-major: row j is the j-th principal axis
	// (scikit-learn's components_).
	Components []float32
	// Variances are the K leading eigenvalues of C / (N−1), descending.
	Variances []float64
	// Ratios are the Variances over the total variance trace(C) / (N−1):
	// the explained variance ratio of each component.
	Ratios []float64
	// Projection is (X − μ)·V [N,K] on the node; the caller frees it.
	Projection guest.Tensor
}

// Fit fits the K leading principal components of the f32 data x [N,D], with
// 1 <= K <= D and N >= 2. x is left as it is.
func Fit(x guest.Tensor, k int, o Options) (Result, error) {
	if o.Oversample == 0 {
		o.Oversample = 10
	}
	if o.PowerIters == 0 {
		o.PowerIters = 7
	}
	_, shape, err := x.Shape()
	if err != nil {
		return Result{}, fmt.Errorf("pca: %w", err)
	}
	if len(shape) != 2 || shape[0] < 2 || k < 1 || k > shape[1] {
		return Result{}, fmt.Errorf("pca: %d components of data shaped %v: want [N,D] with N >= 2 and 1 <= K <= D", k, shape)
	}
	if o.Oversample < 0 || o.PowerIters < 0 {
		return Result{}, errors.New("pca: negative oversampling or iterations")
	}
	n, d := shape[0], shape[1]
	q := min(k+o.Oversample, d)

	mean, xc, err := centre(x, n, d)
	if err != nil {
		return Result{}, fmt.Errorf("pca: %w", err)
	}
	c, err := guest.MatMul(xc, xc, guest.TransA)
	if err != nil {
		xc.Free()
		return Result{}, fmt.Errorf("pca: scatter matrix: %w", err)
	}
	defer c.Free()
	vals, v, total, err := leading(c, d, q, k, o)
	if err != nil {
		xc.Free()
		return Result{}, fmt.Errorf("pca: %w", err)
	}
	r := Result{Mean: mean, Components: make([]float32, d*k), Variances: make([]float64, k), Ratios: make([]float64, k)}
	for i, x := range v {
		r.Components[i] = float32(x)
	}
	for j := range k {
		r.Variances[j] = vals[j] / float64(n-1)
		if total > 0 {
			r.Ratios[j] = vals[j] / total
		}
	}
	r.Projection, err = project(xc, r.Components, k, d)
	xc.Free()
	if err != nil {
		return Result{}, fmt.Errorf("pca: projection: %w", err)
	}
	return r, nil
}

// centre returns the column means of x and a new tensor x − mean.
func centre(x guest.Tensor, n, d int) ([]float32, guest.Tensor, error) {
	sum, err := guest.ReduceSum(x, 0)
	if err != nil {
		return nil, guest.Tensor{}, fmt.Errorf("mean: %w", err)
	}
	mean, err := sum.Float32()
	sum.Free()
	if err != nil {
		return nil, guest.Tensor{}, fmt.Errorf("mean: %w", err)
	}
	neg := make([]float32, d)
	for i, s := range mean {
		mean[i] = float32(float64(s) / float64(n))
		neg[i] = -mean[i]
	}
	bias, err := guest.FromFloat32(neg, d)
	if err != nil {
		return nil, guest.Tensor{}, err
	}
	defer bias.Free()
	xc, err := guest.AddBias(x, bias, 1)
	if err != nil {
		return nil, guest.Tensor{}, fmt.Errorf("centre: %w", err)
	}
	return mean, xc, nil
}

// leading returns the k leading eigenvalues of the scatter matrix c [D,D],
// its eigenvectors as the rows of a [k,D] (float64, signs fixed) and
// trace(c), by subspace iteration on q directions.
func leading(c guest.Tensor, d, q, k int, o Options) (vals, v []float64, trace float64, err error) {
	for i := range d {
		var cii [1]float32
		if err := c.ReadFloat32(i*d+i, cii[:]); err != nil {
			return nil, nil, 0, fmt.Errorf("trace: %w", err)
		}
		trace += float64(cii[0])
	}
	qt := Gaussian(q, d, o.Seed)
	Orthonormalize(qt, q, d)
	for it := range o.PowerIters {
		if qt, err = timesC(c, qt, q, d); err != nil {
			return nil, nil, 0, fmt.Errorf("power iteration %d: %w", it+1, err)
		}
		Orthonormalize(qt, q, d)
	}
	// B = Qᵀ·(C·Q) with the Q the node holds, rounded to f32, so that B
	// is the Rayleigh quotient of exactly the basis V is built from.
	for i, x := range qt {
		qt[i] = float64(float32(x))
	}
	cq, err := timesC(c, qt, q, d)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("rayleigh quotient: %w", err)
	}
	b := make([]float64, q*q)
	for i := range q {
		for j := i; j < q; j++ {
			b[i*q+j] = dot(qt[i*d:(i+1)*d], cq[j*d:(j+1)*d])
		}
	}
	vals, w := EigenSym(b, q)
	v = make([]float64, k*d) // Vᵀ = Wᵀ[:K]·Qᵀ
	for j := range k {
		for i := range q {
			axpy(w[i*q+j], qt[i*d:(i+1)*d], v[j*d:(j+1)*d])
		}
	}
	FlipSigns(v, k, d)
	return vals[:k], v, trace, nil
}

// timesC returns (C·Q)ᵀ [q,D] for Qᵀ [q,D] (float64, rounded to f32 on the
// node) by one host matmul: Qᵀ·C, which is (C·Q)ᵀ since C is symmetric.
func timesC(c guest.Tensor, qt []float64, q, d int) ([]float64, error) {
	t, err := guest.FromFloat32(to32(qt), q, d)
	if err != nil {
		return nil, err
	}
	defer t.Free()
	y, err := guest.MatMul(t, c, 0)
	if err != nil {
		return nil, err
	}
	defer y.Free()
	f, err := y.Float32()
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(f))
	for i, x := range f {
		out[i] = float64(x)
	}
	return out, nil
}

// project returns xc·V on the node, from Vᵀ [K,D].
func project(xc guest.Tensor, vt []float32, k, d int) (guest.Tensor, error) {
	t, err := guest.FromFloat32(vt, k, d)
	if err != nil {
		return guest.Tensor{}, err
	}
	defer t.Free()
	return guest.MatMul(xc, t, guest.TransB)
}

func to32(a []float64) []float32 {
	out := make([]float32, len(a))
	for i, x := range a {
		out[i] = float32(x)
	}
	return out
}
