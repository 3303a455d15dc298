package oip

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"testing"

	"github.com/accelnode/accelnode/accel"
)

// FuzzDecodeRequest feeds the inference request decoder arbitrary bodies
// and Inference-Header-Content-Length values. It must never panic; a
// request it refuses gets a 400 with a message; a request it takes holds
// inputs whose data is exactly what their shapes and datatypes need, and
// JSON data that encoding/json reads as the same elements. The committed
// seed corpus is testdata/fuzz/FuzzDecodeRequest.
func FuzzDecodeRequest(f *testing.F) {
	bin := accel.EncodeFloat32([]float32{1, 2.5, -3, 4})
	head := `{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","parameters":{"binary_data_size":16}}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}`
	f.Add([]byte(`{"id":"42","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4.5e-3]]}]}`), "")
	f.Add([]byte(`{"inputs":[{"name":"i","shape":[3],"datatype":"INT32","data":[1,-2,3e2]}],"parameters":{"binary_data_output":true}}`), "")
	f.Add([]byte(`{"inputs":[{"name":"x","shape":[],"datatype":"FP32","data":["NaN"]}]}`), "")
	f.Add(append([]byte(head), bin...), strconv.Itoa(len(head)))
	f.Add([]byte(`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1e39]}]}`), "")
	f.Add([]byte(`{"inputs":[`), "3")
	f.Fuzz(func(t *testing.T, body []byte, headerLength string) {
		req, err := decodeRequest(body, headerLength, map[string]string{"x": "FP32", "i": "INT32"})
		if err != nil {
			var re *requestError
			if !errors.As(err, &re) || re.status != 400 || re.msg == "" {
				t.Fatalf("error %v (%T), want a 400 with a message", err, err)
			}
			return
		}
		for _, in := range req.inputs {
			tn := in.tensor
			if len(tn.Shape) > accel.MaxRank {
				t.Fatalf("input %q: rank %d", tn.Name, len(tn.Shape))
			}
			n := 1
			for _, d := range tn.Shape {
				if d < 1 {
					t.Fatalf("input %q: shape %v", tn.Name, tn.Shape)
				}
				n *= d
				if n > accel.MaxElements {
					t.Fatalf("input %q: shape %v holds %d elements", tn.Name, tn.Shape, n)
				}
			}
			if dt := dtypes[in.datatype]; dt != tn.DType || len(tn.Data) != n*dt.Size() {
				t.Fatalf("input %q: %s %v with %d bytes", tn.Name, in.datatype, tn.Shape, len(tn.Data))
			}
		}
		if headerLength == "" {
			checkAgainstEncodingJSON(t, body, req)
		}
	})
}

// checkAgainstEncodingJSON reads the inputs' data with encoding/json and
// compares it with what the decoder's own scanner read.
func checkAgainstEncodingJSON(t *testing.T, body []byte, req *inferRequest) {
	var w struct {
		Inputs []struct {
			Data json.RawMessage `json:"data"`
		} `json:"inputs"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&w); err != nil || len(w.Inputs) != len(req.inputs) {
		t.Fatalf("encoding/json reads %d inputs (%v); the decoder %d", len(w.Inputs), err, len(req.inputs))
	}
	for i, in := range req.inputs {
		var v any
		d := json.NewDecoder(bytes.NewReader(w.Inputs[i].Data))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			t.Fatal(err)
		}
		var flat []any
		var walk func(any)
		walk = func(v any) {
			if a, ok := v.([]any); ok {
				for _, e := range a {
					walk(e)
				}
				return
			}
			flat = append(flat, v)
		}
		walk(v)
		if len(flat)*4 != len(in.tensor.Data) {
			t.Fatalf("input %d: encoding/json reads %d elements; the decoder %d bytes", i, len(flat), len(in.tensor.Data))
		}
		for k, e := range flat {
			got := binary.LittleEndian.Uint32(in.tensor.Data[4*k:])
			var want uint32
			switch e := e.(type) {
			case json.Number:
				if in.tensor.DType == accel.I32 {
					f, _ := strconv.ParseFloat(string(e), 64)
					want = uint32(int32(f))
				} else {
					f, _ := strconv.ParseFloat(string(e), 32)
					want = math.Float32bits(float32(f))
				}
			case string:
				want = math.Float32bits(float32(map[string]float64{"NaN": math.NaN(), "Infinity": math.Inf(1), "-Infinity": math.Inf(-1)}[e]))
				if e == "NaN" && math.IsNaN(float64(math.Float32frombits(got))) {
					want = got
				}
			default:
				t.Fatalf("input %d element %d: the decoder took %v", i, k, e)
			}
			if got != want {
				t.Fatalf("input %d element %d: %v read as %#x, encoding/json %#x", i, k, e, got, want)
			}
		}
	}
}
