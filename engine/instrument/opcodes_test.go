package instrument

import (
	"context"
	"testing"

	"github.com/tetratelabs/wabin/wasm"
)

func TestCost(t *testing.T) {
	tests := []struct {
		op   []byte
		want int64
		err  bool
	}{
		{[]byte{0x6A}, 1, false},                      // i32.add
		{[]byte{0x6D}, costDiv, false},                // i32.div_s
		{[]byte{0x02, 0x40}, 0, false},                // block, immediates ignored
		{[]byte{0x40}, costGrow, false},               // memory.grow
		{[]byte{0xFC, 10}, costBulk, false},           // memory.copy
		{[]byte{0xFD, 0xE7, 0x01}, costVecDiv, false}, // f32x4.div
		{[]byte{0xFD, 0xFF, 0x01}, 1, false},          // f64x2.convert_low_i32x4_u, the last
		{[]byte{0x06}, 0, true},
		{[]byte{0xFD, 0x9A, 0x01}, 0, true},
		{[]byte{0xFC}, 0, true},
		{nil, 0, true},
	}
	for _, tc := range tests {
		got, err := Cost(tc.op)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("Cost(% x) = %d, %v; want %d, error %v", tc.op, got, err, tc.want, tc.err)
		}
	}
	if len(numericNames) != 0xC4-0x45+1 {
		t.Errorf("%d numeric opcodes, want %d", len(numericNames), 0xC4-0x45+1)
	}
	for code, name := range map[uint32]string{0x0C: "v128.const", 0x5E: "f32x4.demote_f64x2_zero", 0x94: "f64x2.nearest", 0xBA: "i32x4.dot_i16x8_s", 0xE3: "f32x4.sqrt", 0xFF: "f64x2.convert_low_i32x4_u"} {
		if simdNames[code] != name {
			t.Errorf("simd 0x%x is %q, want %q", code, simdNames[code], name)
		}
	}
}

// Passive and declarative element segments, ref.func, memory.init with its
// data count section and the name section all survive the rewrite.
func TestSections(t *testing.T) {
	d := mod{memory: true, funcs: []fn{
		// f: memory.init 0 at 0 of 4 bytes, load; plus ref.func 1 is not null.
		{name: "f", results: []wasm.ValueType{i32}, body: cat(
			i32c(0), i32c(0), i32c(4), []byte{0xFC, 8, 0, 0},
			i32c(0), []byte{0x28, 2, 0},
			[]byte{0xD2, 1, 0xD1}, []byte{0x6A},
			i32c(0), []byte{0x25, 0}, []byte{0xD1}, []byte{0x6A}, // table.get 0 [0] is null: +1
		)},
		{results: []wasm.ValueType{i32}, body: i32c(1)},
	}}
	bin := d.build(t)
	dec, err := decodeForTest(bin)
	if err != nil {
		t.Fatal(err)
	}
	one := uint32(1)
	dec.TableSection = []*wasm.Table{{Min: 2, Type: wasm.RefTypeFuncref}}
	dec.ElementSection = []*wasm.ElementSegment{
		{Mode: wasm.ElementModeDeclarative, Type: wasm.RefTypeFuncref, Init: []*wasm.Index{&one}},
		{Mode: wasm.ElementModeActive, Type: wasm.RefTypeFuncref, OffsetExpr: &wasm.ConstantExpression{Opcode: wasm.OpcodeI32Const, Data: []byte{0}}, Init: []*wasm.Index{nil, &one}},
		{Mode: wasm.ElementModePassive, Type: wasm.RefTypeFuncref, Init: []*wasm.Index{&one}},
	}
	dec.DataSection = []*wasm.DataSegment{{Init: []byte{1, 2, 3, 4}}}
	n := uint32(1)
	dec.DataCountSection = &n
	dec.NameSection = &wasm.NameSection{ModuleName: "m", FunctionNames: wasm.NameMap{{Index: 0, Name: "f"}, {Index: 1, Name: "g"}}}
	if bin, err = encode(dec); err != nil {
		t.Fatal(err)
	}
	out, err := Instrument(bin, Options{Meter: true})
	if err != nil {
		t.Fatal(err)
	}
	in, err := instantiate(t, out, unlimited())
	if err != nil {
		t.Fatal(err)
	}
	res, err := in.mod.ExportedFunction("f").Call(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(0x04030201 + 0 + 1); res[0] != want {
		t.Errorf("f() = %#x, want %#x", res[0], want)
	}
	again, err := decodeForTest(out)
	if err != nil {
		t.Fatal(err)
	}
	names := again.NameSection.FunctionNames
	// No imports: refill takes index 0 and f and g move to 1 and 2.
	if len(names) != 3 || names[0].Name != ImportModule+"."+ImportName || names[1].Name != "f" || names[1].Index != 1 || names[2].Name != "g" || names[2].Index != 2 {
		t.Errorf("names %+v %+v %+v, want the refill import, f at 1, g at 2", *names[0], *names[1], *names[2])
	}
	if len(again.ElementSection) != 3 || *again.ElementSection[1].Init[1] != 2 || *again.ElementSection[0].Init[0] != 2 {
		t.Errorf("element segments not re-indexed")
	}
}
