package conformance

import (
	"math/rand/v2"

	"github.com/accelnode/accelnode/accel"
)

var _ = register(def[accel.NoParams]{
	op:    accel.BatchMatMul,
	cases: batchMatMulCases,
	spec: func(_ accel.NoParams, in []Tensor) [][]float32 {
		var out []float32
		eachProduct(in[0], in[1], func(a, b Tensor) { out = append(out, specMatMul(a, b, noTrans)...) })
		return [][]float32{out}
	},
	float64: func(_ accel.NoParams, in []Tensor) reference {
		var out []ev
		eachProduct(in[0], in[1], func(a, b Tensor) { out = append(out, f64MatMul(a, b, noTrans)...) })
		return reference{results: [][]ev{out}}
	},
})

// eachProduct calls f with the matrices of each product of a batch_matmul
// of a and b, in the output's order: the batch axes broadcast, and an
// operand that repeats along one is passed again.
func eachProduct(a, b Tensor, f func(a, b Tensor)) {
	ab, bb := a.Shape[:len(a.Shape)-2], b.Shape[:len(b.Shape)-2]
	batch := broadcastOut(ab, bb)
	if len(ab) == 0 && len(bb) == 0 {
		batch = nil
	}
	am, bm := a.Shape[len(a.Shape)-2:], b.Shape[len(b.Shape)-2:]
	na, nb := elements(am), elements(bm)
	for i := range elements(batch) {
		ia, ib := 0, 0
		if len(batch) > 0 {
			ia, ib = broadcastIndex(i, batch, ab), broadcastIndex(i, batch, bb)
			if len(ab) == 0 {
				ia = 0
			}
			if len(bb) == 0 {
				ib = 0
			}
		}
		f(Tensor{Name: "a", Shape: am, F32: a.F32[ia*na : (ia+1)*na]}, Tensor{Name: "b", Shape: bm, F32: b.F32[ib*nb : (ib+1)*nb]})
	}
}

// batchMatMulCases are attention's products (queries by keys, scores by
// values, over batch and heads), a weight shared by every batch, batch
// axes that broadcast both ways, and every value class on one shape.
func batchMatMulCases() []Case {
	var cases []Case
	shapes := []struct {
		size, label string
		a, b        []int
	}{
		{SizeTiny, "one", []int{1, 1, 1}, []int{1, 1, 1}},
		{SizeOdd, "shared-weight", []int{2, 5, 7}, []int{7, 3}},
		{SizeOdd, "shared-input", []int{5, 7}, []int{3, 7, 4}},
		{SizeOdd, "attention-scores", []int{2, 3, 9, 8}, []int{2, 3, 8, 9}},
		{SizeOdd, "broadcast-both", []int{2, 1, 4, 5}, []int{3, 5, 6}},
		{SizeLarge, "heads-64", []int{2, 4, 64, 64}, []int{2, 4, 64, 64}},
	}
	for _, sh := range shapes {
		classes := []string{Normal}
		if sh.label == "attention-scores" {
			classes = gridClasses
		}
		for _, class := range classes {
			fa, fb, _ := productFills(class, sh.a[len(sh.a)-1])
			a, b := sh.a, sh.b
			cases = append(cases, newCase(accel.BatchMatMul, sh.size, sh.label+"-"+dims(a...)+"x"+dims(b...), class, accel.NoParams{}, func(r *rand.Rand) []Tensor {
				return []Tensor{{Name: "a", Shape: a, F32: fa(r, elements(a))}, {Name: "b", Shape: b, F32: fb(r, elements(b))}}
			}))
		}
	}
	return cases
}
