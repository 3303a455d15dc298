package node_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/internal/guesttest"
	"github.com/accelnode/accelnode/node"
)

// rssHelperEnv makes the test binary run one guest that holds all its
// limits allow on the backend and mode it names ("ref strict"), and exit:
// the parent reads the process's peak RSS.
const rssHelperEnv = "NODE_TEST_RSS"

// The limits of the RSS test, and the constant docs/abi.md states: what a
// node may hold beyond a guest's memory and tensor-memory limits on a CPU
// backend (the Go runtime, wazero and the compiled guest, ONNX Runtime's
// library, sessions and arenas, the kernels' small blocks).
const (
	rssMemory       = 96 << 20
	rssTensorMemory = 512 << 20
	rssConstant     = 256 << 20
)

// TestRSSWithinLimits runs a guest that fills its memory, runs matmuls and
// fills its tensor memory, on each CPU backend, and checks that the
// process's peak RSS stays within the two limits and the constant.
func TestRSSWithinLimits(t *testing.T) {
	if os.Getenv(rssHelperEnv) != "" {
		t.Skip("in the helper process")
	}
	if testing.Short() {
		t.Skip("fills 600 MiB")
	}
	hog := guesttest.Path(t, "github.com/accelnode/accelnode/hostfn/testdata/guests/tensorhog")
	for _, target := range []string{"ref strict", "ort fast"} {
		t.Run(target, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestRSSHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), rssHelperEnv+"="+target+" "+hog, guesttest.PrebuiltEnv+"=")
			out, err := cmd.CombinedOutput()
			if strings.Contains(string(out), "unavailable") {
				t.Skipf("%s", out)
			}
			if err != nil {
				t.Fatalf("helper: %v\n%s", err, out)
			}
			usage, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			if !ok {
				t.Skip("no resource usage on this system")
			}
			peak := int64(usage.Maxrss) << 10 // KiB on Linux
			bound := int64(rssMemory + rssTensorMemory + rssConstant)
			t.Logf("peak RSS %d MiB, bound %d MiB: %s", peak>>20, bound>>20, strings.TrimSpace(string(out)))
			if peak > bound {
				t.Errorf("peak RSS %d MiB, over --memory %d MiB + --tensor-memory %d MiB + %d MiB", peak>>20, rssMemory>>20, rssTensorMemory>>20, rssConstant>>20)
			}
		})
	}
}

func TestRSSHelper(t *testing.T) {
	spec := strings.Fields(os.Getenv(rssHelperEnv))
	if len(spec) != 3 {
		t.Skip("run by TestRSSWithinLimits")
	}
	mode, err := accel.ParseMode(spec[1])
	if err != nil {
		t.Fatal(err)
	}
	wasm, err := os.ReadFile(spec[2])
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(context.Background(), node.Config{Backend: spec[0], Mode: mode,
		Limits: node.Limits{Memory: rssMemory, TensorMemory: rssTensorMemory}})
	if err != nil {
		fmt.Println(err) // "unavailable" skips the parent's case
		return
	}
	defer n.Close()
	m, err := n.Compile(context.Background(), wasm)
	if err != nil {
		t.Fatal(err)
	}
	res, err := n.Invoke(context.Background(), m, node.Invocation{Args: []string{"-mem", "48", "-n", "2048"}})
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Stderr)
	}
	fmt.Print(string(res.Stdout))
}
