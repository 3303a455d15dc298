package engine

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tetratelabs/wazero/api"
)

// GlobalPrefix begins the names under which CompileReactor exports a
// reactor's mutable globals, numbered by global index, so that a snapshot
// can read and restore them: wazero reaches only exported globals, and a
// guest's most important ones (Go's and LLVM's stack pointer) are not.
// A module that already exports a name with this prefix is refused.
const GlobalPrefix = "__accelnode_global_"

// reactorBinary is what CompileReactor learns from, and makes of, a
// binary.
type reactorBinary struct {
	bin     []byte   // the binary with every mutable global exported
	globals []global // the mutable globals, in index order
}

// global is a mutable global a reactor's snapshot holds.
type global struct {
	name string // its export name, GlobalPrefix + index
	typ  api.ValueType
}

// section is one section of a binary: its id and where its header and
// payload lie.
type section struct {
	id         byte
	start, off int // start of the header, and of the payload
	end        int
}

func sections(bin []byte) ([]section, error) {
	if len(bin) < 8 || string(bin[:4]) != "\x00asm" {
		return nil, errors.New("not a WebAssembly binary")
	}
	r := &reader{b: bin, off: 8}
	var out []section
	for r.off < len(r.b) {
		start := r.off
		id := r.byte()
		size := r.u32()
		if r.err != nil {
			return nil, r.err
		}
		end := r.off + int(size)
		if end > len(r.b) || end < r.off {
			return nil, fmt.Errorf("section %d runs past the end", id)
		}
		out = append(out, section{id: id, start: start, off: r.off, end: end})
		r.off = end
	}
	return out, nil
}

// Section ids, and the order in which the non-custom ones must appear.
const (
	secImport = 2
	secGlobal = 6
	secExport = 7
	secCode   = 10
)

var sectionOrder = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

// prepareReactor checks that bin can run as a reactor whose state a
// snapshot captures, and returns it with every mutable global exported. It
// refuses a command (one that exports _start), a module that uses
// GlobalPrefix, a mutable global a snapshot cannot hold (a v128 or a
// reference), and code that changes a table at run time, since tables are
// not in a snapshot.
func prepareReactor(bin []byte) (*reactorBinary, error) {
	secs, err := sections(bin)
	if err != nil {
		return nil, newError(ErrMalformedModule, err, "invalid guest module")
	}
	var (
		importedGlobals uint32
		globals         []global
		exportSec       = -1
	)
	for i, s := range secs {
		r := &reader{b: bin[:s.end], off: s.off}
		switch s.id {
		case secImport:
			importedGlobals, err = countImportedGlobals(r)
		case secGlobal:
			globals, err = mutableGlobals(r, importedGlobals)
		case secExport:
			exportSec = i
			err = checkExports(r)
		case secCode:
			err = checkCode(r)
		}
		if err != nil {
			var run *runError
			if errors.As(err, &run) {
				return nil, err
			}
			return nil, newError(ErrMalformedModule, err, "invalid guest module")
		}
	}

	// The exports of the globals go at the end of the export section, or
	// in a new one where the section order puts it.
	var entries []byte
	for _, g := range globals {
		idx, _ := strconv.ParseUint(strings.TrimPrefix(g.name, GlobalPrefix), 10, 32)
		entries = appendName(entries, g.name)
		entries = append(entries, 0x03) // global
		entries = appendU32(entries, uint32(idx))
	}
	if len(globals) == 0 {
		return &reactorBinary{bin: bin}, nil
	}
	out := make([]byte, 0, len(bin)+len(entries)+16)
	if exportSec >= 0 {
		s := secs[exportSec]
		r := &reader{b: bin[:s.end], off: s.off}
		n := r.u32()
		payload := appendU32(nil, n+uint32(len(globals)))
		payload = append(payload, bin[r.off:s.end]...)
		payload = append(payload, entries...)
		out = append(out, bin[:s.start]...)
		out = appendSection(out, secExport, payload)
		out = append(out, bin[s.end:]...)
	} else {
		at := len(bin)
		for _, s := range secs {
			if o, ok := sectionOrder[s.id]; ok && o > sectionOrder[secExport] {
				at = s.start
				break
			}
		}
		payload := append(appendU32(nil, uint32(len(globals))), entries...)
		out = append(out, bin[:at]...)
		out = appendSection(out, secExport, payload)
		out = append(out, bin[at:]...)
	}
	return &reactorBinary{bin: out, globals: globals}, nil
}

func countImportedGlobals(r *reader) (uint32, error) {
	var globals uint32
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.name()
		r.name()
		switch kind := r.byte(); kind {
		case 0x00: // function
			r.u32()
		case 0x01: // table
			r.byte()
			r.limits()
		case 0x02: // memory
			r.limits()
		case 0x03: // global
			r.byte()
			r.byte()
			globals++
		case 0x04: // tag
			r.byte()
			r.u32()
		default:
			return 0, fmt.Errorf("unknown import kind %#x", kind)
		}
	}
	return globals, r.err
}

// mutableGlobals lists the mutable globals the global section defines.
func mutableGlobals(r *reader, first uint32) ([]global, error) {
	var out []global
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		typ, mut := r.byte(), r.byte()
		if err := skipExpr(r); err != nil {
			return nil, err
		}
		if mut == 0 {
			continue // rebuilt by instantiation
		}
		switch typ {
		case api.ValueTypeI32, api.ValueTypeI64, api.ValueTypeF32, api.ValueTypeF64:
		default:
			return nil, newError(ErrNotReactor, nil, "mutable global %d has type %#x, which a snapshot cannot hold", first+i, typ)
		}
		out = append(out, global{name: GlobalPrefix + strconv.FormatUint(uint64(first+i), 10), typ: typ})
	}
	return out, r.err
}

func checkExports(r *reader) error {
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		name := r.str()
		r.byte()
		r.u32()
		switch {
		case r.err != nil:
		case name == "_start":
			return newError(ErrNotReactor, nil, "guest exports _start: it is a command, not a reactor (build a Go guest with -buildmode=c-shared)")
		case strings.HasPrefix(name, GlobalPrefix):
			return newError(ErrNotReactor, nil, "guest exports %q, a name reserved for the node", name)
		}
	}
	return r.err
}

// checkCode refuses function bodies that change a table: table.set,
// table.grow, table.fill, table.copy, table.init or elem.drop.
func checkCode(r *reader) error {
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		size := r.u32()
		end := r.off + int(size)
		if r.err != nil || end > len(r.b) || end < r.off {
			return errors.New("function body runs past the end")
		}
		body := &reader{b: r.b[:end], off: r.off}
		locals := body.u32()
		for j := uint32(0); j < locals && body.err == nil; j++ {
			body.u32()
			skipValType(body)
		}
		for body.off < end && body.err == nil {
			if op := instruction(body); op != "" {
				return newError(ErrNotReactor, nil, "function %d uses %s: tables changed at run time are not kept in a snapshot", i, op)
			}
		}
		if body.err != nil {
			return body.err
		}
		r.off = end
	}
	return r.err
}

// skipExpr skips a constant expression up to its end.
func skipExpr(r *reader) error {
	for r.err == nil {
		if r.off < len(r.b) && r.b[r.off] == 0x0b {
			r.off++
			return nil
		}
		instruction(r)
	}
	return r.err
}

func skipValType(r *reader) {
	switch r.byte() {
	case 0x63, 0x64: // (ref null? ht) of the GC proposal
		r.s64()
	}
}

func skipBlockType(r *reader) {
	if r.off >= len(r.b) {
		r.fail()
		return
	}
	switch c := r.b[r.off]; {
	case c == 0x40 || c >= 0x6f && c <= 0x7f: // empty or a value type
		r.off++
	default: // a type index, as a signed LEB128
		r.s64()
	}
}

func skipMemArg(r *reader) {
	if align := r.u32(); align&0x40 != 0 {
		r.u32() // memory index
	}
	r.u64() // offset
}

// instruction skips one instruction and returns its name if it changes a
// table, or "" otherwise.
func instruction(r *reader) string {
	op := r.byte()
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if
		skipBlockType(r)
	case op == 0x0c || op == 0x0d: // br, br_if
		r.u32()
	case op == 0x0e: // br_table
		n := r.u32()
		for i := uint32(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == 0x10 || op == 0x12: // call, return_call
		r.u32()
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
		r.u32()
		r.u32()
	case op == 0x1c: // select with types
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			skipValType(r)
		}
	case op >= 0x20 && op <= 0x24: // local.*, global.*
		r.u32()
	case op == 0x25: // table.get
		r.u32()
	case op == 0x26:
		r.u32()
		return "table.set"
	case op >= 0x28 && op <= 0x3e: // loads and stores
		skipMemArg(r)
	case op == 0x3f || op == 0x40: // memory.size, memory.grow
		r.u32()
	case op == 0x41 || op == 0x42: // i32.const, i64.const
		r.s64()
	case op == 0x43:
		r.skip(4)
	case op == 0x44:
		r.skip(8)
	case op == 0xd0: // ref.null
		skipValType(r)
	case op == 0xd2: // ref.func
		r.u32()
	case op == 0xfc:
		return miscInstruction(r)
	case op == 0xfd:
		simdInstruction(r)
	case op == 0xfe: // atomics: a memory argument, but atomic.fence a zero byte
		if r.u32() == 0x03 {
			r.byte()
		} else {
			skipMemArg(r)
		}
	}
	// Everything else (control without immediates, numeric operators,
	// ref.is_null) has none.
	return ""
}

func miscInstruction(r *reader) string {
	switch sub := r.u32(); sub {
	case 8: // memory.init
		r.u32()
		r.u32()
	case 9: // data.drop
		r.u32()
	case 10: // memory.copy
		r.u32()
		r.u32()
	case 11: // memory.fill
		r.u32()
	case 12:
		r.u32()
		r.u32()
		return "table.init"
	case 13:
		r.u32()
		return "elem.drop"
	case 14:
		r.u32()
		r.u32()
		return "table.copy"
	case 15:
		r.u32()
		return "table.grow"
	case 16: // table.size
		r.u32()
	case 17:
		r.u32()
		return "table.fill"
	}
	return "" // 0 to 7: saturating truncations
}

func simdInstruction(r *reader) {
	switch sub := r.u32(); {
	case sub <= 11 || sub == 92 || sub == 93: // loads and stores
		skipMemArg(r)
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		r.skip(16)
	case sub >= 21 && sub <= 34: // extract and replace lane
		r.byte()
	case sub >= 84 && sub <= 91: // load and store lane
		skipMemArg(r)
		r.byte()
	}
}

func (r *reader) skip(n int) {
	if n > len(r.b)-r.off {
		r.fail()
		return
	}
	r.off += n
}

// s64 reads a signed LEB128 number's bytes; only its length matters here.
func (r *reader) s64() {
	for i := 0; i < 10; i++ {
		if c := r.byte(); r.err != nil || c&0x80 == 0 {
			return
		}
	}
	r.err = errors.New("number too long")
}

func (r *reader) str() string {
	n := r.u32()
	if r.err != nil || uint64(n) > uint64(len(r.b)-r.off) {
		r.fail()
		return ""
	}
	s := string(r.b[r.off : r.off+int(n)])
	r.off += int(n)
	return s
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendName(b []byte, s string) []byte {
	return append(appendU32(b, uint32(len(s))), s...)
}

func appendSection(b []byte, id byte, payload []byte) []byte {
	b = append(b, id)
	b = appendU32(b, uint32(len(payload)))
	return append(b, payload...)
}
