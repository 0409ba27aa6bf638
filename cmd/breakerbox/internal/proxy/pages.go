package proxy

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// The dashboard's paged view, GET /api/circuits?view=page: the server
// filters and sorts every circuit and answers one page of them in full,
// with the count of circuits in each state. A browser showing 10,000
// circuits reads about 50 circuits per poll, never the whole set (the
// summary of 10,000 was 600 KB to download and parse before the first
// card).

// pageSorts are the orders of the paged view. Each breaks ties by name, so
// a page keeps its rows while their rates move.
var pageSorts = map[string]func(a, b *pageRow) int{
	// Worst first; within closed, the closest to opening first. Every
	// circuit that rejects or probes ranks alike, so one cycling
	// OPEN ⇄ HALF_OPEN keeps its place.
	"health": func(a, b *pageRow) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), cmp.Compare(b.health, a.health))
	},
	"volume": func(a, b *pageRow) int { return cmp.Compare(b.volume(), a.volume()) },
	"errors": func(a, b *pageRow) int {
		return cmp.Or(cmp.Compare(b.errPct, a.errPct), cmp.Compare(b.volume(), a.volume()))
	},
	"latency": func(a, b *pageRow) int { return cmp.Compare(b.p99, a.p99) },
	"name":    func(a, b *pageRow) int { return 0 },
}

// pageParams are the parameters only view=page takes.
var pageParams = [...]string{"sort", "state", "q", "offset", "limit", "focus", "problem_after"}

const (
	pageSortNames    = "health, volume, errors, latency or name"
	pageLimitMax     = 500
	pageLimitDefault = 48
)

// pageRank is the health sort's rank of each state (see pageSorts).
var pageRank = [...]int{breaker.Closed: 2, breaker.Open: 0, breaker.HalfOpen: 0, breaker.ForcedOpen: 0, breaker.Disabled: 1}

// pageRow is one circuit as the paged view sorts it: a few numbers read
// without allocating (10,000 of them per request).
type pageRow struct {
	r                       *route
	state                   breaker.State
	rank                    int
	health                  float64 // closed: failure streak / threshold + error share; else 0
	rps, rejps, errPct, p99 float64
	lastTransition          time.Time
	consecutive, threshold  int
}

func (p *pageRow) volume() float64 { return p.rps + p.rejps }

// pageRows are one request's rows and their order, kept for the next.
type pageRows struct {
	rows   []pageRow
	sorted []*pageRow
}

var pageRowsPool = sync.Pool{New: func() any { return new(pageRows) }}

// pageQuery is a parsed view=page request.
type pageQuery struct {
	sort          func(a, b *pageRow) int
	withP99       bool
	states        [len(pageRank)]bool // none set: every state
	anyState      bool
	q             string // lower case, in the name or the upstream
	offset, limit int
	focus         string // show the page holding this circuit
	problemAfter  *string
}

// parsePageQuery reads view=page's parameters; the error names the
// parameter and the allowed values.
func parsePageQuery(q map[string][]string) (pageQuery, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	p := pageQuery{limit: pageLimitDefault}
	sortName := cmp.Or(get("sort"), "health")
	if p.sort = pageSorts[sortName]; p.sort == nil {
		return p, fmt.Errorf("sort=%q: want %s", sortName, pageSortNames)
	}
	p.withP99 = sortName == "latency"
	for _, v := range q["state"] {
		for _, s := range strings.Split(v, ",") {
			st, err := breaker.ParseState(s)
			if err != nil || int(st) >= len(p.states) {
				return p, fmt.Errorf("state=%q: want closed, half_open, open, forced_open or disabled (comma-separated or repeated)", s)
			}
			p.states[st], p.anyState = true, true
		}
	}
	p.q = strings.ToLower(get("q"))
	if v := get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return p, fmt.Errorf("offset=%q: want a whole number, 0 or more", v)
		}
		p.offset = n
	}
	if v := get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > pageLimitMax {
			return p, fmt.Errorf("limit=%q: want a whole number from 1 to %d", v, pageLimitMax)
		}
		p.limit = n
	}
	p.focus = get("focus")
	if v, ok := q["problem_after"]; ok {
		p.problemAfter = &v[0]
	}
	return p, nil
}

// Page is the answer of GET /api/circuits?view=page.
type Page struct {
	// Total is the number of circuits; Matched, of those the filters keep.
	Total   int `json:"total"`
	Matched int `json:"matched"`
	// Counts are every circuit's states (the filters left aside).
	Counts map[string]int `json:"counts"`
	Offset int            `json:"offset"`
	Limit  int            `json:"limit"`
	// Focus is the circuit asked for with focus= or found by
	// problem_after=, "" if none matched; Offset is then its page's.
	Focus string `json:"focus"`
	// Names are the page's circuits in order; Circuits, those of them
	// that may have changed since since= (all without since=).
	Names    []string  `json:"names"`
	Circuits []Circuit `json:"circuits"`
}

// listPage is GET /api/circuits?view=page: parameters sort, state, q,
// offset, limit, focus, problem_after and since (see the README's API
// section).
func (s *Server) listPage(w http.ResponseWriter, q map[string][]string, since time.Time) {
	pq, err := parsePageQuery(q)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	}
	t := s.table.Load()
	now := time.Now()
	pr := pageRowsPool.Get().(*pageRows)
	defer func() {
		clear(pr.rows) // no routes of an old table kept alive in the pool
		clear(pr.sorted)
		pageRowsPool.Put(pr)
	}()
	rows := pr.rows[:0]
	var counts [len(pageRank)]int
	for _, r := range t.sorted {
		b, ok := s.registry.Lookup(r.circuit)
		if !ok {
			continue
		}
		snap := b.Snapshot()
		if int(snap.State) < len(counts) {
			counts[snap.State]++
		}
		if pq.anyState && (int(snap.State) >= len(pq.states) || !pq.states[snap.State]) {
			continue
		}
		if pq.q != "" && !strings.Contains(strings.ToLower(r.circuit), pq.q) && !strings.Contains(strings.ToLower(r.upstream), pq.q) {
			continue
		}
		row := pageRow{r: r, state: snap.State, lastTransition: snap.LastTransition.At,
			consecutive: snap.ConsecutiveFailures, threshold: r.settings.FailureThreshold}
		if int(snap.State) < len(pageRank) {
			row.rank = pageRank[snap.State]
		}
		row.rps, row.rejps, row.errPct, row.p99 = r.stats.rates(now, s.started, pq.withP99)
		if snap.State == breaker.Closed {
			row.health = float64(row.consecutive)/float64(max(1, row.threshold)) + row.errPct/100
		}
		rows = append(rows, row)
	}
	pr.rows = rows
	// Sorted by pointer: a comparison of two rows taken by value would
	// copy them to the heap (pq.sort is not known to the compiler).
	sorted := pr.sorted[:0]
	for i := range rows {
		sorted = append(sorted, &rows[i])
	}
	pr.sorted = sorted
	slices.SortFunc(sorted, func(a, b *pageRow) int {
		return cmp.Or(pq.sort(a, b), strings.Compare(a.r.circuit, b.r.circuit))
	})

	page := Page{Total: len(t.sorted), Matched: len(rows), Limit: pq.limit}
	focusAt := -1
	switch {
	case pq.problemAfter != nil:
		focusAt = nextProblem(sorted, *pq.problemAfter)
	case pq.focus != "":
		focusAt = slices.IndexFunc(sorted, func(p *pageRow) bool { return p.r.circuit == pq.focus })
	}
	page.Offset = min(pq.offset, max(0, len(rows)-1)/pq.limit*pq.limit)
	if focusAt >= 0 {
		page.Focus = sorted[focusAt].r.circuit
		page.Offset = focusAt / pq.limit * pq.limit
	}
	shown := sorted[page.Offset:min(len(sorted), page.Offset+pq.limit)]

	w.Header().Set("Breakerbox-Time", strconv.FormatFloat(float64(now.UnixMilli())/1000, 'f', 3, 64))
	w.Header().Set("Breakerbox-Replica", s.replica)
	w.Header().Set("Content-Type", "application/json")
	// Written by hand like the full listing (circuitjson.go): the Page
	// type documents the answer.
	sc := listScratchPool.Get().(*listScratch)
	defer listScratchPool.Put(sc)
	b := append(sc.buf[:0], `{"total":`...)
	b = strconv.AppendInt(b, int64(page.Total), 10)
	b = append(b, `,"matched":`...)
	b = strconv.AppendInt(b, int64(page.Matched), 10)
	b = append(b, `,"counts":{`...)
	for st, n := range counts {
		if st > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, breaker.State(st).String())
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(n), 10)
	}
	b = append(b, `},"offset":`...)
	b = strconv.AppendInt(b, int64(page.Offset), 10)
	b = append(b, `,"limit":`...)
	b = strconv.AppendInt(b, int64(page.Limit), 10)
	b = append(b, `,"focus":`...)
	b = appendJSONString(b, page.Focus)
	b = append(b, `,"names":[`...)
	for i, p := range shown {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, p.r.circuit)
	}
	b = append(b, `],"circuits":[`...)
	first := true
	for _, p := range shown {
		if !changedSince(p.r, p.lastTransition, since) {
			continue
		}
		br, ok := s.registry.Lookup(p.r.circuit)
		if !ok {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		s.fillCircuit(&sc.circuit, p.r, br.Snapshot(), now, &sc.stats)
		b = appendCircuit(b, &sc.circuit)
	}
	b = append(b, "]}\n"...)
	w.Write(b)
	sc.buf = b[:0]
}

// nextProblem is the index of the first circuit not closed after the one
// named after (from the top if after is "" or not among rows), round to
// the first; -1 if every row is closed.
func nextProblem(rows []*pageRow, after string) int {
	from := -1
	if after != "" {
		from = slices.IndexFunc(rows, func(p *pageRow) bool { return p.r.circuit == after })
	}
	for k := 1; k <= len(rows); k++ {
		i := (from + k) % len(rows)
		if rows[i].state != breaker.Closed {
			return i
		}
	}
	return -1
}
