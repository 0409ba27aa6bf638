package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// stillOpenEvery is how often a circuit that keeps failing its probes is
// logged again at WARN ("still OPEN after N failed probes, down 12m");
// the failed probes in between are logged at DEBUG.
const stillOpenEvery = 5 * time.Minute

// transitionLog writes the sidecar's log line for each transition, by
// outage episode rather than by state change: an outage is one ERROR when
// the circuit opens, a WARN at its first failed probe and then every
// stillOpenEvery, and an INFO when it recovers. HALF_OPEN is routine inside
// an outage: DEBUG. (The breakers' own logging is off in the sidecar: it
// logs every state change, which made an 8-minute outage of 128 circuits
// 295 "OPEN again" ERROR lines and as many WARNs.)
//
// In a fleet, each transition the fleet made (breaker.ReasonFleet) is
// logged at its level by one replica, the one whose call decided it
// (Transition.DecidedBy: an opening is one ERROR fleet-wide), and at INFO at
// most by the others, which only learnt of it; every replica's line says
// decided_by. When the fleet does not say (a replica of the previous
// version decided), an opening is an ERROR on the replicas that saw
// failures of its streak.
//
// Every line carries circuit, service and region (for per-region
// circuits), as every other line of the sidecar does.
type transitionLog struct {
	log     *slog.Logger
	route   func(circuit string) *route // nil for a circuit no longer configured
	replica string                      // this replica's name, to tell the fleet's decisions made here

	mu      sync.Mutex
	outages map[string]*outage // by circuit, while not closed
}

// outage is one episode of a circuit not closed.
type outage struct {
	since        time.Time
	failedProbes int
	lastWarn     time.Time // of the last "still OPEN" line
}

func newTransitionLog(log *slog.Logger, route func(string) *route) *transitionLog {
	return &transitionLog{log: log, route: route, outages: map[string]*outage{}}
}

// record logs t, decided by replica decidedBy ("" if not known or outside
// a fleet), with its evidence if it opened the circuit; called in order for
// each breaker (OnTransition).
func (l *transitionLog) record(t breaker.Transition, decidedBy string, evidence []Outcome) {
	level, msg, o := l.classify(t)
	if t.Reason == breaker.ReasonFleet && t.DecidedBy != "" && t.DecidedBy != l.replica {
		level = min(level, slog.LevelInfo) // the decider logs it at its level
	}
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	attrs := l.attrs(t)
	if decidedBy != "" {
		attrs = append(attrs, slog.String("decided_by", decidedBy))
	}
	if o != nil && (t.From == breaker.HalfOpen && t.To == breaker.Open || t.To == breaker.Closed) {
		attrs = append(attrs, slog.Duration("down", t.At.Sub(o.since).Round(time.Second)),
			slog.Int("failed_probes", o.failedProbes))
	}
	if r := l.route(t.Name); t.To == breaker.Open && (len(evidence) > 0 || r != nil && r.stats != nil) {
		attrs = append(attrs, slog.String("evidence", evidenceText(evidence)))
	}
	l.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// classify decides the level and message of t and updates the circuit's
// outage; o is the outage t belongs to, if any.
func (l *transitionLog) classify(t breaker.Transition) (level slog.Level, msg string, o *outage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	o = l.outages[t.Name]
	name := l.subject(t.Name)
	switch t.To {
	case breaker.Open:
		if o != nil && t.From == breaker.HalfOpen {
			o.failedProbes++
			if o.failedProbes == 1 || t.At.Sub(o.lastWarn) >= stillOpenEvery {
				o.lastWarn = t.At
				return slog.LevelWarn, fmt.Sprintf("Circuit breaker still OPEN for %s after %d failed probes, down %v; next probe in %v",
					name, o.failedProbes, t.At.Sub(o.since).Round(time.Second), t.OpenFor.Round(time.Millisecond)), o
			}
			return slog.LevelDebug, fmt.Sprintf("Circuit breaker OPEN for %s again: probe failed, next probe in %v", name, t.OpenFor.Round(time.Millisecond)), o
		}
		if o == nil || t.From == breaker.Closed {
			o = &outage{since: t.At}
			l.outages[t.Name] = o
		}
		level = slog.LevelError
		if t.Reason == breaker.ReasonFleet && t.DecidedBy == "" && t.Failures == 0 {
			level = slog.LevelInfo // another replica's failures opened it; it logs the ERROR
		}
		return level, l.openMessage(t, name), o
	case breaker.HalfOpen:
		return slog.LevelDebug, fmt.Sprintf("Circuit breaker HALF_OPEN for %s: probes allowed", name), o
	case breaker.Closed:
		delete(l.outages, t.Name)
		fleetRecovered := t.Reason == breaker.ReasonFleet && (t.FleetReason == 0 || t.FleetReason == breaker.ReasonProbesSucceeded) &&
			(t.From == breaker.Open || t.From == breaker.HalfOpen)
		if t.Reason == breaker.ReasonProbesSucceeded || fleetRecovered {
			msg = fmt.Sprintf("Circuit breaker CLOSED for %s — recovered", name)
			if o != nil {
				msg += fmt.Sprintf(" after %v down, %d failed probes", t.At.Sub(o.since).Round(time.Second), o.failedProbes)
			}
			return slog.LevelInfo, msg, o
		}
		why := t.Reason.String()
		if t.FleetReason != 0 {
			why += ": " + t.FleetReason.String()
		}
		return slog.LevelInfo, fmt.Sprintf("Circuit breaker CLOSED for %s (%s)", name, why), o
	case breaker.ForcedOpen:
		delete(l.outages, t.Name) // an operator's choice, not an outage
		return slog.LevelWarn, fmt.Sprintf("Circuit breaker FORCED OPEN for %s (%s): calls rejected until an operator closes it", name, t.Reason), nil
	case breaker.Disabled:
		delete(l.outages, t.Name)
		return slog.LevelWarn, fmt.Sprintf("Circuit breaker DISABLED for %s: calls pass, nothing trips (%s)", name, t.Reason), nil
	}
	return slog.LevelWarn, t.Message(), o
}

// subject names the circuit in a message: "region eu-west-1" for a
// per-region circuit, as T10 words it (the service is in the attributes),
// else the circuit's name.
func (l *transitionLog) subject(circuit string) string {
	if r := l.route(circuit); r != nil && r.region != "" {
		return "region " + r.region
	}
	return circuit
}

func (l *transitionLog) openMessage(t breaker.Transition, name string) string {
	switch t.Reason {
	case breaker.ReasonFailureThreshold:
		return fmt.Sprintf("Circuit breaker OPEN for %s after %d failures", name, t.Failures)
	case breaker.ReasonFailureRate:
		return fmt.Sprintf("Circuit breaker OPEN for %s: %d of %d calls failed in the window", name, t.Failures, t.Calls)
	case breaker.ReasonFleet:
		cause := ""
		if t.FleetReason != 0 {
			cause = " (" + t.FleetReason.String() + ")"
		}
		if t.Failures > 0 {
			return fmt.Sprintf("Circuit breaker OPEN for %s: opened by the fleet%s after failures, %d of them on this replica", name, cause, t.Failures)
		}
		return fmt.Sprintf("Circuit breaker OPEN for %s: opened by the fleet%s", name, cause)
	}
	return fmt.Sprintf("Circuit breaker OPEN for %s (%s)", name, t.Reason)
}

// attrs are the attributes of a transition's line.
func (l *transitionLog) attrs(t breaker.Transition) []slog.Attr {
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs, slog.String("circuit", t.Name))
	if r := l.route(t.Name); r != nil {
		attrs = append(attrs, slog.String("service", r.service))
		if r.region != "" {
			attrs = append(attrs, slog.String("region", r.region))
		}
	}
	attrs = append(attrs,
		slog.String("from", t.From.String()),
		slog.String("to", t.To.String()),
		slog.String("reason", t.Reason.String()),
		slog.Int("failures", t.Failures),
		slog.Int("successes", t.Successes),
		slog.Uint64("generation", t.Generation))
	if t.Calls > 0 {
		attrs = append(attrs, slog.Int("calls", t.Calls))
	}
	if t.FleetReason != 0 {
		attrs = append(attrs, slog.String("fleet_reason", t.FleetReason.String()))
	}
	if t.To == breaker.Open {
		attrs = append(attrs, slog.Duration("open_for", t.OpenFor))
	}
	return attrs
}
