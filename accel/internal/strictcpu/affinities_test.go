package strictcpu

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// clusters returns n points of d features around c Gaussian centres.
func clusters(r *rand.Rand, n, d, c int) []float32 {
	centres := make([]float64, c*d)
	for i := range centres {
		centres[i] = 5 * r.NormFloat64()
	}
	x := make([]float32, n*d)
	for i := range n {
		k := r.IntN(c)
		for t := range d {
			x[i*d+t] = float32(centres[k*d+t] + r.NormFloat64())
		}
	}
	return x
}

// affinitiesOut is the CSR output of tsne_affinities on the host.
type affinitiesOut struct {
	rowPtr, cols []int32
	vals         []float32
}

// runAffinities runs tsne_affinities through a session on k.
func runAffinities(tb testing.TB, k *Kernels, x []float32, n, d int, perplexity float32) affinitiesOut {
	tb.Helper()
	s := sessionOn(tb, k)
	rp, cs, vs, err := s.TSNEAffinities(bg, tensorF32(tb, s, []int{n, d}, x), accel.TSNEAffinitiesParams{Perplexity: perplexity})
	if err != nil {
		tb.Fatalf("tsne_affinities: %v", err)
	}
	return affinitiesOut{slices.Clone(i32(rp)[:rp.Len()]), slices.Clone(i32(cs)[:cs.Len()]), readF32(tb, s, vs)}
}

// refDist is the contract's distance, written out again.
func refDist(x []float32, d, i, j int) float32 {
	var s float32
	for t := range d {
		diff := x[i*d+t] - x[j*d+t]
		s += float32(diff * diff)
	}
	return s
}

// refNeighbours sorts every j != i by (d2, j) and keeps the first k.
func refNeighbours(x []float32, n, d, k int) [][]int {
	out := make([][]int, n)
	for i := range n {
		var js []int
		for j := range n {
			if j != i {
				js = append(js, j)
			}
		}
		slices.SortFunc(js, func(a, b int) int {
			if c := cmp.Compare(refDist(x, d, i, a), refDist(x, d, i, b)); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
		out[i] = js[:k]
	}
	return out
}

// refConditional is the precision search in binary64: the contract's
// bisection rule on the same shifted distances, and the conditional
// probabilities of the β it stops at.
func refConditional(dist []float64, perplexity float64) []float64 {
	e := make([]float64, len(dist))
	for r := range dist {
		e[r] = dist[r] - dist[0]
	}
	w := make([]float64, len(e))
	target := math.Log(perplexity)
	beta, lo, hi := 1.0, 0.0, 0.0
	loSet, hiSet := false, false
	var S float64
	for range 100 {
		S = 0
		var E float64
		for r := range e {
			w[r] = math.Exp(-beta * e[r])
			S += w[r]
			E += w[r] * e[r]
		}
		delta := math.Log(S) + beta*E/S - target
		if math.Abs(delta) <= 1e-5 {
			break
		}
		if delta > 0 {
			lo, loSet = beta, true
			if hiSet {
				beta = (beta + hi) / 2
			} else {
				beta *= 2
			}
		} else {
			hi, hiSet = beta, true
			if loSet {
				beta = (beta + lo) / 2
			} else {
				beta /= 2
			}
		}
	}
	for r := range w {
		w[r] /= S
	}
	return w
}

// checkAffinities checks the output on data x against the binary64
// transcription of the contract and the properties P must have.
func checkAffinities(t *testing.T, x []float32, n, d int, perplexity float32, got affinitiesOut) {
	t.Helper()
	k := accel.TSNENeighbours(n, perplexity)
	nbrs := refNeighbours(x, n, d, k)

	// The reference P, row by row, as maps.
	ref := make([]map[int]float64, n)
	for i := range ref {
		ref[i] = map[int]float64{}
	}
	for i, js := range nbrs {
		dist := make([]float64, k)
		for r, j := range js {
			dist[r] = float64(refDist(x, d, i, j))
		}
		c := refConditional(dist, float64(perplexity))
		for r, j := range js {
			ref[i][j] += c[r] / float64(2*n)
			ref[j][i] += c[r] / float64(2*n)
		}
	}

	if len(got.rowPtr) != n+1 || len(got.cols) != 2*n*k || len(got.vals) != 2*n*k {
		t.Fatalf("output lengths %d, %d, %d; want %d, %d, %d", len(got.rowPtr), len(got.cols), len(got.vals), n+1, 2*n*k, 2*n*k)
	}
	if got.rowPtr[0] != 0 {
		t.Fatalf("row_ptr[0] = %d", got.rowPtr[0])
	}
	nnz := int(got.rowPtr[n])
	for e := nnz; e < 2*n*k; e++ {
		if got.cols[e] != 0 || math.Float32bits(got.vals[e]) != 0 {
			t.Fatalf("entry %d after row_ptr[N] = %d is (%d, %v), want zeros", e, nnz, got.cols[e], got.vals[e])
		}
	}
	entry := func(i, j int) (float32, bool) {
		row := got.cols[got.rowPtr[i]:got.rowPtr[i+1]]
		e, ok := slices.BinarySearch(row, int32(j))
		if !ok {
			return 0, false
		}
		return got.vals[int(got.rowPtr[i])+e], true
	}
	var total float64
	worst := 0.0
	for i := range n {
		lo, hi := int(got.rowPtr[i]), int(got.rowPtr[i+1])
		if lo > hi {
			t.Fatalf("row_ptr decreases at row %d", i)
		}
		row := got.cols[lo:hi]
		if len(row) != len(ref[i]) {
			t.Errorf("row %d has %d entries, want %d", i, len(row), len(ref[i]))
		}
		for e, j := range row {
			if e > 0 && j <= row[e-1] {
				t.Fatalf("row %d: columns %v not strictly increasing", i, row)
			}
			want, ok := ref[i][int(j)]
			if !ok {
				t.Errorf("row %d has column %d, which neither point has as a neighbour", i, j)
				continue
			}
			v := got.vals[lo+e]
			total += float64(v)
			// Conditional probabilities below 2^-30 lose their
			// digits to the binary32 exp; they count absolutely.
			if rel := math.Abs(float64(v)-want) / max(want, 0x1p-30/float64(2*n)); rel > worst {
				worst = rel
			}
			back, ok := entry(int(j), i)
			if !ok || math.Float32bits(back) != math.Float32bits(v) {
				t.Errorf("P[%d,%d] = %v but P[%d,%d] = %v (present %v)", i, j, v, j, i, back, ok)
			}
		}
		for _, j := range nbrs[i] {
			if _, ok := entry(i, j); !ok {
				t.Errorf("row %d lacks its neighbour %d", i, j)
			}
		}
	}
	if math.Abs(total-1) > 1e-5 {
		t.Errorf("P sums to %v", total)
	}
	t.Logf("P within %.3g of the binary64 transcription, relatively", worst)
	if worst > 1e-3 {
		t.Errorf("P is up to %.3g off the binary64 transcription, relatively", worst)
	}
}

func TestTSNEAffinitiesReference(t *testing.T) {
	r := newRand(71)
	for _, c := range []struct {
		n, d, clusters int
		perplexity     float32
	}{
		{50, 5, 3, 5}, {120, 10, 4, 10}, {300, 50, 5, 30}, {200, 3, 1, 20.5},
		{150, 300, 3, 8}, // more features than one piece of the SIMD tiles
		{10, 4, 2, 5},    // k = N-1
		{40, 2, 2, 13.4}, // k = N-1 from a fractional perplexity
	} {
		t.Run(fmt.Sprintf("n%d_d%d_p%g", c.n, c.d, c.perplexity), func(t *testing.T) {
			x := clusters(r, c.n, c.d, c.clusters)
			for _, level := range kernelLevels {
				got := runAffinities(t, newWithKernels(2, level), x, c.n, c.d, c.perplexity)
				checkAffinities(t, x, c.n, c.d, c.perplexity, got)
			}
		})
	}
}

// TestTSNEAffinitiesConditional checks each point's neighbours against the
// brute-force sort and its conditional distribution: it sums to 1 and
// reaches the perplexity.
func TestTSNEAffinitiesConditional(t *testing.T) {
	r := newRand(72)
	for _, c := range []struct {
		n, d       int
		perplexity float32
	}{{60, 4, 5}, {250, 20, 30}, {300, 50, 50}, {100, 7, 33}} {
		x := clusters(r, c.n, c.d, 4)
		k := accel.TSNENeighbours(c.n, c.perplexity)
		nbrs := refNeighbours(x, c.n, c.d, k)
		for _, level := range kernelLevels {
			b := newWithKernels(3, level)
			nbr, nd := make([]int32, c.n*k), make([]float32, c.n*k)
			if err := b.nearest(bg, x, c.n, c.d, k, nbr, nd); err != nil {
				t.Fatal(err)
			}
			for i := range c.n {
				for r, j := range nbrs[i] {
					if int(nbr[i*k+r]) != j || math.Float32bits(nd[i*k+r]) != math.Float32bits(refDist(x, c.d, i, j)) {
						t.Fatalf("%s n=%d: neighbour %d of %d is (%v, %d), want (%v, %d)", level.name, c.n, r, i,
							nd[i*k+r], nbr[i*k+r], refDist(x, c.d, i, j), j)
					}
				}
			}
			if err := b.precisions(bg, nd, c.n, k, c.perplexity); err != nil {
				t.Fatal(err)
			}
			// S's k roundings bound the error of the sum.
			sumTol := float64(k) * 0x1p-24
			for i := range c.n {
				var sum, h float64
				for _, v := range nd[i*k : (i+1)*k] {
					sum += float64(v)
					if v > 0 {
						h -= float64(v) * math.Log(float64(v))
					}
				}
				if math.Abs(sum-1) > sumTol {
					t.Errorf("%s: c_%d sums to 1%+.3g", level.name, i, sum-1)
				}
				if rel := math.Abs(math.Exp(h)/float64(c.perplexity) - 1); rel > 1e-4 {
					t.Errorf("%s: point %d reaches perplexity %v, want %v", level.name, i, math.Exp(h), c.perplexity)
				}
			}
		}
	}
}

// TestTSNEAffinitiesInvariance checks that thread counts and kernel levels
// give the same bits.
func TestTSNEAffinitiesInvariance(t *testing.T) {
	r := newRand(73)
	for _, c := range []struct {
		n, d       int
		perplexity float32
	}{{300, 50, 30}, {517, 9, 7}, {129, 257, 10}, {33, 1, 3}} {
		x := clusters(r, c.n, c.d, 5)
		var first affinitiesOut
		for _, level := range kernelLevels {
			for _, threads := range []int{1, 2, 7} {
				got := runAffinities(t, newWithKernels(threads, level), x, c.n, c.d, c.perplexity)
				if first.rowPtr == nil {
					first = got
					continue
				}
				if !slices.Equal(got.rowPtr, first.rowPtr) || !slices.Equal(got.cols, first.cols) || !sameBits(got.vals, first.vals) {
					t.Errorf("n=%d d=%d: %s on %d threads differs from %s on 1", c.n, c.d, level.name, threads, kernelLevels[0].name)
				}
			}
		}
	}
}

func TestTSNEAffinitiesSmall(t *testing.T) {
	for _, level := range kernelLevels {
		// Two points: each the other's one neighbour, c = 1, P = 2/4.
		got := runAffinities(t, newWithKernels(1, level), []float32{1, 2, 3, -4}, 2, 2, 1.5)
		want := affinitiesOut{[]int32{0, 1, 2}, []int32{1, 0, 0, 0}, []float32{0.5, 0.5, 0, 0}}
		if !slices.Equal(got.rowPtr, want.rowPtr) || !slices.Equal(got.cols, want.cols) || !sameBits(got.vals, want.vals) {
			t.Errorf("%s: two points give %+v, want %+v", level.name, got, want)
		}
	}
}

// TestTSNEAffinitiesDuplicates checks data with many equal points: ties
// go to the lower index, and the search, whose perplexity may be out of
// reach, still gives a finite distribution.
func TestTSNEAffinitiesDuplicates(t *testing.T) {
	r := newRand(74)
	n, d := 90, 3
	base := clusters(r, 6, d, 2)
	x := make([]float32, n*d)
	for i := range n {
		copy(x[i*d:(i+1)*d], base[(i%6)*d:])
	}
	for _, p := range []float32{3, 10, 40} {
		var first affinitiesOut
		for _, level := range kernelLevels {
			got := runAffinities(t, newWithKernels(2, level), x, n, d, p)
			for _, v := range got.vals {
				if v != v || math.IsInf(float64(v), 0) {
					t.Fatalf("perplexity %v: P holds %v", p, v)
				}
			}
			if first.rowPtr == nil {
				first = got
				// The structure and symmetry hold; the values of
				// unreachable perplexities are not compared.
				k := accel.TSNENeighbours(n, p)
				nbrs := refNeighbours(x, n, d, k)
				for i := range n {
					row := got.cols[got.rowPtr[i]:got.rowPtr[i+1]]
					for _, j := range nbrs[i] {
						if _, ok := slices.BinarySearch(row, int32(j)); !ok {
							t.Errorf("perplexity %v: row %d lacks neighbour %d", p, i, j)
						}
					}
				}
				var total float64
				for _, v := range got.vals {
					total += float64(v)
				}
				if math.Abs(total-1) > 1e-5 {
					t.Errorf("perplexity %v: P sums to %v", p, total)
				}
			} else if !slices.Equal(got.cols, first.cols) || !sameBits(got.vals, first.vals) {
				t.Errorf("perplexity %v: %s differs", p, level.name)
			}
		}
	}
}

// TestTSNEAffinitiesInterrupted checks that a call stops promptly when its
// context ends, before and during the work.
func TestTSNEAffinitiesInterrupted(t *testing.T) {
	n, d := 20000, 50
	if testing.Short() {
		n = 8000
	}
	x := clusters(newRand(75), n, d, 10)
	p := accel.TSNEAffinitiesParams{Perplexity: 30}
	k := accel.TSNENeighbours(n, p.Perplexity)
	for _, level := range kernelLevels {
		s := sessionOn(t, newWithKernels(2, level))
		xt := tensorF32(t, s, []int{n, d}, x)
		rp := tensorI32(t, s, []int{n + 1}, make([]int32, n+1))
		cs := tensorI32(t, s, []int{2 * n * k}, make([]int32, 2*n*k))
		vs := tensorF32(t, s, []int{2 * n * k}, make([]float32, 2*n*k))
		b := newWithKernels(2, level)
		for _, wait := range []time.Duration{0, 20 * time.Millisecond} {
			ctx, cancel := context.WithTimeout(bg, wait)
			start := time.Now()
			err := b.TSNEAffinities(ctx, rp, cs, vs, xt, p)
			took := time.Since(start)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s, deadline %v: got %v, want the deadline", level.name, wait, err)
			}
			// The bound is loose because the race detector on a loaded
			// two-core machine slows the stride between checks tenfold; a
			// kernel that ignored the context would run for many seconds.
			if took > wait+time.Second {
				t.Errorf("%s, deadline %v: stopped after %v", level.name, wait, took)
			}
		}
	}
}

// TestKnnTileKernels checks the SIMD distance tiles against the loop they
// stand for, over several pieces of features.
func TestKnnTileKernels(t *testing.T) {
	r := newRand(76)
	for _, level := range kernelLevels {
		if !knnTileSIMD(level) {
			continue
		}
		for _, sh := range [][3]int{{4, 32, 1}, {8, 64, 3}, {12, 96, 50}, {4, 128, 257}} {
			rows, cols, nt := sh[0], sh[1], sh[2]
			a, bt := randF32(r, rows*nt), randF32(r, nt*cols)
			acc := randF32(r, rows*cols)
			want := slices.Clone(acc)
			for i := range rows {
				for c := range cols {
					s := want[i*cols+c]
					for k := range nt {
						diff := a[i*nt+k] - bt[k*cols+c]
						s = s + float32(diff*diff)
					}
					want[i*cols+c] = s
				}
			}
			knnTileRun(level, acc, cols, a, nt, bt, rows)
			if !sameBits(acc, want) {
				t.Errorf("%s %v: %s", level.name, sh, firstDiff(acc, want))
			}
		}
	}
}

func TestBlockSumInPlace(t *testing.T) {
	r := newRand(77)
	runs := make([]float32, 8)
	for _, n := range []int{0, 1, 255, 256, 257, 511, 512, 513, 1000, 1800} {
		v := randF32(r, n)
		if got, want := blockSum(v, runs), strictmath.BlockSum(v); math.Float32bits(got) != math.Float32bits(want) {
			t.Errorf("n=%d: %v, want %v", n, got, want)
		}
	}
}

func TestHeapOffer(t *testing.T) {
	r := newRand(78)
	for _, k := range []int{1, 2, 3, 7, 64} {
		h := make([]uint64, k)
		for e := range h {
			h[e] = math.MaxUint64
		}
		var all []uint64
		for j := range 300 {
			all = append(all, uint64(math.Float32bits(float32(r.IntN(20))))<<32|uint64(j)) // many ties
		}
		r.Shuffle(len(all), func(a, b int) { all[a], all[b] = all[b], all[a] })
		for _, key := range all {
			heapOffer(h, key)
		}
		heapSort(h)
		slices.Sort(all)
		if !slices.Equal(h, all[:k]) {
			t.Fatalf("k=%d: %x, want %x", k, h, all[:k])
		}
	}
}

// BenchmarkTSNEAffinities times the call on clustered data of D = 50 at
// perplexity 30 (k = 90), the usual setting, on every kernel level.
func BenchmarkTSNEAffinities(b *testing.B) {
	for _, n := range []int{10000, 70000} {
		d := 50
		x := clusters(newRand(79), n, d, 10)
		for _, level := range kernelLevels {
			b.Run(fmt.Sprintf("n%d/%s", n, level.name), func(b *testing.B) {
				k := newWithKernels(0, level)
				s := sessionOn(b, k)
				xt := tensorF32(b, s, []int{n, d}, x)
				for b.Loop() {
					rp, cs, vs, err := s.TSNEAffinities(bg, xt, accel.TSNEAffinitiesParams{Perplexity: 30})
					if err != nil {
						b.Fatal(err)
					}
					s.Free(rp)
					s.Free(cs)
					s.Free(vs)
				}
			})
		}
	}
}
