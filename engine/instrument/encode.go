package instrument

import (
	"errors"
	"fmt"

	"github.com/tetratelabs/wabin/binary"
	"github.com/tetratelabs/wabin/wasm"
)

// encode writes m with wabin, except for what wabin's encoder leaves out
// or writes slowly, which it writes itself: the element section in every
// form (wabin writes only active funcref lists), the data count section
// (wabin writes none, yet memory.init and data.drop need it), and the code
// and data sections, nearly all of a module's bytes, which wabin copies
// several times over.
func encode(m *wasm.Module) ([]byte, error) {
	elems, code, data := m.ElementSection, m.CodeSection, m.DataSection
	m.ElementSection, m.CodeSection, m.DataSection = nil, nil, nil
	defer func() { m.ElementSection, m.CodeSection, m.DataSection = elems, code, data }()
	for _, g := range m.GlobalSection {
		// wabin decodes v128.const as the bare sub-opcode; put the prefix back.
		if g.Init != nil && g.Init.Opcode == wasm.OpcodeVecV128Const && g.Type.ValType == wasm.ValueTypeV128 {
			g.Init = &wasm.ConstantExpression{Opcode: wasm.OpcodeVecPrefix, Data: append([]byte{wasm.OpcodeVecV128Const}, g.Init.Data...)}
		}
	}
	raw := binary.EncodeModule(m)

	size := len(raw) + 64
	for _, c := range code {
		size += len(c.Body) + 16 + 2*len(c.LocalTypes)
	}
	for _, d := range data {
		size += len(d.Init) + 32
	}
	out := make([]byte, 0, size)
	// Everything goes right before the first custom section, which wabin
	// writes after the sections it leaves out here.
	r := reader{b: raw, pos: 8}
	for r.pos < len(raw) {
		at := r.pos
		id, _ := r.byte()
		n, err := r.u32()
		if err != nil || r.skip(int(n)) != nil {
			return nil, errors.New("instrument: encoder wrote a bad section")
		}
		if id == wasm.SectionIDCustom {
			r.pos = at
			break
		}
	}
	out = append(out, raw[:r.pos]...)
	if len(elems) > 0 {
		payload := appendU32(nil, uint32(len(elems)))
		for i, e := range elems {
			var err error
			if payload, err = appendElement(payload, e); err != nil {
				return nil, fmt.Errorf("instrument: element segment %d: %w", i, err)
			}
		}
		out = appendSection(out, wasm.SectionIDElement, payload)
	}
	if m.DataCountSection != nil {
		out = appendSection(out, wasm.SectionIDDataCount, appendU32(nil, *m.DataCountSection))
	}
	if len(code) > 0 {
		out = appendSized(out, int(wasm.SectionIDCode), func(out []byte) []byte {
			out = appendU32(out, uint32(len(code)))
			for _, c := range code {
				out = appendSized(out, -1, func(out []byte) []byte {
					return append(appendLocals(out, c.LocalTypes), c.Body...)
				})
			}
			return out
		})
	}
	if len(data) > 0 {
		out = appendSized(out, int(wasm.SectionIDData), func(out []byte) []byte {
			out = appendU32(out, uint32(len(data)))
			for _, d := range data {
				if d.OffsetExpression == nil {
					out = append(out, 1) // passive
				} else {
					out = append(out, 0, d.OffsetExpression.Opcode) // active, memory 0
					out = append(out, d.OffsetExpression.Data...)
					out = append(out, wasm.OpcodeEnd)
				}
				out = appendU32(out, uint32(len(d.Init)))
				out = append(out, d.Init...)
			}
			return out
		})
	}
	return append(out, raw[r.pos:]...), nil
}

// appendSized appends what body writes, prefixed with its length as a
// five-byte LEB128 (and with id first, unless id is negative), so that
// nothing is written twice.
func appendSized(out []byte, id int, body func([]byte) []byte) []byte {
	if id >= 0 {
		out = append(out, byte(id))
	}
	at := len(out)
	out = append(out, 0x80, 0x80, 0x80, 0x80, 0x00)
	out = body(out)
	n := uint32(len(out) - at - 5)
	for i := range 4 {
		out[at+i] = byte(n>>(7*i)) | 0x80
	}
	out[at+4] = byte(n >> 28)
	return out
}

// appendLocals writes a body's local declarations, runs of one type as one.
func appendLocals(out []byte, types []wasm.ValueType) []byte {
	runs := 0
	for i := range types {
		if i == 0 || types[i] != types[i-1] {
			runs++
		}
	}
	out = appendU32(out, uint32(runs))
	for i := 0; i < len(types); {
		j := i
		for j < len(types) && types[j] == types[i] {
			j++
		}
		out = appendU32(out, uint32(j-i))
		out = append(out, types[i])
		i = j
	}
	return out
}

func appendSection(out []byte, id byte, payload []byte) []byte {
	out = append(out, id)
	out = appendU32(out, uint32(len(payload)))
	return append(out, payload...)
}

// appendElement writes a segment in the shortest of the eight forms that
// holds it: index lists where it can, expressions for nulls and externref.
func appendElement(out []byte, e *wasm.ElementSegment) ([]byte, error) {
	exprs := e.Type != wasm.RefTypeFuncref
	for _, idx := range e.Init {
		exprs = exprs || idx == nil
	}
	var prefix uint32
	switch e.Mode {
	case wasm.ElementModeActive:
		if e.OffsetExpr == nil {
			return nil, errors.New("active segment without offset")
		}
		prefix = 2
		if e.TableIndex == 0 && e.Type == wasm.RefTypeFuncref {
			prefix = 0 // forms 0 and 4 imply table 0 and funcref
		}
	case wasm.ElementModePassive:
		prefix = 1
	case wasm.ElementModeDeclarative:
		prefix = 3
	default:
		return nil, fmt.Errorf("unknown mode %d", e.Mode)
	}
	if exprs {
		prefix |= 4
	}
	out = appendU32(out, prefix)
	if prefix&2 != 0 && e.Mode == wasm.ElementModeActive {
		out = appendU32(out, e.TableIndex)
	}
	if e.Mode == wasm.ElementModeActive {
		out = append(out, e.OffsetExpr.Opcode)
		out = append(out, e.OffsetExpr.Data...)
		out = append(out, wasm.OpcodeEnd)
	}
	// Every form but 0 and 4 names its element kind or type.
	if prefix&3 != 0 {
		if exprs {
			out = append(out, e.Type)
		} else {
			out = append(out, 0x00)
		}
	}
	out = appendU32(out, uint32(len(e.Init)))
	for _, idx := range e.Init {
		switch {
		case !exprs:
			out = appendU32(out, *idx)
		case idx == nil:
			out = append(out, wasm.OpcodeRefNull, e.Type, wasm.OpcodeEnd)
		default:
			out = append(out, wasm.OpcodeRefFunc)
			out = appendU32(out, *idx)
			out = append(out, wasm.OpcodeEnd)
		}
	}
	return out, nil
}
