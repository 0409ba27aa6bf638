package proxy

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's own request metrics; the breakers' come from
// breakerprom.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "breakerbox_proxy_requests_total",
			Help: "Requests handled by the proxy, by service, region and status class (2xx…5xx).",
		}, []string{"service", "region", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "breakerbox_proxy_request_duration_seconds",
			Help:    "Time from receiving a request to finishing its response, by service and region.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"service", "region"}),
	}
}

func (m *metrics) observe(r *route, status int, d time.Duration) {
	m.requests.WithLabelValues(r.service, r.region, strconv.Itoa(status/100)+"xx").Inc()
	m.latency.WithLabelValues(r.service, r.region).Observe(d.Seconds())
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.latency.Describe(ch)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.latency.Collect(ch)
}
