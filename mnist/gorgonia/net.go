// Package oracle is an independent reference for the node's MNIST training:
// the same convolutional network, built in gorgonia, so that gradients and
// training results produced elsewhere (the wasm guest) can be checked
// against a second implementation.
//
// It lives in its own Go module so that gorgonia never enters the node
// binary's dependency graph.
//
// The network, NCHW, float32:
//
//	conv1 (16×1×5×5, pad 2) → relu → maxpool 2×2/2   → [B,16,14,14]
//	conv2 (32×16×5×5, pad 2) → relu → maxpool 2×2/2  → [B,32,7,7]
//	flatten (C,H,W) → dense1 (1568→128) → relu → dense2 (128→10) → logits
//	loss = mean over the batch of softmax cross-entropy
//
// Dense weights are stored [in,out] (y = x·W + b). Input pixels are u8/255.
//
// Run from this directory (its own module):
//
//	go test ./...                                   # gradient check, dump comparison, training loop
//	go test -run TestGradientsMatchDump -grads FILE # check a gradient dump made by the guest
//	go test -run XXX -bench Train                   # SGD throughput on MNIST, images/s
//	go test -run TestTrainAccuracy -train.epochs 1  # train on MNIST, check test accuracy
//
// MNIST is found with mnist.FindDir (the main module's .deps/mnist, which
// make deps fills) or given with -mnist DIR; without it the MNIST tests
// and benchmarks skip.
package oracle

import (
	"fmt"
	"math"

	"github.com/accelnode/accelnode/mnist"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Image geometry and class count.
const (
	Rows    = 28
	Cols    = 28
	Pixels  = Rows * Cols
	Classes = 10
)

// ParamNames lists the parameters in their canonical order.
var ParamNames = []string{
	"conv1.w", "conv1.b",
	"conv2.w", "conv2.b",
	"dense1.w", "dense1.b",
	"dense2.w", "dense2.b",
}

// ParamShapes gives the shape of each parameter.
var ParamShapes = map[string][]int{
	"conv1.w":  {16, 1, 5, 5},
	"conv1.b":  {16},
	"conv2.w":  {32, 16, 5, 5},
	"conv2.b":  {32},
	"dense1.w": {32 * 7 * 7, 128},
	"dense1.b": {128},
	"dense2.w": {128, Classes},
	"dense2.b": {Classes},
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// orderParams checks that params holds exactly the eight parameters, each
// with its shape and a matching amount of data, and returns their data in
// ParamNames order.
func orderParams(params []mnist.Tensor) ([][]float32, error) {
	byName := make(map[string]mnist.Tensor, len(params))
	for _, p := range params {
		if _, ok := ParamShapes[p.Name]; !ok {
			return nil, fmt.Errorf("oracle: unknown parameter %q", p.Name)
		}
		if _, dup := byName[p.Name]; dup {
			return nil, fmt.Errorf("oracle: parameter %q given twice", p.Name)
		}
		byName[p.Name] = p
	}
	out := make([][]float32, len(ParamNames))
	for i, name := range ParamNames {
		p, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("oracle: parameter %q missing", name)
		}
		want := ParamShapes[name]
		if !sameShape(p.Shape, want) {
			return nil, fmt.Errorf("oracle: parameter %q has shape %v, want %v", name, p.Shape, want)
		}
		if len(p.Data) != numel(want) {
			return nil, fmt.Errorf("oracle: parameter %q has %d values, want %d", name, len(p.Data), numel(want))
		}
		out[i] = p.Data
	}
	return out, nil
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func checkBatch(x []float32, labels []int, batch int) error {
	if batch <= 0 {
		return fmt.Errorf("oracle: empty batch")
	}
	if len(x) != batch*Pixels {
		return fmt.Errorf("oracle: %d input values for a batch of %d, want %d", len(x), batch, batch*Pixels)
	}
	if labels != nil {
		if len(labels) != batch {
			return fmt.Errorf("oracle: %d labels for a batch of %d", len(labels), batch)
		}
		for i, l := range labels {
			if l < 0 || l >= Classes {
				return fmt.Errorf("oracle: label %d of the batch is %d, outside 0..%d", i, l, Classes-1)
			}
		}
	}
	return nil
}

// net is one gorgonia graph for a fixed batch size. With train set it
// also holds the symbolic gradients of the loss with respect to every
// parameter.
type net struct {
	batch  int
	train  bool
	g      *G.ExprGraph
	vm     G.VM
	x      *G.Node // [B,1,28,28]
	onehot *G.Node // [B,10]; nil without train
	params []*G.Node
	logits *G.Node
	loss   *G.Node

	xT, yT *tensor.Dense // input backing, reused between runs
}

// newNet builds the graph for batch images and loads the parameter
// values (copied; data is in ParamNames order).
func newNet(data [][]float32, batch int, train bool) (*net, error) {
	n := &net{batch: batch, train: train, g: G.NewGraph()}
	if err := n.build(data); err != nil {
		return nil, err
	}
	return n, nil
}

// buildError carries an error out of build's constructor chain.
type buildError struct{ error }

func must(nd *G.Node, err error) *G.Node {
	if err != nil {
		panic(buildError{err})
	}
	return nd
}

func (n *net) build(data [][]float32) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if be, ok := r.(buildError); ok {
				err = fmt.Errorf("oracle: building the gorgonia graph: %w", be.error)
				return
			}
			// gorgonia's constructors also panic on misuse
			err = fmt.Errorf("oracle: building the gorgonia graph: %v", r)
		}
	}()
	g, B := n.g, n.batch
	n.params = make([]*G.Node, len(ParamNames))
	for i, name := range ParamNames {
		shape := ParamShapes[name]
		backing := append([]float32(nil), data[i]...)
		t := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(backing))
		n.params[i] = G.NewTensor(g, tensor.Float32, len(shape), G.WithShape(shape...), G.WithName(name), G.WithValue(t))
	}
	c1w, c1b, c2w, c2b := n.params[0], n.params[1], n.params[2], n.params[3]
	d1w, d1b, d2w, d2b := n.params[4], n.params[5], n.params[6], n.params[7]

	n.xT = tensor.New(tensor.WithShape(B, 1, Rows, Cols), tensor.Of(tensor.Float32))
	n.x = G.NewTensor(g, tensor.Float32, 4, G.WithShape(B, 1, Rows, Cols), G.WithName("x"), G.WithValue(n.xT))

	convBlock := func(in, w, b *G.Node) *G.Node {
		ks := w.Shape()
		c := must(G.Conv2d(in, w, tensor.Shape{ks[2], ks[3]}, []int{2, 2}, []int{1, 1}, []int{1, 1}))
		c = must(G.BroadcastAdd(c, b, nil, []byte{0, 2, 3})) // bias [C] over batch, height, width
		c = must(G.Rectify(c))
		return must(G.MaxPool2D(c, tensor.Shape{2, 2}, []int{0, 0}, []int{2, 2}))
	}
	h := convBlock(n.x, c1w, c1b)
	h = convBlock(h, c2w, c2b)
	if got, want := h.Shape(), (tensor.Shape{B, 32, 7, 7}); !got.Eq(want) {
		return fmt.Errorf("oracle: after the conv blocks the shape is %v, want %v", got, want)
	}
	h = must(G.Reshape(h, tensor.Shape{B, 32 * 7 * 7})) // (C,H,W) order
	h = must(G.Mul(h, d1w))
	h = must(G.BroadcastAdd(h, d1b, nil, []byte{0}))
	h = must(G.Rectify(h))
	h = must(G.Mul(h, d2w))
	n.logits = must(G.BroadcastAdd(h, d2b, nil, []byte{0}))

	if !n.train {
		n.vm = G.NewTapeMachine(g)
		return nil
	}

	// loss = −mean_b Σ_k onehot[b,k]·logsoftmax(logits)[b,k]
	n.yT = tensor.New(tensor.WithShape(B, Classes), tensor.Of(tensor.Float32))
	n.onehot = G.NewMatrix(g, tensor.Float32, G.WithShape(B, Classes), G.WithName("onehot"), G.WithValue(n.yT))
	logp := must(G.LogSoftMax(n.logits, 1))
	picked := must(G.HadamardProd(logp, n.onehot))
	perImage := must(G.Sum(picked, 1))
	n.loss = must(G.Neg(must(G.Mean(perImage))))
	if _, err = G.Grad(n.loss, n.params...); err != nil {
		return fmt.Errorf("oracle: symbolic gradient: %w", err)
	}
	n.vm = G.NewTapeMachine(g, G.BindDualValues(n.params...))
	return nil
}

func (n *net) close() {
	if n.vm != nil {
		n.vm.Close()
	}
}

// run loads a batch and runs the graph once (forward, and backward when
// the net was built for training).
func (n *net) run(x []float32, labels []int) error {
	if err := checkBatch(x, labels, n.batch); err != nil {
		return err
	}
	copy(n.xT.Data().([]float32), x)
	if n.train {
		y := n.yT.Data().([]float32)
		clear(y)
		for i, l := range labels {
			y[i*Classes+l] = 1
		}
		// The parameters' gradients live in dual values that gorgonia
		// accumulates into and that vm.Reset leaves alone: clear them so
		// each run's gradients are its own.
		for i := range n.params {
			if gv, err := n.params[i].Grad(); err == nil && gv != nil {
				if d, ok := gv.Data().([]float32); ok {
					clear(d)
				}
			}
		}
	}
	defer n.vm.Reset()
	if err := n.vm.RunAll(); err != nil {
		return fmt.Errorf("oracle: gorgonia run: %w", err)
	}
	return nil
}

// lossValue is the loss of the last run (train nets only).
func (n *net) lossValue() (float32, error) {
	v, ok := n.loss.Value().Data().(float32)
	if !ok {
		return 0, fmt.Errorf("oracle: loss is %T, not float32", n.loss.Value().Data())
	}
	if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
		return v, fmt.Errorf("oracle: loss is %v", v)
	}
	return v, nil
}

// logitsValue is the [B,10] logits of the last run, row-major.
func (n *net) logitsValue() []float32 {
	return n.logits.Value().Data().([]float32)
}

// paramData is the live data of parameter i (an in-place update of it
// changes the next run).
func (n *net) paramData(i int) []float32 {
	return n.params[i].Value().Data().([]float32)
}

// gradData is the gradient of parameter i from the last run.
func (n *net) gradData(i int) ([]float32, error) {
	gv, err := n.params[i].Grad()
	if err != nil {
		return nil, fmt.Errorf("oracle: gradient of %s: %w", ParamNames[i], err)
	}
	d, ok := gv.Data().([]float32)
	if !ok || len(d) != numel(ParamShapes[ParamNames[i]]) {
		return nil, fmt.Errorf("oracle: gradient of %s is %T with the wrong size", ParamNames[i], gv.Data())
	}
	return d, nil
}

// Gradients loads params (the eight tensors named in ParamNames, any
// order) into a gorgonia graph and runs it forward and backward on the
// batch x ([B,1,28,28] flattened, pixels already scaled to [0,1]) with the
// given labels. It returns the mean softmax cross-entropy loss and the
// gradient of the loss with respect to every parameter, keyed by name.
func Gradients(params []mnist.Tensor, x []float32, labels []int) (loss float32, grads map[string][]float32, err error) {
	data, err := orderParams(params)
	if err != nil {
		return 0, nil, err
	}
	B := len(labels)
	if err := checkBatch(x, labels, B); err != nil {
		return 0, nil, err
	}
	n, err := newNet(data, B, true)
	if err != nil {
		return 0, nil, err
	}
	defer n.close()
	if err := n.run(x, labels); err != nil {
		return 0, nil, err
	}
	if loss, err = n.lossValue(); err != nil {
		return 0, nil, err
	}
	grads = make(map[string][]float32, len(ParamNames))
	for i, name := range ParamNames {
		d, err := n.gradData(i)
		if err != nil {
			return 0, nil, err
		}
		grads[name] = append([]float32(nil), d...)
	}
	return loss, grads, nil
}
