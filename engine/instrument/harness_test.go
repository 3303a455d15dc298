package instrument

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/tetratelabs/wabin/binary"
	"github.com/tetratelabs/wabin/wasm"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Value types, short.
const (
	i32  = wasm.ValueTypeI32
	i64  = wasm.ValueTypeI64
	f32  = wasm.ValueTypeF32
	f64  = wasm.ValueTypeF64
	v128 = wasm.ValueTypeV128
)

// fn is one defined function of a test module.
type fn struct {
	name    string // exported under this name if not empty
	params  []wasm.ValueType
	results []wasm.ValueType
	locals  []wasm.ValueType
	body    []byte // without the final end
}

// mod is a test module: imports come first in the function index space.
type mod struct {
	imports []hostFn
	funcs   []fn
	types   []*wasm.FunctionType // extra types, for block types and call_indirect
	table   []uint32             // function indices placed in table 0 from 0
	start   *uint32
	globals []*wasm.Global
	memory  bool
}

type hostFn struct {
	module, name    string
	params, results []wasm.ValueType
}

func typeIndex(m *wasm.Module, params, results []wasm.ValueType) uint32 {
	for i, t := range m.TypeSection {
		if t.EqualsSignature(params, results) {
			return uint32(i)
		}
	}
	m.TypeSection = append(m.TypeSection, &wasm.FunctionType{Params: params, Results: results})
	return uint32(len(m.TypeSection) - 1)
}

// build encodes the module with the package's own encoder.
func (d mod) build(t testing.TB) []byte {
	t.Helper()
	m := &wasm.Module{TypeSection: append([]*wasm.FunctionType(nil), d.types...)}
	for _, h := range d.imports {
		m.ImportSection = append(m.ImportSection, &wasm.Import{
			Type: wasm.ExternTypeFunc, Module: h.module, Name: h.name, DescFunc: typeIndex(m, h.params, h.results),
		})
	}
	for i, f := range d.funcs {
		m.FunctionSection = append(m.FunctionSection, typeIndex(m, f.params, f.results))
		m.CodeSection = append(m.CodeSection, &wasm.Code{LocalTypes: f.locals, Body: append(append([]byte(nil), f.body...), 0x0B)})
		if f.name != "" {
			m.ExportSection = append(m.ExportSection, &wasm.Export{Type: wasm.ExternTypeFunc, Name: f.name, Index: uint32(len(d.imports) + i)})
		}
	}
	if len(d.table) > 0 {
		n := uint32(len(d.table))
		m.TableSection = []*wasm.Table{{Min: n, Max: &n, Type: wasm.RefTypeFuncref}}
		var init []*wasm.Index
		for _, x := range d.table {
			x := x
			init = append(init, &x)
		}
		m.ElementSection = []*wasm.ElementSegment{{
			OffsetExpr: &wasm.ConstantExpression{Opcode: wasm.OpcodeI32Const, Data: []byte{0}},
			Init:       init, Type: wasm.RefTypeFuncref, Mode: wasm.ElementModeActive,
		}}
	}
	if d.memory {
		m.MemorySection = &wasm.Memory{Min: 1, Max: 1, IsMaxEncoded: true}
	}
	m.StartSection = d.start
	m.GlobalSection = d.globals
	out, err := encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Body helpers.
func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func i32c(v int32) []byte { return appendS64([]byte{0x41}, int64(v)) }
func i64c(v int64) []byte { return appendS64([]byte{0x42}, v) }
func f32c(bits uint32) []byte {
	return []byte{0x43, byte(bits), byte(bits >> 8), byte(bits >> 16), byte(bits >> 24)}
}
func f64c(bits uint64) []byte {
	b := []byte{0x44}
	for i := 0; i < 8; i++ {
		b = append(b, byte(bits>>(8*i)))
	}
	return b
}
func u32op(op byte, v uint32) []byte { return appendU32([]byte{op}, v) }
func localGet(i uint32) []byte       { return u32op(0x20, i) }
func call(i uint32) []byte           { return u32op(0x10, i) }

var errBudget = errors.New("budget exhausted")

// meterHost is the refill side of the protocol, counting exactly: it grants
// at most chunk fuel at a time and never more than the budget.
type meterHost struct {
	budget, chunk int64
	granted       int64 // total fuel handed out; used = granted - fuel
	refills       int
}

func (h *meterHost) refill(_ context.Context, _ api.Module, stack []uint64) {
	fuel := int64(stack[0])
	used := h.granted - fuel
	h.refills++
	if used > h.budget {
		panic(fmt.Errorf("%w: %d used of %d", errBudget, used, h.budget))
	}
	grant := min(h.chunk, h.budget-used)
	h.granted = used + grant
	stack[0] = uint64(grant)
}

// instance is an instantiated test module with its meter.
type instance struct {
	mod  api.Module
	host *meterHost
	rt   wazero.Runtime
}

// used is the exact count so far: the fuel granted less the fuel left.
func (in *instance) used() int64 {
	g := in.mod.ExportedGlobal(FuelExport)
	return in.host.granted - int64(g.Get())
}

func instantiate(t testing.TB, bin []byte, host *meterHost, hosts ...hostFn) (*instance, error) {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	b := rt.NewHostModuleBuilder(ImportModule)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(host.refill), []api.ValueType{api.ValueTypeI64}, []api.ValueType{api.ValueTypeI64}).Export(ImportName)
	if _, err := b.Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		hb := rt.NewHostModuleBuilder(h.module)
		hb.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, s []uint64) {
			s[0] = uint64(uint32(s[0]) + 1)
		}), h.params, h.results).Export(h.name)
		if _, err := hb.Instantiate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cm, err := rt.CompileModule(ctx, bin)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	m, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("guest"))
	return &instance{mod: m, host: host, rt: rt}, err
}

func unlimited() *meterHost { return &meterHost{budget: math.MaxInt64 / 2, chunk: 1 << 40} }

var i64s = []api.ValueType{api.ValueTypeI64}

func goRefill(h *meterHost) api.GoModuleFunc { return h.refill }

func decodeForTest(bin []byte) (*wasm.Module, error) { return binary.DecodeModule(bin, features) }
