package proxy

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// TestFleetOpeningIsAnErrorOnlyWhereFailuresWere: a circuit the fleet
// opened is an ERROR on a replica that saw failures of the streak, INFO on
// one that only learnt of it; recovery is INFO on both.
func TestFleetOpeningIsAnErrorOnlyWhereFailuresWere(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name      string
		failures  int
		wantLevel string
		wantMsg   string
	}{
		{"ReplicaThatFailed", 3, "level=ERROR", "opened by the fleet (failure_threshold) after failures, 3 of them on this replica"},
		{"Bystander", 0, "level=INFO", "opened by the fleet (failure_threshold)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := newTransitionLog(slog.New(slog.NewTextHandler(&buf, nil)), func(string) *route {
				return &route{circuit: "genesys/us-east-1", service: "genesys", region: "us-east-1"}
			})
			l.record(breaker.Transition{Name: "genesys/us-east-1", From: breaker.Closed, To: breaker.Open, Reason: breaker.ReasonFleet,
				FleetReason: breaker.ReasonFailureThreshold, Failures: tt.failures, At: at, OpenFor: time.Minute}, "", nil)
			l.record(breaker.Transition{Name: "genesys/us-east-1", From: breaker.Open, To: breaker.Closed, Reason: breaker.ReasonFleet,
				FleetReason: breaker.ReasonProbesSucceeded, At: at.Add(3 * time.Minute)}, "", nil)
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if len(lines) != 2 || !strings.Contains(lines[0], tt.wantLevel) || !strings.Contains(lines[0], "Circuit breaker OPEN for region us-east-1: "+tt.wantMsg) {
				t.Fatalf("opening:\n%s", buf.String())
			}
			if !strings.Contains(lines[1], "level=INFO") || !strings.Contains(lines[1], "Circuit breaker CLOSED for region us-east-1 — recovered after 3m0s down") {
				t.Fatalf("recovery:\n%s", buf.String())
			}
		})
	}
}

// TestAFleetTransitionIsLoggedAtItsLevelByItsDeciderOnly: the replica that
// decided a fleet transition logs it at the episode's level, the others at
// INFO at most; every line says decided_by.
func TestAFleetTransitionIsLoggedAtItsLevelByItsDeciderOnly(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	opening := breaker.Transition{Name: "genesys/us-east-1", From: breaker.Closed, To: breaker.Open, Reason: breaker.ReasonFleet,
		FleetReason: breaker.ReasonFailureThreshold, Failures: 3, At: at, OpenFor: time.Minute, DecidedBy: "replica-b"}
	reopening := breaker.Transition{Name: "genesys/us-east-1", From: breaker.HalfOpen, To: breaker.Open, Reason: breaker.ReasonFleet,
		FleetReason: breaker.ReasonProbeFailed, At: at.Add(time.Minute), OpenFor: time.Minute, DecidedBy: "replica-b"}
	forced := breaker.Transition{Name: "genesys/us-east-1", From: breaker.Open, To: breaker.ForcedOpen, Reason: breaker.ReasonFleet,
		FleetReason: breaker.ReasonForcedOpen, At: at.Add(2 * time.Minute), DecidedBy: "replica-b"}
	for _, tt := range []struct {
		replica string
		want    []string // the levels of the three lines
	}{
		{"replica-b", []string{"level=ERROR", "level=WARN", "level=WARN"}},
		{"replica-a", []string{"level=INFO", "level=INFO", "level=INFO"}}, // it saw 3 failures: no matter, replica-b decided
	} {
		var buf bytes.Buffer
		l := newTransitionLog(slog.New(slog.NewTextHandler(&buf, nil)), func(string) *route {
			return &route{circuit: "genesys/us-east-1", service: "genesys", region: "us-east-1"}
		})
		l.replica = tt.replica
		l.record(opening, "replica-b", []Outcome{{Status: 503, LatencyMs: 12, Replica: "replica-c"}, {Error: "timeout", LatencyMs: 5000, Replica: "replica-b"}})
		l.record(reopening, "replica-b", nil)
		l.record(forced, "replica-b", nil)
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 3 {
			t.Fatalf("%s: %d lines, want 3:\n%s", tt.replica, len(lines), buf.String())
		}
		for i, want := range tt.want {
			if !strings.Contains(lines[i], want) || !strings.Contains(lines[i], "decided_by=replica-b") {
				t.Errorf("%s: line %d = %s, want %s and decided_by=replica-b", tt.replica, i, lines[i], want)
			}
		}
		if !strings.Contains(lines[0], `evidence="replica-c:503/12ms replica-b:timeout/5000ms"`) {
			t.Errorf("%s: opening's evidence: %s", tt.replica, lines[0])
		}
	}
}

// TestDescriptionsReadBackAndHostileOnesStayText: the fleet's evidence
// carries a replica's description of each failure; one this version did
// not write is shown as text, never read as a status.
func TestDescriptionsReadBackAndHostileOnesStayText(t *testing.T) {
	for _, o := range []Outcome{{Status: 503, LatencyMs: 12.5}, {Error: "timeout", LatencyMs: 5000}, {Status: 429}} {
		if got := parseDescription(describe(o)); got != o {
			t.Errorf("parseDescription(describe(%+v)) = %+v", o, got)
		}
	}
	for d, want := range map[string]Outcome{
		"":                   {Error: "failure"},
		"503":                {Error: "503"},
		"503/-1ms":           {Error: "503/-1ms"},
		"99999/1ms":          {Error: "99999", LatencyMs: 1},
		"<script>/1ms":       {Error: "<script>", LatencyMs: 1},
		"connection_error/x": {Error: "connection_error/x"},
	} {
		if got := parseDescription(d); got != want {
			t.Errorf("parseDescription(%q) = %+v, want %+v", d, got, want)
		}
	}
}
