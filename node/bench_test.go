package node_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"

	"github.com/accelnode/accelnode/accel"
	"github.com/accelnode/accelnode/node"
)

// hostTime reads the time the example cnn guest reports for its forward
// pass through the host functions.
var hostTime = regexp.MustCompile(`host functions:\s+([0-9.]+) ms`)

// BenchmarkCNNGuest times the cnn example guest's forward pass through the
// host functions, as the guest itself reports it, on a node that serves
// many invocations: the first invocation on each backend warms it (ONNX
// Runtime creates its sessions), the timed ones run warm. The figure per
// op is the guest's, in ms; the wall time of an invocation also holds the
// guest's own in-guest reference pass.
func BenchmarkCNNGuest(b *testing.B) {
	// The guest times itself: it needs the host's clock.
	n, err := node.Open(context.Background(), node.Config{Backend: "ref", SystemClock: true})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	m, _ := compile(b, n, "github.com/accelnode/accelnode/examples/cnn")
	fast := accel.Fast
	for _, backend := range []string{"ref", "ort"} {
		for _, batch := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/batch=%d", backend, batch), func(b *testing.B) {
				inv := node.Invocation{Args: []string{"-batch", strconv.Itoa(batch)}, Backend: backend, Mode: &fast}
				if _, err := n.Invoke(context.Background(), m, inv); err != nil { // warm
					b.Skip(err)
				}
				var total float64
				runs := 0
				for b.Loop() {
					runs++
					res, err := n.Invoke(context.Background(), m, inv)
					if err != nil {
						b.Fatal(err)
					}
					ms := hostTime.FindSubmatch(res.Stdout)
					if ms == nil {
						b.Fatalf("no host time in %s", res.Stdout)
					}
					v, _ := strconv.ParseFloat(string(ms[1]), 64)
					total += v
				}
				b.ReportMetric(total/float64(runs), "host-ms")
			})
		}
	}
}
