package redisstate_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/internal/redistest"
	"github.com/breakerbox/breakerbox/redisstate"
)

// Messages on the fleet's channels and script replies that do not decode —
// a newer version's, a broken or hostile publisher's, a hash Redis holds in
// a shape no script wrote — are ignored: no panic, no state moved, no fault
// that would degrade the fleet; each is counted, and logged at a bounded
// rate with what was wrong.
func TestMalformedMessagesAndRepliesAreIgnoredCountedAndLoggedRarely(t *testing.T) {
	srv := redistest.Start(t)
	start := time.Now()
	f := newFleet(t, srv, 2, t10(time.Minute), redisstate.Options{Timeout: 2 * time.Second})
	defer func() {
		if t.Failed() {
			dumpLogs(t, f)
		}
	}()
	rdb := srv.Client()
	ctx := context.Background()
	hostile := []string{
		"", "garbage", "12 open 5 0 13 failure_threshold", "99 open 5 0 13 failure_threshold other:{" + key + "}",
		"99 opened 5 0 13 failure_threshold breakerbox:{" + key + "}", "-99 open 5 0 13 r breakerbox:{" + key + "}",
		"99 open 99999999999999999999 0 13 r breakerbox:{" + key + "}", "99 open 5 7 13 r breakerbox:{" + key + "}",
		`{"v":2,"key":"breakerbox:{` + key + `}","state":"open"}`, `{"v":1,"key":"breakerbox:{` + key + `}","ep":"99"}`,
		`{"v":1,"key":"breakerbox:{` + key + `}","ep":"99","st":"open","ms":-1,"streak":false,"sq":"1","rs":""}`,
		`{"v":"1"}`, `[1,2,3]`, `{` + strings.Repeat(`"a":`, 10000),
	}
	channels := []string{"breakerbox:events", "breakerbox:events:v1"}
	for _, p := range hostile {
		for _, ch := range channels {
			if err := rdb.Publish(ctx, ch, p).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := uint64(len(hostile) * len(channels))
	for _, r := range f {
		eventually(t, 10*time.Second, func() bool { return r.f.Stats().Malformed == want }, r.name+" counts every hostile message")
	}

	// Replies: the hash holds a state no version writes, then is no hash.
	hash := "breakerbox:{" + key + "}"
	rdb.HSet(ctx, hash, "st", "bogus")
	f[0].fail(1)
	eventually(t, 10*time.Second, func() bool { return f[0].f.Stats().Malformed == want+1 }, "a reply with an unknown state is counted")
	rdb.Del(ctx, hash)
	rdb.Set(ctx, hash, "not a hash", 0)
	f[0].fail(1)
	eventually(t, 10*time.Second, func() bool { return f[0].f.Stats().Malformed == want+2 }, "a script failing on a key of the wrong type is counted")

	for _, r := range f {
		s := r.f.Stats()
		if s.Degraded || s.Faults != 0 || r.b().State() != breaker.Closed || len(r.transitions()) != 0 {
			t.Fatalf("%s: %+v, breaker %v after %v: want no fault and the breaker CLOSED as it was", r.name, s, r.b().State(), r.transitions())
		}
		// One line at most per 10 s, each with what was wrong.
		lines := strings.Count(r.logs.String(), "ignoring ")
		if limit := 1 + int(time.Since(start)/(10*time.Second)); lines < 1 || lines > limit {
			t.Fatalf("%s logged %d lines about %d ignored messages, want 1 to %d:\n%s", r.name, lines, s.Malformed, limit, r.logs.String())
		}
		if !strings.Contains(r.logs.String(), `v0 message \"\": 1 fields, want 7`) { // the first one
			t.Fatalf("%s: the log does not say what was wrong:\n%s", r.name, r.logs.String())
		}
	}

	// Another breaker of the same fleet was never disturbed, and this one
	// works again once its key is sane.
	other := make([]*breaker.Breaker, len(f))
	for i, r := range f {
		other[i], _ = r.reg.Get("other")
	}
	for i := range 10 {
		other[i%2].Do(ctx, func(context.Context) error { return errUpstream })
	}
	eventually(t, 10*time.Second, func() bool { return other[0].State() == breaker.Open && other[1].State() == breaker.Open },
		"another breaker opens fleet-wide")
	rdb.Del(ctx, hash)
	f[0].fail(5)
	f[1].fail(5)
	f.wantState(t, breaker.Open, "the repaired key opens fleet-wide")
}
