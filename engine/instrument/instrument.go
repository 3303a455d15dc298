package instrument

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/tetratelabs/wabin/binary"
	"github.com/tetratelabs/wabin/wasm"
)

// Options selects the rewrites.
type Options struct {
	Meter         bool // per-basic-block charging + checks (needed for deadlines too)
	CanonicalNaNs bool // rewrite NaN results to the canonical NaN
}

const (
	ImportModule = "accelnode_meter"  // module of the one imported function added
	ImportName   = "refill"           // func (fuel i64) -> i64
	FuelExport   = "__accelnode_fuel" // exported mutable i64 global holding remaining fuel
)

// Version names the rewrites; it changes whenever their output changes, so
// that a cache of instrumented modules keys on it.
const Version = "4"

// MaxInput bounds the binaries Instrument reads.
const MaxInput = 1 << 30

// features are WebAssembly 2.0's: what Go, clang/wasi-libc and Rust emit.
const features = wasm.CoreFeaturesV2

// Instrument returns the rewritten binary. It never panics on any input.
func Instrument(bin []byte, opt Options) (out []byte, err error) {
	defer func() {
		// A last resort: the decoder is not ours.
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("instrument: malformed module: %v", p)
		}
	}()
	if len(bin) > MaxInput {
		return nil, fmt.Errorf("instrument: module of %d bytes is over the limit of %d", len(bin), MaxInput)
	}
	if err := preflight(bin); err != nil {
		return nil, fmt.Errorf("instrument: %w", err)
	}
	m, err := binary.DecodeModule(bin, features)
	if err != nil {
		return nil, fmt.Errorf("instrument: decode: %w", err)
	}
	if err := rewrite(m, opt); err != nil {
		return nil, fmt.Errorf("instrument: %w", err)
	}
	return encode(m)
}

func rewrite(m *wasm.Module, opt Options) error {
	var nFuncImports, nGlobalImports uint32
	for _, im := range m.ImportSection {
		switch im.Type {
		case wasm.ExternTypeFunc:
			nFuncImports++
		case wasm.ExternTypeGlobal:
			nGlobalImports++
		}
	}
	c := funcCtx{meter: opt.Meter, nans: opt.CanonicalNaNs, shiftFrom: nFuncImports}
	if opt.Meter {
		if err := addMeter(m, &c, nFuncImports, nGlobalImports); err != nil {
			return err
		}
	}
	if opt.Meter || opt.CanonicalNaNs {
		size := 0
		for _, code := range m.CodeSection {
			size += len(code.Body)
		}
		w := rewriter{c: c, arena: make([]byte, 0, size+size/4+1024)}
		for i, code := range m.CodeSection {
			fi := uint32(i)
			if int(m.FunctionSection[i]) >= len(m.TypeSection) {
				return fmt.Errorf("function %d: type %d out of range", fi+nFuncImports, m.FunctionSection[i])
			}
			params := len(m.TypeSection[m.FunctionSection[i]].Params)
			if params+len(code.LocalTypes) > maxLocals {
				return fmt.Errorf("function %d: too many locals", fi+nFuncImports)
			}
			w.c.firstLocal = uint32(params + len(code.LocalTypes))
			body, scratch, err := w.body(code.Body)
			if err != nil {
				return fmt.Errorf("function %d: %w", fi+nFuncImports, err)
			}
			code.Body = body
			code.LocalTypes = append(code.LocalTypes, scratch...)
		}
		dropDebugSections(m)
	}
	return nil
}

// addMeter adds the fuel global, its export and the refill import, and moves
// every reference to a defined function up by one.
func addMeter(m *wasm.Module, c *funcCtx, nFuncImports, nGlobalImports uint32) error {
	for _, im := range m.ImportSection {
		if im.Module == ImportModule {
			return fmt.Errorf("module already imports from %q", ImportModule)
		}
		if im.Name == FuelExport {
			return fmt.Errorf("module already imports %q", FuelExport)
		}
	}
	for _, ex := range m.ExportSection {
		if ex.Name == FuelExport {
			return fmt.Errorf("module already exports %q", FuelExport)
		}
	}
	if uint64(len(m.FunctionSection))+uint64(nFuncImports) >= 1<<32-1 {
		return errors.New("too many functions")
	}

	// The refill type, shared with an existing (i64) -> (i64) if there is one.
	ti := -1
	for i, t := range m.TypeSection {
		if t.EqualsSignature([]wasm.ValueType{wasm.ValueTypeI64}, []wasm.ValueType{wasm.ValueTypeI64}) {
			ti = i
			break
		}
	}
	if ti < 0 {
		ti = len(m.TypeSection)
		m.TypeSection = append(m.TypeSection, &wasm.FunctionType{
			Params: []wasm.ValueType{wasm.ValueTypeI64}, Results: []wasm.ValueType{wasm.ValueTypeI64},
		})
	}

	from := nFuncImports
	for _, ex := range m.ExportSection {
		if ex.Type == wasm.ExternTypeFunc {
			ex.Index = shift(ex.Index, from)
		}
	}
	if m.StartSection != nil {
		s := shift(*m.StartSection, from)
		m.StartSection = &s
	}
	for _, seg := range m.ElementSection {
		for _, idx := range seg.Init {
			if idx != nil {
				*idx = shift(*idx, from)
			}
		}
	}
	for _, g := range m.GlobalSection {
		if g.Init != nil && g.Init.Opcode == wasm.OpcodeRefFunc {
			r := reader{b: g.Init.Data}
			idx, err := r.u32()
			if err != nil {
				return fmt.Errorf("global initialiser: ref.func: %w", err)
			}
			g.Init.Data = appendU32(nil, shift(idx, from))
		}
	}
	if n := m.NameSection; n != nil {
		for _, a := range n.FunctionNames {
			a.Index = shift(a.Index, from)
		}
		for _, a := range n.LocalNames {
			a.Index = shift(a.Index, from)
		}
		n.FunctionNames = append(n.FunctionNames, &wasm.NameAssoc{Index: from, Name: ImportModule + "." + ImportName})
		sort.SliceStable(n.FunctionNames, func(i, j int) bool { return n.FunctionNames[i].Index < n.FunctionNames[j].Index })
	}

	m.ImportSection = append(m.ImportSection, &wasm.Import{
		Type: wasm.ExternTypeFunc, Module: ImportModule, Name: ImportName, DescFunc: uint32(ti),
	})
	fuel := nGlobalImports + uint32(len(m.GlobalSection))
	m.GlobalSection = append(m.GlobalSection, &wasm.Global{
		Type: &wasm.GlobalType{ValType: wasm.ValueTypeI64, Mutable: true},
		Init: &wasm.ConstantExpression{Opcode: wasm.OpcodeI64Const, Data: []byte{0}},
	})
	m.ExportSection = append(m.ExportSection, &wasm.Export{Type: wasm.ExternTypeGlobal, Name: FuelExport, Index: fuel})
	c.fuel, c.refill = fuel, from
	return nil
}

// dropDebugSections drops custom sections that point into function bodies
// by byte offset (DWARF, source maps): they are wrong once bodies change.
// The name section stays, re-indexed; other custom sections stay as they are.
func dropDebugSections(m *wasm.Module) {
	kept := m.CustomSections[:0]
	for _, s := range m.CustomSections {
		if strings.HasPrefix(s.Name, ".debug") || s.Name == "sourceMappingURL" || s.Name == "external_debug_info" {
			continue
		}
		kept = append(kept, s)
	}
	m.CustomSections = kept
}
