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

	"github.com/accelnode/accelnode/accel/ort"

	// The backends this binary ships.
	_ "github.com/accelnode/accelnode/accel/cuda"
	_ "github.com/accelnode/accelnode/accel/ref"
)

const usage = `accelnode runs WebAssembly guests (WASI preview 1) that call accelerated
host functions: matmul, conv2d, tsne_step, whole ONNX models and the tensor ops
a small CNN needs.

Usage:
  accelnode run [flags] MODULE.wasm [-- ARGS...]   run a guest; stdin and stdout are the guest's
  accelnode backends [--format table|json]         list backends, the modes they serve, and why not
  accelnode conformance [flags]                    check every backend against ref over a corpus
                                                   of cases (bit-exactness, ulps, invariances)
  accelnode bench [flags]                          time matmul, conv2d, t-SNE and a whole model on
                                                   every backend against the machine's peak and
                                                   against plain WebAssembly
  accelnode cache [--clear]                        show, or clear, the compiled-code cache
  accelnode plot [-o OUT.png|.svg] EMBEDDING.csv   draw a 2-D embedding (x,y,label) as a scatter
                                                   plot coloured by label
  accelnode serve [flags]                          run the node as an HTTP service (/v1 jobs, uploads;
                                                   /v2 Open Inference Protocol; /metrics)
  accelnode keys add NAME [--scopes S] | keys list make and list the service's API keys
  accelnode upload [flags] NAME MODEL.onnx         send a model to a node (--node) in resumable chunks
                                                   and register it; --resume ID continues an upload
  accelnode submit [flags] MODULE.wasm|SHA256 [-- ARGS...]
                                                   run a guest on a node and print the job's id; with
                                                   --wait, its output and exit code, as run does;
                                                   --replicas URL,URL,... compares nodes' receipts
  accelnode receipt verify [--node FP] FILE | receipt get JOB
                                                   check a job's signed receipt, or fetch one
  accelnode job [--wait] ID | job cancel ID | job list
                                                   show, wait for, cancel or list a node's jobs
  accelnode models [--format table|json] [NAME]    list a node's models, or describe one
  accelnode infer MODEL [--input NAME=SHAPE:VALUES ...] [--format table|json]
                                                   run a node's model over /v2 and print its outputs;
                                                   VALUES a comma list, @FILE (raw little-endian) or sin
  accelnode version                                print the version

Run 'accelnode COMMAND --help' for a command's flags and environment variables.

Exit status of accelnode run: the guest's own exit code when it exits by
itself, or one of these, which guests should therefore not use:
  121  the guest exhausted its compute budget (--budget)
  122  the guest exceeded its memory limit (--memory) and failed
  123  the guest trapped
  124  the guest ran past its deadline (--timeout)
  125  accelnode itself failed: a bad flag, a backend that cannot serve, a file it cannot read
  126  the module cannot run: not WebAssembly, no _start, or it needs more memory than its limit
  127  the module file does not exist
  130  interrupted by SIGINT (143 for SIGTERM); the guest was stopped
Other commands exit 0 on success, 1 when what they checked failed, and 125 on an error.

Environment variables (flags override them):
`

// Exit codes beside the guest's own.
const (
	exitFailed    = 1 // what the command checked failed (conformance)
	exitBudget    = 121
	exitMemory    = 122
	exitTrap      = 123
	exitDeadline  = 124
	exitNode      = 125
	exitModule    = 126
	exitNotFound  = 127
	exitSignalled = 128 // plus the signal's number
)

// exitError carries the process exit code of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// signalled is the cause of a context canceled by a signal.
type signalled struct{ sig syscall.Signal }

func (s signalled) Error() string { return "interrupted by " + s.sig.String() }

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		if sig, ok := (<-sigs).(syscall.Signal); ok {
			cancel(signalled{sig})
		}
		signal.Stop(sigs) // a second signal ends the process at once
	}()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	ort.Shutdown() // ONNX Runtime's environment is the process's
	os.Exit(exitCode(ctx, err, os.Stderr))
}

// exitCode turns a command's result into the process's exit status,
// printing the error of a failed command.
func exitCode(ctx context.Context, err error, stderr io.Writer) int {
	var exit exitError
	var sig signalled
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.code
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(context.Cause(ctx), &sig):
		fmt.Fprintln(stderr, "accelnode:", err)
		return exitSignalled + int(sig.sig)
	}
	fmt.Fprintln(stderr, "accelnode:", err)
	return exitNode
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printUsage(stderr)
		return exitError{exitNode}
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
	case "cache":
		return cacheCommand(args[1:], stdout, stderr)
	case "plot":
		return plotCommand(args[1:], stdout, stderr)
	case "serve":
		return serveCommand(ctx, args[1:], stderr)
	case "keys":
		return keysCommand(args[1:], stdout, stderr)
	case "upload":
		return uploadCommand(ctx, args[1:], stdout, stderr)
	case "receipt":
		return receiptCommand(ctx, args[1:], stdin, stdout, stderr)
	case "submit":
		return submitCommand(ctx, args[1:], stdin, stdout, stderr)
	case "job":
		return jobCommand(ctx, args[1:], stdout, stderr)
	case "models":
		return modelsCommand(ctx, args[1:], stdout, stderr)
	case "infer":
		return inferCommand(ctx, args[1:], stdout, stderr)
	case "version":
		return versionCommand(stdout)
	case "-h", "-help", "--help", "help":
		printUsage(stdout)
		return nil
	}
	printUsage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

// parse parses a command line. The flag package prints what is wrong with
// it, and the usage; that is a usage error of accelnode's own.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitError{exitNode}
	}
	return nil
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, usage)
	fmt.Fprint(w, envHelp(env.all()))
}

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("--log-level: invalid level %q (want debug, info, warn or error)", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
