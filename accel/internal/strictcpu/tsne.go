package strictcpu

import (
	"context"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// tsnePairs is about how many repulsive pairs, and tsneRows how many rows of
// the attraction pass, make one work item.
const (
	tsnePairs = 1 << 16
	tsneRows  = 256
)

// TSNEStep runs one iteration as the contract writes it. The repulsion is
// computed row by row (each row over j in increasing order) in parallel, or
// with p.Theta > 0 over the Barnes-Hut quadtree (tsne_bh.go), then
// the attraction, gradient, gains and update per row; the new Y, U and G are
// kept aside and written, re-centred and canonicalised, only once everything
// has been read, and only if the context did not end first. Memory is O(N +
// nnz), the tree's included.
func (b *Kernels) TSNEStep(ctx context.Context, s accel.TSNEState, p accel.TSNEParams) (float32, error) {
	n := s.N()
	rowPtr, cols, vals := i32(s.RowPtr), i32(s.Cols), f32(s.Vals)
	Y, U, G := f32(s.Y), f32(s.Update), f32(s.Gains)
	Y, U, G = Y[:2*n], U[:2*n], G[:2*n]

	// Repulsion: exact, or over the Barnes-Hut tree.
	z := make([]float32, n)
	rx := make([]float32, n)
	ry := make([]float32, n)
	var err error
	if p.Theta > 0 {
		err = b.tsneRepulsionBH(ctx, Y, p.Theta, z, rx, ry)
	} else {
		err = b.tsneRepulsionExact(ctx, Y, z, rx, ry)
	}
	if err != nil {
		return 0, err
	}
	Z := strictmath.TreeSum(z)

	// Attraction, gradient, gains and update; the KL terms on the side.
	newY := make([]float32, 2*n)
	newU := make([]float32, 2*n)
	newG := make([]float32, 2*n)
	var kl []float32
	if p.ComputeKL {
		kl = make([]float32, n)
	}
	count, step := chunks(n, tsneRows)
	err = b.forEach(ctx, count, func(c int) {
		for i := c * step; i < min((c+1)*step, n); i++ {
			xi, yi := Y[2*i], Y[2*i+1]
			e0, e1 := rowPtr[i], rowPtr[i+1]
			cs, vs := cols[e0:e1], vals[e0:e1]
			vs = vs[:len(cs)]
			var ax, ay float32
			for e, j := range cs {
				if e&(elemChunk-1) == elemChunk-1 && ctx.Err() != nil {
					return // a row of huge degree: forEach reports the interruption
				}
				if int(j) == i {
					continue // contributes zero
				}
				dx, dy := xi-Y[2*int(j)], yi-Y[2*int(j)+1]
				q := 1 / (1 + (float32(dx*dx) + float32(dy*dy)))
				pq := float32(vs[e] * q)
				ax = ax + float32(pq*dx)
				ay = ay + float32(pq*dy)
			}
			gx := float32(4 * (float32(p.Exaggeration*ax) - rx[i]/Z))
			gy := float32(4 * (float32(p.Exaggeration*ay) - ry[i]/Z))
			for d, g := range [2]float32{gx, gy} {
				k := 2*i + d
				u, h := U[k], G[k]
				if (g > 0) != (u > 0) {
					h = h + 0.2
				} else {
					h = float32(h * 0.8)
				}
				if h < p.MinGain {
					h = p.MinGain
				}
				u = float32(p.Momentum*u) - float32(p.LearningRate*float32(h*g))
				newY[k] = Y[k] + u
				newU[k] = u
				newG[k] = h
			}
			if kl != nil {
				var ki float32
				for e, j := range cs {
					if e&(elemChunk-1) == elemChunk-1 && ctx.Err() != nil {
						return
					}
					pv := vs[e]
					if !(pv > 0) || int(j) == i {
						continue
					}
					dx, dy := xi-Y[2*int(j)], yi-Y[2*int(j)+1]
					q := 1 / (1 + (float32(dx*dx) + float32(dy*dy)))
					ki = ki + float32(pv*strictmath.Log(float32(pv*Z)/q))
				}
				kl[i] = ki
			}
		}
	})
	if err != nil {
		return 0, err
	}

	// Re-centre and write back.
	col := make([]float32, n)
	for d := range 2 {
		for i := range n {
			col[i] = newY[2*i+d]
		}
		mean := strictmath.TreeSum(col) / float32(n)
		for i := range n {
			Y[2*i+d] = strictmath.Canon(newY[2*i+d] - mean)
		}
	}
	for k := range U {
		U[k] = strictmath.Canon(newU[k])
		G[k] = strictmath.Canon(newG[k])
	}
	if kl == nil {
		return 0, nil
	}
	return strictmath.Canon(strictmath.TreeSum(kl)), nil
}

// tsneRepulsionExact computes the exact repulsion sums z[i] = Σ_j q, rx[i] =
// Σ_j q²·dx and ry[i] = Σ_j q²·dy of every point of Y (n x, y pairs) over
// all others, each row over j in increasing order, rows in parallel.
func (b *Kernels) tsneRepulsionExact(ctx context.Context, Y, z, rx, ry []float32) error {
	n := len(z)
	count, step := chunks(n, tsnePairs/n)
	return b.forEach(ctx, count, func(c int) {
		for i := c * step; i < min((c+1)*step, n); i++ {
			// The points before i, then those after, in segments so that
			// a deadline interrupts a row of a huge N.
			xi, yi := Y[2*i], Y[2*i+1]
			var zi, sx, sy float32
			for _, pts := range [2][]float32{Y[:2*i], Y[2*i+2:]} {
				for lo := 0; lo < len(pts); lo += 2 * elemChunk {
					if lo > 0 && ctx.Err() != nil {
						return // forEach reports the interruption
					}
					zi, sx, sy = repulse(xi, yi, pts[lo:min(lo+2*elemChunk, len(pts))], zi, sx, sy)
				}
			}
			z[i], rx[i], ry[i] = zi, sx, sy
		}
	})
}

// repulse continues the repulsion sums z = Σq, rx = Σq²dx and ry = Σq²dy of
// the point (xi, yi) over the points pts (x, y pairs), in order.
func repulse(xi, yi float32, pts []float32, z, rx, ry float32) (float32, float32, float32) {
	for ; len(pts) >= 2; pts = pts[2:] {
		dx := xi - pts[0]
		dy := yi - pts[1]
		q := 1 / (1 + (float32(dx*dx) + float32(dy*dy)))
		z = z + q
		q2 := float32(q * q)
		rx = rx + float32(q2*dx)
		ry = ry + float32(q2*dy)
	}
	return z, rx, ry
}
