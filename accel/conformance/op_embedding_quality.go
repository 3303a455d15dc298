package conformance

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.EmbeddingQualityParams]{
	op:    accel.EmbeddingQuality,
	cases: qualityCases,
	spec: func(p accel.EmbeddingQualityParams, in []Tensor) [][]float32 {
		T, A := specEmbeddingQuality(in[0].F32, in[0].Shape[1], in[1].F32, in[1].Shape[1], in[2].I32, in[0].Shape[0], p.K)
		return [][]float32{{T, A}}
	},
	float64: func(p accel.EmbeddingQualityParams, in []Tensor) reference {
		return reference{results: [][]ev{f64EmbeddingQuality(in[0].F32, in[0].Shape[1], in[1].F32, in[1].Shape[1], in[2].I32, in[0].Shape[0], p.K)}}
	},
})

func qualityCases() []Case {
	var cases []Case
	// The grid: the value classes of data and embedding on every size
	// class, with labels. Both are finite (the op refuses the rest).
	for _, sh := range []struct {
		size    string
		n, d, e int
		k       int
	}{
		{SizeTiny, 3, 2, 1, 1}, // 2k = N-1
		{SizeOdd, 97, 13, 2, 5},
		{SizeOdd, 61, 1, 1, 7},
		{SizeLarge, 500, 30, 2, 15},
	} {
		for _, class := range []string{Uniform, Normal, Heavy, NegZero, Subnormal, Cancel, Exact, Wide} {
			f := affinityFill(class)
			n, d, e := sh.n, sh.d, sh.e
			cases = append(cases, gridCase(accel.EmbeddingQuality, sh.size, dims(n, d, e), class,
				accel.EmbeddingQualityParams{K: sh.k}, func(r *rand.Rand) []Tensor {
					return qualityInputs(n, d, e, f(r, n*d), f(r, n*e), randomLabels(r, n, 0, 4))
				}))
		}
	}

	// Hand-picked: no labels, k at its edges, ties in distance and in the
	// vote, embeddings that keep the data's neighbourhoods and some that
	// do not.
	type data func(r *rand.Rand, n, d, e int) (x, y []float32, labels []int32)
	for _, c := range []struct {
		size, label, values string
		n, d, e, k          int
		gen                 data
	}{
		{SizeTiny, "n3-k1-unlabelled", Normal, 3, 2, 2, 1, unlabelled(normal(1))},
		{SizeTiny, "n5-k2-labelled", Normal, 5, 3, 1, 2, labelled(normal(1), 0, 1)},
		// 2k = N-1, the largest k.
		{SizeOdd, "n21-k10", Normal, 21, 4, 2, 10, labelled(normal(1), 0, 2)},
		{SizeOdd, "n21-k10-unlabelled", Normal, 21, 4, 2, 10, unlabelled(normal(1))},
		{SizeOdd, "n40-k1", Normal, 40, 6, 2, 1, labelled(normal(1), 0, 3)},
		{SizeOdd, "n64-d1-e1-unlabelled", Uniform, 64, 1, 1, 4, unlabelled(uniform(-1, 1))},
		// Small integer lattices: many exact ties of distance in the data
		// and in the embedding, broken by index; with two labels and an
		// even k, ties in the vote, won by the least label.
		{SizeOdd, "n80-lattice-ties", Exact, 80, 2, 1, 4, latticeData(2, 1, -1, 0)},
		{SizeOdd, "n80-lattice-ties-negative-labels", Exact, 80, 3, 2, 6, latticeData(1, 2, -3, 3)},
		// Every point twice: a twin at distance 0 in both.
		{SizeOdd, "n90-twins", Normal, 90, 5, 2, 5, twinData},
		// An embedding of clusters that keeps them: trustworthiness near 1,
		// and the labels of the clusters voted right.
		{SizeOdd, "n200-clusters-kept", Normal, 200, 10, 2, 10, keptClusters},
		{SizeOdd, "n200-clusters-kept-unlabelled", Normal, 200, 10, 2, 10, func(r *rand.Rand, n, d, e int) ([]float32, []float32, []int32) {
			x, y, _ := keptClusters(r, n, d, e)
			return x, y, nil
		}},
		// One label for every point: accuracy 1.
		{SizeOdd, "n50-one-label", Normal, 50, 3, 2, 3, labelled(normal(1), 7, 7)},
		{SizeLarge, "n1000-clusters-kept", Normal, 1000, 50, 2, 30, keptClusters},
	} {
		n, d, e, gen := c.n, c.d, c.e, c.gen
		cases = append(cases, newCase(accel.EmbeddingQuality, c.size, c.label, c.values,
			accel.EmbeddingQualityParams{K: c.k}, func(r *rand.Rand) []Tensor {
				x, y, labels := gen(r, n, d, e)
				return qualityInputs(n, d, e, x, y, labels)
			}))
	}
	return cases
}

// randomLabels draws n labels in [lo, hi].
func randomLabels(r *rand.Rand, n int, lo, hi int32) []int32 {
	l := make([]int32, n)
	for i := range l {
		l[i] = lo + r.Int32N(hi-lo+1)
	}
	return l
}

// labelled draws the data and the embedding from f and labels in [lo, hi].
func labelled(f fill, lo, hi int32) func(r *rand.Rand, n, d, e int) ([]float32, []float32, []int32) {
	return func(r *rand.Rand, n, d, e int) ([]float32, []float32, []int32) {
		return f(r, n*d), f(r, n*e), randomLabels(r, n, lo, hi)
	}
}

func unlabelled(f fill) func(r *rand.Rand, n, d, e int) ([]float32, []float32, []int32) {
	return func(r *rand.Rand, n, d, e int) ([]float32, []float32, []int32) { return f(r, n*d), f(r, n*e), nil }
}

// latticeData draws data on the integer lattice [-m, m] and an embedding
// on [-me, me], with labels in [lo, hi].
func latticeData(m, me int, lo, hi int32) func(r *rand.Rand, n, d, e int) ([]float32, []float32, []int32) {
	return func(r *rand.Rand, n, d, e int) ([]float32, []float32, []int32) {
		return integers(m, 0)(r, n*d), integers(me, 0)(r, n*e), randomLabels(r, n, lo, hi)
	}
}

// twinData places a copy of each of n/2 points, in the data and in the
// embedding, at random positions; twins share their label.
func twinData(r *rand.Rand, n, d, e int) ([]float32, []float32, []int32) {
	x, y, l := normal(1)(r, n*d), normal(1)(r, n*e), randomLabels(r, n, 0, 3)
	perm := r.Perm(n)
	for a := 0; a+1 < n; a += 2 {
		i, j := perm[a], perm[a+1]
		copy(x[j*d:(j+1)*d], x[i*d:(i+1)*d])
		copy(y[j*e:(j+1)*e], y[i*e:(i+1)*e])
		l[j] = l[i]
	}
	return x, y, l
}

// keptClusters draws 6 clusters in the data, labelled by cluster, and
// embeds each point at its cluster's place in the plane plus noise.
func keptClusters(r *rand.Rand, n, d, e int) ([]float32, []float32, []int32) {
	const c = 6
	centres := make([]float64, c*d)
	for i := range centres {
		centres[i] = 10 * r.NormFloat64()
	}
	x, y, l := make([]float32, n*d), make([]float32, n*e), make([]int32, n)
	for i := range n {
		k := r.IntN(c)
		l[i] = int32(k)
		for t := range d {
			x[i*d+t] = float32(centres[k*d+t] + r.NormFloat64())
		}
		for t := range e {
			y[i*e+t] = float32(10*math.Cos(float64(k+t)) + 0.5*r.NormFloat64())
		}
	}
	return x, y, l
}

func qualityInputs(n, d, e int, x, y []float32, labels []int32) []Tensor {
	in := []Tensor{
		{Name: "x", Shape: []int{n, d}, F32: x},
		{Name: "y", Shape: []int{n, e}, F32: y},
		{},
	}
	if labels != nil {
		in[2] = Tensor{Name: "labels", Shape: []int{n}, I32: labels}
	}
	return in
}

// specEmbeddingQuality is embedding_quality of X [N,D] and Y [N,E],
// row-major, with labels (nil for none): trustworthiness T and accuracy A.
func specEmbeddingQuality(X []float32, D int, Y []float32, E int, labels []int32, N, k int) (T, A float32) {
	// The distances of tsne_affinities, in order over the features from +0.
	dist := func(Z []float32, W, i, j int) float32 {
		s := float32(0)
		for t := 0; t < W; t++ {
			diff := Z[i*W+t] - Z[j*W+t]
			s = s + float32(diff*diff)
		}
		return s
	}
	dX := func(i, j int) float32 { return dist(X, D, i, j) }
	dY := func(i, j int) float32 { return dist(Y, E, i, j) }
	// less reports whether (d1, m1) < (d2, m2).
	less := func(d1 float32, m1 int, d2 float32, m2 int) bool {
		return d1 < d2 || d1 == d2 && m1 < m2
	}

	var S int64
	correct := 0
	for i := 0; i < N; i++ {
		// V_i: the k nearest j != i in the embedding, by (dY(i,j), j).
		var js []int
		for j := 0; j < N; j++ {
			if j != i {
				js = append(js, j)
			}
		}
		slices.SortFunc(js, func(a, b int) int {
			if less(dY(i, a), a, dY(i, b), b) {
				return -1
			}
			return 1
		})
		V := js[:k]

		// r(i,j) = 1 + #{m ∉ {i, j} : (dX(i,m), m) < (dX(i,j), j)}.
		for _, j := range V {
			r := 1
			dij := dX(i, j)
			for m := 0; m < N; m++ {
				if m != i && m != j && less(dX(i, m), m, dij, j) {
					r++
				}
			}
			S += int64(max(0, r-k))
		}

		if labels != nil {
			votes := map[int32]int{}
			for _, j := range V {
				votes[labels[j]]++
			}
			var winner int32
			most := 0
			for l, v := range votes {
				if v > most || v == most && l < winner {
					winner, most = l, v
				}
			}
			if winner == labels[i] {
				correct++
			}
		}
	}
	T = float32(1 - float64(2*S)/(float64(N)*float64(k)*float64(2*N-3*k-1)))
	A = strictmath.NaN()
	if labels != nil {
		A = float32(float64(correct) / float64(N))
	}
	return T, A
}

// f64EmbeddingQuality is embedding_quality from float64 distances and full
// sorts. Where float32 rounding of the distances could reorder two
// neighbours (their float64 distances lie within their error bounds), the
// bounds of T and A widen by what the swap could change.
func f64EmbeddingQuality(X []float32, D int, Y []float32, E int, labels []int32, N, k int) []ev {
	type cand struct {
		m     int
		d, e  float64
		exact bool
	}
	dists := func(Z []float32, W, i int) []cand {
		var cs []cand
		for m := range N {
			if m == i {
				continue
			}
			var s float64
			integral := true
			for t := range W {
				diff := float64(Z[i*W+t]) - float64(Z[m*W+t])
				s += diff * diff
				integral = integral && diff == math.Trunc(diff)
			}
			c := cand{m: m, d: s, e: float64(W+3)*u32*s + float64(W)*0x1p-147, exact: integral && s < 1<<24}
			if c.exact {
				c.e = 0
			}
			cs = append(cs, c)
		}
		slices.SortFunc(cs, func(a, b cand) int {
			if a.d != b.d {
				return cmp.Compare(a.d, b.d)
			}
			return a.m - b.m
		})
		return cs
	}
	rowsEqual := func(Z []float32, W, a, b int) bool {
		return sameRow(Z, W, a, b)
	}
	// close reports whether float32 may order a and b otherwise than
	// float64 does.
	close := func(Z []float32, W int, a, b cand) bool {
		if a.d == b.d && (a.exact && b.exact || rowsEqual(Z, W, a.m, b.m)) {
			return false // an exact tie, broken by index in both
		}
		return math.Abs(a.d-b.d) <= 2*(a.e+b.e)
	}

	var S, slackS int64
	correct, slackA := 0, 0
	for i := range N {
		ys := dists(Y, E, i)
		V := ys[:k]
		// Swaps across the boundary of V_i that rounding could make.
		in, out := 0, 0
		for _, a := range V {
			if close(Y, E, a, ys[k]) {
				in++
			}
		}
		for _, b := range ys[k:] {
			if close(Y, E, V[k-1], b) {
				out++
			}
		}
		if swaps := min(in, out); swaps > 0 {
			slackS += int64(swaps * (N - 1 - k))
			slackA++
		}

		xs := dists(X, D, i)
		rank := make(map[int]int, N) // by the full sort: 1 + the points before
		for r, c := range xs {
			rank[c.m] = r + 1
		}
		for _, v := range V {
			S += int64(max(0, rank[v.m]-k))
			// Neighbours in the data that rounding could move across j.
			r := rank[v.m] - 1
			for q := r - 1; q >= 0 && xs[r].d-xs[q].d <= 2*(xs[r].e+xs[q].e); q-- {
				if close(X, D, xs[q], xs[r]) {
					slackS++
				}
			}
			for q := r + 1; q < len(xs) && xs[q].d-xs[r].d <= 2*(xs[r].e+xs[q].e); q++ {
				if close(X, D, xs[r], xs[q]) {
					slackS++
				}
			}
		}

		if labels != nil {
			votes := map[int32]int{}
			for _, v := range V {
				votes[labels[v.m]]++
			}
			ls := slices.Sorted(func(yield func(int32) bool) {
				for l := range votes {
					if !yield(l) {
						return
					}
				}
			})
			// The least of the labels with most votes: a stable sort by
			// votes, descending, of the labels in increasing order.
			slices.SortStableFunc(ls, func(a, b int32) int { return votes[b] - votes[a] })
			if ls[0] == labels[i] {
				correct++
			}
		}
	}
	denom := float64(N) * float64(k) * float64(2*N-3*k-1)
	T := 1 - float64(2*S)/denom
	out := []ev{
		{v: T, e: float64(2*slackS)/denom + u32*math.Abs(T) + tiny},
		{v: math.NaN()},
	}
	if labels != nil {
		A := float64(correct) / float64(N)
		out[1] = ev{v: A, e: float64(slackA)/float64(N) + u32*A + tiny}
	}
	return out
}
