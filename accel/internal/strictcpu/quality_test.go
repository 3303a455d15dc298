package strictcpu

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
)

// qualityInputs is one embedding_quality problem: data x [n,d], embedding
// y [n,e], labels (nil for none) and k.
type qualityInputs struct {
	n, d, e, k int
	x, y       []float32
	labels     []int32
}

// run computes [T, A] on s.
func (in qualityInputs) run(t testing.TB, ctx context.Context, s *accel.Session) ([2]float32, error) {
	t.Helper()
	x := tensorF32(t, s, []int{in.n, in.d}, in.x)
	y := tensorF32(t, s, []int{in.n, in.e}, in.y)
	var l *accel.Tensor
	if in.labels != nil {
		l = tensorI32(t, s, []int{in.n}, in.labels)
	}
	T, A, err := s.EmbeddingQuality(ctx, x, y, l, accel.EmbeddingQualityParams{K: in.k})
	s.Free(x)
	s.Free(y)
	if l != nil {
		s.Free(l)
	}
	return [2]float32{T, A}, err
}

// qualityDist is the contract's distance between rows i and j of v [*, w].
func qualityDist(v []float32, w, i, j int) float32 {
	var s float32
	for t := range w {
		diff := v[i*w+t] - v[j*w+t]
		s = s + float32(diff*diff)
	}
	return s
}

// qualityOrder returns every point but i in increasing (distance from i, index).
func qualityOrder(v []float32, n, w, i int) []int {
	var order []int
	for j := range n {
		if j != i {
			order = append(order, j)
		}
	}
	d := make([]float32, n)
	for _, j := range order {
		d[j] = qualityDist(v, w, i, j)
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := cmp.Compare(d[a], d[b]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	return order
}

// qualityRef is the contract's embedding_quality literally, by sorting every
// point's distances in full: S from the ranks, the vote by counting.
func qualityRef(in qualityInputs) (T, A float32, S int64) {
	correct := 0
	for i := range in.n {
		V := qualityOrder(in.y, in.n, in.e, i)[:in.k]
		rank := map[int]int{}
		for r, m := range qualityOrder(in.x, in.n, in.d, i) {
			rank[m] = r + 1 // the points before m in the data's order, all ∉ {i, m}, plus one
		}
		votes := map[int32]int{}
		for _, j := range V {
			S += int64(max(0, rank[j]-in.k))
			if in.labels != nil {
				votes[in.labels[j]]++
			}
		}
		if in.labels != nil {
			var win int32
			most := 0
			for l, c := range votes {
				if c > most || c == most && l < win {
					win, most = l, c
				}
			}
			if win == in.labels[i] {
				correct++
			}
		}
	}
	N, K := float64(in.n), float64(in.k)
	T = float32(1 - float64(2*S)/(N*K*(2*N-3*K-1)))
	A = math.Float32frombits(0x7fc00000)
	if in.labels != nil {
		A = float32(float64(correct) / N)
	}
	return T, A, S
}

// randomQuality returns a problem of the given kind: "random" (uniform
// data, an unrelated embedding), "near" (the embedding a noisy projection
// of the data), "grid" (values from a few integers, so that many distances
// tie and points repeat), "huge" (some distances overflow to infinity) or
// "latent" (data near a plane in its space, a good embedding its
// coordinates there, as a working t-SNE gives).
func randomQuality(r *rand.Rand, kind string, n, d, e, k int, labelled bool) qualityInputs {
	in := qualityInputs{n: n, d: d, e: e, k: k, x: randF32(r, n*d), y: randF32(r, n*e)}
	switch kind {
	case "near":
		for i := range n {
			for c := range e {
				in.y[i*e+c] = in.x[i*d+c%d] + 0.1*in.y[i*e+c]
			}
		}
	case "grid":
		for _, v := range [][]float32{in.x, in.y} {
			for i := range v {
				v[i] = float32(r.IntN(3))
			}
		}
	case "latent":
		basis := randF32(r, e*d)
		for i := range n {
			for t := range d {
				v := 0.05 * in.x[i*d+t]
				for c := range e {
					v += in.y[i*e+c] * basis[c*d+t]
				}
				in.x[i*d+t] = v
			}
		}
	case "huge":
		for _, v := range [][]float32{in.x, in.y} {
			for i := range v {
				if r.IntN(4) == 0 {
					v[i] = float32(math.Copysign(3e38, float64(v[i])))
				}
			}
		}
	}
	if labelled {
		in.labels = make([]int32, n)
		for i := range in.labels {
			in.labels[i] = int32(r.IntN(4)) - 1
		}
	}
	return in
}

// TestEmbeddingQualityReference checks T and A against the literal
// transcription over sizes around the blocks and tiles, wide data, and
// data with ties and infinite distances, on every kernel level.
func TestEmbeddingQualityReference(t *testing.T) {
	r := newRand(31)
	for _, c := range []struct{ n, d, e, k int }{
		{3, 1, 1, 1}, {9, 3, 2, 1}, {20, 5, 2, 4}, {33, 7, 3, 5}, {50, 1, 1, 3},
		{67, 50, 2, 10}, {130, 9, 2, 7}, {40, 300, 2, 3}, {70, 2, 2, 34},
	} {
		for _, kind := range []string{"random", "near", "grid", "huge", "latent"} {
			in := randomQuality(r, kind, c.n, c.d, c.e, c.k, c.n%2 == 1)
			T, A, S := qualityRef(in)
			want := []float32{T, A}
			for _, kern := range kernelLevels {
				got, err := in.run(t, bg, newSessionKernels(t, 2, kern))
				if err != nil {
					t.Fatalf("%+v %s: %v", c, kind, err)
				}
				checkBits(t, fmt.Sprintf("%+v %s on %s (S = %d)", c, kind, kern.name, S), got[:], want)
			}
		}
	}
}

// lineCase is seven points on a line, x_i = i, embedded on a line with the
// two ends swapped: point 0 at 6 and point 6 at 0.
func lineCase(labels []int32) qualityInputs {
	in := qualityInputs{n: 7, d: 1, e: 2, k: 2, labels: labels}
	for i := range 7 {
		p := i
		if i == 0 || i == 6 {
			p = 6 - i
		}
		in.x = append(in.x, float32(i))
		in.y = append(in.y, float32(p), 0)
	}
	return in
}

// TestEmbeddingQualityHand works small cases through by hand.
func TestEmbeddingQualityHand(t *testing.T) {
	nan := math.Float32frombits(0x7fc00000)
	// The line with its ends swapped, k = 2. The embedding neighbours,
	// ties going to the lower index, and the data ranks:
	//   V_0 = {5, 4}, ranks 5, 4      → 3 + 2
	//   V_6 = {1, 2}, ranks 5, 4      → 3 + 2
	//   V_1 = {2, 6} (both at 1), ranks 2 (0 before it, tied at 1), 6 → 0 + 4
	//   V_5 = {0, 4} (both at 1), ranks 6, 1          → 4 + 0
	//   V_2 = {1, 3}, V_3 = {2, 4}, V_4 = {3, 5}: ranks 1 and 2 → 0
	// S = 18 and T = 1 − 36/(7·2·7) = 31/49. The votes: point 0 gets the
	// labels of 5 and 4, 1 of 2 and 6, 2 of 1 and 3, 3 of 2 and 4, 4 of 3
	// and 5, 5 of 0 and 4, 6 of 1 and 2.
	lineT := float32(1 - float64(36)/98)
	if math.Abs(float64(lineT)-31.0/49) > 1e-7 {
		t.Fatalf("worked value %v is not 31/49", lineT)
	}
	for _, c := range []struct {
		name string
		in   qualityInputs
		want [2]float32
	}{
		{"line without labels", lineCase(nil), [2]float32{lineT, nan}},
		// Winners 1, 0 (tie), 0 (tie), 0 (tie), 1, 0 (tie), 0: points 1,
		// 2 and 4 are right.
		{"line, two labels", lineCase([]int32{0, 0, 0, 1, 1, 1, 1}), [2]float32{lineT, float32(3.0 / 7)}},
		// Ties now go to -2: points 3, 4 and 5 are right.
		{"line, negative labels", lineCase([]int32{5, 5, 5, -2, -2, -2, -2}), [2]float32{lineT, float32(3.0 / 7)}},
		// Every vote unanimous and right.
		{"line, one label", lineCase([]int32{9, 9, 9, 9, 9, 9, 9}), [2]float32{lineT, 1}},
		// The embedding the data itself: every rank within k.
		{"identity", qualityInputs{n: 5, d: 2, e: 2, k: 2,
			x: []float32{0, 0, 1, 0, 0, 1, 5, 5, 5, 6},
			y: []float32{0, 0, 1, 0, 0, 1, 5, 5, 5, 6}}, [2]float32{1, nan}},
	} {
		s := newSession(t, 2)
		got, err := c.in.run(t, bg, s)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		checkBits(t, c.name, got[:], c.want[:])
		if T, A, _ := qualityRef(c.in); !sameBits([]float32{T, A}, c.want[:]) {
			t.Errorf("%s: the reference gives %v, %v", c.name, T, A)
		}
	}
}

// TestEmbeddingQualityShape checks what the quality of some embeddings must
// be whatever the data: 1 for the data itself, low for a shuffled one, and
// duplicate points ranked by index.
func TestEmbeddingQualityShape(t *testing.T) {
	r := newRand(32)
	s := newSession(t, 2)
	for _, c := range []struct {
		name   string
		in     func() qualityInputs
		lo, hi float32
	}{
		{"y = x in 2-D", func() qualityInputs {
			x := randF32(r, 500*2)
			return qualityInputs{n: 500, d: 2, e: 2, k: 10, x: x, y: x}
		}, 1, 1},
		{"y = x in 5-D", func() qualityInputs {
			x := randF32(r, 300*5)
			return qualityInputs{n: 300, d: 5, e: 5, k: 7, x: x, y: x}
		}, 1, 1},
		{"y = x with every point twice", func() qualityInputs {
			x := randF32(r, 100*2)
			x = append(x, x...)
			return qualityInputs{n: 200, d: 2, e: 2, k: 5, x: x, y: x}
		}, 1, 1},
		{"y shuffled", func() qualityInputs {
			x := randF32(r, 500*2)
			y := slices.Clone(x)
			r.Shuffle(500, func(a, b int) { y[2*a], y[2*a+1], y[2*b], y[2*b+1] = y[2*b], y[2*b+1], y[2*a], y[2*a+1] })
			return qualityInputs{n: 500, d: 2, e: 2, k: 10, x: x, y: y}
		}, 0.3, 0.6},
		{"y reversed along a line", func() qualityInputs {
			// Reversing a line keeps every neighbourhood: still 1.
			var x, y []float32
			for i := range 40 {
				x, y = append(x, float32(i)), append(y, float32(39-i), 0)
			}
			return qualityInputs{n: 40, d: 1, e: 2, k: 3, x: x, y: y}
		}, 1, 1},
	} {
		got, err := c.in().run(t, bg, s)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !(got[0] >= c.lo && got[0] <= c.hi) {
			t.Errorf("%s: trustworthiness %v, want within [%v, %v]", c.name, got[0], c.lo, c.hi)
		}
	}
}

// TestEmbeddingQualityThreads checks that every thread count and kernel
// level gives the same bits.
func TestEmbeddingQualityThreads(t *testing.T) {
	r := newRand(33)
	for _, in := range []qualityInputs{
		randomQuality(r, "near", 700, 30, 2, 10, true),
		randomQuality(r, "grid", 300, 4, 3, 6, true),
	} {
		var first []float32
		for _, kern := range kernelLevels {
			for _, threads := range []int{1, 2, 7} {
				got, err := in.run(t, bg, newSessionKernels(t, threads, kern))
				if err != nil {
					t.Fatal(err)
				}
				if first == nil {
					first = got[:]
				} else {
					checkBits(t, fmt.Sprintf("n=%d on %s with %d threads", in.n, kern.name, threads), got[:], first)
				}
			}
		}
	}
}

// TestEmbeddingQualityCancel checks that an ended context stops the work
// promptly with its error.
func TestEmbeddingQualityCancel(t *testing.T) {
	in := randomQuality(newRand(34), "random", 30000, 50, 2, 10, true)
	for _, kern := range kernelLevels {
		s := newSessionKernels(t, 2, kern)
		ctx, cancel := context.WithCancel(bg)
		cancel()
		if _, err := in.run(t, ctx, s); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: cancelled embedding_quality: %v, want context.Canceled", kern.name, err)
		}
		ctx, cancel = context.WithTimeout(bg, 50*time.Millisecond)
		start := time.Now()
		_, err := in.run(t, ctx, s)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: embedding_quality past its deadline: %v, want context.DeadlineExceeded", kern.name, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: embedding_quality took %v to notice its deadline", kern.name, d)
		}
	}
}

// TestEmbeddingQualityWriteCSV writes a problem and the kernel's T to the
// files that QUALITY_CSV names (a prefix), for comparing with another
// implementation, such as scikit-learn's trustworthiness. It runs only when
// asked.
func TestEmbeddingQualityWriteCSV(t *testing.T) {
	prefix := os.Getenv("QUALITY_CSV")
	if prefix == "" {
		t.Skip("QUALITY_CSV is not set")
	}
	for _, c := range []struct {
		kind       string
		n, d, e, k int
	}{{"near", 2000, 50, 2, 10}, {"latent", 2000, 50, 2, 10}, {"random", 1000, 20, 2, 5}, {"near", 3000, 10, 3, 25}} {
		in := randomQuality(newRand(35), c.kind, c.n, c.d, c.e, c.k, false)
		got, err := in.run(t, bg, newSession(t, 0))
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("%s%s_%d_%d_%d_%d", prefix, c.kind, c.n, c.d, c.e, c.k)
		for _, f := range []struct {
			suffix string
			v      []float32
			w      int
		}{{"_x.csv", in.x, c.d}, {"_y.csv", in.y, c.e}} {
			var b strings.Builder
			for i := range c.n {
				for j := range f.w {
					if j > 0 {
						b.WriteByte(',')
					}
					b.WriteString(strconv.FormatFloat(float64(f.v[i*f.w+j]), 'g', -1, 32))
				}
				b.WriteByte('\n')
			}
			if err := os.WriteFile(name+f.suffix, []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		T, _, S := qualityRef(in)
		if got[0] != T {
			t.Errorf("%s: T = %v, the reference %v", name, got[0], T)
		}
		fmt.Printf("%s k=%d T=%.9g S=%d\n", name, c.k, got[0], S)
	}
}

// BenchmarkEmbeddingQuality times trustworthiness of a 2-D embedding of
// 10,000 points of 50 features at k = 10, every kernel level: a good
// embedding, where most points lie beyond every neighbour, and a poor one,
// where most must be placed among them.
func BenchmarkEmbeddingQuality(b *testing.B) {
	for _, kind := range []string{"latent", "near"} {
		in := randomQuality(newRand(36), kind, 10000, 50, 2, 10, true)
		for _, kern := range kernelLevels {
			for _, threads := range benchThreads() {
				b.Run(fmt.Sprintf("%s/%s/threads=%d", kind, kern.name, threads), func(b *testing.B) {
					s := newSessionKernels(b, threads, kern)
					for b.Loop() {
						if _, err := in.run(b, bg, s); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}
