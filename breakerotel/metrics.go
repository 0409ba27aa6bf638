package breakerotel

import (
	"context"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/breakerbox/breakerbox/breaker"
)

// ScopeName is the instrumentation scope of the meter and tracer the package
// uses: its import path, as OpenTelemetry asks.
const ScopeName = "github.com/breakerbox/breakerbox/breakerotel"

// Attribute keys of the instruments and span events.
const (
	NameKey             = attribute.Key("breaker.name")
	StateKey            = attribute.Key("breaker.state")
	OutcomeKey          = attribute.Key("breaker.outcome")
	RejectionReasonKey  = attribute.Key("breaker.rejection.reason")
	TransitionFromKey   = attribute.Key("breaker.transition.from")
	TransitionToKey     = attribute.Key("breaker.transition.to")
	TransitionReasonKey = attribute.Key("breaker.transition.reason")
	RetryAfterKey       = attribute.Key("breaker.retry_after")
)

// Config configures NewMetrics. The zero value uses the global
// MeterProvider.
type Config struct {
	// MeterProvider provides the meter. nil means otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// Metrics is the registration of a registry's instruments. Close ends it.
type Metrics struct {
	registry    *breaker.Registry
	reg         metric.Registration
	state       metric.Int64ObservableUpDownCounter
	calls       metric.Int64ObservableCounter
	rejections  metric.Int64ObservableCounter
	transitions metric.Int64ObservableCounter
	retryAfter  metric.Float64ObservableGauge

	mu    sync.Mutex               // a collection at a time may use attrs
	attrs map[string]*breakerAttrs // by breaker name; see attrsFor
}

// breakerAttrs are the attribute sets of one breaker's data points, built
// once: building a set sorts and allocates, and a collection over thousands
// of breakers would otherwise do it for every point every time.
type breakerAttrs struct {
	seen        bool
	name        observeOptions
	state       [len(states)]observeOptions
	calls       [3]observeOptions // by breaker.Outcome
	rejections  [2]observeOptions // open, half_open_full
	transitions [len(states)][len(states)]observeOptions
}

// observeOptions is passed as opts... to an Observe method: a slice built
// once, where a single option would make a new slice per call.
type observeOptions []metric.ObserveOption

// NewMetrics registers the instruments of registry's breakers (see the
// package doc) on a meter of cfg.MeterProvider. Several registries may be
// reported through one provider as long as their breaker names differ.
func NewMetrics(registry *breaker.Registry, cfg Config) (*Metrics, error) {
	if registry == nil {
		return nil, fmt.Errorf("breakerotel: NewMetrics: registry is nil: pass the *breaker.Registry whose breakers to report")
	}
	mp := cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	meter := mp.Meter(ScopeName)
	m := &Metrics{registry: registry, attrs: map[string]*breakerAttrs{}}
	var err error
	if m.state, err = meter.Int64ObservableUpDownCounter("breaker.state", metric.WithUnit("{breaker}"),
		metric.WithDescription("1 for the state the circuit breaker is in, 0 for the others.")); err != nil {
		return nil, fmt.Errorf("breakerotel: breaker.state: %w", err)
	}
	if m.calls, err = meter.Int64ObservableCounter("breaker.calls", metric.WithUnit("{call}"),
		metric.WithDescription("Calls let through by the circuit breaker, by outcome (success only when the breaker counts successes).")); err != nil {
		return nil, fmt.Errorf("breakerotel: breaker.calls: %w", err)
	}
	if m.rejections, err = meter.Int64ObservableCounter("breaker.rejections", metric.WithUnit("{call}"),
		metric.WithDescription("Calls rejected by the circuit breaker without running, by reason.")); err != nil {
		return nil, fmt.Errorf("breakerotel: breaker.rejections: %w", err)
	}
	if m.transitions, err = meter.Int64ObservableCounter("breaker.transitions", metric.WithUnit("{transition}"),
		metric.WithDescription("State transitions of the circuit breaker.")); err != nil {
		return nil, fmt.Errorf("breakerotel: breaker.transitions: %w", err)
	}
	if m.retryAfter, err = meter.Float64ObservableGauge("breaker.retry_after", metric.WithUnit("s"),
		metric.WithDescription("Seconds until the circuit breaker allows a probe: the rest of the open timeout, or while every half-open probe slot is taken the time until one frees; else 0.")); err != nil {
		return nil, fmt.Errorf("breakerotel: breaker.retry_after: %w", err)
	}
	if m.reg, err = meter.RegisterCallback(m.observe, m.state, m.calls, m.rejections, m.transitions, m.retryAfter); err != nil {
		return nil, fmt.Errorf("breakerotel: registering the callback: %w", err)
	}
	return m, nil
}

// Close unregisters the instruments' callback: the registry's breakers are
// no longer reported.
func (m *Metrics) Close() error { return m.reg.Unregister() }

var states = [...]breaker.State{breaker.Closed, breaker.Open, breaker.HalfOpen, breaker.ForcedOpen, breaker.Disabled}

// automatic are the transitions the breaker makes by itself; they are
// reported from the start, the others once they happened.
var automatic = [...][2]breaker.State{
	{breaker.Closed, breaker.Open},
	{breaker.Open, breaker.HalfOpen},
	{breaker.HalfOpen, breaker.Closed},
	{breaker.HalfOpen, breaker.Open},
}

func isAutomatic(from, to breaker.State) bool {
	for _, t := range automatic {
		if t == [2]breaker.State{from, to} {
			return true
		}
	}
	return false
}

// observe reports one snapshot per breaker. It runs at collection time only.
func (m *Metrics) observe(_ context.Context, o metric.Observer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range m.registry.All() {
		s := b.Snapshot()
		a := m.attrsFor(s.Name)
		for i, st := range states {
			v := int64(0)
			if s.State == st {
				v = 1
			}
			o.ObserveInt64(m.state, v, a.state[i]...)
		}
		if s.SuccessesCounted {
			o.ObserveInt64(m.calls, int64(s.Successes), a.calls[breaker.Success]...)
		}
		o.ObserveInt64(m.calls, int64(s.Failures), a.calls[breaker.Failure]...)
		o.ObserveInt64(m.calls, int64(s.Ignored), a.calls[breaker.Ignored]...)
		o.ObserveInt64(m.rejections, int64(s.Rejected), a.rejections[0]...)
		o.ObserveInt64(m.rejections, int64(s.RejectedHalfOpen), a.rejections[1]...)
		for _, from := range states {
			for _, to := range states {
				n := s.TransitionCount(from, to)
				if from == to || n == 0 && !isAutomatic(from, to) {
					continue
				}
				o.ObserveInt64(m.transitions, int64(n), a.transitions[from][to]...)
			}
		}
		o.ObserveFloat64(m.retryAfter, s.RetryAfter.Seconds(), a.name...)
	}
	// Forget the breakers the registry no longer has.
	for name, a := range m.attrs {
		if !a.seen {
			delete(m.attrs, name)
		}
		a.seen = false
	}
	return nil
}

// attrsFor returns the attribute sets of the breaker called name, marked
// seen in this collection. It requires m.mu.
func (m *Metrics) attrsFor(name string) *breakerAttrs {
	a := m.attrs[name]
	if a == nil {
		n := NameKey.String(name)
		set := func(kv ...attribute.KeyValue) observeOptions {
			return observeOptions{metric.WithAttributeSet(attribute.NewSet(append(kv, n)...))}
		}
		a = &breakerAttrs{name: set()}
		for i, st := range states {
			a.state[i] = set(StateKey.String(st.String()))
		}
		for _, o := range []breaker.Outcome{breaker.Success, breaker.Failure, breaker.Ignored} {
			a.calls[o] = set(OutcomeKey.String(o.String()))
		}
		a.rejections = [2]observeOptions{set(RejectionReasonKey.String("open")), set(RejectionReasonKey.String("half_open_full"))}
		for _, from := range states {
			for _, to := range states {
				a.transitions[from][to] = set(TransitionFromKey.String(from.String()), TransitionToKey.String(to.String()))
			}
		}
		m.attrs[name] = a
	}
	a.seen = true
	return a
}
