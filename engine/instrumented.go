package engine

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/accelnode/accelnode/engine/instrument"
)

// instantiateMeter defines the host function instrumented guests import
// (instrument.ImportModule, instrument.ImportName): the crossing where the
// meter settles the guest's fuel, checks its deadline and budget, and
// grants the next chunk. A host function stops the guest by panicking;
// wazero turns the panic into the error of the guest's call.
func instantiateMeter(ctx context.Context, rt wazero.Runtime) error {
	refill := api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
		m := meterFrom(ctx)
		if m == nil {
			panic(errors.New("guest fuel ran out outside an invocation"))
		}
		g, err := m.refill(ctx, int64(stack[0]))
		if err != nil {
			panic(err)
		}
		stack[0] = uint64(g)
	})
	_, err := rt.NewHostModuleBuilder(instrument.ImportModule).
		NewFunctionBuilder().
		WithGoModuleFunction(refill, []api.ValueType{api.ValueTypeI64}, []api.ValueType{api.ValueTypeI64}).
		WithParameterNames("fuel").
		Export(instrument.ImportName).
		Instantiate(ctx)
	if err != nil {
		return fmt.Errorf("instantiate %s: %w", instrument.ImportModule, err)
	}
	return nil
}

// bindFuel attaches the invocation's meter in ctx to mod's fuel global, if
// mod is instrumented, before any of its code runs.
func bindFuel(ctx context.Context, mod api.Module) {
	m := meterFrom(ctx)
	if m == nil {
		return
	}
	if g := mod.ExportedGlobal(instrument.FuelExport); g != nil {
		m.bind(g)
	}
}

// finish settles what the guest spent after its last crossing into the
// host, and marks the budget exhausted if that took it over: the guest's
// last straight-line instructions count as much as any.
func (m *meter) finish() {
	used := m.settle()
	if m.chargeGuest {
		m.over(used)
	}
}

// instrument rewrites a guest's binary with the engine's instrumentation.
// With a cache directory the result is kept there, named by the original's
// key, the options and the rewrite's version, so that a later process
// loads it instead of rewriting again. A kept file starts with the CRC-32C
// of the rest, as wazero checks the compiled code it keeps beside it; one
// that does not match is rewritten. (CRC, not a cryptographic hash: it
// guards against damage, as wazero's own does, and the CPU computes it
// far faster than SHA-256 on every cached start.)
func (e *Engine) instrument(key string, wasm []byte) ([]byte, error) {
	var path string
	if e.instrDir != "" {
		sum := sha256.Sum256([]byte(fmt.Sprintf("%s|%s|meter=%t|nans=%t|%d", key, instrument.Version, e.instr.Meter, e.instr.CanonicalNaNs, len(wasm))))
		path = filepath.Join(e.instrDir, hex.EncodeToString(sum[:16])+".wasm")
		if b, err := os.ReadFile(path); err == nil && len(b) > 4 {
			if binary.LittleEndian.Uint32(b) == crc32.Checksum(b[4:], castagnoli) {
				return b[4:], nil
			}
		}
	}
	var out []byte
	err := safely(func() (err error) {
		out, err = instrument.Instrument(wasm, *e.instr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("instrument guest: %w", err)
	}
	if path != "" {
		// A failure to keep it costs only a rewrite next time.
		_ = writeFileAtomic(path, append(binary.LittleEndian.AppendUint32(nil, crc32.Checksum(out, castagnoli)), out...))
	}
	return out, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// writeFileAtomic writes b to path through a temporary file in its
// directory, so that a reader never sees half a file.
func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
