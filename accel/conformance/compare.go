package conformance

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/accelnode/accelnode/accel/strictmath"
)

// maxShown bounds the mismatches listed per comparison.
const maxShown = 5

// bitDiff describes the elements of got whose bits differ from want, or
// returns "" when all agree.
func bitDiff(shape []int, got, want []float32) string {
	if len(got) != len(want) {
		return fmt.Sprintf("  %d elements, want %d", len(got), len(want))
	}
	var d differ
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			d.add(fmt.Sprintf("at %s: got %s, want %s, %s", index(shape, i), fbits(got[i]), fbits(want[i]), ulpText(got[i], want[i])))
		}
	}
	return d.text(len(want))
}

// wordDiff describes the 32-bit elements of got that differ from want, both
// little-endian bytes, each shown by show.
func wordDiff(shape []int, got, want []byte, show func(uint32) string) string {
	if len(got) != len(want) {
		return fmt.Sprintf("  %d bytes, want %d", len(got), len(want))
	}
	var d differ
	for i := 0; i+4 <= len(want); i += 4 {
		g, w := binary.LittleEndian.Uint32(got[i:]), binary.LittleEndian.Uint32(want[i:])
		if g != w {
			d.add(fmt.Sprintf("at %s: got %s, want %s", index(shape, i/4), show(g), show(w)))
		}
	}
	return d.text(len(want) / 4)
}

// nearDiff describes the elements of got that are not within the error bound
// of their float64 reference (see ev.admits), or returns "".
func nearDiff(shape []int, got []float32, want []ev) string {
	if len(got) != len(want) {
		return fmt.Sprintf("  %d elements, want %d", len(got), len(want))
	}
	var d differ
	for i := range want {
		if !want[i].admits(got[i]) {
			d.add(fmt.Sprintf("at %s: got %s, want %s", index(shape, i), fbits(got[i]), want[i]))
		}
	}
	return d.text(len(want))
}

// differ collects the first few mismatches of a comparison.
type differ struct {
	lines []string
	count int
}

func (d *differ) add(line string) {
	d.count++
	if d.count <= maxShown {
		d.lines = append(d.lines, "  "+line)
	}
}

func (d *differ) text(total int) string {
	if d.count == 0 {
		return ""
	}
	if d.count > maxShown {
		d.lines = append(d.lines, fmt.Sprintf("  ... %d mismatches in all", d.count))
	}
	d.lines = append(d.lines, fmt.Sprintf("  (%d of %d elements differ)", d.count, total))
	return strings.Join(d.lines, "\n")
}

// index formats element i of a row-major tensor of the given shape as
// [i0,i1,...].
func index(shape []int, i int) string {
	if len(shape) == 0 {
		return "[" + strconv.Itoa(i) + "]"
	}
	idx := make([]string, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		idx[d] = strconv.Itoa(i % shape[d])
		i /= shape[d]
	}
	return "[" + strings.Join(idx, ",") + "]"
}

// fbits shows a float32 with its bit pattern.
func fbits(x float32) string {
	return fmt.Sprintf("%#08x (%g)", math.Float32bits(x), x)
}

// ulpText describes how far apart a and b are, counting float32 values
// between them across zero.
func ulpText(a, b float32) string {
	switch {
	case a != a && b != b:
		return "both NaN, payload or sign differs"
	case a != a || b != b:
		return "one is NaN"
	case a == b: // +0 and -0
		return "sign of zero differs"
	}
	d := ordered(a) - ordered(b)
	if d < 0 {
		d = -d
	}
	return fmt.Sprintf("%d ulp apart", d)
}

// ordered maps float32 bit patterns to integers in the order of the values,
// with -0 and +0 both at 0, so that neighbours differ by one.
func ordered(x float32) int64 {
	b := math.Float32bits(x)
	if b>>31 != 0 {
		return -int64(b & 0x7fffffff)
	}
	return int64(b)
}

// ULPs is the distance between a and b in float32 steps (strictmath.ULPs).
func ULPs(a, b float32) int64 { return strictmath.ULPs(a, b) }
