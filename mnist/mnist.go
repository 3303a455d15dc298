// Package mnist reads the MNIST handwritten-digit data set in its original
// IDX format, gzip-compressed or raw, and a small named-tensor file format
// (tensors.go) for checkpoints and gradient dumps.
//
// An IDX images file is the big-endian u32 magic 0x00000803, the u32 sizes
// N, rows and cols, then N*rows*cols pixels (u8, image after image, row after
// row); a labels file is the magic 0x00000801, the u32 size N, then N labels
// (u8, 0..9). A reader tells a gzip-compressed stream by its first two bytes
// (1f 8b), whatever the file is called.
//
// `make deps` copies the four original files into .deps/mnist at the module
// root (FindDir finds it). The package uses only the standard library, so it
// builds for GOOS=wasip1 GOARCH=wasm too: a guest passes Load the preopened
// directory that holds the files.
package mnist

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

const (
	imagesMagic = 0x00000803
	labelsMagic = 0x00000801

	// MaxBytes bounds the data an IDX file may declare (N*rows*cols pixels
	// for images, N for labels); a larger header is refused before anything
	// is allocated. The MNIST training images take 47,040,000.
	MaxBytes = 1 << 30
)

// Set is one MNIST split: N images of Rows×Cols pixels and their N labels.
type Set struct {
	// Images holds the N*Rows*Cols pixels, image after image, row after
	// row; 0 is background, 255 is ink.
	Images []uint8
	// Labels holds the N digits, each 0..9; nil in a Set from ReadImages.
	Labels []uint8
	// N is the number of images; Rows and Cols are each image's size.
	N, Rows, Cols int
}

// Image returns image i's Rows*Cols pixels, row after row. The slice shares
// Images' storage, with its capacity clipped to the image.
func (s *Set) Image(i int) []uint8 {
	n := s.Rows * s.Cols
	return s.Images[i*n : (i+1)*n : (i+1)*n]
}

// names are the sets Load knows; the files of set x are
// x-images-idx3-ubyte.gz and x-labels-idx1-ubyte.gz, or the same names
// without .gz.
var names = []string{"train", "t10k"}

func imagesFile(name string) string { return name + "-images-idx3-ubyte" }
func labelsFile(name string) string { return name + "-labels-idx1-ubyte" }

// Load reads the set name ("train" or "t10k") from dir: the images from
// <name>-images-idx3-ubyte.gz and the labels from <name>-labels-idx1-ubyte.gz,
// or from the same names without .gz where the .gz file is absent. Errors
// name the file and, where one is missing, wrap fs.ErrNotExist.
func Load(dir, name string) (*Set, error) { return LoadFirst(dir, name, 0) }

// LoadFirst is Load for the first n images and labels of the set (all of
// them where n is 0 or beyond the set's size). It stops reading the files
// there, which saves decompressing the rest; the gzip checksum, which
// follows the data, is then left unchecked.
func LoadFirst(dir, name string, n int) (*Set, error) {
	if !slices.Contains(names, name) {
		return nil, fmt.Errorf("mnist: unknown set %q (want \"train\" or \"t10k\")", name)
	}
	if n < 0 {
		return nil, fmt.Errorf("mnist: %d images", n)
	}
	var set *Set
	ipath, err := readFile(dir, imagesFile(name), func(r io.Reader) error {
		s, err := readImages(r, n)
		set = s
		return err
	})
	if err != nil {
		return nil, err
	}
	lpath, err := readFile(dir, labelsFile(name), func(r io.Reader) error {
		l, err := readLabels(r, set.N)
		set.Labels = l
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(set.Labels) != set.N {
		return nil, fmt.Errorf("mnist: %s holds %d images but %s holds %d labels", ipath, set.N, lpath, len(set.Labels))
	}
	return set, nil
}

// readFile opens dir/base.gz, or dir/base where that is absent, hands it to
// read, and returns the path it read. Errors name the file.
func readFile(dir, base string, read func(io.Reader) error) (string, error) {
	path := filepath.Join(dir, base+".gz")
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		raw := filepath.Join(dir, base)
		if f, err = os.Open(raw); err == nil {
			path = raw
		} else if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("mnist: %s: neither %s.gz nor %s exists: %w", dir, base, base, fs.ErrNotExist)
		}
	}
	if err != nil {
		return "", fmt.Errorf("mnist: %w", err)
	}
	defer f.Close()
	if err := read(f); err != nil {
		return "", fmt.Errorf("mnist: %s: %w", path, err)
	}
	return path, nil
}

// ReadImages reads an IDX images file, gzip-compressed or raw, from r into a
// Set without labels. r must end where the file does: trailing bytes are an
// error (for gzip, that is also where the checksum is checked).
func ReadImages(r io.Reader) (*Set, error) {
	s, err := readImages(r, 0)
	if err != nil {
		return nil, fmt.Errorf("mnist: images: %w", err)
	}
	return s, nil
}

// ReadLabels reads an IDX labels file, gzip-compressed or raw, from r. r must
// end where the file does.
func ReadLabels(r io.Reader) ([]uint8, error) {
	l, err := readLabels(r, 0)
	if err != nil {
		return nil, fmt.Errorf("mnist: labels: %w", err)
	}
	return l, nil
}

// readImages reads an images file, or its first limit images where limit
// is above 0 and below the declared number; the rest of the file is then
// not read.
func readImages(r io.Reader, limit int) (*Set, error) {
	r, err := decompress(r)
	if err != nil {
		return nil, err
	}
	h, err := readHeader(r, imagesMagic, "images", 3)
	if err != nil {
		return nil, err
	}
	n, rows, cols := h[0], h[1], h[2]
	if n == 0 || rows == 0 || cols == 0 {
		return nil, fmt.Errorf("images file declares %d images of %dx%d pixels: a size is zero", n, rows, cols)
	}
	// Each factor is below 1<<32, so rows*cols fits in 64 bits.
	if px := uint64(rows) * uint64(cols); px > MaxBytes || uint64(n) > MaxBytes/px {
		return nil, fmt.Errorf("images file declares %d images of %dx%d pixels: more than %d bytes", n, rows, cols, MaxBytes)
	}
	all := limit <= 0 || uint64(limit) >= uint64(n)
	if !all {
		n = uint32(limit)
	}
	size := int(n) * int(rows) * int(cols)
	pix, err := readData(r, size, "pixels")
	if err != nil {
		return nil, err
	}
	if all {
		if err := expectEOF(r); err != nil {
			return nil, err
		}
	}
	return &Set{Images: pix, N: int(n), Rows: int(rows), Cols: int(cols)}, nil
}

// readLabels reads a labels file, or its first limit labels as readImages
// does.
func readLabels(r io.Reader, limit int) ([]uint8, error) {
	r, err := decompress(r)
	if err != nil {
		return nil, err
	}
	h, err := readHeader(r, labelsMagic, "labels", 1)
	if err != nil {
		return nil, err
	}
	n := h[0]
	if n == 0 {
		return nil, errors.New("labels file declares 0 labels")
	}
	if n > MaxBytes {
		return nil, fmt.Errorf("labels file declares %d labels: more than %d", n, MaxBytes)
	}
	all := limit <= 0 || uint64(limit) >= uint64(n)
	if !all {
		n = uint32(limit)
	}
	labels, err := readData(r, int(n), "labels")
	if err != nil {
		return nil, err
	}
	for i, l := range labels {
		if l > 9 {
			return nil, fmt.Errorf("label %d is %d, not a digit 0..9", i, l)
		}
	}
	if all {
		if err := expectEOF(r); err != nil {
			return nil, err
		}
	}
	return labels, nil
}

// decompress returns a reader of r's content, decompressing it when it
// starts with gzip's magic bytes.
func decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(magic) < 2 || magic[0] != 0x1f || magic[1] != 0x8b {
		return br, nil
	}
	z, err := gzip.NewReader(br)
	if err != nil {
		return nil, &gzipError{err}
	}
	return gzipReader{z}, nil
}

// gzipError is a failure of the gzip stream itself (a bad header or
// checksum, corrupt deflate data, a stream cut short) as opposed to an IDX
// file that is malformed inside a sound stream.
type gzipError struct{ err error }

func (e *gzipError) Error() string {
	if errors.Is(e.err, io.ErrUnexpectedEOF) || errors.Is(e.err, io.EOF) {
		return "corrupt gzip: stream cut short"
	}
	return "corrupt gzip: " + e.err.Error()
}
func (e *gzipError) Unwrap() error { return e.err }

// gzipReader marks the errors of a gzip.Reader other than the io.EOF at its
// end as gzipErrors.
type gzipReader struct{ z *gzip.Reader }

func (g gzipReader) Read(p []byte) (int, error) {
	n, err := g.z.Read(p)
	if err != nil && err != io.EOF {
		err = &gzipError{err}
	}
	return n, err
}

// readHeader reads the u32 magic and the k u32 sizes after it.
func readHeader(r io.Reader, magic uint32, what string, k int) ([]uint32, error) {
	buf := make([]byte, 4*(1+k))
	if n, err := io.ReadFull(r, buf); err != nil {
		if ge := (*gzipError)(nil); errors.As(err, &ge) {
			return nil, ge
		}
		if n >= 4 {
			if got := binary.BigEndian.Uint32(buf); got != magic {
				return nil, badMagic(got, magic, what)
			}
		}
		return nil, fmt.Errorf("truncated header: %d of %d bytes", n, len(buf))
	}
	if got := binary.BigEndian.Uint32(buf); got != magic {
		return nil, badMagic(got, magic, what)
	}
	h := make([]uint32, k)
	for i := range h {
		h[i] = binary.BigEndian.Uint32(buf[4*(i+1):])
	}
	return h, nil
}

func badMagic(got, want uint32, what string) error {
	return fmt.Errorf("bad magic 0x%08x: an IDX %s file starts with 0x%08x", got, what, want)
}

// readData reads exactly n bytes of r. It allocates as the data arrives,
// beyond a first 64 MiB, so that a header declaring more than the stream
// holds costs no more memory than the stream.
func readData(r io.Reader, n int, what string) ([]byte, error) {
	const first, chunk = 64 << 20, 16 << 20
	buf := make([]byte, 0, min(n, first))
	for len(buf) < n {
		k := min(n-len(buf), chunk)
		buf = slices.Grow(buf, k)
		m, err := io.ReadFull(r, buf[len(buf):len(buf)+k])
		buf = buf[:len(buf)+m]
		if err != nil {
			if ge := (*gzipError)(nil); errors.As(err, &ge) {
				return nil, ge
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("truncated data: expected %d bytes of %s, read %d", n, what, len(buf))
			}
			return nil, err
		}
	}
	return buf, nil
}

// expectEOF checks that r has nothing after the data; for gzip it is the
// read to the stream's end that checks the checksum.
func expectEOF(r io.Reader) error {
	var b [1]byte
	n, err := io.ReadFull(r, b[:])
	switch {
	case n > 0:
		return errors.New("trailing data after the declared size")
	case errors.Is(err, io.EOF):
		return nil
	}
	return err
}

// module is the path of the module whose root holds .deps/mnist.
const module = "github.com/accelnode/accelnode"

// FindDir returns the .deps/mnist directory of this module's root, the
// nearest directory at or above start whose go.mod declares module
// github.com/accelnode/accelnode (a nested module's go.mod is passed over).
// It is an error, saying to run make deps, when that directory lacks any of
// the four MNIST files (.gz or raw).
func FindDir(start string) (string, error) {
	dir, err := filepath.Abs(start)
	if err != nil {
		return "", fmt.Errorf("mnist: %w", err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modulePath(b) == module {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("mnist: no go.mod of %s at or above %s", module, start)
		}
		dir = parent
	}
	dir = filepath.Join(dir, ".deps", "mnist")
	for _, name := range names {
		for _, base := range []string{imagesFile(name), labelsFile(name)} {
			if !exists(filepath.Join(dir, base+".gz")) && !exists(filepath.Join(dir, base)) {
				return "", fmt.Errorf("mnist: %s lacks %s.gz: run make deps", dir, base)
			}
		}
	}
	return dir, nil
}

func exists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// modulePath returns the path on a go.mod's module line, or "".
func modulePath(gomod []byte) string {
	for line := range bytes.Lines(gomod) {
		line, _, _ = bytes.Cut(line, []byte("//"))
		if f := bytes.Fields(line); len(f) == 2 && string(f[0]) == "module" {
			return strings.Trim(string(f[1]), "\"`")
		}
	}
	return ""
}
