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

// routeMetrics are one route's series, resolved once so that a request
// does no label lookup.
type routeMetrics struct {
	byClass [6]prometheus.Counter // index: status / 100
	latency prometheus.Observer
}

func (m *metrics) forRoute(r *route) *routeMetrics {
	rm := &routeMetrics{latency: m.latency.WithLabelValues(r.service, r.region)}
	for c := 1; c < len(rm.byClass); c++ {
		rm.byClass[c] = m.requests.WithLabelValues(r.service, r.region, strconv.Itoa(c)+"xx")
	}
	return rm
}

func (rm *routeMetrics) observe(status int, d time.Duration) {
	if c := status / 100; c > 0 && c < len(rm.byClass) {
		rm.byClass[c].Inc()
	}
	rm.latency.Observe(d.Seconds())
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.latency.Describe(ch)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.latency.Collect(ch)
}
