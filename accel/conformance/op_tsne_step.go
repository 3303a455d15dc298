package conformance

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

// csr is a sparse P: the entries of row i are cols[rowPtr[i]:rowPtr[i+1]]
// with values vals[...], in stored order.
type csr struct {
	rowPtr, cols []int32
	vals         []float32
}

type tsneCase struct {
	name    string
	n       int
	steps   int // consecutive iterations on the same tensors; 0 means 1
	p       accel.TSNEParams
	P       func(r *rand.Rand, n int) csr
	y, u, g fill // the initial embedding, update and gains
}

// early and late are the parameters of the two phases of a t-SNE run.
func early(kl bool) accel.TSNEParams {
	return accel.TSNEParams{LearningRate: 200, Momentum: 0.5, Exaggeration: 12, MinGain: 0.01, ComputeKL: kl}
}

func late(kl bool) accel.TSNEParams {
	return accel.TSNEParams{LearningRate: 200, Momentum: 0.8, Exaggeration: 1, MinGain: 0.01, ComputeKL: kl}
}

var tsneCases = []tsneCase{
	{name: "n2", n: 2, P: pairP, p: early(true), y: normal(1), u: cycle(0), g: cycle(1)},
	{name: "n2-late", n: 2, P: pairP, p: late(true), y: normal(3), u: normal(1), g: uniform(0.005, 2)},
	// Both points at one place: every force is 0.
	{name: "n2-coincident", n: 2, P: pairP, p: late(true), y: cycle(0.25, -0.5), u: cycle(0.5, -0.5), g: cycle(1)},
	{name: "n300-exaggerated-kl", n: 300, P: randomP(8, false, false), p: early(true), y: normal(1e-2), u: cycle(0), g: cycle(1)},
	{name: "n300-exaggerated", n: 300, P: randomP(8, false, false), p: early(false), y: normal(1), u: normal(0.1), g: uniform(0.5, 2)},
	{name: "n300-kl", n: 300, P: randomP(8, false, false), p: late(true), y: normal(10), u: normal(0.5), g: uniform(0.005, 3)},
	{name: "n300", n: 300, P: randomP(8, false, false), p: late(false), y: normal(10), u: normal(0.5), g: uniform(0.005, 3)},
	// Rows with no entries and entries of value 0, which KL skips.
	{name: "n257-empty-rows-zero-entries-kl", n: 257, P: randomP(5, true, false), p: late(true), y: normal(5), u: normal(0.5), g: uniform(0.005, 3)},
	// Entries (i, i): they contribute zero to the attraction (dx = dy = 0)
	// but, as the contract is written, p·log(p·Z) to the KL divergence (q = 1).
	{name: "n211-diagonal-entries", n: 211, P: randomP(5, false, true), p: late(false), y: normal(5), u: normal(0.5), g: uniform(0.005, 3)},
	{name: "n211-diagonal-entries-kl", n: 211, P: randomP(5, false, true), p: early(true), y: normal(1), u: normal(0.5), g: uniform(0.005, 3)},
	{name: "n97-4-steps-kl", n: 97, steps: 4, P: randomP(6, true, false), p: early(true), y: normal(1e-2), u: cycle(0), g: cycle(1)},
	{name: "n1000", n: 1000, P: randomP(10, false, false), p: late(false), y: normal(5), u: normal(0.1), g: uniform(0.5, 2)},
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

// tsneState is the state of an iteration: the embedding, update and gains,
// [N,2] row-major, and the KL divergence returned.
type tsneState struct {
	y, u, g []float32
	kl      float32
}

// TestTSNEStep checks tsne_step on two points, on a few hundred with a random
// sparse P, and over consecutive steps: the new embedding, update and gains,
// the KL divergence, that the embedding is centred, and that P is unchanged.
func TestTSNEStep(t *testing.T, b accel.Backend) {
	for _, c := range tsneCases {
		t.Run(c.name, func(t *testing.T) {
			r := rng("tsne_step/" + c.name)
			P := c.P(r, c.n)
			in := tsneState{y: c.y(r, 2*c.n), u: c.u(r, 2*c.n), g: c.g(r, 2*c.n)}

			h := open(t, b)
			pIn := []input{
				{name: "row_ptr", shape: []int{c.n + 1}, i32: P.rowPtr},
				{name: "cols", shape: []int{len(P.cols)}, i32: P.cols},
				{name: "vals", shape: []int{len(P.vals)}, f32: P.vals},
			}
			shape := []int{c.n, 2}
			yIn := input{name: "y", shape: shape, f32: in.y}
			uIn := input{name: "update", shape: shape, f32: in.u}
			gIn := input{name: "gains", shape: shape, f32: in.g}
			st := accel.TSNEState{
				RowPtr: h.upload(pIn[0]), Cols: h.upload(pIn[1]), Vals: h.upload(pIn[2]),
				Y: h.upload(yIn), Update: h.upload(uIn), Gains: h.upload(gIn),
			}

			steps := max(c.steps, 1)
			for step := range steps {
				if steps > 1 {
					t.Logf("step %d of %d", step+1, steps) // precedes the step's failures
				}
				got := h.tsneStep(st, c.p)
				checkTSNE(t, h.det, P, in, got, c.p)
				h.unchanged(pIn[0], st.RowPtr)
				h.unchanged(pIn[1], st.Cols)
				h.unchanged(pIn[2], st.Vals)

				// Again from the same state.
				yIn.f32, uIn.f32, gIn.f32 = in.y, in.u, in.g
				h.write(yIn, st.Y)
				h.write(uIn, st.Update)
				h.write(gIn, st.Gains)
				again := h.tsneStep(st, c.p)
				for _, o := range []struct {
					name        string
					shape       []int
					first, more []float32
				}{
					{"y", shape, got.y, again.y},
					{"update", shape, got.u, again.u},
					{"gains", shape, got.g, again.g},
					{"KL", []int{1}, []float32{got.kl}, []float32{again.kl}},
				} {
					if d := bitDiff(o.shape, o.more, o.first); d != "" {
						t.Errorf("second run from the same state gives another %s (got: second, want: first):\n%s", o.name, d)
					}
				}
				in = again
			}
		})
	}
}

// tsneStep runs one iteration and reads the new state.
func (h *harness) tsneStep(st accel.TSNEState, p accel.TSNEParams) tsneState {
	h.t.Helper()
	kl, err := h.s.TSNEStep(h.ctx, st, p)
	if err != nil {
		h.t.Fatalf("tsne_step failed: %v", err)
	}
	return tsneState{y: h.download(st.Y), u: h.download(st.Update), g: h.download(st.Gains), kl: kl}
}

// checkTSNE checks the state after one iteration from in.
func checkTSNE(t *testing.T, det bool, P csr, in, got tsneState, p accel.TSNEParams) {
	t.Helper()
	n := len(in.y) / 2
	shape := []int{n, 2}
	ref := f64TSNEStep(P.rowPtr, P.cols, P.vals, in.y, in.u, in.g, p)
	for _, o := range []struct {
		name string
		got  []float32
		want []ev
	}{{"y", got.y, ref.y}, {"update", got.u, ref.u}, {"gains", got.g, ref.g}} {
		if d := nearDiff(shape, o.got, o.want); d != "" {
			t.Errorf("%s differs from float64 beyond the error bound:\n%s", o.name, d)
		}
	}
	switch {
	case !p.ComputeKL && got.kl != 0:
		t.Errorf("KL %s without ComputeKL, want 0", fbits(got.kl))
	case p.ComputeKL && !ref.kl.admits(got.kl):
		t.Errorf("KL %s differs from float64 %s", fbits(got.kl), ref.kl)
	}

	// Centring: the new Y is y - mean(y), so its float32 column sums are
	// within (N+1)·u·Σ|y| of 0 (the rounding of the mean, whose sum may run
	// in any order, plus that of each subtraction); twice that passes.
	for d := range 2 {
		var s float64
		for i := range n {
			s += float64(got.y[2*i+d])
		}
		mean, tol := s/float64(n), 2*float64(n+3)*u32*ref.mag[d]/float64(n)
		if !(math.Abs(mean) <= tol) {
			t.Errorf("column %d of y has mean %g, want 0 ± %.3g", d, mean, tol)
		}
	}

	if !det {
		return
	}
	y, u, g, kl := specTSNEStep(P.rowPtr, P.cols, P.vals, in.y, in.u, in.g, p)
	for _, o := range []struct {
		name      string
		shape     []int
		got, want []float32
	}{
		{"y", shape, got.y, y},
		{"update", shape, got.u, u},
		{"gains", shape, got.g, g},
		{"KL", []int{1}, []float32{got.kl}, []float32{kl}},
	} {
		if d := bitDiff(o.shape, o.got, o.want); d != "" {
			t.Errorf("%s differs from the contract (docs/determinism.md):\n%s", o.name, d)
		}
	}
}
