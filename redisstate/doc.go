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
// While Redis answers, the fleet, not a replica's own counts, closes a
// HALF_OPEN circuit and (with a quorum of 1) opens a CLOSED one
// (breaker.DecideSync): a replica whose last probe's success is still queued
// stays HALF_OPEN until Redis has counted it, so exactly HalfOpenSuccesses
// probes succeed before the fleet closes and no replica lets ordinary calls
// through ahead of it. A replica that dies with that success queued loses
// it: its lease expires after ProbeTimeout and another probe is counted in
// its place; a success is never counted twice.
//
// Every transition says which replica's call made it
// (breaker.Transition.DecidedBy, Fleet.Opening): the sidecar logs it at
// ERROR on that replica only. The scripts keep a breaker's last 10 reported
// failures, each with its replica and Options.Describe's description, and
// hand them with the opening they led to (Evidence).
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
// Epochs come from Redis's clock, but never fall below an epoch a replica
// applied: each script takes the caller's epoch, a hash below it numbers its
// next transition above it, and a state it reached below it is published
// again above it. A failover to a primary whose clock is behind (and that
// lost the keys) thus cannot make replicas ignore new transitions.
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
//	fleet, err := redisstate.New(ctx, redisstate.Options{URL: "redis://10.0.0.5:6379/0"})
//	if err != nil { ... }            // a malformed URL; an unreachable Redis is not an error
//	defer fleet.Close()
//	reg, err := breaker.NewRegistry(breaker.RegistryConfig{
//		Default: breaker.Config{Sync: fleet},
//	})
//
// The sidecar does the same for "state: redis://…" in its config. Module
// redisstate/redisstateprom exports the fleet's Stats as Prometheus metrics.
//
// For Redis Sentinel, a Redis Cluster, TLS or an ACL user, set Options.Redis
// (go-redis's UniversalOptions) instead of URL: MasterName and the sentinels'
// Addrs make a client that follows the primary across failovers, two or more
// seed Addrs a cluster client, TLSConfig TLS. The fleet sets the fail-fast
// fields and owns the client (see the examples).
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
// For a breaker named N the fleet uses the keys <prefix>{N}, <prefix>{N}:r,
// <prefix>{N}:l and <prefix>{N}:e (the evidence list, at most 10 short
// entries) (hash-tagged, so a Redis Cluster keeps them in one slot
// and each script runs on one node) and the channels <prefix>events and
// <prefix>events:v1 (PUBLISH reaches every node of a cluster). A breaker with
// an empty name has no hash tag: its keys may land in different slots of a
// cluster. The keys expire a day after their last write (Options.KeyTTL).
//
// # Wire format
//
// Replicas of different versions share a fleet during a rolling deploy, so
// what they exchange through Redis is versioned. Three things travel:
//
//   - Messages, published by the scripts at each transition and each start of
//     a failure streak. Version 1 is a JSON object on <prefix>events:v1:
//     {"v":1, "key":"<prefix>{<name>}", "ep":"<epoch>", "st":"<state>",
//     "ms":<remaining open ms>, "streak":<bool>, "sq":"<streak sequence>",
//     "rs":"<reason>"}; epochs and sequences are decimal strings, as Lua's
//     numbers are doubles. Two optional fields, added within v1 (older v1
//     readers ignore them, and a message without them reads as before):
//     "by", the replica whose call made the transition, and "ev", with a
//     transition to OPEN on failures, its evidence: up to 10 strings
//     "<replica> <ms of Redis's clock> <description>", newest first. A bad
//     "by" or "ev" is counted in Stats.Malformed and left out; the state
//     still applies. Version 0, from replicas that predate versions, is
//     "<epoch> <state> <remaining ms> <streak 0|1> <streak seq> <reason> <key>"
//     on <prefix>events.
//   - Script replies: an array whose first element is the version (1), then
//     granted, retry ms, state, epoch, remaining ms, streak, streak sequence,
//     reason, restored, by, evidence. A replica only reads its own scripts'
//     replies.
//   - The hash each breaker's state lives in (see scripts.go): the scripts of
//     both versions read and write it, so its fields and their meanings are
//     part of the format.
//
// Every message and reply is decoded into typed values and checked: field
// by field, type and range, the state a known one, the key under the fleet's
// prefix. One that fails is ignored, never applied: it is counted in
// Stats.Malformed (breakerbox_fleet_malformed_total) and logged with what
// was wrong, at most once per 10 s. A reason a replica does not know only
// informs and reads as none. A script that fails on what Redis holds (a key
// of the wrong type) is counted the same way and is not a fault: one broken
// key degrades no other breaker. A number field of the hash that is not a
// number reads as 0, and a hash at epoch 0 is a lost one, restored by the
// replicas that hold its state.
//
// The compatibility rule: a replica of version N publishes each message in
// versions N and N−1, each on its own channel, and reads both. So any two
// adjacent versions share a fleet, both ways: the old replicas read the N−1
// copy, the new ones either (a state arriving twice applies once: epochs and
// sequences order everything). Within a version, a field may be added that
// older readers ignore; a field cannot change meaning, nor a state be added,
// without a new version. To roll out v2: a release that publishes v2 on
// <prefix>events:v2 and v1 as today, reads both, and leaves the hash as v1
// reads it; deploy it to every replica; the release after may stop
// publishing v1. A rolling deploy may not skip a version (from v0 straight to
// v2): stop the fleet, or deploy the version between first.
// TestAnOldAndANewReplicaShareOneFleet runs a replica of the last v0 commit
// and a new one on one Redis.
package redisstate
