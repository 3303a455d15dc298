package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/accelnode/accelnode/accel/ort"
	"github.com/accelnode/accelnode/node"
)

// nodeCollector reports the node's backends when scraped: whether each is
// in service, and ONNX Runtime's session caches.
type nodeCollector struct {
	n                                      *node.Node
	up, cacheSessions, cacheLookups, evict *prometheus.Desc
	calls, tensors, tensorBytes            *prometheus.Desc
	deviceMemory                           *prometheus.Desc
}

func newNodeCollector(n *node.Node) *nodeCollector {
	return &nodeCollector{
		n: n,
		up: prometheus.NewDesc("accelnode_backend_available", "Whether a backend is available on this machine (1) or not (0).",
			[]string{"backend"}, nil),
		cacheSessions: prometheus.NewDesc("accelnode_ort_cached_sessions", "ONNX Runtime sessions cached, by cache (ops or models).",
			[]string{"cache"}, nil),
		cacheLookups: prometheus.NewDesc("accelnode_ort_cache_lookups_total", "ONNX Runtime session cache lookups, by cache and result (hit or miss).",
			[]string{"cache", "result"}, nil),
		evict: prometheus.NewDesc("accelnode_ort_cache_evictions_total", "ONNX Runtime sessions dropped to stay within a cache's capacity.",
			[]string{"cache"}, nil),
		calls: prometheus.NewDesc("accelnode_host_calls_total", "Host calls made by guests, by function (matmul, tensor_create, model_run, ...).",
			[]string{"function"}, nil),
		tensors: prometheus.NewDesc("accelnode_live_tensors", "Tensors held by running guests and inferences, by backend.",
			[]string{"backend"}, nil),
		deviceMemory: prometheus.NewDesc("accelnode_device_memory_bytes", "A device's own memory (a GPU's), by backend: its total, and what tensors hold (in_use).",
			[]string{"backend", "kind"}, nil),
		tensorBytes: prometheus.NewDesc("accelnode_live_tensor_bytes", "Bytes of the tensors held by running guests and inferences, by backend.",
			[]string{"backend"}, nil),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.cacheSessions, c.cacheLookups, c.evict, c.calls, c.tensors, c.tensorBytes, c.deviceMemory} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.Stats()
	for name, n := range st.Calls {
		ch <- prometheus.MustNewConstMetric(c.calls, prometheus.CounterValue, float64(n), name)
	}
	for backend, n := range st.Tensors {
		ch <- prometheus.MustNewConstMetric(c.tensors, prometheus.GaugeValue, float64(n), backend)
		ch <- prometheus.MustNewConstMetric(c.tensorBytes, prometheus.GaugeValue, float64(st.TensorBytes[backend]), backend)
	}
	for _, b := range c.n.Registry().Backends() {
		up := 0.0
		if b.Status().Available {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, b.Name())
		if st := b.Status(); st.MemoryTotal > 0 {
			ch <- prometheus.MustNewConstMetric(c.deviceMemory, prometheus.GaugeValue, float64(st.MemoryTotal), b.Name(), "total")
			ch <- prometheus.MustNewConstMetric(c.deviceMemory, prometheus.GaugeValue, float64(st.MemoryInUse), b.Name(), "in_use")
		}
		o, ok := b.(*ort.Backend)
		if !ok || up == 0 {
			continue
		}
		st := o.CacheStats()
		for _, cc := range []struct {
			name string
			v    ort.CacheCounts
		}{{"ops", st.Ops}, {"models", st.Models}} {
			ch <- prometheus.MustNewConstMetric(c.cacheSessions, prometheus.GaugeValue, float64(cc.v.Sessions), cc.name)
			ch <- prometheus.MustNewConstMetric(c.cacheLookups, prometheus.CounterValue, float64(cc.v.Hits), cc.name, "hit")
			ch <- prometheus.MustNewConstMetric(c.cacheLookups, prometheus.CounterValue, float64(cc.v.Misses), cc.name, "miss")
			ch <- prometheus.MustNewConstMetric(c.evict, prometheus.CounterValue, float64(cc.v.Evictions), cc.name)
		}
	}
}
