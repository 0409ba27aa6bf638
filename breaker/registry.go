package breaker

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// RegistryConfig configures a Registry.
type RegistryConfig struct {
	// Default applies to every key.
	Default Config
	// Profiles are named partial configs merged over Default (see
	// Config.Merge) for the keys that select them.
	Profiles map[string]Config
	// Profile returns the profile name for a key, or "" for none. nil means:
	// the key itself if a profile has that name, else the part of the key
	// before its first "/" (so "genesys/eu-west-1" selects "genesys").
	Profile func(key string) string
	// Configure, if set, adjusts the config of each new breaker (for example
	// adds the key's region to its Logger). Its result is validated.
	Configure func(key string, c Config) Config
	// IdleTTL, if positive, evicts breakers that are CLOSED with no failure
	// streak and were not looked up for between IdleTTL and 2 × IdleTTL, so a
	// registry keyed by an unbounded value keeps bounded memory. An evicted
	// key gets a fresh breaker on its next Get.
	IdleTTL time.Duration
}

// Registry holds one breaker per key, created on first use. It is safe for
// concurrent use; Get of an existing key allocates nothing.
type Registry struct {
	cfg      RegistryConfig
	breakers sync.Map // string → *entry
	mu       sync.Mutex
	stopIdle func() bool
	closed   bool
}

type entry struct {
	b    *Breaker
	used atomic.Bool
}

// NewRegistry validates the default and every profile up front and returns
// an empty registry.
func NewRegistry(cfg RegistryConfig) (*Registry, error) {
	if err := cfg.Default.Validate(); err != nil {
		return nil, fmt.Errorf("registry: Default: %w", err)
	}
	for name, p := range cfg.Profiles {
		if err := p.Merge(cfg.Default).Validate(); err != nil {
			return nil, fmt.Errorf("registry: Profiles[%q]: %w", name, err)
		}
	}
	if cfg.IdleTTL < 0 {
		return nil, fmt.Errorf("registry: IdleTTL = %v: must be ≥ 0 (0 keeps breakers forever)", cfg.IdleTTL)
	}
	r := &Registry{cfg: cfg}
	if cfg.IdleTTL > 0 {
		r.scheduleSweep()
	}
	return r, nil
}

// MustGet is Get for keys whose config cannot fail: a registry without
// Configure (its default and profiles were validated by NewRegistry), as in
// tests and examples. It panics, outside any lock, if Get returns an error.
func (r *Registry) MustGet(key string) *Breaker {
	b, err := r.Get(key)
	if err != nil {
		panic(err)
	}
	return b
}

// Get returns the breaker for key, creating it on first use. Racing first
// calls for one key get the same breaker. The config of a new breaker is
// validated: the error names the key and the field when Configure returned
// an invalid one (the default and the profiles are validated by
// NewRegistry, so without Configure, Get does not fail).
func (r *Registry) Get(key string) (*Breaker, error) {
	if v, ok := r.breakers.Load(key); ok {
		e := v.(*entry)
		if !e.used.Load() { // write only once per sweep period, not per call
			e.used.Store(true)
		}
		return e.b, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.breakers.Load(key); ok {
		return v.(*entry).b, nil
	}
	c := r.ConfigFor(key)
	b, err := New(c)
	if err != nil {
		return nil, fmt.Errorf("registry: key %q: %w", key, err)
	}
	e := &entry{b: b}
	e.used.Store(true)
	r.breakers.Store(key, e)
	return b, nil
}

// ConfigFor returns the config a new breaker for key gets: the default, the
// key's profile merged over it, Name set to the key, then Configure.
func (r *Registry) ConfigFor(key string) Config {
	c := r.cfg.Default
	if p, ok := r.cfg.Profiles[r.profileName(key)]; ok {
		c = p.Merge(c)
	}
	c.Name = key
	if r.cfg.Configure != nil {
		c = r.cfg.Configure(key, c)
	}
	return c
}

func (r *Registry) profileName(key string) string {
	if r.cfg.Profile != nil {
		return r.cfg.Profile(key)
	}
	if _, ok := r.cfg.Profiles[key]; ok {
		return key
	}
	name, _, _ := strings.Cut(key, "/")
	return name
}

// Lookup returns the breaker for key if it exists, without creating it.
func (r *Registry) Lookup(key string) (*Breaker, bool) {
	v, ok := r.breakers.Load(key)
	if !ok {
		return nil, false
	}
	return v.(*entry).b, true
}

// All returns every breaker, sorted by name.
func (r *Registry) All() []*Breaker {
	var all []*Breaker
	r.breakers.Range(func(_, v any) bool {
		all = append(all, v.(*entry).b)
		return true
	})
	slices.SortFunc(all, func(a, b *Breaker) int { return strings.Compare(a.name, b.name) })
	return all
}

// Remove drops the breaker for key and reports whether there was one.
func (r *Registry) Remove(key string) bool {
	_, ok := r.breakers.LoadAndDelete(key)
	return ok
}

// EvictIdle removes the breakers that are CLOSED with no failure streak and
// were not looked up since the previous EvictIdle, and returns how many it
// removed. With IdleTTL set it runs every IdleTTL by itself.
func (r *Registry) EvictIdle() int {
	n := 0
	r.breakers.Range(func(k, v any) bool {
		e := v.(*entry)
		if e.used.Load() {
			e.used.Store(false)
			return true
		}
		if e.b.idle() {
			r.breakers.CompareAndDelete(k, v)
			n++
		}
		return true
	})
	return n
}

// idle reports whether b is CLOSED with nothing counted toward opening.
func (b *Breaker) idle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state == Closed && b.failures == 0 && (b.window == nil || b.window.failures == 0)
}

func (r *Registry) scheduleSweep() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.stopIdle = r.clock().AfterFunc(r.cfg.IdleTTL, func() {
		r.EvictIdle()
		r.scheduleSweep()
	})
}

func (r *Registry) clock() Clock {
	if r.cfg.Default.Clock != nil {
		return r.cfg.Default.Clock
	}
	return SystemClock{}
}

// Close stops the idle sweep. The breakers keep working.
func (r *Registry) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.stopIdle != nil {
		r.stopIdle()
	}
}
