//go:build wasip1

// Command tsne is an example guest: it embeds a few hundred points drawn
// from Gaussian clusters in 20 dimensions into 2-D with exact t-SNE, one
// host call per iteration, and prints the KL divergence as it falls.
//
// The guest computes the sparse joint probabilities P itself (perplexity
// search over nearest neighbours); the node runs the O(N²) iterations with
// the embedding kept on the backend. At the end the guest repeats the run
// with the node's reference kernels compiled into WebAssembly and checks that
// the embeddings agree bit for bit in strict mode.
//
//	accelnode run bin/examples/tsne.wasm -- -n 500 -iters 200
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/accel/ref"
	"github.com/accelnode/accelnode/examples/internal/check"
	"github.com/accelnode/accelnode/hostfn/guest"
)

func main() {
	n := flag.Int("n", 300, "points")
	clusters := flag.Int("clusters", 5, "Gaussian clusters")
	iters := flag.Int("iters", 200, "t-SNE iterations")
	perplexity := flag.Float64("perplexity", 30, "perplexity of the input affinities")
	verify := flag.Bool("verify", true, "repeat the run inside the guest and compare")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	if err := run(*n, *clusters, *iters, *perplexity, *verify, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "tsne:", err)
		os.Exit(1)
	}
}

const dims = 20

// schedule holds the usual optimisation schedule: early exaggeration and
// low momentum for the first quarter of the iterations.
func schedule(iter, iters, n int) accel.TSNEParams {
	p := accel.TSNEParams{LearningRate: float32(max(float64(n)/12/4, 50)), Momentum: 0.8, Exaggeration: 1, MinGain: 0.01}
	if iter < iters/4 {
		p.Momentum, p.Exaggeration = 0.5, 12
	}
	return p
}

func run(n, clusters, iters int, perplexity float64, verify bool, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 0))
	x, labels := gaussianClusters(rng, n, clusters)
	rowPtr, cols, vals := affinities(x, n, perplexity)
	y0 := make([]float32, 2*n)
	for i := range y0 {
		y0[i] = float32(rng.NormFloat64() * 1e-4)
	}

	info, err := guest.Info()
	if err != nil {
		return err
	}
	fmt.Printf("t-SNE of %d points in %d clusters (%d-D, perplexity %g, %d nonzeros in P) on %s (%s mode)\n",
		n, clusters, dims, perplexity, len(cols), info.Backend, info.Mode)

	start := time.Now()
	y, kl, err := hostRun(rowPtr, cols, vals, y0, n, iters)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	fmt.Printf("  %d iterations in %.1f ms (%.2f ms each), final KL %.4f\n", iters, elapsed.Seconds()*1e3, elapsed.Seconds()*1e3/float64(iters), kl)
	fmt.Printf("  10-NN label agreement in the embedding: %.3f\n", knnAgreement(y, labels, n, 10))

	if !verify {
		return nil
	}
	local, err := localRun(rowPtr, cols, vals, y0, n, iters)
	if err != nil {
		return err
	}
	return check.Report(info.Mode, "the same run inside the guest", y, local, 0)
}

func hostRun(rowPtr, cols []int32, vals, y0 []float32, n, iters int) ([]float32, float32, error) {
	var st guest.TSNEState
	var err error
	defer func() { guest.FreeAll(st.RowPtr, st.Cols, st.Vals, st.Y, st.Update, st.Gains) }()
	if st.RowPtr, err = guest.FromInt32(rowPtr, n+1); err != nil {
		return nil, 0, err
	}
	if st.Cols, err = guest.FromInt32(cols, len(cols)); err != nil {
		return nil, 0, err
	}
	if st.Vals, err = guest.FromFloat32(vals, len(vals)); err != nil {
		return nil, 0, err
	}
	if st.Y, err = guest.FromFloat32(y0, n, 2); err != nil {
		return nil, 0, err
	}
	if st.Update, err = guest.New(guest.F32, n, 2); err != nil {
		return nil, 0, err
	}
	if st.Gains, err = guest.FromFloat32(ones(2*n), n, 2); err != nil {
		return nil, 0, err
	}
	var kl float32
	for it := 0; it < iters; it++ {
		p := schedule(it, iters, n)
		report := (it+1)%50 == 0 || it == iters-1
		kl, err = guest.TSNEStep(st, guest.TSNEParams{
			LearningRate: p.LearningRate, Momentum: p.Momentum, Exaggeration: p.Exaggeration, MinGain: p.MinGain, ComputeKL: report})
		if err != nil {
			return nil, 0, err
		}
		if report {
			fmt.Printf("  iteration %4d: KL %.4f\n", it+1, kl)
		}
	}
	y, err := st.Y.Float32()
	return y, kl, err
}

// localRun repeats hostRun with the reference kernels inside the guest.
func localRun(rowPtr, cols []int32, vals, y0 []float32, n, iters int) ([]float32, error) {
	s, err := accel.NewSession(ref.New(1), accel.Strict, accel.Limits{}, nil)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var st accel.TSNEState
	if st.RowPtr, err = s.FromInt32(rowPtr, n+1); err != nil {
		return nil, err
	}
	if st.Cols, err = s.FromInt32(cols, len(cols)); err != nil {
		return nil, err
	}
	if st.Vals, err = s.FromFloat32(vals, len(vals)); err != nil {
		return nil, err
	}
	if st.Y, err = s.FromFloat32(y0, n, 2); err != nil {
		return nil, err
	}
	if st.Update, err = s.NewTensor(accel.F32, []int{n, 2}); err != nil {
		return nil, err
	}
	if st.Gains, err = s.FromFloat32(ones(2*n), n, 2); err != nil {
		return nil, err
	}
	for it := 0; it < iters; it++ {
		p := schedule(it, iters, n)
		p.ComputeKL = (it+1)%50 == 0 || it == iters-1 // the KL flag must not change the embedding; compute it as the host run did
		if _, err := s.TSNEStep(context.Background(), st, p); err != nil {
			return nil, err
		}
	}
	return s.Float32(st.Y)
}

func ones(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// gaussianClusters draws n points around random centres.
func gaussianClusters(rng *rand.Rand, n, k int) ([]float64, []int) {
	centres := make([]float64, k*dims)
	for i := range centres {
		centres[i] = rng.NormFloat64() * 4
	}
	x, labels := make([]float64, n*dims), make([]int, n)
	for i := 0; i < n; i++ {
		labels[i] = i % k
		for d := 0; d < dims; d++ {
			x[i*dims+d] = centres[labels[i]*dims+d] + rng.NormFloat64()
		}
	}
	return x, labels
}

func sqdist(x []float64, i, j int) float64 {
	s := 0.0
	for d := 0; d < dims; d++ {
		v := x[i*dims+d] - x[j*dims+d]
		s += v * v
	}
	return s
}

// affinities returns the symmetric joint probabilities P in CSR form: for
// each point, a Gaussian over its 3·perplexity nearest neighbours with the
// bandwidth found by bisection so that its entropy is log(perplexity), then
// P = (P_j|i + P_i|j) / 2N.
func affinities(x []float64, n int, perplexity float64) ([]int32, []int32, []float32) {
	k := min(n-1, int(3*perplexity))
	cond := make([]map[int]float64, n)
	for i := 0; i < n; i++ {
		idx := make([]int, 0, n-1)
		for j := 0; j < n; j++ {
			if j != i {
				idx = append(idx, j)
			}
		}
		d := make([]float64, n)
		for _, j := range idx {
			d[j] = sqdist(x, i, j)
		}
		sort.Slice(idx, func(a, b int) bool { return d[idx[a]] < d[idx[b]] })
		idx = idx[:k]
		lo, hi, beta := 0.0, math.Inf(1), 1.0
		p := make([]float64, k)
		for range 64 {
			sum, h := 0.0, 0.0
			for t, j := range idx {
				p[t] = math.Exp(-beta * (d[j] - d[idx[0]]))
				sum += p[t]
			}
			for t, j := range idx {
				p[t] /= sum
				h += p[t] * beta * (d[j] - d[idx[0]])
			}
			h += math.Log(sum) // H = -Σ p log p, with -log p = β(d-d0) + log(sum)
			if math.Abs(h-math.Log(perplexity)) < 1e-5 {
				break
			}
			if h > math.Log(perplexity) {
				lo = beta
				if math.IsInf(hi, 1) {
					beta *= 2
				} else {
					beta = (beta + hi) / 2
				}
			} else {
				hi = beta
				beta = (beta + lo) / 2
			}
		}
		cond[i] = map[int]float64{}
		for t, j := range idx {
			cond[i][j] = p[t]
		}
	}
	rowPtr := make([]int32, n+1)
	var cols []int32
	var vals []float32
	for i := 0; i < n; i++ {
		nb := map[int]bool{}
		for j := range cond[i] {
			nb[j] = true
		}
		for j := 0; j < n; j++ {
			if _, ok := cond[j][i]; ok {
				nb[j] = true
			}
		}
		js := make([]int, 0, len(nb))
		for j := range nb {
			js = append(js, j)
		}
		slices.Sort(js)
		for _, j := range js {
			cols = append(cols, int32(j))
			vals = append(vals, float32((cond[i][j]+cond[j][i])/(2*float64(n))))
		}
		rowPtr[i+1] = int32(len(cols))
	}
	return rowPtr, cols, vals
}

// knnAgreement is the share of each point's k nearest neighbours in the
// embedding that carry its label.
func knnAgreement(y []float32, labels []int, n, k int) float64 {
	agree := 0
	for i := 0; i < n; i++ {
		idx := make([]int, 0, n-1)
		d := make([]float64, n)
		for j := 0; j < n; j++ {
			if j != i {
				dx, dy := float64(y[2*i]-y[2*j]), float64(y[2*i+1]-y[2*j+1])
				d[j] = dx*dx + dy*dy
				idx = append(idx, j)
			}
		}
		sort.Slice(idx, func(a, b int) bool { return d[idx[a]] < d[idx[b]] })
		for _, j := range idx[:k] {
			if labels[j] == labels[i] {
				agree++
			}
		}
	}
	return float64(agree) / float64(n*k)
}
