package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec
	reqSeconds *prometheus.HistogramVec
	jobs       *prometheus.CounterVec
	jobSeconds *prometheus.HistogramVec
	units      *prometheus.CounterVec
	queueDepth *prometheus.GaugeVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "accelnode_http_requests_total", Help: "HTTP requests by route and status code.",
	}, []string{"route", "code"})
	m.reqSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "accelnode_http_request_duration_seconds", Help: "HTTP request latency by route.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	}, []string{"route"})
	m.jobs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "accelnode_jobs_total", Help: "Jobs ended, by backend, determinism mode and final status.",
	}, []string{"backend", "mode", "status"})
	m.jobSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "accelnode_job_duration_seconds", Help: "Time a job's guest ran, by backend and determinism mode.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
	}, []string{"backend", "mode"})
	m.units = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "accelnode_units_total", Help: "Compute units charged to jobs, by backend and determinism mode.",
	}, []string{"backend", "mode"})
	m.queueDepth = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "accelnode_queue_depth", Help: "Jobs waiting, by backend.",
	}, []string{"backend"})
	running := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "accelnode_jobs_running", Help: "Jobs running now.",
	}, func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.running))
	})
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "accelnode_build_info", Help: "The node's version and default backend; always 1.",
		ConstLabels: prometheus.Labels{"version": s.cfg.Version, "backend": s.cfg.Node.Backend().Name(), "mode": s.cfg.Node.Mode().String()},
	})
	info.Set(1)
	m.reg.MustRegister(m.requests, m.reqSeconds, m.jobs, m.jobSeconds, m.units, m.queueDepth, running, info,
		newNodeCollector(s.cfg.Node),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// instrument gives a request its id (the client's X-Request-Id where it is
// sane, else a new one), counts the route's requests by status code, times
// them, and logs each.
func (s *Server) instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if len(id) == 0 || len(id) > 64 || strings.ContainsFunc(id, func(c rune) bool { return c <= ' ' || c > '~' }) {
			var b [8]byte
			rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-Id", id)
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
		took := time.Since(start)
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
		s.metrics.reqSeconds.WithLabelValues(route).Observe(took.Seconds())
		level := slog.LevelInfo
		if route == "GET /livez" || route == "GET /readyz" || route == "GET /metrics" {
			level = slog.LevelDebug
		}
		s.log.Log(r.Context(), level, "request", "request_id", id, "method", r.Method, "path", r.URL.Path,
			"status", rec.code, "seconds", took.Seconds(), "key", caller(rec.ctx(r)).Name)
	})
}

type requestIDKey struct{}

// requestID is the id instrument gave the request of ctx.
func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

type statusRecorder struct {
	http.ResponseWriter
	code int
	// key is the caller, once authenticate has found it.
	key *Key
}

func (r *statusRecorder) ctx(req *http.Request) context.Context {
	if r.key != nil {
		return context.WithValue(req.Context(), keyCtx{}, *r.key)
	}
	return req.Context()
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
