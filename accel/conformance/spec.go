package conformance

// The numerics contract, transcribed.
//
// Each function below is docs/determinism.md written out in Go as literally
// as possible, single-threaded, with no attempt at speed, so that it can be
// checked against the page line by line. Every product the page marks ⊗ is
// written float32(a*b): in Go an explicit conversion rounds and forbids
// fusing the product into an add. Every other operation is on float32
// operands and so is one IEEE binary32 operation. exp, log, treesum and canon
// are strictmath.Exp, strictmath.Log, strictmath.TreeSum and strictmath.Canon.
// Inputs are never modified.

import (
	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// specMatMul is C[M,N] = A[M,K]·B[K,N]; with p.TransA A is stored as [K,M],
// with p.TransB B is stored as [N,K].
func specMatMul(a, b []float32, M, K, N int, p accel.MatMulParams) []float32 {
	A := func(i, k int) float32 {
		if p.TransA {
			return a[k*M+i]
		}
		return a[i*K+k]
	}
	B := func(k, j int) float32 {
		if p.TransB {
			return b[j*K+k]
		}
		return b[k*N+j]
	}
	C := make([]float32, M*N)
	for i := 0; i < M; i++ {
		for j := 0; j < N; j++ {
			s := float32(0)
			for k := 0; k < K; k++ {
				s = s + float32(A(i, k)*B(k, j))
			}
			C[i*N+j] = strictmath.Canon(s)
		}
	}
	return C
}

// convShape is the conv2d output shape [N, OC, OH, OW] by the contract's
// formula, for input shape xs [N,C,H,W] and weight shape ws [OC,C/G,KH,KW].
func convShape(xs, ws []int, p accel.Conv2DParams) []int {
	OH := (xs[2]+p.PadTop+p.PadBottom-(p.DilationH*(ws[2]-1)+1))/p.StrideH + 1
	OW := (xs[3]+p.PadLeft+p.PadRight-(p.DilationW*(ws[3]-1)+1))/p.StrideW + 1
	return []int{xs[0], ws[0], OH, OW}
}

// specConv2D is conv2d of X with shape xs and weights W with shape ws; bias
// is nil when there is none.
func specConv2D(X []float32, xs []int, W []float32, ws []int, bias []float32, p accel.Conv2DParams) []float32 {
	N, C, H, Wd := xs[0], xs[1], xs[2], xs[3]
	OC, KH, KW := ws[0], ws[2], ws[3]
	ys := convShape(xs, ws, p)
	OH, OW := ys[2], ys[3]
	G := p.Groups
	x := func(n, c, h, w int) float32 { return X[((n*C+c)*H+h)*Wd+w] }
	wt := func(o, c, h, w int) float32 { return W[((o*(C/G)+c)*KH+h)*KW+w] }

	Y := make([]float32, N*OC*OH*OW)
	for n := 0; n < N; n++ {
		for oc := 0; oc < OC; oc++ {
			for oh := 0; oh < OH; oh++ {
				for ow := 0; ow < OW; ow++ {
					g := oc / (OC / G)
					s := float32(0)
					for c := 0; c < C/G; c++ {
						for kh := 0; kh < KH; kh++ {
							for kw := 0; kw < KW; kw++ {
								ih := oh*p.StrideH - p.PadTop + kh*p.DilationH
								iw := ow*p.StrideW - p.PadLeft + kw*p.DilationW
								if 0 <= ih && ih < H && 0 <= iw && iw < Wd {
									s = s + float32(x(n, g*(C/G)+c, ih, iw)*wt(oc, c, kh, kw))
								}
							}
						}
					}
					if bias != nil {
						s = s + bias[oc]
					}
					Y[((n*OC+oc)*OH+oh)*OW+ow] = strictmath.Canon(s)
				}
			}
		}
	}
	return Y
}

// specAddBias is Y[…, i, …] = canon(X[…, i, …] + b[i]) with i the index
// along axis.
func specAddBias(X []float32, shape []int, b []float32, axis int) []float32 {
	inner := 1 // elements per step along axis
	for _, d := range shape[axis+1:] {
		inner *= d
	}
	Y := make([]float32, len(X))
	for e := range X {
		i := (e / inner) % shape[axis]
		Y[e] = strictmath.Canon(X[e] + b[i])
	}
	return Y
}

// specRelu is relu elementwise.
func specRelu(X []float32) []float32 {
	Y := make([]float32, len(X))
	for i, x := range X {
		switch {
		case x != x:
			Y[i] = strictmath.NaN()
		case x > 0:
			Y[i] = x
		default:
			Y[i] = 0
		}
	}
	return Y
}

// poolShape is the maxpool2d output shape by the contract's formula: as for
// conv2d with dilation 1.
func poolShape(xs []int, p accel.Pool2DParams) []int {
	OH := (xs[2]+p.PadTop+p.PadBottom-p.KernelH)/p.StrideH + 1
	OW := (xs[3]+p.PadLeft+p.PadRight-p.KernelW)/p.StrideW + 1
	return []int{xs[0], xs[1], OH, OW}
}

// specMaxPool2D is maxpool2d of X with shape xs.
func specMaxPool2D(X []float32, xs []int, p accel.Pool2DParams) []float32 {
	N, C, H, W := xs[0], xs[1], xs[2], xs[3]
	ys := poolShape(xs, p)
	OH, OW := ys[2], ys[3]
	Y := make([]float32, N*C*OH*OW)
	for n := 0; n < N; n++ {
		for c := 0; c < C; c++ {
			for oh := 0; oh < OH; oh++ {
				for ow := 0; ow < OW; ow++ {
					var m float32
					first := true
					for kh := 0; kh < p.KernelH; kh++ {
						for kw := 0; kw < p.KernelW; kw++ {
							ih := oh*p.StrideH - p.PadTop + kh
							iw := ow*p.StrideW - p.PadLeft + kw
							if !(0 <= ih && ih < H && 0 <= iw && iw < W) {
								continue // padding is skipped
							}
							v := X[((n*C+c)*H+ih)*W+iw]
							if first {
								m = v
								first = false
							} else if m == m && (v != v || v > m) {
								m = v
							}
						}
					}
					Y[((n*C+c)*OH+oh)*OW+ow] = strictmath.Canon(m)
				}
			}
		}
	}
	return Y
}

// specSoftmax is softmax over rows of length L, the last axis.
func specSoftmax(X []float32, L int) []float32 {
	Y := make([]float32, len(X))
	e := make([]float32, L)
	for r := 0; r < len(X); r += L {
		x := X[r : r+L]
		m := x[0] // the maximum under the maxpool rule
		for _, v := range x[1:] {
			if m == m && (v != v || v > m) {
				m = v
			}
		}
		for i := 0; i < L; i++ {
			e[i] = strictmath.Exp(x[i] - m)
		}
		s := float32(0)
		for i := 0; i < L; i++ {
			s = s + e[i]
		}
		for i := 0; i < L; i++ {
			Y[r+i] = strictmath.Canon(e[i] / s)
		}
	}
	return Y
}

// specTSNEStep is one tsne_step. P is rowPtr, cols and vals; Y, U and G are
// [N,2] row-major. It returns the new Y, U and G, and the KL divergence when
// p.ComputeKL is set (0 otherwise).
func specTSNEStep(rowPtr, cols []int32, vals, Y, U, G []float32, p accel.TSNEParams) (newY, newU, newG []float32, KL float32) {
	N := len(Y) / 2
	// The Student-t kernel of the pair (i, j).
	kernel := func(i, j int) (dx, dy, q float32) {
		dx = Y[2*i+0] - Y[2*j+0]
		dy = Y[2*i+1] - Y[2*j+1]
		d2 := float32(dx*dx) + float32(dy*dy)
		q = 1 / (1 + d2)
		return dx, dy, q
	}

	// Repulsion.
	z := make([]float32, N)
	rx := make([]float32, N)
	ry := make([]float32, N)
	for i := 0; i < N; i++ {
		z[i], rx[i], ry[i] = 0, 0, 0
		for j := 0; j < N; j++ {
			if j == i {
				continue
			}
			dx, dy, q := kernel(i, j)
			z[i] = z[i] + q
			q2 := float32(q * q)
			rx[i] = rx[i] + float32(q2*dx)
			ry[i] = ry[i] + float32(q2*dy)
		}
	}
	Z := strictmath.TreeSum(z)

	// Attraction, gradient, gains, update and position. Y, U and G are
	// only read here; the results go to new slices.
	newU = make([]float32, 2*N)
	newG = make([]float32, 2*N)
	y := make([]float32, 2*N) // positions before re-centring
	for i := 0; i < N; i++ {
		ax, ay := float32(0), float32(0)
		for e := rowPtr[i]; e < rowPtr[i+1]; e++ {
			j, pv := int(cols[e]), vals[e]
			dx, dy, q := kernel(i, j)
			pq := float32(pv * q)
			ax = ax + float32(pq*dx)
			ay = ay + float32(pq*dy)
		}
		gx := float32(4 * (float32(p.Exaggeration*ax) - (rx[i] / Z)))
		gy := float32(4 * (float32(p.Exaggeration*ay) - (ry[i] / Z)))

		for d, g := range []float32{gx, gy} {
			u, h := U[2*i+d], G[2*i+d]
			if (g > 0) != (u > 0) {
				h = h + float32(0.2)
			} else {
				h = float32(h * float32(0.8))
			}
			if h < p.MinGain {
				h = p.MinGain
			}
			u = float32(p.Momentum*u) - float32(p.LearningRate*float32(h*g))
			y[2*i+d] = Y[2*i+d] + u
			newU[2*i+d] = strictmath.Canon(u)
			newG[2*i+d] = strictmath.Canon(h)
		}
	}

	// Re-centring.
	newY = make([]float32, 2*N)
	column := make([]float32, N)
	for d := 0; d < 2; d++ {
		for i := 0; i < N; i++ {
			column[i] = y[2*i+d]
		}
		mean := strictmath.TreeSum(column) / float32(N)
		for i := 0; i < N; i++ {
			newY[2*i+d] = strictmath.Canon(y[2*i+d] - mean)
		}
	}

	// KL divergence of the un-exaggerated P against the Y the gradient used.
	if p.ComputeKL {
		k := make([]float32, N)
		for i := 0; i < N; i++ {
			k[i] = 0
			for e := rowPtr[i]; e < rowPtr[i+1]; e++ {
				j, pv := int(cols[e]), vals[e]
				if pv > 0 && j != i {
					_, _, q := kernel(i, j)
					k[i] = k[i] + float32(pv*strictmath.Log(float32(pv*Z)/q))
				}
			}
		}
		KL = strictmath.Canon(strictmath.TreeSum(k))
	}
	return newY, newU, newG, KL
}
