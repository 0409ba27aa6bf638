package redisstate

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/breakerbox/breakerbox/breaker"
)

// encodeV0 and encodeV1 are the scripts' encoders (scripts.go, publish)
// written in Go, for the round trips below; TestScriptsPublishWhatTheDecoderReads
// checks that the scripts agree with them.
func encodeV0(key string, r reply, rs string) string {
	streak := 0
	if r.streak {
		streak = 1
	}
	return fmt.Sprintf("%d %s %d %d %d %s %s", r.epoch, r.state, r.openFor.Milliseconds(), streak, r.sq, rs, key)
}

func encodeV1(key string, r reply, rs string) string {
	b, _ := json.Marshal(map[string]any{"v": 1, "key": key, "ep": fmt.Sprint(r.epoch), "st": r.state.String(),
		"ms": r.openFor.Milliseconds(), "streak": r.streak, "sq": fmt.Sprint(r.sq), "rs": rs})
	return string(b)
}

func TestDecodeMessageReadsV0AndV1Alike(t *testing.T) {
	want := reply{epoch: 1764657269123, state: breaker.Open, openFor: 59_998 * time.Millisecond, sq: 1764657269124,
		reason: breaker.ReasonFailureThreshold}
	key := "breakerbox:{genesys/eu west}" // a name with a space: the key is v0's last field
	for _, payload := range []string{encodeV0(key, want, "failure_threshold"), encodeV1(key, want, "failure_threshold")} {
		name, got, err := decodeMessage("breakerbox:", payload)
		if err != nil || name != "genesys/eu west" || !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeMessage(%q) = %q, %+v, %v; want %+v", payload, name, got, err, want)
		}
	}
	// Words that are not transition reasons, and reasons from a newer
	// version, inform nothing: the state still applies.
	for _, rs := range []string{"streak", "rejoin", "restored", "some_future_reason"} {
		_, got, err := decodeMessage("breakerbox:", encodeV1(key, reply{epoch: 5, streak: true, sq: 6}, rs))
		if err != nil || got.reason != 0 || !got.streak {
			t.Fatalf("reason %q: got %+v, %v; want the message with no reason", rs, got, err)
		}
	}
}

func TestDecodeMessageSaysWhatIsWrong(t *testing.T) {
	key := "breakerbox:{b}"
	for _, tc := range []struct{ payload, want string }{
		{"", "1 fields, want 7"},
		{"12 open 5 0 13 failure_threshold", "6 fields, want 7"},
		{"-1 open 5 0 13 failure_threshold " + key, "epoch \"-1\""},
		{"x open 5 0 13 failure_threshold " + key, "epoch \"x\""},
		{"9007199254740993 open 5 0 13 failure_threshold " + key, "epoch \"9007199254740993\", want an integer from 0 to 2^53"},
		{"12 opened 5 0 13 failure_threshold " + key, "unknown state \"opened\""},
		{"12 open 5 2 13 failure_threshold " + key, "streak \"2\", want 0 or 1"},
		{"12 open 9000000000000000 0 13 r " + key, "remaining ms 9000000000000000 is longer"},
		{"12 open 5 0 1e3 failure_threshold " + key, "streak sequence \"1e3\""},
		{"12 open 5 0 13 failure_threshold other:{b}", "not a breaker under prefix"},
		{"12 open 5 0 13 failure_threshold breakerbox:{b", "not a breaker under prefix"},
		{"{", "not JSON"},
		{`{"key":"breakerbox:{b}"}`, "no version"},
		{`{"v":2,"whatever":true}`, "wire version 2; this replica reads versions 0 and 1: upgrade it"},
		{`{"v":1,"key":"breakerbox:{b}","ep":"1"}`, "missing st, ms, streak, sq, rs"},
		{`{"v":1,"key":"breakerbox:{b}","ep":1,"st":"open","ms":1,"streak":false,"sq":"1","rs":""}`, "not JSON"},
		{`{"v":1,"key":"breakerbox:{b}","ep":"1","st":"open","ms":-5,"streak":false,"sq":"1","rs":""}`, "remaining ms -5 < 0"},
		{`{"v":1,"key":"breakerbox:{b}","ep":"1","st":"open","ms":1.5,"streak":false,"sq":"1","rs":""}`, "not JSON"},
	} {
		_, _, err := decodeMessage("breakerbox:", tc.payload)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("decodeMessage(%q) error = %v, want one saying %q", tc.payload, err, tc.want)
		}
	}
}

func TestDecodeReplyChecksEveryElement(t *testing.T) {
	good := []any{int64(1), int64(1), int64(0), "half_open", "1764657269123", int64(0), int64(0), "1764657269124", "open_timeout", int64(0),
		"replica-b", []any{"replica-a 1764657269100 503/12ms"}}
	r, err := decodeReply(good)
	if err != nil || !r.granted || r.state != breaker.HalfOpen || r.epoch != 1764657269123 || r.sq != 1764657269124 || r.reason != breaker.ReasonOpenTimeout ||
		r.by != "replica-b" || len(r.evidence) != 1 || r.evidence[0] != (Evidence{"replica-a", time.UnixMilli(1764657269100).UTC(), "503/12ms"}) || r.junk != nil {
		t.Fatalf("decodeReply(good) = %+v, %v", r, err)
	}
	for i, tc := range []struct {
		at   int
		v    any
		want string
	}{
		{0, int64(2), "version 2, want 1"},
		{0, "1", "version \"1\""},
		{1, int64(2), "granted 2"},
		{2, int64(-1), "retry ms -1"},
		{3, int64(3), "state 3, want a string"},
		{3, "bogus", "unknown state \"bogus\""},
		{4, "1.5", "epoch \"1.5\""},
		{5, nil, "remaining ms <nil>"},
		{6, int64(7), "streak 7"},
		{7, int64(4), "streak sequence 4, want a string"},
		{9, "1", "restored \"1\""},
		{10, int64(1), "by 1, want a string"},
	} {
		bad := append([]any(nil), good...)
		bad[tc.at] = tc.v
		if _, err := decodeReply(bad); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("case %d: decodeReply error = %v, want one saying %q", i, err, tc.want)
		}
	}
	for _, v := range []any{nil, "OK", []any{int64(1)}, append(good, int64(0)), good[:10]} {
		if _, err := decodeReply(v); err == nil || !strings.Contains(err.Error(), "want an array of 12 elements") {
			t.Errorf("decodeReply(%v) error = %v", v, err)
		}
	}
}

// The optional parts (the decider, the evidence) are informative: bad ones
// are left out and said (counted in Stats.Malformed), the state applies.
func TestDecodeReplyLeavesOutBadEvidenceAndKeepsTheState(t *testing.T) {
	for _, tc := range []struct {
		by   any
		ev   any
		keep int
	}{
		{"replica b", []any{}, 0},
		{"", "replica-a 1 x", 0},
		{"", []any{"replica-a 1 x", int64(3), "no-time", "replica-a -5 x", "replica-a 9007199254740993 x", "\x00 1 x", "replica-a 2 " + strings.Repeat("x", 101)}, 1},
		{"", make([]any, 11), 0},
	} {
		r, err := decodeReply([]any{int64(1), int64(0), int64(0), "open", "5", int64(10), int64(0), "6", "failure_threshold", int64(0), tc.by, tc.ev})
		if err != nil || r.state != breaker.Open || r.epoch != 5 || len(r.evidence) != tc.keep || r.junk == nil || r.by != "" {
			t.Errorf("by %q, evidence %v: %+v, %v; want the state, %d entries kept, the rest said in junk", tc.by, tc.ev, r, err, tc.keep)
		}
	}
	key := "breakerbox:{genesys/eu-west-1}"
	for _, extra := range []string{`"by":7`, `"by":"a b"`, `"ev":{"x":1}`, `"ev":["bogus"]`, `"ev":"x"`} {
		p := strings.TrimSuffix(encodeV1(key, reply{epoch: 5, state: breaker.Open, openFor: time.Second}, "failure_threshold"), "}") + "," + extra + "}"
		name, r, err := decodeMessage("breakerbox:", p)
		if err != nil || name != "genesys/eu-west-1" || r.state != breaker.Open || r.junk == nil {
			t.Errorf("decodeMessage(%s) = %q %+v, %v; want the state, the bad part said in junk", p, name, r, err)
		}
	}
	p := strings.TrimSuffix(encodeV1(key, reply{epoch: 5, state: breaker.Open, openFor: time.Second}, "failure_threshold"), "}") +
		`,"by":"replica-b","ev":["replica-b 1764657269100 timeout/5000ms","replica-a 1764657269000 503/1.5ms"]}`
	if _, r, err := decodeMessage("breakerbox:", p); err != nil || r.by != "replica-b" || len(r.evidence) != 2 || r.evidence[1].Replica != "replica-a" ||
		r.evidence[1].Detail != "503/1.5ms" || r.junk != nil {
		t.Errorf("decodeMessage(%s) = %+v, %v", p, r, err)
	}
}

func TestEventsEncodeInOrderWithFailureRunsJoined(t *testing.T) {
	got := appendEvents(nil, []event{{kind: evFailure}, {kind: evFailure}, {kind: evSuccess}, {kind: evFailure},
		{kind: evProbe, outcome: breaker.Success, probe: 7}, {kind: evProbe, outcome: breaker.Failure, probe: 8, openFor: 2 * time.Second},
		{kind: evProbe, outcome: breaker.Ignored, probe: 9}, {kind: evFailure}})
	want := []any{"f2", "s", "f1", "ps7:0", "pf8:2000", "pi9:0", "f1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("appendEvents = %v, want %v", got, want)
	}
	// Described failures: a run is one argument while described alike.
	got = appendEvents(nil, []event{{kind: evFailure, detail: "503/2ms"}, {kind: evFailure, detail: "503/2ms"}, {kind: evFailure, detail: "timeout/5000ms"},
		{kind: evFailure}, {kind: evProbe, outcome: breaker.Failure, probe: 3, detail: "502/1ms"}})
	want = []any{"f2:503/2ms", "f1:timeout/5000ms", "f1", "pf3:0:502/1ms"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("appendEvents = %v, want %v", got, want)
	}
}

// FuzzDecodeMessage: no payload panics the decoder, and what it accepts it
// reads the same from either format.
func FuzzDecodeMessage(f *testing.F) {
	r := reply{epoch: 12, state: breaker.Open, openFor: 5 * time.Millisecond, streak: true, sq: 13}
	f.Add(encodeV0("breakerbox:{b}", r, "failure_threshold"))
	f.Add(encodeV1("breakerbox:{b}", r, "probe_failed"))
	f.Add(`{"v":2}`)
	f.Add("12 open 5 0 13 streak breakerbox:{a b c}")
	f.Fuzz(func(t *testing.T, payload string) {
		name, r, err := decodeMessage("breakerbox:", payload)
		if err != nil {
			return
		}
		if r.state.String() == "" || r.epoch < 0 || r.sq < 0 || r.openFor < 0 {
			t.Fatalf("decodeMessage(%q) accepted %+v", payload, r)
		}
		key := "breakerbox:{" + name + "}"
		again := []string{encodeV0(key, r, r.reason.String())}
		if utf8.ValidString(name) { // JSON carries text: v1 needs names in UTF-8, as breaker names are
			again = append(again, encodeV1(key, r, r.reason.String()))
		}
		for _, again := range again {
			n2, r2, err := decodeMessage("breakerbox:", again)
			if err != nil || n2 != name || !reflect.DeepEqual(r2, r) {
				t.Fatalf("decodeMessage(%q) = %q %+v; re-encoded as %q it reads %q %+v, %v", payload, name, r, again, n2, r2, err)
			}
		}
	})
}

// FuzzDecodeReply: no reply panics the decoder.
func FuzzDecodeReply(f *testing.F) {
	f.Add(int64(1), int64(1), int64(0), "closed", "5", int64(0), int64(1), "6", "reset", int64(0), "replica-a", "replica-a 5 503/1ms")
	f.Fuzz(func(t *testing.T, v, g, retry int64, st, ep string, ms, streak int64, sq, rs string, restored int64, by, ev string) {
		r, err := decodeReply([]any{v, g, retry, st, ep, ms, streak, sq, rs, restored, by, []any{ev}})
		if err == nil && (r.epoch < 0 || r.retry < 0 || r.openFor < 0) {
			t.Fatalf("accepted %+v", r)
		}
	})
}

func TestScriptFailedTellsBadDataFromAFault(t *testing.T) {
	for msg, want := range map[string]bool{
		"ERR user_script:12: attempt to compare nil with number script: 1f2e, on @user_script:12.":           true,
		"WRONGTYPE Operation against a key holding the wrong kind of value script: 1f2e, on @user_script:9.": true,
		"OOM command not allowed when used memory > 'maxmemory'. script: 1f2e, on @user_script:40.":          false,
		"READONLY You can't write against a read only replica. script: 1f2e, on @user_script:40.":            false,
		"NOSCRIPT No matching script. Please use EVAL.":                                                      false,
		"LOADING Redis is loading the dataset in memory":                                                     false,
	} {
		if got := scriptFailed(proto(msg)); got != want {
			t.Errorf("scriptFailed(%q) = %v, want %v", msg, got, want)
		}
	}
	if scriptFailed(io.EOF) {
		t.Error("a lost connection is a fault")
	}
}

// proto is an error reply from Redis, as go-redis returns it.
type proto string

func (e proto) Error() string { return string(e) }
func (proto) RedisError()     {}
