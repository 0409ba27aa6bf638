package proxy

import (
	"strconv"
	"sync/atomic"
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
			Help: "Requests handled by the proxy, by service, region and status class (2xx…5xx) of the final answer.",
		}, []string{"service", "region", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "breakerbox_proxy_request_duration_seconds",
			Help:    "Time from receiving a request to finishing its response, by service and region.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"service", "region"}),
	}
}

// routeMetrics are one route's series. Each is created on the route's first
// request of its kind, not up front: with 10,000 circuits, series made at
// start for routes that never see traffic were most of the live heap and of
// every scrape. Once made, a series is kept in the route, so a request does
// no label lookup.
type routeMetrics struct {
	m               *metrics
	service, region string
	byClass         [6]atomic.Pointer[prometheus.Counter] // index: status / 100
	latency         atomic.Pointer[prometheus.Observer]
}

func (m *metrics) forRoute(r *route) *routeMetrics {
	return &routeMetrics{m: m, service: r.service, region: r.region}
}

func (rm *routeMetrics) observe(status int, d time.Duration) {
	if c := status / 100; c > 0 && c < len(rm.byClass) {
		p := rm.byClass[c].Load()
		if p == nil {
			// Racing first requests get the same series from the vector.
			ctr := rm.m.requests.WithLabelValues(rm.service, rm.region, strconv.Itoa(c)+"xx")
			p = &ctr
			rm.byClass[c].Store(p)
		}
		(*p).Inc()
	}
	o := rm.latency.Load()
	if o == nil {
		obs := rm.m.latency.WithLabelValues(rm.service, rm.region)
		o = &obs
		rm.latency.Store(o)
	}
	(*o).Observe(d.Seconds())
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.latency.Describe(ch)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.latency.Collect(ch)
}
