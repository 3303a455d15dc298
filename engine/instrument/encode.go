package instrument

import (
	"errors"
	"fmt"

	"github.com/tetratelabs/wabin/binary"
	"github.com/tetratelabs/wabin/wasm"
)

// encode writes m with wabin, then adds what wabin's encoder leaves out:
// the element section in every form (it writes only active funcref lists)
// and the data count section (it writes none, yet memory.init and data.drop
// need it).
func encode(m *wasm.Module) ([]byte, error) {
	elems := m.ElementSection
	m.ElementSection = nil
	for _, g := range m.GlobalSection {
		// wabin decodes v128.const as the bare sub-opcode; put the prefix back.
		if g.Init != nil && g.Init.Opcode == wasm.OpcodeVecV128Const && g.Type.ValType == wasm.ValueTypeV128 {
			g.Init = &wasm.ConstantExpression{Opcode: wasm.OpcodeVecPrefix, Data: append([]byte{wasm.OpcodeVecV128Const}, g.Init.Data...)}
		}
	}
	raw := binary.EncodeModule(m)

	var extra []byte
	if len(elems) > 0 {
		payload := appendU32(nil, uint32(len(elems)))
		for i, e := range elems {
			var err error
			if payload, err = appendElement(payload, e); err != nil {
				return nil, fmt.Errorf("instrument: element segment %d: %w", i, err)
			}
		}
		extra = appendSection(extra, wasm.SectionIDElement, payload)
	}
	if m.DataCountSection != nil {
		extra = appendSection(extra, wasm.SectionIDDataCount, appendU32(nil, *m.DataCountSection))
	}
	if len(extra) == 0 {
		return raw, nil
	}
	// Both go right before the code, data or first custom section.
	r := reader{b: raw, pos: 8}
	for r.pos < len(raw) {
		at := r.pos
		id, _ := r.byte()
		size, err := r.u32()
		if err != nil || r.skip(int(size)) != nil {
			return nil, errors.New("instrument: encoder wrote a bad section")
		}
		if id == wasm.SectionIDCode || id == wasm.SectionIDData || id == wasm.SectionIDCustom {
			out := make([]byte, 0, len(raw)+len(extra))
			out = append(append(append(out, raw[:at]...), extra...), raw[at:]...)
			return out, nil
		}
	}
	return append(raw, extra...), nil
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
