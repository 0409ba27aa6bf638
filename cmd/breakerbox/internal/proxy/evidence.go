package proxy

import (
	"slices"
	"strconv"
	"strings"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/redisstate"
)

// evidenceText is a circuit's last outcomes for a log line, oldest first,
// e.g. "503/12ms 503/9.8ms timeout/5000ms"; in a fleet each says the
// replica that saw it: "replica-a:503/12ms".
func evidenceText(outcomes []Outcome) string {
	if len(outcomes) == 0 {
		return "none on this replica"
	}
	var b strings.Builder
	for i, o := range outcomes {
		if i > 0 {
			b.WriteByte(' ')
		}
		if o.Replica != "" {
			b.WriteString(o.Replica)
			b.WriteByte(':')
		}
		b.WriteString(describe(o))
	}
	return b.String()
}

// describe is one outcome as evidence, "<status or error>/<latency>ms": the
// log line's words, and what a replica tells the fleet of a failure it
// reports (redisstate.Options.Describe), read back by parseDescription.
func describe(o Outcome) string {
	what := o.Error
	if what == "" {
		what = strconv.Itoa(o.Status)
	}
	return what + "/" + strconv.FormatFloat(o.LatencyMs, 'f', -1, 64) + "ms"
}

// parseDescription reads describe's words back. A description it cannot
// read (another program's on the fleet's Redis, or none) becomes the
// outcome's Error as is, so that it is shown, never trusted as a status.
func parseDescription(d string) Outcome {
	what, lat, ok := strings.Cut(d, "/")
	ms, err := strconv.ParseFloat(strings.TrimSuffix(lat, "ms"), 64)
	if !ok || err != nil || !strings.HasSuffix(lat, "ms") || ms < 0 {
		if d == "" {
			d = "failure"
		}
		return Outcome{Error: d}
	}
	if st, err := strconv.Atoi(what); err == nil && st >= 100 && st <= 999 {
		return Outcome{Status: st, LatencyMs: ms}
	}
	return Outcome{Error: what, LatencyMs: ms}
}

// DescribeFailure describes the newest failed call of circuit on this
// replica ("503/12ms"; "" before any): the fleet keeps it, with this
// replica's name, as evidence of the failure being reported (set it as
// redisstate.Options.Describe). The exchange records a call's outcome
// before it reports it to the breaker (observe), so it is that call's,
// unless another failure of the circuit finished in between.
func (s *Server) DescribeFailure(circuit string) string {
	r := s.table.Load().circuits[circuit]
	if r == nil || r.stats == nil {
		return ""
	}
	w := r.stats.window.Load()
	if w == nil {
		return ""
	}
	what := w.lastFailure.Load()
	if what == 0 {
		return ""
	}
	return describe(outcomeOf(what))
}

// fleetOpenings is the fleet's account of its transitions (a
// *redisstate.Fleet): who made each, and an opening's evidence.
type fleetOpenings interface {
	Opening(name string) (redisstate.Opening, bool)
}

// decidedBy is the replica that decided t: the fleet's replica for a
// transition the fleet made, if known; this replica for one it made on its
// own, in a fleet; "" outside a fleet or when not known (the fleet's
// previous version does not say).
func (s *Server) decidedBy(t breaker.Transition) string {
	switch {
	case t.Reason == breaker.ReasonFleet:
		return t.DecidedBy
	case s.openings != nil:
		return s.replica
	}
	return ""
}

// evidenceOf is the evidence of t, a transition to OPEN: for one the fleet
// made on failures, the failures every replica reported, each with its
// replica (oldest first); otherwise this replica's last outcomes, with its
// name in a fleet.
func (s *Server) evidenceOf(t breaker.Transition, r *route) []Outcome {
	if t.Reason == breaker.ReasonFleet && s.openings != nil {
		if o, ok := s.openings.Opening(t.Name); ok && o.State == breaker.Open && o.DecidedBy == t.DecidedBy && len(o.Evidence) > 0 {
			out := make([]Outcome, 0, len(o.Evidence))
			for _, e := range slices.Backward(o.Evidence) {
				oc := parseDescription(e.Detail)
				oc.At, oc.Replica = e.At, e.Replica
				out = append(out, oc)
			}
			return out
		}
	}
	if r == nil || r.stats == nil {
		return nil
	}
	out := r.stats.evidence()
	if s.openings != nil {
		for i := range out {
			out[i].Replica = s.replica
		}
	}
	return out
}
