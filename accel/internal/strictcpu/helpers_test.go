package strictcpu

import (
	"context"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/internal/hostmem"
)

// backend serves kernels in host memory as accel/ref does, for the tests
// here, which cannot import accel/ref: it imports this package.
type backend struct {
	k     *Kernels
	table accel.Kernels
}

func newBackend(k *Kernels) *backend { return &backend{k: k, table: k.Table()} }

func (b *backend) Name() string { return "strictcpu-" + b.k.Level() }

func (b *backend) Status() accel.Status {
	return accel.Status{Name: b.Name(), Available: true, Device: b.k.Level() + " kernels",
		Modes: accel.AllModes, FastIsStrict: true, Threads: b.k.Threads()}
}

func (b *backend) Kernel(op *accel.Op, _ accel.Mode) accel.Kernel { return b.table[op] }

func (b *backend) Alloc(dt accel.DType, n int) (accel.Buffer, error) { return hostmem.Alloc(dt, n) }

func (b *backend) Write(dst accel.Buffer, first int, src []byte) error {
	return hostmem.Write(dst, first, src)
}

func (b *backend) Read(src accel.Buffer, first int, dst []byte) error {
	return hostmem.Read(src, first, dst)
}

func (b *backend) Close() error { return nil }

// newSession returns a strict session on the fastest kernels with threads
// threads.
func newSession(tb testing.TB, threads int) *accel.Session {
	tb.Helper()
	return sessionOn(tb, New(threads))
}

// newSessionKernels returns a strict session on kernels with threads
// threads and the inner loops kern.
func newSessionKernels(tb testing.TB, threads int, kern *kernels) *accel.Session {
	tb.Helper()
	return sessionOn(tb, newWithKernels(threads, kern))
}

func sessionOn(tb testing.TB, k *Kernels) *accel.Session {
	tb.Helper()
	s, err := accel.NewSession(newBackend(k), accel.Strict, accel.Limits{}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// tensorF32 returns an f32 tensor of shape holding data.
func tensorF32(tb testing.TB, s *accel.Session, shape []int, data []float32) *accel.Tensor {
	tb.Helper()
	t, err := s.FromFloat32(data, shape...)
	if err != nil {
		tb.Fatalf("tensor %v: %v", shape, err)
	}
	return t
}

// tensorI32 returns an i32 tensor of shape holding data.
func tensorI32(tb testing.TB, s *accel.Session, shape []int, data []int32) *accel.Tensor {
	tb.Helper()
	t, err := s.FromInt32(data, shape...)
	if err != nil {
		tb.Fatalf("tensor %v: %v", shape, err)
	}
	return t
}

// readF32 returns the elements of an f32 tensor.
func readF32(tb testing.TB, s *accel.Session, t *accel.Tensor) []float32 {
	tb.Helper()
	v, err := s.Float32(t)
	if err != nil {
		tb.Fatalf("read tensor: %v", err)
	}
	return v
}

// randF32 returns n values uniform in [-1, 1).
func randF32(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = 2*r.Float32() - 1
	}
	return v
}

// randomP returns a random sparse symmetric joint-probability matrix in CSR
// form with about perRow entries per row, entries of a row in increasing
// column order, values summing to 1.
func randomP(r *rand.Rand, n, perRow int) (rowPtr, cols []int32, vals []float32) {
	rows := make([]map[int32]float32, n)
	for i := range rows {
		rows[i] = map[int32]float32{}
	}
	var total float64
	for i := range n {
		for range perRow / 2 {
			j := r.IntN(n)
			if j == i {
				continue
			}
			v := r.Float32() + 0.01
			rows[i][int32(j)] += v
			rows[j][int32(i)] += v
			total += 2 * float64(v)
		}
	}
	rowPtr = make([]int32, n+1)
	for i, m := range rows {
		for _, j := range slices.Sorted(maps.Keys(m)) {
			cols = append(cols, j)
			vals = append(vals, float32(float64(m[j])/total))
		}
		rowPtr[i+1] = int32(len(cols))
	}
	return rowPtr, cols, vals
}

// tsneInputs holds the host data of one t-SNE step.
type tsneInputs struct {
	rowPtr, cols []int32
	vals         []float32
	y, u, g      []float32
}

func randomTSNE(r *rand.Rand, n, perRow int) tsneInputs {
	in := tsneInputs{y: make([]float32, 2*n), u: make([]float32, 2*n), g: make([]float32, 2*n)}
	in.rowPtr, in.cols, in.vals = randomP(r, n, perRow)
	for i := range in.y {
		in.y[i] = float32(r.NormFloat64())
		in.u[i] = float32(r.NormFloat64() * 1e-3)
		in.g[i] = 1
	}
	return in
}

// state uploads in to s.
func (in tsneInputs) state(tb testing.TB, s *accel.Session) accel.TSNEState {
	n := len(in.y) / 2
	nnz := len(in.cols)
	return accel.TSNEState{
		RowPtr: tensorI32(tb, s, []int{n + 1}, in.rowPtr),
		Cols:   tensorI32(tb, s, []int{nnz}, in.cols),
		Vals:   tensorF32(tb, s, []int{nnz}, in.vals),
		Y:      tensorF32(tb, s, []int{n, 2}, in.y),
		Update: tensorF32(tb, s, []int{n, 2}, in.u),
		Gains:  tensorF32(tb, s, []int{n, 2}, in.g),
	}
}

var bg = context.Background()

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }
