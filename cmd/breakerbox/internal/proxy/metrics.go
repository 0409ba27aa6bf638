package proxy

import (
	"bufio"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// metrics are the proxy's own request metrics; the breakers' come from
// breakerprom. Every series carries circuit (the breaker's name, as on
// breakerprom's series, so the two join without relabelling) and service
// and region ("" for a service without regions):
//
//	breakerbox_proxy_requests_total{circuit, service, region, status_class}   counter
//	breakerbox_proxy_request_duration_seconds{circuit, service, region}       histogram, forwarded requests
//	breakerbox_proxy_rejection_duration_seconds{circuit, service, region}     histogram, rejections
//
// A series appears with its circuit's first request of its kind: with
// 10,000 circuits, series made at start for routes that never see traffic
// were most of the live heap and of every scrape, and a status class that
// never occurs (1xx, 3xx) has none.
//
// Why not client_golang's vectors: with 10,000 circuits that all had
// traffic they are 280,000 series, and gathering them (a client_model
// message per series, checked, sorted, then encoded) cost about 0.7 s of
// CPU per scrape. Counted here in atomics and written straight as text (see
// WriteText), they cost a fraction of that; the hot path does the same
// atomic adds a client_golang histogram does.
type metrics struct {
	mu     sync.Mutex
	routes map[string]*routeMetrics // by circuit; kept across reloads, so counts carry on
}

func newMetrics() *metrics { return &metrics{routes: map[string]*routeMetrics{}} }

// Bucket upper bounds, in seconds.
var (
	latencyBounds   = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	rejectionBounds = []float64{.00005, .0001, .00025, .0005, .001, .005}
)

// routeMetrics are one circuit's counts.
type routeMetrics struct {
	circuit, service, region string
	byClass                  [6]atomic.Uint64 // index: status / 100
	latency, rejection       histogram
}

// histogram counts observations in fixed buckets: counts[i] those ≤
// bounds[i] and above the bound before, the last those above every bound.
type histogram struct {
	bounds  []float64
	les     []string // the bounds as le label values
	counts  []atomic.Uint64
	sumBits atomic.Uint64 // float64 bits of the sum of observations
}

func newHistogram(bounds []float64, les []string) histogram {
	return histogram{bounds: bounds, les: les, counts: make([]atomic.Uint64, len(bounds)+1)}
}

func les(bounds []float64) []string {
	out := make([]string, len(bounds))
	for i, b := range bounds {
		out[i] = strconv.FormatFloat(b, 'g', -1, 64)
	}
	return out
}

var latencyLEs, rejectionLEs = les(latencyBounds), les(rejectionBounds)

func (h *histogram) observe(v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	for {
		old := h.sumBits.Load()
		if h.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// forRoute returns the circuit's metrics, the same across reloads while
// the circuit keeps its service and region.
func (m *metrics) forRoute(r *route) *routeMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	rm := m.routes[r.circuit]
	if rm == nil || rm.service != r.service || rm.region != r.region {
		rm = &routeMetrics{circuit: r.circuit, service: r.service, region: r.region,
			latency: newHistogram(latencyBounds, latencyLEs), rejection: newHistogram(rejectionBounds, rejectionLEs)}
		m.routes[r.circuit] = rm
	}
	return rm
}

// forget drops a removed circuit's series.
func (m *metrics) forget(circuit string) {
	m.mu.Lock()
	delete(m.routes, circuit)
	m.mu.Unlock()
}

// observe records a forwarded request answered with status after d.
func (rm *routeMetrics) observe(status int, d time.Duration) {
	rm.count(status)
	rm.latency.observe(d.Seconds())
}

// observeRejection records a request the open circuit answered 503 after d:
// timed apart, so that sub-millisecond rejections during an outage do not
// drag the forwarded requests' percentiles down.
func (rm *routeMetrics) observeRejection(d time.Duration) {
	rm.count(503)
	rm.rejection.observe(d.Seconds())
}

func (rm *routeMetrics) count(status int) {
	if c := status / 100; c > 0 && c < len(rm.byClass) {
		rm.byClass[c].Add(1)
	}
}

var statusClasses = [6]string{"", "1xx", "2xx", "3xx", "4xx", "5xx"}

// WriteText writes the metrics in the Prometheus text format, routes in
// order of circuit. Label values need no escaping: config validation
// allows only [a-z0-9._-] in service and region names.
func (m *metrics) WriteText(w io.Writer) error {
	m.mu.Lock()
	routes := make([]*routeMetrics, 0, len(m.routes))
	for _, rm := range m.routes {
		routes = append(routes, rm)
	}
	m.mu.Unlock()
	slices.SortFunc(routes, func(a, b *routeMetrics) int { return strings.Compare(a.circuit, b.circuit) })

	t := &textWriter{w: bufio.NewWriterSize(w, 64<<10)}
	t.histograms("breakerbox_proxy_rejection_duration_seconds",
		"Time to answer a request the open circuit rejected (503 without calling the upstream).",
		routes, func(rm *routeMetrics) *histogram { return &rm.rejection })
	t.histograms("breakerbox_proxy_request_duration_seconds",
		"Time from receiving a forwarded request to finishing its response; rejections are in breakerbox_proxy_rejection_duration_seconds.",
		routes, func(rm *routeMetrics) *histogram { return &rm.latency })
	const requests = "breakerbox_proxy_requests_total"
	headed := false
	for _, rm := range routes {
		for c := range rm.byClass {
			n := rm.byClass[c].Load()
			if n == 0 {
				continue
			}
			if !headed {
				t.header(requests, "Requests answered by the proxy, forwarded or rejected, by the status class of the final answer (2xx…5xx).", "counter")
				headed = true
			}
			t.sample(requests, rm, "status_class", statusClasses[c], float64(n))
		}
	}
	return t.w.Flush()
}

type textWriter struct {
	w   *bufio.Writer
	buf []byte
}

func (t *textWriter) header(name, help, typ string) {
	t.w.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " " + typ + "\n")
}

// sample writes name{circuit,region,service[,label]} v.
func (t *textWriter) sample(name string, rm *routeMetrics, label, value string, v float64) {
	b := append(t.buf[:0], name...)
	b = append(b, `{circuit="`...)
	b = append(b, rm.circuit...)
	b = append(b, `",region="`...)
	b = append(b, rm.region...)
	b = append(b, `",service="`...)
	b = append(b, rm.service...)
	if label != "" {
		b = append(b, `",`...)
		b = append(b, label...)
		b = append(b, `="`...)
		b = append(b, value...)
	}
	b = append(b, `"} `...)
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	b = append(b, '\n')
	t.buf = b
	t.w.Write(b)
}

// histograms writes one histogram family over the routes that observed
// something in it.
func (t *textWriter) histograms(name, help string, routes []*routeMetrics, of func(*routeMetrics) *histogram) {
	headed := false
	bucket, sum, count := name+"_bucket", name+"_sum", name+"_count"
	for _, rm := range routes {
		h := of(rm)
		var counts [16]uint64 // ≥ len(bounds)+1 of either histogram
		total := uint64(0)
		for i := range h.counts {
			counts[i] = h.counts[i].Load()
			total += counts[i]
		}
		if total == 0 {
			continue
		}
		if !headed {
			t.header(name, help, "histogram")
			headed = true
		}
		cumulative := uint64(0)
		for i, le := range h.les {
			cumulative += counts[i]
			t.sample(bucket, rm, "le", le, float64(cumulative))
		}
		t.sample(bucket, rm, "le", "+Inf", float64(total))
		t.sample(sum, rm, "", "", math.Float64frombits(h.sumBits.Load()))
		t.sample(count, rm, "", "", float64(total))
	}
}
