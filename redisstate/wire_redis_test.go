package redisstate

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// The scripts publish each state twice, v1 and v0; both decode to the same
// state, the one the fleet is in.
func TestScriptsPublishWhatTheDecoderReads(t *testing.T) {
	srv := redistest.Start(t)
	ps := srv.Client().Subscribe(context.Background(), channels("breakerbox:events")...)
	defer ps.Close()
	for range 2 {
		if _, err := ps.Receive(context.Background()); err != nil { // the subscriptions' confirmations
			t.Fatal(err)
		}
	}
	f, err := New(context.Background(), Options{URL: srv.URL(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := breaker.New(breaker.Config{Name: "genesys/eu west", FailureThreshold: 3, OpenTimeout: time.Minute, Sync: f,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); f.Stats().Degraded; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the fleet does not join")
		}
	}
	for range 3 {
		b.Do(context.Background(), func(context.Context) error { return errors.New("503") })
	}
	// The streak's start, then the OPEN: v1 first, then v0, for each.
	var got []reply
	for i := range 4 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		m, err := ps.ReceiveMessage(ctx)
		cancel()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if want := channels("breakerbox:events")[1-i%2]; m.Channel != want {
			t.Fatalf("message %d on %s, want %s", i, m.Channel, want)
		}
		name, r, err := decodeMessage("breakerbox:", m.Payload)
		if err != nil || name != "genesys/eu west" {
			t.Fatalf("%s: %q decodes as %q, %v", m.Channel, m.Payload, name, err)
		}
		got = append(got, r)
	}
	// v1 adds what v0 cannot say: which replica decided, and the evidence.
	if o := got[2]; o.by != f.Replica() || len(o.evidence) != 3 || o.evidence[0].Replica != f.Replica() {
		t.Fatalf("v1 OPEN %+v: want it decided by %s, with its 3 failures as evidence", o, f.Replica())
	}
	for i := range got {
		if i%2 == 0 {
			got[i].by, got[i].evidence = "", nil
		}
	}
	if !reflect.DeepEqual(got[0], got[1]) || !reflect.DeepEqual(got[2], got[3]) {
		t.Fatalf("v1 and v0 differ: %+v", got)
	}
	if s, o := got[0], got[2]; s.state != breaker.Closed || !s.streak || o.state != breaker.Open ||
		o.reason != breaker.ReasonFailureThreshold || o.epoch <= s.epoch || o.openFor < 50*time.Second || o.openFor > time.Minute {
		t.Fatalf("published %+v then %+v; want a CLOSED streak, then an OPEN for failure_threshold of about a minute in a newer epoch", s, o)
	}
}
