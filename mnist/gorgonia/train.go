package oracle

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/accelnode/accelnode/mnist"
)

// InitParams draws initial parameters the way PyTorch's Conv2d and Linear
// do by default: weights and biases uniform in ±1/sqrt(fan_in). The same
// seed gives the same parameters.
func InitParams(seed uint64) []mnist.Tensor {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	fanIn := map[string]int{
		"conv1.w": 1 * 5 * 5, "conv1.b": 1 * 5 * 5,
		"conv2.w": 16 * 5 * 5, "conv2.b": 16 * 5 * 5,
		"dense1.w": 32 * 7 * 7, "dense1.b": 32 * 7 * 7,
		"dense2.w": 128, "dense2.b": 128,
	}
	ps := make([]mnist.Tensor, 0, len(ParamNames))
	for _, name := range ParamNames {
		shape := ParamShapes[name]
		bound := 1 / math.Sqrt(float64(fanIn[name]))
		d := make([]float32, numel(shape))
		for i := range d {
			d[i] = float32((rng.Float64()*2 - 1) * bound)
		}
		ps = append(ps, mnist.Tensor{Name: name, Shape: append([]int(nil), shape...), Data: d})
	}
	return ps
}

// PixelsToInput converts u8 pixels to the network's input, p/255 as float32.
func PixelsToInput(pixels []uint8) []float32 {
	var table [256]float32 // the same values as dividing, without the divisions
	for p := range table {
		table[p] = float32(p) / 255
	}
	x := make([]float32, len(pixels))
	for i, p := range pixels {
		x[i] = table[p]
	}
	return x
}

// LabelsToInts widens u8 labels.
func LabelsToInts(labels []uint8) []int {
	out := make([]int, len(labels))
	for i, l := range labels {
		out[i] = int(l)
	}
	return out
}

// Trainer runs SGD with momentum, PyTorch's convention (no dampening, no
// Nesterov, no weight decay):
//
//	v = momentum·v + g;  w -= lr·v
//
// with v starting at zero. One gorgonia graph serves full batches; a
// batch of another size (an epoch's last) gets a graph of its own.
type Trainer struct {
	LR, Momentum float32

	batch int
	main  *net
	other map[int]*net
	vel   [][]float32
}

// NewTrainer loads params (copied) for training in batches of batch images.
func NewTrainer(params []mnist.Tensor, batch int, lr, momentum float32) (*Trainer, error) {
	if batch <= 0 {
		return nil, fmt.Errorf("oracle: batch size %d", batch)
	}
	data, err := orderParams(params)
	if err != nil {
		return nil, err
	}
	n, err := newNet(data, batch, true)
	if err != nil {
		return nil, err
	}
	t := &Trainer{LR: lr, Momentum: momentum, batch: batch, main: n, other: map[int]*net{}}
	t.vel = make([][]float32, len(ParamNames))
	for i, d := range data {
		t.vel[i] = make([]float32, len(d))
	}
	return t, nil
}

// Step runs one SGD step on a batch (any size; len(x) = len(labels)·784)
// and returns the batch's mean loss before the update.
func (t *Trainer) Step(x []float32, labels []int) (float32, error) {
	n := t.main
	if len(labels) != t.batch {
		n = t.other[len(labels)]
		if n == nil {
			var err error
			if n, err = newNet(t.paramData(), len(labels), true); err != nil {
				return 0, err
			}
			t.other[len(labels)] = n
		} else {
			for i := range ParamNames {
				copy(n.paramData(i), t.main.paramData(i))
			}
		}
	}
	if err := n.run(x, labels); err != nil {
		return 0, err
	}
	loss, err := n.lossValue()
	if err != nil {
		return 0, err
	}
	lr, mu := t.LR, t.Momentum
	for i := range ParamNames {
		g, err := n.gradData(i)
		if err != nil {
			return 0, err
		}
		w, v := t.main.paramData(i), t.vel[i]
		for j := range w {
			v[j] = mu*v[j] + g[j]
			w[j] -= lr * v[j]
		}
	}
	return loss, nil
}

func (t *Trainer) paramData() [][]float32 {
	d := make([][]float32, len(ParamNames))
	for i := range ParamNames {
		d[i] = t.main.paramData(i)
	}
	return d
}

// Params returns a copy of the current parameters.
func (t *Trainer) Params() []mnist.Tensor {
	out := make([]mnist.Tensor, len(ParamNames))
	for i, name := range ParamNames {
		out[i] = mnist.Tensor{
			Name:  name,
			Shape: append([]int(nil), ParamShapes[name]...),
			Data:  append([]float32(nil), t.main.paramData(i)...),
		}
	}
	return out
}

// Close releases the graphs.
func (t *Trainer) Close() {
	t.main.close()
	for _, n := range t.other {
		n.close()
	}
}

// Train runs epochs of SGD with momentum over images ([N,1,28,28]
// flattened, pixels scaled to [0,1]) and labels, in order, in batches of
// batch images (the last batch of an epoch may be smaller), starting from
// params. It returns the trained parameters and each epoch's mean batch
// loss.
func Train(params []mnist.Tensor, images []float32, labels []int, batch int, lr, momentum float32, epochs int) ([]mnist.Tensor, []float64, error) {
	N := len(labels)
	if len(images) != N*Pixels {
		return nil, nil, fmt.Errorf("oracle: %d pixels for %d labels", len(images), N)
	}
	if N == 0 {
		return nil, nil, fmt.Errorf("oracle: no training images")
	}
	t, err := NewTrainer(params, batch, lr, momentum)
	if err != nil {
		return nil, nil, err
	}
	defer t.Close()
	losses := make([]float64, 0, epochs)
	for e := 0; e < epochs; e++ {
		var sum float64
		steps := 0
		for s := 0; s < N; s += batch {
			end := min(s+batch, N)
			l, err := t.Step(images[s*Pixels:end*Pixels], labels[s:end])
			if err != nil {
				return nil, nil, fmt.Errorf("epoch %d, images %d..%d: %w", e, s, end-1, err)
			}
			sum += float64(l)
			steps++
		}
		losses = append(losses, sum/float64(steps))
	}
	return t.Params(), losses, nil
}

// Predict returns the logits [N,10] (row-major) of images, run in batches
// of batch images.
func Predict(params []mnist.Tensor, images []float32, batch int) ([]float32, error) {
	data, err := orderParams(params)
	if err != nil {
		return nil, err
	}
	if batch <= 0 || len(images)%Pixels != 0 {
		return nil, fmt.Errorf("oracle: batch %d, %d pixels", batch, len(images))
	}
	N := len(images) / Pixels
	nets := map[int]*net{}
	defer func() {
		for _, n := range nets {
			n.close()
		}
	}()
	logits := make([]float32, 0, N*Classes)
	for s := 0; s < N; s += batch {
		end := min(s+batch, N)
		n := nets[end-s]
		if n == nil {
			if n, err = newNet(data, end-s, false); err != nil {
				return nil, err
			}
			nets[end-s] = n
		}
		if err := n.run(images[s*Pixels:end*Pixels], nil); err != nil {
			return nil, err
		}
		logits = append(logits, n.logitsValue()...)
	}
	return logits, nil
}

// Accuracy is the fraction of images whose largest logit is at their label.
func Accuracy(params []mnist.Tensor, images []float32, labels []int, batch int) (float64, error) {
	if len(images) != len(labels)*Pixels || len(labels) == 0 {
		return 0, fmt.Errorf("oracle: %d pixels for %d labels", len(images), len(labels))
	}
	logits, err := Predict(params, images, batch)
	if err != nil {
		return 0, err
	}
	right := 0
	for i, l := range labels {
		row := logits[i*Classes : (i+1)*Classes]
		best := 0
		for k := range row {
			if row[k] > row[best] {
				best = k
			}
		}
		if best == l {
			right++
		}
	}
	return float64(right) / float64(len(labels)), nil
}
