// Command nans makes NaNs in many ways and prints the bits of each, then
// the SHA-256 of all of them. WebAssembly lets the payload and sign of a
// NaN that an instruction makes differ between CPUs, so without
// canonicalisation the lines can differ between amd64 and arm64; with it
// they are the same everywhere. The inputs come from the arguments, so
// that the compiler cannot fold the operations away.
package main

import (
	"crypto/sha256"
	"fmt"
	"math"
	"os"
	"strconv"
)

func main() {
	// zero and one arrive at run time: "0" and "1" unless told otherwise.
	zero, one := 0.0, 1.0
	if len(os.Args) > 2 {
		zero, _ = strconv.ParseFloat(os.Args[1], 64)
		one, _ = strconv.ParseFloat(os.Args[2], 64)
	}
	inf := one / zero
	payload := math.Float64frombits(0x7ff8000000000123 + uint64(zero))
	negPayload := math.Float64frombits(0xfff80000000abcde + uint64(zero))
	signaling := math.Float64frombits(0x7ff0000000000777 + uint64(zero))
	f32payload := math.Float32frombits(0x7fc00321 + uint32(zero))
	z32, o32 := float32(zero), float32(one)

	lines := []struct {
		name string
		bits uint64
	}{
		{"f64 0/0", math.Float64bits(zero / zero)},
		{"f32 0/0", uint64(math.Float32bits(z32 / z32))},
		{"f64 inf-inf", math.Float64bits(inf - inf)},
		{"f64 0*inf", math.Float64bits(zero * inf)},
		{"f64 sqrt(-1)", math.Float64bits(math.Sqrt(-one))},
		{"f32 sqrt(-1)", uint64(math.Float32bits(float32(math.Sqrt(float64(-o32)))))},
		{"f64 payload+1", math.Float64bits(payload + one)},
		{"f64 payload*neg", math.Float64bits(payload * negPayload)},
		{"f64 neg*payload", math.Float64bits(negPayload * payload)},
		{"f64 signaling+0", math.Float64bits(signaling + zero)},
		{"f64 min(payload,1)", math.Float64bits(min(payload, one))},
		{"f64 max(1,neg)", math.Float64bits(max(one, negPayload))},
		{"f32 payload-1", uint64(math.Float32bits(f32payload - o32))},
		{"f32->f64 payload", math.Float64bits(float64(f32payload))},
		{"f64->f32 payload", uint64(math.Float32bits(float32(payload)))},
		{"f64->f32 signaling", uint64(math.Float32bits(float32(signaling)))},
		{"f64 floor(payload)", math.Float64bits(math.Floor(payload))},
		{"f64 trunc(neg)", math.Float64bits(math.Trunc(negPayload))},
		// Moves keep their bits: WebAssembly requires it.
		{"f64 -payload (kept)", math.Float64bits(-payload)},
		{"f64 abs(neg) (kept)", math.Float64bits(math.Abs(negPayload))},
		{"f64 copysign (kept)", math.Float64bits(math.Copysign(payload, -one))},
	}
	h := sha256.New()
	for _, l := range lines {
		s := fmt.Sprintf("%-22s %#016x\n", l.name, l.bits)
		h.Write([]byte(s))
		fmt.Print(s)
	}
	fmt.Printf("sha256 %x\n", h.Sum(nil))
}
