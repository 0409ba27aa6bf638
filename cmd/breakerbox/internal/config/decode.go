package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is every problem found in one config, in the order of the file.
type Error struct {
	File     string
	Problems []Problem
}

// Problem is one thing wrong in a config.
type Problem struct {
	Line  int    // 0 when the problem has no line (a default, the whole file)
	Field string // e.g. services[2].failure_threshold; "" for the whole file
	Msg   string
}

func (p Problem) String() string {
	s := ""
	if p.Field != "" {
		s = p.Field + ": "
	}
	return s + p.Msg
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
		b.WriteString(p.String())
	}
	return b.String()
}

// maxNodes bounds the nodes walked, aliases followed included, so that a
// small file of nested aliases (a "billion laughs") cannot take forever.
const maxNodes = 100_000

// decoder walks the YAML node tree by hand, rather than letting yaml decode
// into structs, so that every value keeps its line, a key's type error names
// the key, and every problem is collected instead of the first.
type decoder struct {
	file  string
	probs []Problem
	lines map[string]int // field → line of its value, for validation errors
	nodes int
}

func (d *decoder) errorf(line int, field, format string, args ...any) {
	d.probs = append(d.probs, Problem{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// fieldf reports a problem with field at the line it was written on.
func (d *decoder) fieldf(field, format string, args ...any) {
	d.errorf(d.lines[field], field, format, args...)
}

func (d *decoder) err() error {
	if len(d.probs) == 0 {
		return nil
	}
	slices.SortStableFunc(d.probs, func(a, b Problem) int { return a.Line - b.Line })
	return &Error{File: d.file, Problems: d.probs}
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntax reports a YAML syntax error with its line.
func (d *decoder) syntax(err error) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		d.errorf(line, "", "YAML syntax: %s", m[2])
		return
	}
	d.errorf(0, "", "YAML syntax: %s", strings.TrimPrefix(msg, "yaml: "))
}

// decode parses data into a Config, or returns nil with the problems noted.
func (d *decoder) decode(data []byte) *Config {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errorf(0, "", "empty file: want at least a services list")
		} else {
			d.syntax(err)
		}
		return nil
	}
	// One file, one config: a second document (after ---) would otherwise be
	// ignored, and with it whatever its author meant to change.
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntax(err)
	default:
		line := next.Line
		if len(next.Content) > 0 {
			line = next.Content[0].Line
		}
		d.errorf(line, "", "a second YAML document: breakerbox reads one document per file; remove the --- and what follows, or merge it into the first")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if isNull(root) {
		d.errorf(root.Line, "", "empty file: want at least a services list")
		return nil
	}
	c := &Config{}
	d.mapping(root, "", map[string]func(*yaml.Node, string){
		"listen":        func(n *yaml.Node, f string) { d.str(n, f, &c.Listen) },
		"listen_engine": func(n *yaml.Node, f string) { d.str(n, f, &c.ListenEngine) },
		"admin":         func(n *yaml.Node, f string) { d.str(n, f, &c.Admin) },
		"admin_token":   func(n *yaml.Node, f string) { d.str(n, f, &c.AdminToken) },
		"admin_hosts": func(n *yaml.Node, f string) {
			d.seq(n, f, func(n *yaml.Node, f string) {
				var h string
				d.str(n, f, &h)
				c.AdminHosts = append(c.AdminHosts, h)
			})
		},
		"state":   func(n *yaml.Node, f string) { d.decodeState(n, f, c) },
		"quorum":  func(n *yaml.Node, f string) { d.int(n, f, &c.Quorum, 0, 1000) },
		"replica": func(n *yaml.Node, f string) { d.str(n, f, &c.Replica) },
		"limits": func(n *yaml.Node, f string) {
			d.mapping(n, f, map[string]func(*yaml.Node, string){
				"proxy": func(n *yaml.Node, f string) { d.limits(n, f, &c.Limits.Proxy, false) },
				"admin": func(n *yaml.Node, f string) { d.limits(n, f, &c.Limits.Admin, true) },
			})
		},
		"defaults": func(n *yaml.Node, f string) { decodeFields(d, n, f, settingsFields, &c.Defaults) },
		"services": func(n *yaml.Node, f string) {
			if n.Kind == yaml.SequenceNode { // room for all: a Service is large
				c.Services = make([]Service, 0, len(n.Content))
			}
			d.seq(n, f, func(n *yaml.Node, f string) {
				c.Services = append(c.Services, Service{})
				decodeFields(d, n, f, serviceFields, &c.Services[len(c.Services)-1])
			})
		},
		"mail": func(n *yaml.Node, f string) {
			d.seq(n, f, func(n *yaml.Node, f string) {
				c.Mail = append(c.Mail, Mail{})
				decodeFields(d, n, f, mailFields, &c.Mail[len(c.Mail)-1])
			})
		},
	})
	return c
}

// fields maps the keys of a mapping to what decodes their values into a
// *T. The tables are built once: a config of 10,000 services would
// otherwise build 10,000 maps of closures.
type fields[T any] map[string]func(d *decoder, n *yaml.Node, field string, into *T)

var settingsFields = fields[Settings]{
	"failure_threshold": func(d *decoder, n *yaml.Node, f string, s *Settings) {
		d.int(n, f, &s.FailureThreshold, 1, maxThreshold)
	},
	"half_open_successes": func(d *decoder, n *yaml.Node, f string, s *Settings) {
		d.int(n, f, &s.HalfOpenSuccesses, 1, maxThreshold)
	},
	"half_open_probes": func(d *decoder, n *yaml.Node, f string, s *Settings) { d.int(n, f, &s.HalfOpenProbes, 1, maxProbes) },
	"open_timeout":     func(d *decoder, n *yaml.Node, f string, s *Settings) { d.dur(n, f, &s.OpenTimeout) },
	"probe_timeout":    func(d *decoder, n *yaml.Node, f string, s *Settings) { d.dur(n, f, &s.ProbeTimeout) },
	"timeout":          func(d *decoder, n *yaml.Node, f string, s *Settings) { d.dur(n, f, &s.Timeout) },
}

var serviceFields = withSettings(func(s *Service) *Settings { return &s.Settings }, fields[Service]{
	"name":     func(d *decoder, n *yaml.Node, f string, s *Service) { d.str(n, f, &s.Name) },
	"upstream": func(d *decoder, n *yaml.Node, f string, s *Service) { d.str(n, f, &s.Upstream) },
	"per_region": func(d *decoder, n *yaml.Node, f string, s *Service) {
		s.PerRegion = map[string]string{}
		d.mapping(n, f, nil, func(k string, n *yaml.Node, f string) {
			var u string
			d.str(n, f, &u)
			s.PerRegion[k] = u
		})
	},
})

var mailFields = withSettings(func(m *Mail) *Settings { return &m.Settings }, fields[Mail]{
	"name":     func(d *decoder, n *yaml.Node, f string, m *Mail) { d.str(n, f, &m.Name) },
	"protocol": func(d *decoder, n *yaml.Node, f string, m *Mail) { d.str(n, f, &m.Protocol) },
	"listen":   func(d *decoder, n *yaml.Node, f string, m *Mail) { d.str(n, f, &m.Listen) },
	"upstream": func(d *decoder, n *yaml.Node, f string, m *Mail) { d.str(n, f, &m.Upstream) },
	"tls":      func(d *decoder, n *yaml.Node, f string, m *Mail) { d.str(n, f, &m.TLS) },
	"ca_file":  func(d *decoder, n *yaml.Node, f string, m *Mail) { d.str(n, f, &m.CAFile) },
})

// withSettings adds the breaker settings' keys to own.
func withSettings[T any](settings func(*T) *Settings, own fields[T]) fields[T] {
	for k, fn := range settingsFields {
		own[k] = func(d *decoder, n *yaml.Node, f string, t *T) { fn(d, n, f, settings(t)) }
	}
	return own
}

// decodeFields decodes a mapping into *into (see mapping).
func decodeFields[T any](d *decoder, n *yaml.Node, field string, known fields[T], into *T) {
	d.eachKey(n, field, func(k string, vn *yaml.Node, f string) bool {
		fn, ok := known[k]
		if ok {
			fn(d, vn, f, into)
		}
		return ok
	}, maps.Keys(known))
}

func (d *decoder) limits(n *yaml.Node, field string, l *ListenerLimits, admin bool) {
	fields := map[string]func(*yaml.Node, string){
		"max_connections":     func(n *yaml.Node, f string) { d.int(n, f, &l.MaxConnections, 1, maxConnections) },
		"idle_timeout":        func(n *yaml.Node, f string) { d.dur(n, f, &l.IdleTimeout) },
		"read_header_timeout": func(n *yaml.Node, f string) { d.dur(n, f, &l.ReadHeaderTimeout) },
		"read_timeout":        func(n *yaml.Node, f string) { d.dur(n, f, &l.ReadTimeout) },
		"write_timeout":       func(n *yaml.Node, f string) { d.dur(n, f, &l.WriteTimeout) },
	}
	if admin {
		fields["max_event_streams"] = func(n *yaml.Node, f string) { d.int(n, f, &l.MaxEventStreams, 1, maxEventStreams) }
	}
	d.mapping(n, field, fields)
}

// Ranges: wide enough for any real deployment, narrow enough to catch a
// slip of the keyboard (1ns, 2e9).
const (
	maxThreshold    = 10_000
	maxProbes       = 1_000
	maxConnections  = 1_000_000
	maxEventStreams = 10_000
	minDuration     = 10 * time.Millisecond // keep the message in dur in step
	maxDuration     = 24 * time.Hour
)

// resolve follows an alias, counting nodes against maxNodes.
func (d *decoder) resolve(n *yaml.Node, field string) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	d.nodes++
	if d.nodes == maxNodes {
		d.errorf(n.Line, field, "more than %d YAML nodes (nested aliases?): a breakerbox config is small", maxNodes)
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

// mapping decodes a YAML mapping: each known key's value goes to its
// function; with other set, any key goes to other (a map such as
// per_region). Unknown and repeated keys are reported with the line and,
// for a typo, the nearest known key.
func (d *decoder) mapping(n *yaml.Node, field string, known map[string]func(*yaml.Node, string), other ...func(string, *yaml.Node, string)) {
	d.eachKey(n, field, func(k string, vn *yaml.Node, f string) bool {
		if fn, ok := known[k]; ok {
			fn(vn, f)
			return true
		}
		if len(other) > 0 {
			other[0](k, vn, f)
			return true
		}
		return false
	}, maps.Keys(known))
}

// eachKey calls value for each key of a mapping, once per key, and reports
// repeated keys and the keys value does not know (false), suggesting the
// nearest of known.
func (d *decoder) eachKey(n *yaml.Node, field string, value func(k string, vn *yaml.Node, f string) bool, known iter.Seq[string]) {
	n = d.resolve(n, field)
	if d.nodes >= maxNodes || isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, field, "%s: want a mapping of key: value", describe(n))
		return
	}
	var seen map[string]int // key → line; for a few keys, a look back is cheaper
	if len(n.Content) > 16 {
		seen = make(map[string]int, len(n.Content)/2)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := d.resolve(n.Content[i], field), n.Content[i+1]
		if kn.Kind != yaml.ScalarNode {
			d.errorf(kn.Line, field, "a key that is not a plain word")
			continue
		}
		k := kn.Value
		if line, dup := firstKey(n.Content[:i], k, seen); dup {
			d.errorf(kn.Line, join(field, k), "set twice (first at line %d): keep one", line)
			continue
		}
		if seen != nil {
			seen[k] = kn.Line
		}
		f := join(field, k)
		d.lines[f] = vn.Line
		if !value(k, vn, f) {
			d.unknownKey(kn, field, k, known)
		}
	}
}

// firstKey returns the line of key k among the keys and values before it,
// from seen if set.
func firstKey(before []*yaml.Node, k string, seen map[string]int) (line int, ok bool) {
	if seen != nil {
		line, ok = seen[k]
		return line, ok
	}
	for i := 0; i < len(before); i += 2 {
		kn := before[i]
		for kn.Kind == yaml.AliasNode && kn.Alias != nil {
			kn = kn.Alias
		}
		if kn.Kind == yaml.ScalarNode && kn.Value == k {
			return kn.Line, true
		}
	}
	return 0, false
}

func (d *decoder) unknownKey(kn *yaml.Node, field, k string, known iter.Seq[string]) {
	in := field
	if in == "" {
		in = "the top level"
	}
	msg := fmt.Sprintf("unknown key %q in %s", k, in)
	if k == "<<" {
		msg += ": YAML merge keys are not supported; use defaults: for shared settings"
	} else if near := nearest(k, known); near != "" {
		msg += fmt.Sprintf("; did you mean %q?", near)
	} else if field == "" {
		if _, ok := settingsFields[k]; ok {
			msg += fmt.Sprintf("; breaker settings go under defaults: or a service, e.g. defaults: {%s: ...}", k)
		}
	}
	d.errorf(kn.Line, "", "%s", msg)
}

// nearest returns the known key closest to k, if it is close enough to be
// a typo of it.
func nearest(k string, known iter.Seq[string]) string {
	best, bestD := "", 0
	for cand := range known {
		dist := editDistance(strings.ToLower(k), cand)
		if dist <= max(2, len(cand)/4) && (best == "" || dist < bestD || dist == bestD && cand < best) {
			best, bestD = cand, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (d *decoder) seq(n *yaml.Node, field string, each func(*yaml.Node, string)) {
	n = d.resolve(n, field)
	if d.nodes >= maxNodes || isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n.Line, field, "%s: want a list (- item per line, or [a, b])", describe(n))
		return
	}
	for i, item := range n.Content {
		if d.nodes >= maxNodes {
			return
		}
		f := field + "[" + strconv.Itoa(i) + "]"
		d.lines[f] = item.Line
		each(item, f)
	}
}

// describe names a node's value for an error message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "nothing"
}

// str decodes any scalar as its text: listen: 7070 is the string "7070",
// which validation then explains is not host:port.
func (d *decoder) str(n *yaml.Node, field string, out *string) {
	n = d.resolve(n, field)
	switch {
	case isNull(n):
	case n.Kind != yaml.ScalarNode:
		d.errorf(n.Line, field, "%s: want a single value", describe(n))
	default:
		*out = n.Value
	}
}

func (d *decoder) int(n *yaml.Node, field string, out *int, lo, hi int) {
	n = d.resolve(n, field)
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.errorf(n.Line, field, "%s is not a whole number: write e.g. %d, or leave the key out to inherit", describe(n), lo)
		return
	}
	var f float64
	switch n.ShortTag() {
	case "!!int", "!!float":
		// A float that is whole (2e9) is judged by its range below; one
		// that is not (5.5) is refused rather than truncated.
		if err := n.Decode(&f); err != nil || math.IsNaN(f) {
			d.errorf(n.Line, field, "%q is not a whole number", n.Value)
			return
		}
	default:
		d.errorf(n.Line, field, "%q is not a whole number", n.Value)
		return
	}
	switch {
	case f != math.Trunc(f):
		d.errorf(n.Line, field, "%s is not a whole number: write e.g. %d", n.Value, int(math.Round(f)))
	case f < float64(lo) || f > float64(hi):
		d.errorf(n.Line, field, "%s is out of range: want %d–%d", n.Value, lo, hi)
	default:
		*out = int(f)
	}
}

func (d *decoder) dur(n *yaml.Node, field string, out *Duration) {
	n = d.resolve(n, field)
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.errorf(n.Line, field, "%s is not a duration: write it with a unit, e.g. 60s or 1m30s", describe(n))
		return
	}
	v, err := time.ParseDuration(n.Value)
	switch {
	case err != nil:
		d.errorf(n.Line, field, "%q is not a duration: write it with a unit, e.g. 60s or 1m30s", n.Value)
	case v < minDuration || v > maxDuration:
		d.errorf(n.Line, field, "%s is out of range: want 10ms–24h (leave it out to inherit)", n.Value)
	default:
		*out = Dur(v)
	}
}
