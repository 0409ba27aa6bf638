// Package breaker is a circuit breaker: it stops calling a service that is
// failing, so callers fail fast instead of piling up, and lets calls through
// again once the service has recovered.
//
// # The model
//
// A breaker is CLOSED while the service is healthy: every call runs, and a
// trip policy counts failures (by default FailureThreshold consecutive
// failures; optionally a FailureRate over a sliding window). When the policy
// trips, the breaker is OPEN: every call is rejected at once, without running,
// with an error that satisfies errors.Is(err, ErrOpen) and tells how long
// until a probe is allowed. After OpenTimeout the breaker is HALF_OPEN: up to
// HalfOpenProbes calls run at a time as probes; HalfOpenSuccesses consecutive
// successful probes close it, and one failed probe (or one that holds its
// slot longer than ProbeTimeout) opens it again, for an open timeout that
// OpenBackoff may lengthen. Operators can force a breaker open, disable it
// (forced closed), reset it, or run it in dry-run mode.
//
// The zero Config is ADR-002's breaker (5 failures, 60 s, 2 successes, 1
// probe). T10's per-region Genesys breaker is
//
//	breaker.Config{FailureThreshold: 10, OpenTimeout: 60 * time.Second, HalfOpenSuccesses: 3}
//
// What counts as a failure is the caller's call: a Classifier maps an error
// to Success, Failure or Ignored (neither counts nor resets the streak).
//
// # Making calls
//
// Do runs a func(context.Context) error under the breaker; Call does the same
// for a function that returns a value. Most callers want one of these. Allow
// is the two-step form for code that cannot wrap a closure, such as HTTP
// middleware or a queue consumer: it returns a Ticket, the caller makes the
// call, then reports the outcome with Ticket.Done.
//
// Keyed breakers (one per service, host, or region) come from a Registry,
// configured from a default and named profiles.
//
// A breaker blocks on nothing of its own. Shared with a fleet of replicas
// (Config.Sync), a HALF_OPEN probe may wait for the fleet's lease: Do passes
// its ctx to that wait, and AllowContext is Allow with one.
//
// # Fleets
//
// Config.Sync shares a breaker's state across processes (package
// redisstate does it on Redis). The breaker keeps deciding locally; the Sync
// is handed a FleetLink at Attach, the only way to move the breaker to the
// fleet's state, and implements the optional hooks it needs (OutcomeSync,
// ProbeSync, TransitionSync, DecideSync: the fleet, not the breaker's own
// counts, makes the transitions that fleet-wide counts decide). See Sync for the rule that lets hooks be added
// without breaking implementations.
//
// # Cost
//
// In CLOSED, a successful call reads one atomic word before and after the
// call, takes no lock, reads no clock and writes nothing shared. A rejection
// is one atomic load and one atomic add to a counter, and allocates
// nothing; so is a success counted with Config.CountSuccesses. The counters
// are striped per goroutine once two goroutines are seen counting at once,
// so that rejecting from many CPUs shares no cache line, and not before: an
// idle breaker's totals take 48 bytes. A probe takes the mutex twice, reads
// the clock once and allocates nothing. Transitions
// take the mutex; their events are delivered in order, outside it, to
// Config.OnTransition and to Config.Logger.
//
// The open timeout and the probes' leases are deadlines computed from the
// Clock; no goroutine waits for them. One timer per breaker wakes it at the
// earliest deadline, so a breaker half-opens on time with no call to notice.
//
// Package breakertest has a manual clock for tests.
package breaker
