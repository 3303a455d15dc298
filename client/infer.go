package client

// The Open Inference Protocol (/v2): model metadata and inference, with the
// binary tensor data extension.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/accelnode/accelnode/server/api"
)

// Tensor is a tensor of an inference: its elements row-major and
// little-endian in Data, 4 bytes each for the datatypes the node takes,
// "FP32" and "INT32". An empty Shape is a scalar.
type Tensor struct {
	Name     string
	Datatype string
	Shape    []int64
	Data     []byte
}

// Datatypes of the tensors the node takes and returns.
const (
	FP32  = "FP32"
	INT32 = "INT32"
)

// FromFloat32s returns the FP32 tensor name of shape holding values.
func FromFloat32s(name string, shape []int64, values []float32) Tensor {
	data := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	return Tensor{Name: name, Datatype: FP32, Shape: shape, Data: data}
}

// FromInt32s returns the INT32 tensor name of shape holding values.
func FromInt32s(name string, shape []int64, values []int32) Tensor {
	data := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(data[4*i:], uint32(v))
	}
	return Tensor{Name: name, Datatype: INT32, Shape: shape, Data: data}
}

// Float32s returns the elements of an FP32 tensor, or nil for a tensor of
// another datatype.
func (t Tensor) Float32s() []float32 {
	if t.Datatype != FP32 {
		return nil
	}
	out := make([]float32, len(t.Data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out
}

// Int32s returns the elements of an INT32 tensor, or nil for a tensor of
// another datatype.
func (t Tensor) Int32s() []int32 {
	if t.Datatype != INT32 {
		return nil
	}
	out := make([]int32, len(t.Data)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out
}

// Elements is the number of elements t's shape holds: the product of its
// dimensions, 1 for a scalar, or -1 for a negative dimension or an
// overflow.
func (t Tensor) Elements() int64 { return elements(t.Shape) }

func elements(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		if d < 0 || (d > 0 && n > math.MaxInt64/d) {
			return -1
		}
		n *= d
	}
	return n
}

// InferError is the error of a /v2 request the node answered with an error
// status: Message is the node's {"error": ...}.
type InferError struct {
	Method, Path string
	Status       int
	Message      string
}

func (e *InferError) Error() string {
	return fmt.Sprintf("%s %s: %s (%d %s)", e.Method, e.Path, e.Message, e.Status, http.StatusText(e.Status))
}

// ModelMetadata describes a model as GET /v2/models/{name} does.
type ModelMetadata struct {
	Name string `json:"name"`
	// Versions holds the model's one version: the hex sha256 of its bytes.
	Versions []string         `json:"versions"`
	Platform string           `json:"platform"`
	Inputs   []TensorMetadata `json:"inputs"`
	Outputs  []TensorMetadata `json:"outputs"`
}

// TensorMetadata is one input or output of a model: its datatype ("FP32",
// "INT32", or what the node names another) and shape, -1 for a symbolic
// dimension.
type TensorMetadata struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// ModelMetadata describes the model name (a registered name or a sha256):
// its version, inputs and outputs.
func (c *Client) ModelMetadata(ctx context.Context, name string) (ModelMetadata, error) {
	var m ModelMetadata
	resp, err := c.sendV2(ctx, http.MethodGet, "/v2/models/"+seg(name), nil, nil)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	return m, decodeJSON(resp, &m)
}

// InferOptions tune Infer. The zero value asks for every output of the
// model's one version.
type InferOptions struct {
	// Outputs names the outputs to return, in this order; none means every
	// output, in the model's order.
	Outputs []string
	// Version, where set, is the version (the sha256) the model must have;
	// the node answers 404 if it has another.
	Version string
}

// Parameters and header of the binary tensor data extension.
const (
	paramBinarySize   = "binary_data_size"
	paramBinary       = "binary_data"
	paramBinaryOutput = "binary_data_output"
	headerJSONLength  = "Inference-Header-Content-Length"
)

// Wire forms of an inference request and response.
type wireInferRequest struct {
	Inputs     []wireTensor   `json:"inputs"`
	Outputs    []wireOutput   `json:"outputs,omitempty"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

type wireTensor struct {
	Name       string                     `json:"name"`
	Shape      []int64                    `json:"shape"`
	Datatype   string                     `json:"datatype"`
	Parameters map[string]json.RawMessage `json:"parameters,omitempty"`
	Data       json.RawMessage            `json:"data,omitempty"`
}

type wireOutput struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

type wireInferResponse struct {
	ModelName    string       `json:"model_name"`
	ModelVersion string       `json:"model_version"`
	Outputs      []wireTensor `json:"outputs"`
}

// Infer runs the model name (a registered name or a sha256) on inputs:
// POST /v2/models/{name}/infer. The inputs travel as binary data, and the
// outputs are asked for as binary data; an answer in JSON is read too. The
// outputs come back in the order asked for. A request the node refuses
// gives an *InferError with its status and message: 400 for inputs that do
// not fit the model, 404 for an unknown model, and so on.
func (c *Client) Infer(ctx context.Context, model string, inputs []Tensor, opts *InferOptions) ([]Tensor, error) {
	if opts == nil {
		opts = &InferOptions{}
	}
	req := wireInferRequest{Inputs: make([]wireTensor, len(inputs)), Parameters: map[string]any{paramBinaryOutput: true}}
	var tail []byte
	for i, in := range inputs {
		if size := datatypeSize(in.Datatype); size > 0 {
			if n := in.Elements(); n < 0 || int64(len(in.Data)) != n*size {
				return nil, fmt.Errorf("client: input %q: %s%s takes %d bytes, not %d", in.Name, in.Datatype, dims(in.Shape), n*size, len(in.Data))
			}
		}
		shape := in.Shape
		if shape == nil {
			shape = []int64{} // a scalar
		}
		req.Inputs[i] = wireTensor{Name: in.Name, Shape: shape, Datatype: in.Datatype,
			Parameters: map[string]json.RawMessage{paramBinarySize: json.RawMessage(strconv.Itoa(len(in.Data)))}}
		tail = append(tail, in.Data...)
	}
	for _, name := range opts.Outputs {
		req.Outputs = append(req.Outputs, wireOutput{Name: name, Parameters: map[string]any{paramBinary: true}})
	}
	head, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	body := append(head, tail...)

	path := "/v2/models/" + seg(model)
	if opts.Version != "" {
		path += "/versions/" + seg(opts.Version)
	}
	path += "/infer"
	h := http.Header{
		"Content-Type":   {"application/octet-stream"},
		headerJSONLength: {strconv.Itoa(len(head))},
	}
	resp, err := c.sendV2(ctx, http.MethodPost, path, h, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	outs, err := readInferResponse(resp)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", path, err)
	}
	return outs, nil
}

func datatypeSize(dt string) int64 {
	if dt == FP32 || dt == INT32 {
		return 4
	}
	return 0
}

func dims(shape []int64) string {
	s := make([]string, len(shape))
	for i, d := range shape {
		s[i] = strconv.FormatInt(d, 10)
	}
	return "[" + strings.Join(s, ",") + "]"
}

// sendV2 makes a /v2 request, repeated after a 429 as Retry-After says (an
// inference changes nothing, so it is safe to repeat), and returns the
// answer if it succeeded; the caller closes its body. An error answer
// becomes an *InferError.
func (c *Client) sendV2(ctx context.Context, method, path string, header http.Header, body []byte) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		var r io.Reader
		if body != nil {
			r = bytes.NewReader(body)
		}
		req, err := c.newRequest(ctx, method, c.base+path, r, header, "application/octet-stream, application/json")
		if err != nil {
			return nil, err
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode < 400 {
			return resp, nil
		}
		wait := retryAfter(resp.Header.Get("Retry-After"))
		e := readInferError(method, path, resp)
		if resp.StatusCode != http.StatusTooManyRequests || attempt >= c.retries {
			return nil, e
		}
		if err := sleep(ctx, c.delay(wait, attempt)); err != nil {
			return nil, e
		}
	}
}

// readInferError reads an error answer, closing its body: the protocol's
// {"error": ...}, a problem of the service around it (a missing key, say),
// or the start of whatever else the body holds.
func readInferError(method, path string, resp *http.Response) *InferError {
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &InferError{Method: method, Path: path, Status: resp.StatusCode}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "application/json" || mt == "application/problem+json" {
		var v struct {
			Error *string `json:"error"`
			api.Problem
		}
		if json.Unmarshal(data, &v) == nil {
			switch {
			case v.Error != nil:
				e.Message = *v.Error
				return e
			case v.Detail != "":
				e.Message = v.Detail
				return e
			case v.Title != "":
				e.Message = v.Title
				return e
			}
		}
	}
	msg := strings.TrimSpace(string(data))
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	if len(msg) > 200 {
		msg = msg[:200]
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	e.Message = msg
	return e
}

// readInferResponse reads an inference response: the JSON object, then
// the binary data of the outputs that carry binary_data_size, in their
// order, when Inference-Header-Content-Length is there.
func readInferResponse(resp *http.Response) ([]Tensor, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxAnswer {
		return nil, fmt.Errorf("the answer is over the client's %d-byte bound", maxAnswer)
	}
	head, tail := body, []byte(nil)
	if v := resp.Header.Get(headerJSONLength); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > len(body) {
			return nil, fmt.Errorf("%s %q is not a length within the body's %d bytes", headerJSONLength, v, len(body))
		}
		head, tail = body[:n], body[n:]
	}
	var w wireInferResponse
	if err := json.Unmarshal(head, &w); err != nil {
		return nil, fmt.Errorf("the answer is not the inference response expected: %w", err)
	}
	outs := make([]Tensor, len(w.Outputs))
	for i, o := range w.Outputs {
		t := Tensor{Name: o.Name, Datatype: o.Datatype, Shape: o.Shape}
		n := elements(o.Shape)
		size := datatypeSize(o.Datatype)
		if n < 0 || size == 0 {
			return nil, fmt.Errorf("output %q: %s%s is not a tensor the client reads", o.Name, o.Datatype, dims(o.Shape))
		}
		if raw, ok := o.Parameters[paramBinarySize]; ok {
			b, err := strconv.ParseInt(string(raw), 10, 64)
			switch {
			case err != nil || b < 0:
				return nil, fmt.Errorf("output %q: %s is %s", o.Name, paramBinarySize, raw)
			case b != n*size:
				return nil, fmt.Errorf("output %q: %s%s takes %d bytes; %s is %d", o.Name, o.Datatype, dims(o.Shape), n*size, paramBinarySize, b)
			case b > int64(len(tail)):
				return nil, fmt.Errorf("output %q: %s is %d, but only %d bytes of binary data are left", o.Name, paramBinarySize, b, len(tail))
			}
			t.Data, tail = tail[:b:b], tail[b:]
		} else {
			if t.Data, err = decodeData(o.Data, o.Datatype, n); err != nil {
				return nil, fmt.Errorf("output %q: %w", o.Name, err)
			}
		}
		outs[i] = t
	}
	if len(tail) != 0 {
		return nil, fmt.Errorf("%d bytes of binary data follow the outputs", len(tail))
	}
	return outs, nil
}

// decodeData reads the JSON data of an output, flat or nested: n numbers
// (FP32 also "NaN", "Infinity" and "-Infinity"), as little-endian bytes.
func decodeData(raw json.RawMessage, datatype string, n int64) ([]byte, error) {
	if len(raw) == 0 {
		return nil, errors.New("no data")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	out := make([]byte, 0, 4*min(n, int64(len(raw))))
	var count int64
	depth := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		var u uint32
		switch v := tok.(type) {
		case json.Delim:
			if v == '[' {
				depth++
			} else if v == ']' {
				depth--
			} else {
				return nil, errors.New("data holds an object; elements are numbers")
			}
			continue
		case json.Number:
			if datatype == FP32 {
				f, err := strconv.ParseFloat(string(v), 32)
				if err != nil {
					return nil, fmt.Errorf("element %d: %s is not an FP32 number", count, v)
				}
				u = math.Float32bits(float32(f))
			} else {
				i, err := strconv.ParseInt(string(v), 10, 32)
				if err != nil {
					return nil, fmt.Errorf("element %d: %s is not an INT32 number", count, v)
				}
				u = uint32(int32(i))
			}
		case string:
			f, ok := map[string]float64{"NaN": math.NaN(), "Infinity": math.Inf(1), "-Infinity": math.Inf(-1)}[v]
			if !ok || datatype != FP32 {
				return nil, fmt.Errorf("element %d: %q is not an %s number", count, v, datatype)
			}
			u = math.Float32bits(float32(f))
		default:
			return nil, fmt.Errorf("element %d: %v is not a number", count, tok)
		}
		if depth == 0 {
			return nil, errors.New("data is not an array")
		}
		if count == n {
			return nil, fmt.Errorf("data has more than the %d elements its shape holds", n)
		}
		out = binary.LittleEndian.AppendUint32(out, u)
		count++
	}
	if count != n {
		return nil, fmt.Errorf("data has %d elements; its shape holds %d", count, n)
	}
	return out, nil
}
