package instrument

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tetratelabs/wabin/wasm"
)

// countdown loops n times: 5 per iteration at the loop header, then 1 for
// the local.get after the loop (the loop's end continues that segment).
var countdown = fn{name: "f", params: []wasm.ValueType{i32}, results: []wasm.ValueType{i32}, body: cat(
	[]byte{0x03, 0x40},                                                 // loop
	localGet(0), i32c(1), []byte{0x6B}, u32op(0x22, 0), u32op(0x0D, 0), // get, const, sub, tee, br_if 0
	[]byte{0x0B}, // end
	localGet(0),
)}

func TestCounts(t *testing.T) {
	ret := []wasm.ValueType{i32}
	p := []wasm.ValueType{i32}
	tests := []struct {
		name  string
		mod   mod
		args  []uint64
		want  uint64 // result
		count int64
		trap  string // part of the error, when it traps
		hosts []hostFn
	}{
		{name: "straight line", mod: mod{funcs: []fn{{name: "f", results: ret, body: cat(i32c(1), i32c(2), []byte{0x6A})}}}, want: 3, count: 3},
		{name: "empty", mod: mod{funcs: []fn{{name: "f"}}}, count: 0},
		{name: "loop 10", mod: mod{funcs: []fn{countdown}}, args: []uint64{10}, want: 0, count: 5*10 + 1},
		{name: "loop 1", mod: mod{funcs: []fn{countdown}}, args: []uint64{1}, want: 0, count: 5 + 1},
		// block (result i32): 7, get, br_if 0 | drop, 9 | end (targeted): new segment.
		{name: "br_if taken", mod: mod{funcs: []fn{brIfFn}}, args: []uint64{1}, want: 7, count: 3},
		{name: "br_if not taken", mod: mod{funcs: []fn{brIfFn}}, args: []uint64{0}, want: 9, count: 5},
		{name: "if then", mod: mod{funcs: []fn{ifElseFn}}, args: []uint64{1}, want: 6, count: 2 + 1 + 2},
		{name: "if else", mod: mod{funcs: []fn{ifElseFn}}, args: []uint64{0}, want: 10, count: 2 + 3 + 2},
		{name: "br_table 0", mod: mod{funcs: []fn{brTableFn}}, args: []uint64{0}, want: 10, count: 2 + 2},
		{name: "br_table 1", mod: mod{funcs: []fn{brTableFn}}, args: []uint64{1}, want: 20, count: 2 + 2},
		{name: "br_table 2", mod: mod{funcs: []fn{brTableFn}}, args: []uint64{2}, want: 30, count: 2 + 1},
		{name: "br_table default", mod: mod{funcs: []fn{brTableFn}}, args: []uint64{9}, want: 30, count: 2 + 1},
		{name: "loop never entered", mod: mod{funcs: []fn{guardedLoop}}, args: []uint64{0}, want: 0, count: 3 + 1},
		{name: "guarded loop 4", mod: mod{funcs: []fn{guardedLoop}}, args: []uint64{4}, want: 0, count: 3 + 5*4 + 1},
		// f: call g, call g, add = 3; g: const = 1 each.
		{name: "calls", mod: mod{funcs: []fn{
			{name: "f", results: ret, body: cat(call(1), call(1), []byte{0x6A})},
			{results: ret, body: i32c(21)},
		}}, want: 42, count: 3 + 2},
		// f: const 0, call_indirect = 2; g: 1.
		{name: "call_indirect", mod: mod{table: []uint32{1}, funcs: []fn{
			{name: "f", results: ret, body: cat(i32c(0), u32op(0x11, 0), []byte{0x00})},
			{results: ret, body: i32c(5)},
		}}, want: 5, count: 2 + 1},
		// block (type 0: -> i32 i32) const const end add: one segment.
		{name: "multi-value block", mod: mod{
			types: []*wasm.FunctionType{{Results: []wasm.ValueType{i32, i32}}},
			funcs: []fn{{name: "f", results: ret, body: cat([]byte{0x02, 0x00}, i32c(1), i32c(2), []byte{0x0B, 0x6A})}},
		}, want: 3, count: 3},
		// The import keeps index 0; f (index 1 before, 2 after) calls it and g.
		{name: "imported function", hosts: []hostFn{inc}, mod: mod{imports: []hostFn{inc}, funcs: []fn{
			{name: "f", params: p, results: ret, body: cat(localGet(0), call(0), call(2), []byte{0x6A})},
			{results: ret, body: i32c(100)},
		}}, args: []uint64{4}, want: 105, count: 4 + 1},
		// A trapping block was charged when entered: all of it.
		{name: "div by zero", mod: mod{funcs: []fn{{name: "f", results: ret, body: cat(i32c(1), i32c(0), []byte{0x6D}, []byte{0x1A}, i32c(5))}}},
			count: 1 + 1 + costDiv + 1 + 1, trap: "integer divide by zero"},
		{name: "unreachable", mod: mod{funcs: []fn{{name: "f", results: ret, body: cat(i32c(1), []byte{0x1A, 0x00}, i32c(5), []byte{0x1A})}}},
			count: 3, trap: "unreachable"},
		// fill (16), load, grow by 0 (1000) and drop: the fill's length is not charged.
		{name: "memory ops", mod: mod{memory: true, funcs: []fn{{name: "f", results: ret, body: cat(
			i32c(0), i32c(7), i32c(4), []byte{0xFC, 11, 0},
			i32c(0), []byte{0x28, 2, 0},
			i32c(0), []byte{0x40, 0, 0x1A},
		)}}}, want: 0x07070707, count: 3 + costBulk + 2 + 1 + costGrow + 1},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bin := tc.mod.build(t)
			out, err := Instrument(bin, Options{Meter: true})
			if err != nil {
				t.Fatal(err)
			}
			in, err := instantiate(t, out, unlimited(), tc.hosts...)
			if err != nil {
				t.Fatal(err)
			}
			res, err := in.mod.ExportedFunction("f").Call(context.Background(), tc.args...)
			if tc.trap != "" {
				if err == nil || !strings.Contains(err.Error(), tc.trap) {
					t.Fatalf("error %v, want a trap %q", err, tc.trap)
				}
			} else if err != nil {
				t.Fatal(err)
			} else if len(res) > 0 && res[0] != tc.want {
				t.Errorf("result %d, want %d", res[0], tc.want)
			}
			if got := in.used(); got != tc.count {
				t.Errorf("count %d, want %d", got, tc.count)
			}
		})
	}
}

var inc = hostFn{module: "env", name: "inc", params: []wasm.ValueType{i32}, results: []wasm.ValueType{i32}}

var brIfFn = fn{name: "f", params: []wasm.ValueType{i32}, results: []wasm.ValueType{i32}, body: cat(
	[]byte{0x02, 0x7F}, i32c(7), localGet(0), u32op(0x0D, 0), []byte{0x1A}, i32c(9), []byte{0x0B},
)}

// get, if | 1, 5, add | 2, 3, add, 5, add... see counts: then 1, else 3, after 2.
var ifElseFn = fn{name: "f", params: []wasm.ValueType{i32}, results: []wasm.ValueType{i32}, body: cat(
	localGet(0), []byte{0x04, 0x7F}, i32c(1), []byte{0x05}, i32c(2), i32c(3), []byte{0x6A}, []byte{0x0B},
	i32c(5), []byte{0x6A},
)}

var brTableFn = fn{name: "f", params: []wasm.ValueType{i32}, results: []wasm.ValueType{i32}, body: cat(
	[]byte{0x02, 0x40, 0x02, 0x40, 0x02, 0x40},
	localGet(0), []byte{0x0E, 2, 0, 1, 2},
	[]byte{0x0B}, i32c(10), []byte{0x0F},
	[]byte{0x0B}, i32c(20), []byte{0x0F},
	[]byte{0x0B}, i32c(30),
)}

// get, eqz, br_if-out guard (3), then countdown's loop (5 each) and 1 after.
var guardedLoop = fn{name: "f", params: []wasm.ValueType{i32}, results: []wasm.ValueType{i32}, body: cat(
	[]byte{0x02, 0x40}, localGet(0), []byte{0x45}, u32op(0x0D, 0),
	[]byte{0x03, 0x40}, localGet(0), i32c(1), []byte{0x6B}, u32op(0x22, 0), u32op(0x0D, 0), []byte{0x0B},
	[]byte{0x0B}, localGet(0),
)}

func TestBudget(t *testing.T) {
	const n = 100
	need := int64(5*n + 1)
	tests := []struct {
		name   string
		budget int64
		chunk  int64
		ok     bool
	}{
		{"exact budget, one grant", need, 1 << 30, true},
		{"exact budget, small grants", need, 7, true},
		{"exact budget, grants of one", need, 1, true},
		{"one short", need - 1, 1 << 30, false},
		{"one short, small grants", need - 1, 3, false},
		{"far short", 10, 4, false},
	}
	bin := mod{funcs: []fn{countdown}}.build(t)
	out, err := Instrument(bin, Options{Meter: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &meterHost{budget: tc.budget, chunk: tc.chunk}
			in, err := instantiate(t, out, h)
			if err != nil {
				t.Fatal(err)
			}
			_, err = in.mod.ExportedFunction("f").Call(context.Background(), n)
			used := in.used()
			// A run is over budget if refill refused, or if what it used
			// since the last refill took it past the budget.
			over := err != nil || used > tc.budget
			if err != nil && !errors.Is(err, errBudget) && !strings.Contains(err.Error(), errBudget.Error()) {
				t.Fatalf("unexpected error: %v", err)
			}
			if over == tc.ok {
				t.Fatalf("over budget %v (err %v, used %d of %d), want %v", over, err, used, tc.budget, !tc.ok)
			}
			if tc.ok && used != need {
				t.Errorf("used %d, want %d", used, need)
			}
			if !tc.ok && err != nil && used <= tc.budget {
				t.Errorf("refused at %d used, within the budget %d", used, tc.budget)
			}
		})
	}
}

// A guest spinning forever crosses into the host at its loop header each
// time its grant runs out, so the host can stop it.
func TestSpinStops(t *testing.T) {
	bin := mod{funcs: []fn{{name: "f", body: []byte{0x03, 0x40, 0x0C, 0x00, 0x0B}}}}.build(t)
	out, err := Instrument(bin, Options{Meter: true})
	if err != nil {
		t.Fatal(err)
	}
	h := &meterHost{budget: 1000, chunk: 100}
	in, err := instantiate(t, out, h)
	if err != nil {
		t.Fatal(err)
	}
	_, err = in.mod.ExportedFunction("f").Call(context.Background())
	if err == nil || !strings.Contains(err.Error(), errBudget.Error()) {
		t.Fatalf("spin ended with %v, want the budget error", err)
	}
	if h.refills != 11 {
		t.Errorf("%d refills, want 11 (10 grants of 100, then the refusal)", h.refills)
	}
	if used := in.used(); used != 1001 {
		t.Errorf("used %d, want 1001", used)
	}
}

// The start function runs, and is charged, at instantiation.
func TestStartFunction(t *testing.T) {
	start := uint32(2)
	g := &wasm.Global{Type: &wasm.GlobalType{ValType: i32, Mutable: true}, Init: &wasm.ConstantExpression{Opcode: wasm.OpcodeI32Const, Data: []byte{0}}}
	bin := mod{start: &start, globals: []*wasm.Global{g}, imports: []hostFn{inc}, funcs: []fn{
		{name: "f", results: []wasm.ValueType{i32}, body: u32op(0x23, 0)},
		{body: cat(i32c(41), call(0), u32op(0x24, 0))}, // global = inc(41)
	}}.build(t)
	out, err := Instrument(bin, Options{Meter: true})
	if err != nil {
		t.Fatal(err)
	}
	in, err := instantiate(t, out, unlimited(), inc)
	if err != nil {
		t.Fatal(err)
	}
	if used := in.used(); used != 3 {
		t.Errorf("start used %d, want 3", used)
	}
	res, err := in.mod.ExportedFunction("f").Call(context.Background())
	if err != nil || res[0] != 42 {
		t.Fatalf("f() = %v, %v; want 42", res, err)
	}
	if used := in.used(); used != 4 {
		t.Errorf("used %d, want 4", used)
	}
}

func TestRefused(t *testing.T) {
	tests := []struct {
		name string
		mod  mod
		want string
	}{
		{"imports the meter module", mod{imports: []hostFn{{module: ImportModule, name: "x", params: []wasm.ValueType{i64}, results: []wasm.ValueType{i64}}}}, "already imports from"},
		{"exports the fuel name", mod{funcs: []fn{{name: FuelExport}}}, "already exports"},
		{"unknown opcode", mod{funcs: []fn{{name: "f", body: []byte{0x06}}}}, "unknown opcode 0x6"},
		{"unknown simd opcode", mod{funcs: []fn{{name: "f", body: []byte{0xFD, 0x9A, 0x01}}}}, "unknown opcode 0xfd 0x9a"},
		{"relaxed simd", mod{funcs: []fn{{name: "f", body: []byte{0xFD, 0x80, 0x02}}}}, "unknown opcode 0xfd 0x100"},
		{"truncated immediate", mod{funcs: []fn{{name: "f", body: []byte{0x41, 0x80, 0x80, 0x80, 0x80, 0x80}}}}, "i32.const: integer too long"},
		{"unbalanced end", mod{funcs: []fn{{name: "f", body: []byte{0x0B}}}}, "code after the function's end"},
		{"else outside if", mod{funcs: []fn{{name: "f", body: []byte{0x02, 0x40, 0x05, 0x0B}}}}, "else without if"},
		{"branch too deep", mod{funcs: []fn{{name: "f", body: []byte{0x0C, 0x05}}}}, "branch depth 5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Instrument(tc.mod.build(t), Options{Meter: true})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// nestedLoops counts trips round an inner loop inside an outer one, and
// leaves both at once, by a branch two labels out, when n reaches 2: f(5)
// is 10 and f(1) is 3.
var nestedLoops = fn{name: "f", params: []wasm.ValueType{i32}, results: []wasm.ValueType{i32}, locals: []wasm.ValueType{i32, i32}, body: cat(
	[]byte{0x02, 0x40, 0x03, 0x40}, // block $exit; loop $outer
	i32c(3), u32op(0x21, 2),
	[]byte{0x03, 0x40}, // loop $inner
	localGet(1), i32c(1), []byte{0x6A}, u32op(0x21, 1),
	localGet(0), i32c(2), []byte{0x46}, u32op(0x0D, 2), // br_if $exit
	localGet(2), i32c(1), []byte{0x6B}, u32op(0x22, 2), u32op(0x0D, 0),
	[]byte{0x0B},
	localGet(0), i32c(1), []byte{0x6B}, u32op(0x22, 0), u32op(0x0D, 0),
	[]byte{0x0B, 0x0B},
	localGet(1),
)}

// However often the guest runs out of fuel inside its loops, and so leaves
// them by the refill path and enters them again, it computes the same and
// is charged the same: the refill path gives back the header it charges
// twice. Branches out of wrapped loops reach the right labels.
func TestRefillKeepsCount(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    fn
		arg  uint64
		want uint64
	}{
		{"countdown", countdown, 50, 0},
		{"nested, left two labels out", nestedLoops, 5, 10},
		{"nested, left by falling out", nestedLoops, 1, 3},
		{"guarded loop", guardedLoop, 20, 0},
		{"br_table", brTableFn, 1, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Instrument(mod{funcs: []fn{tc.f}}.build(t), Options{Meter: true})
			if err != nil {
				t.Fatal(err)
			}
			var counts []int64
			for _, chunk := range []int64{1 << 40, 1, 2, 3, 7, 13} {
				h := &meterHost{budget: 1 << 50, chunk: chunk}
				in, err := instantiate(t, out, h)
				if err != nil {
					t.Fatal(err)
				}
				res, err := in.mod.ExportedFunction("f").Call(context.Background(), tc.arg)
				if err != nil || res[0] != tc.want {
					t.Fatalf("chunk %d: f(%d) = %v, %v; want %d", chunk, tc.arg, res, err, tc.want)
				}
				counts = append(counts, in.used())
				if counts[len(counts)-1] != counts[0] {
					t.Errorf("chunk %d: used %d, with one grant %d", chunk, counts[len(counts)-1], counts[0])
				}
			}
		})
	}
}
