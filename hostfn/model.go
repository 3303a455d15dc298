package hostfn

import (
	"encoding/binary"
	"encoding/json"
	"strconv"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/hostfn/abi"
	"github.com/accelnode/accelnode/models"
	"github.com/accelnode/accelnode/models/onnx"
)

// maxModelName bounds the name a guest passes to model_open.
const maxModelName = 256

func modelOpen(c *call) error {
	n := c.u32(1)
	if n == 0 || n > maxModelName {
		return fail(abi.EINVAL, "model name of %d bytes (want 1 to %d)", n, maxModelName)
	}
	name, err := c.view(c.u32(0), uint64(n), "model name")
	if err != nil {
		return err
	}
	slot, err := c.view(c.u32(2), 4, "output model handle")
	if err != nil {
		return err
	}
	m, err := c.in.models.Lookup(string(name))
	if err != nil {
		return err
	}
	// A model opened again gets its first handle back, so the table holds
	// at most one entry per registered model however often a guest asks.
	for h, open := range c.in.opened {
		if open == m {
			binary.LittleEndian.PutUint32(slot, h)
			return nil
		}
	}
	if c.in.nextModel == 0 {
		return fail(abi.ELIMIT, "model handle numbers exhausted")
	}
	h := c.in.nextModel
	c.in.nextModel++
	c.in.opened[h] = m
	binary.LittleEndian.PutUint32(slot, h)
	return nil
}

// model resolves the model handle in args[i].
func (c *call) model(i int) (*models.Model, error) {
	m, ok := c.in.opened[c.u32(i)]
	if !ok {
		return nil, fail(abi.EBADHANDLE, "model handle %d is not open in this guest", c.u32(i))
	}
	return m, nil
}

func describe(vs []onnx.ValueInfo) []abi.ValueInfo {
	out := make([]abi.ValueInfo, len(vs))
	for i, v := range vs {
		out[i] = abi.ValueInfo{Name: v.Name, DType: dtypeName(v.ElemType)}
		for _, d := range v.Dims {
			size, name := d.Value, d.Param
			if name != "" || size <= 0 {
				size = -1
			} else {
				name = strconv.FormatInt(size, 10)
			}
			out[i].Shape = append(out[i].Shape, size)
			out[i].Dims = append(out[i].Dims, name)
		}
	}
	return out
}

func dtypeName(t int) string {
	switch t {
	case onnx.Float:
		return "f32"
	case onnx.Int32:
		return "i32"
	case onnx.Int64:
		return "i64"
	}
	return "onnx:" + strconv.Itoa(t)
}

func modelInfo(c *call) error {
	m, err := c.model(0)
	if err != nil {
		return err
	}
	msg, err := json.Marshal(abi.ModelInfo{Name: m.Name, SHA256: m.SHA256, Inputs: describe(m.Inputs), Outputs: describe(m.Outputs)})
	if err != nil {
		return err
	}
	return copyOut(c, 1, msg)
}

func modelRun(c *call) error {
	m, err := c.model(0)
	if err != nil {
		return err
	}
	nIn, nOut := c.u32(2), c.u32(4)
	if int(nIn) != len(m.Inputs) || int(nOut) != len(m.Outputs) {
		return fail(abi.EINVAL, "model %s takes %d inputs and gives %d outputs; the call passes %d and %d", m.Name, len(m.Inputs), len(m.Outputs), nIn, nOut)
	}
	handles, err := c.params(c.u32(1), int(nIn), "input handles")
	if err != nil {
		return err
	}
	inputs := make([]*accel.Tensor, nIn)
	for i, h := range handles {
		t, ok := c.in.handles[h]
		if !ok {
			return fail(abi.EBADHANDLE, "input %d (%s): handle %d is not a live tensor of this guest", i, m.Inputs[i].Name, h)
		}
		inputs[i] = t
	}
	// The output slots and handle numbers are checked before the run, so a
	// bad pointer never costs a run or leaks a tensor.
	slots, err := c.elements(c.u32(3), nOut, 4, "output handles")
	if err != nil {
		return err
	}
	// A counter of 0 has wrapped: every handle number is issued.
	if c.in.next == 0 || uint64(c.in.next)+uint64(nOut) > 1<<32-1 {
		return fail(abi.ELIMIT, "handle numbers exhausted")
	}
	outs, err := m.Run(c.ctx, c.in.session, inputs)
	if err != nil {
		return err
	}
	for i, t := range outs {
		h := c.in.next
		c.in.next++
		c.in.handles[h] = t
		binary.LittleEndian.PutUint32(slots[4*i:], h)
	}
	return nil
}
