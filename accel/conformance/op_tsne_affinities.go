package conformance

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.TSNEAffinitiesParams]{
	op:    accel.TSNEAffinities,
	cases: affinityCases,
	specMixed: func(p accel.TSNEAffinitiesParams, in []Tensor) []Tensor {
		rowPtr, cols, vals := specTSNEAffinities(in[0].F32, in[0].Shape[0], in[0].Shape[1], p.Perplexity)
		return []Tensor{{I32: rowPtr}, {I32: cols}, {F32: vals}}
	},
	float64: func(p accel.TSNEAffinitiesParams, in []Tensor) reference {
		ref := f64TSNEAffinities(in[0].F32, in[0].Shape[0], in[0].Shape[1], p.Perplexity)
		return reference{results: [][]ev{nil, nil, nil}, check: ref.check}
	},
})

func affinityCases() []Case {
	var cases []Case
	// The grid: the value classes of data on every size class. The data
	// must be finite (the op refuses the rest), and the contract assumes
	// squared distances that do not overflow, so there is no NaN, Inf or
	// Overflow class.
	for _, sh := range []struct {
		size       string
		n, d       int
		perplexity float32
	}{
		{SizeTiny, 2, 3, 1}, // k = 1
		{SizeOdd, 97, 13, 5},
		{SizeTall, 211, 7, 30}, // k = 90
		{SizeOdd, 101, 1, 5},
		{SizeLarge, 1000, 50, 30},
	} {
		for _, class := range []string{Uniform, Normal, Heavy, NegZero, Subnormal, Cancel, Exact, Wide} {
			f := affinityFill(class)
			n, d := sh.n, sh.d
			cases = append(cases, gridCase(accel.TSNEAffinities, sh.size, dims(n, d), class,
				accel.TSNEAffinitiesParams{Perplexity: sh.perplexity}, func(r *rand.Rand) []Tensor {
					return affinityInputs(n, d, f(r, n*d))
				}))
		}
	}

	// Hand-picked: perplexities at the edges, k = N-1, clusters, ties.
	for _, c := range []struct {
		size, label, values string
		n, d                int
		perplexity          float32
		x                   func(r *rand.Rand, n, d int) []float32
	}{
		{SizeTiny, "n2-d1", Normal, 2, 1, 1, plain(normal(1))},
		// Both points at one place: e = 0, and the search cannot reach
		// the perplexity, which runs it to its last step.
		{SizeTiny, "n2-coincident", Exact, 2, 4, 1, plain(cycle(3, -1))},
		// k = min(N-1, ⌊3p⌋) = N-1.
		{SizeTiny, "n5-k-all", Normal, 5, 3, 2, plain(normal(1))},
		{SizeOdd, "n40-perplexity30-k-all", Normal, 40, 6, 30, plain(normal(1))},
		{SizeOdd, "n50-perplexity1", Normal, 50, 4, 1, plain(normal(1))},
		{SizeOdd, "n61-perplexity5-d1", Uniform, 61, 1, 5, plain(uniform(-1, 1))},
		// A fractional perplexity: k = ⌊3·7.5⌋ = 22.
		{SizeOdd, "n83-perplexity7.5", Normal, 83, 5, 7.5, plain(normal(1))},
		// Five tight clusters far apart, in a random order: a point's
		// neighbours are mostly its cluster's.
		{SizeOdd, "n300-clusters", Normal, 300, 10, 5, clusters(5, 100, 0.5)},
		{SizeOdd, "n300-clusters-perplexity30", Normal, 300, 10, 30, clusters(5, 100, 0.5)},
		// Points on a small integer lattice, many of them repeated: ties
		// of distance everywhere, and at distance 0, all exact.
		{SizeOdd, "n60-duplicates", Exact, 60, 3, 5, lattice(2)},
		{SizeOdd, "n127-duplicates-perplexity30", Exact, 127, 2, 30, lattice(3)},
		// Whole copies of points: each has a twin at distance 0.
		{SizeOdd, "n90-twins", Normal, 90, 5, 5, twins},
		{SizeLarge, "n1000-clusters", Normal, 1000, 50, 30, clusters(10, 20, 1)},
	} {
		n, d, x := c.n, c.d, c.x
		cases = append(cases, newCase(accel.TSNEAffinities, c.size, c.label, c.values,
			accel.TSNEAffinitiesParams{Perplexity: c.perplexity}, func(r *rand.Rand) []Tensor {
				return affinityInputs(n, d, x(r, n, d))
			}))
	}
	return cases
}

// affinityFill is the data of a value class: finite, with squared
// distances far from overflow.
func affinityFill(class string) fill {
	switch class {
	case Heavy:
		return func(r *rand.Rand, n int) []float32 {
			v := cauchy(1)(r, n)
			for i, x := range v {
				v[i] = max(-1e15, min(1e15, x))
			}
			return v
		}
	case NegZero:
		return mix(0.7, normal(1), pick(negZero, 0))
	case Cancel:
		// Points close together far from the origin: every difference
		// cancels, and many distances tie.
		return func(r *rand.Rand, n int) []float32 {
			v := make([]float32, n)
			for i := range v {
				v[i] = float32(1000 + 1e-3*r.NormFloat64())
			}
			return v
		}
	case Exact:
		return integers(8, 0)
	case Wide:
		return magnitudes(-30, 30)
	}
	return elementFill(class)
}

// plain lays out n·d values of f.
func plain(f fill) func(r *rand.Rand, n, d int) []float32 {
	return func(r *rand.Rand, n, d int) []float32 { return f(r, n*d) }
}

// clusters draws each point from one of c Gaussians of deviation sigma
// whose centres are spread over [-spread, spread].
func clusters(c int, spread, sigma float64) func(r *rand.Rand, n, d int) []float32 {
	return func(r *rand.Rand, n, d int) []float32 {
		centres := make([]float64, c*d)
		for i := range centres {
			centres[i] = spread * (2*r.Float64() - 1)
		}
		x := make([]float32, n*d)
		for i := range n {
			k := r.IntN(c)
			for t := range d {
				x[i*d+t] = float32(centres[k*d+t] + sigma*r.NormFloat64())
			}
		}
		return x
	}
}

// lattice draws integer coordinates in [-m, m].
func lattice(m int) func(r *rand.Rand, n, d int) []float32 {
	return func(r *rand.Rand, n, d int) []float32 { return integers(m, 0)(r, n*d) }
}

// twins draws n/2 normal points and places a copy of each at a random
// position.
func twins(r *rand.Rand, n, d int) []float32 {
	x := normal(1)(r, n*d)
	perm := r.Perm(n)
	for a := 0; a+1 < n; a += 2 {
		i, j := perm[a], perm[a+1]
		copy(x[j*d:(j+1)*d], x[i*d:(i+1)*d])
	}
	return x
}

// sameRow reports whether rows i and j of the [·, d] matrix X hold the
// same bits.
func sameRow(X []float32, d, i, j int) bool {
	for t := range d {
		if math.Float32bits(X[i*d+t]) != math.Float32bits(X[j*d+t]) {
			return false
		}
	}
	return true
}

func affinityInputs(n, d int, x []float32) []Tensor {
	return []Tensor{{Name: "x", Shape: []int{n, d}, F32: x}}
}

// specTSNEAffinities is tsne_affinities of X [N,D] row-major: P in CSR
// form, with room for 2·N·k entries.
func specTSNEAffinities(X []float32, N, D int, perplexity float32) (rowPtr, cols []int32, vals []float32) {
	k := int(math.Min(float64(N-1), math.Floor(3*float64(perplexity))))

	// Distances, in order over the features from +0.
	d2 := func(i, j int) float32 {
		s := float32(0)
		for t := 0; t < D; t++ {
			diff := X[i*D+t] - X[j*D+t]
			s = s + float32(diff*diff)
		}
		return s
	}

	// Neighbours: the k points j != i with the least (d2(i,j), j).
	nb := make([][]int, N) // n_i
	dist := make([][]float32, N)
	for i := 0; i < N; i++ {
		var js []int
		ds := make([]float32, N)
		for j := 0; j < N; j++ {
			if j != i {
				js = append(js, j)
				ds[j] = d2(i, j)
			}
		}
		slices.SortFunc(js, func(a, b int) int {
			if ds[a] != ds[b] {
				return cmp.Compare(ds[a], ds[b])
			}
			return a - b
		})
		nb[i] = js[:k]
		dist[i] = make([]float32, k)
		for r := 0; r < k; r++ {
			dist[i][r] = ds[nb[i][r]]
		}
	}

	// Precision search.
	Hstar := strictmath.Log(perplexity)
	tol := float32(1e-5)
	c := make([][]float32, N) // c_i[r]
	for i := 0; i < N; i++ {
		e := make([]float32, k)
		for r := 0; r < k; r++ {
			e[r] = dist[i][r] - dist[i][0]
		}
		beta := float32(1)
		var lo, hi float32
		loSet, hiSet := false, false
		w := make([]float32, k)
		we := make([]float32, k)
		var S float32
		for step := 1; step <= 100; step++ {
			for r := 0; r < k; r++ {
				w[r] = strictmath.Exp(-float32(beta * e[r]))
			}
			for r := 0; r < k; r++ {
				we[r] = float32(w[r] * e[r])
			}
			S = strictmath.BlockSum(w)
			E := strictmath.BlockSum(we)
			H := strictmath.Log(S) + float32(beta*(E/S))
			delta := H - Hstar
			if float32(math.Abs(float64(delta))) <= tol {
				break
			}
			if delta > 0 {
				lo, loSet = beta, true
				if hiSet {
					beta = float32((beta + hi) * 0.5)
				} else {
					beta = float32(beta * 2)
				}
			} else {
				hi, hiSet = beta, true
				if loSet {
					beta = float32((beta + lo) * 0.5)
				} else {
					beta = float32(beta * 0.5)
				}
			}
		}
		c[i] = make([]float32, k)
		for r := 0; r < k; r++ {
			c[i][r] = w[r] / S
		}
	}

	// Symmetrisation.
	pos := make([]map[int]int, N) // pos[i][j] = r where n_i[r] = j
	for i := 0; i < N; i++ {
		pos[i] = map[int]int{}
		for r, j := range nb[i] {
			pos[i][j] = r
		}
	}
	m := float32(2 * N)
	rowPtr = make([]int32, N+1)
	cols = make([]int32, 2*N*k)
	vals = make([]float32, 2*N*k)
	e := 0
	for i := 0; i < N; i++ {
		for j := 0; j < N; j++ {
			ri, inI := pos[i][j] // j ∈ n_i
			rj, inJ := pos[j][i] // i ∈ n_j
			if !inI && !inJ {
				continue
			}
			a, b := float32(0), float32(0)
			if inI {
				a = c[i][ri]
			}
			if inJ {
				b = c[j][rj]
			}
			cols[e] = int32(j)
			vals[e] = strictmath.Canon((a + b) / m)
			e++
		}
		rowPtr[i+1] = int32(e)
	}
	return rowPtr, cols, vals
}

// affinityRef is what the float64 reference knows of tsne_affinities'
// data: the neighbours in float64, which of them rounding could reorder,
// and each point's conditional distribution fitted to the perplexity.
type affinityRef struct {
	n, k int
	// perplexity is the target, in float64.
	perplexity float64
	// nb are the neighbours by (distance, index) in float64; pos[i][j]
	// is j's place in nb[i].
	nb  [][]int
	pos []map[int]int
	// unsure marks the points where float32 rounding of the distances
	// could change the set of neighbours: a distance just inside and one
	// just outside lie within their error bounds.
	unsure []bool
	// c are the conditional distributions, c[i][r] for nb[i][r], and
	// reached whether the search met the perplexity (it cannot where too
	// many neighbours tie at the least distance).
	c       [][]float64
	reached []bool
}

// f64TSNEAffinities computes, in float64, the neighbours and conditional
// distributions the float32 result is checked with.
func f64TSNEAffinities(X []float32, n, d int, perplexity float32) affinityRef {
	k := accel.TSNENeighbours(n, perplexity)
	ref := affinityRef{n: n, k: k, perplexity: float64(perplexity),
		nb: make([][]int, n), pos: make([]map[int]int, n), unsure: make([]bool, n),
		c: make([][]float64, n), reached: make([]bool, n)}
	same := func(i, j int) bool { return sameRow(X, d, i, j) }
	for i := range n {
		type cand struct {
			j     int
			d, e  float64 // the distance and the bound on float32's error
			exact bool
		}
		var cs []cand
		for j := range n {
			if j == i {
				continue
			}
			var s float64
			integral := true
			for t := range d {
				diff := float64(X[i*d+t]) - float64(X[j*d+t])
				s += diff * diff
				integral = integral && diff == math.Trunc(diff)
			}
			// Each term rounds three times (difference, square, sum).
			e := float64(d+3)*u32*s + float64(d)*0x1p-147
			exact := integral && s < 1<<24 // every float32 operation exact
			if exact {
				e = 0
			}
			cs = append(cs, cand{j, s, e, exact})
		}
		slices.SortFunc(cs, func(a, b cand) int {
			if a.d != b.d {
				return cmp.Compare(a.d, b.d)
			}
			return a.j - b.j
		})
		if k < len(cs) {
			in, out := cs[k-1], cs[k]
			tied := in.d == out.d && (in.exact && out.exact || same(in.j, out.j))
			ref.unsure[i] = !tied && out.d-in.d <= 2*(in.e+out.e)
		}
		ref.pos[i] = map[int]int{}
		dist := make([]float64, k)
		for r := range k {
			ref.nb[i] = append(ref.nb[i], cs[r].j)
			ref.pos[i][cs[r].j] = r
			dist[r] = cs[r].d
		}
		ref.c[i], ref.reached[i] = f64Conditional(dist, math.Log(float64(perplexity)))
	}
	return ref
}

// f64Conditional fits exp(-β·(d - d[0])) / S over the distances d to the
// entropy target by bisection in float64, to 1e-12, and reports whether it
// got there.
func f64Conditional(d []float64, target float64) ([]float64, bool) {
	c := make([]float64, len(d))
	entropy := func(beta float64) float64 {
		var s, e float64
		for r := range d {
			c[r] = math.Exp(-beta * (d[r] - d[0]))
			s += c[r]
			e += c[r] * (d[r] - d[0])
		}
		for r := range c {
			c[r] /= s
		}
		return math.Log(s) + beta*e/s
	}
	lo, hi := 0.0, math.Inf(1)
	beta := 1.0
	for range 2000 {
		h := entropy(beta)
		if math.Abs(h-target) <= 1e-12 {
			return c, true
		}
		if h > target {
			lo = beta
		} else {
			hi = beta
		}
		if math.IsInf(hi, 1) {
			beta *= 2
		} else {
			beta = (lo + hi) / 2
		}
		if beta > 0x1p200 || beta < 0x1p-200 || !math.IsInf(hi, 1) && hi-lo <= 1e-15*hi {
			break
		}
	}
	h := entropy(beta)
	return c, math.Abs(h-target) <= 1e-9
}

// Tolerances of the float64 checks of tsne_affinities. The contract stops
// each point's search where its float32 entropy is within 1e-5 of the
// target; the float32 evaluation of the entropy, and the float64 ratio that
// splits a pair of mutual neighbours' entry, add about 1e-6 (the corpus
// shows up to 1e-6 in the sums and 4e-6 in the entropies). Both are checked
// within ten times the search's tolerance.
const (
	affinitySumTol     = 1e-4 // a point's conditional distribution sums to 1
	affinityEntropyTol = 1e-4 // its entropy is log(perplexity)
)

// check checks P, got[0..3), for its structure (row_ptr from 0, rows of
// increasing columns without the diagonal, unused entries 0), its symmetry
// (bit for bit), its sum (1), its entries (the pairs of float64
// neighbours, where rounding cannot change them), and, from its values,
// each point's conditional distribution: c_i(j) is 2N·P[i,j] where only j
// is i's neighbour, and the share of float64's c_i(j) : c_j(i) of it where
// both are each other's; each such distribution sums to 1 and has the
// perplexity's entropy.
func (ref affinityRef) check(got []Tensor) []string {
	rowPtr, cols, vals := got[0].I32, got[1].I32, got[2].F32
	n, k := ref.n, ref.k
	var bad []string
	add := func(format string, args ...any) {
		if len(bad) < maxShown {
			bad = append(bad, fmt.Sprintf(format, args...))
		}
	}

	// Structure.
	if rowPtr[0] != 0 {
		return []string{fmt.Sprintf("row_ptr[0] is %d, want 0", rowPtr[0])}
	}
	for i := range n {
		if rowPtr[i+1] < rowPtr[i] || int(rowPtr[i+1]) > len(cols) {
			return []string{fmt.Sprintf("row_ptr[%d] = %d after %d, with room for %d entries", i+1, rowPtr[i+1], rowPtr[i], len(cols))}
		}
	}
	nnz := int(rowPtr[n])
	for e := nnz; e < len(cols); e++ {
		if cols[e] != 0 || math.Float32bits(vals[e]) != 0 {
			add("entry %d after row_ptr[N] = %d holds column %d, value %s, want 0 and +0", e, nnz, cols[e], fbits(vals[e]))
			break
		}
	}
	P := make([]map[int]float32, n)
	for i := range n {
		P[i] = map[int]float32{}
		for e := rowPtr[i]; e < rowPtr[i+1]; e++ {
			j := int(cols[e])
			switch {
			case j < 0 || j >= n:
				add("row %d holds column %d, outside [0, %d)", i, j, n)
				return bad
			case j == i:
				add("row %d holds its own column", i)
			case e > rowPtr[i] && cols[e] <= cols[e-1]:
				add("row %d: column %d follows %d, want increasing", i, j, cols[e-1])
			}
			if !(vals[e] <= 1) || math.Signbit(float64(vals[e])) {
				add("P[%d,%d] is %s, want in [+0, 1]", i, j, fbits(vals[e]))
			}
			P[i][j] = vals[e]
		}
	}

	// Symmetry, and the entries against float64's neighbours.
	var total float64
	for i := range n {
		for j, v := range P[i] {
			total += float64(v)
			if w, ok := P[j][i]; !ok || math.Float32bits(w) != math.Float32bits(v) {
				add("P[%d,%d] = %s but P[%d,%d] = %s (present: %v), want them equal", i, j, fbits(v), j, i, fbits(w), ok)
			}
			_, inI := ref.pos[i][j]
			_, inJ := ref.pos[j][i]
			if !inI && !inJ && !ref.unsure[i] && !ref.unsure[j] {
				add("P[%d,%d] is stored, but neither point is among the other's %d nearest", i, j, k)
			}
		}
		if ref.unsure[i] {
			continue
		}
		for _, j := range ref.nb[i] {
			if _, ok := P[i][j]; !ok {
				add("P[%d,%d] is missing, but %d is among %d's %d nearest", i, j, j, i, k)
			}
		}
	}
	// Each c sums to 1 within (k+2)·u, and P's entries round twice more.
	if tol := 2 * float64(k+4) * u32 * 2; !(math.Abs(total-1) <= tol) {
		add("P sums to %.9g, want 1 ± %.3g", total, tol)
	}

	// The conditional distributions.
	for i := range n {
		if ref.unsure[i] || slices.ContainsFunc(ref.nb[i], func(j int) bool { return ref.unsure[j] }) {
			continue
		}
		var s, h float64
		for r, j := range ref.nb[i] {
			c := 2 * float64(n) * float64(P[i][j])
			if rj, mutual := ref.pos[j][i]; mutual {
				a, b := ref.c[i][r], ref.c[j][rj]
				if a+b > 0 {
					c *= a / (a + b)
				}
			}
			s += c
			if c > 0 {
				h -= c * math.Log(c)
			}
		}
		if !(math.Abs(s-1) <= affinitySumTol) {
			add("point %d's conditional distribution sums to %.9g, want 1 ± %g", i, s, affinitySumTol)
			continue
		}
		if target := math.Log(ref.perplexity); ref.reached[i] && !(math.Abs(h-target) <= affinityEntropyTol) {
			add("point %d's conditional distribution has perplexity exp(H) = %.7g, want %g (H = %.7g ± %g)", i, math.Exp(h), ref.perplexity, target, affinityEntropyTol)
		}
	}
	return bad
}
