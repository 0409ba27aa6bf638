package proxy

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's own request metrics; the breakers' come from
// breakerprom. Every series carries circuit (the breaker's name, as on
// breakerprom's series, so the two join without relabelling) and service
// and region ("" for a service without regions).
type metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	rejection *prometheus.HistogramVec
}

var routeLabels = []string{"circuit", "service", "region"}

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "breakerbox_proxy_requests_total",
			Help: "Requests answered by the proxy, forwarded or rejected, by the status class of the final answer (2xx…5xx).",
		}, append(routeLabels, "status_class")),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "breakerbox_proxy_request_duration_seconds",
			Help:    "Time from receiving a forwarded request to finishing its response; rejections are in breakerbox_proxy_rejection_duration_seconds.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, routeLabels),
		rejection: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "breakerbox_proxy_rejection_duration_seconds",
			Help:    "Time to answer a request the open circuit rejected (503 without calling the upstream).",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .005},
		}, routeLabels),
	}
}

// routeMetrics are one route's series. Each is created on the route's first
// request of its kind, not up front: with 10,000 circuits, series made at
// start for routes that never see traffic were most of the live heap and of
// every scrape. A status class that never occurs (1xx, 3xx for most
// services) has no series. Once made, a series is kept in the route, so a
// request does no label lookup.
type routeMetrics struct {
	m                        *metrics
	circuit, service, region string
	byClass                  [6]atomic.Pointer[prometheus.Counter] // index: status / 100
	latency                  atomic.Pointer[prometheus.Observer]
	rejection                atomic.Pointer[prometheus.Observer]
}

var statusClasses = [6]string{"", "1xx", "2xx", "3xx", "4xx", "5xx"}

func (m *metrics) forRoute(r *route) *routeMetrics {
	return &routeMetrics{m: m, circuit: r.circuit, service: r.service, region: r.region}
}

// forget drops a removed circuit's series.
func (m *metrics) forget(circuit string) {
	l := prometheus.Labels{"circuit": circuit}
	m.requests.DeletePartialMatch(l)
	m.latency.DeletePartialMatch(l)
	m.rejection.DeletePartialMatch(l)
}

// observe records a forwarded request answered with status after d.
func (rm *routeMetrics) observe(status int, d time.Duration) {
	rm.count(status)
	observer(&rm.latency, rm.m.latency, rm).Observe(d.Seconds())
}

// observeRejection records a request the open circuit answered 503 after d:
// timed apart, so that sub-millisecond rejections during an outage do not
// drag the forwarded requests' percentiles down.
func (rm *routeMetrics) observeRejection(d time.Duration) {
	rm.count(503)
	observer(&rm.rejection, rm.m.rejection, rm).Observe(d.Seconds())
}

func (rm *routeMetrics) count(status int) {
	c := status / 100
	if c <= 0 || c >= len(rm.byClass) {
		return
	}
	p := rm.byClass[c].Load()
	if p == nil {
		// Racing first requests get the same series from the vector.
		ctr := rm.m.requests.WithLabelValues(rm.circuit, rm.service, rm.region, statusClasses[c])
		p = &ctr
		rm.byClass[c].Store(p)
	}
	(*p).Inc()
}

func observer(p *atomic.Pointer[prometheus.Observer], vec *prometheus.HistogramVec, rm *routeMetrics) prometheus.Observer {
	o := p.Load()
	if o == nil {
		obs := vec.WithLabelValues(rm.circuit, rm.service, rm.region)
		o = &obs
		p.Store(o)
	}
	return *o
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.latency.Describe(ch)
	m.rejection.Describe(ch)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.latency.Collect(ch)
	m.rejection.Collect(ch)
}
