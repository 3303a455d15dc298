package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/internal/guesttest"
)

func reactor(t *testing.T) *engine.Module {
	t.Helper()
	m, err := shared.CompileReactor(context.Background(), guesttest.BuildReactor(t, "github.com/accelnode/accelnode/engine/testdata/guests/reactor"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func start(t *testing.T, m *engine.Module, cfg engine.ReactorConfig, snap *engine.Snapshot) *engine.Reactor {
	t.Helper()
	r, _, err := shared.StartReactor(context.Background(), m, cfg, snap, engine.CallLimits{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

func call(t *testing.T, r *engine.Reactor, method string) uint32 {
	t.Helper()
	code, _, err := r.Call(context.Background(), method, engine.CallLimits{Timeout: time.Minute})
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return code
}

func TestReactorKeepsState(t *testing.T) {
	r := start(t, reactor(t), engine.ReactorConfig{}, nil)
	for i := uint32(1); i <= 3; i++ {
		if got := call(t, r, "inc"); got != i {
			t.Fatalf("inc #%d = %d", i, got)
		}
	}
	if got := call(t, r, "code"); got != 7 {
		t.Errorf("code = %d, want its own 7", got)
	}
	if got := call(t, r, "none"); got != 0 {
		t.Errorf("none = %d, want 0", got)
	}
	if got := call(t, r, "get"); got != 4 {
		t.Errorf("get = %d, want 4: a method's code keeps its state", got)
	}
}

func TestReactorRefuses(t *testing.T) {
	m := reactor(t)
	r := start(t, m, engine.ReactorConfig{}, nil)
	for _, name := range []string{"missing", "_initialize", "add", "memory"} {
		if _, _, err := r.Call(context.Background(), name, engine.CallLimits{}); !errors.Is(err, engine.ErrBadMethod) {
			t.Errorf("%s: err = %v, want ErrBadMethod", name, err)
		}
	}
	if got := call(t, r, "inc"); got != 1 {
		t.Errorf("inc after refusals = %d, want 1", got)
	}
	cmd, err := shared.CompileReactor(context.Background(), guesttest.Build(t, "github.com/accelnode/accelnode/engine/testdata/guests/echo"))
	if !errors.Is(err, engine.ErrNotReactor) || !strings.Contains(err.Error(), "_start") {
		t.Errorf("command as reactor: %v, %v; want ErrNotReactor naming _start", cmd, err)
	}
	if _, _, err := shared.StartReactor(context.Background(), goGuest(t, shared, "echo"), engine.ReactorConfig{}, nil, engine.CallLimits{}); !errors.Is(err, engine.ErrNotReactor) {
		t.Errorf("command compiled by Compile: err = %v, want ErrNotReactor", err)
	}
}

func TestReactorCallFails(t *testing.T) {
	tests := []struct {
		method  string
		lim     engine.CallLimits
		memory  uint32
		wantErr error
	}{
		{method: "trap", wantErr: engine.ErrTrap},
		{method: "spin", lim: engine.CallLimits{Timeout: 200 * time.Millisecond}, wantErr: engine.ErrDeadline},
		{method: "pay", lim: engine.CallLimits{Budget: 999}, wantErr: engine.ErrBudgetExhausted},
		{method: "grow", memory: 256, wantErr: engine.ErrMemoryLimit},
		{method: "exit", wantErr: &engine.ExitError{}},
	}
	m := reactor(t)
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			r := start(t, m, engine.ReactorConfig{MemoryLimitPages: tt.memory}, nil)
			call(t, r, "inc")
			_, res, err := r.Call(context.Background(), tt.method, tt.lim)
			var exit *engine.ExitError
			if _, ok := tt.wantErr.(*engine.ExitError); ok {
				if !errors.As(err, &exit) || exit.Code != 0 {
					t.Fatalf("err = %v, want an exit with code 0", err)
				}
			} else if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !res.Started || res.Elapsed <= 0 {
				t.Errorf("result %+v", res)
			}
			if _, _, err := r.Call(context.Background(), "get", engine.CallLimits{}); err == nil {
				t.Error("a call after a failed one succeeded")
			}
			if _, err := r.Snapshot(); err == nil {
				t.Error("snapshot after a failed call succeeded")
			}
		})
	}
}

func TestReactorSnapshotRestore(t *testing.T) {
	m := reactor(t)
	r := start(t, m, engine.ReactorConfig{}, nil)
	for range 5 {
		call(t, r, "inc")
	}
	call(t, r, "grow") // the memory grows past its size at start
	snap, err := r.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if snap.Pages <= m.MinMemoryPages() || len(snap.Globals) == 0 {
		t.Fatalf("snapshot of %d pages (the guest starts with %d) and %d globals", snap.Pages, m.MinMemoryPages(), len(snap.Globals))
	}
	restored := start(t, m, engine.ReactorConfig{}, snap)
	again, err := restored.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, again, snap)
	if got := call(t, restored, "get"); got != 5 {
		t.Errorf("get on the restored instance = %d, want 5", got)
	}
	if got := call(t, restored, "grow"); got != 2 {
		t.Errorf("grow on the restored instance = %d, want 2", got)
	}
	if got := call(t, r, "inc"); got != 6 {
		t.Errorf("inc on the original = %d, want 6", got)
	}
	if got := call(t, restored, "inc"); got != 6 {
		t.Errorf("inc on the restored = %d, want 6: the two are separate", got)
	}

	// A snapshot too large for the memory limit does not start.
	if _, _, err := shared.StartReactor(context.Background(), m, engine.ReactorConfig{MemoryLimitPages: snap.Pages - 1}, snap, engine.CallLimits{}); !errors.Is(err, engine.ErrMemoryLimit) {
		t.Errorf("restore over the memory limit: err = %v", err)
	}
}

// sameSnapshot compares two snapshots as memories, whatever their
// segments.
func sameSnapshot(t *testing.T, got, want *engine.Snapshot) {
	t.Helper()
	flat := func(s *engine.Snapshot) []byte {
		b := make([]byte, int(s.Pages)<<16)
		for _, seg := range s.Memory {
			copy(b[seg.Offset:], seg.Data)
		}
		return b
	}
	if got.Pages != want.Pages || !bytes.Equal(flat(got), flat(want)) {
		t.Errorf("memory differs: %d pages, want %d", got.Pages, want.Pages)
	}
	if fmt.Sprint(got.Globals) != fmt.Sprint(want.Globals) {
		t.Errorf("globals %v, want %v", got.Globals, want.Globals)
	}
}

func TestReactorClosedEngine(t *testing.T) {
	ctx := context.Background()
	e, err := engine.New(ctx, engine.Config{HostModules: []engine.HostModule{meterModule{}}, CacheDir: guesttest.CacheDir()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := e.CompileReactor(ctx, guesttest.BuildReactor(t, "github.com/accelnode/accelnode/engine/testdata/guests/reactor"))
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := e.StartReactor(ctx, m, engine.ReactorConfig{}, nil, engine.CallLimits{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := r.Call(ctx, "spin", engine.CallLimits{})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, engine.ErrClosed) {
		t.Errorf("spinning call: err = %v, want ErrClosed", err)
	}
	r.Close(ctx)
}
