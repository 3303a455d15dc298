package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/accelnode/accelnode/accel"
)

func backendsCommand(args []string, stdout, stderr io.Writer) error {
	flags, set := newCommand("backends", "backends [--format table|json] [flags]", stderr, backendOpts)
	format := flags.String("format", "table", "output format: table or json")
	if err := parse(flags, args); err != nil {
		return err
	}
	if *format != "table" && *format != "json" {
		return fmt.Errorf("--format: unknown format %q (want table or json)", *format)
	}
	cfg, err := set.config(nil)
	if err != nil {
		return err
	}
	reg := accel.Open(cfg.Backends)
	defer reg.Close()
	var statuses []accel.Status
	for _, b := range reg.Backends() {
		statuses = append(statuses, b.Status())
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(statuses)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tAVAILABLE\tMODES\tDEVICE\tREASON")
	for _, s := range statuses {
		modes := "-"
		if s.Available {
			names := make([]string, len(s.Modes))
			for i, m := range s.Modes {
				names[i] = m.String()
			}
			modes = strings.Join(names, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, yesNo(s.Available), modes, s.Device, s.Reason)
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// cacheCommand shows where compiled guest code and GPU kernels are kept,
// and clears them.
func cacheCommand(args []string, stdout, stderr io.Writer) error {
	flags, set := newCommand("cache", "cache [--clear] [--cache-dir DIR]", stderr, group{env.CacheDir})
	clearCache := flags.Bool("clear", false, "remove the cache directory and everything in it")
	if err := parse(flags, args); err != nil {
		return err
	}
	dir := set.get(env.CacheDir)
	if dir == "off" || dir == "" {
		fmt.Fprintln(stdout, "the cache is off: compiled code is kept in memory only")
		return nil
	}
	var size int64
	files := 0
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				size += info.Size()
				files++
			}
		}
		return nil
	})
	if !*clearCache {
		fmt.Fprintf(stdout, "%s: %d files, %s\n", dir, files, mib(size))
		return nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clear the cache: %w", err)
	}
	fmt.Fprintf(stdout, "removed %s (%d files, %s)\n", dir, files, mib(size))
	return nil
}

// mib writes a byte count in MiB, to one decimal.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

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
