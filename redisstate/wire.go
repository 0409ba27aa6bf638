package redisstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/breaker"
)

// This file is the fleet's wire format: what replicas read from Redis (the
// messages published on the fleet's channels and the scripts' replies) and
// the operations they hand to the scripts. doc.go ("Wire format") describes
// it and its compatibility rule; scripts.go writes it.

// wireVersion is the version of the messages this replica publishes, besides
// those of the previous version (0), and of the scripts' replies.
const wireVersion = 1

// channels returns the fleet's channels, one per wire version this replica
// reads, oldest first: <prefix>events for v0 (it has no version of its
// own), <prefix>events:v1 for v1.
func channels(base string) []string { return []string{base, base + ":v1"} }

// decodeMessage decodes a message published on one of the fleet's channels
// into the breaker it is about and the fleet's state. A message is v1 (a
// JSON object with "v": 1) or v0 (seven fields separated by spaces). Any
// other message is an error that says what is wrong with it: one from a
// newer version, a broken or hostile publisher, another program's message on
// the channel.
func decodeMessage(prefix, payload string) (name string, r reply, err error) {
	var key string
	if strings.HasPrefix(payload, "{") {
		key, r, err = decodeV1(payload)
	} else {
		key, r, err = decodeV0(payload)
	}
	if err != nil {
		return "", reply{}, err
	}
	pre := prefix + "{"
	if !strings.HasPrefix(key, pre) || !strings.HasSuffix(key, "}") || len(key) < len(pre)+1 {
		return "", reply{}, fmt.Errorf("message for key %.100q, not a breaker under prefix %q", key, prefix)
	}
	return key[len(pre) : len(key)-1], r, nil
}

// decodeV0 decodes the format of replicas before versions existed:
//
//	<epoch> <state> <remaining ms> <streak 0|1> <streak seq> <reason> <hash key>
func decodeV0(payload string) (key string, r reply, err error) {
	p := strings.SplitN(payload, " ", 7)
	if len(p) != 7 {
		return "", r, fmt.Errorf("v0 message %.120q: %d fields, want 7", payload, len(p))
	}
	if r.epoch, err = count("epoch", p[0]); err != nil {
		return "", r, fmt.Errorf("v0 message %.120q: %w", payload, err)
	}
	if r.state, err = breaker.ParseState(p[1]); err != nil {
		return "", r, fmt.Errorf("v0 message %.120q: %w", payload, err)
	}
	ms, err := count("remaining ms", p[2])
	if err != nil {
		return "", r, fmt.Errorf("v0 message %.120q: %w", payload, err)
	}
	if r.openFor, err = remaining(ms); err != nil {
		return "", r, fmt.Errorf("v0 message %.120q: %w", payload, err)
	}
	switch p[3] {
	case "0", "1":
		r.streak = p[3] == "1"
	default:
		return "", r, fmt.Errorf("v0 message %.120q: streak %.20q, want 0 or 1", payload, p[3])
	}
	if r.sq, err = count("streak sequence", p[4]); err != nil {
		return "", r, fmt.Errorf("v0 message %.120q: %w", payload, err)
	}
	r.reason = reason(p[5])
	return p[6], r, nil
}

// v1 is a v1 message as published. Fields are pointers so that a missing
// one is told apart from a zero one. Epoch and streak sequence are strings:
// Lua's numbers are doubles, and cjson writes them with 14 digits.
type v1 struct {
	V      *int    `json:"v"`
	Key    *string `json:"key"`
	Epoch  *string `json:"ep"`
	State  *string `json:"st"`
	Ms     *int64  `json:"ms"`
	Streak *bool   `json:"streak"`
	Seq    *string `json:"sq"`
	Reason *string `json:"rs"`
	// Optional: what a newer replica adds. A bad one is counted in
	// Stats.Malformed and ignored, and the message still applies.
	By       json.RawMessage `json:"by"`
	Evidence json.RawMessage `json:"ev"`
}

func decodeV1(payload string) (key string, r reply, err error) {
	var m v1
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		return "", r, fmt.Errorf("message %.120q: not JSON: %v", payload, err)
	}
	if m.V == nil {
		return "", r, fmt.Errorf("message %.120q: no version (v)", payload)
	}
	if *m.V != 1 {
		return "", r, fmt.Errorf("message %.120q: wire version %d; this replica reads versions 0 and 1: upgrade it", payload, *m.V)
	}
	var missing []string
	for _, f := range []struct {
		name string
		nil  bool
	}{{"key", m.Key == nil}, {"ep", m.Epoch == nil}, {"st", m.State == nil}, {"ms", m.Ms == nil},
		{"streak", m.Streak == nil}, {"sq", m.Seq == nil}, {"rs", m.Reason == nil}} {
		if f.nil {
			missing = append(missing, f.name)
		}
	}
	if missing != nil {
		return "", r, fmt.Errorf("v1 message %.120q: missing %s", payload, strings.Join(missing, ", "))
	}
	if r.epoch, err = count("epoch", *m.Epoch); err != nil {
		return "", r, fmt.Errorf("v1 message %.120q: %w", payload, err)
	}
	if r.state, err = breaker.ParseState(*m.State); err != nil {
		return "", r, fmt.Errorf("v1 message %.120q: %w", payload, err)
	}
	if *m.Ms < 0 {
		return "", r, fmt.Errorf("v1 message %.120q: remaining ms %d < 0", payload, *m.Ms)
	}
	if r.openFor, err = remaining(*m.Ms); err != nil {
		return "", r, fmt.Errorf("v1 message %.120q: %w", payload, err)
	}
	if r.sq, err = count("streak sequence", *m.Seq); err != nil {
		return "", r, fmt.Errorf("v1 message %.120q: %w", payload, err)
	}
	r.streak, r.reason = *m.Streak, reason(*m.Reason)
	if m.By != nil {
		var by string
		if err := json.Unmarshal(m.By, &by); err != nil || checkReplica(by) != nil {
			r.junk = append(r.junk, fmt.Sprintf("by %.60s: want a replica's name", m.By))
		} else {
			r.by = by
		}
	}
	if m.Evidence != nil {
		var entries []string
		if err := json.Unmarshal(m.Evidence, &entries); err != nil || len(entries) > maxEvidence {
			r.junk = append(r.junk, fmt.Sprintf("ev %.60s: want at most %d strings", m.Evidence, maxEvidence))
		} else {
			r.evidence, r.junk = decodeEvidence(entries, r.junk)
		}
	}
	return *m.Key, r, nil
}

// maxEvidence is the length of a breaker's evidence list (scripts.go).
const maxEvidence = 10

// Evidence is one failure a replica reported to the fleet: the scripts keep
// the last 10 of a breaker's failure streak (or the failed probe that
// reopened it) in Redis, and hand them with the transition to OPEN they led
// to (see Fleet.Opening).
type Evidence struct {
	Replica string    // the replica that reported it (Options.Replica)
	At      time.Time // when Redis counted it, by Redis's clock
	// Detail is the reporting replica's description of the failure
	// (Options.Describe), "" if it gave none.
	Detail string
}

// decodeEvidence decodes the evidence list's entries, "<replica> <ms>
// <description>", newest first; an entry that is not one is left out and
// said in junk.
func decodeEvidence(entries []string, junk []string) ([]Evidence, []string) {
	out := make([]Evidence, 0, len(entries))
	for _, e := range entries {
		p := strings.SplitN(e, " ", 3)
		var ms int64
		var err error
		if len(p) == 3 {
			ms, err = count("time", p[1])
		}
		if len(p) != 3 || err != nil || checkReplica(p[0]) != nil || len(p[2]) > maxDetail {
			junk = append(junk, fmt.Sprintf("evidence entry %.80q: want \"<replica> <ms> <description>\"", e))
			continue
		}
		out = append(out, Evidence{Replica: p[0], At: time.UnixMilli(ms).UTC(), Detail: p[2]})
	}
	return out, junk
}

// maxDetail bounds a failure's description (Options.Describe).
const maxDetail = 100

// checkReplica checks a replica's name as the scripts carry it: one word,
// printable, at most 200 bytes.
func checkReplica(name string) error {
	if name == "" || len(name) > 200 || strings.IndexFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return fmt.Errorf("replica %.60q: want one printable word of at most 200 bytes", name)
	}
	return nil
}

// count parses an epoch or a sequence: an integer from 0 to 2^53, the
// largest that Lua's numbers (doubles) hold exactly, so the largest a script
// can write. A larger one would stop the replica from applying any state
// after it, since epochs only grow.
func count(field, s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > 1<<53 {
		return 0, fmt.Errorf("%s %.30q, want an integer from 0 to 2^53", field, s)
	}
	return n, nil
}

// maxRemaining bounds a remaining open time: more is a broken publisher
// (the open timeout is a Duration, at most 292 years).
const maxRemaining = int64(time.Duration(1<<63-1) / time.Millisecond)

// remaining converts a remaining time in ms; an OPEN fleet always has some.
func remaining(ms int64) (time.Duration, error) {
	if ms > maxRemaining {
		return 0, fmt.Errorf("remaining ms %d is longer than any open timeout", ms)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// reason decodes the reason a message or a reply carries. It only informs
// (it becomes the FleetReason of a transition), so one this replica does not
// know, a newer version's, is no error: it reads as none. So are the words
// that are not transitions: "streak", "rejoin", "restored".
func reason(s string) breaker.Reason {
	r, _ := breaker.ParseReason(s)
	return r
}

// replyLen is the length of a script's reply:
// {version, granted, retry ms, state, epoch, remaining ms, streak, streak
// seq, reason of the last transition, restored, replica that made it,
// evidence of a transition to OPEN made by this call}.
const replyLen = 12

// decodeReply decodes a script's reply, checking the type and range of
// every element.
func decodeReply(v any) (reply, error) {
	a, ok := v.([]any)
	if !ok || len(a) != replyLen {
		return reply{}, fmt.Errorf("script reply %.200v: want an array of %d elements", v, replyLen)
	}
	var r reply
	e := replyErrors{a: a}
	if ver := e.int(0, "version", 0, 1<<31); ver != wireVersion && e.err == nil {
		return reply{}, fmt.Errorf("script reply %.200v: version %d, want %d", v, ver, wireVersion)
	}
	r.granted = e.int(1, "granted", 0, 1) == 1
	r.retry = time.Duration(e.int(2, "retry ms", 0, maxRemaining)) * time.Millisecond
	st := e.str(3, "state")
	r.epoch = e.num(4, "epoch")
	r.openFor = time.Duration(e.int(5, "remaining ms", 0, maxRemaining)) * time.Millisecond
	r.streak = e.int(6, "streak", 0, 1) == 1
	r.sq = e.num(7, "streak sequence")
	r.reason = reason(e.str(8, "reason"))
	r.restored = e.int(9, "restored", 0, 1) == 1
	if by := e.str(10, "by"); by != "" {
		if checkReplica(by) != nil {
			r.junk = append(r.junk, fmt.Sprintf("by %.60q: want a replica's name", by))
		} else {
			r.by = by
		}
	}
	if e.err != nil {
		return reply{}, fmt.Errorf("script reply %.200v: %w", v, e.err)
	}
	if ev, ok := a[11].([]any); !ok || len(ev) > maxEvidence {
		r.junk = append(r.junk, fmt.Sprintf("evidence %.80v: want at most %d strings", a[11], maxEvidence))
	} else if len(ev) > 0 {
		entries := make([]string, 0, len(ev))
		for _, x := range ev {
			if s, ok := x.(string); ok {
				entries = append(entries, s)
			} else {
				r.junk = append(r.junk, fmt.Sprintf("evidence entry %.40v: want a string", x))
			}
		}
		r.evidence, r.junk = decodeEvidence(entries, r.junk)
	}
	var err error
	if r.state, err = breaker.ParseState(st); err != nil {
		return reply{}, fmt.Errorf("script reply %.200v: %w", v, err)
	}
	return r, nil
}

// replyErrors reads a reply's elements, keeping the first error.
type replyErrors struct {
	a   []any
	err error
}

func (e *replyErrors) int(i int, field string, lo, hi int64) int64 {
	n, ok := e.a[i].(int64)
	if e.err == nil && (!ok || n < lo || n > hi) {
		e.err = fmt.Errorf("%s %#v, want an integer in [%d, %d]", field, e.a[i], lo, hi)
	}
	return n
}

func (e *replyErrors) str(i int, field string) string {
	s, ok := e.a[i].(string)
	if e.err == nil && !ok {
		e.err = fmt.Errorf("%s %#v, want a string", field, e.a[i])
	}
	return s
}

func (e *replyErrors) num(i int, field string) int64 {
	n, err := count(field, e.str(i, field))
	if e.err == nil && err != nil {
		e.err = err
	}
	return n
}

// An event is one outcome reported to the report script.
type event struct {
	kind    eventKind
	outcome breaker.Outcome // of a probe
	probe   uint64          // the probe's slot
	openFor time.Duration   // of a probe: the open timeout its failure starts (0: the configured one)
	detail  string          // of a failure: Options.Describe's description
}

type eventKind uint8

const (
	evNone    eventKind = iota // not an outcome: a sync
	evFailure                  // a failure in CLOSED
	evSuccess                  // the success that ends a failure streak
	evProbe                    // a HALF_OPEN probe's outcome
)

// appendEvents appends events to the report script's arguments, in order:
// "f<n>[:<description>]" for n consecutive failures (described alike), "s"
// for a success ending a streak, "p<s|f|i><slot>:<open ms>[:<description>]"
// for a probe's outcome (success, failure, ignored).
func appendEvents(args []any, events []event) []any {
	run, detail := 0, ""
	flush := func() {
		if run > 0 {
			a := "f" + strconv.Itoa(run)
			if detail != "" {
				a += ":" + detail
			}
			args, run = append(args, a), 0
		}
	}
	for _, e := range events {
		if e.kind == evFailure { // a run of failures described alike is one argument
			if run > 0 && e.detail != detail {
				flush()
			}
			run, detail = run+1, e.detail
			continue
		}
		flush()
		switch e.kind {
		case evSuccess:
			args = append(args, "s")
		case evProbe:
			o := "i"
			switch e.outcome {
			case breaker.Success:
				o = "s"
			case breaker.Failure:
				o = "f"
			}
			a := "p" + o + strconv.FormatUint(e.probe, 10) + ":" + strconv.FormatInt(e.openFor.Milliseconds(), 10)
			if e.detail != "" {
				a += ":" + e.detail
			}
			args = append(args, a)
		}
	}
	flush()
	return args
}

// syncMode is what the sync script does (see scripts.go).
type syncMode uint8

const (
	modeRead    syncMode = iota + 1 // read the fleet's state
	modeForce                       // an operator's action
	modeJoin                        // a state the replica holds alone, published if the fleet has none
	modeRestore                     // the state the replica holds from the fleet, restored if Redis lost it
)

var modeNames = [...]string{modeRead: "read", modeForce: "force", modeJoin: "join", modeRestore: "restore"}

func (m syncMode) String() string { return modeNames[m] }

// scriptFailed reports whether err is Redis's answer that a script failed on
// what it found (a key of the wrong type, a value it cannot read), rather
// than a Redis that cannot serve (down, loading, read-only, out of memory):
// the first is one breaker's bad data, ignored and counted; the second is a
// fault that degrades the fleet.
func scriptFailed(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) || isNoScript(err) {
		return false
	}
	// A Lua error, or a command of the script refused for its key's type;
	// not OOM, READONLY, BUSY, LOADING…, which a script's errors carry too.
	msg := err.Error()
	return strings.HasPrefix(msg, "WRONGTYPE") || strings.HasPrefix(msg, "ERR") && strings.Contains(msg, "user_script")
}

// onlyScriptsFailed reports whether every call of a pipeline that failed
// failed in its script (see scriptFailed): each is then settled on its own,
// and the others' replies apply.
func onlyScriptsFailed(calls []call) bool {
	for _, c := range calls {
		if err := c.cmd.Err(); err != nil && !scriptFailed(err) {
			return false
		}
	}
	return true
}

// scriptError handles the error of one script call.
func (f *Fleet) scriptError(err error) {
	if scriptFailed(err) {
		f.malformed("script error", err)
		return
	}
	f.fault(err)
}

// malformed counts something read from Redis that is ignored because it
// could not be decoded, and logs what was wrong with it: at most once per
// malformedEvery, with the number not logged since.
func (f *Fleet) malformed(what string, err error) {
	f.stats.malformed.Add(1)
	now := time.Now().UnixNano()
	last := f.malformedAt.Load()
	if last != 0 && now-last < int64(malformedEvery) || !f.malformedAt.CompareAndSwap(last, now) {
		f.malformedUnlogged.Add(1)
		return
	}
	f.log.Warn("ignoring "+what+" from Redis", "err", err, "ignored_unlogged", f.malformedUnlogged.Swap(0))
}

// malformedEvery bounds the rate of malformed's log lines.
const malformedEvery = 10 * time.Second
