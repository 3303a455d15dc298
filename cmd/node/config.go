package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/internal/bytesize"
	"github.com/accelnode/accelnode/node"
)

// The settings of a node come from flags, whose defaults come from
// environment variables: this file is the one place that reads either
// into a node.Config. Each command registers the groups it uses, and its
// --help lists just their variables.

// settings are one command's flags that fill a node.Config.
type settings struct {
	fs   *flag.FlagSet
	vars []envVar
	// values by variable name; only registered ones are present.
	values map[string]*string
	models listFlag
	// nnGraphs are --nn-graph and --nn-preload, in order (wasinn.go).
	nnGraphs []func() (node.NNGraph, error)
}

// group is a set of settings registered together.
type group []envVar

var (
	// serving chooses the backend and mode.
	serving = group{env.Backend, env.Determinism, env.CheckRate}
	// backendOpts configures how backends open.
	backendOpts = group{env.Threads, env.CUDAPath, env.CUDADevice, env.CUDADetectTimeout, env.TF32, env.ORTLibrary}
	// limits bound each guest.
	limits = group{env.Memory, env.TensorMemory, env.Timeout, env.Budget}
	// guests set what guests see and where their code is kept.
	guests = group{env.Clock, env.GuestDeterminism, env.CacheDir}
	// logging sets the log level.
	logging = group{env.LogLevel}
)

func newSettings(fs *flag.FlagSet, groups ...group) *settings {
	s := &settings{fs: fs, values: map[string]*string{}}
	for _, g := range groups {
		for _, v := range g {
			s.values[v.Name] = fs.String(v.Flag, v.Value(), v.Description)
			s.vars = append(s.vars, v)
		}
	}
	return s
}

// withModels adds the repeatable --model flag.
func (s *settings) withModels() *settings {
	s.fs.Var(&s.models, "model", "load an ONNX model for guests to open: NAME=PATH.onnx (repeatable); PATH must be a regular file")
	s.fs.Func("nn-graph", "preload an ONNX model for wasi-nn guests' load_by_name: NAME=PATH.onnx (repeatable)", func(v string) error {
		s.nnGraphs = append(s.nnGraphs, func() (node.NNGraph, error) { return parseNNGraph(v) })
		return nil
	})
	s.fs.Func("nn-preload", "preload a wasi-nn graph as WasmEdge does: NAME:ONNX|AUTO:CPU|GPU|TPU|AUTO:PATH (repeatable)", func(v string) error {
		s.nnGraphs = append(s.nnGraphs, func() (node.NNGraph, error) { return parseNNPreload(v) })
		return nil
	})
	return s
}

func (s *settings) has(v envVar) bool { _, ok := s.values[v.Name]; return ok }

func (s *settings) get(v envVar) string { return strings.TrimSpace(*s.values[v.Name]) }

// set overrides a setting, as a command does for its own flags.
func (s *settings) set(v envVar, value string) { *s.values[v.Name] = value }

// flagName is how errors name a setting: its flag.
func flagName(v envVar) string { return "--" + v.Flag }

// config reads the registered settings into a node.Config.
func (s *settings) config(log *slog.Logger) (node.Config, error) {
	cfg := node.Config{Backend: accel.Auto, Mode: accel.Strict, Logger: log}
	var err error
	if s.has(env.Backend) {
		cfg.Backend = s.get(env.Backend)
	}
	if s.has(env.Determinism) {
		if cfg.Mode, err = accel.ParseMode(s.get(env.Determinism)); err != nil {
			return cfg, fmt.Errorf("%s: %w", flagName(env.Determinism), err)
		}
	}
	if s.has(env.CheckRate) {
		if cfg.CheckRate, err = parseFraction(env.CheckRate, s.get(env.CheckRate)); err != nil {
			return cfg, err
		}
	}
	if s.has(env.Threads) {
		if cfg.Backends, cfg.Require, err = s.backendOptions(log); err != nil {
			return cfg, err
		}
	}
	if s.has(env.Memory) {
		if cfg.Limits, err = s.limits(); err != nil {
			return cfg, err
		}
	}
	if s.has(env.Clock) {
		switch c := s.get(env.Clock); c {
		case "system", "deterministic":
			cfg.SystemClock = c == "system"
		default:
			return cfg, fmt.Errorf("%s: invalid clock %q (want system or deterministic)", flagName(env.Clock), c)
		}
	}
	if s.has(env.GuestDeterminism) {
		if g := s.get(env.GuestDeterminism); g != "" {
			if cfg.GuestDeterminism, err = engine.ParseGuestDeterminism(g); err != nil {
				return cfg, fmt.Errorf("%s: %w", flagName(env.GuestDeterminism), err)
			}
		}
	}
	if s.has(env.CacheDir) {
		if dir := s.get(env.CacheDir); dir != "off" {
			cfg.CacheDir = dir
			cfg.Backends.CacheDir = dir
		}
	}
	for _, spec := range s.models {
		name, path, ok := strings.Cut(spec, "=")
		if !ok || name == "" || path == "" {
			return cfg, fmt.Errorf("--model: invalid %q (want NAME=PATH.onnx)", spec)
		}
		cfg.Models = append(cfg.Models, node.ModelFile{Name: name, Path: path})
	}
	for _, parse := range s.nnGraphs {
		g, err := parse()
		if err != nil {
			return cfg, err
		}
		cfg.NNGraphs = append(cfg.NNGraphs, g)
	}
	return cfg, nil
}

// backendOptions reads the backend settings. A library the operator named
// makes its backend required.
func (s *settings) backendOptions(log *slog.Logger) (accel.Options, []string, error) {
	var opts accel.Options
	var require []string
	threads, err := strconv.Atoi(s.get(env.Threads))
	if err != nil || threads < 0 {
		return opts, nil, fmt.Errorf("%s: invalid thread count %q (want 0 or more)", flagName(env.Threads), s.get(env.Threads))
	}
	device, err := strconv.Atoi(s.get(env.CUDADevice))
	if err != nil || device < 0 {
		return opts, nil, fmt.Errorf("%s: invalid GPU ordinal %q (want 0 or more)", flagName(env.CUDADevice), s.get(env.CUDADevice))
	}
	detect, err := parseDuration(s.get(env.CUDADetectTimeout))
	if err != nil || detect == 0 {
		return opts, nil, fmt.Errorf("%s: invalid duration %q (want e.g. 30s)", flagName(env.CUDADetectTimeout), s.get(env.CUDADetectTimeout))
	}
	tf32 := s.get(env.TF32)
	if tf32 != "on" && tf32 != "off" {
		return opts, nil, fmt.Errorf("%s: invalid setting %q (want on or off)", flagName(env.TF32), tf32)
	}
	cudaDirs := s.get(env.CUDAPath)
	if cudaDirs != "" {
		require = append(require, "cuda")
	}
	// The conventional variables of CUDA installations come after the
	// operator's own list; they are hints, not requirements.
	for _, env := range []string{"CUDA_HOME", "CUDA_PATH"} {
		if dir := strings.TrimSpace(os.Getenv(env)); dir != "" {
			cudaDirs = strings.Trim(cudaDirs+":"+filepath.Join(dir, "lib64")+":"+filepath.Join(dir, "targets", "x86_64-linux", "lib")+":"+dir, ":")
		}
	}
	ortLib := s.get(env.ORTLibrary)
	if ortLib != "" {
		require = append(require, "ort")
	}
	return accel.Options{
		Threads:       threads,
		TF32:          tf32 == "on",
		Libraries:     map[string]string{"cuda": cudaDirs, "ort": ortLib},
		Device:        device,
		DetectTimeout: detect,
		Logger:        log,
	}, require, nil
}

// limits reads the guest limits.
func (s *settings) limits() (node.Limits, error) {
	var l node.Limits
	var err error
	if l.Memory, err = bytesize.Parse(s.get(env.Memory)); err != nil {
		return l, fmt.Errorf("%s: %w", flagName(env.Memory), err)
	}
	if l.TensorMemory, err = bytesize.Parse(s.get(env.TensorMemory)); err != nil {
		return l, fmt.Errorf("%s: %w", flagName(env.TensorMemory), err)
	}
	if l.TensorMemory == 0 {
		return l, fmt.Errorf("%s: the tensor memory limit must be positive", flagName(env.TensorMemory))
	}
	if l.Timeout, err = parseDuration(s.get(env.Timeout)); err != nil {
		return l, fmt.Errorf("%s: %w", flagName(env.Timeout), err)
	}
	if l.Budget, err = strconv.ParseUint(s.get(env.Budget), 10, 64); err != nil {
		return l, fmt.Errorf("%s: invalid budget %q (want a whole number of units)", flagName(env.Budget), s.get(env.Budget))
	}
	if err := l.Check(); err != nil {
		return l, fmt.Errorf("%s: %w", flagName(env.Memory), err)
	}
	return l, nil
}

// parseFraction reads a number from 0 to 1; NaN and infinities are refused.
func parseFraction(v envVar, s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > 1 {
		return 0, fmt.Errorf("%s: %q is not a number from 0 to 1", flagName(v), s)
	}
	return f, nil
}

// logger makes the command's logger from --log-level, or one at info level
// where the command has no such flag.
func (s *settings) logger(w io.Writer) (*slog.Logger, error) {
	level := "info"
	if s.has(env.LogLevel) {
		level = s.get(env.LogLevel)
	}
	return newLogger(level, w)
}

// newCommand makes a command's flag set with the settings groups it uses;
// its --help lists the flags, then the environment variables of those
// settings alone.
func newCommand(name, synopsis string, stderr io.Writer, groups ...group) (*flag.FlagSet, *settings) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	s := newSettings(fs, groups...)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: accelnode %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
		if len(s.vars) > 0 {
			fmt.Fprintf(stderr, "\nEnvironment variables (flags override them):\n%s", envHelp(s.vars))
		}
	}
	return fs, s
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }
