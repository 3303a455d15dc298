package client_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"github.com/accelnode/accelnode/models/modeltest"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/accelnode/accelnode/client"
	"github.com/accelnode/accelnode/models/onnx"
	"github.com/accelnode/accelnode/server"
)

// register uploads an ONNX model as name and returns its sha256.
func register(t *testing.T, c *client.Client, name string, data []byte) string {
	t.Helper()
	m, err := c.Upload(context.Background(), name, bytes.NewReader(data), int64(len(data)), nil)
	if err != nil {
		t.Fatalf("upload %s: %v", name, err)
	}
	return m.SHA256
}

// inferError returns the *client.InferError err is, failing t unless it
// has status.
func inferError(t *testing.T, err error, status int) *client.InferError {
	t.Helper()
	var e *client.InferError
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want an *client.InferError", err, err)
	}
	if e.Status != status || e.Message == "" || !strings.Contains(err.Error(), strconv.Itoa(status)) {
		t.Fatalf("err = %v (status %d, message %q), want status %d and a message", err, e.Status, e.Message, status)
	}
	return e
}

func relu(x []float32) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = max(v, 0)
	}
	return y
}

func TestInfer(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, serve(t, server.Limits{}))
	sum := register(t, c, "relu", modeltest.Unary("Relu", onnx.Float, modeltest.Batch4))

	md, err := c.ModelMetadata(ctx, "relu")
	if err != nil {
		t.Fatal(err)
	}
	want := client.ModelMetadata{Name: "relu", Versions: []string{sum}, Platform: "onnx_onnxv1",
		Inputs:  []client.TensorMetadata{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 4}}},
		Outputs: []client.TensorMetadata{{Name: "y", Datatype: "FP32", Shape: []int64{-1, 4}}}}
	if got, _ := json.Marshal(md); string(got) != string(must(json.Marshal(want))) {
		t.Errorf("ModelMetadata = %s, want %s", got, must(json.Marshal(want)))
	}

	r := rand.New(rand.NewPCG(7, 7))
	for _, batch := range []int{1, 3, 64} {
		x := make([]float32, batch*4)
		for i := range x {
			x[i] = float32(r.NormFloat64() * 10)
		}
		outs, err := c.Infer(ctx, "relu", []client.Tensor{client.FromFloat32s("x", []int64{int64(batch), 4}, x)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(outs) != 1 || outs[0].Name != "y" || outs[0].Datatype != "FP32" || !slices.Equal(outs[0].Shape, []int64{int64(batch), 4}) {
			t.Fatalf("batch %d: outputs %+v", batch, outs)
		}
		got, want := outs[0].Float32s(), relu(x)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("batch %d: y[%d] = %v, want %v (relu of %v)", batch, i, got[i], want[i], x[i])
			}
		}
	}

	// The output by name, at the model's version, by the model's sha256.
	x := client.FromFloat32s("x", []int64{1, 4}, []float32{0.5, -1, 2, 3.25})
	outs, err := c.Infer(ctx, sum, []client.Tensor{x}, &client.InferOptions{Outputs: []string{"y"}, Version: sum})
	if err != nil || len(outs) != 1 || !slices.Equal(outs[0].Float32s(), []float32{0.5, 0, 2, 3.25}) {
		t.Fatalf("Infer by sha256 and version = %+v, %v", outs, err)
	}

	t.Run("errors", func(t *testing.T) {
		_, err := c.Infer(ctx, "nonesuch", []client.Tensor{x}, nil)
		inferError(t, err, http.StatusNotFound)
		_, err = c.ModelMetadata(ctx, "nonesuch")
		inferError(t, err, http.StatusNotFound)
		_, err = c.Infer(ctx, "relu", []client.Tensor{x}, &client.InferOptions{Version: strings.Repeat("0", 64)})
		inferError(t, err, http.StatusNotFound)
		_, err = c.Infer(ctx, "relu", []client.Tensor{client.FromFloat32s("x", []int64{2, 3}, make([]float32, 6))}, nil)
		inferError(t, err, http.StatusBadRequest)
		_, err = c.Infer(ctx, "relu", []client.Tensor{client.FromInt32s("x", []int64{1, 4}, make([]int32, 4))}, nil)
		if e := inferError(t, err, http.StatusBadRequest); !strings.Contains(e.Message, "FP32") {
			t.Errorf("an INT32 input of an FP32 model: %v", err)
		}
		_, err = c.Infer(ctx, "relu", []client.Tensor{x}, &client.InferOptions{Outputs: []string{"z"}})
		inferError(t, err, http.StatusBadRequest)
		// Data that does not fit its shape never leaves the client.
		bad := x
		bad.Shape = []int64{2, 4}
		_, err = c.Infer(ctx, "relu", []client.Tensor{bad}, nil)
		var e *client.InferError
		if err == nil || errors.As(err, &e) {
			t.Errorf("16 bytes for [2,4]: %v", err)
		}
	})

	t.Run("int32", func(t *testing.T) {
		// The cast model's INT32 input runs only where ONNX Runtime runs
		// the model; on ref the datatype is taken, and the model refused
		// as one the backend cannot run.
		cast := modeltest.Unary("Cast", onnx.Int32, modeltest.Batch4, onnx.IntAttr("to", onnx.Float))
		if _, err := c.Upload(ctx, "cast", bytes.NewReader(cast), int64(len(cast)), nil); err != nil {
			t.Skipf("the node does not take the INT32 model: %v", err)
		}
		md, err := c.ModelMetadata(ctx, "cast")
		if err != nil || md.Inputs[0].Datatype != "INT32" {
			t.Fatalf("ModelMetadata = %+v, %v", md, err)
		}
		in := client.FromInt32s("x", []int64{1, 4}, []int32{-3, 0, 7, math.MaxInt32})
		if got := in.Int32s(); !slices.Equal(got, []int32{-3, 0, 7, math.MaxInt32}) || in.Float32s() != nil {
			t.Errorf("Int32s = %v", got)
		}
		outs, err := c.Infer(ctx, "cast", []client.Tensor{in}, nil)
		if err == nil {
			if !slices.Equal(outs[0].Float32s(), []float32{-3, 0, 7, math.MaxInt32}) {
				t.Errorf("cast = %v", outs[0].Float32s())
			}
			return
		}
		inferError(t, err, http.StatusNotImplemented)
	})
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestInferWire checks the request Infer sends and reads the answers a
// server of the protocol may give: JSON data, nested, with non-finite
// values; binary data; errors; a 429 before the answer.
func TestInferWire(t *testing.T) {
	ctx := context.Background()
	var answer atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer secret" {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"type":"urn:accelnode:problem:unauthorized","title":"Unauthorized","status":401,"detail":"no API key"}`)
			return
		}
		body, _ := io.ReadAll(r.Body)
		n, err := strconv.Atoi(r.Header.Get("Inference-Header-Content-Length"))
		if err != nil || r.Method != http.MethodPost || r.URL.Path != "/v2/models/m/infer" || n > len(body) {
			http.Error(w, "bad request line or header", http.StatusTeapot)
			return
		}
		var req struct {
			Inputs []struct {
				Name       string          `json:"name"`
				Shape      []int64         `json:"shape"`
				Datatype   string          `json:"datatype"`
				Parameters map[string]int  `json:"parameters"`
				Data       json.RawMessage `json:"data"`
			} `json:"inputs"`
			Parameters map[string]bool `json:"parameters"`
		}
		if err := json.Unmarshal(body[:n], &req); err != nil || len(req.Inputs) != 2 || !req.Parameters["binary_data_output"] ||
			req.Inputs[0].Parameters["binary_data_size"] != 8 || req.Inputs[1].Parameters["binary_data_size"] != 4 ||
			req.Inputs[1].Shape == nil || len(req.Inputs[1].Shape) != 0 || req.Inputs[0].Data != nil || len(body)-n != 12 {
			http.Error(w, "bad request body: "+string(body[:n]), http.StatusTeapot)
			return
		}
		switch answer.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "0")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error": "busy"}`)
		case 2:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"model_name":"m","outputs":[
				{"name":"a","datatype":"FP32","shape":[2,2],"data":[[1.5,"NaN"],["-Infinity",-0]]},
				{"name":"b","datatype":"INT32","shape":[3],"data":[-7,0,2147483647]}]}`)
		case 3:
			head := `{"model_name":"m","outputs":[{"name":"a","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}},` +
				`{"name":"b","datatype":"INT32","shape":[],"data":[5]}]}`
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Inference-Header-Content-Length", strconv.Itoa(len(head)))
			io.WriteString(w, head)
			w.Write(binary.LittleEndian.AppendUint32(nil, math.Float32bits(-2.5)))
		case 4:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error": "the serving backend is not there"}`)
		default:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"model_name":"m","outputs":[{"name":"a","datatype":"FP32","shape":[2],"data":[1]}]}`)
		}
	}))
	defer ts.Close()
	c := newClient(t, ts.URL, client.WithAPIKey("secret"), client.WithMaxDelay(time.Millisecond))
	inputs := []client.Tensor{
		client.FromFloat32s("x", []int64{2}, []float32{1, 2}),
		client.FromInt32s("k", nil, []int32{3}),
	}

	outs, err := c.Infer(ctx, "m", inputs, nil)
	if err != nil || len(outs) != 2 {
		t.Fatalf("JSON answer: %+v, %v", outs, err)
	}
	a, b := outs[0].Float32s(), outs[1].Int32s()
	if !slices.Equal(outs[0].Shape, []int64{2, 2}) || a[0] != 1.5 || !math.IsNaN(float64(a[1])) || !math.IsInf(float64(a[2]), -1) ||
		math.Float32bits(a[3]) != math.Float32bits(float32(math.Copysign(0, -1))) || !slices.Equal(b, []int32{-7, 0, math.MaxInt32}) {
		t.Errorf("JSON answer: a = %v, b = %v", a, b)
	}

	outs, err = c.Infer(ctx, "m", inputs, nil)
	if err != nil || len(outs) != 2 || !slices.Equal(outs[0].Float32s(), []float32{-2.5}) || !slices.Equal(outs[1].Int32s(), []int32{5}) {
		t.Fatalf("binary answer: %+v, %v", outs, err)
	}

	_, err = c.Infer(ctx, "m", inputs, nil)
	if e := inferError(t, err, http.StatusServiceUnavailable); e.Message != "the serving backend is not there" || e.Path != "/v2/models/m/infer" {
		t.Errorf("err = %v", err)
	}
	if _, err = c.Infer(ctx, "m", inputs, nil); err == nil || !strings.Contains(err.Error(), "1 elements; its shape holds 2") {
		t.Errorf("an answer whose data does not fit its shape: %v", err)
	}
	_, err = newClient(t, ts.URL).Infer(ctx, "m", inputs, nil)
	if e := inferError(t, err, http.StatusUnauthorized); e.Message != "no API key" {
		t.Errorf("without the key: %v", err)
	}
}
