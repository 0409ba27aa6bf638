package proxy

import (
	"math"
	"math/bits"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/httpbreaker"
)

// Rolling statistics, as Hystrix keeps them: each circuit counts its
// forwarded calls, failures and rejections, and a latency histogram of its
// forwarded calls, in buckets of bucketWidth over the last
// bucketCount×bucketWidth (5 minutes). Rejections are counted apart and
// never enter the latency histogram: a sub-millisecond 503 from an open
// circuit says nothing about the upstream.
//
// Cost on the hot path: a few atomic adds on the circuit's own bucket (no
// lock, nothing shared between circuits, no allocation); once per bucket
// width one caller per circuit takes the circuit's lock to recycle the
// oldest bucket. Memory: a circuit that never sees traffic holds one
// circuitStats (a few words); its window (about 1 KiB: counts and
// evidence) is allocated on its first call, and each bucket's latency
// histogram (136 bytes) on the bucket's first forwarded call, so a circuit
// seldom called stays small (10,000 windows of 5 KiB were 51 MB of heap
// after one request to each circuit).
const (
	bucketWidth   = 10 * time.Second
	bucketCount   = 30
	summaryWindow = 6 // buckets (one minute) behind the rates and percentiles
	evidenceSize  = 10
)

// Latency buckets: two per power of two of microseconds, from 256 µs
// (everything faster in bucket 0) to about 25 s (everything slower in the
// last). Bucket i ≥ 1 holds [lower(i), lower(i+1)).
const (
	latMinBits = 9 // 2^(9-1) µs = 256 µs
	latBuckets = 34
)

func latIndex(d time.Duration) int {
	us := uint64(max(d.Microseconds(), 0))
	n := bits.Len64(us)
	if n < latMinBits {
		return 0
	}
	half := int(us>>(n-2)) & 1 // the bit below the leading one: [2^k, 1.5·2^k) or [1.5·2^k, 2^(k+1))
	return min(2*(n-latMinBits)+half+1, latBuckets-1)
}

// latLower is the lower bound of latency bucket i in milliseconds.
func latLower(i int) float64 {
	if i <= 0 {
		return 0
	}
	i--
	k := i/2 + latMinBits - 1
	us := float64(uint64(1) << k)
	if i%2 == 1 {
		us *= 1.5
	}
	return us / 1000
}

// circuitStats is one circuit's rolling statistics and its recent outcomes.
// It lives in the Server, keyed by circuit, so a reload keeps it.
type circuitStats struct {
	window atomic.Pointer[window]
	active atomic.Int64                   // unix seconds of the last recorded call or rejection
	mu     sync.Mutex                     // allocates the window; recycles a bucket
	opened atomic.Pointer[TransitionJSON] // the last transition to open, with its evidence
}

type window struct {
	buckets  [bucketCount]bucket
	evidence evidenceRing
	// lastFailure is the newest failed call, as an evidence slot's what
	// (code<<48 | latency in ns): the fleet's evidence describes each
	// reported failure with it (describeFailure).
	lastFailure atomic.Uint64
}

type bucket struct {
	epoch                     atomic.Int64 // unix time / bucketWidth of the interval counted here
	calls, failures, rejected atomic.Uint32
	latency                   atomic.Pointer[latencyHist] // nil until a call is forwarded in this slot
}

type latencyHist [latBuckets]atomic.Uint32

// hist returns b's latency histogram, allocating it on first use.
func (cs *circuitStats) hist(b *bucket) *latencyHist {
	if h := b.latency.Load(); h != nil {
		return h
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	h := b.latency.Load()
	if h == nil {
		h = new(latencyHist)
		b.latency.Store(h)
	}
	return h
}

// load adds b's latency histogram into into (nothing if it has none).
func (b *bucket) load(into *[latBuckets]uint64) {
	if h := b.latency.Load(); h != nil {
		for i := range h {
			into[i] += uint64(h[i].Load())
		}
	}
}

func epochOf(t time.Time) int64 { return t.Unix() / int64(bucketWidth/time.Second) }

// bucket returns the bucket counting the interval of now, recycling the
// slot if it still holds an interval bucketCount widths ago.
func (cs *circuitStats) bucket(now time.Time) (*window, *bucket) {
	w := cs.window.Load()
	if w == nil {
		cs.mu.Lock()
		if w = cs.window.Load(); w == nil {
			w = new(window)
			cs.window.Store(w)
		}
		cs.mu.Unlock()
	}
	if s := now.Unix(); cs.active.Load() != s {
		cs.active.Store(s)
	}
	e := epochOf(now)
	b := &w.buckets[e%bucketCount]
	if b.epoch.Load() != e {
		// Writers of the new interval wait here until the slot is cleared:
		// only then does epoch say the slot is theirs.
		cs.mu.Lock()
		if b.epoch.Load() != e {
			b.calls.Store(0)
			b.failures.Store(0)
			b.rejected.Store(0)
			if h := b.latency.Load(); h != nil { // kept for the slot's next interval
				for i := range h {
					h[i].Store(0)
				}
			}
			b.epoch.Store(e)
		}
		cs.mu.Unlock()
	}
	return w, b
}

// forwarded records a call that went to the upstream, at now, answered
// with code (an HTTP status, or an outcomeKind) after lat.
func (cs *circuitStats) forwarded(now time.Time, code int, failed bool, lat time.Duration) {
	w, b := cs.bucket(now)
	b.calls.Add(1)
	if failed {
		b.failures.Add(1)
	}
	cs.hist(b)[latIndex(lat)].Add(1)
	what := w.evidence.add(now, code, lat)
	if failed {
		w.lastFailure.Store(what)
	}
}

// rejected records a call the open circuit refused, at now.
func (cs *circuitStats) rejected(now time.Time) {
	_, b := cs.bucket(now)
	b.rejected.Add(1)
}

// Outcome kinds of a forwarded call that got no HTTP answer, recorded in
// place of a status code.
const (
	kindTimeout    = 1000 + int(faultTimeout)
	kindUpstream   = 1000 + int(faultUpstream)
	kindClientGone = 1000 + int(faultClientGone)
	kindClientBody = 1000 + int(faultClientBody)
	kindLocal      = 1000 + int(faultLocal)
)

func outcomeName(code int) string {
	switch code {
	case kindTimeout:
		return "timeout"
	case kindUpstream:
		return "connection_error"
	case kindClientGone:
		return "client_gone"
	case kindClientBody:
		return "client_body_error"
	case kindLocal:
		return "local_resources"
	}
	return ""
}

// evidenceRing holds a circuit's last evidenceSize outcomes. Each slot is
// two words; a reader that sees a slot's time change while reading it
// drops the slot (a writer was in it).
type evidenceRing struct {
	next  atomic.Uint64
	slots [evidenceSize]struct {
		at   atomic.Int64  // unix nanoseconds
		what atomic.Uint64 // code<<48 | latency in ns (up to 78 h)
	}
}

func (r *evidenceRing) add(now time.Time, code int, lat time.Duration) (what uint64) {
	s := &r.slots[(r.next.Add(1)-1)%evidenceSize]
	what = uint64(code)<<48 | uint64(min(max(lat, 0), 1<<48-1))
	s.at.Store(0)
	s.what.Store(what)
	s.at.Store(now.UnixNano())
	return what
}

// Outcome is one forwarded call, as evidence of a transition.
type Outcome struct {
	At time.Time `json:"at"`
	// Status is the upstream's HTTP status; 0 when it did not answer (see
	// Error).
	Status int `json:"status,omitempty"`
	// Error says why there was no answer: timeout, connection_error,
	// client_gone, client_body_error, local_resources.
	Error     string  `json:"error,omitempty"`
	LatencyMs float64 `json:"latency_ms"`
	// Replica is the fleet replica that saw it (in a fleet).
	Replica string `json:"replica,omitempty"`
}

// outcomes returns the recorded outcomes, oldest first.
func (r *evidenceRing) outcomes() []Outcome {
	end := r.next.Load()
	start := end - min(end, evidenceSize)
	out := make([]Outcome, 0, end-start)
	for i := start; i < end; i++ {
		s := &r.slots[i%evidenceSize]
		at := s.at.Load()
		what := s.what.Load()
		if at == 0 || s.at.Load() != at {
			continue
		}
		o := outcomeOf(what)
		o.At = time.Unix(0, at).UTC()
		out = append(out, o)
	}
	return out
}

// outcomeOf decodes an evidence slot's what.
func outcomeOf(what uint64) Outcome {
	o := Outcome{LatencyMs: roundMs(time.Duration(what & (1<<48 - 1)))}
	if code := int(what >> 48); code >= 1000 {
		o.Error = outcomeName(code)
	} else {
		o.Status = code
	}
	return o
}

func (cs *circuitStats) evidence() []Outcome {
	if w := cs.window.Load(); w != nil {
		return w.evidence.outcomes()
	}
	return nil
}

func roundMs(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

// StatsJSON is a circuit's rolling statistics as the API shows them.
type StatsJSON struct {
	// The rates and percentiles are over the last minute (WindowSeconds,
	// shorter only while the process is younger).
	WindowSeconds     float64 `json:"window_seconds"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	ErrorPercent      float64 `json:"error_percent"`
	RejectedPerSecond float64 `json:"rejected_per_second"`
	// P50Ms and P99Ms are the forwarded calls' latency percentiles (to the
	// upstream's response headers), estimated from a histogram with buckets
	// about 1.4× wide; rejections are not in them.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	// Buckets are the last 5 minutes, oldest first.
	Buckets BucketsJSON `json:"buckets"`
}

// BucketsJSON are per-bucket series, oldest first, the last one in progress.
type BucketsJSON struct {
	Start        int64     `json:"start"` // unix seconds of the first bucket
	WidthSeconds int       `json:"width_seconds"`
	Requests     []uint32  `json:"requests"`
	Failures     []uint32  `json:"failures"`
	Rejected     []uint32  `json:"rejected"`
	P50Ms        []float64 `json:"p50_ms,omitempty"`
	P99Ms        []float64 `json:"p99_ms,omitempty"`
}

// snapshot returns the statistics at now, or nil if the circuit had no
// traffic in the last bucketCount widths. percentiles adds the per-bucket
// percentiles (for one circuit's page; the list leaves them out).
func (cs *circuitStats) snapshot(now time.Time, started time.Time, percentiles bool) *StatsJSON {
	st := new(StatsJSON)
	if !cs.snapshotInto(st, now, started, percentiles) {
		return nil
	}
	return st
}

// snapshotInto is snapshot into *st, reusing its slices; false (and st
// untouched) if the circuit had no traffic in the last bucketCount widths.
func (cs *circuitStats) snapshotInto(st *StatsJSON, now time.Time, started time.Time, percentiles bool) bool {
	w := cs.window.Load()
	if w == nil || now.Unix()-cs.active.Load() >= int64(bucketCount*bucketWidth/time.Second) {
		return false
	}
	cur := epochOf(now)
	widthS := int64(bucketWidth / time.Second)
	series := func(s []uint32) []uint32 {
		if cap(s) < bucketCount {
			return make([]uint32, bucketCount)
		}
		return s[:bucketCount]
	}
	*st = StatsJSON{Buckets: BucketsJSON{Start: (cur - bucketCount + 1) * widthS, WidthSeconds: int(widthS),
		Requests: series(st.Buckets.Requests), Failures: series(st.Buckets.Failures), Rejected: series(st.Buckets.Rejected)}}
	if percentiles {
		st.Buckets.P50Ms = make([]float64, bucketCount)
		st.Buckets.P99Ms = make([]float64, bucketCount)
	}
	var hist [latBuckets]uint64
	var calls, failures, rejected uint64
	for i := range bucketCount {
		e := cur - bucketCount + 1 + int64(i)
		b := &w.buckets[e%bucketCount]
		if b.epoch.Load() != e {
			st.Buckets.Requests[i], st.Buckets.Failures[i], st.Buckets.Rejected[i] = 0, 0, 0
			continue
		}
		c, f, r := b.calls.Load(), b.failures.Load(), b.rejected.Load()
		st.Buckets.Requests[i], st.Buckets.Failures[i], st.Buckets.Rejected[i] = c, f, r
		var bh [latBuckets]uint64
		inSummary := i >= bucketCount-summaryWindow
		if (inSummary || percentiles) && c > 0 { // an idle bucket's histogram is empty: 34 loads saved
			b.load(&bh)
		}
		if percentiles {
			st.Buckets.P50Ms[i], st.Buckets.P99Ms[i] = quantile(&bh, 0.5), quantile(&bh, 0.99)
		}
		if inSummary {
			calls, failures, rejected = calls+uint64(c), failures+uint64(f), rejected+uint64(r)
			for j := range bh {
				hist[j] += bh[j]
			}
		}
	}
	secs := summarySpan(now, cur, started)
	st.WindowSeconds = math.Round(secs*10) / 10
	st.RequestsPerSecond = round2(float64(calls) / secs)
	st.RejectedPerSecond = round2(float64(rejected) / secs)
	if calls > 0 {
		st.ErrorPercent = round2(100 * float64(failures) / float64(calls))
	}
	st.P50Ms, st.P99Ms = quantile(&hist, 0.5), quantile(&hist, 0.99)
	return true
}

// rates are the summary figures of StatsJSON (requests/s, rejections/s,
// error %, and p99 if withP99) read without allocating, for sorting every
// circuit; zeros when the circuit was idle for the summary window.
func (cs *circuitStats) rates(now, started time.Time, withP99 bool) (rps, rejps, errPct, p99 float64) {
	w := cs.window.Load()
	if w == nil || now.Unix()-cs.active.Load() >= int64(summaryWindow*bucketWidth/time.Second) {
		return 0, 0, 0, 0
	}
	cur := epochOf(now)
	var hist [latBuckets]uint64
	var calls, failures, rejected uint64
	for e := cur - summaryWindow + 1; e <= cur; e++ {
		b := &w.buckets[e%bucketCount]
		if b.epoch.Load() != e {
			continue
		}
		c := b.calls.Load()
		calls += uint64(c)
		failures += uint64(b.failures.Load())
		rejected += uint64(b.rejected.Load())
		if withP99 && c > 0 {
			b.load(&hist)
		}
	}
	secs := summarySpan(now, cur, started)
	rps, rejps = round2(float64(calls)/secs), round2(float64(rejected)/secs)
	if calls > 0 {
		errPct = round2(100 * float64(failures) / float64(calls))
	}
	if withP99 {
		p99 = quantile(&hist, 0.99)
	}
	return rps, rejps, errPct, p99
}

// summarySpan is the seconds the summary window covers at now: the full
// buckets before the current one, and the current one so far; no longer
// than the process has run, and at least 1.
func summarySpan(now time.Time, cur int64, started time.Time) float64 {
	span := time.Duration(summaryWindow-1)*bucketWidth + now.Sub(time.Unix(cur*int64(bucketWidth/time.Second), 0))
	if up := now.Sub(started); up < span {
		span = up
	}
	return max(span.Seconds(), 1)
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// quantile estimates the q-quantile in milliseconds, interpolating within
// the bucket it falls in; 0 with no calls.
func quantile(h *[latBuckets]uint64, q float64) float64 {
	var total uint64
	for _, n := range h {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen float64
	for i, n := range h {
		if n == 0 {
			continue
		}
		if seen+float64(n) >= rank {
			lo, hi := latLower(i), latLower(i+1)
			if i == latBuckets-1 {
				hi = lo * 1.5 // unbounded above: report a little past its lower bound
			}
			v := lo + (hi-lo)*(rank-seen)/float64(n)
			return math.Round(v*100) / 100
		}
		seen += float64(n)
	}
	return 0
}

// statsTable keeps every circuit's stats by name, across reloads.
type statsTable struct {
	mu     sync.Mutex
	byName map[string]*circuitStats
}

// attach gives each route of t its circuit's stats, creating those of new
// circuits and forgetting those of circuits t no longer has.
func (st *statsTable) attach(t *table) {
	st.mu.Lock()
	defer st.mu.Unlock()
	next := make(map[string]*circuitStats, len(t.circuits))
	t.sorted = make([]*route, 0, len(t.circuits))
	for name, r := range t.circuits {
		t.sorted = append(t.sorted, r)
		cs := st.byName[name]
		if cs == nil {
			cs = new(circuitStats)
		}
		next[name] = cs
		r.stats = cs
	}
	st.byName = next
	slices.SortFunc(t.sorted, func(a, b *route) int { return strings.Compare(a.circuit, b.circuit) })
}

// observe records a round trip's outcome in the circuit's stats. It runs
// before the outcome is reported to the breaker, so that a transition the
// report causes finds the outcome among its evidence.
func (x *exchange) observe(req *http.Request, resp *http.Response, err error) {
	now := time.Now()
	if err != nil {
		f := x.classify(err)
		x.route.stats.forwarded(now, 1000+int(f), f > faultLocal, now.Sub(x.start))
		return
	}
	failed := httpbreaker.DefaultClassifier(req, resp, nil) == breaker.Failure
	x.route.stats.forwarded(now, resp.StatusCode, failed, now.Sub(x.start))
}
