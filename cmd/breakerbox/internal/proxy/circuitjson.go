package proxy

import (
	"encoding/json"
	"math"
	"strconv"
)

// appendCircuit appends c as encoding/json writes it (compact, HTML-safe),
// without reflection: the listing of 10,000 circuits spent more than half
// its CPU in encoding/json. The transitions and outcomes in it (few: only
// circuits that moved) still go through encoding/json, so that a field
// added to them cannot be left out here; TestAppendCircuitMatchesEncodingJSON
// fails if a field of the types written here is.
func appendCircuit(b []byte, c *Circuit) []byte {
	b = append(b, `{"name":`...)
	b = appendJSONString(b, c.Name)
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, c.Kind)
	b = append(b, `,"service":`...)
	b = appendJSONString(b, c.Service)
	if c.Region != "" {
		b = append(b, `,"region":`...)
		b = appendJSONString(b, c.Region)
	}
	b = append(b, `,"upstream":`...)
	b = appendJSONString(b, c.Upstream)
	b = append(b, `,"state":`...)
	b = appendJSONString(b, c.State)
	b = append(b, `,"consecutive_failures":`...)
	b = strconv.AppendInt(b, int64(c.ConsecutiveFailures), 10)
	b = append(b, `,"consecutive_successes":`...)
	b = strconv.AppendInt(b, int64(c.ConsecutiveSuccesses), 10)
	b = append(b, `,"probes_in_flight":`...)
	b = strconv.AppendInt(b, int64(c.ProbesInFlight), 10)
	b = append(b, `,"counts":`...)
	b = c.Counts.appendJSON(b)
	b = append(b, `,"rejected":`...)
	b = strconv.AppendUint(b, c.Rejected, 10)
	b = append(b, `,"rejected_half_open":`...)
	b = strconv.AppendUint(b, c.RejectedHalfOpen, 10)
	b = append(b, `,"retry_after_seconds":`...)
	b = appendJSONFloat(b, c.RetryAfterSeconds)
	b = append(b, `,"last_transition":`...)
	b = appendMarshaled(b, c.LastTransition, c.LastTransition == nil)
	s := &c.Settings
	b = append(b, `,"settings":{"failure_threshold":`...)
	b = strconv.AppendInt(b, int64(s.FailureThreshold), 10)
	b = append(b, `,"open_timeout_seconds":`...)
	b = appendJSONFloat(b, s.OpenTimeout)
	b = append(b, `,"half_open_successes":`...)
	b = strconv.AppendInt(b, int64(s.HalfOpenSuccesses), 10)
	b = append(b, `,"half_open_probes":`...)
	b = strconv.AppendInt(b, int64(s.HalfOpenProbes), 10)
	b = append(b, `,"timeout_seconds":`...)
	b = appendJSONFloat(b, s.Timeout)
	b = append(b, `},"stats":`...)
	b = appendStats(b, c.Stats)
	if c.Opened != nil {
		b = append(b, `,"opened":`...)
		b = appendMarshaled(b, c.Opened, false)
	}
	if len(c.Recent) > 0 {
		b = append(b, `,"recent":`...)
		b = appendMarshaled(b, c.Recent, false)
	}
	return append(b, '}')
}

// appendSummary appends c's CircuitSummary as encoding/json would
// (TestAppendCircuitMatchesEncodingJSON).
func appendSummary(b []byte, c *Circuit) []byte {
	b = append(b, `{"name":`...)
	b = appendJSONString(b, c.Name)
	b = append(b, `,"state":`...)
	b = appendJSONString(b, c.State)
	if c.ConsecutiveFailures != 0 {
		b = append(b, `,"consecutive_failures":`...)
		b = strconv.AppendInt(b, int64(c.ConsecutiveFailures), 10)
	}
	b = append(b, `,"failure_threshold":`...)
	b = strconv.AppendInt(b, int64(c.Settings.FailureThreshold), 10)
	var st StatsJSON
	if c.Stats != nil {
		st = *c.Stats
	}
	for _, f := range [...]struct {
		key string
		v   float64
	}{{`,"retry_after_seconds":`, c.RetryAfterSeconds}, {`,"requests_per_second":`, st.RequestsPerSecond},
		{`,"error_percent":`, st.ErrorPercent}, {`,"rejected_per_second":`, st.RejectedPerSecond}, {`,"p99_ms":`, st.P99Ms}} {
		if f.v != 0 {
			b = append(b, f.key...)
			b = appendJSONFloat(b, f.v)
		}
	}
	return append(b, '}')
}

func appendStats(b []byte, st *StatsJSON) []byte {
	if st == nil {
		return append(b, "null"...)
	}
	b = append(b, `{"window_seconds":`...)
	b = appendJSONFloat(b, st.WindowSeconds)
	b = append(b, `,"requests_per_second":`...)
	b = appendJSONFloat(b, st.RequestsPerSecond)
	b = append(b, `,"error_percent":`...)
	b = appendJSONFloat(b, st.ErrorPercent)
	b = append(b, `,"rejected_per_second":`...)
	b = appendJSONFloat(b, st.RejectedPerSecond)
	b = append(b, `,"p50_ms":`...)
	b = appendJSONFloat(b, st.P50Ms)
	b = append(b, `,"p99_ms":`...)
	b = appendJSONFloat(b, st.P99Ms)
	bk := &st.Buckets
	b = append(b, `,"buckets":{"start":`...)
	b = strconv.AppendInt(b, bk.Start, 10)
	b = append(b, `,"width_seconds":`...)
	b = strconv.AppendInt(b, int64(bk.WidthSeconds), 10)
	b = append(b, `,"requests":`...)
	b = appendUint32s(b, bk.Requests)
	b = append(b, `,"failures":`...)
	b = appendUint32s(b, bk.Failures)
	b = append(b, `,"rejected":`...)
	b = appendUint32s(b, bk.Rejected)
	if len(bk.P50Ms) > 0 {
		b = append(b, `,"p50_ms":`...)
		b = appendFloats(b, bk.P50Ms)
	}
	if len(bk.P99Ms) > 0 {
		b = append(b, `,"p99_ms":`...)
		b = appendFloats(b, bk.P99Ms)
	}
	return append(b, "}}"...)
}

func appendUint32s(b []byte, v []uint32) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, n := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(n), 10)
	}
	return append(b, ']')
}

func appendFloats(b []byte, v []float64) []byte {
	b = append(b, '[')
	for i, f := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONFloat(b, f)
	}
	return append(b, ']')
}

// appendMarshaled appends v through encoding/json, or null.
func appendMarshaled(b []byte, v any, null bool) []byte {
	if null {
		return append(b, "null"...)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return append(b, "null"...)
	}
	return append(b, data...)
}

// appendJSONFloat writes f as encoding/json does: shortest decimal, with an
// exponent only below 1e-6 or from 1e21. NaN and infinities, which
// encoding/json refuses, are written as 0 (the stats never make them).
func appendJSONFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, '0')
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendJSONString writes s quoted; a string needing escapes (rare in
// circuit names and URLs) goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return appendMarshaled(b, s, false)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
