package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/accelnode/accelnode/engine"
	"github.com/accelnode/accelnode/internal/guesttest"
)

// TestSilentStdinHoldsNoDeadline checks that a guest waiting for input on a
// pipe that stays open and silent is stopped by its deadline, whether it
// reads (fd_read) or polls (poll_oneoff).
func TestSilentStdinHoldsNoDeadline(t *testing.T) {
	for _, tc := range []struct {
		name string
		wasm []byte
	}{
		{"fd_read", guesttest.Build(t, "github.com/accelnode/accelnode/engine/testdata/guests/echo")},
		{"poll_oneoff", pollStdinWasm},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, w := io.Pipe()
			defer w.Close() // open and silent until the test ends
			const timeout = 300 * time.Millisecond
			m := compile(t, shared, tc.wasm)
			start := time.Now()
			_, err := shared.Run(context.Background(), m, engine.Invocation{Stdin: r, Timeout: timeout})
			if !errors.Is(err, engine.ErrDeadline) {
				t.Errorf("error %v, want the deadline", err)
			}
			if over := time.Since(start) - timeout; over > time.Second {
				t.Errorf("the guest outlived its deadline by %v", over)
			}
		})
	}
}

// TestStdinStillReadsInput checks that the deadline-aware standard input
// delivers all its data, in order, to a guest that reads it.
func TestStdinStillReadsInput(t *testing.T) {
	in := make([]byte, 300<<10) // several chunks
	for i := range in {
		in[i] = byte(i * 7)
	}
	var out bytesBuffer
	_, err := shared.Run(context.Background(), compile(t, shared, guesttest.Build(t, "github.com/accelnode/accelnode/engine/testdata/guests/echo")),
		engine.Invocation{Stdin: &slowReader{data: in}, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	if string(out.b) != string(in) {
		t.Errorf("the guest echoed %d bytes, want the %d it was given", len(out.b), len(in))
	}
}

type bytesBuffer struct{ b []byte }

func (w *bytesBuffer) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// slowReader hands out its data a few bytes at a time.
type slowReader struct{ data []byte }

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 1000)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// rssHelperEnv makes the test binary run one page-by-page growth to the
// limit it names, in MiB, and exit: the parent reads its peak RSS.
const rssHelperEnv = "ENGINE_TEST_GROW_MIB"

// rssAllowance is what a guest's process may hold beyond its linear memory
// in this test: the Go runtime, wazero, the compiled guest. docs/abi.md
// states the node's own constant, which includes the backends.
const rssAllowance = 96 << 20

// TestGrowingByPagesCostsWhatIsGrown checks that memory grown one page at a
// time and touched costs about the memory grown: the peak RSS of a process
// that grows a guest to its limit stays within the limit plus a constant.
func TestGrowingByPagesCostsWhatIsGrown(t *testing.T) {
	if mib := os.Getenv(rssHelperEnv); mib != "" {
		t.Skip("in the helper process")
	}
	if testing.Short() {
		t.Skip("grows a guest to 512 MiB")
	}
	const limitMiB = 512
	cmd := exec.Command(os.Args[0], "-test.run=^TestRSSHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), rssHelperEnv+"="+strconv.Itoa(limitMiB))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	usage, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Skip("no resource usage on this system")
	}
	peak := int64(usage.Maxrss) << 10 // KiB on Linux
	t.Logf("peak RSS %d MiB growing to %d MiB by pages", peak>>20, limitMiB)
	if bound := int64(limitMiB<<20) + rssAllowance; peak > bound {
		t.Errorf("peak RSS %d MiB, over the %d MiB limit plus %d MiB", peak>>20, limitMiB, rssAllowance>>20)
	}
}

func TestRSSHelper(t *testing.T) {
	mib, err := strconv.Atoi(os.Getenv(rssHelperEnv))
	if err != nil {
		t.Skip("run by TestGrowingByPagesCostsWhatIsGrown")
	}
	res, err := shared.Run(context.Background(), compile(t, shared, growPagesWasm), engine.Invocation{MemoryLimitPages: uint32(mib << 4)})
	if err != nil {
		t.Fatal(err)
	}
	if want := uint32(mib << 4); res.MemoryPages != want {
		t.Fatalf("grew to %d pages, want %d", res.MemoryPages, want)
	}
	fmt.Println("grew to", res.MemoryPages, "pages")
}

// TestRefusedGrowthHandledIsSuccess pins down the documented rule: a guest
// whose memory.grow was refused at its limit and that carries on and exits
// 0 succeeded; the limit is blamed only when the guest then fails.
func TestRefusedGrowthHandledIsSuccess(t *testing.T) {
	res, err := shared.Run(context.Background(), compile(t, shared, growPagesWasm), engine.Invocation{MemoryLimitPages: 32})
	if err != nil {
		t.Fatalf("error %v, want success", err)
	}
	if res.MemoryPages != 32 {
		t.Errorf("grew to %d pages, want the limit of 32", res.MemoryPages)
	}
	// The same refusal followed by a trap is the limit's fault.
	if _, err := shared.Run(context.Background(), compile(t, shared, growWasm), engine.Invocation{MemoryLimitPages: 32}); !errors.Is(err, engine.ErrMemoryLimit) {
		t.Errorf("error %v, want the memory limit", err)
	}
}

// TestMemoryLimitCappedBelow4GiB checks that no guest gets a memory of
// exactly 4 GiB, whose size wazero reports as 0.
func TestMemoryLimitCappedBelow4GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("reserves 4 GiB of address space")
	}
	// A module that asks for 65536 pages at the start is refused.
	max := []byte{
		0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
		0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
		0x03, 0x02, 0x01, 0x00,
		0x05, 0x05, 0x01, 0x00, 0x80, 0x80, 0x04, // memory: min 65536
		0x07, 0x0a, 0x01, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x00,
		0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b,
	}
	_, err := shared.Run(context.Background(), compile(t, shared, max), engine.Invocation{MemoryLimitPages: 65536})
	if !errors.Is(err, engine.ErrMemoryLimit) {
		t.Errorf("error %v, want the memory limit", err)
	}
}
