package oip_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/accelnode/accelnode/models/modeltest"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/node"
	"github.com/accelnode/accelnode/server/oip"
)

// listen serves h on a loopback port until the test ends and returns its
// base URL.
func listen(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// specCase is the case file testdata/oip_client.py reads.
type specCase struct {
	Model    string `json:"model"`
	Version  string `json:"version"`
	Metadata struct {
		Inputs  []metaTensor `json:"inputs"`
		Outputs []metaTensor `json:"outputs"`
	} `json:"metadata"`
	Inputs  []caseInput  `json:"inputs"`
	Outputs []caseOutput `json:"outputs"`
}

type metaTensor struct {
	Name     string `json:"name"`
	Datatype string `json:"datatype"`
	Shape    []int  `json:"shape"`
}

type caseInput struct {
	metaTensor
	Data any `json:"data"`
}

type caseOutput struct {
	metaTensor
	Bits []uint32 `json:"bits"`
}

func bitsOf(v []float32) []uint32 {
	out := make([]uint32, len(v))
	for i, x := range v {
		out[i] = math.Float32bits(x)
	}
	return out
}

// runClient runs the specification client against url with c and returns
// its output and error.
func runClient(t *testing.T, python, url string, c specCase) (string, string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "case.json")
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, filepath.Join("testdata", "oip_client.py"), url, path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	return stdout.String(), stderr.String(), err
}

// TestSpecificationClient runs testdata/oip_client.py, a client of the
// protocol written from its specification with Python's standard library
// alone, against a server on a loopback port: health, metadata, and
// inference with JSON tensors and with binary data, every result checked
// bit for bit against the model path. A case with a wrong expectation
// must make it fail.
func TestSpecificationClient(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed: the specification client cannot run")
	}
	n := openNode(t, "ref", "cnn", "relu")
	url := listen(t, oip.Handler(n, oip.Options{Version: "test-1"}))
	info, _ := n.ModelInfo("cnn")
	x := modeltest.Images(1)
	want := modelPath(t, n, n.Backend(), accel.Strict, "cnn", x, 1, 1, 28, 28)

	c := specCase{Model: "cnn", Version: info.SHA256}
	c.Metadata.Inputs = []metaTensor{{"x", "FP32", []int{-1, 1, 28, 28}}}
	c.Metadata.Outputs = []metaTensor{{"logits", "FP32", []int{-1, 10}}, {"probs", "FP32", []int{-1, 10}}}
	c.Inputs = []caseInput{{metaTensor{"x", "FP32", []int{1, 1, 28, 28}}, x}}
	c.Outputs = []caseOutput{{metaTensor{"logits", "FP32", []int{1, 10}}, bitsOf(want["logits"])}, {metaTensor{"probs", "FP32", []int{1, 10}}, bitsOf(want["probs"])}}
	stdout, stderr, err := runClient(t, python, url, c)
	if err != nil || !strings.Contains(stdout, "PASS:") {
		t.Fatalf("the client failed: %v\n%s%s", err, stdout, stderr)
	}
	for _, check := range []string{"server metadata: accelnode test-1, extensions binary_tensor_data", "model metadata at its version",
		"infer, JSON tensors, id echoed", "infer, binary inputs and outputs", "infer, JSON inputs, output logits binary",
		"unknown model (404", "malformed JSON (400", "binary data shorter than binary_data_size (400"} {
		if !strings.Contains(stdout, "ok: "+check) {
			t.Errorf("the client did not report %q:\n%s", check, stdout)
		}
	}
	t.Logf("%s", stdout[strings.LastIndex(stdout, "PASS"):])

	c.Outputs[1].Bits[3] ^= 1
	stdout, stderr, err = runClient(t, python, url, c)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr, "FAIL: infer, JSON tensors, id echoed: output probs differs") {
		t.Errorf("with a wrong expectation: %v\n%s%s", err, stdout, stderr)
	}
}

// TestSpecificationClientINT32 runs the specification client on a model
// with an INT32 input, served from ONNX Runtime.
func TestSpecificationClientINT32(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed: the specification client cannot run")
	}
	n := openNode(t, "ref", "cast")
	if b, ok := n.Registry().Lookup("ort"); !ok || !b.Status().Available {
		t.Skip("ONNX Runtime is unavailable here (make deps fetches it)")
	}
	fast := accel.Fast
	url := listen(t, oip.Handler(n, oip.Options{Backend: "ort", Mode: &fast}))
	info, _ := n.ModelInfo("cast")
	in := []int32{-3, 0, 1 << 20, 7}
	res, err := n.Infer(context.Background(), node.Inference{Model: "cast", Backend: "ort", Mode: &fast,
		Inputs: []node.Tensor{{Name: "x", DType: accel.I32, Shape: []int{4}, Data: accel.EncodeInt32(in)}}})
	if err != nil {
		t.Fatal(err)
	}
	c := specCase{Model: "cast", Version: info.SHA256}
	c.Metadata.Inputs = []metaTensor{{"x", "INT32", []int{-1}}}
	c.Metadata.Outputs = []metaTensor{{"y", "FP32", []int{-1}}}
	c.Inputs = []caseInput{{metaTensor{"x", "INT32", []int{4}}, in}}
	c.Outputs = []caseOutput{{metaTensor{"y", "FP32", []int{4}}, bitsOf(accel.DecodeFloat32(res.Outputs[0].Data))}}
	if got := accel.DecodeFloat32(res.Outputs[0].Data); got[2] != 1<<20 {
		t.Fatalf("cast gave %v", got)
	}
	stdout, stderr, err := runClient(t, python, url, c)
	if err != nil || !strings.Contains(stdout, "PASS:") {
		t.Fatalf("the client failed: %v\n%s%s", err, stdout, stderr)
	}
}
