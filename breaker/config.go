package breaker

import (
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"
)

// Defaults from ADR-002. A zero field in Config means "use the default".
const (
	DefaultFailureThreshold  = 5
	DefaultOpenTimeout       = 60 * time.Second
	DefaultHalfOpenSuccesses = 2
	DefaultHalfOpenProbes    = 1
)

// Config describes one breaker. The zero value is ADR-002's breaker: 5
// consecutive failures open it, 60 s later one probe is let through, and 2
// consecutive successful probes close it again.
type Config struct {
	// Name identifies the breaker in errors, events and logs, e.g.
	// "cloudflare" or "genesys/eu-west-1".
	Name string

	// FailureThreshold is the number of consecutive failures in CLOSED that
	// opens the breaker. 0 means 5. Not allowed together with FailureRate.
	FailureThreshold int

	// FailureRate, if set, replaces the consecutive-failure policy with a
	// failure-rate policy over a sliding time window.
	FailureRate *FailureRate

	// OpenTimeout is how long the breaker stays OPEN before it lets a probe
	// through. 0 means 60 s.
	OpenTimeout time.Duration

	// OpenBackoff, if set, lengthens the open timeout each time a probe fails
	// and the breaker reopens; closing resets it.
	OpenBackoff *Backoff

	// HalfOpenSuccesses is the number of consecutive successful probes that
	// closes the breaker. 0 means 2.
	HalfOpenSuccesses int

	// HalfOpenProbes is the number of probes allowed in flight at once in
	// HALF_OPEN. 0 means 1.
	HalfOpenProbes int

	// ProbeTimeout bounds how long a probe may hold its slot. A probe that
	// has not reported its outcome by then counts as a failed probe and the
	// breaker reopens. 0 means the open timeout.
	ProbeTimeout time.Duration

	// Classify maps a call's error to an outcome. It is called only for
	// non-nil errors: nil is always a success. nil means DefaultClassifier.
	Classify Classifier

	// CountSuccesses makes Snapshot.Successes count every successful call.
	// Off by default so that a healthy call writes no shared memory; turning
	// it on costs one atomic add per successful call. Successful probes and
	// successes that end a failure streak are always counted.
	CountSuccesses bool

	// DryRun lets every call through, but records in Snapshot.DryRunRejected
	// the calls the breaker would have rejected. The state machine runs as
	// usual, so a rollout can watch what the breaker would do.
	DryRun bool

	// Off turns flags off when this config is merged over a base that sets
	// them (see Merge): a bool cannot say "not set", so a profile that must
	// not run in dry run while the default does says Off: FlagDryRun. A flag
	// both set and in Off is an error.
	Off Flags

	// Clock is the source of time. nil means the system clock.
	Clock Clock

	// Logger receives one record per transition: ERROR when opening, WARN
	// when half-opening, INFO when closing; and one at INFO per probe let
	// through. nil means slog.Default().
	Logger *slog.Logger

	// OnTransition, if set, is called once per transition, in order, outside
	// any lock of the breaker. It may call the breaker's methods.
	OnTransition func(Transition)

	// Sync, if set, shares the breaker's state with other processes (see
	// package redisstate). nil keeps the breaker local.
	Sync Sync
}

// Flags names Config's boolean fields, for Config.Off.
type Flags uint8

const (
	// FlagCountSuccesses is Config.CountSuccesses.
	FlagCountSuccesses Flags = 1 << iota
	// FlagDryRun is Config.DryRun.
	FlagDryRun

	allFlags = FlagCountSuccesses | FlagDryRun
)

// String returns the flags' names joined by "|", e.g. "dry_run".
func (f Flags) String() string {
	var names []string
	for i, n := range [...]string{"count_successes", "dry_run"} {
		if f&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if rest := f &^ allFlags; rest != 0 {
		names = append(names, fmt.Sprintf("0x%x", uint8(rest)))
	}
	return strings.Join(names, "|")
}

// FailureRate is a trip policy: the breaker opens when, over the last Window,
// at least MinCalls calls were recorded and the share of failures (slow calls
// included) reached Threshold. The window is a ring of buckets of width Bucket,
// so it slides in steps of Bucket.
type FailureRate struct {
	// Threshold is the failure share that opens the breaker, in (0, 1]. It
	// is read to nine decimals and compared exactly: 0.55 opens at 55
	// failures of 100, not one call later by floating-point rounding.
	Threshold float64
	// MinCalls is the number of calls the window must hold before the rate is
	// judged. 0 means 20.
	MinCalls int
	// Window is the length of the sliding window. 0 means 60 s.
	Window time.Duration
	// Bucket is the width of one bucket of the window. 0 means Window/10, or
	// Window itself when Window does not split into ten. Window must be a
	// whole multiple of it, with at most 1000 buckets.
	Bucket time.Duration
	// SlowCall, if positive, makes a successful call that took longer than it
	// count as a failure for the state machine: in CLOSED toward the rate,
	// and in HALF_OPEN as a failed probe that reopens the breaker (as
	// resilience4j judges the slow-call rate in half-open too), so a breaker
	// opened by slowness is not closed by probes just as slow. Such a call
	// still counts in Snapshot.Successes, not Failures: it did succeed. It
	// costs two clock reads per call.
	SlowCall time.Duration
}

// Backoff lengthens the open timeout after each failed probe:
// OpenTimeout × Multiplier^(reopens), capped at Max, then spread by ±Jitter.
// The result saturates at the largest Duration (about 292 years).
type Backoff struct {
	// Multiplier is the growth per reopen, > 1. 0 means 2.
	Multiplier float64
	// Max caps the open timeout. 0 means 10 × OpenTimeout.
	Max time.Duration
	// Jitter spreads each timeout uniformly by ±Jitter of itself, in [0, 1).
	Jitter float64
}

// Validate reports the first invalid field, naming it and the allowed range.
// Zero values are valid: they mean the default.
func (c Config) Validate() error {
	_, err := c.resolve()
	return err
}

func fieldErr(field string, v any, want string) error {
	return fmt.Errorf("breaker: Config.%s = %v: %s", field, v, want)
}

// resolve validates c and returns it with defaults filled in.
func (c Config) resolve() (Config, error) {
	switch {
	case c.FailureThreshold < 0:
		return c, fieldErr("FailureThreshold", c.FailureThreshold, "must be ≥ 1 (0 means the default, 5)")
	case c.OpenTimeout < 0:
		return c, fieldErr("OpenTimeout", c.OpenTimeout, "must be > 0 (0 means the default, 60s)")
	case c.HalfOpenSuccesses < 0:
		return c, fieldErr("HalfOpenSuccesses", c.HalfOpenSuccesses, "must be ≥ 1 (0 means the default, 2)")
	case c.HalfOpenProbes < 0:
		return c, fieldErr("HalfOpenProbes", c.HalfOpenProbes, "must be ≥ 1 (0 means the default, 1)")
	case c.ProbeTimeout < 0:
		return c, fieldErr("ProbeTimeout", c.ProbeTimeout, "must be > 0 (0 means the open timeout)")
	case c.FailureRate != nil && c.FailureThreshold != 0:
		return c, fieldErr("FailureThreshold", c.FailureThreshold, "must be 0 when FailureRate is set: the two trip policies are exclusive")
	case c.Off&^allFlags != 0:
		return c, fieldErr("Off", c.Off, "unknown flag: want FlagCountSuccesses or FlagDryRun")
	case c.Off&FlagCountSuccesses != 0 && c.CountSuccesses:
		return c, fieldErr("Off", c.Off, "turns CountSuccesses off while it is set: set one or the other")
	case c.Off&FlagDryRun != 0 && c.DryRun:
		return c, fieldErr("Off", c.Off, "turns DryRun off while it is set: set one or the other")
	}
	if c.FailureThreshold == 0 {
		c.FailureThreshold = DefaultFailureThreshold
	}
	if c.OpenTimeout == 0 {
		c.OpenTimeout = DefaultOpenTimeout
	}
	if c.HalfOpenSuccesses == 0 {
		c.HalfOpenSuccesses = DefaultHalfOpenSuccesses
	}
	if c.HalfOpenProbes == 0 {
		c.HalfOpenProbes = DefaultHalfOpenProbes
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = c.OpenTimeout
	}
	if c.FailureRate != nil {
		r, err := c.FailureRate.resolve()
		if err != nil {
			return c, err
		}
		c.FailureRate = &r
	}
	if c.OpenBackoff != nil {
		b, err := c.OpenBackoff.resolve(c.OpenTimeout)
		if err != nil {
			return c, err
		}
		c.OpenBackoff = &b
	}
	if c.Classify == nil {
		c.Classify = DefaultClassifier
	}
	if c.Clock == nil {
		c.Clock = SystemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

const maxBuckets = 1000

func (r FailureRate) resolve() (FailureRate, error) {
	switch {
	case math.IsNaN(r.Threshold) || r.Threshold <= 0 || r.Threshold > 1:
		return r, fieldErr("FailureRate.Threshold", r.Threshold, "must be in (0, 1], e.g. 0.5 for 50 %")
	case r.MinCalls < 0:
		return r, fieldErr("FailureRate.MinCalls", r.MinCalls, "must be ≥ 1 (0 means the default, 20)")
	case r.Window < 0:
		return r, fieldErr("FailureRate.Window", r.Window, "must be > 0 (0 means the default, 60s)")
	case r.Bucket < 0:
		return r, fieldErr("FailureRate.Bucket", r.Bucket, "must be > 0 (0 means Window/10)")
	case r.SlowCall < 0:
		return r, fieldErr("FailureRate.SlowCall", r.SlowCall, "must be ≥ 0 (0 turns slow-call detection off)")
	}
	if r.MinCalls == 0 {
		r.MinCalls = 20
	}
	if r.Window == 0 {
		r.Window = 60 * time.Second
	}
	if r.Bucket == 0 {
		r.Bucket = r.Window / 10
		if r.Window%10 != 0 { // too short or odd to split in ten: one bucket
			r.Bucket = r.Window
		}
	}
	switch {
	case r.Window < r.Bucket:
		return r, fieldErr("FailureRate.Window", r.Window, fmt.Sprintf("must be at least one bucket (Bucket = %v)", r.Bucket))
	case r.Window%r.Bucket != 0:
		return r, fieldErr("FailureRate.Window", r.Window, fmt.Sprintf("must be a whole multiple of Bucket (%v)", r.Bucket))
	case r.Window/r.Bucket > maxBuckets:
		return r, fieldErr("FailureRate.Bucket", r.Bucket, fmt.Sprintf("too narrow: Window/Bucket must be ≤ %d", maxBuckets))
	}
	return r, nil
}

func (b Backoff) resolve(openTimeout time.Duration) (Backoff, error) {
	switch {
	case b.Multiplier != 0 && !(b.Multiplier > 1) || math.IsInf(b.Multiplier, 0):
		return b, fieldErr("OpenBackoff.Multiplier", b.Multiplier, "must be > 1 (0 means the default, 2)")
	case b.Max < 0:
		return b, fieldErr("OpenBackoff.Max", b.Max, "must be ≥ OpenTimeout (0 means 10 × OpenTimeout)")
	case math.IsNaN(b.Jitter) || b.Jitter < 0 || b.Jitter >= 1:
		return b, fieldErr("OpenBackoff.Jitter", b.Jitter, "must be in [0, 1)")
	}
	if b.Multiplier == 0 {
		b.Multiplier = 2
	}
	if b.Max == 0 {
		b.Max = 10 * openTimeout
		if b.Max/10 != openTimeout { // overflow
			b.Max = math.MaxInt64
		}
	}
	if b.Max < openTimeout {
		return b, fieldErr("OpenBackoff.Max", b.Max, fmt.Sprintf("must be ≥ OpenTimeout (%v)", openTimeout))
	}
	return b, nil
}

// Merge returns c with every zero field replaced by the field of base. It is
// how a registry builds a breaker from a default and a profile. The flags
// CountSuccesses and DryRun are on if either side sets them, unless c turns
// them off with Off; the result's Off is c's.
func (c Config) Merge(base Config) Config {
	if c.Name == "" {
		c.Name = base.Name
	}
	if c.FailureThreshold == 0 && c.FailureRate == nil {
		c.FailureThreshold = base.FailureThreshold
		c.FailureRate = base.FailureRate
	}
	if c.OpenTimeout == 0 {
		c.OpenTimeout = base.OpenTimeout
	}
	if c.OpenBackoff == nil {
		c.OpenBackoff = base.OpenBackoff
	}
	if c.HalfOpenSuccesses == 0 {
		c.HalfOpenSuccesses = base.HalfOpenSuccesses
	}
	if c.HalfOpenProbes == 0 {
		c.HalfOpenProbes = base.HalfOpenProbes
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = base.ProbeTimeout
	}
	if c.Classify == nil {
		c.Classify = base.Classify
	}
	c.CountSuccesses = (c.CountSuccesses || base.CountSuccesses) && c.Off&FlagCountSuccesses == 0
	c.DryRun = (c.DryRun || base.DryRun) && c.Off&FlagDryRun == 0
	if c.Clock == nil {
		c.Clock = base.Clock
	}
	if c.Logger == nil {
		c.Logger = base.Logger
	}
	if c.OnTransition == nil {
		c.OnTransition = base.OnTransition
	}
	if c.Sync == nil {
		c.Sync = base.Sync
	}
	return c
}
