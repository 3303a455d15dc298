//go:build wasip1

package main

// Points read from stdin (-data -), in one of two forms:
//
//   - CSV: one point a line, label,x1,...,xD, the label an integer and the
//     coordinates numbers; every line has the same D. A first line whose
//     label is not an integer is a header, and is skipped; so are blank
//     lines.
//   - binary, the form the node's web page sends: the magic "apts", then
//     little-endian u32 N, D and the encoding of the values (1: u8, read as
//     v/255, as MNIST pixels are; 2: f32), then N i32 labels, then the N×D
//     values, point after point.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/accelnode/accelnode/hostfn/guest"
)

const (
	pointsMagic = "apts"
	encodingU8  = 1
	encodingF32 = 2
	// maxValues bounds N×D, so that a header cannot ask for more memory
	// than a guest has: 1 GiB of float32s.
	maxValues = 1 << 28
)

// readPoints reads points from r and uploads them as f32 [N, D]. It returns
// the tensor, the labels and D.
func readPoints(r io.Reader) (guest.Tensor, []int32, int, error) {
	in, err := io.ReadAll(r)
	if err != nil {
		return guest.Tensor{}, nil, 0, fmt.Errorf("stdin: %w", err)
	}
	var x []float32
	var labels []int32
	var dim int
	if bytes.HasPrefix(in, []byte(pointsMagic)) {
		x, labels, dim, err = decodePoints(in)
	} else {
		x, labels, dim, err = parseCSV(in)
	}
	if err != nil {
		return guest.Tensor{}, nil, 0, fmt.Errorf("stdin: %w", err)
	}
	if len(labels) < 2 {
		return guest.Tensor{}, nil, 0, fmt.Errorf("stdin holds %d points: want at least 2", len(labels))
	}
	t, err := guest.FromFloat32(x, len(labels), dim)
	if err != nil {
		return guest.Tensor{}, nil, 0, err
	}
	return t, labels, dim, nil
}

// decodePoints reads the binary form.
func decodePoints(b []byte) ([]float32, []int32, int, error) {
	const header = 16
	if len(b) < header {
		return nil, nil, 0, errors.New("points: the header is cut short")
	}
	n := int64(binary.LittleEndian.Uint32(b[4:]))
	d := int64(binary.LittleEndian.Uint32(b[8:]))
	enc := binary.LittleEndian.Uint32(b[12:])
	if n < 1 || d < 1 || n*d > maxValues {
		return nil, nil, 0, fmt.Errorf("points: %d points of %d dimensions: want at least one of each, and at most %d values", n, d, maxValues)
	}
	size := int64(1)
	switch enc {
	case encodingU8:
	case encodingF32:
		size = 4
	default:
		return nil, nil, 0, fmt.Errorf("points: encoding %d: want 1 (u8) or 2 (f32)", enc)
	}
	if want := header + 4*n + size*n*d; int64(len(b)) != want {
		return nil, nil, 0, fmt.Errorf("points: %d bytes: %d points of %d dimensions take %d", len(b), n, d, want)
	}
	labels := make([]int32, n)
	for i := range labels {
		labels[i] = int32(binary.LittleEndian.Uint32(b[header+4*i:]))
	}
	vals := b[header+4*n:]
	x := make([]float32, n*d)
	for i := range x {
		if enc == encodingU8 {
			x[i] = float32(vals[i]) / 255
			continue
		}
		v := math.Float32frombits(binary.LittleEndian.Uint32(vals[4*i:]))
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, nil, 0, fmt.Errorf("points: point %d, dimension %d is %v", i/int(d)+1, i%int(d)+1, v)
		}
		x[i] = v
	}
	return x, labels, int(d), nil
}

// parseCSV reads the CSV form.
func parseCSV(b []byte) ([]float32, []int32, int, error) {
	var x []float32
	var labels []int32
	dim := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<24)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		fields := strings.Split(text, ",")
		label, err := strconv.ParseInt(strings.TrimSpace(fields[0]), 10, 32)
		if err != nil {
			if line == 1 {
				continue // a header
			}
			return nil, nil, 0, fmt.Errorf("line %d: label %q is not an integer", line, fields[0])
		}
		if dim == 0 {
			dim = len(fields) - 1
			if dim < 1 {
				return nil, nil, 0, fmt.Errorf("line %d: a label and no coordinates: want label,x1,...,xD", line)
			}
		}
		if len(fields)-1 != dim {
			return nil, nil, 0, fmt.Errorf("line %d: %d coordinates, where the first point has %d", line, len(fields)-1, dim)
		}
		if int64(len(x))+int64(dim) > maxValues {
			return nil, nil, 0, fmt.Errorf("more than %d values", maxValues)
		}
		for i, f := range fields[1:] {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 32)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, nil, 0, fmt.Errorf("line %d: coordinate %d, %q, is not a finite number", line, i+1, f)
			}
			x = append(x, float32(v))
		}
		labels = append(labels, int32(label))
	}
	if err := sc.Err(); err != nil {
		return nil, nil, 0, err
	}
	return x, labels, dim, nil
}
