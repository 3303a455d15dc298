package conformance

import (
	"math"
	"math/rand/v2"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/strictmath"
)

var _ = register(def[accel.NoParams]{
	op:    accel.SoftmaxCrossEntropy,
	cases: sceCases,
	spec: func(_ accel.NoParams, in []Tensor) [][]float32 {
		dlogits, loss := specSoftmaxCrossEntropy(in[0].F32, in[1].I32, in[0].Shape[1])
		return [][]float32{dlogits, {loss}}
	},
	float64: func(_ accel.NoParams, in []Tensor) reference {
		dlogits, loss := f64SoftmaxCrossEntropy(in[0].F32, in[1].I32, in[0].Shape[1])
		return reference{results: [][]ev{dlogits, {loss}}}
	},
	// No parts: every gradient is divided by N, the batch's size.
})

func sceCases() []Case {
	var cases []Case
	// The grid: softmax's value classes on every size class, with labels
	// anywhere. The tall and large sizes hold more than one run of 256
	// losses, and a last run that is not full.
	for _, sh := range []struct {
		size string
		n, k int
	}{
		{SizeTiny, 1, 1},
		{SizeOdd, 37, 13},
		{SizeTall, 1000, 3},
		{SizeSkinny, 3, 5000},
		{SizeLarge, 600, 100},
	} {
		for _, class := range gridClasses {
			f := elementFill(class)
			switch class {
			case Exact:
				continue // exp is not exact
			case Normal:
				f = normal(3)
			case Cancel:
				// Values near 10^4, whose differences from the maximum are
				// what exp sees.
				f = func(r *rand.Rand, n int) []float32 {
					v := make([]float32, n)
					for i := range v {
						v[i] = float32(1e4 + 4*r.NormFloat64())
					}
					return v
				}
			}
			cases = append(cases, sceCase(sh.size, sh.size+"-"+dims(sh.n, sh.k), class, sh.n, sh.k, f, nil))
		}
	}

	// Rows of special values, a class of one, one huge logit, losses that
	// overflow, labels on the first and last column, and sums of losses
	// over several runs.
	for _, c := range []struct {
		size, label, values string
		n, k                int
		x                   fill
		labels              func(r *rand.Rand, n, k int) []int32
	}{
		// K = 1: p = 1, no loss and no gradient, except NaN where exp
		// gives NaN (-Inf - -Inf, +Inf - +Inf).
		{SizeTiny, "k1", Normal, 3, 1, normal(5), nil},
		{SizeOdd, "k1-specials", Specials, 7, 1, cycle(0, -3, negInf, posInf, qNaN, maxFloat, negZero), nil},
		// The rows of softmax's specials, each with its label on the first,
		// a middle and the last column in turn.
		{SizeOdd, "rows", Specials, 36, 6, cycle(rows(
			[]float32{1, 2, 3, 4, 5, 6},
			[]float32{negInf, 0, 1, negInf, 2, 3}, // a label at -Inf: an infinite loss
			[]float32{1, 2, posInf, 3, 4, 5},      // NaN everywhere
			[]float32{0, 1, 2, negNaN, 3, 4},      // NaN sticks in the maximum
			[]float32{negInf, negInf, negInf, negInf, negInf, negInf},
			[]float32{1e30, 1e30, -1e30, 88, 100, 1e29},
			[]float32{maxFloat, -maxFloat, 3e38, -3e38, 0, 1}, // x - m overflows: the loss too
			[]float32{negZero, 0, negZero, 0, negZero, 0},
			[]float32{minSub, maxSub, -minSub, -maxSub, minNormal, 0},
			[]float32{100, 100, 100, 100, 100, 100},
			[]float32{-100, -80, -1000, -88, -104, -150},
			[]float32{-88, -87, -103, -104, -90, -86},
		)...), func(_ *rand.Rand, n, k int) []int32 {
			l := make([]int32, n)
			for i := range l {
				l[i] = int32([]int{0, 2, k - 1}[i/12%3])
			}
			return l
		}},
		// One huge logit in each row: the others' exp is 0 or nearly, so
		// the loss is about 0 where the label is on it and the gap
		// otherwise.
		{SizeOdd, "one-huge", Wide, 40, 9, oneHuge, nil},
		{SizeTall, "one-huge-300x9", Wide, 300, 9, oneHuge, nil},
		// Labels on the first and last columns only.
		{SizeOdd, "first-last", Normal, 50, 7, normal(4), firstLast},
		{SizeTall, "first-last-300x7", Normal, 300, 7, normal(4), firstLast},
		// A sum of losses over 2, 9 and 17 runs, the last ones short.
		{SizeOdd, "n257", Uniform, 257, 2, uniform(-20, 20), nil},
		{SizeTall, "n2049", Normal, 2049, 5, normal(10), nil},
		{SizeTall, "n4097-specials", Specials, 4097, 3, mix(0.01, normal(3), pick(specials...)), nil},
		{SizeOdd, "sparse-specials", Specials, 10, 7, mix(0.1, normal(2), pick(specials...)), nil},
		// Losses near the largest float: their mean overflows, or not.
		{SizeOdd, "huge-losses", Overflow, 20, 4, pick(maxFloat, -maxFloat, 3e38, -1e38, 0), nil},
		{SizeOdd, "subnormal", Subnormal, 11, 5, pick(minSub, -minSub, maxSub, -maxSub, minNormal, negZero), nil},
	} {
		cases = append(cases, sceCase(c.size, c.label, c.values, c.n, c.k, c.x, c.labels))
	}
	return cases
}

// sceCase draws logits [n,k] from fx and labels from fl, uniform in [0, k)
// where fl is nil.
func sceCase(size, label, values string, n, k int, fx fill, fl func(r *rand.Rand, n, k int) []int32) Case {
	return newCase(accel.SoftmaxCrossEntropy, size, label, values, accel.NoParams{}, func(r *rand.Rand) []Tensor {
		x := fx(r, n*k)
		var labels []int32
		if fl != nil {
			labels = fl(r, n, k)
		} else {
			labels = make([]int32, n)
			for i := range labels {
				labels[i] = int32(r.IntN(k))
			}
		}
		return []Tensor{{Name: "logits", Shape: []int{n, k}, F32: x}, {Name: "labels", Shape: []int{n}, I32: labels}}
	})
}

// oneHuge fills rows of 9 with normal values and one huge one (80, 1e20 or
// the largest float) at a random place.
func oneHuge(r *rand.Rand, n int) []float32 {
	v := normal(2)(r, n)
	for row := 0; row+9 <= n; row += 9 {
		v[row+r.IntN(9)] = []float32{80, 1e20, maxFloat}[r.IntN(3)]
	}
	return v
}

// firstLast puts each label on the first or the last column.
func firstLast(r *rand.Rand, n, k int) []int32 {
	l := make([]int32, n)
	for i := range l {
		l[i] = int32(r.IntN(2) * (k - 1))
	}
	return l
}

// specSoftmaxCrossEntropy is softmax_cross_entropy of logits X [N,K] and
// labels; it returns dlogits and the loss.
func specSoftmaxCrossEntropy(X []float32, labels []int32, K int) ([]float32, float32) {
	N := len(labels)
	dlogits := make([]float32, N*K)
	loss := make([]float32, N)
	e := make([]float32, K)
	p := make([]float32, K)
	for i := 0; i < N; i++ {
		x := X[i*K : (i+1)*K]
		m, s := specSoftmaxRow(x, e) // softmax's row, to the sum
		for k := 0; k < K; k++ {
			p[k] = e[k] / s
		}
		label := int(labels[i])
		loss[i] = strictmath.Log(s) - (x[label] - m)
		for k := 0; k < K; k++ {
			if k == label {
				dlogits[i*K+k] = strictmath.Canon((p[k] - 1) / float32(N))
			} else {
				dlogits[i*K+k] = strictmath.Canon(p[k] / float32(N))
			}
		}
	}
	return dlogits, strictmath.Canon(strictmath.BlockSum(loss) / float32(N))
}

// f64SoftmaxCrossEntropy is softmax_cross_entropy in float64.
func f64SoftmaxCrossEntropy(x []float32, labels []int32, k int) ([]ev, ev) {
	n := len(labels)
	nf := ev{v: float64(float32(n))}
	one := ev{v: 1}
	dlogits := make([]ev, n*k)
	var total sum
	e := make([]ev, k)
	for i := range n {
		row := x[i*k : (i+1)*k]
		m := math.Inf(-1)
		for _, v := range row {
			if v != v || float64(v) > m {
				m = float64(v)
			}
			if math.IsNaN(m) {
				break
			}
		}
		var s sum
		for j, v := range row {
			e[j] = expEv(sub(exact(v), ev{v: m}))
			s.add(e[j])
		}
		se := s.ev()
		label := int(labels[i])
		for j := range row {
			p := div(e[j], se)
			if j == label {
				p = sub(p, one)
			}
			dlogits[i*k+j] = div(p, nf)
		}
		total.add(sub(logEv(se), sub(exact(row[label]), ev{v: m})))
	}
	return dlogits, div(total.ev(), nf)
}
