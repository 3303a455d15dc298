//go:build !wasip1

package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/accelnode/accelnode/examples/internal/mnistnet"
	"github.com/accelnode/accelnode/examples/internal/splitnet"
	"github.com/accelnode/accelnode/mnist"
)

// jsTolerance bounds the difference between split.js's features and
// splitnet.Features, relative to the largest activation. Both sum each
// output in float64 in one order and round once, so they agree bit for
// bit where the JavaScript engine computes IEEE doubles as it must; the
// tolerance only gives a wrong bit somewhere no chance to pass unseen as
// something bigger.
const jsTolerance = 1e-6

func f32bytes(v []float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func bytesF32(t *testing.T, b []byte) []float32 {
	t.Helper()
	if len(b)%4 != 0 {
		t.Fatalf("%d bytes of f32", len(b))
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// testImages returns the first n MNIST training digits and their labels,
// or, without make deps, strokes drawn from a fixed pattern.
func testImages(t *testing.T, n int) ([]float32, []int32) {
	x := make([]float32, n*splitnet.Pixels)
	labels := make([]int32, n)
	if dir, err := mnist.FindDir("."); err == nil {
		set, err := mnist.LoadFirst(dir, "train", n)
		if err != nil {
			t.Fatal(err)
		}
		mnistnet.Pixels(x, set.Images)
		for i := range labels {
			labels[i] = int32(set.Labels[i])
		}
		return x, labels
	}
	for i := range x {
		if (i*7919)%5 == 0 {
			x[i] = float32((i*31)%256) / 255
		}
	}
	for i := range labels {
		labels[i] = int32(i % 10)
	}
	return x, labels
}

// TestSplitJS runs split.js under node on 32 images and checks its
// features against splitnet.Features, its payloads byte for byte against
// splitnet's, and its decoding of a reply.
func TestSplitJS(t *testing.T) {
	nodeJS, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node (Node.js) is not on PATH: split.js is not checked")
	}
	const batch = 32
	dir := t.TempDir()
	write := func(name string, b []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyFile := func(from, to string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		write(to, b)
	}
	// .mjs, so that node reads them as ES modules without a package.json.
	copyFile("split.js", "split.mjs")
	copyFile(filepath.Join("testdata", "driver.mjs"), "driver.mjs")

	conv, err := splitnet.ConvWeights(mnistnet.Init(5))
	if err != nil {
		t.Fatal(err)
	}
	for i := range mnistnet.Conv1 { // biases that are not 0
		conv[mnistnet.Conv1*mnistnet.Kernel*mnistnet.Kernel+i] = float32(i%5-2) / 10
	}
	x, labels := testImages(t, batch)
	const lr, seed = float32(0.0625), uint64(1)<<40 + 3
	write("conv.bin", splitnet.ConvBytes(conv))
	write("pixels.bin", f32bytes(x))
	lb := make([]byte, 0, 4*batch)
	for _, l := range labels {
		lb = binary.LittleEndian.AppendUint32(lb, uint32(l))
	}
	write("labels.bin", lb)
	write("meta.json", []byte(`{"B":32,"lr":0.0625,"seed":1099511627779}`))
	grad := make([]float32, 2*splitnet.Flat)
	for i := range grad {
		grad[i] = float32(math.Sin(float64(i))) / 1000
	}
	reply := binary.LittleEndian.AppendUint32(nil, math.Float32bits(2.25))
	reply = binary.LittleEndian.AppendUint32(reply, 17)
	reply = binary.LittleEndian.AppendUint32(reply, 9)
	write("reply.bin", append(reply, f32bytes(grad)...))
	stats := binary.LittleEndian.AppendUint32(nil, 9)
	stats = binary.LittleEndian.AppendUint64(stats, 288)
	stats = binary.LittleEndian.AppendUint64(stats, 100)
	write("stats.bin", binary.LittleEndian.AppendUint64(stats, math.Float64bits(144)))

	cmd := exec.Command(nodeJS, filepath.Join(dir, "driver.mjs"), dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node driver.mjs: %v\n%s", err, out)
	}
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	want := splitnet.Features(conv, x, batch)
	got := bytesF32(t, read("features.bin"))
	if len(got) != len(want) {
		t.Fatalf("split.js computed %d features, want %d", len(got), len(want))
	}
	scale, worst, same := 1e-30, 0.0, 0
	for _, w := range want {
		scale = math.Max(scale, math.Abs(float64(w)))
	}
	for i := range got {
		if math.Float32bits(got[i]) == math.Float32bits(want[i]) {
			same++
		}
		worst = math.Max(worst, math.Abs(float64(got[i])-float64(want[i]))/scale)
	}
	var out struct {
		Loss, Correct, Steps float64
		Eval                 struct{ Loss, Correct float64 }
		Stats                struct{ Steps, Examples, Correct, LossSum, MeanLoss float64 }
		MS                   float64
	}
	if err := json.Unmarshal(read("out.json"), &out); err != nil {
		t.Fatal(err)
	}
	t.Logf("split.js: %d of %d features bit-identical to splitnet.Features, max difference %.2g of the largest; %d images in %.0f ms",
		same, len(got), worst, batch, out.MS)
	if worst > jsTolerance {
		t.Errorf("split.js features differ from splitnet.Features by %.3g of the largest activation, more than %g", worst, jsTolerance)
	}

	// From features that agree bit for bit, the payloads must too; from
	// others, their lengths, headers and labels.
	for _, c := range []struct {
		name string
		want []byte
		head int
	}{
		{"train.bin", splitnet.TrainPayload(want, labels, lr), 8},
		{"eval.bin", splitnet.EvalPayload(want, labels), 4},
	} {
		got := read(c.name)
		if same == len(want) && !bytes.Equal(got, c.want) {
			t.Errorf("split.js's %s differs from splitnet's", c.name)
		}
		if len(got) != len(c.want) || !bytes.Equal(got[:c.head], c.want[:c.head]) || !bytes.Equal(got[len(got)-4*batch:], c.want[len(c.want)-4*batch:]) {
			t.Errorf("split.js's %s: %d bytes starting % x, want %d starting % x", c.name, len(got), got[:min(8, len(got))], len(c.want), c.want[:8])
		}
	}
	if got, want := read("init.bin"), splitnet.InitPayload(seed); !bytes.Equal(got, want) {
		t.Errorf("split.js's init payload % x, want % x", got, want)
	}
	if !bytes.Equal(read("grad.bin"), f32bytes(grad)) || out.Loss != 2.25 || out.Correct != 17 || out.Steps != 9 {
		t.Errorf("split.js decoded the train reply as loss %v, correct %v, steps %v", out.Loss, out.Correct, out.Steps)
	}
	if out.Eval.Loss != 2.25 || out.Eval.Correct != 17 {
		t.Errorf("split.js decoded the eval reply as %+v", out.Eval)
	}
	if s := out.Stats; s.Steps != 9 || s.Examples != 288 || s.Correct != 100 || s.LossSum != 144 || s.MeanLoss != 0.5 {
		t.Errorf("split.js decoded the stats as %+v", s)
	}
}
