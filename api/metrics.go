package api

import (
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/datasandbox/datasandbox/policies"
)

// metrics are the node's Prometheus metrics: requests by route and status
// with latencies, the ledger's size, whether the node leads, and the jobs
// by status and mode with budget refusals, read from the committed state
// at scrape time. They hold counts only, never values.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	phases   *prometheus.HistogramVec
	jobs     *prometheus.HistogramVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "datasandbox_http_requests_total", Help: "HTTP requests by route, method and status.",
	}, []string{"route", "method", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "datasandbox_http_request_seconds", Help: "HTTP request latency by route.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"route"})
	m.phases = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "datasandbox_he_phase_seconds", Help: "He jobs run by this node: time on ciphertexts (evaluate), collecting t decryption shares (shares), combining them (combine).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"phase"})
	m.jobs = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "datasandbox_job_seconds", Help: "Jobs this node ran, by mode: time from submission (ledger time) to completion.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
	}, []string{"mode"})
	m.reg.MustRegister(m.requests, m.latency, m.phases, m.jobs,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "datasandbox_ledger_entries", Help: "Committed ledger entries."},
			func() float64 { return float64(s.node.Ledger().Size()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "datasandbox_ledger_blocks", Help: "Committed blocks."},
			func() float64 { return float64(s.node.Ledger().Height()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "datasandbox_raft_leader", Help: "1 if this node leads the Raft cluster."},
			func() float64 {
				if id, _ := s.node.Leader(); id == s.node.ID() {
					return 1
				}
				return 0
			}),
		&jobCollector{s: s},
	)
	return m
}

// ObservePhase records how long a phase of an he job took on this node
// (see the datasandbox_he_phase_seconds help); for sandbox.RunnerConfig
// and mpc.Config's Observe hooks.
func (s *Server) ObservePhase(phase string, d time.Duration) {
	switch phase {
	case "evaluate", "shares", "combine": // bounded label values
		s.metrics.phases.WithLabelValues(phase).Observe(d.Seconds())
	}
}

// ObserveJob records a completed job's latency by mode (for
// sandbox.RunnerConfig.ObserveJob).
func (s *Server) ObserveJob(mode string, d time.Duration) {
	if mode == policies.ModeMasked || mode == policies.ModeHE { // bounded label values
		s.metrics.jobs.WithLabelValues(mode).Observe(d.Seconds())
	}
}

// observe records one request.
func (m *metrics) observe(route, method string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

var (
	jobsDesc    = prometheus.NewDesc("datasandbox_jobs", "Jobs by status and mode.", []string{"status", "mode"}, nil)
	refusedDesc = prometheus.NewDesc("datasandbox_budget_refusals", "Jobs refused because the privacy budget was exhausted.", nil, nil)
)

// jobCollector reads the jobs from the committed state at scrape time.
type jobCollector struct{ s *Server }

func (c *jobCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- jobsDesc
	ch <- refusedDesc
}

func (c *jobCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[[2]string]int{}
	refused := 0
	for _, j := range c.s.state.Jobs(nil) {
		counts[[2]string{j.Status, j.Mode}]++
		if j.Status == policies.JobRejected && strings.Contains(j.Reason, "privacy budget exhausted") {
			refused++
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.GaugeValue, float64(refused))
}

func (s *Server) metricsHandler() echo.HandlerFunc {
	h := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
	return echo.WrapHandler(h)
}
