package engine

import (
	"context"
	"fmt"
	"io"
	"time"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
)

// stdinChunk is the most a read of the guest's standard input asks of the
// underlying reader at once.
const stdinChunk = 32 << 10

// stdin is a guest's standard input that gives up when the invocation ends:
// a read or poll waiting on a pipe that stays open and silent returns once
// the context is done, so the deadline holds. One goroutine reads the
// underlying reader, on demand and at most one chunk ahead of the guest.
// If the underlying reader never returns, that goroutine stays blocked in
// it after the invocation, holding nothing else.
type stdin struct {
	ctx     context.Context
	src     io.Reader
	want    chan int         // sizes asked of the reader goroutine
	got     chan stdinResult // its answers; buffered, so it never blocks
	started bool
	asked   bool   // a chunk has been asked for and not yet received
	pending []byte // received but not yet read by the guest
	err     error  // the reader's error, after pending is drained
}

type stdinResult struct {
	data []byte
	err  error
}

func newStdin(ctx context.Context, src io.Reader) *stdin {
	return &stdin{ctx: ctx, src: src, want: make(chan int), got: make(chan stdinResult, 1)}
}

// close stops the reader goroutine once its current read returns.
func (s *stdin) close() {
	if s.started {
		close(s.want)
	}
}

func (s *stdin) pump() {
	for n := range s.want {
		buf := make([]byte, n)
		k, err := s.src.Read(buf)
		s.got <- stdinResult{buf[:k], err}
	}
}

// fill waits until data or an error is pending, the context ends, or
// timeout fires (nil waits without one). It reports whether something is
// pending.
func (s *stdin) fill(timeout <-chan time.Time) (bool, error) {
	for len(s.pending) == 0 && s.err == nil {
		if !s.started {
			s.started = true
			go s.pump()
		}
		if !s.asked {
			s.want <- stdinChunk
			s.asked = true
		}
		select {
		case r := <-s.got:
			s.asked = false
			s.pending, s.err = r.data, r.err
		case <-s.ctx.Done():
			return false, fmt.Errorf("standard input: %w", s.ctx.Err())
		case <-timeout:
			return false, nil
		}
	}
	return true, nil
}

func (s *stdin) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if _, err := s.fill(nil); err != nil {
		return 0, err
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	if n == 0 {
		return 0, s.err
	}
	return n, nil
}

// Poll implements wazero's experimental sys.Pollable for poll_oneoff: it
// waits at most timeoutMillis (forever when negative) for input.
func (s *stdin) Poll(flag experimentalsys.Pflag, timeoutMillis int32) (bool, experimentalsys.Errno) {
	if flag != experimentalsys.POLLIN {
		return false, experimentalsys.ENOTSUP
	}
	var timeout <-chan time.Time
	if timeoutMillis >= 0 {
		t := time.NewTimer(time.Duration(timeoutMillis) * time.Millisecond)
		defer t.Stop()
		timeout = t.C
	}
	ready, err := s.fill(timeout)
	if err != nil {
		return false, experimentalsys.EINTR
	}
	return ready, 0
}
