package strictcpu

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// ---- a literal transcription of the contract -------------------------------

// specBHRepulsion is docs/determinism.md's "Barnes-Hut (θ > 0)" as written:
// the uncompressed tree of every level 0 to 16, cells found from the sorted
// codes on the way down, and a recursive visit. Slow; for the tests only.
func specBHRepulsion(Y []float32, theta float32) (z, rx, ry []float32) {
	n := len(Y) / 2
	lox, hix, loy, hiy := Y[0], Y[0], Y[1], Y[1]
	for i := range n {
		lox, hix = min(lox, Y[2*i]), max(hix, Y[2*i])
		loy, hiy = min(loy, Y[2*i+1]), max(hiy, Y[2*i+1])
	}
	w := max(hix-lox, hiy-loy)
	coord := func(v, lo float32) uint32 {
		if w == 0 {
			return 0
		}
		return uint32(min(65535, math.Trunc(float64(float32(((v-lo)/w)*65536)))))
	}
	code := make([]uint32, n)
	for i := range n {
		qx, qy := coord(Y[2*i], lox), coord(Y[2*i+1], loy)
		for b := range 16 {
			code[i] |= (qx>>b&1)<<(2*b) | (qy>>b&1)<<(2*b+1)
		}
	}
	o := make([]int, n)
	for i := range o {
		o[i] = i
	}
	sort.Slice(o, func(a, b int) bool {
		if code[o[a]] != code[o[b]] {
			return code[o[a]] < code[o[b]]
		}
		return o[a] < o[b]
	})
	// A cell is a run [lo, hi) of o; its centre from its sums in order.
	centre := func(lo, hi int) (cx, cy, c float32) {
		var sx, sy float32
		for _, j := range o[lo:hi] {
			sx = sx + Y[2*j]
			sy = sy + Y[2*j+1]
		}
		c = float32(hi - lo)
		return sx / c, sy / c, c
	}
	theta2 := float32(theta * theta)

	z, rx, ry = make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range n {
		var zi, sx, sy float32
		add := func(cx, cy, c float32) {
			dx := Y[2*i] - cx
			dy := Y[2*i+1] - cy
			d2 := float32(dx*dx) + float32(dy*dy)
			q := 1 / (1 + d2)
			cq := float32(c * q)
			zi = zi + cq
			m := float32(cq * q)
			sx = sx + float32(m*dx)
			sy = sy + float32(m*dy)
		}
		var visit func(lo, hi, L int)
		visit = func(lo, hi, L int) {
			if hi-lo == 1 && o[lo] == i {
				return
			}
			if hi-lo == 1 {
				cx, cy, _ := centre(lo, hi)
				add(cx, cy, 1)
				return
			}
			in := false
			for _, j := range o[lo:hi] {
				in = in || j == i
			}
			if !in {
				cx, cy, c := centre(lo, hi)
				dx := Y[2*i] - cx
				dy := Y[2*i+1] - cy
				d2 := float32(dx*dx) + float32(dy*dy)
				wL := float32(w * float32(math.Pow(2, -float64(L))))
				if float32(wL*wL) < float32(theta2*d2) {
					add(cx, cy, c)
					return
				}
			}
			if L == 16 {
				for _, j := range o[lo:hi] {
					if j != i {
						add(Y[2*j], Y[2*j+1], 1)
					}
				}
				return
			}
			// The children: the non-empty cells of level L+1, by code.
			for s := lo; s < hi; {
				e := s
				for e < hi && code[o[e]]>>(30-2*L) == code[o[s]]>>(30-2*L) {
					e++
				}
				visit(s, e, L+1)
				s = e
			}
		}
		visit(0, n, 0)
		z[i], rx[i], ry[i] = zi, sx, sy
	}
	return z, rx, ry
}

// specExactRepulsion is the exact step's repulsion as written.
func specExactRepulsion(Y []float32) (z, rx, ry []float32) {
	n := len(Y) / 2
	z, rx, ry = make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range n {
		for j := range n {
			if j == i {
				continue
			}
			dx := Y[2*i] - Y[2*j]
			dy := Y[2*i+1] - Y[2*j+1]
			q := 1 / (1 + (float32(dx*dx) + float32(dy*dy)))
			z[i] = z[i] + q
			q2 := float32(q * q)
			rx[i] = rx[i] + float32(q2*dx)
			ry[i] = ry[i] + float32(q2*dy)
		}
	}
	return z, rx, ry
}

// specTSNEStep is the rest of the contract's step around a repulsion: the
// attraction, gradient, gains, update, re-centring and KL divergence.
func specTSNEStep(in tsneInputs, p accel.TSNEParams, z, rx, ry []float32) (y, u, g []float32, kl float32) {
	Y := in.y
	n := len(Y) / 2
	Z := strictmath.TreeSum(z)
	y, u, g = make([]float32, 2*n), make([]float32, 2*n), make([]float32, 2*n)
	k := make([]float32, n)
	for i := range n {
		var ax, ay float32
		for e := in.rowPtr[i]; e < in.rowPtr[i+1]; e++ {
			j := int(in.cols[e])
			if j == i {
				continue
			}
			dx := Y[2*i] - Y[2*j]
			dy := Y[2*i+1] - Y[2*j+1]
			q := 1 / (1 + (float32(dx*dx) + float32(dy*dy)))
			pq := float32(in.vals[e] * q)
			ax = ax + float32(pq*dx)
			ay = ay + float32(pq*dy)
			if pv := in.vals[e]; pv > 0 {
				k[i] = k[i] + float32(pv*strictmath.Log(float32(pv*Z)/q))
			}
		}
		grad := [2]float32{
			float32(4 * (float32(p.Exaggeration*ax) - rx[i]/Z)),
			float32(4 * (float32(p.Exaggeration*ay) - ry[i]/Z)),
		}
		for d := range 2 {
			gv, uv, h := grad[d], in.u[2*i+d], in.g[2*i+d]
			if (gv > 0) != (uv > 0) {
				h = h + 0.2
			} else {
				h = float32(h * 0.8)
			}
			if h < p.MinGain {
				h = p.MinGain
			}
			uv = float32(p.Momentum*uv) - float32(p.LearningRate*float32(h*gv))
			y[2*i+d], u[2*i+d], g[2*i+d] = Y[2*i+d]+uv, strictmath.Canon(uv), strictmath.Canon(h)
		}
	}
	col := make([]float32, n)
	for d := range 2 {
		for i := range n {
			col[i] = y[2*i+d]
		}
		mean := strictmath.TreeSum(col) / float32(n)
		for i := range n {
			y[2*i+d] = strictmath.Canon(y[2*i+d] - mean)
		}
	}
	if !p.ComputeKL {
		return y, u, g, 0
	}
	return y, u, g, strictmath.Canon(strictmath.TreeSum(k))
}

// ---- embeddings ------------------------------------------------------------

// clusteredTSNE returns n points in k Gaussian clusters of the plane, as an
// embedding looks after the early iterations: centres spread over [-30, 30]²,
// each cluster of standard deviation 2, P from randomP.
func clusteredTSNE(r *rand.Rand, n, k, perRow int) tsneInputs {
	in := randomTSNE(r, n, perRow)
	centres := make([][2]float64, k)
	for c := range centres {
		centres[c] = [2]float64{60*r.Float64() - 30, 60*r.Float64() - 30}
	}
	for i := range n {
		c := centres[i%k]
		in.y[2*i] = float32(c[0] + 2*r.NormFloat64())
		in.y[2*i+1] = float32(c[1] + 2*r.NormFloat64())
	}
	return in
}

// bhEmbeddings are the embeddings the kernel is checked against the
// transcription on: random ones, and the edge cases of the tree.
func bhEmbeddings() map[string]tsneInputs {
	r := newRand(61)
	e := map[string]tsneInputs{}
	for _, n := range []int{2, 3, 50, 1000} {
		e[fmt.Sprintf("random n=%d", n)] = randomTSNE(r, n, 12)
	}
	e["clusters n=1000"] = clusteredTSNE(r, 1000, 10, 12)

	// Many identical rows: a few distinct points, each repeated, so that
	// level-16 cells hold several points, i among them or not.
	dup := randomTSNE(r, 300, 12)
	for i := range 300 {
		k := i % 7
		dup.y[2*i], dup.y[2*i+1] = float32(k)*0.75-2, float32(k*k%5)-1
	}
	e["duplicates"] = dup
	// All points identical: w = 0, every code 0.
	same := randomTSNE(r, 40, 12)
	for i := range same.y {
		same.y[i] = 1.5
	}
	e["all identical"] = same
	// One coordinate identical, the other spread.
	line := randomTSNE(r, 60, 12)
	for i := range 60 {
		line.y[2*i] = -0.25
	}
	e["vertical line"] = line
	// Points on the edges of the box and at its corners, where the codes
	// clamp to 65535, on a grid whose values divide w exactly.
	edge := randomTSNE(r, 200, 12)
	for i := range 200 {
		edge.y[2*i], edge.y[2*i+1] = float32(i%5)*0.5-1, float32(i/5%9)*0.25-1
		if i%11 == 0 {
			edge.y[2*i], edge.y[2*i+1] = 1, 1 // the top corner
		}
	}
	e["box edges"] = edge
	// Distinct points closer than a level-16 cell, far from the rest: level-16
	// cells of several points whose centre is not any of them.
	tight := randomTSNE(r, 120, 12)
	for i := range 120 {
		tight.y[2*i] = 1 + float32(i%4)*1e-6
		tight.y[2*i+1] = -2 + float32(i%3)*1e-6
		if i%10 == 0 {
			tight.y[2*i], tight.y[2*i+1] = float32(i)*0.1, 5
		}
	}
	e["tight clusters"] = tight
	// Signed zeros and subnormals.
	small := randomTSNE(r, 30, 12)
	for i := range 30 {
		small.y[2*i] = []float32{0, negZ, math.Float32frombits(3), -math.Float32frombits(5), 1e-30}[i%5]
		small.y[2*i+1] = []float32{negZ, 0, 1e-38, -1e-38}[i%4]
	}
	e["zeros and subnormals"] = small
	return e
}

// ---- tests -----------------------------------------------------------------

// TestTSNEBarnesHutContract checks the kernel's repulsion, and a whole step,
// against the literal transcription bit for bit.
func TestTSNEBarnesHutContract(t *testing.T) {
	k := New(2)
	for name, in := range bhEmbeddings() {
		for _, theta := range []float32{0.3, 0.5, 1, 3} {
			n := len(in.y) / 2
			wz, wrx, wry := specBHRepulsion(in.y, theta)
			z, rx, ry := make([]float32, n), make([]float32, n), make([]float32, n)
			if err := k.tsneRepulsionBH(bg, in.y, theta, z, rx, ry); err != nil {
				t.Fatal(err)
			}
			if !sameBits(z, wz) || !sameBits(rx, wrx) || !sameBits(ry, wry) {
				t.Errorf("%s θ=%g: the repulsion differs from the contract's", name, theta)
				continue
			}

			p := accel.TSNEParams{LearningRate: 200, Momentum: 0.5, Exaggeration: 12, MinGain: 0.01, ComputeKL: true, Theta: theta}
			y, u, g, kl := tsneRun(t, 2, in, p)
			wy, wu, wg, wkl := specTSNEStep(in, p, wz, wrx, wry)
			what := fmt.Sprintf("%s θ=%g", name, theta)
			checkBits(t, what+": y", y, wy)
			checkBits(t, what+": update", u, wu)
			checkBits(t, what+": gains", g, wg)
			checkBits(t, what+": kl", []float32{kl}, []float32{wkl})
		}
	}
}

// TestTSNEBarnesHutTree checks the compressed tree's shape: at most 2N−1
// cells, each with at least two children unless it is a single point or of
// level 16, and runs that partition their parent's.
func TestTSNEBarnesHutTree(t *testing.T) {
	for name, in := range bhEmbeddings() {
		tr, err := New(1).buildBHTree(bg, in.y)
		if err != nil {
			t.Fatal(err)
		}
		n := len(in.y) / 2
		if len(tr.cells) > 2*n-1 || cap(tr.cells) != 2*n-1 {
			t.Errorf("%s: %d cells (room for %d) for %d points", name, len(tr.cells), cap(tr.cells), n)
		}
		for k, c := range tr.cells {
			children, at := 0, c.first
			for ch := k + 1; ch < int(c.end); ch = int(tr.cells[ch].end) {
				if tr.cells[ch].first != at || tr.cells[ch].level <= c.level {
					t.Fatalf("%s: cell %d's child %d does not continue its run", name, k, ch)
				}
				at = tr.cells[ch].last
				children++
			}
			switch {
			case c.last-c.first == 1 || c.level == bhLevels:
				if children != 0 {
					t.Errorf("%s: leaf %d has %d children", name, k, children)
				}
			case children < 2 || at != c.last:
				t.Errorf("%s: cell %d of level %d has %d children covering [%d, %d) of [%d, %d)",
					name, k, c.level, children, c.first, at, c.first, c.last)
			}
		}
	}
}

// TestTSNEBarnesHutExactLimit checks θ = 0, which is the exact step bit for
// bit, and θ = 1e-3, which opens almost every cell: the same sums in
// another order, so within rounding of the exact step: max |Δy| ≤
// 1e-6·max|y| and the KL divergence within 1e-5 relatively.
func TestTSNEBarnesHutExactLimit(t *testing.T) {
	in := randomTSNE(newRand(62), 1000, 12)
	p := accel.TSNEParams{LearningRate: 200, Momentum: 0.5, Exaggeration: 12, MinGain: 0.01, ComputeKL: true}
	wz, wrx, wry := specExactRepulsion(in.y)
	wy, wu, wg, wkl := specTSNEStep(in, p, wz, wrx, wry)
	y, u, g, kl := tsneRun(t, 2, in, p)
	checkBits(t, "θ=0: y", y, wy)
	checkBits(t, "θ=0: update", u, wu)
	checkBits(t, "θ=0: gains", g, wg)
	checkBits(t, "θ=0: kl", []float32{kl}, []float32{wkl})

	p.Theta = 1e-3
	y, _, _, kl = tsneRun(t, 2, in, p)
	var dmax, ymax float64
	for i := range y {
		dmax = max(dmax, math.Abs(float64(y[i])-float64(wy[i])))
		ymax = max(ymax, math.Abs(float64(wy[i])))
	}
	t.Logf("θ=1e-3: max |Δy| = %.3g = %.3g·max|y|, KL %g against %g", dmax, dmax/ymax, kl, wkl)
	// Measured: 1.9e-7·max|y|, a few ulps of the largest coordinate.
	if dmax > 1e-6*ymax {
		t.Errorf("θ=1e-3: max |Δy| = %g, above 1e-6·max|y| = %g", dmax, 1e-6*ymax)
	}
	if math.Abs(float64(kl)-float64(wkl)) > 1e-5*math.Abs(float64(wkl)) {
		t.Errorf("θ=1e-3: KL %g, exact %g", kl, wkl)
	}
}

// TestTSNEBarnesHutForceError measures the Barnes-Hut repulsive force
// F = (rx, ry)/Z at θ = 0.5 against the exact one on 2000 points in 10
// clusters: ||F_bh − F_exact|| / ||F_exact|| over all points. Measured:
// 0.0025 at θ = 0.25, 0.013 at θ = 0.5 and 0.064 at θ = 1.
func TestTSNEBarnesHutForceError(t *testing.T) {
	in := clusteredTSNE(newRand(63), 2000, 10, 12)
	k := New(2)
	n := len(in.y) / 2
	force := func(theta float32) []float64 {
		z, rx, ry := make([]float32, n), make([]float32, n), make([]float32, n)
		var err error
		if theta > 0 {
			err = k.tsneRepulsionBH(bg, in.y, theta, z, rx, ry)
		} else {
			err = k.tsneRepulsionExact(bg, in.y, z, rx, ry)
		}
		if err != nil {
			t.Fatal(err)
		}
		Z := float64(strictmath.TreeSum(z))
		f := make([]float64, 2*n)
		for i := range n {
			f[2*i], f[2*i+1] = float64(rx[i])/Z, float64(ry[i])/Z
		}
		return f
	}
	exact := force(0)
	for _, c := range []struct {
		theta float32
		bound float64
	}{{0.25, 5e-3}, {0.5, 2e-2}, {1, 8e-2}} {
		bh := force(c.theta)
		var diff, norm float64
		for i := range bh {
			diff += (bh[i] - exact[i]) * (bh[i] - exact[i])
			norm += exact[i] * exact[i]
		}
		rel := math.Sqrt(diff / norm)
		t.Logf("θ=%g: ||F_bh − F_exact|| / ||F_exact|| = %.3g", c.theta, rel)
		if rel > c.bound {
			t.Errorf("θ=%g: relative force error %.3g, above %g", c.theta, rel, c.bound)
		}
	}
}

// TestThreadInvarianceTSNEBarnesHut runs a few steps on 1, 2 and 7 threads
// and on the portable loops: the same bits.
func TestThreadInvarianceTSNEBarnesHut(t *testing.T) {
	for _, n := range []int{2, 3, 300, 3001} {
		in := clusteredTSNE(newRand(uint64(64+n)), n, 5, 12)
		p := accel.TSNEParams{LearningRate: 200, Momentum: 0.8, Exaggeration: 12, MinGain: 0.01, ComputeKL: true, Theta: 0.5}
		run := func(s *accel.Session) []float32 {
			st := in.state(t, s)
			var kls []float32
			for range 3 {
				kl, err := s.TSNEStep(bg, st, p)
				if err != nil {
					t.Fatalf("tsne_step: %v", err)
				}
				kls = append(kls, kl)
			}
			out := append(readF32(t, s, st.Y), readF32(t, s, st.Update)...)
			out = append(out, readF32(t, s, st.Gains)...)
			return append(out, kls...)
		}
		first := run(newSession(t, 1))
		for _, threads := range []int{2, 7} {
			if got := run(newSession(t, threads)); !sameBits(got, first) {
				t.Errorf("n=%d: %d threads differ from 1", n, threads)
			}
		}
		if got := run(newSessionKernels(t, 2, scalarKernels)); !sameBits(got, first) {
			t.Errorf("n=%d: the portable loops differ", n)
		}
	}
}

// TestTSNEBarnesHutCancel checks that a step ends promptly when its context
// does, and leaves the state as it was.
func TestTSNEBarnesHutCancel(t *testing.T) {
	p := accel.TSNEParams{LearningRate: 200, Momentum: 0.5, Exaggeration: 12, MinGain: 0.01, ComputeKL: true, Theta: 0.5}
	s := newSession(t, 2)
	in := randomTSNE(newRand(65), 3000, 10)
	st := in.state(t, s)
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if _, err := s.TSNEStep(ctx, st, p); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled tsne_step: %v, want context.Canceled", err)
	}
	checkBits(t, "y after a cancelled step", readF32(t, s, st.Y), in.y)

	// A small θ opens nearly every cell: a step of seconds, stopped by its
	// deadline during the walks.
	big := randomTSNE(newRand(66), 40000, 4)
	bst := big.state(t, s)
	p.Theta = 0.02
	ctx, cancel = context.WithTimeout(bg, 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.TSNEStep(ctx, bst, p)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("tsne_step past its deadline: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("tsne_step took %v to notice its deadline", d)
	}
	checkBits(t, "y after a cancelled step", readF32(t, s, bst.Y), big.y)
	checkBits(t, "update after a cancelled step", readF32(t, s, bst.Update), big.u)
	checkBits(t, "gains after a cancelled step", readF32(t, s, bst.Gains), big.g)
}

// BenchmarkTSNEStepBarnesHut times one Barnes-Hut iteration at θ = 0.5 on
// clustered embeddings with about 90 entries of P per row, and the exact
// step at N = 10,000 beside it.
func BenchmarkTSNEStepBarnesHut(b *testing.B) {
	for _, c := range []struct {
		n     int
		theta float32
	}{{10000, 0.5}, {70000, 0.5}, {10000, 0}} {
		b.Run(fmt.Sprintf("n=%d/theta=%g", c.n, c.theta), func(b *testing.B) {
			r := rand.New(rand.NewPCG(5, uint64(c.n)))
			s := newSession(b, 0)
			st := clusteredTSNE(r, c.n, 10, 90).state(b, s)
			p := accel.TSNEParams{LearningRate: 200, Momentum: 0.5, Exaggeration: 12, MinGain: 0.01, Theta: c.theta}
			for b.Loop() {
				if _, err := s.TSNEStep(bg, st, p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e6/float64(b.N), "ms/op")
		})
	}
}
