package instrument

import (
	"context"
	"math"
	"runtime"
	"testing"

	"github.com/tetratelabs/wabin/wasm"
)

const (
	canon32   = 0x7fc00000
	canon64   = 0x7ff8000000000000
	payload32 = 0x7fa00001 // a signalling NaN with a payload
	payload64 = 0x7ff4000000000001
	inf32     = 0x7f800000
	inf64     = 0x7ff0000000000000
	negOne32  = 0xbf800000
	negOne64  = 0xbff0000000000000
)

func TestCanonicalNaNs(t *testing.T) {
	r32 := []wasm.ValueType{f32}
	r64 := []wasm.ValueType{f64}
	rv := []wasm.ValueType{v128}
	simd := func(sub uint32) []byte { return appendU32([]byte{0xFD}, sub) }
	v128c := func(lanes ...uint32) []byte {
		b := []byte{0xFD, 0x0C}
		for _, l := range lanes {
			b = append(b, byte(l), byte(l>>8), byte(l>>16), byte(l>>24))
		}
		return b
	}
	tests := []struct {
		name    string
		results []wasm.ValueType
		body    []byte
		want    []uint64 // with CanonicalNaNs
		keeps   bool     // bit-moving: the result is the same without the rewrite
	}{
		{"f32 0/0", r32, cat(f32c(0), f32c(0), []byte{0x95}), []uint64{canon32}, false},
		{"f64 0/0", r64, cat(f64c(0), f64c(0), []byte{0xA3}), []uint64{canon64}, false},
		{"f64 inf-inf", r64, cat(f64c(inf64), f64c(inf64), []byte{0xA1}), []uint64{canon64}, false},
		{"f32 inf*0", r32, cat(f32c(inf32), f32c(0), []byte{0x94}), []uint64{canon32}, false},
		{"f32 sqrt(-1)", r32, cat(f32c(negOne32), []byte{0x91}), []uint64{canon32}, false},
		{"f64 sqrt(-1)", r64, cat(f64c(negOne64), []byte{0x9F}), []uint64{canon64}, false},
		{"f32 payload+1", r32, cat(f32c(payload32), f32c(0x3f800000), []byte{0x92}), []uint64{canon32}, false},
		{"f64 payload+1", r64, cat(f64c(payload64), f64c(0x3ff0000000000000), []byte{0xA0}), []uint64{canon64}, false},
		{"f32 min payload", r32, cat(f32c(payload32), f32c(0), []byte{0x96}), []uint64{canon32}, false},
		{"f64 max payload", r64, cat(f64c(0), f64c(payload64|1<<63), []byte{0xA5}), []uint64{canon64}, false},
		{"f32 ceil payload", r32, cat(f32c(payload32), []byte{0x8D}), []uint64{canon32}, false},
		{"f32 demote payload", r32, cat(f64c(payload64), []byte{0xB6}), []uint64{canon32}, false},
		{"f64 promote payload", r64, cat(f32c(payload32), []byte{0xBB}), []uint64{canon64}, false},
		{"f32 add no nan", r32, cat(f32c(0x3f800000), f32c(0x40000000), []byte{0x92}), []uint64{0x40400000}, true},
		{"f32 neg keeps payload", r32, cat(f32c(payload32), []byte{0x8C}), []uint64{payload32 | 1<<31}, true},
		{"f32 abs keeps payload", r32, cat(f32c(payload32|1<<31), []byte{0x8B}), []uint64{payload32}, true},
		{"f64 copysign keeps payload", r64, cat(f64c(payload64), f64c(negOne64), []byte{0xA6}), []uint64{payload64 | 1<<63}, true},
		{"f32 reinterpret keeps payload", r32, cat(i32c(int32(payload32)), []byte{0xBE}), []uint64{payload32}, true},
		// Lanes 0/0, 1/1, 0/1, inf/inf.
		{"f32x4 0/0 lanes", rv, cat(v128c(0, 0x3f800000, 0, inf32), v128c(0, 0x3f800000, 0x3f800000, inf32), simd(0xE7)),
			[]uint64{canon32 | 0x3f800000<<32, canon32 << 32}, false},
		{"f64x2 sqrt lanes", rv, cat(v128c(0, negOne64>>32, 0, 0x40100000), simd(0xEF)),
			[]uint64{canon64, 0x4000000000000000}, false},
		{"f32x4 neg keeps payload", rv, cat(v128c(payload32, 0, 0, 0), simd(0xE1)),
			[]uint64{payload32 | 1<<31 | 1<<63, 1<<31 | 1<<63}, true},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bin := mod{funcs: []fn{{name: "f", results: tc.results, body: tc.body}}}.build(t)
			for _, opt := range []Options{{CanonicalNaNs: true}, {CanonicalNaNs: true, Meter: true}, {}} {
				out, err := Instrument(bin, opt)
				if err != nil {
					t.Fatal(err)
				}
				in, err := instantiate(t, out, unlimited())
				if err != nil {
					t.Fatal(err)
				}
				got, err := in.mod.ExportedFunction("f").Call(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if opt.CanonicalNaNs || tc.keeps {
					for i := range tc.want {
						if got[i] != tc.want[i] {
							t.Errorf("%+v: result %d = %#x, want %#x", opt, i, got[i], tc.want[i])
						}
					}
					continue
				}
				// Without the rewrite: whatever the machine gives, still a NaN.
				if len(got) == 1 && !isNaN(got[0], tc.results[0]) {
					t.Errorf("%+v: %#x is not a NaN", opt, got[0])
				}
				if tc.name == "f32 0/0" && runtime.GOARCH == "amd64" && got[0] != 0xffc00000 {
					t.Errorf("amd64 0/0 = %#x, want the machine's 0xffc00000", got[0])
				}
			}
		})
	}
}

func isNaN(bits uint64, t wasm.ValueType) bool {
	if t == f32 {
		return math.IsNaN(float64(math.Float32frombits(uint32(bits))))
	}
	return math.IsNaN(math.Float64frombits(bits))
}

// The rewrite adds scratch locals after the function's own and leaves the
// count the same: it is not charged.
func TestCanonicalNaNsNotCharged(t *testing.T) {
	body := cat(localGet(0), localGet(1), []byte{0x95}, u32op(0x21, 2), localGet(2), localGet(2), []byte{0x92})
	bin := mod{funcs: []fn{{name: "f", params: []wasm.ValueType{f32, f32}, locals: []wasm.ValueType{f32}, results: []wasm.ValueType{f32}, body: body}}}.build(t)
	for _, opt := range []Options{{Meter: true}, {Meter: true, CanonicalNaNs: true}} {
		out, err := Instrument(bin, opt)
		if err != nil {
			t.Fatal(err)
		}
		in, err := instantiate(t, out, unlimited())
		if err != nil {
			t.Fatal(err)
		}
		got, err := in.mod.ExportedFunction("f").Call(context.Background(), 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if used := in.used(); used != 2+costDiv+1+2+1 {
			t.Errorf("%+v: used %d, want %d", opt, used, 2+costDiv+1+2+1)
		}
		if opt.CanonicalNaNs && got[0] != canon32 {
			t.Errorf("0/0 + 0/0 = %#x, want %#x", got[0], canon32)
		}
	}
}
