// Package breakerotel reports the breakers of a breaker.Registry to
// OpenTelemetry: their state, calls, rejections and transitions as metric
// instruments, and rejections and transitions as events on the span of a
// traced call.
//
// # Metrics
//
// NewMetrics registers observable instruments on a Meter, read from each
// breaker's Snapshot when the SDK collects, so they cost the calls nothing,
// follow breakers the registry creates later, and drop breakers it removes
// (idle eviction included) instead of keeping their series forever. Names
// follow OpenTelemetry's semantic-convention style (dot-separated,
// singular, units in UCUM), each data point attributed with breaker.name:
//
//	breaker.state        UpDownCounter {breaker}     1 for the breaker's current state, 0 for the others
//	                                                 (breaker.state: closed, open, half_open, forced_open, disabled),
//	                                                 so a sum over names counts breakers per state
//	breaker.calls        Counter {call}              calls let through, by breaker.outcome:
//	                                                 success (only with breaker.Config.CountSuccesses), failure, ignored
//	breaker.rejections   Counter {call}              calls rejected without running, by breaker.rejection.reason:
//	                                                 open (OPEN or FORCED_OPEN), half_open_full (every probe slot taken)
//	breaker.transitions  Counter {transition}        state changes, by breaker.transition.from and breaker.transition.to
//	breaker.retry_after  Gauge s                     seconds until a probe is allowed (OPEN, or HALF_OPEN with
//	                                                 every slot taken), else 0
//
// The four automatic transitions (closed→open, open→half_open,
// half_open→closed, half_open→open) are reported from the start, at 0 until
// they happen, so a rate sees the first one; operator transitions appear
// once they have happened. These are the numbers of package breakerprom,
// for an OpenTelemetry pipeline.
//
// Why a transition happened (breaker.Transition.Reason) is not a metric
// attribute: the counts come from the breaker's snapshot, which keeps them
// per pair of states. The reason is on the span event (see Do) and in the
// breaker's log record.
//
// # Traces
//
// Do runs a call under a breaker like breaker.Breaker.Do and, when the
// context carries a recording span, adds to it a breaker.rejected event when
// the breaker refused the call, and a breaker.transition event when the
// breaker changed state during the call (the call that tripped it, the probe
// that closed it), with the attributes breaker.name and breaker.state set on
// the span. Without a recording span it is breaker.Breaker.Do plus one
// context lookup.
package breakerotel
