package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
)

// wasmModule assembles a module from sections given as (id, payload).
func wasmModule(secs ...[]byte) []byte {
	bin := []byte("\x00asm\x01\x00\x00\x00")
	for _, s := range secs {
		bin = appendSection(bin, s[0], s[1:])
	}
	return bin
}

func sec(id byte, payload ...byte) []byte { return append([]byte{id}, payload...) }

// code is a code section of one function without locals.
func code(instrs ...byte) []byte {
	body := append([]byte{0x00}, instrs...)
	body = append(body, 0x0b)
	return sec(10, append(append([]byte{0x01}, appendU32(nil, uint32(len(body)))...), body...)...)
}

var (
	typeVoid   = sec(1, 0x01, 0x60, 0x00, 0x00)
	oneFunc    = sec(3, 0x01, 0x00)
	mutI32     = sec(6, 0x01, 0x7f, 0x01, 0x41, 0x05, 0x0b) // (global (mut i32) (i32.const 5))
	table      = sec(4, 0x01, 0x70, 0x00, 0x01)             // (table 1 funcref)
	memory     = sec(5, 0x01, 0x00, 0x01)                   // (memory 1)
	exportFunc = func(name string) []byte {
		return sec(7, append(appendName([]byte{0x01}, name), 0x00, 0x00)...)
	}
)

func TestPrepareReactor(t *testing.T) {
	tests := []struct {
		name    string
		bin     []byte
		globals []string // the names of the exported globals
		wantErr error
		errText string
	}{
		{name: "global without export section", bin: wasmModule(typeVoid, oneFunc, mutI32, code()),
			globals: []string{"__accelnode_global_0"}},
		{name: "global beside exports", bin: wasmModule(typeVoid, oneFunc, mutI32, exportFunc("run"), code()),
			globals: []string{"__accelnode_global_0"}},
		{name: "immutable global left alone", bin: wasmModule(typeVoid, oneFunc, sec(6, 0x01, 0x7e, 0x00, 0x42, 0x01, 0x0b), code())},
		{name: "imported global shifts the index", bin: wasmModule(typeVoid,
			sec(2, 0x01, 0x03, 'e', 'n', 'v', 0x01, 'g', 0x03, 0x7f, 0x00), oneFunc, mutI32, code()),
			globals: []string{"__accelnode_global_1"}},
		{name: "memory.fill is fine", bin: wasmModule(typeVoid, oneFunc, memory, code(0x41, 0x00, 0x41, 0x00, 0x41, 0x00, 0xfc, 0x0b, 0x00))},
		{name: "simd constant that looks like table.set", bin: wasmModule(typeVoid, oneFunc,
			code(append(append([]byte{0xfd, 0x0c}, []byte(strings.Repeat("\x26", 16))...), 0x1a)...))},
		{name: "table.get is fine", bin: wasmModule(typeVoid, oneFunc, table, code(0x41, 0x00, 0x25, 0x00, 0x1a))},
		{name: "command", bin: wasmModule(typeVoid, oneFunc, exportFunc("_start"), code()),
			wantErr: ErrNotReactor, errText: "_start"},
		{name: "reserved name", bin: wasmModule(typeVoid, oneFunc, exportFunc("__accelnode_global_7"), code()),
			wantErr: ErrNotReactor, errText: "reserved"},
		{name: "table.set", bin: wasmModule(typeVoid, oneFunc, table, code(0x41, 0x00, 0xd0, 0x70, 0x26, 0x00)),
			wantErr: ErrNotReactor, errText: "table.set"},
		{name: "table.grow", bin: wasmModule(typeVoid, oneFunc, table, code(0xd0, 0x70, 0x41, 0x01, 0xfc, 0x0f, 0x00, 0x1a)),
			wantErr: ErrNotReactor, errText: "table.grow"},
		{name: "table.fill", bin: wasmModule(typeVoid, oneFunc, table, code(0x41, 0x00, 0xd0, 0x70, 0x41, 0x01, 0xfc, 0x11, 0x00)),
			wantErr: ErrNotReactor, errText: "table.fill"},
		{name: "mutable v128 global", bin: wasmModule(typeVoid, oneFunc,
			sec(6, append(append([]byte{0x01, 0x7b, 0x01, 0xfd, 0x0c}, make([]byte, 16)...), 0x0b)...), code()),
			wantErr: ErrNotReactor, errText: "snapshot cannot hold"},
		{name: "truncated", bin: wasmModule(typeVoid, oneFunc, code())[:20], wantErr: ErrMalformedModule},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rb, err := prepareReactor(tt.bin)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("err = %v, want %v mentioning %q", err, tt.wantErr, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, g := range rb.globals {
				names = append(names, g.name)
			}
			if strings.Join(names, ",") != strings.Join(tt.globals, ",") {
				t.Errorf("globals %v, want %v", names, tt.globals)
			}
			ctx := context.Background()
			rt := wazero.NewRuntime(ctx)
			defer rt.Close(ctx)
			if _, err := rt.CompileModule(ctx, rb.bin); err != nil {
				t.Fatalf("rewritten module does not compile: %v", err)
			}
		})
	}
}

// The rewritten global is the module's own: reading the export reads it.
func TestPrepareReactorExportsTheGlobal(t *testing.T) {
	rb, err := prepareReactor(wasmModule(typeVoid, oneFunc, mutI32, exportFunc("run"), code(0x41, 0x09, 0x24, 0x00)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	mod, err := rt.InstantiateWithConfig(ctx, rb.bin, wazero.NewModuleConfig())
	if err != nil {
		t.Fatal(err)
	}
	g := mod.ExportedGlobal("__accelnode_global_0")
	if g == nil || g.Get() != 5 {
		t.Fatalf("global before run = %v", g)
	}
	if _, err := mod.ExportedFunction("run").Call(ctx); err != nil {
		t.Fatal(err)
	}
	if g.Get() != 9 {
		t.Errorf("global after run = %d, want 9", g.Get())
	}
}
