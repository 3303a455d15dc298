//go:build wasip1

// Command mnist-train is an example guest that trains the seed's MNIST
// network (examples/internal/mnistnet) on the real digits with host calls
// alone: the forward pass, every gradient and the optimiser's steps run on
// the node's backend, and the weights never leave it during an epoch.
//
// It reads the MNIST files from a preopened directory, initialises the
// weights from a fixed seed, shuffles in a fixed order and prints, per
// epoch, the loss, the accuracy on the test digits and the sha256 of the
// weights. In strict mode the hashes are the same on every backend and
// thread count. With -out it writes the trained weights, which
// examples/mnist/model turns into an ONNX model.
//
//	accelnode run --dir .deps/mnist:/data:ro --dir bin:/out bin/examples/mnist-train.wasm -- -epochs 3 -out /out
package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/accelnode/accelnode/examples/internal/mnistnet"
	"github.com/accelnode/accelnode/hostfn/guest"
	"github.com/accelnode/accelnode/mnist"
)

type config struct {
	data, out, grads   string
	epochs, train      int
	test, batch        int
	optimizer          string
	lr, momentum       float64
	decay              float64
	seed               uint64
	evalBatch, logStep int
}

func main() {
	var c config
	flag.StringVar(&c.data, "data", "/data", "directory holding the MNIST files")
	flag.StringVar(&c.out, "out", "", "directory to write the trained weights to (mnist-weights.ant); empty writes none")
	flag.StringVar(&c.grads, "grads", "", "write the first batch's gradients to this file, and stop")
	flag.IntVar(&c.epochs, "epochs", 3, "passes over the training images")
	flag.IntVar(&c.train, "train", 60000, "training images used (the first ones)")
	flag.IntVar(&c.test, "test", 10000, "test images evaluated after each epoch")
	flag.IntVar(&c.batch, "batch", 64, "images per training step")
	flag.StringVar(&c.optimizer, "optimizer", "sgd", "sgd (with momentum) or adam")
	flag.Float64Var(&c.lr, "lr", 0, "learning rate; 0 takes 0.05 for sgd and 0.001 for adam")
	flag.Float64Var(&c.momentum, "momentum", 0.9, "momentum of sgd")
	flag.Float64Var(&c.decay, "lr-decay", 0.3, "factor the learning rate is multiplied by after each epoch")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the initial weights and the shuffling")
	flag.IntVar(&c.evalBatch, "eval-batch", 500, "images per evaluation step")
	flag.IntVar(&c.logStep, "log-every", 0, "print the loss every so many steps; 0 prints per epoch only")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "mnist-train:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	if c.lr == 0 {
		c.lr = map[string]float64{"sgd": 0.05, "adam": 0.001}[c.optimizer]
	}
	switch {
	case c.optimizer != "sgd" && c.optimizer != "adam":
		return fmt.Errorf("-optimizer %q: want sgd or adam", c.optimizer)
	case c.batch < 1 || c.evalBatch < 1 || c.epochs < 0:
		return errors.New("-batch, -eval-batch and -epochs must be positive")
	case !(c.decay > 0 && c.decay <= 1):
		return errors.New("-lr-decay must lie in (0, 1]")
	}
	train, err := mnist.Load(c.data, "train")
	if err != nil {
		return err
	}
	test, err := mnist.Load(c.data, "t10k")
	if err != nil {
		return err
	}
	c.train, c.test = min(max(c.train, c.batch), train.N), min(c.test, test.N)
	info, err := guest.Info()
	if err != nil {
		return err
	}

	net, err := upload(mnistnet.Init(c.seed))
	if err != nil {
		return err
	}
	defer net.free()
	opt, err := newOptimizer(c)
	if err != nil {
		return err
	}
	defer opt.free()

	if c.grads != "" {
		return dumpGradients(c, net, train)
	}

	fmt.Printf("mnist-train: %d training and %d test digits, batch %d, %s (lr %g, ×%g an epoch), seed %d, on %s (%s mode)\n",
		c.train, c.test, c.batch, c.optimizer, c.lr, c.decay, c.seed, info.Backend, info.Mode)
	hash, err := net.hash()
	if err != nil {
		return err
	}
	fmt.Printf("epoch 0: weights %s\n", hash)
	steps := c.train / c.batch // the remainder of a shuffled epoch is left out
	x := make([]float32, c.batch*mnistnet.Side*mnistnet.Side)
	labels := make([]int32, c.batch)
	for epoch := 1; epoch <= c.epochs; epoch++ {
		order := rand.New(rand.NewPCG(c.seed, uint64(epoch))).Perm(c.train)
		start := time.Now()
		var lossSum float64
		correct := 0
		for s := range steps {
			batchOf(train, order[s*c.batch:(s+1)*c.batch], x, labels)
			st, err := net.step(x, labels, true)
			if err != nil {
				return fmt.Errorf("epoch %d step %d: %w", epoch, s, err)
			}
			if err := opt.apply(net, st.grads); err != nil {
				st.free()
				return fmt.Errorf("epoch %d step %d: %w", epoch, s, err)
			}
			lossSum += float64(st.loss)
			correct += st.correct
			st.free()
			if c.logStep > 0 && (s+1)%c.logStep == 0 {
				fmt.Printf("  step %d: loss %.4f\n", s+1, lossSum/float64(s+1))
			}
		}
		elapsed := time.Since(start)
		opt.c.lr *= c.decay
		acc, err := evaluate(net, test, c.test, c.evalBatch)
		if err != nil {
			return err
		}
		if hash, err = net.hash(); err != nil {
			return err
		}
		fmt.Printf("epoch %d: loss %.4f, train accuracy %.2f%%, test accuracy %.2f%%, %.0f images/s, weights %s\n",
			epoch, lossSum/float64(steps), 100*float64(correct)/float64(steps*c.batch), 100*acc,
			float64(steps*c.batch)/elapsed.Seconds(), hash)
	}
	if c.out == "" {
		return nil
	}
	ts, err := net.download()
	if err != nil {
		return err
	}
	path := filepath.Join(c.out, "mnist-weights.ant")
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := mnist.WriteTensors(f, ts); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Printf("wrote %s\n", path)
	return nil
}

// batchOf fills x and labels with the images idx, as pixels in [0, 1].
func batchOf(s *mnist.Set, idx []int, x []float32, labels []int32) {
	side := s.Rows * s.Cols
	for b, i := range idx {
		mnistnet.Pixels(x[b*side:(b+1)*side], s.Image(i))
		labels[b] = int32(s.Labels[i])
	}
}

// network holds the parameters on the node, in mnistnet.Params' order.
type network struct{ params []guest.Tensor }

func upload(ts []mnist.Tensor) (*network, error) {
	n := &network{}
	for _, t := range ts {
		h, err := guest.FromFloat32(t.Data, t.Shape...)
		if err != nil {
			n.free()
			return nil, fmt.Errorf("upload %s: %w", t.Name, err)
		}
		n.params = append(n.params, h)
	}
	return n, nil
}

func (n *network) free() { guest.FreeAll(n.params...) }

// download reads the parameters back.
func (n *network) download() ([]mnist.Tensor, error) {
	ts := mnistnet.Init(0) // shapes and names; the values are replaced
	for i := range ts {
		if err := n.params[i].ReadFloat32(0, ts[i].Data); err != nil {
			return nil, fmt.Errorf("read %s: %w", ts[i].Name, err)
		}
	}
	return ts, nil
}

// hash is the sha256 of every parameter's f32 values, little-endian, in
// mnistnet.Params' order.
func (n *network) hash() (string, error) {
	ts, err := n.download()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, t := range ts {
		for _, v := range t.Data {
			h.Write(binary.LittleEndian.AppendUint32(nil, math.Float32bits(v)))
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

var (
	convParams = guest.Conv2DParams{PadTop: mnistnet.Pad, PadLeft: mnistnet.Pad, PadBottom: mnistnet.Pad, PadRight: mnistnet.Pad}
	poolParams = guest.Pool2DParams{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2}
)

// stepResult is one batch's loss, correct answers and, when asked for,
// gradients (in mnistnet.Params' order), which the caller frees.
type stepResult struct {
	loss    float32
	correct int
	grads   []guest.Tensor
}

func (s stepResult) free() { guest.FreeAll(s.grads...) }

// step runs the forward pass on a batch and, with backward, the gradients
// of the mean cross-entropy.
func (n *network) step(x []float32, labels []int32, backward bool) (res stepResult, err error) {
	var temps []guest.Tensor
	defer func() { guest.FreeAll(temps...) }()
	keep := func(t guest.Tensor, e error) guest.Tensor {
		if e != nil && err == nil {
			err = e
		}
		temps = append(temps, t)
		return t
	}
	batch := len(labels)
	p := n.params
	xt := keep(guest.FromFloat32(x, batch, 1, mnistnet.Side, mnistnet.Side))
	yt := keep(guest.FromInt32(labels, batch))
	c1 := keep(guest.Conv2D(xt, p[0], p[1], convParams))
	r1 := keep(guest.Relu(c1))
	p1 := keep(guest.MaxPool2D(r1, poolParams))
	c2 := keep(guest.Conv2D(p1, p[2], p[3], convParams))
	r2 := keep(guest.Relu(c2))
	p2 := keep(guest.MaxPool2D(r2, poolParams))
	if err != nil {
		return res, err
	}
	if err = p2.Reshape(batch, mnistnet.Flat); err != nil {
		return res, err
	}
	h := keep(guest.MatMul(p2, p[4], 0))
	hb := keep(guest.AddBias(h, p[5], 1))
	hr := keep(guest.Relu(hb))
	l := keep(guest.MatMul(hr, p[6], 0))
	logits := keep(guest.AddBias(l, p[7], 1))
	if err != nil {
		return res, err
	}
	dlogits, loss, err := guest.SoftmaxCrossEntropy(logits, yt)
	if err != nil {
		return res, err
	}
	keep(dlogits, nil)
	res.loss = loss
	if res.correct, err = countCorrect(logits, labels); err != nil || !backward {
		return res, err
	}

	g := make([]guest.Tensor, len(p))
	// Dense layers: y = x·W + b.
	g[6] = keep(guest.MatMul(hr, dlogits, guest.TransA))
	g[7] = keep(guest.ReduceSum(dlogits, 0))
	dhr := keep(guest.MatMul(dlogits, p[6], guest.TransB))
	dh := keep(guest.ReluBackward(hb, dhr))
	g[4] = keep(guest.MatMul(p2, dh, guest.TransA))
	g[5] = keep(guest.ReduceSum(dh, 0))
	dflat := keep(guest.MatMul(dh, p[4], guest.TransB))
	if err != nil {
		return res, err
	}
	if err = dflat.Reshape(batch, mnistnet.Conv2, mnistnet.Side/4, mnistnet.Side/4); err != nil {
		return res, err
	}
	// Convolutions.
	dr2 := keep(guest.MaxPool2DBackward(r2, dflat, poolParams))
	dc2 := keep(guest.ReluBackward(c2, dr2))
	g[2] = keep(guest.Conv2DBackwardFilter(p1, dc2, guest.Conv2DBackwardFilterParams{Conv2DParams: convParams, KernelH: mnistnet.Kernel, KernelW: mnistnet.Kernel}))
	g[3] = keep(guest.ReduceSum(dc2, 0, 2, 3))
	dp1 := keep(guest.Conv2DBackwardData(dc2, p[2], guest.Conv2DBackwardDataParams{Conv2DParams: convParams, InputH: mnistnet.Side / 2, InputW: mnistnet.Side / 2}))
	dr1 := keep(guest.MaxPool2DBackward(r1, dp1, poolParams))
	dc1 := keep(guest.ReluBackward(c1, dr1))
	g[0] = keep(guest.Conv2DBackwardFilter(xt, dc1, guest.Conv2DBackwardFilterParams{Conv2DParams: convParams, KernelH: mnistnet.Kernel, KernelW: mnistnet.Kernel}))
	g[1] = keep(guest.ReduceSum(dc1, 0, 2, 3))
	if err != nil {
		return res, err
	}
	// The gradients outlive the step: take them out of the temporaries.
	for _, t := range g {
		for i := range temps {
			if temps[i] == t {
				temps[i] = guest.Tensor{}
			}
		}
	}
	res.grads = g
	return res, nil
}

// countCorrect counts the rows whose largest logit is the label's.
func countCorrect(logits guest.Tensor, labels []int32) (int, error) {
	v := make([]float32, len(labels)*mnistnet.Classes)
	if err := logits.ReadFloat32(0, v); err != nil {
		return 0, err
	}
	correct := 0
	for i, l := range labels {
		if argmax(v[i*mnistnet.Classes:(i+1)*mnistnet.Classes]) == int(l) {
			correct++
		}
	}
	return correct, nil
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// evaluate returns the share of the first n test digits classified right.
func evaluate(net *network, test *mnist.Set, n, batch int) (float64, error) {
	correct := 0
	x := make([]float32, batch*mnistnet.Side*mnistnet.Side)
	labels := make([]int32, batch)
	idx := make([]int, 0, batch)
	for first := 0; first < n; first += batch {
		idx = idx[:0]
		for i := first; i < min(n, first+batch); i++ {
			idx = append(idx, i)
		}
		b := len(idx)
		batchOf(test, idx, x[:b*mnistnet.Side*mnistnet.Side], labels[:b])
		st, err := net.step(x[:b*mnistnet.Side*mnistnet.Side], labels[:b], false)
		if err != nil {
			return 0, fmt.Errorf("evaluate: %w", err)
		}
		correct += st.correct
	}
	return float64(correct) / float64(n), nil
}

// optimizer holds the optimiser's state on the node, one tensor (sgd) or
// two (adam) per parameter.
type optimizer struct {
	c     config
	state [][]guest.Tensor
	t     int
}

func newOptimizer(c config) (*optimizer, error) {
	o := &optimizer{c: c}
	per := map[string]int{"sgd": 1, "adam": 2}[c.optimizer]
	for _, p := range mnistnet.Params {
		var st []guest.Tensor
		for range per {
			z, err := guest.New(guest.F32, p.Shape...)
			if err != nil {
				o.free()
				return nil, err
			}
			st = append(st, z)
		}
		o.state = append(o.state, st)
	}
	return o, nil
}

func (o *optimizer) free() {
	for _, st := range o.state {
		guest.FreeAll(st...)
	}
}

// apply takes one step on every parameter.
func (o *optimizer) apply(net *network, grads []guest.Tensor) error {
	o.t++
	for i, w := range net.params {
		var err error
		switch o.c.optimizer {
		case "sgd":
			err = guest.SGDMomentum(w, grads[i], o.state[i][0], guest.SGDParams{LearningRate: float32(o.c.lr), Momentum: float32(o.c.momentum)})
		default:
			c1, c2 := guest.AdamCorrections(0.9, 0.999, o.t)
			err = guest.Adam(w, grads[i], o.state[i][0], o.state[i][1], guest.AdamParams{
				LearningRate: float32(o.c.lr), Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8, Correction1: c1, Correction2: c2})
		}
		if err != nil {
			return fmt.Errorf("update %s: %w", mnistnet.Params[i].Name, err)
		}
	}
	return nil
}

// dumpGradients writes the initial weights, the first batch of the first
// epoch, its loss and every gradient, for an independent implementation
// to check (mnist/gorgonia).
func dumpGradients(c config, net *network, train *mnist.Set) error {
	order := rand.New(rand.NewPCG(c.seed, 1)).Perm(c.train)
	x := make([]float32, c.batch*mnistnet.Side*mnistnet.Side)
	labels := make([]int32, c.batch)
	batchOf(train, order[:c.batch], x, labels)
	st, err := net.step(x, labels, true)
	if err != nil {
		return err
	}
	defer st.free()
	ts, err := net.download()
	if err != nil {
		return err
	}
	for i, g := range st.grads {
		v := make([]float32, len(ts[i].Data))
		if err := g.ReadFloat32(0, v); err != nil {
			return err
		}
		ts = append(ts, mnist.Tensor{Name: "grad." + ts[i].Name, Shape: ts[i].Shape, Data: v})
	}
	lf := make([]float32, len(labels))
	for i, l := range labels {
		lf[i] = float32(l)
	}
	ts = append(ts,
		mnist.Tensor{Name: "x", Shape: []int{c.batch, 1, mnistnet.Side, mnistnet.Side}, Data: x},
		mnist.Tensor{Name: "labels", Shape: []int{c.batch}, Data: lf},
		mnist.Tensor{Name: "loss", Shape: []int{1}, Data: []float32{st.loss}})
	f, err := os.Create(c.grads)
	if err != nil {
		return err
	}
	if err := mnist.WriteTensors(f, ts); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Printf("wrote the gradients of a batch of %d to %s (loss %.6f)\n", c.batch, c.grads, st.loss)
	return nil
}
