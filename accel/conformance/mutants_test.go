package conformance

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/internal/hostmem"
	"github.com/accelnode/accelnode/accel/strictmath"
)

// A mutant is the spec backend with one operation's kernel replaced by one
// with a deliberate deviation. Verify must report it with the check named
// in want, in a text holding phrase.
type mutant struct {
	specBackend
	op     *accel.Op
	kernel accel.Kernel
	fast   bool // serves fast mode only: it does not claim the contract
}

func (m mutant) Kernel(op *accel.Op, mode accel.Mode) accel.Kernel {
	if op == m.op {
		return m.kernel
	}
	return m.specBackend.Kernel(op, mode)
}

func (m mutant) Status() accel.Status {
	st := m.specBackend.Status()
	if m.fast {
		st.Modes, st.FastIsStrict = []accel.Mode{accel.Fast}, false
	}
	return st
}

func TestMutants(t *testing.T) {
	for _, c := range []struct {
		name   string
		m      mutant
		want   Check
		phrase string
	}{
		{"matmul-reversed-k", mutant{op: accel.MatMul, kernel: matmulMutant(reversedMatMul)}, Contract, "c differs from the contract"},
		{"matmul-fma", mutant{op: accel.MatMul, kernel: matmulMutant(fmaMatMul)}, Contract, "c differs from the contract"},
		{"matmul-raw-nan", mutant{op: accel.MatMul, kernel: after(accel.MatMul, rawNaN)}, Contract, "both NaN, payload or sign differs"},
		{"matmul-clobbers-a", mutant{op: accel.MatMul, kernel: after(accel.MatMul, clobberA)}, Inputs, "input a was modified"},
		{"matmul-run-to-run", mutant{op: accel.MatMul, kernel: after(accel.MatMul, flaky()), fast: true}, RunToRun, "second run on the same inputs gives another c"},
		{"matmul-gemv", mutant{op: accel.MatMul, kernel: after(accel.MatMul, gemv)}, Batch, "computed alone differs from the full batch"},
		{"conv2d-multiplies-pad", mutant{op: accel.Conv2D, kernel: padConv}, Accuracy, "y differs from float64"},
		{"relu-keeps-neg-zero", mutant{op: accel.Relu, kernel: negZeroRelu}, Contract, "sign of zero differs"},
		{"maxpool2d-last-tie", mutant{op: accel.MaxPool2D, kernel: lastTiePool}, Contract, "sign of zero differs"},
		{"softmax-no-max", mutant{op: accel.Softmax, kernel: noMaxSoftmax}, Accuracy, "y differs from float64"},
		{"add_bias-last-axis", mutant{op: accel.AddBias, kernel: lastAxisBias}, Accuracy, "y differs from float64"},
		{"add-flushes-subnormals", mutant{op: accel.Add, kernel: after(accel.Add, flushSubnormals)}, Accuracy, "y differs from float64"},
		{"tsne_step-no-centring", mutant{op: accel.TSNEStep, kernel: uncentredTSNE}, Accuracy, "column 0 of y has mean"},
		{"tsne_step-exaggerated-kl", mutant{op: accel.TSNEStep, kernel: exaggeratedKL}, Accuracy, "kl differs from float64"},
		{"tsne_step-barnes-hut-ignored", mutant{op: accel.TSNEStep, kernel: exactForBarnesHut}, Contract, "y differs from the contract"},
		{"tsne_affinities-over-n", mutant{op: accel.TSNEAffinities, kernel: after(accel.TSNEAffinities, doubledP)}, Accuracy, "P sums to"},
		{"tsne_affinities-stale-tail", mutant{op: accel.TSNEAffinities, kernel: after(accel.TSNEAffinities, staleTail)}, Accuracy, "after row_ptr[N]"},
		{"tsne_affinities-perplexity-off", mutant{op: accel.TSNEAffinities, kernel: perplexityOff}, Accuracy, "perplexity exp(H)"},
		{"embedding_quality-ties-to-greatest-label", mutant{op: accel.EmbeddingQuality, kernel: greatestLabelWins}, Accuracy, "quality differs from float64"},
		{"embedding_quality-neighbours-in-the-data", mutant{op: accel.EmbeddingQuality, kernel: dataNeighbours}, Accuracy, "quality differs from float64"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			mode := accel.Strict
			if c.m.fast {
				mode = accel.Fast
			}
			s, err := accel.NewSession(c.m, mode, accel.Limits{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// The quick cases first: most mutants show there.
			cases := Cases(c.m.op, true)
			for _, tc := range Cases(c.m.op, false) {
				if !tc.Quick {
					cases = append(cases, tc)
				}
			}
			for _, tc := range cases {
				problems, err := Verify(t.Context(), s, tc)
				if err != nil {
					t.Fatalf("%s: %v", tc, err)
				}
				if slices.ContainsFunc(problems, func(p Problem) bool { return p.Check == c.want && strings.Contains(p.Text, c.phrase) }) {
					return
				}
			}
			t.Errorf("no case finds the mutant: no %s problem with %q", c.want, c.phrase)
		})
	}
}

// after runs the contract's kernel for op, then edit on its call.
func after(op *accel.Op, edit func(c *accel.Call)) accel.Kernel {
	spec := specBackend{}.Kernel(op, accel.Strict)
	return func(ctx context.Context, c *accel.Call) error {
		if err := spec(ctx, c); err != nil {
			return err
		}
		edit(c)
		return nil
	}
}

// matmulMutant computes matmul by f from row-major A [M,K] and B [K,N].
func matmulMutant(f func(A, B []float32, m, k, n int) []float32) accel.Kernel {
	return func(_ context.Context, c *accel.Call) error {
		p := c.Params.(accel.MatMulParams)
		m, k, n, _ := accel.MatMulDims(c.In[0].Shape(), c.In[1].Shape(), p)
		A, B := hostmem.F32(c.In[0]), hostmem.F32(c.In[1])
		if p.TransA {
			A = transpose(A, k, m)
		}
		if p.TransB {
			B = transpose(B, n, k)
		}
		copy(hostmem.F32(c.Out[0]), f(A, B, m, k, n))
		return nil
	}
}

func reversedMatMul(A, B []float32, m, k, n int) []float32 {
	C := make([]float32, m*n)
	for i := range m {
		for j := range n {
			s := float32(0)
			for kk := k - 1; kk >= 0; kk-- {
				s = s + float32(A[i*k+kk]*B[kk*n+j])
			}
			C[i*n+j] = strictmath.Canon(s)
		}
	}
	return C
}

func fmaMatMul(A, B []float32, m, k, n int) []float32 {
	C := make([]float32, m*n)
	for i := range m {
		for j := range n {
			s := float32(0)
			for kk := range k {
				s = float32(math.FMA(float64(A[i*k+kk]), float64(B[kk*n+j]), float64(s)))
			}
			C[i*n+j] = strictmath.Canon(s)
		}
	}
	return C
}

// rawNaN writes NaNs as x86 computes Inf - Inf.
func rawNaN(c *accel.Call) {
	for i, v := range hostmem.F32(c.Out[0]) {
		if v != v {
			hostmem.F32(c.Out[0])[i] = negNaN
		}
	}
}

// clobberA uses a as scratch space.
func clobberA(c *accel.Call) { clear(hostmem.F32(c.In[0])) }

// flaky rounds every other call's first output element differently.
func flaky() func(c *accel.Call) {
	var calls atomic.Int64
	return func(c *accel.Call) {
		if calls.Add(1)%2 == 0 {
			y := hostmem.F32(c.Out[0])
			y[0] = math.Nextafter32(y[0], float32(math.Inf(1)))
		}
	}
}

// gemv is one ulp off where the product has a single row.
func gemv(c *accel.Call) {
	if y := hostmem.F32(c.Out[0]); c.Out[0].Shape()[0] == 1 && y[0] == y[0] {
		y[0] = math.Nextafter32(y[0], float32(math.Inf(1)))
	}
}

// padConv pads the input with zeros and multiplies them.
func padConv(_ context.Context, c *accel.Call) error {
	x, w, bias, p := c.In[0], c.In[1], c.In[2], c.Params.(accel.Conv2DParams)
	xs, X := x.Shape(), hostmem.F32(x)
	H, W := xs[2]+p.PadTop+p.PadBottom, xs[3]+p.PadLeft+p.PadRight
	P := make([]float32, xs[0]*xs[1]*H*W)
	for nc := range xs[0] * xs[1] {
		for h := range xs[2] {
			for wi := range xs[3] {
				P[(nc*H+h+p.PadTop)*W+wi+p.PadLeft] = X[(nc*xs[2]+h)*xs[3]+wi]
			}
		}
	}
	var b []float32
	if bias != nil {
		b = hostmem.F32(bias)
	}
	p.PadTop, p.PadBottom, p.PadLeft, p.PadRight = 0, 0, 0, 0
	copy(hostmem.F32(c.Out[0]), specConv2D(P, []int{xs[0], xs[1], H, W}, hostmem.F32(w), w.Shape(), b, p))
	return nil
}

func negZeroRelu(_ context.Context, c *accel.Call) error {
	Y := slices.Clone(hostmem.F32(c.In[0]))
	for i, v := range Y {
		if v < 0 {
			Y[i] = 0
		}
	}
	strictmath.CanonSlice(Y)
	copy(hostmem.F32(c.Out[0]), Y)
	return nil
}

// lastTiePool lets the last of equal values win: it scans the flipped
// input with a flipped window.
func lastTiePool(_ context.Context, c *accel.Call) error {
	p := c.Params.(accel.Pool2DParams)
	X := slices.Clone(hostmem.F32(c.In[0]))
	slices.Reverse(X)
	p.PadTop, p.PadBottom, p.PadLeft, p.PadRight = p.PadBottom, p.PadTop, p.PadRight, p.PadLeft
	Y := specMaxPool2D(X, c.In[0].Shape(), p)
	slices.Reverse(Y)
	copy(hostmem.F32(c.Out[0]), Y)
	return nil
}

func noMaxSoftmax(_ context.Context, c *accel.Call) error {
	X, L := hostmem.F32(c.In[0]), lastDim(c.In[0].Shape())
	Y := hostmem.F32(c.Out[0])
	for r := 0; r < len(X); r += L {
		s := float32(0)
		for _, v := range X[r : r+L] {
			s += strictmath.Exp(v)
		}
		for i, v := range X[r : r+L] {
			Y[r+i] = strictmath.Canon(strictmath.Exp(v) / s)
		}
	}
	return nil
}

func lastAxisBias(_ context.Context, c *accel.Call) error {
	X, B, Y := hostmem.F32(c.In[0]), hostmem.F32(c.In[1]), hostmem.F32(c.Out[0])
	for i := range X {
		Y[i] = strictmath.Canon(X[i] + B[i%len(B)])
	}
	return nil
}

// flushSubnormals flushes subnormal results to +0.
func flushSubnormals(c *accel.Call) {
	y := hostmem.F32(c.Out[0])
	for i, v := range y {
		if v != 0 && math.Abs(float64(v)) < 0x1p-126 {
			y[i] = 0
		}
	}
}

// specTSNEKernel is the contract's tsne_step.
var specTSNEKernel = specBackend{}.Kernel(accel.TSNEStep, accel.Strict)

// uncentredTSNE leaves the new embedding where the update moved it.
func uncentredTSNE(ctx context.Context, c *accel.Call) error {
	y := slices.Clone(hostmem.F32(c.In[3]))
	if err := specTSNEKernel(ctx, c); err != nil {
		return err
	}
	for i, u := range hostmem.F32(c.In[4]) {
		y[i] += u
	}
	copy(hostmem.F32(c.In[3]), y)
	return nil
}

// exaggeratedKL computes the KL divergence of the exaggerated P.
func exaggeratedKL(ctx context.Context, c *accel.Call) error {
	p := c.Params.(accel.TSNEParams)
	st := accel.TSNEStateOf(c)
	rowPtr, cols := hostmem.I32(st.RowPtr), hostmem.I32(st.Cols)
	y, u, g := slices.Clone(hostmem.F32(st.Y)), slices.Clone(hostmem.F32(st.Update)), slices.Clone(hostmem.F32(st.Gains))
	P := slices.Clone(hostmem.F32(st.Vals))
	for i, v := range P {
		P[i] = float32(p.Exaggeration * v)
	}
	if err := specTSNEKernel(ctx, c); err != nil {
		return err
	}
	_, _, _, c.Scalar = specTSNEStep(rowPtr, cols, P, y, u, g, p)
	return nil
}

// exactForBarnesHut runs the exact step whatever θ.
func exactForBarnesHut(ctx context.Context, c *accel.Call) error {
	p := c.Params.(accel.TSNEParams)
	p.Theta = 0
	exact := *c
	exact.Params = p
	err := specTSNEKernel(ctx, &exact)
	c.Scalar = exact.Scalar
	return err
}

// doubledP divides by N where the contract divides by 2N.
func doubledP(c *accel.Call) {
	for i, v := range hostmem.F32(c.Out[2]) {
		hostmem.F32(c.Out[2])[i] = 2 * v
	}
}

// staleTail leaves what the buffer held after the entries used, as a
// kernel that allocates without clearing does.
func staleTail(c *accel.Call) {
	nnz := int(hostmem.I32(c.Out[0])[c.Out[0].Len()-1])
	if cols := hostmem.I32(c.Out[1]); nnz < len(cols) {
		cols[len(cols)-1] = 1
	}
}

// perplexityOff fits each point's distribution to a perplexity 6% above
// the one asked for.
func perplexityOff(ctx context.Context, c *accel.Call) error {
	x, p := c.In[0], c.Params.(accel.TSNEAffinitiesParams)
	rowPtr, cols, vals := specTSNEAffinities(hostmem.F32(x), x.Shape()[0], x.Shape()[1], p.Perplexity*1.06)
	if len(cols) != c.Out[1].Len() {
		// The perplexity changes k, and the outputs no longer fit.
		return specBackend{}.Kernel(accel.TSNEAffinities, accel.Strict)(ctx, c)
	}
	copy(hostmem.I32(c.Out[0]), rowPtr)
	copy(hostmem.I32(c.Out[1]), cols)
	copy(hostmem.F32(c.Out[2]), vals)
	return nil
}

// greatestLabelWins breaks ties of the vote for the greatest label: the
// contract's rule on negated labels.
func greatestLabelWins(_ context.Context, c *accel.Call) error {
	x, y, k := c.In[0], c.In[1], c.Params.(accel.EmbeddingQualityParams).K
	var labels []int32
	if c.In[2] != nil {
		for _, l := range hostmem.I32(c.In[2]) {
			labels = append(labels, -l)
		}
	}
	T, A := specEmbeddingQuality(hostmem.F32(x), x.Shape()[1], hostmem.F32(y), y.Shape()[1], labels, x.Shape()[0], k)
	copy(hostmem.F32(c.Out[0]), []float32{T, A})
	return nil
}

// dataNeighbours takes each point's neighbours in the data where the
// contract takes them in the embedding.
func dataNeighbours(_ context.Context, c *accel.Call) error {
	x, k := c.In[0], c.Params.(accel.EmbeddingQualityParams).K
	var labels []int32
	if c.In[2] != nil {
		labels = hostmem.I32(c.In[2])
	}
	X := hostmem.F32(x)
	T, A := specEmbeddingQuality(X, x.Shape()[1], X, x.Shape()[1], labels, x.Shape()[0], k)
	copy(hostmem.F32(c.Out[0]), []float32{T, A})
	return nil
}
