// Command loops runs one of two loops of a guest's own instructions, with no
// host call inside them, for the engine's benchmarks:
//
//	-work matmul: -reps naive 128x128 f64 matrix products (4.19 MFLOP each);
//	-work parse:  -reps parses of 1 MiB of comma-separated decimal integers,
//	              made up in memory before the first.
//
// It prints a checksum, so that the work cannot be left out.
package main

import (
	"flag"
	"fmt"
	"os"
)

const (
	n         = 128
	parseSize = 1 << 20
)

func main() {
	work := flag.String("work", "matmul", "matmul or parse")
	reps := flag.Int("reps", 1, "times to do the work")
	flag.Parse()
	switch *work {
	case "matmul":
		fmt.Println(matmul(*reps))
	case "parse":
		fmt.Println(parse(*reps))
	default:
		fmt.Fprintf(os.Stderr, "unknown work %q\n", *work)
		os.Exit(2)
	}
}

func matmul(reps int) float64 {
	a, b, c := make([]float64, n*n), make([]float64, n*n), make([]float64, n*n)
	for i := range a {
		a[i] = float64(i%17) * 0.25
		b[i] = float64(i%13) * 0.5
	}
	var sum float64
	for range reps {
		for i := range n {
			for j := range n {
				var s float64
				for k := range n {
					s += a[i*n+k] * b[k*n+j]
				}
				c[i*n+j] = s
			}
		}
		sum += c[(reps*31)%(n*n)]
	}
	return sum
}

func parse(reps int) uint64 {
	buf := make([]byte, 0, parseSize)
	x := uint32(12345)
	for len(buf) < parseSize-12 {
		x = x*1664525 + 1013904223
		v := x >> 8
		var d [10]byte
		i := len(d)
		for {
			i--
			d[i] = byte('0' + v%10)
			v /= 10
			if v == 0 {
				break
			}
		}
		buf = append(buf, d[i:]...)
		buf = append(buf, ',')
	}
	for len(buf) < parseSize {
		buf = append(buf, '0')
	}
	var sum uint64
	for range reps {
		var v uint64
		for _, ch := range buf {
			if ch >= '0' && ch <= '9' {
				v = v*10 + uint64(ch-'0')
			} else {
				sum += v
				v = 0
			}
		}
		sum += v
	}
	return sum
}
