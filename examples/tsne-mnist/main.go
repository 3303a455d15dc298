//go:build wasip1

// Command tsne-mnist is an example guest that embeds MNIST digits in 2-D
// with t-SNE, every heavy step a host call: PCA to 50 dimensions
// (examples/internal/pca), the input affinities (tsne_affinities), the
// Barnes-Hut or exact iterations (tsne_step) and the quality measures
// (embedding_quality). It follows scikit-learn's TSNE with init="pca" and
// learning_rate="auto" and its defaults, so that the two can be compared
// run for run.
//
// It reads the MNIST files from a preopened directory: the first -n digits
// of the 60,000 training digits followed by the 10,000 test digits. With
// -data - it reads its points from stdin instead (points.go): a CSV of
// label,x1,...,xD lines, or the binary form the node's web page sends. It
// prints the KL divergence every 50 iterations on stderr, as
// "kl: iteration=50 kl=3.2101 grad_norm=0.0123 seconds=0.84", then the
// trustworthiness and k-NN accuracy of the embedding, the time of each phase
// and the sha256 of the embedding; in strict mode the hash is the same on
// every backend and thread count. With -out it writes the embedding and the
// labels as CSV (x,y,label); with -out - the CSV goes to stdout and the
// summary to stderr.
//
//	accelnode run --dir .deps/mnist:/data:ro --dir bin:/out bin/examples/tsne-mnist.wasm -- -n 10000 -out /out/tsne.csv
//	accelnode run bin/examples/tsne-mnist.wasm -- -data - -pca 0 -out - < points.csv > embedding.csv
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/accelnode/accelnode/examples/internal/pca"
	"github.com/accelnode/accelnode/hostfn/guest"
	"github.com/accelnode/accelnode/mnist"
)

type config struct {
	data, out         string
	n, pca, iters     int
	exIters, qualityK int
	perplexity, theta float64
	exaggeration, lr  float64
	seed              uint64
	verbose           bool
}

func main() {
	var c config
	flag.StringVar(&c.data, "data", "/data", "directory holding the MNIST files; - reads the points from stdin")
	flag.IntVar(&c.n, "n", 10000, "digits embedded: the training digits, then the test digits (at most 70000); with -data -, every point read")
	flag.IntVar(&c.pca, "pca", 50, "principal components the data is reduced to first; 0 embeds the pixels")
	flag.Float64Var(&c.perplexity, "perplexity", 30, "perplexity of the input affinities")
	flag.Float64Var(&c.theta, "theta", 0.5, "Barnes-Hut angle; 0 runs the exact O(N²) gradient")
	flag.IntVar(&c.iters, "iters", 1000, "most iterations, the exaggerated ones included")
	flag.Float64Var(&c.exaggeration, "exaggeration", 12, "early exaggeration of P")
	flag.IntVar(&c.exIters, "exaggeration-iters", 250, "iterations with early exaggeration")
	flag.Float64Var(&c.lr, "lr", 0, "learning rate; 0 is scikit-learn's auto, max(N / exaggeration / 4, 50)")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the PCA's random start")
	flag.IntVar(&c.qualityK, "quality-k", 10, "neighbours of the trustworthiness and k-NN accuracy; 0 skips them")
	flag.StringVar(&c.out, "out", "", "write the embedding and labels to this CSV file (x,y,label); - writes it to stdout")
	flag.BoolVar(&c.verbose, "v", false, "print the PCA and the affinities' progress on stderr")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "tsne-mnist:", err)
		os.Exit(1)
	}
}

// The MNIST digits: 60,000 training ones, then 10,000 test ones.
const (
	trainDigits = 60000
	maxDigits   = 70000
	side        = 28 * 28
)

// scikit-learn's _gradient_descent: the checks every 50 iterations, the
// patience of the second stage and the smallest gradient norm.
const (
	checkEvery  = 50
	patience    = 300
	minGradNorm = 1e-7
	minGain     = 0.01
)

// fits checks the flags that depend on the data: its c.n points of dim
// dimensions.
func (c config) fits(dim int) error {
	switch {
	case c.n < 2:
		return fmt.Errorf("%d points: want at least 2", c.n)
	case c.pca < 0 || c.pca > dim:
		return fmt.Errorf("-pca %d: want 0 to %d, the points' dimensions", c.pca, dim)
	case c.pca == 0 && dim < 2:
		return fmt.Errorf("the points have %d dimension: want at least 2", dim)
	case !(c.perplexity >= 1) || c.perplexity >= float64(c.n):
		return fmt.Errorf("-perplexity %g: want at least 1 and below the %d points", c.perplexity, c.n)
	case c.qualityK < 0 || 2*c.qualityK >= c.n:
		return fmt.Errorf("-quality-k %d: want 0 (none) or at least 1 and below half the %d points", c.qualityK, c.n)
	}
	return nil
}

func run(c config) error {
	if c.data != "-" && (c.n < 2 || c.n > maxDigits) {
		return fmt.Errorf("-n %d: want 2 to %d digits", c.n, maxDigits)
	}
	if c.iters < 1 || c.exIters < 0 {
		return errors.New("-iters must be positive and -exaggeration-iters not negative")
	}
	if !(c.theta >= 0) || !(c.exaggeration > 0) || !(c.lr >= 0) {
		return errors.New("-theta, -exaggeration and -lr must be finite and not negative")
	}
	info, err := guest.Info()
	if err != nil {
		return err
	}
	var t phases
	start := time.Now()

	var x guest.Tensor
	var labels []int32
	dim := side
	if c.data == "-" {
		x, labels, dim, err = readPoints(os.Stdin)
	} else {
		x, labels, err = load(c.data, c.n)
	}
	if err != nil {
		return err
	}
	c.n = len(labels)
	if err := c.fits(dim); err != nil {
		x.Free()
		return err
	}
	t.load = time.Since(start)
	if c.lr == 0 {
		c.lr = max(float64(c.n)/c.exaggeration/4, 50)
	}

	// The data t-SNE sees (the projection, or the pixels with -pca 0) and
	// the start, scikit-learn's init="pca" on it.
	mark := time.Now()
	data, y0, evr, err := reduce(x, c)
	if err != nil {
		x.Free()
		return err
	}
	if data != x {
		x.Free() // t-SNE needs the projection only
	}
	defer data.Free()
	t.pca = time.Since(mark)

	mark = time.Now()
	st, err := guest.TSNEAffinities(data, float32(c.perplexity))
	if err != nil {
		return err
	}
	defer func() { guest.FreeAll(st.RowPtr, st.Cols, st.Vals, st.Y, st.Update, st.Gains) }()
	nnz, err := st.NNZ()
	if err != nil {
		return err
	}
	t.affinities = time.Since(mark)
	if c.verbose {
		fmt.Fprintf(os.Stderr, "affinities: %d entries in P (%.1fs)\n", nnz, t.affinities.Seconds())
	}

	mark = time.Now()
	if st.Y, err = guest.FromFloat32(y0, c.n, 2); err != nil {
		return err
	}
	if st.Update, err = guest.New(guest.F32, c.n, 2); err != nil {
		return err
	}
	if st.Gains, err = guest.New(guest.F32, c.n, 2); err != nil {
		return err
	}
	kl, iters, err := optimise(st, c)
	if err != nil {
		return err
	}
	y, err := st.Y.Float32()
	if err != nil {
		return err
	}
	t.optimise = time.Since(mark)
	// The embedding is written before the quality is measured, which for
	// many digits takes a while and may fail on a backend that lacks it.
	if c.out != "" {
		if err := writeCSV(c.out, y, labels); err != nil {
			return err
		}
	}

	mark = time.Now()
	quality := ""
	if c.qualityK > 0 {
		lt, err := guest.FromInt32(labels, c.n)
		if err != nil {
			return err
		}
		trust, acc, err := guest.EmbeddingQuality(data, st.Y, lt, c.qualityK)
		lt.Free()
		if err != nil {
			return err
		}
		quality = fmt.Sprintf(" trust%d=%.4f knn%d=%.4f", c.qualityK, trust, c.qualityK, acc)
	}
	t.quality = time.Since(mark)
	t.total = time.Since(start)

	// The summary goes to stdout, unless the embedding went there.
	report := os.Stdout
	if c.out == "-" {
		report = os.Stderr
	}
	fmt.Fprintf(report, "tsne: n=%d pca=%d evr=%.4f perplexity=%g theta=%g lr=%.6g exaggeration=%g nnz=%d iters=%d kl=%.4f%s backend=%s mode=%s\n",
		c.n, c.pca, evr, c.perplexity, c.theta, c.lr, c.exaggeration, nnz, iters, kl, quality, info.Backend, info.Mode)
	fmt.Fprintf(report, "time: load=%.2fs pca=%.2fs affinities=%.2fs optimise=%.2fs quality=%.2fs total=%.2fs\n",
		t.load.Seconds(), t.pca.Seconds(), t.affinities.Seconds(), t.optimise.Seconds(), t.quality.Seconds(), t.total.Seconds())
	fmt.Fprintf(report, "embedding sha256 %s\n", hash(y))
	if c.out != "" && c.out != "-" {
		fmt.Fprintf(report, "wrote %s\n", c.out)
	}
	return nil
}

type phases struct{ load, pca, affinities, optimise, quality, total time.Duration }

// load uploads the first n digits as f32 [n, 784] pixels in [0, 1] and
// returns them with their labels.
func load(dir string, n int) (guest.Tensor, []int32, error) {
	sets := []string{"train"}
	if n > trainDigits {
		sets = append(sets, "t10k")
	}
	x, err := guest.New(guest.F32, n, side)
	if err != nil {
		return guest.Tensor{}, nil, err
	}
	labels := make([]int32, 0, n)
	// Rows go up in blocks, so that the guest never holds all the floats.
	const block = 1024
	buf := make([]float32, block*side)
	for _, name := range sets {
		s, err := mnist.LoadFirst(dir, name, n-len(labels)) // decompressing the rest would take longer than the PCA
		if err != nil {
			x.Free()
			return guest.Tensor{}, nil, err
		}
		if s.Rows*s.Cols != side {
			x.Free()
			return guest.Tensor{}, nil, fmt.Errorf("mnist %s: images of %dx%d pixels, want 28x28", name, s.Rows, s.Cols)
		}
		take := min(s.N, n-len(labels))
		for first := 0; first < take; first += block {
			rows := min(block, take-first)
			for i, p := range s.Images[first*side : (first+rows)*side] {
				buf[i] = float32(p) / 255
			}
			if err := x.WriteFloat32(len(labels)*side+first*side, buf[:rows*side]); err != nil {
				x.Free()
				return guest.Tensor{}, nil, err
			}
		}
		for _, l := range s.Labels[:take] {
			labels = append(labels, int32(l))
		}
	}
	if len(labels) < n {
		x.Free()
		return guest.Tensor{}, nil, fmt.Errorf("%s holds %d digits, fewer than -n %d", dir, len(labels), n)
	}
	return x, labels, nil
}

// reduce returns the data t-SNE embeds (the PCA projection, or x itself
// with -pca 0), the initial embedding and the explained variance ratio of
// the kept components. The start is scikit-learn's init="pca": the first
// two principal coordinates of that data, scaled so that the first has
// standard deviation 1e-4. With PCA those are the projection's first two
// columns, since PCA of a centred projection on leading axes finds the
// same axes.
func reduce(x guest.Tensor, c config) (data guest.Tensor, y0 []float32, evr float64, err error) {
	k := c.pca
	if k == 0 {
		k = 2
	}
	fit, err := pca.Fit(x, k, pca.Options{Seed: c.seed})
	if err != nil {
		return guest.Tensor{}, nil, 0, err
	}
	if c.pca > 0 {
		for _, r := range fit.Ratios {
			evr += r
		}
		data = fit.Projection
	} else {
		defer fit.Projection.Free()
		data, evr = x, 1
	}
	if c.verbose {
		fmt.Fprintf(os.Stderr, "pca: %d components, explained variance %.4f (first %.4f)\n", c.pca, evr, fit.Ratios[0])
	}
	y0, err = initial(fit.Projection, c.n, k)
	if err != nil {
		if data != x {
			data.Free()
		}
		return guest.Tensor{}, nil, 0, err
	}
	return data, y0, evr, nil
}

// initial reads the first two columns of p [n,k] and scales them by
// 1e-4 over the first one's standard deviation.
func initial(p guest.Tensor, n, k int) ([]float32, error) {
	y := make([]float64, 2*n)
	const block = 4096
	buf := make([]float32, block*k)
	for first := 0; first < n; first += block {
		rows := min(block, n-first)
		if err := p.ReadFloat32(first*k, buf[:rows*k]); err != nil {
			return nil, err
		}
		for i := range rows {
			y[2*(first+i)], y[2*(first+i)+1] = float64(buf[i*k]), float64(buf[i*k+1])
		}
	}
	mean, ss := 0.0, 0.0
	for i := range n {
		mean += y[2*i]
	}
	mean /= float64(n)
	for i := range n {
		ss += (y[2*i] - mean) * (y[2*i] - mean)
	}
	std := math.Sqrt(ss / float64(n))
	if std == 0 {
		return nil, errors.New("the data does not vary along its first principal axis")
	}
	out := make([]float32, 2*n)
	for i, v := range y {
		out[i] = float32(v / std * 1e-4)
	}
	return out, nil
}

// optimise runs scikit-learn's schedule (sklearn/manifold/_t_sne.py): a
// first stage of -exaggeration-iters iterations with P exaggerated and
// momentum 0.5, then the rest with momentum 0.8. Each stage is one call of
// its _gradient_descent, so the update and gains start afresh (zeros and
// ones) at each, and each stops early on its own checks: every 50th
// iteration, no better KL for its patience (the stage's length in the
// first, 300 in the second) or a gradient norm of at most 1e-7. It returns
// the last KL computed and the iterations run.
func optimise(st guest.TSNEState, c config) (float32, int, error) {
	stages := []struct {
		end                    int
		momentum, exaggeration float32
		patience               int
	}{
		{min(c.exIters, c.iters), 0.5, float32(c.exaggeration), c.exIters},
		{c.iters, 0.8, 1, patience},
	}
	ones := make([]float32, 2*c.n)
	for i := range ones {
		ones[i] = 1
	}
	zeros := make([]float32, 2*c.n)
	uOld, uNew := make([]float32, 2*c.n), make([]float32, 2*c.n)
	var kl float32
	it := 0
	start := time.Now()
	for _, s := range stages {
		if it >= s.end {
			continue
		}
		if err := st.Update.WriteFloat32(0, zeros); err != nil {
			return 0, 0, err
		}
		if err := st.Gains.WriteFloat32(0, ones); err != nil {
			return 0, 0, err
		}
		best, bestIt := float32(math.MaxFloat32), it
		p := guest.TSNEParams{LearningRate: float32(c.lr), Momentum: s.momentum, Exaggeration: s.exaggeration,
			MinGain: minGain, Theta: float32(c.theta)}
		for ; it < s.end; it++ {
			check := (it+1)%checkEvery == 0
			p.ComputeKL = check || it == s.end-1
			if check {
				if err := st.Update.ReadFloat32(0, uOld); err != nil {
					return 0, 0, err
				}
			}
			var err error
			if kl, err = guest.TSNEStep(st, p); err != nil {
				return 0, 0, fmt.Errorf("iteration %d: %w", it+1, err)
			}
			if !check {
				continue
			}
			if err := st.Update.ReadFloat32(0, uNew); err != nil {
				return 0, 0, err
			}
			norm := gradNorm(uOld, uNew, s.momentum, p.LearningRate)
			fmt.Fprintf(os.Stderr, "kl: iteration=%d kl=%.4f grad_norm=%.3g seconds=%.2f\n", it+1, kl, norm, time.Since(start).Seconds())
			stop := false
			if kl < best {
				best, bestIt = kl, it
			} else if it-bestIt > s.patience {
				stop = true
			}
			if norm <= minGradNorm {
				stop = true
			}
			if stop {
				it++
				break
			}
		}
	}
	return kl, it, nil
}

// gradNorm is the norm scikit-learn checks against min_grad_norm: that of
// the gradient times the gains, after the update. The node does not return
// the gradient, but its update rule, u_new = m·u_old − lr·gains·grad, gives
// gains·grad = (m·u_old − u_new) / lr back from the updates before and
// after the step (to float32 rounding, which a test against 1e-7 does not
// notice).
func gradNorm(uOld, uNew []float32, momentum, lr float32) float64 {
	s := 0.0
	for i := range uOld {
		g := (float64(momentum)*float64(uOld[i]) - float64(uNew[i])) / float64(lr)
		s += g * g
	}
	return math.Sqrt(s)
}

// writeCSV writes one line per point: x, y (shortest float32 forms, which
// read back to the same bits) and the label; path - is stdout.
func writeCSV(path string, y []float32, labels []int32) error {
	f := os.Stdout
	if path != "-" {
		var err error
		if f, err = os.Create(path); err != nil {
			return err
		}
	}
	w := bufio.NewWriter(f)
	w.WriteString("x,y,label\n")
	var line strings.Builder
	for i, l := range labels {
		line.Reset()
		line.WriteString(strconv.FormatFloat(float64(y[2*i]), 'g', -1, 32))
		line.WriteByte(',')
		line.WriteString(strconv.FormatFloat(float64(y[2*i+1]), 'g', -1, 32))
		line.WriteByte(',')
		line.WriteString(strconv.Itoa(int(l)))
		line.WriteByte('\n')
		w.WriteString(line.String())
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if path == "-" {
		return nil
	}
	return f.Close()
}

// hash is the sha256 of the embedding's float32s, little-endian.
func hash(y []float32) string {
	b := make([]byte, 4*len(y))
	for i, v := range y {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
