// Package bytesize reads and writes byte counts as people type them:
// 65536, 64KiB, 256MiB, 1GiB.
package bytesize

import (
	"fmt"
	"strconv"
	"strings"
)

var units = []struct {
	suffix string
	scale  int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

// Parse reads a size such as 65536, 10B, 64KiB, 256MiB or 1GiB.
func Parse(s string) (int64, error) {
	num, scale := strings.TrimSpace(s), int64(1)
	for _, u := range append(units, struct {
		suffix string
		scale  int64
	}{"B", 1}) {
		if strings.HasSuffix(num, u.suffix) {
			num, scale = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.scale
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/scale {
		return 0, fmt.Errorf("invalid size %q (want a byte count such as 65536, 256MiB or 1GiB)", s)
	}
	return n * scale, nil
}

// Format writes n in the largest binary unit that divides it, the way
// Parse reads it: 65536 is "64KiB", 1<<30 is "1GiB", 1000 is "1000B".
func Format(n int64) string {
	for _, u := range units {
		if n != 0 && n%u.scale == 0 {
			return fmt.Sprintf("%d%s", n/u.scale, u.suffix)
		}
	}
	return fmt.Sprintf("%dB", n)
}
