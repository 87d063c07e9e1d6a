package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the counters the daemon updates as it works; gauges of its state come
// from collectors registered with Register.
type Metrics struct {
	registry    *prometheus.Registry
	rpcs        *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	pulls       *prometheus.CounterVec
	pulledBytes prometheus.Counter
	monitors    *prometheus.CounterVec
}

// New creates the metrics, with the Go runtime's and the process's.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "enroot_cri_rpc_requests_total", Help: "CRI calls by method and gRPC code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "enroot_cri_rpc_duration_seconds", Help: "CRI call latency by method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"method"}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "enroot_cri_image_pulls_total", Help: "Image pulls: built (downloaded and squashed), present (the store had it), failed.",
		}, []string{"result"}),
		pulledBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "enroot_cri_image_pulled_bytes_total", Help: "Compressed layer bytes downloaded.",
		}),
		monitors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "enroot_cri_monitor_restarts_total",
			Help: "Container monitors: readopted at a daemon start (still running the container), or lost (found ended without an exit status, at a start or later).",
		}, []string{"result"}),
	}
	m.registry.MustRegister(m.rpcs, m.latency, m.pulls, m.pulledBytes, m.monitors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register adds a collector of the daemon's state.
func (m *Metrics) Register(c prometheus.Collector) { m.registry.MustRegister(c) }

// RPC records one CRI call.
func (m *Metrics) RPC(method, code string, d time.Duration) {
	m.rpcs.WithLabelValues(method, code).Inc()
	m.latency.WithLabelValues(method).Observe(d.Seconds())
}

// Pull records one pull; downloaded is 0 unless this pull built the image.
func (m *Metrics) Pull(result string, downloaded int64) {
	m.pulls.WithLabelValues(result).Inc()
	if downloaded > 0 {
		m.pulledBytes.Add(float64(downloaded))
	}
}

// Monitor records a monitor found at start: "readopted" or "lost".
func (m *Metrics) Monitor(result string) { m.monitors.WithLabelValues(result).Inc() }

// Serve serves /metrics on address until ctx ends; it returns once listening.
func (m *Metrics) Serve(ctx context.Context, address string) (string, error) {
	l, err := net.Listen("tcp", address)
	if err != nil {
		return "", fmt.Errorf("listen for metrics on %s: %w", address, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = l.Close()
		}
	}()
	return l.Addr().String(), nil
}
