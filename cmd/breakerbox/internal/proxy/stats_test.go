package proxy

import (
	"testing"
	"time"
)

func TestLatencyBuckets(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{0, 0},
		{100 * time.Microsecond, 0},
		{255 * time.Microsecond, 0},
		{256 * time.Microsecond, 1},
		{384 * time.Microsecond, 2}, // 1.5 × 256
		{511 * time.Microsecond, 2},
		{512 * time.Microsecond, 3},
		{time.Hour, latBuckets - 1},
	} {
		if got := latIndex(tc.d); got != tc.want {
			t.Errorf("latIndex(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
	// Every bucket's lower bound is in it, and the bounds grow.
	for i := 1; i < latBuckets; i++ {
		lo := time.Duration(latLower(i) * float64(time.Millisecond))
		if got := latIndex(lo); got != i {
			t.Errorf("latIndex(latLower(%d) = %v) = %d", i, lo, got)
		}
		if latLower(i) <= latLower(i-1) {
			t.Errorf("latLower(%d) = %v not above latLower(%d) = %v", i, latLower(i), i-1, latLower(i-1))
		}
	}
}

// TestStatsRollingWindow records a known minute of traffic and reads it
// back: rates over the last minute, per-bucket series, rejections counted
// apart and kept out of the latency percentiles.
func TestStatsRollingWindow(t *testing.T) {
	var cs circuitStats
	t0 := time.Unix(1_800_000_000, 0) // a bucket boundary
	started := t0.Add(-time.Hour)
	// Six full buckets: per bucket 10 calls, 2 of them failed; 90% at
	// ~10 ms, 10% at ~800 ms; 50 rejections.
	for b := range 6 {
		at := t0.Add(time.Duration(b) * bucketWidth)
		for i := range 10 {
			lat := 10 * time.Millisecond
			if i == 0 {
				lat = 800 * time.Millisecond
			}
			cs.forwarded(at, 200, i >= 8, lat)
		}
		for range 50 {
			cs.rejected(at)
		}
	}
	now := t0.Add(6*bucketWidth - time.Nanosecond) // the end of the sixth bucket
	st := cs.snapshot(now, started, true)
	if st == nil {
		t.Fatal("snapshot nil after traffic")
	}
	if st.WindowSeconds != 60 {
		t.Errorf("window = %vs, want 60", st.WindowSeconds)
	}
	if st.RequestsPerSecond != 1 || st.RejectedPerSecond != 5 || st.ErrorPercent != 20 {
		t.Errorf("rps %v, rejected/s %v, error %% %v: want 1, 5, 20", st.RequestsPerSecond, st.RejectedPerSecond, st.ErrorPercent)
	}
	// p50 in the 10 ms bucket, p99 in the 800 ms one: rejections (many,
	// instant) did not drag them down.
	// (Estimates: each is in the histogram bucket of the true value.)
	inBucketOf := func(ms float64, d time.Duration) bool {
		i := latIndex(d)
		return ms >= latLower(i) && ms < latLower(i+1)
	}
	if !inBucketOf(st.P50Ms, 10*time.Millisecond) {
		t.Errorf("p50 = %v ms, want about 10", st.P50Ms)
	}
	if !inBucketOf(st.P99Ms, 800*time.Millisecond) {
		t.Errorf("p99 = %v ms, want about 800", st.P99Ms)
	}
	b := st.Buckets
	if len(b.Requests) != bucketCount || b.WidthSeconds != 10 {
		t.Fatalf("buckets: %d of %ds, want %d of 10s", len(b.Requests), b.WidthSeconds, bucketCount)
	}
	for i := range bucketCount {
		want, wantF, wantR := uint32(0), uint32(0), uint32(0)
		if i >= bucketCount-6 {
			want, wantF, wantR = 10, 2, 50
		}
		if b.Requests[i] != want || b.Failures[i] != wantF || b.Rejected[i] != wantR {
			t.Errorf("bucket %d: %d/%d/%d, want %d/%d/%d", i, b.Requests[i], b.Failures[i], b.Rejected[i], want, wantF, wantR)
		}
	}
	if got := b.Start + int64(bucketCount-1)*10; got != now.Unix()/10*10 {
		t.Errorf("last bucket starts at %d, want %d", got, now.Unix()/10*10)
	}

	// A minute later the rates have left the summary; the series keep them.
	st = cs.snapshot(now.Add(time.Minute), started, false)
	if st.RequestsPerSecond != 0 || st.P99Ms != 0 || st.Buckets.Requests[bucketCount-7] != 10 {
		t.Errorf("a minute later: rps %v p99 %v, series %v", st.RequestsPerSecond, st.P99Ms, st.Buckets.Requests)
	}
	// Five minutes after the last call the circuit is idle again.
	if st := cs.snapshot(now.Add(5*time.Minute+time.Second), started, false); st != nil {
		t.Errorf("5 min after the last call: %+v, want nil", st)
	}
	// A slot is recycled, not added to, when its interval comes round.
	later := t0.Add(bucketCount * bucketWidth)
	cs.forwarded(later, 200, false, time.Millisecond)
	st = cs.snapshot(later, started, false)
	if got := st.Buckets.Requests[bucketCount-1]; got != 1 {
		t.Errorf("recycled bucket counts %d, want 1", got)
	}
}

func TestStatsRatesOfAYoungProcess(t *testing.T) {
	var cs circuitStats
	started := time.Unix(1_800_000_003, 0)
	for range 20 {
		cs.forwarded(started.Add(time.Second), 200, false, time.Millisecond)
	}
	st := cs.snapshot(started.Add(2*time.Second), started, false)
	if st.WindowSeconds != 2 || st.RequestsPerSecond != 10 {
		t.Errorf("after 2 s: window %v, rps %v; want 2, 10", st.WindowSeconds, st.RequestsPerSecond)
	}
}

func TestEvidenceKeepsTheLastOutcomes(t *testing.T) {
	var cs circuitStats
	if cs.evidence() != nil {
		t.Fatal("evidence before any call")
	}
	t0 := time.Unix(1_800_000_000, 0)
	for i := range evidenceSize + 3 {
		cs.forwarded(t0.Add(time.Duration(i)*time.Second), 500+i, true, time.Duration(i)*time.Millisecond)
	}
	cs.forwarded(t0.Add(time.Minute), kindTimeout, true, 5*time.Second)
	ev := cs.evidence()
	if len(ev) != evidenceSize {
		t.Fatalf("%d outcomes, want %d", len(ev), evidenceSize)
	}
	if first := ev[0]; first.Status != 504 || first.LatencyMs != 4 || !first.At.Equal(t0.Add(4*time.Second)) {
		t.Errorf("oldest kept = %+v, want 504 after 4 ms at t0+4s", first)
	}
	if last := ev[len(ev)-1]; last.Status != 0 || last.Error != "timeout" || last.LatencyMs != 5000 {
		t.Errorf("newest = %+v, want a 5 s timeout", last)
	}
	if got := evidenceText(ev[len(ev)-2:]); got != "512/12ms timeout/5000ms" {
		t.Errorf("evidenceText = %q", got)
	}
}

// BenchmarkStatsRecord is what the rolling stats add to a forwarded
// request (the clock read included) and to a rejection, one circuit and
// many circuits in parallel, without the clock read that observe adds per
// forwarded call ("clock": on a VM whose clock source has no vDSO, it is
// most of the cost).
func BenchmarkStatsRecord(b *testing.B) {
	start := time.Now()
	b.Run("clock", func(b *testing.B) {
		var n int64
		for b.Loop() {
			n += time.Now().UnixNano()
		}
		_ = n
	})
	b.Run("forwarded", func(b *testing.B) {
		var cs circuitStats
		b.ReportAllocs()
		for b.Loop() {
			cs.forwarded(start, 200, false, 3*time.Millisecond)
		}
	})
	b.Run("rejected", func(b *testing.B) {
		var cs circuitStats
		b.ReportAllocs()
		for b.Loop() {
			cs.rejected(start) // ServeHTTP's clock read, already made
		}
	})
	b.Run("forwarded-parallel-one-circuit", func(b *testing.B) {
		var cs circuitStats
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				cs.forwarded(start, 200, false, 3*time.Millisecond)
			}
		})
	})
	b.Run("forwarded-parallel-own-circuits", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			cs := new(circuitStats)
			for pb.Next() {
				cs.forwarded(start, 200, false, 3*time.Millisecond)
			}
		})
	})
}

// TestStatsLatencyHistogramsAreLazy: a bucket gets its latency histogram
// on its first forwarded call only (rejections need none), and a recycled
// slot starts its new interval with the histogram emptied, so the old
// interval's latencies never reach the new one's percentiles; rates()
// agrees with the snapshot.
func TestStatsLatencyHistogramsAreLazy(t *testing.T) {
	var cs circuitStats
	t0 := time.Unix(1_800_000_000, 0)
	started := t0.Add(-time.Hour)
	cs.rejected(t0)
	cs.forwarded(t0.Add(bucketWidth), 200, false, 800*time.Millisecond)
	w := cs.window.Load()
	with := 0
	for i := range w.buckets {
		if w.buckets[i].latency.Load() != nil {
			with++
		}
	}
	if with != 1 {
		t.Errorf("%d buckets hold a latency histogram after one forwarded call, want 1", with)
	}
	// The same slot, bucketCount widths later: its 800 ms is gone.
	later := t0.Add(bucketWidth + bucketCount*bucketWidth)
	cs.forwarded(later, 200, false, 10*time.Millisecond)
	st := cs.snapshot(later, started, false)
	if st == nil || st.P99Ms > 20 {
		t.Fatalf("p99 after the slot was recycled: %+v, want about 10 ms", st)
	}
	rps, rejps, errPct, p99 := cs.rates(later, started, true)
	if rps != st.RequestsPerSecond || rejps != st.RejectedPerSecond || errPct != st.ErrorPercent || p99 != st.P99Ms {
		t.Errorf("rates %v %v %v %v, snapshot %v %v %v %v", rps, rejps, errPct, p99, st.RequestsPerSecond, st.RejectedPerSecond, st.ErrorPercent, st.P99Ms)
	}
}
