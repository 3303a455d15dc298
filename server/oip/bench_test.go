package oip_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"github.com/accelnode/accelnode/models/modeltest"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/node"
	"github.com/accelnode/accelnode/server/oip"
)

var meanNS = regexp.MustCompile(`mean_ns (\d+)`)

// BenchmarkCNNBatch1 compares one inference of the MNIST-shaped CNN at
// batch 1, on ref in strict mode, four ways: through the Open Inference
// Protocol over loopback HTTP with JSON and with binary tensors; by
// node.Infer called directly; and by model_run from a guest (input written
// into a tensor, the model run, the outputs read back, timed inside the
// guest). ns/op is one inference in each.
func BenchmarkCNNBatch1(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "cnn.onnx")
	if err := os.WriteFile(path, fixtures["cnn"], 0o644); err != nil {
		b.Fatal(err)
	}
	// The guest times itself: it needs the host's clock.
	n, err := node.Open(context.Background(), node.Config{Backend: "ref", SystemClock: true,
		Models: []node.ModelFile{{Name: "cnn", Path: path}}, CacheDir: guesttest.CacheDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	x := modeltest.Images(1)
	raw := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}

	b.Run("guest-model_run", func(b *testing.B) {
		m, err := n.Compile(context.Background(), guesttest.Build(b, "github.com/accelnode/accelnode/hostfn/testdata/guests/model"))
		if err != nil {
			b.Fatal(err)
		}
		var total float64
		runs := 0
		for b.Loop() {
			res, err := n.Invoke(context.Background(), m, node.Invocation{Args: []string{"-model", "cnn", "-shape", "1,1,28,28", "-time", "-reps", "50"}})
			if err != nil {
				b.Fatalf("%v: %s", err, res.Stderr)
			}
			mm := meanNS.FindSubmatch(res.Stdout)
			if mm == nil {
				b.Fatalf("no mean_ns in %s", res.Stdout)
			}
			v, _ := strconv.ParseFloat(string(mm[1]), 64)
			total += v
			runs++
		}
		b.ReportMetric(total/float64(runs), "ns/infer")
	})

	b.Run("node.Infer", func(b *testing.B) {
		inf := node.Inference{Model: "cnn", Inputs: []node.Tensor{{Name: "x", DType: accel.F32, Shape: []int{1, 1, 28, 28}, Data: raw}}}
		for b.Loop() {
			if _, err := n.Infer(context.Background(), inf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/infer")
	})

	srv := httptest.NewServer(oip.Handler(n, oip.Options{}))
	defer srv.Close()
	post := func(b *testing.B, header http.Header, body []byte) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v2/models/cnn/infer", bytes.NewReader(body))
		req.Header = header
		resp, err := srv.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.Run("oip-json", func(b *testing.B) {
		body, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{"name": "x", "shape": []int{1, 1, 28, 28}, "datatype": "FP32", "data": x}}})
		h := http.Header{"Content-Type": {"application/json"}}
		for b.Loop() {
			post(b, h, body)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/infer")
	})
	b.Run("oip-binary", func(b *testing.B) {
		head, _ := json.Marshal(map[string]any{
			"inputs":  []any{map[string]any{"name": "x", "shape": []int{1, 1, 28, 28}, "datatype": "FP32", "parameters": map[string]any{"binary_data_size": len(raw)}}},
			"outputs": []any{map[string]any{"name": "probs", "parameters": map[string]any{"binary_data": true}}},
		})
		body := append(head, raw...)
		h := http.Header{"Content-Type": {"application/octet-stream"}, "Inference-Header-Content-Length": {strconv.Itoa(len(head))}}
		for b.Loop() {
			post(b, h, body)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/infer")
	})
}
