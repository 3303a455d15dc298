package oip

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/node"
)

// Datatypes: the protocol's names for tensor element types and the ONNX
// element types they stand for.
var onnxToDatatype = map[string]string{
	"BOOL": "BOOL", "UINT8": "UINT8", "UINT16": "UINT16", "UINT32": "UINT32", "UINT64": "UINT64",
	"INT8": "INT8", "INT16": "INT16", "INT32": "INT32", "INT64": "INT64",
	"FLOAT16": "FP16", "FLOAT": "FP32", "DOUBLE": "FP64", "BFLOAT16": "BF16", "STRING": "BYTES",
}

// known holds every datatype the protocol names; dtypes those the node's
// tensors can hold.
var (
	known = map[string]bool{"BOOL": true, "UINT8": true, "UINT16": true, "UINT32": true, "UINT64": true,
		"INT8": true, "INT16": true, "INT32": true, "INT64": true, "FP16": true, "FP32": true, "FP64": true,
		"BF16": true, "BYTES": true}
	dtypes = map[string]accel.DType{"FP32": accel.F32, "INT32": accel.I32}
)

// datatypeOf is the protocol's name for a value the node describes.
func datatypeOf(vi node.ValueInfo) string {
	if dt, ok := onnxToDatatype[vi.Type]; ok {
		return dt
	}
	return vi.Type // no protocol name: the ONNX one, which says what it is
}

func datatypeOfDType(dt accel.DType) string {
	switch dt {
	case accel.F32:
		return "FP32"
	case accel.I32:
		return "INT32"
	}
	return dt.String()
}

// Parameters of the binary tensor data extension.
const (
	paramBinarySize   = "binary_data_size"   // on an input or output: its bytes in the binary part
	paramBinary       = "binary_data"        // on a requested output: return it as binary data
	paramBinaryOutput = "binary_data_output" // on the request: every output as binary data
	headerJSONLength  = "Inference-Header-Content-Length"
)

// requestError is a request the protocol cannot take: it is answered with
// status and its message.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{status: 400, msg: fmt.Sprintf(format, args...)}
}

// inferRequest is a decoded inference request.
type inferRequest struct {
	id     *string
	inputs []input
	// outputs are the outputs asked for, nil for all of them; binaryAll
	// is binary_data_output.
	outputs   []outputRequest
	binaryAll bool
}

// input is one decoded input tensor, with its data in the node's layout.
type input struct {
	datatype string
	tensor   node.Tensor
}

type outputRequest struct {
	name   string
	binary *bool // binary_data, when given
}

// wire forms of the request's JSON object.
type wireRequest struct {
	ID         json.RawMessage            `json:"id"`
	Parameters map[string]json.RawMessage `json:"parameters"`
	Inputs     *[]wireInput               `json:"inputs"`
	Outputs    *[]wireOutput              `json:"outputs"`
}

type wireInput struct {
	Name       *string                    `json:"name"`
	Shape      *[]json.Number             `json:"shape"`
	Datatype   *string                    `json:"datatype"`
	Parameters map[string]json.RawMessage `json:"parameters"`
	Data       json.RawMessage            `json:"data"`
}

type wireOutput struct {
	Name       *string                    `json:"name"`
	Parameters map[string]json.RawMessage `json:"parameters"`
}

// decodeRequest decodes an inference request body. headerLength is the
// Inference-Header-Content-Length header, empty when absent: the body is
// then the JSON object alone; otherwise its first headerLength bytes are,
// and the binary data of the inputs that carry binary_data_size follows,
// in their order. declared maps the model's inputs to their datatypes, so
// that an input of another datatype is refused as such before its data is
// read; nil checks none. Every input's data is checked against its shape
// and datatype; whether the inputs fit the model otherwise is for the
// caller.
func decodeRequest(body []byte, headerLength string, declared map[string]string) (*inferRequest, error) {
	header, rest := body, []byte(nil)
	if headerLength != "" {
		n, err := strconv.ParseInt(headerLength, 10, 64)
		if err != nil || n < 0 || n > int64(len(body)) {
			return nil, badRequest("%s %q is not a length between 0 and the body's %d bytes", headerJSONLength, headerLength, len(body))
		}
		header, rest = body[:n], body[n:]
	}
	var w wireRequest
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.UseNumber()
	if err := dec.Decode(&w); err != nil {
		return nil, badRequest("malformed inference request: %v", jsonError(err))
	}
	if dec.More() {
		return nil, badRequest("malformed inference request: more than one JSON value")
	}
	if rest == nil {
		// Only whitespace may follow the object when no binary data does.
		if off := dec.InputOffset(); len(bytes.TrimSpace(header[off:])) != 0 {
			return nil, badRequest("malformed inference request: data after the JSON object")
		}
	}
	req := &inferRequest{}
	if w.ID != nil && string(w.ID) != "null" {
		var id string
		if err := json.Unmarshal(w.ID, &id); err != nil {
			return nil, badRequest("id must be a string, not %s", w.ID)
		}
		req.id = &id
	}
	if err := checkParameters("the request", w.Parameters); err != nil {
		return nil, err
	}
	var err error
	if req.binaryAll, err = boolParam("the request", w.Parameters, paramBinaryOutput); err != nil {
		return nil, err
	}
	if w.Inputs == nil {
		return nil, badRequest("the request has no inputs: it needs \"inputs\", an array of input tensors")
	}
	for i, wi := range *w.Inputs {
		in, err := decodeInput(i, wi, &rest, headerLength != "", declared)
		if err != nil {
			return nil, err
		}
		req.inputs = append(req.inputs, in)
	}
	if len(rest) != 0 {
		return nil, badRequest("%d bytes of binary data follow the JSON object that no input's %s claims", len(rest), paramBinarySize)
	}
	if w.Outputs != nil && len(*w.Outputs) > 0 { // none asked for: all of them
		req.outputs = []outputRequest{}
		for i, wo := range *w.Outputs {
			if wo.Name == nil {
				return nil, badRequest("output %d has no name", i)
			}
			what := fmt.Sprintf("output %q", *wo.Name)
			if err := checkParameters(what, wo.Parameters); err != nil {
				return nil, err
			}
			o := outputRequest{name: *wo.Name}
			if _, ok := wo.Parameters[paramBinary]; ok {
				b, err := boolParam(what, wo.Parameters, paramBinary)
				if err != nil {
					return nil, err
				}
				o.binary = &b
			}
			req.outputs = append(req.outputs, o)
		}
	}
	return req, nil
}

// jsonError words a decoding error for the client.
func jsonError(err error) string {
	if err.Error() == "EOF" {
		return "the body is empty"
	}
	return err.Error()
}

// decodeInput decodes input i, taking its binary data, if it has any,
// from the front of *rest.
func decodeInput(i int, wi wireInput, rest *[]byte, binaryBody bool, declared map[string]string) (input, error) {
	if wi.Name == nil {
		return input{}, badRequest("input %d has no name", i)
	}
	name := *wi.Name
	switch {
	case wi.Datatype == nil:
		return input{}, badRequest("input %q has no datatype", name)
	case wi.Shape == nil:
		return input{}, badRequest("input %q has no shape", name)
	}
	datatype := *wi.Datatype
	what := fmt.Sprintf("input %q", name)
	dt, ok := dtypes[datatype]
	decl, isInput := declared[name]
	switch {
	case isInput && decl != datatype && known[datatype]:
		return input{}, badRequest("%s is %s; the model declares it %s", what, datatype, decl)
	case !known[datatype]:
		return input{}, badRequest("%s: unknown datatype %q", what, datatype)
	case !ok:
		return input{}, badRequest("%s: datatype %s is not supported: the node takes FP32 and INT32 tensors", what, datatype)
	}
	shape, elems, err := decodeShape(what, *wi.Shape)
	if err != nil {
		return input{}, err
	}
	if err := checkParameters(what, wi.Parameters); err != nil {
		return input{}, err
	}
	want := elems * dt.Size()
	in := input{datatype: datatype, tensor: node.Tensor{Name: name, DType: dt, Shape: shape}}
	if raw, binary := wi.Parameters[paramBinarySize]; binary {
		size, err := strconv.ParseInt(string(raw), 10, 64)
		switch {
		case err != nil || size < 0:
			return input{}, badRequest("%s: %s must be a non-negative integer, not %s", what, paramBinarySize, raw)
		case wi.Data != nil:
			return input{}, badRequest("%s has both data and %s", what, paramBinarySize)
		case !binaryBody:
			return input{}, badRequest("%s has %s, but the request has no %s header", what, paramBinarySize, headerJSONLength)
		case size != int64(want):
			return input{}, badRequest("%s: %s[%s] takes %d bytes; %s is %d", what, datatype, dimList(shape), want, paramBinarySize, size)
		case size > int64(len(*rest)):
			return input{}, badRequest("%s: %s is %d, but only %d bytes of binary data are left", what, paramBinarySize, size, len(*rest))
		}
		in.tensor.Data, *rest = (*rest)[:size:size], (*rest)[size:]
		return in, nil
	}
	if wi.Data == nil || string(wi.Data) == "null" {
		return input{}, badRequest("%s has no data (give data, or %s with binary data)", what, paramBinarySize)
	}
	in.tensor.Data, err = decodeData(what, wi.Data, dt, elems)
	return in, err
}

// decodeShape checks a shape: every dimension at least 1, at most
// accel.MaxRank of them and at most accel.MaxElements elements in all. An
// empty shape is a scalar, one element.
func decodeShape(what string, dims []json.Number) ([]int, int, error) {
	if len(dims) > accel.MaxRank {
		return nil, 0, badRequest("%s: shape has %d dimensions, more than the node's %d", what, len(dims), accel.MaxRank)
	}
	shape := make([]int, len(dims))
	n := 1
	for i, d := range dims {
		v, err := strconv.ParseInt(d.String(), 10, 64)
		switch {
		case err != nil && !isIntegerOverflow(err):
			return nil, 0, badRequest("%s: shape dimension %s is not an integer", what, d)
		case err != nil || v > accel.MaxElements:
			return nil, 0, badRequest("%s: shape dimension %s is over the node's %d elements a tensor", what, d, accel.MaxElements)
		case v < 1:
			return nil, 0, badRequest("%s: shape dimension %d: every dimension must be at least 1", what, v)
		}
		shape[i] = int(v)
		if n > accel.MaxElements/shape[i] {
			return nil, 0, badRequest("%s: shape [%s] holds more than the node's %d elements a tensor", what, dimList(dims), accel.MaxElements)
		}
		n *= shape[i]
	}
	return shape, n, nil
}

func isIntegerOverflow(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

func dimList[T any](dims []T) string {
	var b bytes.Buffer
	for i, d := range dims {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, d)
	}
	return b.String()
}

// decodeData reads JSON tensor data, flat or nested in any way, as n
// elements of dt, little-endian. FP32 elements are numbers, or the strings
// "NaN", "Infinity" and "-Infinity"; INT32 elements are integers in range.
// raw is valid JSON: the request decoded.
func decodeData(what string, raw []byte, dt accel.DType, n int) ([]byte, error) {
	// Every element takes at least two bytes of JSON: the shape alone does
	// not size the buffer, so a small body cannot claim a large one.
	out := make([]byte, 0, 4*min(n, len(raw)/2+1))
	count := 0
	depth := 0
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',':
			i++
			continue
		case c == '[':
			depth++
			i++
			continue
		case c == ']':
			depth--
			i++
			continue
		case depth == 0:
			return nil, badRequest("%s: data must be an array", what)
		case c == '{':
			return nil, badRequest("%s: data holds an object; elements are numbers", what)
		}
		// One element: a number, a string or a literal.
		end := i + 1
		if c == '"' {
			for end < len(raw) && raw[end] != '"' {
				if raw[end] == '\\' {
					end++
				}
				end++
			}
			end++
		} else {
			for end < len(raw) && !bytes.ContainsRune([]byte(" \t\n\r,]"), rune(raw[end])) {
				end++
			}
		}
		tok := raw[i:min(end, len(raw))]
		i = end
		if count == n {
			return nil, badRequest("%s: data has more than the %d elements its shape holds", what, n)
		}
		count++
		var err error
		if out, err = appendElement(out, tok, dt); err != nil {
			return nil, badRequest("%s: element %d: %v", what, count-1, err)
		}
	}
	if count != n {
		return nil, badRequest("%s: data has %d elements; its shape holds %d", what, count, n)
	}
	return out, nil
}

func appendElement(out, tok []byte, dt accel.DType) ([]byte, error) {
	if dt == accel.F32 {
		var f float64
		switch string(tok) {
		case `"NaN"`:
			f = math.NaN()
		case `"Infinity"`:
			f = math.Inf(1)
		case `"-Infinity"`:
			f = math.Inf(-1)
		default:
			if tok[0] != '-' && (tok[0] < '0' || tok[0] > '9') {
				return nil, fmt.Errorf("%s is not an FP32 number", tok)
			}
			v, err := strconv.ParseFloat(string(tok), 32)
			if err != nil {
				return nil, fmt.Errorf("%s is out of FP32's range", tok)
			}
			f = v
		}
		return binary.LittleEndian.AppendUint32(out, math.Float32bits(float32(f))), nil
	}
	if tok[0] != '-' && (tok[0] < '0' || tok[0] > '9') {
		return nil, fmt.Errorf("%s is not an INT32 number", tok)
	}
	v, err := strconv.ParseInt(string(tok), 10, 32)
	if err != nil {
		// An integer written as 3.0 or 3e2 is still one.
		f, ferr := strconv.ParseFloat(string(tok), 64)
		if ferr != nil || f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32 {
			return nil, fmt.Errorf("%s is not an INT32 integer", tok)
		}
		v = int64(f)
	}
	return binary.LittleEndian.AppendUint32(out, uint32(int32(v))), nil
}

// checkParameters checks that every parameter's value is a string, a
// number or a boolean, as the protocol has it.
func checkParameters(what string, params map[string]json.RawMessage) error {
	for k, raw := range params {
		switch c := firstByte(raw); {
		case c == '"' || c == 't' || c == 'f' || c == '-' || (c >= '0' && c <= '9'):
		default:
			return badRequest("%s: parameter %q is %s; a parameter is a string, a number or a boolean", what, k, raw)
		}
	}
	return nil
}

func firstByte(raw []byte) byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

func boolParam(what string, params map[string]json.RawMessage, key string) (bool, error) {
	raw, ok := params[key]
	if !ok {
		return false, nil
	}
	switch string(bytes.TrimSpace(raw)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, badRequest("%s: parameter %s must be true or false, not %s", what, key, raw)
}

// wire forms of the response.
type wireResponse struct {
	ModelName    string         `json:"model_name"`
	ModelVersion string         `json:"model_version,omitempty"`
	ID           *string        `json:"id,omitempty"`
	Outputs      []wireTensor   `json:"outputs"`
	Parameters   map[string]any `json:"parameters,omitempty"`
}

type wireTensor struct {
	Name       string          `json:"name"`
	Shape      []int           `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
}

// encodeResponse writes the response body: the JSON object, then the
// binary data of the outputs marked binary, in their order. It returns the
// body and the length of the JSON object, or -1 when no output is binary.
func encodeResponse(resp wireResponse, outs []node.Tensor, binaryOut []bool) ([]byte, int, error) {
	var tail []byte
	for i, o := range outs {
		wt := wireTensor{Name: o.Name, Shape: o.Shape, Datatype: datatypeOfDType(o.DType)}
		if binaryOut[i] {
			wt.Parameters = map[string]any{paramBinarySize: len(o.Data)}
			tail = append(tail, o.Data...)
		} else {
			wt.Data = encodeData(o)
		}
		resp.Outputs = append(resp.Outputs, wt)
	}
	body, err := json.Marshal(resp)
	if err != nil {
		return nil, 0, err
	}
	if !slices.Contains(binaryOut, true) {
		return body, -1, nil
	}
	n := len(body)
	return append(body, tail...), n, nil
}

// encodeData writes a tensor's elements as a flat JSON array: FP32 in the
// shortest form that reads back to the same bits, a non-finite value as
// the string "NaN", "Infinity" or "-Infinity".
func encodeData(t node.Tensor) json.RawMessage {
	n := len(t.Data) / 4
	b := make([]byte, 0, 2+n*12)
	b = append(b, '[')
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		u := binary.LittleEndian.Uint32(t.Data[4*i:])
		if t.DType == accel.I32 {
			b = strconv.AppendInt(b, int64(int32(u)), 10)
			continue
		}
		f := math.Float32frombits(u)
		switch {
		case f != f:
			b = append(b, `"NaN"`...)
		case math.IsInf(float64(f), 1):
			b = append(b, `"Infinity"`...)
		case math.IsInf(float64(f), -1):
			b = append(b, `"-Infinity"`...)
		default:
			b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
		}
	}
	return append(b, ']')
}
