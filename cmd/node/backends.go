package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime/debug"
	"text/tabwriter"

	"github.com/accelnode/accelnode/accel"
)

func backendsCommand(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backends", "backends [--format table|json] [--determinism strict|fast]", stderr)
	format := fs.String("format", "table", "output format: table or json")
	bf := addBackendFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	_, opts, err := bf.options(nil)
	if err != nil {
		return err
	}
	reg := accel.Open(opts)
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

// buildVersion is the module version, which since Go 1.24 names the commit
// of a build from a checkout ("+dirty" for uncommitted changes); where the
// build has no version, the commit alone.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown build)"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	version := "(devel)"
	for _, s := range info.Settings {
		switch {
		case s.Key == "vcs.revision":
			version += " " + s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			version += "+dirty"
		}
	}
	return version
}

func versionCommand(stdout io.Writer) error {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintln(stdout, "accelnode (unknown build)")
		return nil
	}
	fmt.Fprintf(stdout, "accelnode %s %s\n", buildVersion(), info.GoVersion)
	for _, dep := range info.Deps {
		fmt.Fprintf(stdout, "  %s %s\n", dep.Path, dep.Version)
	}
	return nil
}
