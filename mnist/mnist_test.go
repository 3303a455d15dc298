package mnist

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// idx returns an IDX file: magic, the sizes, then data.
func idx(magic uint32, sizes []uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magic)
	for _, s := range sizes {
		b = binary.BigEndian.AppendUint32(b, s)
	}
	return append(b, data...)
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	z := gzip.NewWriter(&buf)
	if _, err := z.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tiny is a set of 3 images of 2x4 pixels.
var (
	tinyPix    = []byte{0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 17, 250, 251, 252, 253, 254, 255, 0, 9}
	tinyLabels = []byte{7, 0, 9}
)

func tinyImages() []byte     { return idx(imagesMagic, []uint32{3, 2, 4}, tinyPix) }
func tinyLabelsFile() []byte { return idx(labelsMagic, []uint32{3}, tinyLabels) }

func TestReadRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(testing.TB, []byte) []byte
	}{
		{"raw", func(_ testing.TB, b []byte) []byte { return b }},
		{"gzip", gz},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ReadImages(bytes.NewReader(tc.wrap(t, tinyImages())))
			if err != nil {
				t.Fatal(err)
			}
			if s.N != 3 || s.Rows != 2 || s.Cols != 4 || !bytes.Equal(s.Images, tinyPix) || s.Labels != nil {
				t.Fatalf("got N=%d %dx%d %v labels %v", s.N, s.Rows, s.Cols, s.Images, s.Labels)
			}
			for i := range s.N {
				if img := s.Image(i); !bytes.Equal(img, tinyPix[8*i:8*i+8]) || cap(img) != 8 {
					t.Errorf("Image(%d) = %v (cap %d)", i, img, cap(img))
				}
			}
			l, err := ReadLabels(bytes.NewReader(tc.wrap(t, tinyLabelsFile())))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(l, tinyLabels) {
				t.Fatalf("labels %v, want %v", l, tinyLabels)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	sound := gz(t, tinyImages())
	// A byte flipped in the compressed data, well after the header.
	pix := make([]byte, 50*28*28)
	for i := range pix {
		pix[i] = byte(i * i >> 3)
	}
	flipped := gz(t, idx(imagesMagic, []uint32{50, 28, 28}, pix))
	flipped[len(flipped)-40] ^= 0xff
	badCRC := bytes.Clone(sound)
	badCRC[len(badCRC)-8] ^= 0x01
	for _, tc := range []struct {
		name   string
		labels bool // ReadLabels, not ReadImages
		in     []byte
		want   string
	}{
		{"empty", false, nil, "mnist: images: truncated header: 0 of 16 bytes"},
		{"truncated header", false, tinyImages()[:10], "truncated header: 10 of 16 bytes"},
		{"truncated labels header", true, tinyLabelsFile()[:7], "truncated header: 7 of 8 bytes"},
		{"truncated header gzip", false, gz(t, tinyImages()[:15]), "truncated header: 15 of 16 bytes"},
		{"bad magic", false, tinyLabelsFile(), "bad magic 0x00000801: an IDX images file starts with 0x00000803"},
		{"bad magic labels", true, tinyImages(), "bad magic 0x00000803: an IDX labels file starts with 0x00000801"},
		{"bad magic short", false, []byte{0, 0, 8, 1, 0}, "bad magic 0x00000801"},
		{"truncated data", false, tinyImages()[:16+5], "truncated data: expected 24 bytes of pixels, read 5"},
		{"truncated data gzip", false, gz(t, tinyImages()[:16+20]), "truncated data: expected 24 bytes of pixels, read 20"},
		{"truncated labels", true, tinyLabelsFile()[:9], "truncated data: expected 3 bytes of labels, read 1"},
		{"trailing data", false, append(tinyImages(), 0), "trailing data"},
		{"zero images", false, idx(imagesMagic, []uint32{0, 28, 28}, nil), "declares 0 images of 28x28 pixels: a size is zero"},
		{"zero rows", false, idx(imagesMagic, []uint32{5, 0, 28}, nil), "a size is zero"},
		{"zero labels", true, idx(labelsMagic, []uint32{0}, nil), "declares 0 labels"},
		{"huge", false, idx(imagesMagic, []uint32{1 << 20, 1 << 10, 1 << 10}, nil), "more than 1073741824 bytes"},
		{"huge max", false, idx(imagesMagic, []uint32{1<<32 - 1, 1<<32 - 1, 1<<32 - 1}, nil), "more than 1073741824 bytes"},
		{"huge labels", true, idx(labelsMagic, []uint32{1<<30 + 1}, nil), "declares 1073741825 labels"},
		{"label 10", true, idx(labelsMagic, []uint32{3}, []byte{1, 10, 2}), "label 1 is 10, not a digit 0..9"},
		{"label 255 gzip", true, gz(t, idx(labelsMagic, []uint32{1}, []byte{255})), "label 0 is 255"},
		{"gzip bad header", false, []byte{0x1f, 0x8b, 0, 0, 0, 0, 0, 0, 0, 0}, "corrupt gzip"},
		{"gzip cut header", false, sound[:5], "corrupt gzip: stream cut short"},
		{"gzip cut", false, sound[:len(sound)-12], "corrupt gzip"},
		{"gzip corrupt data", false, flipped, "corrupt gzip"},
		{"gzip bad checksum", false, badCRC, "corrupt gzip: gzip: invalid checksum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.labels {
				_, err = ReadLabels(bytes.NewReader(tc.in))
			} else {
				_, err = ReadImages(bytes.NewReader(tc.in))
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "mnist: images: ") && !strings.HasPrefix(err.Error(), "mnist: labels: ") {
				t.Errorf("error %q lacks its prefix", err)
			}
		})
	}
}

// A header declaring the most MaxBytes allows, over a stream that holds
// little, costs memory on the scale of the stream, and one declaring more is
// refused before any allocation of its size.
func TestReadAllocatesWithData(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sizes []uint32
		want  string
	}{
		{"at bound", []uint32{1 << 10, 1 << 10, 1 << 10}, "truncated data: expected 1073741824 bytes of pixels, read 100"},
		{"over bound", []uint32{1<<10 + 1, 1 << 10, 1 << 10}, "more than 1073741824 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := idx(imagesMagic, tc.sizes, make([]byte, 100))
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := ReadImages(bytes.NewReader(in))
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 100<<20 {
				t.Errorf("allocated %d bytes for a %d-byte stream", got, len(in))
			}
		})
	}
}

func writeFiles(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoad(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string][]byte
	}{
		{"gzip", map[string][]byte{
			"t10k-images-idx3-ubyte.gz": gz(t, tinyImages()),
			"t10k-labels-idx1-ubyte.gz": gz(t, tinyLabelsFile()),
		}},
		{"raw", map[string][]byte{
			"t10k-images-idx3-ubyte": tinyImages(),
			"t10k-labels-idx1-ubyte": tinyLabelsFile(),
		}},
		// The content decides, not the name.
		{"raw named gz", map[string][]byte{
			"t10k-images-idx3-ubyte.gz": tinyImages(),
			"t10k-labels-idx1-ubyte":    gz(t, tinyLabelsFile()),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Load(writeFiles(t, tc.files), "t10k")
			if err != nil {
				t.Fatal(err)
			}
			if s.N != 3 || s.Rows != 2 || s.Cols != 4 || !bytes.Equal(s.Images, tinyPix) || !bytes.Equal(s.Labels, tinyLabels) {
				t.Fatalf("got %+v", s)
			}
		})
	}
}

func TestLoadFirst(t *testing.T) {
	dir := writeFiles(t, map[string][]byte{
		"t10k-images-idx3-ubyte.gz": gz(t, tinyImages()),
		"t10k-labels-idx1-ubyte.gz": gz(t, tinyLabelsFile()),
	})
	// The data a limited read leaves alone may be cut short.
	cut := tinyImages()
	short := writeFiles(t, map[string][]byte{
		"t10k-images-idx3-ubyte": cut[:len(cut)-8],
		"t10k-labels-idx1-ubyte": tinyLabelsFile(),
	})
	for _, tc := range []struct {
		name   string
		dir    string
		n      int
		want   int
		failed bool
	}{
		{"all", dir, 0, 3, false},
		{"first two", dir, 2, 2, false},
		{"exactly all", dir, 3, 3, false},
		{"more than all", dir, 7, 3, false},
		{"cut short, two", short, 2, 2, false},
		{"cut short, all", short, 0, 0, true},
		{"negative", dir, -1, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := LoadFirst(tc.dir, "t10k", tc.n)
			if tc.failed {
				if err == nil {
					t.Fatalf("read %d images, want an error", s.N)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			px := tc.want * 8
			if s.N != tc.want || !bytes.Equal(s.Images, tinyPix[:px]) || !bytes.Equal(s.Labels, tinyLabels[:tc.want]) {
				t.Fatalf("got %+v, want the first %d images", s, tc.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		set      string
		files    map[string][]byte
		want     []string
		notExist bool
	}{
		{"unknown set", "../train", nil, []string{`unknown set "../train"`}, false},
		{"no images", "train", map[string][]byte{
			"train-labels-idx1-ubyte.gz": gz(t, tinyLabelsFile()),
		}, []string{"neither train-images-idx3-ubyte.gz nor train-images-idx3-ubyte exists"}, true},
		{"no labels", "train", map[string][]byte{
			"train-images-idx3-ubyte": tinyImages(),
		}, []string{"neither train-labels-idx1-ubyte.gz nor train-labels-idx1-ubyte exists"}, true},
		{"count mismatch", "train", map[string][]byte{
			"train-images-idx3-ubyte.gz": gz(t, tinyImages()),
			"train-labels-idx1-ubyte.gz": gz(t, idx(labelsMagic, []uint32{2}, []byte{1, 2})),
		}, []string{"train-images-idx3-ubyte.gz holds 3 images but ", "train-labels-idx1-ubyte.gz holds 2 labels"}, false},
		{"names the file", "train", map[string][]byte{
			"train-images-idx3-ubyte.gz": gz(t, tinyImages()),
			"train-labels-idx1-ubyte":    idx(labelsMagic, []uint32{3}, []byte{1, 2, 10}),
		}, []string{"train-labels-idx1-ubyte: label 2 is 10"}, false},
		{"names the gz file", "train", map[string][]byte{
			"train-images-idx3-ubyte.gz": gz(t, tinyImages())[:20],
			"train-labels-idx1-ubyte.gz": gz(t, tinyLabelsFile()),
		}, []string{"train-images-idx3-ubyte.gz: corrupt gzip"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeFiles(t, tc.files), tc.set)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "mnist: ") {
				t.Errorf("error %q lacks its prefix", err)
			}
			if got := errors.Is(err, fs.ErrNotExist); got != tc.notExist {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v", got)
			}
		})
	}
}

func TestFindDir(t *testing.T) {
	root := t.TempDir()
	mk := func(path, content string) {
		t.Helper()
		path = filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("go.mod", "// the node\nmodule   \"github.com/accelnode/accelnode\" // here\n\ngo 1.26\n")
	mk("a/b/x.go", "")
	mk("nested/go.mod", "module github.com/accelnode/accelnode/nested\n")
	mk("nested/c/x.go", "")
	want := filepath.Join(root, ".deps", "mnist")

	if _, err := FindDir(filepath.Join(root, "a", "b")); err == nil || !strings.Contains(err.Error(), "run make deps") {
		t.Fatalf("FindDir without the files: error %v, want one saying to run make deps", err)
	}
	mk(".deps/mnist/train-images-idx3-ubyte.gz", "")
	mk(".deps/mnist/train-labels-idx1-ubyte", "")
	mk(".deps/mnist/t10k-images-idx3-ubyte.gz", "")
	if _, err := FindDir(root); err == nil || !strings.Contains(err.Error(), "lacks t10k-labels-idx1-ubyte.gz: run make deps") {
		t.Fatalf("FindDir with three files: error %v", err)
	}
	mk(".deps/mnist/t10k-labels-idx1-ubyte.gz", "")
	for _, start := range []string{root, filepath.Join(root, "a", "b"), filepath.Join(root, "nested", "c"), filepath.Join(root, ".deps", "mnist")} {
		if got, err := FindDir(start); err != nil || got != want {
			t.Errorf("FindDir(%s) = %q, %v; want %q", start, got, err, want)
		}
	}

	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "go.mod"), []byte("module example.com/other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := FindDir(other); err == nil || !strings.Contains(err.Error(), "no go.mod of github.com/accelnode/accelnode") {
		t.Fatalf("FindDir outside the module: error %v", err)
	}
}

// The original MNIST files, as make deps copies them into .deps/mnist.
func TestRealMNIST(t *testing.T) {
	dir, err := FindDir(".")
	if err != nil {
		t.Skip("MNIST files not found: run make deps")
	}
	for _, tc := range []struct {
		name                 string
		n                    int
		hist                 [10]int
		imagesSHA, labelsSHA string
	}{
		{"train", 60000, [10]int{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949},
			"741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
			"1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13"},
		{"t10k", 10000, [10]int{980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009},
			"6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
			"ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Load(dir, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if s.N != tc.n || s.Rows != 28 || s.Cols != 28 || len(s.Images) != tc.n*28*28 || len(s.Labels) != tc.n {
				t.Fatalf("N=%d %dx%d, %d pixels, %d labels; want N=%d 28x28", s.N, s.Rows, s.Cols, len(s.Images), len(s.Labels), tc.n)
			}
			var hist [10]int
			for _, l := range s.Labels {
				hist[l]++
			}
			sum := 0
			for _, c := range hist {
				sum += c
			}
			if hist != tc.hist || sum != tc.n {
				t.Errorf("label histogram %v (sum %d), want %v (sum %d)", hist, sum, tc.hist, tc.n)
			}
			if got := sha(s.Labels); got != tc.labelsSHA {
				t.Errorf("sha256 of the labels %s, want %s", got, tc.labelsSHA)
			}
			if got := sha(s.Images); got != tc.imagesSHA {
				t.Errorf("sha256 of the images %s, want %s", got, tc.imagesSHA)
			}
		})
	}
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
