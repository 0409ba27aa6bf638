package redisstate

import (
	"context"
	"time"
)

// Joined waits until Redis has told every breaker attached so far the
// fleet's state for it (the read that follows Attach, or the rejoin once
// Redis answers), so that a process about to act on its breakers, such as
// a queue consumer that would otherwise send its first messages to a region
// the fleet holds OPEN, starts from the fleet's state rather than a fresh
// CLOSED. It returns ctx's error if that takes longer than ctx allows, for
// instance while Redis is unreachable: the breakers then decide locally, as
// they would anyway.
func (f *Fleet) Joined(ctx context.Context) error {
	tick := time.NewTicker(5 * time.Millisecond) // a join takes a round trip or two on a healthy Redis
	defer tick.Stop()
	for {
		joined := true
		f.members.Range(func(_, v any) bool {
			m := v.(*member)
			// -1 until a reply from Redis says which epoch the breaker is in.
			if m.breaker() != nil && m.knownEpoch.Load() < 0 {
				joined = false
			}
			return joined
		})
		if joined {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
