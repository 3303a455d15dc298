package bench

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Plot draws GFLOP/s against size, one panel per workload and one line per
// backend and mode (and per plain-WebAssembly baseline), with the CPU's peak (and the GPU's, where a GPU
// backend is in the panel) as dashed lines, into path (.svg or .png).
func Plot(r *Report, path string) error {
	var workloads []string
	for _, res := range r.Results {
		if res.GFLOPS > 0 && !slices.Contains(workloads, res.Workload) {
			workloads = append(workloads, res.Workload)
		}
	}
	if len(workloads) == 0 {
		return fmt.Errorf("plot %s: no results to draw", path)
	}
	cols := min(2, len(workloads))
	rows := (len(workloads) + cols - 1) / cols
	grid := make([][]*plot.Plot, rows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	for i, w := range workloads {
		p, err := panel(r, w)
		if err != nil {
			return fmt.Errorf("plot %s: %w", path, err)
		}
		grid[i/cols][i%cols] = p
	}
	for i := len(workloads); i < rows*cols; i++ {
		grid[i/cols][i%cols] = plot.New() // an empty tile keeps the grid square
		grid[i/cols][i%cols].HideAxes()
	}

	width, height := vg.Length(cols)*5*vg.Inch, vg.Length(rows)*3.6*vg.Inch
	var canvas vg.CanvasWriterTo
	switch filepath.Ext(path) {
	case ".svg":
		canvas = vgsvg.NewWith(vgsvg.UseWH(width, height), vgsvg.EmbedFonts(false))
	case ".png":
		canvas = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(110))}
	default:
		return fmt.Errorf("plot %s: want a .svg or .png file", path)
	}
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 6, PadY: vg.Millimeter * 6,
		PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3}
	canvases := plot.Align(grid, tiles, draw.New(canvas))
	for i := range grid {
		for j := range grid[i] {
			grid[i][j].Draw(canvases[i][j])
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := canvas.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return f.Close()
}

// panel is one workload's chart.
func panel(r *Report, workload string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = workload
	p.Y.Label.Text = "GFLOP/s"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	p.Add(plotter.NewGrid())

	type line struct {
		label string
		xys   plotter.XYs
	}
	var lines []*line
	lo, hi := math.Inf(1), math.Inf(-1)
	xlo, xhi := math.Inf(1), math.Inf(-1)
	devices := map[string]bool{}
	for _, res := range r.Results {
		if res.Workload != workload || res.GFLOPS <= 0 {
			continue
		}
		p.X.Label.Text = res.SizeName
		label := res.Backend + " " + res.Mode
		switch res.Backend {
		case Wasm:
			label = "plain wasm"
		case WasmInterruptible:
			label = "plain wasm, interruptible"
		}
		i := slices.IndexFunc(lines, func(l *line) bool { return l.label == label })
		if i < 0 {
			lines = append(lines, &line{label: label})
			i = len(lines) - 1
		}
		x := float64(res.Size)
		lines[i].xys = append(lines[i].xys, plotter.XY{X: x, Y: res.GFLOPS})
		lo, hi = min(lo, res.GFLOPS), max(hi, res.GFLOPS)
		xlo, xhi = min(xlo, x), max(xhi, x)
		devices[res.Device] = true
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("no GFLOP/s for %s", workload)
	}
	for i, l := range lines {
		lp, pts, err := plotter.NewLinePoints(l.xys)
		if err != nil {
			return nil, err
		}
		lp.Color = plotutil.Color(i)
		lp.Width = vg.Points(1.5)
		pts.Color, pts.Shape = plotutil.Color(i), plotutil.Shape(i)
		p.Add(lp, pts)
		p.Legend.Add(l.label, lp, pts)
	}
	peaks := []struct {
		device, label string
		value         float64
	}{{"cpu", "CPU FP32 peak", r.Machine.CPU.PeakGFLOPS.Value}}
	for _, g := range r.Machine.GPUs {
		peaks = append(peaks, struct {
			device, label string
			value         float64
		}{"gpu", g.Name + " FP32 peak", g.PeakGFLOPS.Value})
	}
	for i, pk := range peaks {
		if !devices[pk.device] || pk.value <= 0 {
			continue
		}
		// Two points span the panel; a dashed line marks the roof.
		roofLine, err := plotter.NewLine(plotter.XYs{{X: xlo, Y: pk.value}, {X: xhi, Y: pk.value}})
		if err != nil {
			return nil, err
		}
		roofLine.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		roofLine.Color = color.Gray{Y: uint8(60 + 60*i)}
		p.Add(roofLine)
		p.Legend.Add(fmt.Sprintf("%s %.0f GFLOP/s", pk.label, pk.value), roofLine)
		hi = max(hi, pk.value)
	}
	if xlo == xhi { // one size: give the axis some width
		xlo, xhi = xlo/2, xhi*2
	}
	p.X.Min, p.X.Max = xlo/1.3, xhi*1.3
	// The legend takes the top of the panel: leave its entries' height,
	// and at least the top 40 % of the decades, free of lines. An entry
	// takes about a nineteenth of the panel's height.
	entries := len(lines)
	for _, pk := range peaks {
		if devices[pk.device] && pk.value > 0 {
			entries++
		}
	}
	legend := min(0.65, max(0.4, 0.03+float64(entries)/19))
	p.Y.Min = lo / 3
	p.Y.Max = p.Y.Min * math.Pow(10, math.Log10(hi/p.Y.Min)/(1-legend))
	p.Y.Tick.Marker = ticksUpTo{plot.LogTicks{Prec: -1}, hi * 1.01}
	return p, nil
}

// ticksUpTo labels the axis only up to limit, so that the legend's space
// above the lines carries no figures.
type ticksUpTo struct {
	plot.LogTicks
	limit float64
}

func (t ticksUpTo) Ticks(min, max float64) []plot.Tick {
	var out []plot.Tick
	for _, tk := range t.LogTicks.Ticks(min, max) {
		if tk.Value <= t.limit {
			out = append(out, tk)
		}
	}
	return out
}
