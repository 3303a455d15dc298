// Command accelnode runs WebAssembly guests against accelerated host
// functions. See `accelnode --help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/accelnode/accelnode/internal/envconfig"
	"github.com/accelnode/accelnode/internal/ortlib"

	// The backends this binary ships.
	_ "github.com/accelnode/accelnode/accel/cuda"
	_ "github.com/accelnode/accelnode/accel/ort"
	_ "github.com/accelnode/accelnode/accel/ref"
)

const usage = `accelnode runs WebAssembly guests (WASI preview 1) that call accelerated
host functions: matmul, conv2d, tsne_step and the tensor ops a small CNN needs.

Usage:
  accelnode run [flags] MODULE.wasm [-- ARGS...]   run a guest; stdin and stdout are the guest's
  accelnode backends [--format table|json]         list backends and whether they can serve
  accelnode conformance [flags]                    check every backend against ref over a corpus
                                                   of cases (bit-exactness, ulps, invariances)
  accelnode bench [flags]                          time matmul, conv2d, t-SNE and a whole model on
                                                   every backend against the machine's peak and
                                                   against plain WebAssembly
  accelnode version                                print the version

Run 'accelnode COMMAND --help' for a command's flags.

Environment variables (flags override them):
`

// exitError carries the process exit code of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	ortlib.Shutdown() // ONNX Runtime's environment is the process's
	var exit exitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		os.Exit(exit.code)
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "accelnode:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printUsage(stderr)
		return exitError{2}
	}
	switch args[0] {
	case "run":
		return runCommand(ctx, args[1:], stdin, stdout, stderr)
	case "backends":
		return backendsCommand(args[1:], stdout, stderr)
	case "conformance":
		return conformanceCommand(ctx, args[1:], stdout, stderr)
	case "bench":
		return benchCommand(ctx, args[1:], stdout, stderr)
	case "version":
		return versionCommand(stdout)
	case "-h", "-help", "--help", "help":
		printUsage(stdout)
		return nil
	}
	printUsage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, usage)
	fmt.Fprint(w, envconfig.Help())
}

// newFlagSet makes a command's flag set whose --help also lists the
// environment variables.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: accelnode %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\nEnvironment variables (flags override them):\n%s", envconfig.Help())
	}
	return fs
}

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("invalid log level %q (want debug, info, warn or error)", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
