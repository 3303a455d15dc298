package embedplot

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

func TestRead(t *testing.T) {
	tests := []struct {
		name, csv string
		want      []Point // on success
		wantErr   string  // the error's text, file and line first
	}{
		{"points", "x,y,label\n1.5,-2,3\n0,1e3,9\n", []Point{{1.5, -2, 3}, {0, 1000, 9}}, ""},
		{"crlf, spaces, a byte-order mark", "\uFEFFx, y ,Label\r\n 1 , 2 , 0 \r\n", []Point{{1, 2, 0}}, ""},
		{"blank lines are skipped", "x,y,label\n\n1,2,3\n", []Point{{1, 2, 3}}, ""},
		{"empty file", "", nil, "e.csv: empty file: want the header x,y,label"},
		{"no header", "1,2,3\n4,5,6\n", nil, `e.csv:1: no header: found "1,2,3", want x,y,label`},
		{"other header", "x,y,digit\n1,2,3\n", nil, `e.csv:1: no header: found "x,y,digit"`},
		{"header of two columns", "x,y\n1,2\n", nil, `e.csv:1: no header`},
		{"header only", "x,y,label\n", nil, "e.csv: no points after the header"},
		{"two columns", "x,y,label\n1,2,3\n1,2\n", nil, "e.csv:3: 2 columns, want 3 (x,y,label)"},
		{"four columns", "x,y,label\n1,2,3,4\n", nil, "e.csv:2: 4 columns, want 3"},
		{"line after a blank line", "x,y,label\n1,2,3\n\n1,2\n", nil, "e.csv:4: 2 columns"},
		{"NaN", "x,y,label\n1,2,3\nNaN,2,3\n", nil, "e.csv:3: x is NaN, want a finite number"},
		{"infinity", "x,y,label\n1,-Inf,3\n", nil, "e.csv:2: y is -Inf, want a finite number"},
		{"overflow", "x,y,label\n1e999,0,3\n", nil, "e.csv:2: x is 1e999, want a finite number"},
		{"not a number", "x,y,label\n1,abc,3\n", nil, `e.csv:2: y "abc" is not a number`},
		{"empty x", "x,y,label\n,1,3\n", nil, `e.csv:2: x "" is not a number`},
		{"fractional label", "x,y,label\n1,2,3.5\n", nil, `e.csv:2: label "3.5" is not an integer`},
		{"label 3.0", "x,y,label\n1,2,3.0\n", nil, `e.csv:2: label "3.0" is not an integer`},
		{"empty label", "x,y,label\n1,2,\n", nil, `e.csv:2: label "" is not an integer`},
		{"label 10", "x,y,label\n1,2,10\n", nil, "e.csv:2: label 10 is not one of 0 to 9"},
		{"negative label", "x,y,label\n1,2,-1\n", nil, "e.csv:2: label -1 is not one of 0 to 9"},
		{"bad quoting", "x,y,label\n1,2,3\n\"1,2,3\n", nil, "e.csv:3:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Read(strings.NewReader(tc.csv), "e.csv")
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one starting %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("point %d = %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// clusters returns 100 points of each label, on a 10 × 10 grid with unit
// spacing, the labels' grids 20 apart along x: no two points overlap.
func clusters(labels ...int) []Point {
	var points []Point
	for c, l := range labels {
		for i := range 100 {
			points = append(points, Point{X: float64(20*c + i%10), Y: float64(i / 10), Label: l})
		}
	}
	return points
}

// over is colour c at opacity a over white, as the rasteriser blends it.
func over(c color.NRGBA, a uint8) color.NRGBA {
	mix := func(v uint8) uint8 { return uint8((int(v)*int(a) + 255*(255-int(a)) + 127) / 255) }
	return color.NRGBA{mix(c.R), mix(c.G), mix(c.B), 255}
}

// count counts the pixels within 2 of c in every channel.
func count(img image.Image, c color.NRGBA) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			p := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			if absDiff(p.R, c.R) <= 2 && absDiff(p.G, c.G) <= 2 && absDiff(p.B, c.B) <= 2 && p.A == 255 {
				n++
			}
		}
	}
	return n
}

func absDiff(a, b uint8) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}

// TestWritePNG draws three labels and finds each one's colour, blended as
// its points are, in the picture, and not the colours of labels it lacks.
func TestWritePNG(t *testing.T) {
	points := clusters(0, 3, 8)
	path := filepath.Join(t.TempDir(), "emb.png")
	if err := WriteFile(points, path, Options{Title: "three clusters"}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 1200 || b.Dy() != 1200 {
		t.Errorf("the picture is %v, want 1200 × 1200 (8 inches at 150 dpi)", b)
	}
	a := uint8(math.Round(255 * AutoAlpha(len(points))))
	for _, l := range []int{0, 3, 8} {
		// A point 2.5 pt across at 150 dpi covers about 80 pixels whole.
		if n := count(img, over(Palette[l], a)); n < 100*30 {
			t.Errorf("label %d: %d pixels of its points' colour %v, want at least %d", l, n, over(Palette[l], a), 100*30)
		}
		if n := count(img, Palette[l]); n < 20 {
			t.Errorf("label %d: %d pixels of its legend's colour %v", l, n, Palette[l])
		}
	}
	for _, l := range []int{1, 6} { // not 9: its grey is in the anti-aliased text
		if n := count(img, over(Palette[l], a)) + count(img, Palette[l]); n != 0 {
			t.Errorf("label %d, which no point has: %d pixels of its colour", l, n)
		}
	}
}

// TestWriteSVG checks that an SVG holds one translucent shape per point.
func TestWriteSVG(t *testing.T) {
	points := clusters(1, 2)
	path := filepath.Join(t.TempDir(), "emb.svg")
	if err := WriteFile(points, path, Options{Title: "two clusters"}); err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(svg, []byte("<svg")) || !bytes.Contains(svg, []byte("two clusters")) {
		t.Fatalf("not an SVG with the title:\n%.300s", svg)
	}
	if n := bytes.Count(svg, []byte("fill-opacity:")); n != len(points) {
		t.Errorf("%d translucent shapes, want one for each of the %d points", n, len(points))
	}
}

func TestWriteRefuses(t *testing.T) {
	dir := t.TempDir()
	if err := WriteFile(clusters(0), filepath.Join(dir, "emb.pdf"), Options{}); err == nil || !strings.Contains(err.Error(), "want a .png or .svg") {
		t.Errorf("a .pdf: error %v", err)
	}
	if err := WriteFile(nil, filepath.Join(dir, "emb.png"), Options{}); err == nil || !strings.Contains(err.Error(), "no points") {
		t.Errorf("no points: error %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "emb.png")); !os.IsNotExist(err) {
		t.Errorf("a picture that failed was left behind: %v", err)
	}
	if err := Write(&bytes.Buffer{}, "png", clusters(0), Options{Alpha: 2}); err == nil {
		t.Error("opacity 2 was taken")
	}
}

// TestEqualAspect checks that a unit of x is as long as a unit of y, for
// data far wider than tall and far taller than wide.
func TestEqualAspect(t *testing.T) {
	for _, box := range [][4]float64{{0, 100, 0, 1}, {-3, -2, 0, 50}, {5, 5, 7, 7}} {
		p := plot.New()
		p.Title.Text = "aspect"
		c := draw.New(vgimg.New(6*vg.Inch, 4*vg.Inch))
		equalAspect(p, c, box[0], box[1], box[2], box[3])
		dc := p.DataCanvas(c)
		sx := (p.X.Max - p.X.Min) / float64(dc.Max.X-dc.Min.X)
		sy := (p.Y.Max - p.Y.Min) / float64(dc.Max.Y-dc.Min.Y)
		if math.Abs(sx-sy) > 1e-9*max(sx, sy) {
			t.Errorf("box %v: %g units a point along x, %g along y", box, sx, sy)
		}
		if p.X.Min > box[0] || p.X.Max < box[1] || p.Y.Min > box[2] || p.Y.Max < box[3] {
			t.Errorf("box %v: the axes show [%g, %g] × [%g, %g]", box, p.X.Min, p.X.Max, p.Y.Min, p.Y.Max)
		}
	}
}
