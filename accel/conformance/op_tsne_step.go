package conformance

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.TSNEParams]{
	op:    accel.TSNEStep,
	cases: tsneCases,
	spec: func(p accel.TSNEParams, in []Tensor) [][]float32 {
		y, u, g, kl := specTSNEStep(in[0].I32, in[1].I32, in[2].F32, in[3].F32, in[4].F32, in[5].F32, p)
		out := [][]float32{y, u, g}
		if p.ComputeKL {
			out = append(out, []float32{kl})
		}
		return out
	},
	float64: func(p accel.TSNEParams, in []Tensor) reference {
		ref := f64TSNEStep(in[0].I32, in[1].I32, in[2].F32, in[3].F32, in[4].F32, in[5].F32, p)
		out := reference{results: [][]ev{ref.y, ref.u, ref.g}, check: ref.centred}
		if p.ComputeKL {
			out.results = append(out.results, []ev{ref.kl})
		}
		if p.Theta > 0 {
			// Barnes-Hut approximates the repulsion by an error the
			// contract does not bound, which the gains' sign rule and
			// the step size can amplify without limit: its results have
			// no float64 bound, only the bits of the contract (strict
			// mode) and the centring, which holds whatever the forces.
			clear(out.results)
		}
		return out
	},
})

func tsneCases() []Case {
	var cases []Case
	// The grid: the value classes of an embedding on every size class.
	for _, sh := range []struct {
		size        string
		n, k        int
		zeros, diag bool
		p           accel.TSNEParams
	}{
		{SizeTiny, 2, 0, false, false, early(true)},
		{SizeOdd, 97, 6, true, false, early(true)},
		// Rows with no entries, entries of value 0 and entries (i, i).
		{SizeTall, 257, 5, true, true, late(true)},
		{SizeLarge, 1000, 10, false, false, late(true)},
	} {
		P := randomP(sh.k, sh.zeros, sh.diag)
		if sh.n == 2 {
			P = pairP
		}
		for _, class := range []string{Uniform, Normal, Heavy, NaN, Inf, NegZero, Subnormal, Overflow, Cancel} {
			var fy fill
			fu := normal(0.5)
			switch class {
			case Uniform:
				fy = uniform(-5, 5)
			case NaN, Inf:
				fy = normal(1) // one special value is placed below
			case NegZero:
				fy = mix(0.5, normal(1), pick(negZero, 0))
				fu = mix(0.5, normal(0.5), pick(negZero, 0))
			case Overflow:
				fy = magnitudes(60, 64)
			case Cancel:
				// Points close together far from the origin: every
				// difference cancels.
				fy = func(r *rand.Rand, n int) []float32 {
					v := make([]float32, n)
					for i := range v {
						v[i] = float32(1000 + 1e-3*r.NormFloat64())
					}
					return v
				}
			default:
				fy = elementFill(class)
			}
			n := sh.n
			cases = append(cases, newCase(accel.TSNEStep, sh.size, fmt.Sprintf("%s-n%d", sh.size, n), class, sh.p, func(r *rand.Rand) []Tensor {
				in := tsneInputs(P(r, n), fy(r, 2*n), fu(r, 2*n), uniform(0.005, 3)(r, 2*n))
				y := in[3].F32
				switch class {
				case NaN:
					y[r.IntN(len(y))] = []float32{qNaN, negNaN, sNaN}[r.IntN(3)]
				case Inf:
					y[r.IntN(len(y))] = []float32{posInf, negInf}[r.IntN(2)]
				}
				return in
			}))
		}
	}

	// Barnes-Hut at θ = 0.5 and 1 on the grid's sizes, over the finite
	// value classes: a NaN or an infinity in Y leaves the tree's bounding
	// box undefined.
	for _, sh := range []struct {
		size string
		n, k int
		p    accel.TSNEParams
	}{
		{SizeTiny, 2, 0, early(true)},
		{SizeOdd, 97, 6, early(true)},
		{SizeTall, 257, 5, late(true)},
		{SizeLarge, 1000, 10, late(true)},
	} {
		P := randomP(sh.k, false, false)
		if sh.n == 2 {
			P = pairP
		}
		for _, theta := range []float32{0.5, 1} {
			p := sh.p
			p.Theta = theta
			for _, class := range []string{Uniform, Normal, Heavy, NegZero, Subnormal, Overflow, Cancel} {
				fy := tsneFill(class)
				n := sh.n
				cases = append(cases, newCase(accel.TSNEStep, sh.size, fmt.Sprintf("%s-n%d-theta%g", sh.size, n, theta), class, p, func(r *rand.Rand) []Tensor {
					return tsneInputs(P(r, n), fy(r, 2*n), normal(0.5)(r, 2*n), uniform(0.005, 3)(r, 2*n))
				}))
			}
		}
	}

	// Both phases, with and without the KL divergence, rows of P that the
	// grid lacks, and consecutive steps on the same tensors.
	for _, c := range []struct {
		size, label, values string
		n                   int
		steps               int
		p                   accel.TSNEParams
		P                   func(r *rand.Rand, n int) csr
		y, u, g             fill // the initial embedding, update and gains
	}{
		{SizeTiny, "n2", Normal, 2, 1, early(true), pairP, normal(1), cycle(0), cycle(1)},
		{SizeTiny, "n2-late", Normal, 2, 1, late(true), pairP, normal(3), normal(1), uniform(0.005, 2)},
		// Both points at one place: every force is 0.
		{SizeTiny, "n2-coincident", Cancel, 2, 1, late(true), pairP, cycle(0.25, -0.5), cycle(0.5, -0.5), cycle(1)},
		{SizeOdd, "n300-exaggerated-kl", Normal, 300, 1, early(true), randomP(8, false, false), normal(1e-2), cycle(0), cycle(1)},
		{SizeOdd, "n300-exaggerated", Normal, 300, 1, early(false), randomP(8, false, false), normal(1), normal(0.1), uniform(0.5, 2)},
		{SizeOdd, "n300-kl", Normal, 300, 1, late(true), randomP(8, false, false), normal(10), normal(0.5), uniform(0.005, 3)},
		{SizeOdd, "n300", Normal, 300, 1, late(false), randomP(8, false, false), normal(10), normal(0.5), uniform(0.005, 3)},
		// Rows with no entries and entries of value 0, which KL skips.
		{SizeTall, "n257-empty-rows-zero-entries-kl", Normal, 257, 1, late(true), randomP(5, true, false), normal(5), normal(0.5), uniform(0.005, 3)},
		// Entries (i, i): the contract skips them in the attraction and in
		// the KL divergence.
		{SizeOdd, "n211-diagonal-entries", Normal, 211, 1, late(false), randomP(5, false, true), normal(5), normal(0.5), uniform(0.005, 3)},
		{SizeOdd, "n211-diagonal-entries-kl", Normal, 211, 1, early(true), randomP(5, false, true), normal(1), normal(0.5), uniform(0.005, 3)},
		{SizeOdd, "n97-4-steps-kl", Normal, 97, 4, early(true), randomP(6, true, false), normal(1e-2), cycle(0), cycle(1)},
		{SizeLarge, "n1000", Normal, 1000, 1, late(false), randomP(10, false, false), normal(5), normal(0.1), uniform(0.5, 2)},
		// Barnes-Hut: consecutive steps; every point at one place (w =
		// 0, one cell of level 16); clusters of coincident points, so
		// that cells of level 16 hold several; a small θ, where most
		// cells open down to single points; a large one.
		{SizeOdd, "n97-4-steps-kl-theta0.5", Normal, 97, 4, bh(early(true), 0.5), randomP(6, true, false), normal(1e-2), cycle(0), cycle(1)},
		{SizeOdd, "n50-coincident-theta0.5", Cancel, 50, 1, bh(late(true), 0.5), randomP(4, false, false), cycle(0.25, -0.5), normal(0.5), cycle(1)},
		{SizeOdd, "n200-coincident-clusters-theta0.5", Normal, 200, 1, bh(late(true), 0.5), randomP(5, false, true), coincidentClusters(7), normal(0.5), uniform(0.5, 2)},
		{SizeOdd, "n300-theta0.1", Normal, 300, 1, bh(late(true), 0.1), randomP(8, false, false), normal(10), normal(0.5), uniform(0.005, 3)},
		{SizeOdd, "n300-theta3", Normal, 300, 1, bh(early(false), 3), randomP(8, false, false), normal(10), normal(0.5), uniform(0.005, 3)},
		{SizeTall, "n257-empty-rows-zero-entries-kl-theta0.5", Normal, 257, 1, bh(late(true), 0.5), randomP(5, true, false), normal(5), normal(0.5), uniform(0.005, 3)},
		{SizeLarge, "n1000-theta0.5", Normal, 1000, 1, bh(late(false), 0.5), randomP(10, false, false), normal(5), normal(0.1), uniform(0.5, 2)},
	} {
		n, P, fy, fu, fg := c.n, c.P, c.y, c.u, c.g
		tc := newCase(accel.TSNEStep, c.size, c.label, c.values, c.p, func(r *rand.Rand) []Tensor {
			return tsneInputs(P(r, n), fy(r, 2*n), fu(r, 2*n), fg(r, 2*n))
		})
		tc.Steps = c.steps
		cases = append(cases, tc)
	}
	return cases
}

// tsneFill is the embedding of a value class.
func tsneFill(class string) fill {
	switch class {
	case Uniform:
		return uniform(-5, 5)
	case NegZero:
		return mix(0.5, normal(1), pick(negZero, 0))
	case Overflow:
		return magnitudes(60, 64)
	case Cancel:
		// Points close together far from the origin: every difference
		// cancels.
		return func(r *rand.Rand, n int) []float32 {
			v := make([]float32, n)
			for i := range v {
				v[i] = float32(1000 + 1e-3*r.NormFloat64())
			}
			return v
		}
	}
	return elementFill(class)
}

// coincidentClusters places the points, [N,2] row-major, at c places
// spread over the plane, a few of them at a random distance.
func coincidentClusters(c int) fill {
	return func(r *rand.Rand, n int) []float32 {
		places := normal(5)(r, 2*c)
		v := make([]float32, n)
		for i := 0; i+1 < n; i += 2 {
			k := r.IntN(c)
			v[i], v[i+1] = places[2*k], places[2*k+1]
			if r.IntN(10) == 0 {
				v[i] += float32(r.NormFloat64())
			}
		}
		return v
	}
}

// bh is p with the Barnes-Hut threshold theta.
func bh(p accel.TSNEParams, theta float32) accel.TSNEParams {
	p.Theta = theta
	return p
}

// tsneInputs names the inputs of a t-SNE step: P, and the embedding, update
// and gains, [N,2] row-major.
func tsneInputs(P csr, y, u, g []float32) []Tensor {
	n := len(y) / 2
	return []Tensor{
		{Name: "row_ptr", Shape: []int{n + 1}, I32: P.rowPtr},
		{Name: "cols", Shape: []int{len(P.cols)}, I32: P.cols},
		{Name: "vals", Shape: []int{len(P.vals)}, F32: P.vals},
		{Name: "y", Shape: []int{n, 2}, F32: y},
		{Name: "update", Shape: []int{n, 2}, F32: u},
		{Name: "gains", Shape: []int{n, 2}, F32: g},
	}
}

// csr is a sparse P: the entries of row i are cols[rowPtr[i]:rowPtr[i+1]]
// with values vals[...], in stored order.
type csr struct {
	rowPtr, cols []int32
	vals         []float32
}

// early and late are the parameters of the two phases of a t-SNE run.
func early(kl bool) accel.TSNEParams {
	return accel.TSNEParams{LearningRate: 200, Momentum: 0.5, Exaggeration: 12, MinGain: 0.01, ComputeKL: kl}
}

func late(kl bool) accel.TSNEParams {
	return accel.TSNEParams{LearningRate: 200, Momentum: 0.8, Exaggeration: 1, MinGain: 0.01, ComputeKL: kl}
}

// pairP is the P of two points.
func pairP(*rand.Rand, int) csr {
	return csr{rowPtr: []int32{0, 1, 2}, cols: []int32{1, 0}, vals: []float32{0.5, 0.5}}
}

// randomP builds a P like t-SNE's: each point draws k neighbours, weights are
// symmetrised and normalised to sum 1, and each row's entries are stored in
// random order. Every 37th point has no neighbours, so its row is empty.
// With zeros, every 5th row also stores an entry of value 0; with diag, every
// 7th row stores an entry (i, i).
func randomP(k int, zeros, diag bool) func(r *rand.Rand, n int) csr {
	return func(r *rand.Rand, n int) csr {
		lonely := func(i int) bool { return i%37 == 5 }
		w := make([]map[int]float64, n)
		for i := range w {
			w[i] = map[int]float64{}
		}
		total := 0.0
		for i := range n {
			for range k {
				j := r.IntN(n)
				if j == i || lonely(i) || lonely(j) {
					continue
				}
				v := 0.01 + r.Float64()
				w[i][j] += v
				w[j][i] += v
				total += 2 * v
			}
		}
		type entry struct {
			j int32
			p float32
		}
		var P csr
		P.rowPtr = append(P.rowPtr, 0)
		for i := range n {
			var row []entry
			for _, j := range slices.Sorted(maps.Keys(w[i])) {
				row = append(row, entry{int32(j), float32(w[i][j] / total)})
			}
			if zeros && i%5 == 0 {
				row = append(row, entry{int32(r.IntN(n)), 0})
			}
			if diag && i%7 == 0 {
				row = append(row, entry{int32(i), float32(1 / float64(n*k))})
			}
			r.Shuffle(len(row), func(a, b int) { row[a], row[b] = row[b], row[a] })
			for _, e := range row {
				P.cols = append(P.cols, e.j)
				P.vals = append(P.vals, e.p)
			}
			P.rowPtr = append(P.rowPtr, int32(len(P.cols)))
		}
		return P
	}
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
	if p.Theta > 0 {
		z, rx, ry = specBarnesHut(Y, p.Theta)
	}
	for i := 0; i < N && p.Theta == 0; i++ {
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

// specBarnesHut is the repulsion of tsne_step with the Barnes-Hut
// threshold theta > 0: each point's z, rx and ry over the contract's
// quadtree of Y [N,2].
func specBarnesHut(Y []float32, theta float32) (z, rx, ry []float32) {
	N := len(Y) / 2

	// The tree: the bounding box, each point's cell coordinates and code.
	loX, hiX, loY, hiY := Y[0], Y[0], Y[1], Y[1]
	for i := 1; i < N; i++ {
		loX, hiX = min(loX, Y[2*i]), max(hiX, Y[2*i])
		loY, hiY = min(loY, Y[2*i+1]), max(hiY, Y[2*i+1])
	}
	w := max(hiX-loX, hiY-loY)
	cell := func(v, lo float32) uint32 {
		if w == 0 {
			return 0
		}
		return uint32(min(65535, math.Trunc(float64(float32(((v-lo)/w)*65536)))))
	}
	code := make([]uint32, N)
	for i := 0; i < N; i++ {
		qx, qy := cell(Y[2*i], loX), cell(Y[2*i+1], loY)
		for b := 0; b < 16; b++ {
			code[i] |= (qx>>b&1)<<(2*b) | (qy>>b&1)<<(2*b+1)
		}
	}
	// The points ordered by (code, i).
	o := make([]int, N)
	for i := range o {
		o[i] = i
	}
	slices.SortFunc(o, func(a, b int) int {
		if code[a] != code[b] {
			return cmp.Compare(code[a], code[b])
		}
		return a - b
	})
	at := make([]int, N) // at[o[r]] = r
	for r, j := range o {
		at[j] = r
	}
	// A cell is a run o[s:e) of that order; its count, sums and centre.
	centre := func(s, e int) (cx, cy, c float32) {
		sx, sy := float32(0), float32(0)
		for _, j := range o[s:e] {
			sx = sx + Y[2*j]
			sy = sy + Y[2*j+1]
		}
		c = float32(e - s)
		return sx / c, sy / c, c
	}
	// top is the top 2L bits of a code.
	top := func(c uint32, L int) uint64 { return uint64(c) >> (32 - 2*L) }

	z = make([]float32, N)
	rx = make([]float32, N)
	ry = make([]float32, N)
	for i := 0; i < N; i++ {
		zi, rxi, ryi := float32(0), float32(0), float32(0)
		add := func(cx, cy, c float32) {
			dx := Y[2*i] - cx
			dy := Y[2*i+1] - cy
			d2 := float32(dx*dx) + float32(dy*dy)
			q := 1 / (1 + d2)
			cq := float32(c * q)
			zi = zi + cq
			m := float32(cq * q)
			rxi = rxi + float32(m*dx)
			ryi = ryi + float32(m*dy)
		}
		var visit func(s, e, L int)
		visit = func(s, e, L int) {
			hasI := s <= at[i] && at[i] < e
			if e-s == 1 && hasI { // C = {i}
				return
			}
			if e-s == 1 { // C = {j}
				cx, cy, _ := centre(s, e)
				add(cx, cy, 1)
				return
			}
			wL := float32(w * float32(math.Ldexp(1, -L)))
			if !hasI {
				cx, cy, c := centre(s, e)
				dx := Y[2*i] - cx
				dy := Y[2*i+1] - cy
				d2 := float32(dx*dx) + float32(dy*dy)
				if float32(wL*wL) < float32(float32(theta*theta)*d2) {
					add(cx, cy, c)
					return
				}
			}
			if L == 16 {
				for _, j := range o[s:e] {
					if j != i {
						add(Y[2*j], Y[2*j+1], 1)
					}
				}
				return
			}
			// The children: the runs that share the top 2(L+1) bits.
			for a := s; a < e; {
				b := a
				for b < e && top(code[o[b]], L+1) == top(code[o[a]], L+1) {
					b++
				}
				visit(a, b, L+1)
				a = b
			}
		}
		visit(0, N, 0)
		z[i], rx[i], ry[i] = zi, rxi, ryi
	}
	return z, rx, ry
}

// tsneRef is one t-SNE iteration in float64.
type tsneRef struct {
	y, u, g []ev // the new embedding, update and gains, [N,2] row-major
	kl      ev   // valid when asked for
	// mag[d] is Σ|y[i,d]| over the points before re-centring, which bounds
	// how far from 0 the float32 column sums of the new embedding may be.
	mag [2]float64
}

// f64TSNEStep is tsne_step in float64. Where the float64 gradient is within
// its error bound of 0, float32 may take either branch of the gains rule and
// the reference allows both.
func f64TSNEStep(rowPtr, cols []int32, vals, y, u, g []float32, p accel.TSNEParams) tsneRef {
	n := len(y) / 2
	kernel := func(i, j int) (dx, dy, q ev) {
		dx = sub(exact(y[2*i]), exact(y[2*j]))
		dy = sub(exact(y[2*i+1]), exact(y[2*j+1]))
		d2 := add(mul(dx, dx), mul(dy, dy))
		one := ev{v: 1}
		return dx, dy, div(one, add(one, d2))
	}

	var zs sum
	rep := make([][2]ev, n)
	for i := range n {
		var z, rx, ry sum
		for j := range n {
			if j == i {
				continue
			}
			dx, dy, q := kernel(i, j)
			z.add(q)
			q2 := mul(q, q)
			rx.add(mul(q2, dx))
			ry.add(mul(q2, dy))
		}
		zs.add(z.ev())
		rep[i] = [2]ev{rx.ev(), ry.ev()}
	}
	Z := zs.ev()

	var ref tsneRef
	ref.u = make([]ev, 2*n)
	ref.g = make([]ev, 2*n)
	moved := make([]ev, 2*n)
	var cols2 [2]sum
	for i := range n {
		var ax, ay sum
		for e := rowPtr[i]; e < rowPtr[i+1]; e++ {
			dx, dy, q := kernel(i, int(cols[e]))
			pq := mul(exact(vals[e]), q)
			ax.add(mul(pq, dx))
			ay.add(mul(pq, dy))
		}
		att := [2]ev{ax.ev(), ay.ev()}
		for d := range 2 {
			k := 2*i + d
			grad := mul(ev{v: 4}, sub(mul(exact(p.Exaggeration), att[d]), div(rep[i][d], Z)))
			grow := add(exact(g[k]), exact(0.2))
			shrink := mul(exact(g[k]), exact(0.8))
			var h ev
			switch {
			case math.Abs(grad.v) <= 2*grad.e: // sign undecided
				h = hull(grow, shrink)
			case (grad.v > 0) != (u[k] > 0):
				h = grow
			default:
				h = shrink
			}
			h.v = max(h.v, float64(p.MinGain)) // max is 1-Lipschitz: the bound stands
			uk := sub(mul(exact(p.Momentum), exact(u[k])), mul(exact(p.LearningRate), mul(h, grad)))
			ref.g[k], ref.u[k] = h, uk
			moved[k] = add(exact(y[k]), uk)
			cols2[d].add(moved[k])
			ref.mag[d] += math.Abs(moved[k].v)
		}
	}
	ref.y = make([]ev, 2*n)
	for d := range 2 {
		mean := div(cols2[d].ev(), ev{v: float64(n)})
		for i := range n {
			ref.y[2*i+d] = sub(moved[2*i+d], mean)
		}
	}

	if p.ComputeKL {
		var kl sum
		for i := range n {
			var ki sum
			for e := rowPtr[i]; e < rowPtr[i+1]; e++ {
				pv := exact(vals[e])
				if vals[e] > 0 && int(cols[e]) != i {
					_, _, q := kernel(i, int(cols[e]))
					ki.add(mul(pv, logEv(div(mul(pv, Z), q))))
				}
			}
			kl.add(ki.ev())
		}
		ref.kl = kl.ev()
	}
	return ref
}

// centred checks that the new embedding, got[0], is centred: it is y -
// mean(y), so its float32 column sums are within (N+1)·u·Σ|y| of 0 (the
// rounding of the mean, whose sum may run in any order, plus that of each
// subtraction); twice that passes. A column whose reference is not finite,
// or may overflow in float32, has no mean to check.
func (ref tsneRef) centred(got []Tensor) []string {
	y := got[0].F32
	n := len(y) / 2
	var bad []string
	for d := range 2 {
		if !finite(ref.mag[d]) || slices.ContainsFunc(ref.y, func(w ev) bool { return w.over || !finite(w.v) }) {
			continue
		}
		var s float64
		for i := range n {
			s += float64(y[2*i+d])
		}
		mean, tol := s/float64(n), 2*float64(n+3)*u32*ref.mag[d]/float64(n)
		if !(math.Abs(mean) <= tol) {
			bad = append(bad, fmt.Sprintf("column %d of y has mean %g, want 0 ± %.3g", d, mean, tol))
		}
	}
	return bad
}
