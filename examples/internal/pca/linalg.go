package pca

// The guest-side numerics of Fit: small float64 matrices, O(D·q²) and
// O(q³) work at most. They carry no build tag, so host tests run them.

import (
	"math"
	"math/rand/v2"
	"slices"
)

// Gaussian returns n×d standard normal draws (row-major) from a PCG stream
// seeded with seed: the start of the subspace iteration, a row a direction.
func Gaussian(n, d int, seed uint64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 0x70ca))
	a := make([]float64, n*d)
	for i := range a {
		a[i] = rng.NormFloat64()
	}
	return a
}

// Orthonormalize replaces the q rows of a (q×d, row-major) by an
// orthonormal basis of their span, by modified Gram–Schmidt run twice: one
// pass leaves the rows orthogonal to about ε·κ, the second to about ε
// ("twice is enough"). The vectors are rows so that every loop runs over
// contiguous memory, which matters in WebAssembly. A row that loses all
// but 1e-10 of its norm to the ones before it depends on them numerically;
// it becomes zero, so that the span shrinks rather than filling with
// rounding noise.
func Orthonormalize(a []float64, q, d int) {
	norm0 := make([]float64, q)
	for j := range q {
		norm0[j] = math.Sqrt(dot(a[j*d:(j+1)*d], a[j*d:(j+1)*d]))
	}
	for range 2 {
		for j := range q {
			aj := a[j*d : (j+1)*d]
			for i := range j {
				ai := a[i*d : (i+1)*d]
				axpy(-dot(ai, aj), ai, aj)
			}
			nrm := math.Sqrt(dot(aj, aj))
			scale := 0.0
			if nrm > 1e-10*norm0[j] {
				scale = 1 / nrm
			}
			for r := range aj {
				aj[r] *= scale
			}
		}
	}
}

// dot returns x·y: four running sums over the elements i mod 4, added at
// the end, then the remainder. Unrolled since each loop iteration of a
// guest pays for a check that lets the deadline stop it; the order is
// fixed all the same.
func dot(x, y []float64) float64 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	s := (s0 + s1) + (s2 + s3)
	for ; i < len(x); i++ {
		s += x[i] * y[i]
	}
	return s
}

// axpy sets y = alpha·x + y.
func axpy(alpha float64, x, y []float64) {
	y = y[:len(x)]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		y[i] += alpha * x[i]
		y[i+1] += alpha * x[i+1]
		y[i+2] += alpha * x[i+2]
		y[i+3] += alpha * x[i+3]
	}
	for ; i < len(x); i++ {
		y[i] += alpha * x[i]
	}
}

// maxSweeps bounds the Jacobi sweeps; a symmetric matrix converges
// quadratically, in well under 20 at the sizes PCA uses.
const maxSweeps = 50

// EigenSym returns the eigenvalues of the symmetric n×n matrix a
// (row-major; only its upper triangle is read), in descending order, and
// the eigenvectors as the columns of w (n×n, row-major): a = w·diag(vals)·wᵀ.
// It runs cyclic Jacobi rotations (Golub and Van Loan, §8.5) until the
// off-diagonal part is below 1e-15 of the whole, which costs O(n³) a sweep
// but is accurate to the last bits for small n and, being a fixed sequence
// of IEEE operations, reproducible everywhere. Ties keep the lower index
// first.
func EigenSym(a []float64, n int) (vals, w []float64) {
	m := make([]float64, n*n)
	for i := range n {
		for j := i; j < n; j++ {
			m[i*n+j], m[j*n+i] = a[i*n+j], a[i*n+j]
		}
	}
	v := make([]float64, n*n)
	for i := range n {
		v[i*n+i] = 1
	}
	total := 0.0
	for _, x := range m {
		total += x * x
	}
	for range maxSweeps {
		off := 0.0
		for i := range n {
			for j := i + 1; j < n; j++ {
				off += 2 * m[i*n+j] * m[i*n+j]
			}
		}
		if off <= 1e-30*total || off == 0 {
			break
		}
		for p := range n {
			for q := p + 1; q < n; q++ {
				rotate(m, v, n, p, q)
			}
		}
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(i, j int) int {
		switch di, dj := m[i*n+i], m[j*n+j]; {
		case di > dj:
			return -1
		case di < dj:
			return 1
		}
		return 0
	})
	vals, w = make([]float64, n), make([]float64, n*n)
	for c, k := range idx {
		vals[c] = m[k*n+k]
		for r := range n {
			w[r*n+c] = v[r*n+k]
		}
	}
	return vals, w
}

// rotate applies the Jacobi rotation J that zeroes m[p,q]: m ← Jᵀ·m·J and
// v ← v·J, with J the identity but for J[p,p] = J[q,q] = c, J[p,q] = s and
// J[q,p] = -s. t = tan θ is the root of t² + 2τt − 1 = 0 of least
// magnitude, τ = (m[q,q] − m[p,p]) / 2m[p,q], which keeps the rotation
// below 45° and the sweep convergent.
func rotate(m, v []float64, n, p, q int) {
	apq := m[p*n+q]
	if apq == 0 {
		return
	}
	tau := (m[q*n+q] - m[p*n+p]) / (2 * apq)
	t := 1 / (math.Abs(tau) + math.Sqrt(1+tau*tau))
	if tau < 0 {
		t = -t
	}
	c := 1 / math.Sqrt(1+t*t)
	s := t * c
	for k := range n { // columns p and q: m·J
		mkp, mkq := m[k*n+p], m[k*n+q]
		m[k*n+p], m[k*n+q] = c*mkp-s*mkq, s*mkp+c*mkq
	}
	for k := range n { // rows p and q: Jᵀ·(m·J)
		mpk, mqk := m[p*n+k], m[q*n+k]
		m[p*n+k], m[q*n+k] = c*mpk-s*mqk, s*mpk+c*mqk
	}
	m[p*n+q], m[q*n+p] = 0, 0
	for k := range n {
		vkp, vkq := v[k*n+p], v[k*n+q]
		v[k*n+p], v[k*n+q] = c*vkp-s*vkq, s*vkp+c*vkq
	}
}

// FlipSigns makes the entry of largest magnitude of each of the k rows of
// v (k×d, row-major) positive, the first such entry where several tie: an
// eigenvector's sign is arbitrary, and this rule (scikit-learn's svd_flip
// on the components) fixes it.
func FlipSigns(v []float64, k, d int) {
	for j := range k {
		row := v[j*d : (j+1)*d]
		best := 0
		for r, x := range row {
			if math.Abs(x) > math.Abs(row[best]) {
				best = r
			}
		}
		if row[best] < 0 {
			for r := range row {
				row[r] = -row[r]
			}
		}
	}
}
