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
	"github.com/accelnode/accelnode/internal/envconfig"
	"github.com/accelnode/accelnode/node"
)

// The settings of a node come from flags, whose defaults come from
// environment variables: this file is the one place that reads either
// into a node.Config. Each command registers the groups it uses, and its
// --help lists just their variables.

// settings are one command's flags that fill a node.Config.
type settings struct {
	fs   *flag.FlagSet
	vars []envconfig.Var
	// values by variable name; only registered ones are present.
	values map[string]*string
	models listFlag
}

// group is a set of settings registered together.
type group []envconfig.Var

var (
	// serving chooses the backend and mode.
	serving = group{envconfig.Backend, envconfig.Determinism, envconfig.CheckRate}
	// backendOpts configures how backends open.
	backendOpts = group{envconfig.Threads, envconfig.CUDAPath, envconfig.CUDADevice, envconfig.CUDADetectTimeout, envconfig.TF32, envconfig.ORTLibrary}
	// limits bound each guest.
	limits = group{envconfig.Memory, envconfig.TensorMemory, envconfig.Timeout, envconfig.Budget}
	// guests set what guests see and where their code is kept.
	guests = group{envconfig.Clock, envconfig.CacheDir}
	// logging sets the log level.
	logging = group{envconfig.LogLevel}
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
	return s
}

func (s *settings) has(v envconfig.Var) bool { _, ok := s.values[v.Name]; return ok }

func (s *settings) get(v envconfig.Var) string { return strings.TrimSpace(*s.values[v.Name]) }

// set overrides a setting, as a command does for its own flags.
func (s *settings) set(v envconfig.Var, value string) { *s.values[v.Name] = value }

// flagName is how errors name a setting: its flag.
func flagName(v envconfig.Var) string { return "--" + v.Flag }

// config reads the registered settings into a node.Config.
func (s *settings) config(log *slog.Logger) (node.Config, error) {
	cfg := node.Config{Backend: accel.Auto, Mode: accel.Strict, Logger: log}
	var err error
	if s.has(envconfig.Backend) {
		cfg.Backend = s.get(envconfig.Backend)
	}
	if s.has(envconfig.Determinism) {
		if cfg.Mode, err = accel.ParseMode(s.get(envconfig.Determinism)); err != nil {
			return cfg, fmt.Errorf("%s: %w", flagName(envconfig.Determinism), err)
		}
	}
	if s.has(envconfig.CheckRate) {
		if cfg.CheckRate, err = parseFraction(envconfig.CheckRate, s.get(envconfig.CheckRate)); err != nil {
			return cfg, err
		}
	}
	if s.has(envconfig.Threads) {
		if cfg.Backends, cfg.Require, err = s.backendOptions(log); err != nil {
			return cfg, err
		}
	}
	if s.has(envconfig.Memory) {
		if cfg.Limits, err = s.limits(); err != nil {
			return cfg, err
		}
	}
	if s.has(envconfig.Clock) {
		switch c := s.get(envconfig.Clock); c {
		case "system", "deterministic":
			cfg.SystemClock = c == "system"
		default:
			return cfg, fmt.Errorf("%s: invalid clock %q (want system or deterministic)", flagName(envconfig.Clock), c)
		}
	}
	if s.has(envconfig.CacheDir) {
		if dir := s.get(envconfig.CacheDir); dir != "off" {
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
	return cfg, nil
}

// backendOptions reads the backend settings. A library the operator named
// makes its backend required.
func (s *settings) backendOptions(log *slog.Logger) (accel.Options, []string, error) {
	var opts accel.Options
	var require []string
	threads, err := strconv.Atoi(s.get(envconfig.Threads))
	if err != nil || threads < 0 {
		return opts, nil, fmt.Errorf("%s: invalid thread count %q (want 0 or more)", flagName(envconfig.Threads), s.get(envconfig.Threads))
	}
	device, err := strconv.Atoi(s.get(envconfig.CUDADevice))
	if err != nil || device < 0 {
		return opts, nil, fmt.Errorf("%s: invalid GPU ordinal %q (want 0 or more)", flagName(envconfig.CUDADevice), s.get(envconfig.CUDADevice))
	}
	detect, err := envconfig.ParseDuration(s.get(envconfig.CUDADetectTimeout))
	if err != nil || detect == 0 {
		return opts, nil, fmt.Errorf("%s: invalid duration %q (want e.g. 30s)", flagName(envconfig.CUDADetectTimeout), s.get(envconfig.CUDADetectTimeout))
	}
	tf32 := s.get(envconfig.TF32)
	if tf32 != "on" && tf32 != "off" {
		return opts, nil, fmt.Errorf("%s: invalid setting %q (want on or off)", flagName(envconfig.TF32), tf32)
	}
	cudaDirs := s.get(envconfig.CUDAPath)
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
	ortLib := s.get(envconfig.ORTLibrary)
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
	if l.Memory, err = envconfig.ParseBytes(s.get(envconfig.Memory)); err != nil {
		return l, fmt.Errorf("%s: %w", flagName(envconfig.Memory), err)
	}
	if l.TensorMemory, err = envconfig.ParseBytes(s.get(envconfig.TensorMemory)); err != nil {
		return l, fmt.Errorf("%s: %w", flagName(envconfig.TensorMemory), err)
	}
	if l.TensorMemory == 0 {
		return l, fmt.Errorf("%s: the tensor memory limit must be positive", flagName(envconfig.TensorMemory))
	}
	if l.Timeout, err = envconfig.ParseDuration(s.get(envconfig.Timeout)); err != nil {
		return l, fmt.Errorf("%s: %w", flagName(envconfig.Timeout), err)
	}
	if l.Budget, err = strconv.ParseUint(s.get(envconfig.Budget), 10, 64); err != nil {
		return l, fmt.Errorf("%s: invalid budget %q (want a whole number of units)", flagName(envconfig.Budget), s.get(envconfig.Budget))
	}
	if err := l.Check(); err != nil {
		return l, fmt.Errorf("%s: %w", flagName(envconfig.Memory), err)
	}
	return l, nil
}

// parseFraction reads a number from 0 to 1; NaN and infinities are refused.
func parseFraction(v envconfig.Var, s string) (float64, error) {
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
	if s.has(envconfig.LogLevel) {
		level = s.get(envconfig.LogLevel)
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
			fmt.Fprintf(stderr, "\nEnvironment variables (flags override them):\n%s", envconfig.Help(s.vars))
		}
	}
	return fs, s
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }
