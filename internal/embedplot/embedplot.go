// Package embedplot reads a two-dimensional embedding of labelled points
// (a CSV file with the header x,y,label, one row a point, such as t-SNE of
// the MNIST digits writes) and draws it as a scatter plot coloured by
// label, into a PNG or SVG file.
package embedplot

import (
	"encoding/csv"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Labels is the number of labels a point may carry: 0 to Labels-1, the
// digits.
const Labels = 10

// Header is the CSV header an embedding file starts with.
var Header = []string{"x", "y", "label"}

// Point is one embedded point.
type Point struct {
	X, Y  float64
	Label int
}

// ReadFile reads an embedding CSV file; errors name the file and the line.
func ReadFile(path string) ([]Point, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(f, path)
}

// Read reads an embedding CSV from r: the header x,y,label, then one point
// a line, x and y finite numbers and the label an integer from 0 to 9.
// name is the file's name in errors, which read "NAME:LINE: what is wrong".
func Read(r io.Reader, name string) ([]Point, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // counted here, to say which line is short
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: empty file: want the header %s", name, strings.Join(Header, ","))
	}
	if err != nil {
		return nil, csvError(name, err)
	}
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\uFEFF") // a byte-order mark
	}
	if !isHeader(header) {
		return nil, fmt.Errorf("%s:1: no header: found %q, want %s", name, strings.Join(header, ","), strings.Join(Header, ","))
	}
	var points []Point
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, csvError(name, err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(Header) {
			return nil, fmt.Errorf("%s:%d: %d columns, want %d (%s)", name, line, len(rec), len(Header), strings.Join(Header, ","))
		}
		var p Point
		for i, v := range []*float64{&p.X, &p.Y} {
			s := strings.TrimSpace(rec[i])
			f, err := strconv.ParseFloat(s, 64)
			switch {
			case err != nil && !errors.Is(err, strconv.ErrRange):
				return nil, fmt.Errorf("%s:%d: %s %q is not a number", name, line, Header[i], rec[i])
			case err != nil || math.IsInf(f, 0) || math.IsNaN(f):
				return nil, fmt.Errorf("%s:%d: %s is %s, want a finite number", name, line, Header[i], s)
			}
			*v = f
		}
		s := strings.TrimSpace(rec[2])
		label, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: label %q is not an integer", name, line, rec[2])
		}
		if label < 0 || label >= Labels {
			return nil, fmt.Errorf("%s:%d: label %d is not one of 0 to %d", name, line, label, Labels-1)
		}
		p.Label = label
		points = append(points, p)
	}
	if len(points) == 0 {
		return nil, fmt.Errorf("%s: no points after the header", name)
	}
	return points, nil
}

func isHeader(rec []string) bool {
	if len(rec) != len(Header) {
		return false
	}
	for i, h := range Header {
		if !strings.EqualFold(strings.TrimSpace(rec[i]), h) {
			return false
		}
	}
	return true
}

// csvError names the file and the line of a CSV syntax error.
func csvError(name string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s:%d: %v", name, pe.Line, pe.Err)
	}
	return fmt.Errorf("%s: %w", name, err)
}

// Palette colours labels 0 to 9: Paul Tol's "muted" scheme, nine colours
// that stay apart under the common colour-vision deficiencies, and a dark
// grey.
var Palette = [Labels]color.NRGBA{
	{0x33, 0x22, 0x88, 0xff}, // indigo
	{0x88, 0xcc, 0xee, 0xff}, // cyan
	{0x44, 0xaa, 0x99, 0xff}, // teal
	{0x11, 0x77, 0x33, 0xff}, // green
	{0x99, 0x99, 0x33, 0xff}, // olive
	{0xdd, 0xcc, 0x77, 0xff}, // sand
	{0xcc, 0x66, 0x77, 0xff}, // rose
	{0x88, 0x22, 0x55, 0xff}, // wine
	{0xaa, 0x44, 0x99, 0xff}, // purple
	{0x55, 0x55, 0x55, 0xff}, // dark grey
}

// Options tunes Draw; zero fields take the defaults.
type Options struct {
	Title string
	// Width and Height are the figure's size (default 8 inches each).
	Width, Height vg.Length
	// DPI is a PNG's resolution (default 150: 1200 × 1200 pixels at 8 inches).
	DPI int
	// Radius is a point's radius; 0 means AutoRadius(len(points)).
	Radius vg.Length
	// Alpha is a point's opacity, above 0 and at most 1; 0 means
	// AutoAlpha(len(points)).
	Alpha float64
}

// AutoRadius is the default radius of n points, 80/√n pt from 0.7 pt (about
// a pixel and a half at 150 dpi, from 13,000 points on) to 2.5 pt (a
// thousand points and fewer).
func AutoRadius(n int) vg.Length {
	return vg.Points(min(2.5, max(0.7, 80/math.Sqrt(float64(max(n, 1))))))
}

// AutoAlpha is the default opacity of n points, 60/√n from 0.35 (from
// 30,000 points on, where a few must overlap to hide what is below) to 0.9
// (4,400 points and fewer): dense clusters stay dark and lone points stay
// visible.
func AutoAlpha(n int) float64 {
	return min(0.9, max(0.35, 60/math.Sqrt(float64(max(n, 1)))))
}

// WriteFile draws points into path, a PNG or SVG file by its extension.
func WriteFile(points []Point, path string, o Options) error {
	ext := strings.ToLower(filepath.Ext(path))
	if ext != ".png" && ext != ".svg" {
		return fmt.Errorf("%s: want a .png or .svg file", path)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Write(f, ext[1:], points, o); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// Write draws points as format ("png" or "svg") to w.
//
// Points are drawn in a fixed pseudo-random order, so that no label is
// drawn over all the others, and with the same scale on both axes, so that
// distances in the picture are distances in the embedding. The legend, to
// the right of the points, shows each label present with its count.
func Write(w io.Writer, format string, points []Point, o Options) error {
	if len(points) == 0 {
		return errors.New("no points to draw")
	}
	if o.Width == 0 {
		o.Width = 8 * vg.Inch
	}
	if o.Height == 0 {
		o.Height = 8 * vg.Inch
	}
	if o.DPI == 0 {
		o.DPI = 150
	}
	if o.Radius == 0 {
		o.Radius = AutoRadius(len(points))
	}
	if o.Alpha == 0 {
		o.Alpha = AutoAlpha(len(points))
	}
	if !(o.Alpha > 0 && o.Alpha <= 1) {
		return fmt.Errorf("opacity %v is not above 0 and at most 1", o.Alpha)
	}
	if o.Width < 0 || o.Height < 0 || o.DPI < 0 || o.Radius < 0 {
		return errors.New("negative size, resolution or radius")
	}
	var canvas vg.CanvasWriterTo
	switch format {
	case "png":
		canvas = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(o.Width, o.Height), vgimg.UseDPI(o.DPI))}
	case "svg":
		canvas = vgsvg.NewWith(vgsvg.UseWH(o.Width, o.Height), vgsvg.EmbedFonts(false))
	default:
		return fmt.Errorf("unknown format %q (want png or svg)", format)
	}
	draw1(draw.New(canvas), points, o)
	_, err := canvas.WriteTo(w)
	return err
}

// draw1 draws the figure onto c.
func draw1(c draw.Canvas, points []Point, o Options) {
	// One white ground under the plot and its legend beside it.
	c.SetColor(color.White)
	c.Fill(c.Rectangle.Path())
	p := plot.New()
	p.BackgroundColor = nil
	p.Title.Text = o.Title
	p.X.Padding, p.Y.Padding = 0, 0

	var counts [Labels]int
	for _, pt := range points {
		counts[pt.Label]++
	}
	legend := plot.NewLegend()
	legend.Top, legend.Left = true, true
	legend.TextStyle.Font.Size = vg.Points(10)
	legend.ThumbnailWidth = vg.Points(10)
	legend.Padding = vg.Points(4)
	legend.YPosition = draw.PosCenter
	for l, n := range counts {
		if n > 0 {
			legend.Add(fmt.Sprintf("%d (%d)", l, n), swatch(Palette[l]))
		}
	}
	margin := vg.Points(8)
	legendWidth := legend.Rectangle(c).Size().X + 2*margin
	pc := draw.Crop(c, 0, -legendWidth, 0, 0)
	pc = draw.Crop(pc, margin, -margin, margin, -margin)

	dots := &scatter{points: points, radius: o.Radius, alpha: o.Alpha}
	p.Add(dots)
	x0, x1, y0, y1 := dots.bounds()
	equalAspect(p, pc, x0, x1, y0, y1)
	p.Draw(pc)

	dc := p.DataCanvas(pc)
	lc := draw.Canvas{Canvas: c.Canvas, Rectangle: vg.Rectangle{
		Min: vg.Point{X: pc.Max.X + margin, Y: dc.Min.Y},
		Max: vg.Point{X: c.Max.X - margin, Y: dc.Max.Y},
	}}
	legend.Draw(lc)
}

// equalAspect sets the axes' ranges to hold the box (x0, x1, y0, y1) with
// one scale on both axes: a unit of x is as long as a unit of y. The data
// area depends on the tick labels, which depend on the ranges, so it
// settles in a few rounds.
func equalAspect(p *plot.Plot, c draw.Canvas, x0, x1, y0, y1 float64) {
	// 3 % of the span on each side keeps points off the axes.
	pad := 0.03 * max(x1-x0, y1-y0)
	if pad == 0 {
		pad = max(1, math.Abs(x0), math.Abs(y0)) * 0.5
	}
	x0, x1, y0, y1 = x0-pad, x1+pad, y0-pad, y1+pad
	cx, cy := (x0+x1)/2, (y0+y1)/2
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = x0, x1, y0, y1
	for range 4 {
		dc := p.DataCanvas(c)
		w, h := float64(dc.Max.X-dc.Min.X), float64(dc.Max.Y-dc.Min.Y)
		if w <= 0 || h <= 0 {
			return
		}
		scale := max((x1-x0)/w, (y1-y0)/h) // data units a unit of length
		p.X.Min, p.X.Max = cx-scale*w/2, cx+scale*w/2
		p.Y.Min, p.Y.Max = cy-scale*h/2, cy+scale*h/2
	}
}

// scatter draws the points, each in its label's colour.
type scatter struct {
	points []Point
	radius vg.Length
	alpha  float64
}

func (s *scatter) bounds() (x0, x1, y0, y1 float64) {
	x0, y0 = math.Inf(1), math.Inf(1)
	x1, y1 = math.Inf(-1), math.Inf(-1)
	for _, p := range s.points {
		x0, x1 = min(x0, p.X), max(x1, p.X)
		y0, y1 = min(y0, p.Y), max(y1, p.Y)
	}
	return
}

// Plot implements plot.Plotter.
func (s *scatter) Plot(c draw.Canvas, plt *plot.Plot) {
	var styles [Labels]draw.GlyphStyle
	for l := range styles {
		col := Palette[l]
		col.A = uint8(math.Round(255 * s.alpha))
		styles[l] = draw.GlyphStyle{Color: col, Radius: s.radius, Shape: draw.CircleGlyph{}}
	}
	trX, trY := plt.Transforms(&c)
	// A fixed seed: the same file gives the same picture.
	order := rand.New(rand.NewPCG(1, 2)).Perm(len(s.points))
	for _, i := range order {
		p := s.points[i]
		c.DrawGlyphNoClip(styles[p.Label], vg.Point{X: trX(p.X), Y: trY(p.Y)})
	}
}

// swatch is a legend entry's thumbnail: an opaque dot of the label's colour.
type swatch color.NRGBA

func (s swatch) Thumbnail(c *draw.Canvas) {
	r := min(vg.Points(3.5), (c.Max.Y-c.Min.Y)/2)
	c.DrawGlyphNoClip(draw.GlyphStyle{Color: color.NRGBA(s), Radius: r, Shape: draw.CircleGlyph{}}, c.Center())
}
