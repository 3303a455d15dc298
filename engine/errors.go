package engine

import (
	"errors"
	"fmt"
)

// Errors that Compile and Run return wrapped; test for them with errors.Is.
var (
	ErrMalformedModule = errors.New("malformed module")
	ErrMissingExport   = errors.New("missing export")
	ErrTrap            = errors.New("guest trapped")
	ErrMemoryLimit     = errors.New("memory limit exceeded")
	ErrDeadline        = errors.New("deadline exceeded")
	ErrCanceled        = errors.New("canceled")
	ErrBudgetExhausted = errors.New("compute budget exhausted")
	// ErrClosed is returned by an Engine that has been closed; a guest still
	// running when its engine closes is stopped with ErrCanceled and ErrClosed.
	ErrClosed = errors.New("engine closed")
	// ErrForgotten: the module was dropped with Forget; compile its bytes
	// again.
	ErrForgotten = errors.New("module forgotten: compile it again")
	// ErrNotReactor: CompileReactor refused the module (a command, a
	// reserved export name, state a snapshot cannot hold).
	ErrNotReactor = errors.New("not a reactor")
	// ErrBadMethod: a reactor has no export of that name callable as a
	// method, () -> () or () -> i32.
	ErrBadMethod = errors.New("no such method")
)

// ExitError is returned when the guest exits with a non-zero code and
// nothing else went wrong.
type ExitError struct {
	Code uint32
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("guest exited with code %d", e.Code)
}

// runError carries a plain-words message while matching, via errors.Is,
// both its kind (one of the sentinels) and its cause.
type runError struct {
	msg   string
	kind  error
	cause error
}

func newError(kind, cause error, format string, args ...any) error {
	return &runError{msg: fmt.Sprintf(format, args...), kind: kind, cause: cause}
}

func (e *runError) Error() string {
	if e.cause == nil {
		return e.msg
	}
	return e.msg + ": " + e.cause.Error()
}

func (e *runError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}
