package instrument

import (
	"context"
	"fmt"
	"testing"

	"github.com/tetratelabs/wabin/wasm"
	"github.com/tetratelabs/wazero"
)

// gen turns fuzz bytes into valid function bodies: every expression leaves
// one i32, loops are bounded by a counter local of their own, and calls go
// only to functions defined before, so every function ends.
type gen struct {
	data []byte
	pos  int
	fn   int // index of the function being generated
	loop int // loops open around the expression being generated
}

const (
	genDepth  = 4
	genParams = 2
	counter0  = genParams     // counter local of loop depth 0
	acc       = genParams + 4 // accumulator local
)

func (g *gen) byte() byte {
	if g.pos >= len(g.data) {
		return 0
	}
	b := g.data[g.pos]
	g.pos++
	return b
}

func (g *gen) expr(depth int) []byte {
	c := g.byte()
	if depth >= genDepth {
		c %= 2
	}
	e := func() []byte { return g.expr(depth + 1) }
	switch c % 12 {
	case 0:
		return i32c(int32(int8(g.byte())))
	case 1:
		return localGet(uint32(g.byte() % genParams))
	case 2:
		ops := []byte{0x6A, 0x6B, 0x6C, 0x71, 0x72, 0x73, 0x74, 0x75, 0x77, 0x46, 0x48, 0x6D, 0x70}
		return cat(e(), e(), []byte{ops[int(g.byte())%len(ops)]})
	case 3:
		return cat(e(), []byte{0x04, 0x7F}, e(), []byte{0x05}, e(), []byte{0x0B})
	case 4:
		return cat([]byte{0x02, 0x7F}, e(), e(), u32op(0x0D, 0), []byte{0x1A}, e(), []byte{0x0B})
	case 5: // acc = 0; for n times: acc += e; then acc
		n := int32(g.byte() % 6)
		cnt := uint32(counter0 + depth%4)
		g.loop++
		body := e()
		g.loop--
		return cat(i32c(n), u32op(0x21, cnt), i32c(0), u32op(0x21, acc),
			[]byte{0x02, 0x40}, localGet(cnt), []byte{0x45}, u32op(0x0D, 0),
			[]byte{0x03, 0x40}, localGet(acc), body, []byte{0x6A}, u32op(0x21, acc),
			localGet(cnt), i32c(1), []byte{0x6B}, u32op(0x22, cnt), u32op(0x0D, 0), []byte{0x0B},
			[]byte{0x0B}, localGet(acc))
	case 6:
		if g.fn == 0 || g.loop > 1 { // calls under nested loops would multiply run time
			return i32c(3)
		}
		return cat(e(), e(), call(uint32(int(g.byte())%g.fn)))
	case 7: // f32 arithmetic, back through a saturating truncation
		ops := []byte{0x92, 0x93, 0x94, 0x95, 0x96, 0x97}
		return cat(e(), []byte{0xB2}, e(), []byte{0xB2}, []byte{ops[int(g.byte())%len(ops)]}, []byte{0xFC, 0x00})
	case 8: // f64 sqrt and compare with itself: 0 for a NaN
		return cat(e(), []byte{0xB7, 0x9F}, u32op(0x22, acc+1), u32op(0x20, acc+1), []byte{0x61})
	case 9:
		return cat([]byte{0x02, 0x7F, 0x02, 0x7F}, e(), e(), []byte{0x0E, 2, 0, 1, 0, 0x0B}, i32c(int32(g.byte()&15)), []byte{0x6A, 0x0B})
	case 10:
		return cat(e(), e(), e(), []byte{0x1B})
	default: // f32x4 lanes: add and extract
		return cat(e(), []byte{0xB2, 0xFD, 0x13}, e(), []byte{0xB2, 0xFD, 0x13}, []byte{0xFD, 0xE7, 0x01, 0xFD, 0x1F, 0x00, 0xFC, 0x00})
	}
}

// genModule makes a module of one to four functions (i32, i32) -> i32,
// exported as f0, f1, ...
func genModule(data []byte) mod {
	g := &gen{data: data}
	n := int(g.byte()%4) + 1
	var m mod
	for i := 0; i < n; i++ {
		g.fn = i
		locals := []wasm.ValueType{i32, i32, i32, i32, i32, f64}
		m.funcs = append(m.funcs, fn{
			name: fmt.Sprintf("f%d", i), params: []wasm.ValueType{i32, i32}, results: []wasm.ValueType{i32},
			locals: locals, body: g.expr(0),
		})
	}
	return m
}

type outcome struct {
	res []uint64
	err string
}

func runAll(t *testing.T, bin []byte, n int, args []uint64, metered bool) []outcome {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	if metered {
		b := rt.NewHostModuleBuilder(ImportModule)
		b.NewFunctionBuilder().WithGoModuleFunction(goRefill(unlimited()), i64s, i64s).Export(ImportName)
		if _, err := b.Instantiate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cm, err := rt.CompileModule(ctx, bin)
	if err != nil {
		t.Fatalf("compile (metered %v): %v", metered, err)
	}
	m, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig())
	if err != nil {
		t.Fatal(err)
	}
	var outs []outcome
	for i := 0; i < n; i++ {
		res, err := m.ExportedFunction(fmt.Sprintf("f%d", i)).Call(ctx, args...)
		o := outcome{res: res}
		if err != nil {
			o.err = trapName(err)
		}
		outs = append(outs, o)
	}
	return outs
}

// trapName keeps the first line of a trap: the stack trace below it names
// the refill import in the instrumented module.
func trapName(err error) string {
	s := err.Error()
	for i := range s {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}

func FuzzInstrument(f *testing.F) {
	f.Add([]byte{3, 5, 2, 4, 1, 0, 1, 1, 9, 0, 3, 7, 2, 1, 0, 6, 1, 2}, uint32(3), uint32(9))
	f.Add([]byte{1, 7, 1, 0, 1, 1, 2}, uint32(0), uint32(0))
	f.Add([]byte{2, 11, 0, 0, 0, 1, 8, 1, 1, 6, 0, 1, 0}, uint32(1<<31), uint32(2))
	f.Fuzz(func(t *testing.T, data []byte, a, b uint32) {
		d := genModule(data)
		bin := d.build(t)
		out, err := Instrument(bin, Options{Meter: true, CanonicalNaNs: true})
		if err != nil {
			t.Fatalf("instrument a valid module: %v", err)
		}
		args := []uint64{uint64(a), uint64(b)}
		want := runAll(t, bin, len(d.funcs), args, false)
		got := runAll(t, out, len(d.funcs), args, true)
		for i := range want {
			if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
				t.Fatalf("f%d(%d, %d): instrumented %v, original %v", i, a, b, got[i], want[i])
			}
		}
	})
}

// FuzzInstrumentRaw feeds raw bytes: an error is fine, a panic is not, and
// what comes back decodes again.
func FuzzInstrumentRaw(f *testing.F) {
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))
	f.Add(mod{funcs: []fn{countdown, brTableFn}}.build(f))
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x01\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, opt := range []Options{{}, {Meter: true, CanonicalNaNs: true}} {
			out, err := Instrument(data, opt)
			if err != nil {
				continue
			}
			if _, err := Instrument(out, Options{}); err != nil {
				t.Fatalf("%+v: output does not decode again: %v", opt, err)
			}
		}
	})
}
