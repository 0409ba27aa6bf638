// Package redisstate shares breakers across the replicas of a fleet through
// Redis, so that a whole fleet acts as one breaker per key: T10's "all
// tenants of a region share one breaker" holds even when the region's
// workers run as many processes on many hosts.
//
// # The model
//
// Each replica keeps its own local breaker per key, and the hot path never
// leaves the process: a healthy call in CLOSED makes no Redis round trip and
// waits on no network. What the fleet needs to know travels asynchronously,
// through a bounded queue that never blocks a caller: each failure, the
// success that ends a failure streak, and each probe's outcome. Redis
// decides transitions atomically in Lua scripts over one hash per key: the
// fleet-wide consecutive-failure count reaching FailureThreshold opens the
// circuit, with an epoch number, and an open deadline computed from Redis's
// own clock and handed to replicas as a remaining duration, never as one
// host's wall-clock time.
//
// Every transition is published; each replica applies it to its local
// breaker within milliseconds (its listeners and logs fire too, with
// breaker.ReasonFleet). In HALF_OPEN a probe needs a lease from Redis, so
// the recovering service sees at most HalfOpenProbes probes from the whole
// fleet, a lease expires if its holder dies, and the successes that close
// the circuit are counted fleet-wide. An operator's ForceOpen, ForceClosed
// or Reset on one replica applies to all.
//
// Redis faults never become call failures. If Redis is down, slow, paused,
// restarted empty or failed over, each replica keeps deciding on its own
// local counts, logs that it is degraded (Stats and metrics say so too), and
// reconnects with backoff. When Redis answers again the replica rejoins: the
// fleet's state wins if it has one; an OPEN the replica decided alone is
// published if the fleet has none. A replica that missed messages
// (reconnect) resynchronises from Redis.
//
// Redis can also lose a circuit's state with no connection fault: its keys
// evicted under maxmemory or deleted, or Redis restarted empty between two
// health checks. Epochs only grow, so a replica that applied an OPEN or
// HALF_OPEN (or an operator's FORCED_OPEN or DISABLED) and finds the hash at
// a lower epoch knows the state was lost. The first replica to find it, when
// it asks for a probe lease, reports a probe's outcome, or checks the state
// it holds at its health interval, restores its own state atomically as a
// new epoch (an OPEN with the time it has left, a HALF_OPEN with its own
// probe lease) and publishes it; the others adopt it, so from then on the
// fleet again sends at most HalfOpenProbes probes. That replica logs
// "fleet state LOST" and counts it in Stats.StateLosses: one replica per loss.
//
// A quorum (Options.Quorum) requires failures from at least N distinct
// replicas before the fleet opens, so one replica with a bad network path
// opens only its own breaker.
//
// # Use
//
// Create one Fleet per process and set it as the Sync of the breakers to
// share; every breaker of that name on every replica is then one breaker:
//
//	fleet, err := redisstate.New(context.Background(), redisstate.Options{URL: "redis://10.0.0.5:6379/0"})
//	if err != nil { ... }            // a malformed URL; an unreachable Redis is not an error
//	defer fleet.Close()
//	reg, err := breaker.NewRegistry(breaker.RegistryConfig{
//		Default: breaker.Config{Sync: fleet},
//	})
//
// The sidecar does the same for "state: redis://…" in its config.
//
// # Limits
//
// Consecutive-failure breakers are counted fleet-wide. A breaker with a
// failure-rate policy keeps its window per replica; an OPEN it decides is
// published to the fleet. Options.Timeout bounds the one wait a call can
// have on Redis: the lease of a HALF_OPEN probe (100 ms by default), after
// which the local decision stands. While Redis is down, go-redis logs each
// failed dial through its own global logger (redis.SetLogger); the sidecar
// sends those lines to DEBUG, since the fleet logs the outage once.
//
// # Keys
//
// For a breaker named N the fleet uses the keys <prefix>{N}, <prefix>{N}:r
// and <prefix>{N}:l (hash-tagged, so a Redis Cluster keeps them in one slot)
// and the channel <prefix>events. The keys expire a day after their last
// write (Options.KeyTTL).
package redisstate
