package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"

	"github.com/breakerbox/breakerbox/breaker"
)

// rejection is a circuit's prebuilt open answer for one state and one
// Retry-After value; it changes at most once a second.
type rejection struct {
	state           breaker.State
	secs            int
	retryAfter      []string
	retryAfterBytes []byte // the same, for the fasthttp engine
	body            []byte // the server adds Content-Length, after the other headers as before
}

var (
	jsonContentType = []string{"application/json"}
	stateOpenHeader = []string{"open"}
)

// reject answers 503 for a call the breaker refused: Retry-After (seconds
// until a probe is allowed), Breakerbox-Circuit, Breakerbox-State: open and
// a small JSON body. The answer is prebuilt per route and reused while its
// Retry-After holds, so a rejection allocates nothing here.
func (s *Server) reject(w http.ResponseWriter, rt *route, err error) {
	rj := rejectionFor(rt, err)
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Retry-After"] = rj.retryAfter
	h["Breakerbox-Circuit"] = rt.circuitHeader
	h["Breakerbox-State"] = stateOpenHeader
	w.WriteHeader(http.StatusServiceUnavailable)
	w.Write(rj.body)
}

// rejectionFor is the route's open answer for the breaker's refusal err,
// rebuilt only when its state or Retry-After changed.
func rejectionFor(rt *route, err error) *rejection {
	oe, ok := err.(*breaker.OpenError)
	if !ok && !errors.As(err, &oe) { // unreachable: Allow refuses with *OpenError
		oe = &breaker.OpenError{Name: rt.circuit, State: breaker.Open}
	}
	secs := retryAfterSeconds(rt, oe)
	rj := rt.rejection.Load()
	if rj == nil || rj.secs != secs || rj.state != oe.State {
		rj = newRejection(rt, oe.State, secs)
		rt.rejection.Store(rj)
	}
	return rj
}

// retryAfterSeconds is the Retry-After of a rejection: the time until a probe
// is allowed, rounded up, at least 1. A forced-open circuit has no such
// time (an operator closes it); it answers the circuit's open timeout, the
// pace at which an automatic circuit would try again, instead of inviting a
// retry storm every second.
func retryAfterSeconds(rt *route, oe *breaker.OpenError) int {
	d := oe.RetryAfter()
	if oe.State == breaker.ForcedOpen {
		d = rt.settings.OpenTimeout.Duration
	}
	return max(int(math.Ceil(d.Seconds())), 1)
}

func newRejection(rt *route, state breaker.State, secs int) *rejection {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetIndent("", "  ")
	enc.Encode(map[string]any{
		"error": "circuit open", "circuit": rt.circuit, "state": state.String(), "retry_after_seconds": secs,
	})
	ra := strconv.Itoa(secs)
	return &rejection{state: state, secs: secs, body: body.Bytes(), retryAfter: []string{ra}, retryAfterBytes: []byte(ra)}
}
