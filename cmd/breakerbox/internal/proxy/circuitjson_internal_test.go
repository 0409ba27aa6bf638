package proxy

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// fill sets every exported field under v to a value that is not zero,
// different for each field (n counts them), so that a field the
// hand-written encoder leaves out shows in a comparison with encoding/json.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n))
	case reflect.Float64:
		v.SetFloat(float64(*n) + 0.25)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(v.Index(i), n)
		}
	case reflect.Map: // Counts
		v.Set(reflect.MakeMap(v.Type()))
		for _, k := range []string{"success", "failure", "ignored"} {
			*n++
			v.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf(uint64(*n)))
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Date(2026, 12, 2, 14, 0, *n, 123456789, time.UTC)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	default:
		panic(fmt.Sprintf("fill: add kind %s (%s)", v.Kind(), v.Type()))
	}
}

// TestAppendCircuitMatchesEncodingJSON: the listing's hand-written JSON is
// byte for byte encoding/json's, for a circuit with every field set (a
// field added to Circuit, SettingsJSON, StatsJSON or BucketsJSON without
// its line in circuitjson.go fails here), one with none, and for strings
// and numbers that need care.
func TestAppendCircuitMatchesEncodingJSON(t *testing.T) {
	var full Circuit
	n := 0
	fill(reflect.ValueOf(&full).Elem(), &n)
	odd := Circuit{Name: `a"b\c<d>&é` + "\x01\u2028", Kind: "http", Service: "svc", Upstream: "http://h/?a=1&b=2",
		RetryAfterSeconds: 1e-7, Settings: SettingsJSON{OpenTimeout: 1e21, Timeout: 0.1},
		Stats: &StatsJSON{WindowSeconds: 59.9, P99Ms: 123456789.125, ErrorPercent: 2.5e-9, Buckets: BucketsJSON{Requests: []uint32{}}}}
	for name, c := range map[string]Circuit{"every field": full, "zero": {}, "escapes and floats": odd} {
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendCircuit(nil, &c); string(got) != string(want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
		var sum CircuitSummary
		sum = CircuitSummary{Name: c.Name, State: c.State, ConsecutiveFailures: c.ConsecutiveFailures,
			FailureThreshold: c.Settings.FailureThreshold, RetryAfterSeconds: c.RetryAfterSeconds}
		if st := c.Stats; st != nil {
			sum.RequestsPerSecond, sum.ErrorPercent, sum.RejectedPerSecond, sum.P99Ms = st.RequestsPerSecond, st.ErrorPercent, st.RejectedPerSecond, st.P99Ms
		}
		want, _ = json.Marshal(sum)
		if got := appendSummary(nil, &c); string(got) != string(want) {
			t.Errorf("%s, summary:\n got %s\nwant %s", name, got, want)
		}
	}
	// CircuitSummary's fields are all written by appendSummary.
	if got, want := reflect.TypeOf(CircuitSummary{}).NumField(), 9; got != want {
		t.Errorf("CircuitSummary has %d fields, appendSummary writes %d: add the new ones to it and to this test", got, want)
	}
}
