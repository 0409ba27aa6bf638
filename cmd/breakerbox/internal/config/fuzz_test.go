package config_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
)

// FuzzParse feeds the loader arbitrary bytes: it must never panic, a
// rejected config must come back as a *config.Error whose problems each
// point inside the file, and an accepted one must be complete (every
// default filled in). The seed corpus is under testdata/fuzz/FuzzParse;
// CI runs it for a few seconds:
//
//	go test -run '^$' -fuzz FuzzParse -fuzztime 5s ./config
func FuzzParse(f *testing.F) {
	f.Add(config.DefaultYAML)
	f.Add([]byte("services: [{name: a, upstream: 'http://127.0.0.1:1', failure_threshold: 5.5}]\n---\nx: 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse("f.yaml", data)
		if err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error %T %v is not a *config.Error with problems", err, err)
			}
			// YAML breaks lines at \n, \r and \r\n: count the most it can see.
			lines := bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) + 2
			for _, p := range ce.Problems {
				if p.Msg == "" || p.Line < 0 || p.Line > lines {
					t.Fatalf("problem %+v outside a %d-line file", p, lines)
				}
			}
			return
		}
		if len(c.Services) == 0 || c.Listen == "" || c.Admin == "" || c.State == "" ||
			c.Limits.Proxy.MaxConnections == 0 || c.Limits.Admin.MaxEventStreams == 0 || c.Limits.Admin.WriteTimeout.Duration == 0 {
			t.Fatalf("accepted an incomplete config: %+v", c)
		}
		for _, s := range c.Services {
			b := s.Breaker()
			if b.FailureThreshold < 1 || b.OpenTimeout <= 0 || b.HalfOpenSuccesses < 1 || b.HalfOpenProbes < 1 || s.Timeout.Duration <= 0 {
				t.Fatalf("service %s accepted with settings %+v", s.Name, s.Settings)
			}
			if s.Upstream == "" && len(s.PerRegion) == 0 {
				t.Fatalf("service %s has no upstream", s.Name)
			}
		}
	})
}
