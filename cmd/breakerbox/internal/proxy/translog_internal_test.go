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
