package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/accelnode/accelnode/internal/embedplot"
	"gonum.org/v1/plot/vg"
)

const plotSynopsis = "plot [-o OUT.png|OUT.svg] [-title TEXT] [flags] EMBEDDING.csv"

// plotCommand draws a two-dimensional embedding (x,y,label), such as the
// t-SNE guests write, as a scatter plot coloured by label.
func plotCommand(args []string, stdout, stderr io.Writer) error {
	flags, _ := newCommand("plot", plotSynopsis, stderr)
	out := flags.String("o", "", "the picture to write, .png or .svg; empty means EMBEDDING with .png for .csv")
	title := flags.String("title", "", "the title above the points (default: the file's name and its number of points)")
	size := flags.Float64("size", 8, "the picture's width and height in inches")
	dpi := flags.Int("dpi", 150, "a PNG's pixels an inch")
	radius := flags.Float64("radius", 0, "a point's radius in points (1/72 inch); 0 means by the number of points, from 0.7 for 13,000 and more to 2.5 for 1,000 and fewer")
	alpha := flags.Float64("alpha", 0, "a point's opacity, above 0 and at most 1; 0 means by the number of points, from 0.35 for 30,000 and more to 0.9 for 4,400 and fewer")
	flags.Usage = func() {
		fmt.Fprintf(stderr, "Usage: accelnode %s\n\n"+
			"Draws a two-dimensional embedding as a scatter plot coloured by label, with a\n"+
			"legend and one scale on both axes. EMBEDDING.csv starts with the header\n"+
			"x,y,label; each row after it is a point: x and y finite numbers, the label an\n"+
			"integer from 0 to 9.\n\nFlags:\n", plotSynopsis)
		flags.PrintDefaults()
	}
	// Flags may come after the file too: accelnode plot emb.csv -o emb.svg.
	var files []string
	for {
		if err := parse(flags, args); err != nil {
			return err
		}
		if flags.NArg() == 0 {
			break
		}
		files = append(files, flags.Arg(0))
		args = flags.Args()[1:]
	}
	if len(files) != 1 {
		flags.Usage()
		if len(files) == 0 {
			return errors.New("plot: name one EMBEDDING.csv")
		}
		return fmt.Errorf("plot: name one EMBEDDING.csv, not %d files", len(files))
	}
	in := files[0]
	if *out == "" {
		*out = strings.TrimSuffix(in, filepath.Ext(in)) + ".png"
		if *out == in {
			return fmt.Errorf("plot: %s would be written over; name the picture with -o", in)
		}
	}
	if ext := strings.ToLower(filepath.Ext(*out)); ext != ".png" && ext != ".svg" {
		return fmt.Errorf("-o %s: want a .png or .svg file", *out)
	}
	if !(*size > 0 && *size <= 100) {
		return fmt.Errorf("-size %v: want inches above 0 and at most 100", *size)
	}
	if *dpi < 1 || *dpi > 1200 {
		return fmt.Errorf("-dpi %d: want 1 to 1200", *dpi)
	}
	if !(*radius >= 0 && *radius <= 72) {
		return fmt.Errorf("-radius %v: want 0 to 72 points", *radius)
	}
	if !(*alpha >= 0 && *alpha <= 1) {
		return fmt.Errorf("-alpha %v: want 0 to 1", *alpha)
	}

	points, err := embedplot.ReadFile(in)
	if err != nil {
		return err
	}
	given := map[string]bool{}
	flags.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if !given["title"] {
		*title = fmt.Sprintf("%s: %d points", filepath.Base(in), len(points))
	}
	o := embedplot.Options{
		Title:  *title,
		Width:  vg.Length(*size) * vg.Inch,
		Height: vg.Length(*size) * vg.Inch,
		DPI:    *dpi,
		Radius: vg.Points(*radius),
		Alpha:  *alpha,
	}
	if err := embedplot.WriteFile(points, *out, o); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d points\n", *out, len(points))
	return nil
}
