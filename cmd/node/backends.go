package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime/debug"
	"strconv"
	"text/tabwriter"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/internal/envconfig"
)

func backendsCommand(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backends", "backends [--format table|json]", stderr)
	format := fs.String("format", "table", "output format: table or json")
	threads := fs.String("threads", envconfig.Threads.Value(), "CPU threads per backend; 0 means one per core")
	if err := fs.Parse(args); err != nil {
		return err
	}
	n, err := strconv.Atoi(*threads)
	if err != nil {
		return fmt.Errorf("invalid thread count %q", *threads)
	}
	reg := accel.Open(accel.Options{Threads: n})
	defer reg.Close()
	var statuses []accel.Status
	for _, b := range reg.Backends() {
		statuses = append(statuses, b.Status())
	}
	switch *format {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(statuses)
	case "table":
		tw := tabwriter.NewWriter(stdout, 0, 0, 3, ' ', 0)
		fmt.Fprintln(tw, "NAME\tAVAILABLE\tDETERMINISTIC\tDEVICE\tREASON")
		for _, s := range statuses {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, yesNo(s.Available), yesNo(s.Deterministic), s.Device, s.Reason)
		}
		return tw.Flush()
	}
	return fmt.Errorf("unknown format %q (want table or json)", *format)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func versionCommand(stdout io.Writer) error {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintln(stdout, "accelnode (unknown build)")
		return nil
	}
	version := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			version += " " + s.Value
		}
	}
	fmt.Fprintf(stdout, "accelnode %s %s\n", version, info.GoVersion)
	for _, dep := range info.Deps {
		fmt.Fprintf(stdout, "  %s %s\n", dep.Path, dep.Version)
	}
	return nil
}
