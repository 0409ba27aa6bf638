package breakertest_test

import (
	"slices"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker/breakertest"
)

func TestAdvanceFiresDueTimersInOrderAtTheirTime(t *testing.T) {
	c := breakertest.NewClock()
	var fired []string
	at := func(name string) func() {
		return func() { fired = append(fired, name+"@"+c.Now().Sub(breakertest.Epoch).String()) }
	}
	c.AfterFunc(3*time.Second, at("c"))
	c.AfterFunc(time.Second, at("a"))
	c.AfterFunc(time.Second, at("a2")) // same time: in order of scheduling
	stop := c.AfterFunc(2*time.Second, at("stopped"))
	if !stop() || stop() {
		t.Fatal("stop should report true once")
	}
	c.AfterFunc(10*time.Second, at("later"))
	c.Advance(5 * time.Second)
	if want := []string{"a@1s", "a2@1s", "c@3s"}; !slices.Equal(fired, want) {
		t.Fatalf("fired %v, want %v", fired, want)
	}
	if got := c.Now().Sub(breakertest.Epoch); got != 5*time.Second {
		t.Fatalf("now = +%v, want +5s", got)
	}
	if c.Pending() != 1 {
		t.Fatalf("pending %d, want 1", c.Pending())
	}
}

func TestTimerScheduledByTimerFiresInSameAdvance(t *testing.T) {
	c := breakertest.NewClock()
	n := 0
	var tick func()
	tick = func() {
		n++
		c.AfterFunc(time.Second, tick)
	}
	c.AfterFunc(time.Second, tick)
	c.Advance(10 * time.Second)
	if n != 10 {
		t.Fatalf("ticked %d times in 10s, want 10", n)
	}
}

func TestSetNeverMovesBackwards(t *testing.T) {
	c := breakertest.NewClock()
	c.Advance(time.Minute)
	c.Set(breakertest.Epoch)
	if got := c.Now(); !got.Equal(breakertest.Epoch.Add(time.Minute)) {
		t.Fatalf("now %v", got)
	}
}
