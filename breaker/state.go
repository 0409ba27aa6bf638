package breaker

import "fmt"

// State is the position of a breaker in its state machine.
type State uint8

const (
	// Closed lets every call through and counts failures.
	Closed State = iota
	// Open rejects every call at once until the open timeout elapses.
	Open
	// HalfOpen lets up to HalfOpenProbes calls through as probes; enough
	// consecutive successful probes close the breaker, one failure reopens it.
	HalfOpen
	// ForcedOpen rejects every call until an operator closes or resets the
	// breaker. No timer moves it.
	ForcedOpen
	// Disabled (forced closed) lets every call through and still counts
	// outcomes, but never trips.
	Disabled

	numStates = 5
)

var stateNames = [numStates]string{"closed", "open", "half_open", "forced_open", "disabled"}

// String returns the state's name in snake case, as used in logs and metric
// labels: closed, open, half_open, forced_open, disabled.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// States returns every state, in the order of their values: for metrics
// and dashboards that list them, and with Snapshot.TransitionCount.
func States() []State { return []State{Closed, Open, HalfOpen, ForcedOpen, Disabled} }

// valid reports whether s is one of the states.
func (s State) valid() bool { return s < numStates }

// ParseState is the inverse of State.String.
func ParseState(s string) (State, error) {
	for i, n := range stateNames {
		if n == s {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("breaker: unknown state %q (want one of closed, open, half_open, forced_open, disabled)", s)
}

// rejects reports whether calls in state s are refused (before probe slots
// are considered).
func (s State) rejects() bool { return s == Open || s == ForcedOpen }

// The breaker's hot path reads one atomic word. Everything that a call needs
// to decide without a lock is packed into it:
//
//	bits 0-3   state
//	bit  4     slow: a success must take the locked path (there is a
//	           failure streak to reset, or a policy that records every call)
//	bit  5     dry run: rejections are recorded, not enforced
//	bit  6     timed: admission reads the clock (slow-call detection)
//	bit  7     counted: every success is counted (Config.CountSuccesses)
//	bits 8-63  generation: incremented on every transition, so an outcome
//	           reported for a call admitted in an earlier state is recognised
//	           as stale and does not count
//
// Only code holding Breaker.mu writes the word.
type word uint64

const (
	wordStateMask = 0xf
	wordSlow      = 1 << 4
	wordDryRun    = 1 << 5
	wordTimed     = 1 << 6
	wordCounted   = 1 << 7
	// wordFast is what Do checks first: zero means CLOSED and untimed, so
	// the call runs with no lock and no clock.
	wordFast     = wordStateMask | wordTimed
	wordGenShift = 8
)

func makeWord(s State, slow bool, gen uint64) word {
	w := word(s) | word(gen<<wordGenShift)
	if slow {
		w |= wordSlow
	}
	return w
}

func (w word) state() State { return State(w & wordStateMask) }
func (w word) slow() bool   { return w&wordSlow != 0 }
func (w word) dryRun() bool { return w&wordDryRun != 0 }
func (w word) gen() uint64  { return uint64(w) >> wordGenShift }
