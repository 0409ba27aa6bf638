package breaker

// The state machine of DESIGN.md, as a pure function: next takes the
// counts an outcome can change and returns them changed, with the
// transition (if any) and the effects to apply. It reads no clock, takes no
// lock and touches no breaker; Breaker.apply makes its verdict take effect.
// machine_test.go checks it row by row against the table.

// machine is the part of a breaker's state that outcomes change.
//
// The field order is for speed: with the small fields last, machine is 24
// bytes and verdict 32, the most the compiler keeps in registers. At 40
// bytes next built its verdict in memory with byte-wide stores and copied
// it out with wider loads, a store-forwarding stall that doubled the cost of
// a counted failure (27 → 58 ns).
type machine struct {
	failures    int // consecutive failures in CLOSED (consecutive policy)
	successes   int // consecutive successful probes in HALF_OPEN
	state       State
	fleetStreak bool // the fleet has a failure streak this breaker has not ended
}

// rules are the parts of the config the state machine reads.
type rules struct {
	failureThreshold  int
	halfOpenSuccesses int
	rate              bool // FailureRate policy: the window's verdict decides
}

// verdict is what next decided.
type verdict struct {
	// m is the machine with the outcome counted. When reason is set, the
	// breaker then moves to m.state, and the transition starts the new
	// state's episode with its counts at zero.
	m      machine
	reason Reason
	// publish: the lock-free word changes without a transition (a failure
	// streak began or ended, so successes must take the locked path or no
	// longer need to).
	publish bool
	// report: the fleet (Config.Sync) hears this outcome.
	report bool
}

// next applies one outcome of a call admitted in the current state, with o
// already reduced to what the state machine counts (a slow success is a
// Failure). tripped is the failure-rate window's verdict with o counted, for
// the rate policy in CLOSED.
func next(m machine, o Outcome, r rules, tripped bool) verdict {
	v := verdict{m: m}
	switch m.state {
	case Closed:
		switch {
		case o == Ignored: // neither counts nor resets
		case r.rate:
			if tripped {
				v.m.state, v.reason = Open, ReasonFailureRate
			}
		case o == Success:
			if m.failures > 0 || m.fleetStreak { // a streak ends: the fleet's too
				v.m.failures, v.m.fleetStreak = 0, false
				v.publish, v.report = true, true
			}
		default: // Failure
			v.m.failures++
			v.report = true
			switch {
			case v.m.failures >= r.failureThreshold:
				v.m.state, v.reason = Open, ReasonFailureThreshold
			case v.m.failures == 1: // a streak begins: successes must reset it
				v.publish = true
			}
		}
	case HalfOpen: // the outcome of a probe: the fleet hears each one
		v.report = true
		switch o {
		case Success:
			v.m.successes++
			if v.m.successes >= r.halfOpenSuccesses {
				v.m.state, v.reason = Closed, ReasonProbesSucceeded
			}
		case Failure:
			v.m.state, v.reason = Open, ReasonProbeFailed
		}
		// Ignored: the slot is free again, nothing counted.
	}
	// DISABLED counts in the totals only; OPEN and FORCED_OPEN admit no call
	// of their own generation.
	return v
}
