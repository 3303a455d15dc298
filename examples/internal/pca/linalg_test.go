package pca

import (
	"math"
	"math/rand/v2"
	"testing"
)

// symmetric returns a random symmetric n×n matrix.
func symmetric(n int, seed uint64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 1))
	a := make([]float64, n*n)
	for i := range n {
		for j := i; j < n; j++ {
			a[i*n+j] = rng.NormFloat64()
			a[j*n+i] = a[i*n+j]
		}
	}
	return a
}

// tridiagonal returns the n×n matrix with 2 on the diagonal and -1 beside
// it, whose eigenvalues are 2 − 2·cos(jπ/(n+1)), j = 1..n.
func tridiagonal(n int) ([]float64, []float64) {
	a := make([]float64, n*n)
	want := make([]float64, n)
	for i := range n {
		a[i*n+i] = 2
		if i+1 < n {
			a[i*n+i+1], a[(i+1)*n+i] = -1, -1
		}
		want[n-1-i] = 2 - 2*math.Cos(float64(i+1)*math.Pi/float64(n+1))
	}
	return a, want
}

func TestEigenSym(t *testing.T) {
	tri, triVals := tridiagonal(9)
	tests := []struct {
		name string
		n    int
		a    []float64
		want []float64 // nil: checked by residual only
	}{
		{"1x1", 1, []float64{-3}, []float64{-3}},
		{"diagonal", 3, []float64{1, 0, 0, 0, 5, 0, 0, 0, -2}, []float64{5, 1, -2}},
		{"2x2", 2, []float64{2, 1, 1, 2}, []float64{3, 1}},
		{"repeated", 3, []float64{2, 1, 1, 1, 2, 1, 1, 1, 2}, []float64{4, 1, 1}},
		{"tridiagonal", 9, tri, triVals},
		{"zero", 4, make([]float64, 16), []float64{0, 0, 0, 0}},
		{"random 40", 40, symmetric(40, 7), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.n
			vals, w := EigenSym(tc.a, n)
			scale := 1.0
			for _, x := range tc.a {
				scale = max(scale, math.Abs(x))
			}
			tol := 1e-12 * float64(n) * scale
			for j := range n {
				if tc.want != nil && math.Abs(vals[j]-tc.want[j]) > tol {
					t.Errorf("eigenvalue %d = %.17g, want %.17g", j, vals[j], tc.want[j])
				}
				if j > 0 && vals[j] > vals[j-1] {
					t.Errorf("eigenvalues not descending: %g after %g", vals[j], vals[j-1])
				}
				for i := range n { // a·w_j = λ_j·w_j
					av := 0.0
					for k := range n {
						av += tc.a[i*n+k] * w[k*n+j]
					}
					if r := math.Abs(av - vals[j]*w[i*n+j]); r > tol {
						t.Fatalf("residual of eigenvector %d, row %d: %g", j, i, r)
					}
				}
			}
			wt := make([]float64, n*n) // eigenvectors as rows
			for i := range n {
				for j := range n {
					wt[j*n+i] = w[i*n+j]
				}
			}
			checkOrthonormal(t, wt, n, n)
		})
	}
}

func TestEigenSymLeavesInput(t *testing.T) {
	a := symmetric(6, 3)
	b := append([]float64(nil), a...)
	EigenSym(a, 6)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("EigenSym changed its input at %d", i)
		}
	}
}

// checkOrthonormal fails unless the first m rows of a (q×d) are
// orthonormal.
func checkOrthonormal(t *testing.T, a []float64, d, m int) {
	t.Helper()
	for i := range m {
		for j := range m {
			want := 0.0
			if i == j {
				want = 1
			}
			if got := dot(a[i*d:(i+1)*d], a[j*d:(j+1)*d]); math.Abs(got-want) > 1e-13 {
				t.Fatalf("row %d · row %d = %g, want %g", i, j, got, want)
			}
		}
	}
}

func TestOrthonormalize(t *testing.T) {
	const q, d = 8, 50
	t.Run("random", func(t *testing.T) {
		a := Gaussian(q, d, 1)
		orig := append([]float64(nil), a...)
		Orthonormalize(a, q, d)
		checkOrthonormal(t, a, d, q)
		// Gram–Schmidt is QR: row j of the input lies in the span of the
		// first j+1 output rows.
		for j := range q {
			res := append([]float64(nil), orig[j*d:(j+1)*d]...)
			for i := 0; i <= j; i++ {
				axpy(-dot(a[i*d:(i+1)*d], res), a[i*d:(i+1)*d], res)
			}
			for r := range d {
				if math.Abs(res[r]) > 1e-12 {
					t.Fatalf("row %d leaves the span of the first %d: residual %g", j, j+1, res[r])
				}
			}
		}
	})
	t.Run("ill-conditioned", func(t *testing.T) {
		// Rows nearly parallel: one pass of Gram–Schmidt loses
		// orthogonality to about ε·κ, the second restores it.
		a := Gaussian(q, d, 2)
		for j := 1; j < q; j++ {
			for r := range d {
				a[j*d+r] = a[r] + 1e-7*a[j*d+r]
			}
		}
		Orthonormalize(a, q, d)
		checkOrthonormal(t, a, d, q)
	})
	t.Run("dependent", func(t *testing.T) {
		a := Gaussian(3, d, 3)
		for r := range d {
			a[2*d+r] = 2*a[r] - a[d+r]
		}
		Orthonormalize(a, 3, d)
		checkOrthonormal(t, a, d, 2)
		for r := range d {
			if a[2*d+r] != 0 {
				t.Fatalf("a dependent row was kept: it holds %g at %d", a[2*d+r], r)
			}
		}
	})
}

func TestFlipSigns(t *testing.T) {
	tests := []struct {
		name    string
		k, d    int
		v, want []float64
	}{
		{"positive stays", 1, 3, []float64{0.6, 0.8, -0.7}, []float64{0.6, 0.8, -0.7}},
		{"negative flips", 1, 3, []float64{0.6, -0.8, 0.7}, []float64{-0.6, 0.8, -0.7}},
		{"tie takes the first", 1, 2, []float64{-0.5, 0.5}, []float64{0.5, -0.5}},
		{"each row alone", 2, 2, []float64{-1, 0.2, 0.1, -0.3}, []float64{1, -0.2, -0.1, 0.3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := append([]float64(nil), tc.v...)
			FlipSigns(v, tc.k, tc.d)
			for j := range v {
				if v[j] != tc.want[j] {
					t.Fatalf("got %v, want %v", v, tc.want)
				}
			}
		})
	}
}

func TestGaussianIsReproducible(t *testing.T) {
	a, b, c := Gaussian(10, 4, 5), Gaussian(10, 4, 5), Gaussian(10, 4, 6)
	same := true
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("the same seed gave %g and %g at %d", a[i], b[i], i)
		}
		same = same && a[i] == c[i]
	}
	if same {
		t.Error("seeds 5 and 6 gave the same matrix")
	}
}

// TestSubspaceIteration runs Fit's algorithm in float64 on a matrix of known
// spectrum: the leading eigenvalues of the Rayleigh quotient must be those
// of the matrix, as Fit relies on.
func TestSubspaceIteration(t *testing.T) {
	const d, q, k = 60, 15, 5
	// C = U·diag(λ)·Uᵀ with λ_i = 0.8^i and a random orthonormal U (rows
	// of ut).
	ut := Gaussian(d, d, 9)
	Orthonormalize(ut, d, d)
	lambda := make([]float64, d)
	for i := range lambda {
		lambda[i] = math.Pow(0.8, float64(i))
	}
	c := make([]float64, d*d)
	for m := range d {
		for i := range d {
			axpy(lambda[m]*ut[m*d+i], ut[m*d:(m+1)*d], c[i*d:(i+1)*d])
		}
	}
	mul := func(qt []float64) []float64 { // (C·Q)ᵀ for Qᵀ [q,d]
		out := make([]float64, q*d)
		for j := range q {
			for i := range d {
				out[j*d+i] = dot(c[i*d:(i+1)*d], qt[j*d:(j+1)*d])
			}
		}
		return out
	}
	qt := Gaussian(q, d, 1)
	Orthonormalize(qt, q, d)
	for range 7 {
		qt = mul(qt)
		Orthonormalize(qt, q, d)
	}
	cq := mul(qt)
	b := make([]float64, q*q)
	for i := range q {
		for j := range q {
			b[i*q+j] = dot(qt[i*d:(i+1)*d], cq[j*d:(j+1)*d])
		}
	}
	vals, _ := EigenSym(b, q)
	for j := range k {
		if rel := math.Abs(vals[j]-lambda[j]) / lambda[j]; rel > 1e-3 {
			t.Errorf("eigenvalue %d = %g, want %g (relative error %.2g)", j, vals[j], lambda[j], rel)
		}
	}
}
