package oracle

import (
	"flag"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/accelnode/accelnode/mnist"
)

var (
	mnistDir    = flag.String("mnist", "", "directory of the MNIST files (default: mnist.FindDir, the main module's .deps/mnist)")
	trainEpochs = flag.Int("train.epochs", 0, "TestTrainAccuracy: epochs over the training set (0 skips the test)")
	trainBatch  = flag.Int("train.batch", 64, "batch size of TestTrainAccuracy and BenchmarkTrain")
	trainLR     = flag.Float64("train.lr", 0.01, "learning rate of TestTrainAccuracy and BenchmarkTrain")
	minAccuracy = flag.Float64("train.minacc", 0.95, "TestTrainAccuracy: least test-set accuracy (one epoch at the defaults gives 0.965)")
)

// momentum is the SGD momentum of the node's training.
const momentum = 0.9

type dataset struct {
	x      []float32
	labels []int
}

var (
	setsOnce sync.Once
	sets     map[string]*dataset
	setsErr  error
)

// loadMNIST loads both sets once, or skips tb when they are not there.
func loadMNIST(tb testing.TB) (train, test *dataset) {
	tb.Helper()
	setsOnce.Do(func() {
		dir := *mnistDir
		if dir == "" {
			if dir, setsErr = mnist.FindDir("."); setsErr != nil {
				return
			}
		}
		sets = map[string]*dataset{}
		for _, name := range []string{"train", "t10k"} {
			s, err := mnist.Load(dir, name)
			if err != nil {
				setsErr = err
				return
			}
			if s.Rows != Rows || s.Cols != Cols {
				setsErr = fmt.Errorf("%s: images are %d×%d", name, s.Rows, s.Cols)
				return
			}
			sets[name] = &dataset{x: PixelsToInput(s.Images), labels: LabelsToInts(s.Labels)}
		}
	})
	if setsErr != nil {
		tb.Skipf("no MNIST data (%v); make deps fetches it, or pass -mnist DIR", setsErr)
	}
	return sets["train"], sets["t10k"]
}

// BenchmarkTrain measures SGD steps (forward, backward, momentum update)
// over the MNIST training set, in batches of -train.batch images.
func BenchmarkTrain(b *testing.B) {
	train, _ := loadMNIST(b)
	B := *trainBatch
	tr, err := NewTrainer(InitParams(1), B, float32(*trainLR), momentum)
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	batches := len(train.labels) / B
	var lossSum float64
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		k := i % batches
		l, err := tr.Step(train.x[k*B*Pixels:(k+1)*B*Pixels], train.labels[k*B:(k+1)*B])
		if err != nil {
			b.Fatal(err)
		}
		lossSum += float64(l)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*B)/elapsed.Seconds(), "images/s")
	b.ReportMetric(lossSum/float64(b.N), "loss")
}

// BenchmarkAccuracy measures inference over the MNIST test set; its
// parameters are untrained, so only the speed means anything.
func BenchmarkAccuracy(b *testing.B) {
	_, test := loadMNIST(b)
	params := InitParams(1)
	const n = 1000
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := Accuracy(params, test.x[:n*Pixels], test.labels[:n], 100); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "images/s")
}

// TestTrainAccuracy trains on the full training set for -train.epochs
// epochs from InitParams(1) and requires -train.minacc on the test set.
// It takes minutes, so it runs only when asked:
//
//	go test -run TestTrainAccuracy -train.epochs 1 -timeout 1h
func TestTrainAccuracy(t *testing.T) {
	if *trainEpochs <= 0 {
		t.Skip("training run not asked for: pass -train.epochs 1 (a few minutes per epoch)")
	}
	train, test := loadMNIST(t)
	start := time.Now()
	params, losses, err := Train(InitParams(1), train.x, train.labels, *trainBatch, float32(*trainLR), momentum, *trainEpochs)
	if err != nil {
		t.Fatal(err)
	}
	secs := time.Since(start).Seconds()
	for e, l := range losses {
		t.Logf("epoch %d: mean loss %.4f", e+1, l)
	}
	t.Logf("%d epochs in %.0fs, %.0f images/s", *trainEpochs, secs, float64(*trainEpochs*len(train.labels))/secs)
	acc, err := Accuracy(params, test.x, test.labels, 500)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("test accuracy %.4f", acc)
	if acc < *minAccuracy || math.IsNaN(acc) {
		t.Errorf("test accuracy %.4f < %.4f", acc, *minAccuracy)
	}
}

// TestTrainSmall checks the training loop itself on a few random images:
// the loss of a fixed batch falls, the momentum update follows PyTorch's
// convention step by step, and an uneven last batch is trained on.
func TestTrainSmall(t *testing.T) {
	x, labels := randomBatch(21, 5)
	params := InitParams(21)

	// Two epochs in batches of 3 and 2 by hand from Gradients, with
	// PyTorch's rule: v = μv + g, w −= lr·v.
	const lr = 0.05
	w := map[string][]float32{}
	v := map[string][]float32{}
	for _, p := range params {
		w[p.Name] = append([]float32(nil), p.Data...)
		v[p.Name] = make([]float32, len(p.Data))
	}
	current := func() []mnist.Tensor {
		var ps []mnist.Tensor
		for _, name := range ParamNames {
			ps = append(ps, mnist.Tensor{Name: name, Shape: ParamShapes[name], Data: w[name]})
		}
		return ps
	}
	for step := 0; step < 4; step++ {
		s, e := 0, 3
		if step%2 == 1 {
			s, e = 3, 5
		}
		_, g, err := Gradients(current(), x[s*Pixels:e*Pixels], labels[s:e])
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range ParamNames {
			for j := range w[name] {
				v[name][j] = momentum*v[name][j] + g[name][j]
				w[name][j] -= lr * v[name][j]
			}
		}
	}

	// The same through Train, whose last batch of an epoch has a graph of
	// its own.
	trained, losses, err := Train(params, x, labels, 3, lr, momentum, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range trained {
		var diff, norm float64
		for j, got := range p.Data {
			d := float64(got - w[p.Name][j])
			diff += d * d
			norm += float64(w[p.Name][j]) * float64(w[p.Name][j])
		}
		if rel := math.Sqrt(diff / norm); rel > 1e-6 {
			t.Errorf("%s after four steps: relative difference %.3g from the hand-made update", p.Name, rel)
		}
	}
	t.Logf("losses of the two epochs: %.5f, %.5f", losses[0], losses[1])

	// More epochs: the loss on this tiny set must fall, and Train must
	// not write to the parameters it was given.
	before := append([]float32(nil), params[0].Data...)
	_, losses, err = Train(params, x, labels, 3, lr, momentum, 8)
	if err != nil {
		t.Fatal(err)
	}
	if !(losses[len(losses)-1] < losses[0]) {
		t.Errorf("loss did not fall: %v", losses)
	}
	for j := range before {
		if params[0].Data[j] != before[j] {
			t.Fatal("Train changed its input parameters")
		}
	}

	// Accuracy and Predict with a batch that does not divide the set.
	acc, err := Accuracy(params, x, labels, 2)
	if err != nil {
		t.Fatal(err)
	}
	logits, err := Predict(params, x, 5)
	if err != nil {
		t.Fatal(err)
	}
	right := 0
	for i, l := range labels {
		best := 0
		for k := 1; k < Classes; k++ {
			if logits[i*Classes+k] > logits[i*Classes+best] {
				best = k
			}
		}
		if best == l {
			right++
		}
	}
	if want := float64(right) / float64(len(labels)); acc != want {
		t.Errorf("Accuracy %.3f with batch 2, Predict with batch 5 gives %.3f", acc, want)
	}
}
