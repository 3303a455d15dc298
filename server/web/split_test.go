package web_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/mnist"
	"github.com/accelnode/accelnode/models/onnx"
	"github.com/accelnode/accelnode/server/servertest"
	"github.com/accelnode/accelnode/server/web"
)

// TestConvRoute checks GET /web/mnist-conv: the conv initializers of the
// node's model mnist in order, and in words what stops it.
func TestConvRoute(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	get := func(want int) []byte {
		t.Helper()
		res, err := http.Get(srv.URL + "/web/mnist-conv")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != want {
			t.Fatalf("GET /web/mnist-conv: %d %s, want %d", res.StatusCode, body, want)
		}
		return body
	}
	if body := get(404); !bytes.Contains(body, []byte(`no model named \"mnist\"`)) || !bytes.Contains(body, []byte("--model mnist=")) {
		t.Errorf("without the model: %s", body)
	}

	// A model of MNIST without conv layers is not the network the page splits.
	softmax := onnx.Marshal(&onnx.Model{IRVersion: onnx.IRVersion, OpsetVersion: onnx.Opset, Graph: onnx.Graph{
		Name:         "softmax",
		Nodes:        []onnx.Node{{Name: "softmax", OpType: "Softmax", Inputs: []string{"x"}, Outputs: []string{"y"}}},
		Inputs:       []onnx.ValueInfo{{Name: "x", ElemType: onnx.Float, Dims: []onnx.Dim{{Value: 1}, {Value: 10}}}},
		Outputs:      []onnx.ValueInfo{{Name: "y", ElemType: onnx.Float, Dims: []onnx.Dim{{Value: 1}, {Value: 10}}}},
		Initializers: []onnx.Tensor{{Name: "conv1.w", Dims: []int64{16, 1, 3, 3}, DataType: onnx.Float, Floats: make([]float32, 144)}},
	}})
	other := servertest.Start(t, servertest.Options{})
	if _, err := other.Node.Models().Add("mnist", softmax); err != nil {
		t.Fatal(err)
	}
	res, err := http.Get(other.URL + "/web/mnist-conv")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 422 || !bytes.Contains(body, []byte("invalid-model")) || !bytes.Contains(body, []byte("conv1.w is of type 1 and shape [16 1 3 3], want float [16 1 5 5]")) {
		t.Errorf("a model without the conv layers: %d %s", res.StatusCode, body)
	}

	model := convModel(t)
	if _, err := srv.Node.Models().Add("mnist", model); err != nil {
		t.Fatal(err)
	}
	conv := get(200)
	if len(conv) != 4*web.ConvLen {
		t.Fatalf("%d bytes, want %d", len(conv), 4*web.ConvLen)
	}
	m, err := onnx.Unmarshal(model)
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for _, name := range []string{"conv1.w", "conv1.b", "conv2.w", "conv2.b"} {
		for _, init := range m.Graph.Initializers {
			if init.Name == name {
				for _, v := range init.Floats {
					want = binary.LittleEndian.AppendUint32(want, math.Float32bits(v))
				}
			}
		}
	}
	if !bytes.Equal(conv, want) {
		t.Error("the conv weights are not conv1.w, conv1.b, conv2.w and conv2.b of the model, in that order")
	}
}

// TestPageSplit trains the MNIST network split in two: the conv layers in
// the page, the dense layers in a split-dense actor on the node, every call
// sealed and its receipt checked. It asks first without the model, then
// trains, stops, resets, and calls again in a new session after the node
// ended the page's.
func TestPageSplit(t *testing.T) {
	needBrowser(t)
	data := needDigits(t)
	srv := servertest.Start(t, servertest.Options{WebData: data,
		WebModules: map[string][]byte{"split": guesttest.BuildReactor(t, "github.com/accelnode/accelnode/examples/split-dense")}})
	p := openBrowser(t)
	fingerprint := nodeFingerprint(t, srv.URL, "")
	shots := screenshots(t)

	p.do(chromedp.Navigate(srv.URL+"/#split"), chromedp.WaitEnabled(chromedp.ID("split-run")))
	if got := p.text("panel-split"); !strings.Contains(got, "no model named “mnist” loaded yet") {
		t.Errorf("the tab does not say the model is missing: %q", got)
	}
	p.do(chromedp.SetValue(chromedp.ID("split-rounds"), "1"), chromedp.Click(chromedp.ID("split-run")))
	p.waitFor(`!document.getElementById('split-problem').hidden`, time.Minute)
	if got := p.text("split-problem"); !strings.Contains(got, "This node has no model named “mnist”") || !strings.Contains(got, "--model mnist=bin/mnist.onnx") {
		t.Errorf("without the model: %q", got)
	}
	if _, err := srv.Node.Models().Add("mnist", convModel(t)); err != nil {
		t.Fatal(err)
	}

	rounds, holdout := 15, 200
	if shots != "" {
		rounds, holdout = 40, 1000 // a picture worth looking at
	}
	p.do(chromedp.SetValue(chromedp.ID("split-rounds"), fmt.Sprint(rounds)), chromedp.SetValue(chromedp.ID("split-batch"), "32"),
		chromedp.SetValue(chromedp.ID("split-holdout"), fmt.Sprint(holdout)), chromedp.Click(chromedp.ID("split-run")))
	p.waitEither("split-heldout", "split-problem", 3*time.Minute)
	if p.visible("split-problem") {
		t.Fatalf("the page shows a problem: %s", p.text("split-problem"))
	}
	type round struct {
		Step int     `json:"step"`
		Loss float64 `json:"loss"`
		Acc  float64 `json:"acc"`
	}
	got := eval[[]round](p, `accelnodePage.splitRounds()`)
	if len(got) != rounds {
		t.Fatalf("%d rounds shown, want %d", len(got), rounds)
	}
	if n := eval[string](p, `document.getElementById('split-chart').dataset.rounds`); n != fmt.Sprint(rounds) {
		t.Errorf("the chart draws %s rounds, want %d", n, rounds)
	}
	mean := func(rs []round, f func(round) float64) float64 {
		s := 0.0
		for _, r := range rs {
			s += f(r)
		}
		return s / float64(len(rs))
	}
	loss := func(r round) float64 { return r.Loss }
	acc := func(r round) float64 { return r.Acc }
	first, last := got[:3], got[len(got)-3:]
	correct := eval[int](p, `Number(document.getElementById('split-heldout').dataset.correct)`)
	t.Logf("%d rounds of 32: loss %.3f → %.3f (first 3 %.3f, last 3 %.3f), accuracy %.0f%% → %.0f%% (first 3 %.0f%%, last 3 %.0f%%); held out: %d of %d right",
		rounds, got[0].Loss, got[len(got)-1].Loss, mean(first, loss), mean(last, loss), 100*got[0].Acc, 100*got[len(got)-1].Acc,
		100*mean(first, acc), 100*mean(last, acc), correct, holdout)
	for i, r := range got {
		if r.Step != i+1 {
			t.Errorf("round %d: step %d", i+1, r.Step)
		}
	}
	if !(mean(last, loss) < 0.7*mean(first, loss)) {
		t.Errorf("the loss did not fall: %.3f in the first 3 rounds, %.3f in the last 3", mean(first, loss), mean(last, loss))
	}
	if !(mean(last, acc) > mean(first, acc)+0.2) {
		t.Errorf("the accuracy did not rise: %.2f in the first 3 rounds, %.2f in the last 3", mean(first, acc), mean(last, acc))
	}
	if float64(correct) < 0.3*float64(holdout) { // chance is 0.1; untrained conv layers give about 0.45 after 15 rounds, trained ones 0.95
		t.Errorf("held-out accuracy %d of %d", correct, holdout)
	}
	if h := p.text("split-heldout"); !strings.HasPrefix(h, "Held-out accuracy ") || !strings.Contains(h, fmt.Sprintf("of %d digits never trained on", holdout)) {
		t.Errorf("held out: %q", h)
	}
	facts, last1 := p.text("split-facts"), p.text("split-round")
	for _, want := range []string{"Backend", "ref", "strict mode", "on-evict", "split-dense"} {
		if !strings.Contains(facts, want) {
			t.Errorf("the actor's facts lack %q: %q", want, facts)
		}
	}
	for _, want := range []string{fmt.Sprintf("%d of %d", rounds, rounds), "32 × 1568 f32, 200,704 bytes, ‖g‖ ", "Call on the node"} {
		if !strings.Contains(last1, want) {
			t.Errorf("the last round's facts lack %q: %q", want, last1)
		}
	}
	calls := 1 + rounds + (holdout+255)/256 // init, train, eval
	if r := p.text("split-receipt"); !strings.HasPrefix(r, fmt.Sprintf("Receipts verified: %d of %d calls, signed by %s", calls, calls, fingerprint)) {
		t.Errorf("receipts: %q", r)
	}

	// The actor lives on the node, with the calls the page made.
	id := eval[string](p, `accelnodePage.splitActor()`)
	actors := srv.Node.ListActors("local")
	if len(actors) != 1 || actors[0].ID != id || actors[0].Calls != uint64(calls) || !actors[0].SnapshotOnEvict {
		t.Errorf("the node's actors %+v, want %s after %d calls, snapshots on eviction", actors, id, calls)
	}
	p.screenshot(shots, "page-split.png")

	// Stop ends the training after the round under way.
	p.do(chromedp.SetValue(chromedp.ID("split-rounds"), "500"), chromedp.Click(chromedp.ID("split-run")))
	p.waitFor(fmt.Sprintf(`accelnodePage.splitRounds().length >= %d`, rounds+2), time.Minute)
	p.do(chromedp.Click(chromedp.ID("split-stop")))
	p.waitFor(`!document.getElementById('split-run').disabled`, time.Minute)
	if s := p.text("split-status"); !strings.HasPrefix(s, "Stopped after ") || p.visible("split-problem") {
		t.Errorf("after Stop: %q, problem %q", s, p.text("split-problem"))
	}
	if n := len(eval[[]round](p, `accelnodePage.splitRounds()`)); n >= rounds+500 {
		t.Errorf("%d rounds after Stop", n)
	}

	// The node ends the page's session; Reset calls init in a new one.
	session := eval[string](p, `document.getElementById('fact-session').title.replace('Encrypted session ', '')`)
	req, _ := http.NewRequest("DELETE", srv.URL+"/v1/sessions/"+session, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE the session %q: %d", session, res.StatusCode)
	}
	p.do(chromedp.Click(chromedp.ID("split-reset")))
	p.waitFor(`document.getElementById('split-status').innerText.startsWith('Reset') || !document.getElementById('split-problem').hidden`, time.Minute)
	if p.visible("split-problem") {
		t.Fatalf("Reset: %s", p.text("split-problem"))
	}
	if n := len(eval[[]round](p, `accelnodePage.splitRounds()`)); n != 0 || p.visible("split-heldout") {
		t.Errorf("after Reset the page shows %d rounds", n)
	}
	if got := p.text("panel-split"); !strings.Contains(got, "Your encrypted session had expired, so the page opened a new one and sent the request again.") {
		t.Errorf("the page does not say it opened a new session: %q", got)
	}
	p.do(chromedp.SetValue(chromedp.ID("split-rounds"), "1"), chromedp.Click(chromedp.ID("split-run")))
	p.waitEither("split-heldout", "split-problem", time.Minute)
	if r := eval[[]round](p, `accelnodePage.splitRounds()`); len(r) != 1 || r[0].Step != 1 || p.visible("split-problem") {
		t.Errorf("after Reset, one round: %+v, problem %q", r, p.text("split-problem"))
	}
}

// convModel is an ONNX model of the MNIST network with its conv layers:
// bin/mnist.onnx (make demo) where it exists, otherwise the network with
// the weights mnistnet.Init(1) draws, exported by examples/mnist/model.
func convModel(t *testing.T) []byte {
	t.Helper()
	convOnce.Do(func() { convBytes, convErr = makeConvModel(t) })
	if convErr != nil {
		t.Fatal(convErr)
	}
	return convBytes
}

var (
	convOnce  sync.Once
	convBytes []byte
	convErr   error
)

func makeConvModel(t *testing.T) ([]byte, error) {
	if !*train {
		b, err := os.ReadFile(filepath.Join(root(t), "bin", "mnist.onnx"))
		if err == nil {
			if _, err := web.ConvBytes(b); err == nil {
				t.Log("conv model: bin/mnist.onnx")
				return b, nil
			}
			t.Logf("conv model: bin/mnist.onnx lacks the conv layers (%v); exporting one", err)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	t.Log("conv model: the network of mnistnet.Init(1), exported by examples/mnist/model (make demo writes a trained bin/mnist.onnx)")
	// mnistnet.Init(seed): He-normal weights (variance 2/fan-in) from
	// PCG(seed, "mnist"), zero biases, in the order of mnistnet.Params.
	params := []struct {
		name  string
		shape []int
		fanIn int
	}{
		{"conv1.w", []int{16, 1, 5, 5}, 25}, {"conv1.b", []int{16}, 0},
		{"conv2.w", []int{32, 16, 5, 5}, 400}, {"conv2.b", []int{32}, 0},
		{"dense1.w", []int{1568, 128}, 1568}, {"dense1.b", []int{128}, 0},
		{"dense2.w", []int{128, 10}, 128}, {"dense2.b", []int{10}, 0},
	}
	rng := rand.New(rand.NewPCG(1, 0x6d6e697374))
	var ts []mnist.Tensor
	for _, p := range params {
		n := 1
		for _, d := range p.shape {
			n *= d
		}
		v := make([]float32, n)
		if p.fanIn > 0 {
			scale := math.Sqrt(2 / float64(p.fanIn))
			for j := range v {
				v[j] = float32(rng.NormFloat64() * scale)
			}
		}
		ts = append(ts, mnist.Tensor{Name: p.name, Shape: p.shape, Data: v})
	}
	dir := t.TempDir()
	var buf bytes.Buffer
	if err := mnist.WriteTensors(&buf, ts); err != nil {
		return nil, err
	}
	weights, out := filepath.Join(dir, "weights.ant"), filepath.Join(dir, "mnist.onnx")
	if err := os.WriteFile(weights, buf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("go", "run", "./examples/mnist/model", "-weights", weights, "-o", out)
	cmd.Dir = root(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go run ./examples/mnist/model: %v: %s", err, b)
	}
	return os.ReadFile(out)
}
