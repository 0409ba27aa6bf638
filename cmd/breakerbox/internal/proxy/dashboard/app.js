// breakerbox dashboard. It scales to 10,000 circuits by never doing work
// per circuit per event, and never reading every circuit:
//   - the server filters, sorts and pages (api/circuits?view=page): each
//     poll (every 2 s, at once when the view changes) reads the page's
//     circuits in full and the count of circuits in each state; with
//     ?since= it sends only the page's rows that may have changed;
//   - each transition of the api/events stream shows at once on its card
//     and in the counts, without a fetch; one that moves a circuit in or
//     out of the problems asks for the page again soon (the order moved);
//   - a render reuses the cards it has, touching only what changed;
//   - the timeline grows by one item per transition and drops its oldest.
// No build step, no dependencies: this file is embedded in the binary as is.
"use strict";

(() => {
  const POLL_MS = 2000; // the page
  const FULL_MS = 60000; // a poll without since= (catches reloads)
  const REORDER_MS = 500; // a page re-read after a circuit joins or leaves the problems
  const FETCH_TIMEOUT_MS = 8000;
  const TIMELINE_MAX = 100;
  const MAX_SEGMENTS = 20; // a larger threshold is drawn as a plain bar
  const RENDER_MS = 250; // renders are coalesced to at most 4 a second
  const EVIDENCE_SHOWN = 6;
  const HIGHLIGHT_MS = 1500;
  // More changes than this in one render highlight none: in a storm every
  // item would be lit, which says nothing.
  const HIGHLIGHT_MAX = 3;

  const STATE_LABEL = {
    closed: "Closed",
    half_open: "Half-open",
    open: "Open",
    forced_open: "Forced open",
    disabled: "Disabled",
  };
  // Worst first: the favicon, the title and the health sort follow it.
  const SEVERITY = ["forced_open", "open", "half_open", "disabled", "closed"];
  // The health sort ranks every circuit that rejects or probes alike, so a
  // circuit cycling OPEN ⇄ HALF_OPEN keeps its place on the page.
  const RANK = { forced_open: 0, open: 0, half_open: 0, disabled: 1, closed: 2 };
  const FAVICON_COLOR = {
    forced_open: "#8b0d17", open: "#d1242f", half_open: "#e09b13", disabled: "#6e7781", closed: "#1f883d",
  };

  const ACTIONS = {
    open: {
      label: "Force open",
      done: "forced open",
      text: (c) => `Every request to ${c} will be rejected with 503, without contacting the upstream, until the circuit is reset.`,
    },
    close: {
      label: "Force close",
      done: "forced closed (breaker disabled)",
      text: (c) => `The breaker of ${c} will be disabled: every request goes to the upstream, failures are not counted, until the circuit is reset.`,
    },
    reset: {
      label: "Reset",
      done: "reset to closed",
      text: (c) => `${c} goes back to closed with its counters cleared, and the breaker trips again on failures.`,
    },
  };

  const $ = (sel, root = document) => root.querySelector(sel);
  const num = new Intl.NumberFormat();
  const dec = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  const day = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

  const model = {
    counts: {},             // state → circuits in it, every circuit
    total: 0,               // circuits configured
    matched: 0,             // of those, the ones the filters keep
    names: [],              // the page's circuits, in order
    details: new Map(),     // name → Circuit, the page's circuits
    fleet: null,            // api/fleet for the page's circuits, with a shared state
    fleetShared: true,      // false once api/fleet says this replica is alone
    probeAt: new Map(),     // name → performance.now() deadline of the next probe (the page's)
    since: "",              // Breakerbox-Time of the last answer: the next delta's since
    replica: "",
    transitions: [],        // newest first, as shown
    seen: new Set(),        // transition keys already in the timeline
    skewMs: 0,              // server clock minus ours, when it matters
    lastOK: 0,              // Date.now() of the last good api/circuits answer
    apiDown: false,
    stream: "connecting",   // live | reconnecting | connecting
  };
  const view = {
    query: "",
    sort: "health",
    states: new Set(),      // state chips pressed; none = every state
    problems: false,
    page: 0,
    pageSize: 48,
  };
  const cards = new Map(); // name → card element, for the circuits on the page
  const drawn = new WeakMap(); // card → the circuit object it last showed

  // ---- fetching ----------------------------------------------------------

  // mark times the first load's steps (performance.getEntriesByType("mark")).
  let marks = 0;
  function mark(name) {
    if (marks++ < 20) performance.mark(name);
  }
  mark("script");

  async function getJSON(path, timeout = FETCH_TIMEOUT_MS) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeout);
    try {
      const res = await fetch(path, { signal: ctl.signal, cache: "no-store", headers: { Accept: "application/json" } });
      if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
      const date = Date.parse(res.headers.get("Date") || "");
      if (!Number.isNaN(date)) {
        const skew = date - Date.now();
        // Date has 1 s resolution: only correct a skew that is clearly real.
        model.skewMs = Math.abs(skew) > 2000 ? skew : 0;
      }
      const tag = path.split("&")[0];
      mark(`${tag} headers`);
      const text = await res.text();
      mark(`${tag} body`);
      const body = JSON.parse(text);
      mark(`${tag} parsed`);
      return { body, headers: res.headers };
    } finally {
      clearTimeout(timer);
    }
  }

  let inFlight = null;
  let pollTimer = 0;
  let lastFull = 0;
  let sinceKey = ""; // the view model.since belongs to
  let wanted = null; // {focus} or {problemAfter}: for the next poll
  let again = false; // the view changed during a poll: read it once that one ends

  // pageQuery is the view as api/circuits?view=page parameters.
  function pageQuery() {
    const p = new URLSearchParams({ view: "page", sort: view.sort, limit: String(view.pageSize), offset: String(view.page * view.pageSize) });
    const states = view.problems ? SEVERITY.filter((s) => s !== "closed" && (!view.states.size || view.states.has(s))) : [...view.states];
    if (view.problems && !states.length) states.push("none"); // problems only and the closed chip: nothing
    if (states.length) p.set("state", states.join(","));
    if (view.query) p.set("q", view.query);
    return p;
  }

  // poll reads the page (the whole of it at start, after a change of view,
  // every FULL_MS and after a reconnect; else the rows changed since the
  // last answer), then the details of page circuits it has no row for.
  // want is {focus: name} or {problemAfter: name} to go to a circuit.
  function poll(want) {
    if (want) wanted = want;
    if (inFlight) {
      again = true;
      return inFlight;
    }
    clearTimeout(pollTimer);
    inFlight = (async () => {
      let goto = null;
      try {
        const p = pageQuery();
        const key = p.toString();
        const go = wanted;
        wanted = null;
        if (go && go.focus) p.set("focus", go.focus);
        if (go && "problemAfter" in go) p.set("problem_after", go.problemAfter);
        const full = !model.since || key !== sinceKey || Date.now() - lastFull > FULL_MS;
        if (!full) p.set("since", model.since);
        // Problems only with the closed chip pressed: nothing to show, but
        // the counts still to read.
        const none = p.get("state") === "none";
        if (none) p.delete("state"), p.set("limit", "1");
        const { body, headers } = await getJSON("api/circuits?" + p.toString());
        showReplica(headers.get("Breakerbox-Replica") || "");
        if (none) Object.assign(body, { matched: 0, names: [], circuits: [], offset: 0 });
        model.total = body.total;
        model.matched = body.matched;
        model.counts = body.counts || {};
        view.page = Math.floor(body.offset / view.pageSize);
        model.names = body.names || [];
        // The answer may be another page than asked (focus, or past the
        // end): since= goes with the view it answered.
        sinceKey = pageQuery().toString();
        model.since = headers.get("Breakerbox-Time") || "";
        if (full) lastFull = Date.now();
        const keep = new Set(model.names);
        for (const name of model.details.keys()) if (!keep.has(name)) model.details.delete(name);
        for (const name of model.probeAt.keys()) if (!keep.has(name)) model.probeAt.delete(name);
        mergeDetails(body.circuits || []);
        const missing = model.names.filter((n) => !model.details.has(n));
        if (missing.length) {
            const { body: rows } = await getJSON("api/circuits?" + missing.map((n) => "name=" + encodeURIComponent(n)).join("&"));
          mergeDetails(rows || []);
        }
        if (model.fleetShared && model.names.length) await loadFleet(model.names);
        if (go) goto = { go, found: body.focus || "" };
        model.apiDown = false;
        model.lastOK = Date.now();
      } catch {
        model.apiDown = true;
      } finally {
        inFlight = null;
        renderConnection();
        pollTimer = setTimeout(poll, again ? 0 : POLL_MS);
        again = false;
      }
      if (goto) landOn(goto.go, goto.found);
    })();
    return inFlight;
  }

  // pollSoon reads the page within ms, unless a poll comes sooner.
  let soonTimer = 0;
  function pollSoon(ms) {
    if (soonTimer) return;
    soonTimer = setTimeout(() => {
      soonTimer = 0;
      poll();
    }, ms);
  }

  // loadFleet reads, with a shared state, the fleet's figures for the page.
  async function loadFleet(names) {
    try {
      const { body: fleet } = await getJSON("api/fleet?" + names.map((n) => "name=" + encodeURIComponent(n)).join("&"));
      model.fleetShared = fleet.shared;
      model.fleet = fleet.shared ? fleet : null;
      renderFleet();
    } catch {
      model.fleet = null; // Redis away: the replica's own numbers stand
    }
  }

  // renderFleet says, with a shared state, how many replicas the fleet has,
  // which are degraded, and which names more than one process uses.
  function renderFleet() {
    const f = model.fleet;
    const box = $("#fleet");
    box.hidden = !f;
    if (!f) return;
    const degraded = f.replicas.filter((r) => r.degraded).map((r) => r.replica);
    const twins = f.replicas.filter((r) => r.duplicate).map((r) => r.replica);
    setText(box, `fleet: ${f.replicas.length} replica${f.replicas.length === 1 ? "" : "s"}` +
      (degraded.length ? ` · degraded: ${degraded.join(", ")}` : "") +
      (twins.length ? ` · name used by two processes: ${twins.join(", ")}` : ""));
    box.dataset.degraded = degraded.length || twins.length ? "true" : "false";
    setAttr(box, "title", f.replicas.map((r) => `${r.replica}${r.degraded ? " (degraded)" : ""}${r.duplicate ? " (name used by two processes)" : ""}: ${r.circuits_with_traffic} circuits with traffic, reported ${Math.round(r.reported_seconds_ago)} s ago`).join("\n"));
  }

  function mergeDetails(list) {
    const now = performance.now();
    for (const c of list) {
      model.details.set(c.name, c);
      setProbe(c.name, c.state, c.retry_after_seconds, now);
    }
    invalidate();
  }

  function showReplica(replica) {
    if (replica === model.replica) return;
    model.replica = replica;
    setText($("#replica"), replica ? `· replica ${replica}` : "");
  }

  async function loadTransitions() {
    try {
      const { body } = await getJSON("api/transitions?limit=" + TIMELINE_MAX);
      addTransitions((body || []).slice().reverse(), false);
    } catch {
      // the poll reports the API as unreachable; the timeline keeps what it has
    }
    if (!model.transitions.length) $("#timeline-empty").hidden = false;
  }

  function connectStream() {
    if (!("EventSource" in window)) {
      model.stream = "reconnecting";
      renderConnection();
      return;
    }
    const es = new EventSource("api/events");
    es.addEventListener("open", () => {
      const wasDown = model.stream === "reconnecting"; // not the first connection
      model.stream = "live";
      renderConnection();
      // Transitions may have happened while the stream was down.
      if (wasDown) {
        loadTransitions();
        model.since = "";
        model.fleetShared = true;
        poll();
      }
    });
    es.addEventListener("error", () => {
      // EventSource reconnects by itself (the server asks for 1 s).
      model.stream = "reconnecting";
      renderConnection();
    });
    es.addEventListener("transition", (ev) => {
      let t;
      try {
        t = JSON.parse(ev.data);
      } catch {
        return;
      }
      applyTransition(t);
      addTransitions([t], true);
    });
  }

  // ---- model updates -----------------------------------------------------

  function setProbe(name, state, seconds, now) {
    if (state !== "open") {
      model.probeAt.delete(name);
      return;
    }
    const at = now + seconds * 1000;
    const prev = model.probeAt.get(name);
    // Keep the running countdown unless the server disagrees by more than
    // its rounding, so the seconds do not jitter on every poll.
    if (prev === undefined || Math.abs(prev - at) > 1000) model.probeAt.set(name, at);
  }

  // applyTransition shows a transition's new state at once, on its card
  // and in the counts; the next poll brings the numbers. A circuit that
  // joins or leaves the problems may move in the order: the page is read
  // again soon.
  function applyTransition(t) {
    if (model.counts[t.from] > 0) {
      model.counts[t.from]--;
      model.counts[t.to] = (model.counts[t.to] || 0) + 1;
    }
    const retry = t.to === "open" ? t.open_for_seconds || 0 : 0;
    const old = model.details.get(t.circuit);
    if (old) {
      const c = { ...old, state: t.to, last_transition: t, retry_after_seconds: retry };
      if (t.to === "open") c.opened = t;
      else if (t.to === "closed") c.opened = undefined;
      if (t.to === "half_open") c.consecutive_successes = 0;
      if (t.to === "open") c.consecutive_failures = 0;
      model.details.set(t.circuit, c);
    }
    model.probeAt.delete(t.circuit);
    if (old) setProbe(t.circuit, t.to, retry, performance.now()); // countdowns of the page's circuits only
    if (t.from === "closed" || t.to === "closed" || view.sort !== "health") pollSoon(REORDER_MS);
    invalidate();
  }

  const transitionKey = (t) => `${t.circuit}|${t.at}|${t.from}|${t.to}`;

  // addTransitions takes transitions oldest first; the next render puts
  // them on top of the timeline, one item each, in one insertion.
  const incoming = document.createDocumentFragment();
  let announce = "";
  let rebuildTimeline = false;
  function addTransitions(list, highlight) {
    if (!highlight && model.transitions.length) {
      // History read after a reconnect may be older than what is shown:
      // sort, and draw the timeline once (rare, unlike a live event).
      rebuildTimeline = true;
    }
    for (const t of list) {
      const k = transitionKey(t);
      if (model.seen.has(k)) continue;
      model.seen.add(k);
      if (highlight) announce = t.message || `${t.circuit}: ${STATE_LABEL[t.to] || t.to}`;
      model.transitions.unshift(t);
      const li = timelineItem(t);
      if (highlight) li.dataset.fresh = "";
      incoming.prepend(li);
    }
    invalidate();
  }

  function renderTimeline() {
    const ol = $("#timeline");
    if (rebuildTimeline) {
      rebuildTimeline = false;
      model.transitions.sort((a, b) => Date.parse(b.at) - Date.parse(a.at));
      incoming.replaceChildren();
      ol.replaceChildren(...model.transitions.slice(0, TIMELINE_MAX).map(timelineItem));
    }
    if (!incoming.firstChild && ol.childElementCount <= TIMELINE_MAX) return;
    const fresh = incoming.querySelectorAll("[data-fresh]");
    for (const li of fresh) {
      delete li.dataset.fresh;
      if (fresh.length <= HIGHLIGHT_MAX) flash(li);
    }
    ol.prepend(incoming);
    if (announce) setText($("#announce"), announce);
    announce = "";
    while (model.transitions.length > TIMELINE_MAX) model.seen.delete(transitionKey(model.transitions.pop()));
    while (ol.childElementCount > TIMELINE_MAX) ol.lastElementChild.remove();
    $("#timeline-empty").hidden = model.transitions.length > 0;
    setText($("#timeline-count"), model.transitions.length ? `${model.transitions.length} recent` : "");
  }

  let renderTimer = 0;

  // invalidate asks for a render soon: at once for the first screen.
  function invalidate() {
    if (!renderTimer) renderTimer = setTimeout(render, cards.size ? RENDER_MS : 0);
  }

  // ---- rendering ---------------------------------------------------------

  function render() {
    renderTimer = 0;
    renderTotals();
    renderPage();
    renderTimeline();
    tick();
    if (cards.size) mark("rendered");
  }

  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function setAttr(node, k, v) {
    if (node.getAttribute(k) !== v) node.setAttribute(k, v);
  }

  function host(url) {
    try {
      return new URL(url).host;
    } catch {
      return url;
    }
  }

  // renderPage shows the page the server sent: it keeps the cards already
  // there, creates the missing, drops the rest, and moves a card only when
  // its place changed.
  const changed = []; // cards whose state changed in this render
  function renderPage() {
    const root = $("#cards");
    changed.length = 0;
    const all = model.names;
    const from = view.page * view.pageSize;
    const pages = Math.max(1, Math.ceil(model.matched / view.pageSize));
    const names = all.filter((n) => model.details.has(n));
    const keep = new Set(names);
    for (const [name, card] of cards) {
      if (!keep.has(name)) {
        card.remove();
        cards.delete(name);
      }
    }
    $("#loading")?.remove();
    let prev = null;
    for (const name of names) {
      const c = model.details.get(name);
      let card = cards.get(name);
      if (!card) {
        card = newCard(c);
        cards.set(name, card);
      }
      const want = prev ? prev.nextElementSibling : root.firstElementChild;
      if (want !== card) root.insertBefore(card, want);
      if (drawn.get(card) !== c) {
        updateCard(card, c);
        drawn.set(card, c);
      }
      updateFleetRates(card, name);
      prev = card;
    }
    if (changed.length <= HIGHLIGHT_MAX) changed.forEach(flash);
    let empty = $("#empty", root);
    if (!names.length) {
      if (!empty) root.append((empty = el("p", { class: "placeholder", id: "empty" })));
      setText(empty, model.total ? "No circuit matches the search and filters." : "No circuits configured.");
    } else if (empty) {
      empty.remove();
    }
    root.setAttribute("aria-busy", "false");
    const n = model.matched;
    setText($("#range"), n ? `${num.format(from + 1)}–${num.format(from + all.length)} of ${num.format(n)}${n < model.total ? ` (of ${num.format(model.total)})` : ""}` : "");
    $("#prev-page").disabled = view.page === 0;
    $("#next-page").disabled = view.page >= pages - 1;
  }

  function newCard(c) {
    const title = c.region ? c.region : c.name;
    const kind = c.kind && c.kind !== "http" ? c.kind.toUpperCase() + " " : "";
    return el(
      "article",
      { class: "card", "data-circuit": c.name, "data-state": c.state, tabindex: "-1" },
      el(
        "header",
        { class: "card-h" },
        el("h4", { class: "name", title: c.name }, c.region ? el("span", { class: "svc muted", text: c.service + " / " }) : null, title),
        el(
          "div",
          { class: "card-sub" },
          el("span", { class: "upstream muted", title: c.upstream, text: kind + host(c.upstream) }),
          el("span", { class: "pill", "data-role": "state" }),
        ),
      ),
      sparkline(),
      el("p", { class: "rates", "data-role": "rates" }),
      el("p", { class: "rates fleet-rates muted", "data-role": "fleet", hidden: "" }),
      el(
        "div",
        { class: "meter", role: "meter", "aria-valuemin": "0", "data-role": "meter" },
        el("div", { class: "segs", "aria-hidden": "true" }),
        el("span", { class: "meter-label" }),
      ),
      el(
        "div",
        { class: "status", "data-role": "status" },
        el("span", { class: "status-text" }),
        el("div", { class: "drain", "aria-hidden": "true" }, el("div", { class: "drain-fill" })),
      ),
      el("div", { class: "evidence", "data-role": "evidence", hidden: "" }),
      el(
        "dl",
        { class: "counts" },
        count("success", "ok"),
        count("failure", "failed"),
        count("ignored", "ignored"),
        count("rejected", "rejected"),
      ),
      el(
        "div",
        { class: "actions" },
        ...Object.entries(ACTIONS).map(([action, a]) =>
          el("button", { type: "button", "data-action": action, "aria-label": `${a.label} ${c.name}`, text: a.label }),
        ),
      ),
    );
  }

  function updateFleetRates(card, name) {
    const box = $("[data-role=fleet]", card);
    const f = model.fleet && model.fleet.circuits[name];
    box.hidden = !f || f.replicas.length < 2;
    if (box.hidden) return;
    setText(box, `fleet ${dec.format(f.requests_per_second)} req/s · ${dec.format(f.error_percent)}% err · ${f.replicas.length} replicas`);
    setAttr(box, "title", `last minute over ${f.replicas.join(", ")}`);
  }

  // sparkline is the last 5 minutes in 10 s buckets: calls (area), failures
  // (red line) and rejections (dashed).
  function sparkline() {
    const s = svg("svg", { class: "spark", viewBox: "0 0 120 28", preserveAspectRatio: "none", "aria-hidden": "true" });
    s.append(
      svg("polygon", { class: "spark-calls", points: "" }),
      svg("polyline", { class: "spark-rejected", points: "" }),
      svg("polyline", { class: "spark-failures", points: "" }),
    );
    return s;
  }

  function points(series, max, area) {
    const n = series.length;
    const step = 120 / Math.max(1, n - 1);
    let p = area ? "0,28 " : "";
    for (let i = 0; i < n; i++) p += `${(i * step).toFixed(1)},${(27 - (26 * series[i]) / max).toFixed(1)} `;
    if (area) p += "120,28";
    return p;
  }

  function updateSpark(card, c) {
    const s = $(".spark", card);
    const b = c.stats && c.stats.buckets;
    if (!b) {
      s.dataset.idle = "true";
      for (const e of s.children) setAttr(e, "points", "");
      return;
    }
    s.dataset.idle = "false";
    const calls = b.requests.map((v, i) => v + b.rejected[i]);
    const max = Math.max(1, ...calls);
    setAttr(s.children[0], "points", points(b.requests, max, true));
    setAttr(s.children[1], "points", points(b.rejected, max, false));
    setAttr(s.children[2], "points", points(b.failures, max, false));
  }

  function count(key, label) {
    return el("div", { "data-count": key }, el("dt", { text: label }), el("dd", { text: "0" }));
  }

  function ms(v) {
    if (v >= 1000) return `${dec.format(v / 1000)} s`;
    return `${v >= 10 ? Math.round(v) : dec.format(v)} ms`;
  }

  // flash highlights a card, or a timeline item, for HIGHLIGHT_MS; tick
  // turns them off (style.css says why not a fade).
  const highlighted = new Map(); // element → performance.now() when it goes off
  function flash(node) {
    if (node.classList.contains("tl")) node.classList.add("new");
    else node.dataset.flash = "";
    highlighted.set(node, performance.now() + HIGHLIGHT_MS);
  }

  function unflash(now) {
    for (const [node, until] of highlighted) {
      if (until > now) continue;
      highlighted.delete(node);
      node.classList.remove("new");
      delete node.dataset.flash;
    }
  }

  function updateCard(card, c) {
    if (card.dataset.state !== c.state) {
      card.dataset.state = c.state;
      changed.push(card);
    }
    setAttr(card, "aria-label", `${c.name}: ${STATE_LABEL[c.state] || c.state}`);
    setText($("[data-role=state]", card), STATE_LABEL[c.state] || c.state);

    const st = c.stats;
    const rates = $("[data-role=rates]", card);
    if (st) {
      const parts = [`${dec.format(st.requests_per_second)} req/s`, `${dec.format(st.error_percent)}% err`];
      if (st.requests_per_second > 0) parts.push(`p50 ${ms(st.p50_ms)}`, `p99 ${ms(st.p99_ms)}`);
      if (st.rejected_per_second > 0) parts.push(`${dec.format(st.rejected_per_second)} rej/s`);
      setText(rates, parts.join(" · "));
      rates.dataset.level = st.error_percent >= 50 ? "bad" : st.error_percent >= 5 ? "warn" : "ok";
      setAttr(rates, "title", `last ${Math.round(st.window_seconds)} s`);
    } else {
      setText(rates, "no traffic in 5 min");
      rates.dataset.level = "idle";
    }
    updateSpark(card, c);

    const counts = { success: c.counts.success, failure: c.counts.failure, ignored: c.counts.ignored, rejected: c.rejected + c.rejected_half_open };
    for (const [k, v] of Object.entries(counts)) {
      const dd = $(`[data-count=${k}] dd`, card);
      setText(dd, num.format(v || 0));
      dd.parentElement.dataset.zero = v ? "false" : "true";
    }

    updateMeter($("[data-role=meter]", card), c);
    updateEvidence($("[data-role=evidence]", card), c);
    card.dataset.openFor = String(c.settings.open_timeout_seconds);

    for (const b of card.querySelectorAll("[data-action]")) {
      b.disabled = (b.dataset.action === "open" && c.state === "forced_open") || (b.dataset.action === "close" && c.state === "disabled");
    }
    updateStatus(card, c.name, performance.now());
  }

  // updateEvidence lists, while the circuit is not closed, the outcomes
  // that opened it (the newest EVIDENCE_SHOWN).
  function updateEvidence(box, c) {
    const o = c.state !== "closed" && c.opened;
    const ev = (o && o.evidence) || [];
    const key = o ? transitionKey(o) + ev.length : "";
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    box.hidden = !ev.length;
    if (!ev.length) {
      box.replaceChildren();
      return;
    }
    const shown = ev.slice(-EVIDENCE_SHOWN);
    box.replaceChildren(
      el("span", { class: "ev-label muted", text: "why" }),
      ...shown.map((e) =>
        el("span", {
          class: "ev",
          "data-ok": e.status && e.status < 500 ? "true" : "false",
          title: `${e.status || e.error} after ${ms(e.latency_ms)} at ${stamp(e.at)}${e.replica ? " on " + e.replica : ""}`,
          text: `${e.status || e.error.replace("_", " ")} ${ms(e.latency_ms)}`,
        }),
      ),
    );
    setAttr(box, "title", `${o.message}${o.replica ? " (replica " + o.replica + ")" : ""}: last ${ev.length} outcomes`);
  }

  // updateMeter draws the number that matters in the circuit's state:
  // consecutive failures against the threshold while closed, successful
  // probes against the successes needed while half-open. An open circuit
  // shows its countdown instead (the breaker clears its failure count on
  // opening, so "0/5 failures" would mislead).
  function updateMeter(meter, c) {
    const s = c.settings;
    let n, max, label, level, kind;
    switch (c.state) {
      case "half_open":
        [n, max, kind, level] = [c.consecutive_successes, s.half_open_successes, "probes", "some"];
        label = `${n}/${max} ok · ${c.probes_in_flight} probing`;
        break;
      case "disabled":
        [n, max, kind, level] = [0, s.failure_threshold, "off", "none"];
        label = "breaker off";
        break;
      case "open":
      case "forced_open":
        // Hidden: the status line shows the countdown instead.
        [n, max, kind, level] = [s.failure_threshold, s.failure_threshold, "failures", "full"];
        label = "tripped";
        break;
      default:
        [n, max, kind] = [Math.min(c.consecutive_failures, s.failure_threshold), s.failure_threshold, "failures"];
        level = n >= max ? "full" : n > 0 ? "some" : "none";
        label = `${c.consecutive_failures}/${max} failures`;
    }
    meter.dataset.kind = kind;
    meter.dataset.level = level;
    setAttr(meter, "aria-valuemax", String(max));
    setAttr(meter, "aria-valuenow", String(n));
    setAttr(meter, "aria-label", kind === "probes" ? `${n} of ${max} successful probes needed to close` : `${c.consecutive_failures} of ${s.failure_threshold} consecutive failures`);
    const segs = $(".segs", meter);
    const segCount = max <= MAX_SEGMENTS ? max : 1;
    if (segs.childElementCount !== segCount) segs.replaceChildren(...Array.from({ length: segCount }, () => el("i")));
    segs.dataset.bar = segCount === 1 && max > 1 ? "true" : "false";
    if (segs.dataset.bar === "true") segs.firstChild.style.setProperty("--fill", `${(100 * n) / max}%`);
    else [...segs.children].forEach((seg, i) => seg.classList.toggle("on", i < n));
    setText($(".meter-label", meter), label);
  }

  // tick redraws what depends on the time: the countdowns on the page,
  // "ago" labels and the connection's freshness. It runs every second.
  function tick() {
    const now = performance.now();
    unflash(now);
    for (const [name, card] of cards) updateStatus(card, name, now);
    for (const ago of document.querySelectorAll("#timeline [data-ago]")) setText(ago, agoText(Date.parse(ago.dataset.ago) - model.skewMs));
    renderConnection();
  }

  function updateStatus(card, name, now) {
    const text = $(".status-text", card);
    const fill = $(".drain-fill", card);
    const state = card.dataset.state;
    let msg = "";
    let pct = null;
    switch (state) {
      case "open": {
        const at = model.probeAt.get(name);
        const left = at === undefined ? 0 : Math.max(0, Math.ceil((at - now) / 1000));
        const total = Number(card.dataset.openFor) || 1;
        if (left > 0) {
          msg = `Next probe in ${mmss(left)}`;
          pct = Math.min(100, (100 * left) / total);
        } else {
          msg = "Probe due";
          pct = 0;
        }
        card.dataset.countdown = String(left);
        break;
      }
      case "forced_open":
        msg = "Forced open manually";
        break;
      // Other states show their meter instead (see updateMeter).
    }
    setText(text, msg);
    const drain = card.querySelector(".drain");
    if (drain.hidden !== (pct === null)) drain.hidden = pct === null;
    if (pct !== null) {
      const w = `scaleX(${pct / 100})`;
      if (fill.style.transform !== w) fill.style.transform = w;
    }
  }

  let lastTotals = "";
  function renderTotals() {
    const totals = { closed: 0, half_open: 0, open: 0, forced_open: 0, disabled: 0, ...model.counts };
    const key = JSON.stringify(totals) + [...view.states].join();
    if (key === lastTotals) return;
    lastTotals = key;
    for (const b of document.querySelectorAll("#totals [data-total]")) {
      const s = b.dataset.total;
      const n = totals[s] || 0;
      setText($("b", b), num.format(n));
      b.dataset.zero = n ? "false" : "true";
      b.setAttribute("aria-pressed", String(view.states.has(s)));
      // Forced and disabled circuits are rare: their chips appear only when needed.
      b.parentElement.hidden = !n && !view.states.has(s) && (s === "forced_open" || s === "disabled");
    }
    const worst = SEVERITY.find((s) => totals[s] > 0) || "closed";
    const bad = totals.open + totals.forced_open;
    document.title = bad ? `(${bad} open) breakerbox` : totals.half_open ? `(${totals.half_open} half-open) breakerbox` : "breakerbox";
    setFavicon(worst);
  }

  let faviconState = "";
  function setFavicon(state) {
    if (state === faviconState) return;
    faviconState = state;
    const svgText = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="${FAVICON_COLOR[state]}"/></svg>`;
    $("#favicon").href = "data:image/svg+xml," + encodeURIComponent(svgText);
  }

  function renderConnection() {
    const conn = $("#conn");
    let state = model.stream;
    let label = { live: "Live", reconnecting: "Reconnecting…", connecting: "Connecting…" }[state];
    if (model.apiDown) {
      state = "offline";
      label = "Admin API unreachable";
    }
    if (conn.dataset.connection !== state) conn.dataset.connection = state;
    setText($(".conn-label", conn), label);
    setText($("#updated"), model.lastOK ? `updated ${agoText(model.lastOK)}` : "");
    document.body.classList.toggle("stale", model.apiDown);
  }

  function timelineItem(t) {
    return el(
      "li",
      { class: "tl", "data-transition": "", "data-circuit": t.circuit, "data-from": t.from, "data-to": t.to, "data-state": t.to },
      el("span", { class: "tl-dot", "aria-hidden": "true" }),
      el(
        "div",
        { class: "tl-body" },
        el(
          "div",
          { class: "tl-head" },
          el("button", { type: "button", class: "tl-circuit link", "data-goto": t.circuit, title: "Show this circuit", text: t.circuit }),
          el(
            "span",
            { class: "tl-when muted" },
            el("time", { datetime: t.at, title: new Date(t.at).toString(), text: stamp(t.at) }),
            el("span", { class: "ago", "data-ago": t.at, text: agoText(Date.parse(t.at) - model.skewMs) }),
          ),
        ),
        el(
          "div",
          { class: "tl-change" },
          el("span", { class: "pill sm", "data-state": t.from, text: STATE_LABEL[t.from] || t.from }),
          el("span", { class: "arrow", "aria-label": "to", text: "→" }),
          el("span", { class: "pill sm", "data-state": t.to, text: STATE_LABEL[t.to] || t.to }),
          el("code", { class: "reason", title: "reason", text: t.reason }),
        ),
        t.message ? el("p", { class: "tl-msg", text: t.message + (t.replica ? ` · ${t.replica}` : "") }) : null,
        t.evidence && t.evidence.length
          ? el("p", { class: "tl-ev muted", text: "after " + t.evidence.slice(-EVIDENCE_SHOWN).map((e) => `${e.status || e.error} ${ms(e.latency_ms)}`).join(", ") })
          : null,
      ),
    );
  }

  // ---- time formatting ---------------------------------------------------

  function mmss(s) {
    if (s >= 3600) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  function stamp(iso) {
    const d = new Date(iso);
    const today = new Date().toDateString() === d.toDateString();
    return today ? clock.format(d) : `${day.format(d)} ${clock.format(d)}`;
  }

  // agoText is "20s ago" for a time in our clock's milliseconds. Server
  // times are shifted into ours first (minus model.skewMs). Under a minute
  // it moves in steps of 10 s: a timeline of 100 recent items would
  // otherwise change 100 texts (and lay the page out) every second.
  function agoText(ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 10) return "just now";
    if (s < 60) return `${Math.floor(s / 10) * 10}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }

  // ---- manual control ----------------------------------------------------

  const TOKEN_KEY = "breakerbox.adminToken";
  let pending = null; // {circuit, action}

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch {
      return "";
    }
  }

  function storeToken(t) {
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // storage disabled: the token is asked for each time
    }
  }

  function openControl(circuit, action) {
    const a = ACTIONS[action];
    pending = { circuit, action };
    setText($("#control-title"), `${a.label} ${circuit}?`);
    setText($("#control-text"), a.text(circuit));
    setText($("#control-go"), a.label);
    $("#control-go").dataset.action = action;
    $("#control-error").hidden = true;
    const known = !!storedToken();
    $("#token-field").hidden = known;
    $("#token-known").hidden = !known;
    $("#token").value = "";
    const dlg = $("#control");
    dlg.showModal();
    (known ? $("#control-go") : $("#token")).focus();
  }

  async function sendControl() {
    const { circuit, action } = pending;
    const token = storedToken() || $("#token").value.trim();
    const err = $("#control-error");
    const go = $("#control-go");
    go.disabled = true;
    err.hidden = true;
    try {
      const res = await fetch(`api/circuits/${circuit.split("/").map(encodeURIComponent).join("/")}/${action}`, {
        method: "POST",
        headers: token ? { Authorization: `Bearer ${token}` } : {},
      });
      let body = {};
      try {
        body = await res.json();
      } catch {
        // not JSON: the status line is all we have
      }
      if (!res.ok) {
        if (res.status === 401) {
          storeToken("");
          $("#token-field").hidden = false;
          $("#token-known").hidden = true;
        }
        err.textContent = `${res.status} ${res.statusText}: ${body.error || "request failed"}`;
        err.hidden = false;
        return;
      }
      if (token) storeToken(token);
      $("#control").close();
      toast(`${circuit} ${ACTIONS[action].done}`, "ok");
      if (body.name) mergeDetails([body]);
    } catch (e) {
      err.textContent = `Could not reach the admin API: ${e.message}`;
      err.hidden = false;
    } finally {
      go.disabled = false;
    }
  }

  function toast(text, kind) {
    const t = el("div", { class: "toast", "data-kind": kind, role: kind === "error" ? "alert" : "status", text });
    $("#toasts").append(t);
    setTimeout(() => t.remove(), 5000);
  }

  // goTo shows a circuit's card: the server finds its page; with the
  // filters cleared if they hide it.
  function goTo(name) {
    poll({ focus: name });
  }

  // nextProblem goes to the next circuit not closed after the focused one,
  // in the page's order, round to the first (the server finds it).
  function nextProblem() {
    const current = document.activeElement && document.activeElement.closest && document.activeElement.closest(".card");
    poll({ problemAfter: current ? current.dataset.circuit : "" });
  }

  // landOn ends goTo and nextProblem once the page is read: found is the
  // circuit the server put on it, "" if none matched.
  function landOn(go, found) {
    if (!found) {
      if (go.focus && (view.query || view.states.size || view.problems)) {
        clearFilters();
        poll({ focus: go.focus, retried: true });
      } else if ("problemAfter" in go) {
        toast(view.query || view.states.size ? "No circuit matching the filters is open, half-open, forced or disabled" : "No circuit is open, half-open, forced or disabled", "ok");
      }
      return;
    }
    render();
    const card = cards.get(found);
    if (!card) return;
    card.scrollIntoView({ block: "nearest", behavior: matchMedia("(prefers-reduced-motion: reduce)").matches ? "auto" : "smooth" });
    card.focus({ preventScroll: true });
    flash(card);
  }

  function clearFilters() {
    view.query = "";
    $("#search").value = "";
    view.states.clear();
    view.problems = false;
    $("#problems").checked = false;
    lastTotals = "";
  }

  // viewChanged reads the first page of the new view at once (and shows
  // the pressed chip before it arrives).
  function viewChanged() {
    view.page = 0;
    poll();
    invalidate();
  }

  // pageSize fits the cards to the viewport: a page is about two screens.
  function fitPage() {
    const w = $("#cards").clientWidth || window.innerWidth;
    const cols = Math.max(1, Math.floor((w + 10) / 232));
    const rows = Math.max(4, Math.ceil((2 * window.innerHeight) / 250));
    view.pageSize = Math.min(96, cols * rows);
  }

  // ---- start -------------------------------------------------------------

  function start() {
    mark("start");
    fitPage();
    // The first screen's requests go out first; the listeners can wait.
    mark("poll");
    poll();
    loadTransitions();
    setText($("#where"), `· ${location.host}`);
    $("#cards").addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-action]");
      if (b) openControl(b.closest("[data-circuit]").dataset.circuit, b.dataset.action);
    });
    $("#timeline").addEventListener("click", (ev) => {
      const b = ev.target.closest("[data-goto]");
      if (b) goTo(b.dataset.goto);
    });
    $("#totals").addEventListener("click", (ev) => {
      const b = ev.target.closest("[data-total]");
      if (!b) return;
      const s = b.dataset.total;
      if (view.states.has(s)) view.states.delete(s);
      else view.states.add(s);
      lastTotals = "";
      viewChanged();
    });
    let searchTimer = 0;
    $("#search").addEventListener("input", (ev) => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => {
        view.query = ev.target.value.trim();
        viewChanged();
      }, 120);
    });
    $("#sort").addEventListener("change", (ev) => {
      view.sort = ev.target.value;
      viewChanged();
    });
    $("#problems").addEventListener("change", (ev) => {
      view.problems = ev.target.checked;
      viewChanged();
    });
    $("#next-problem").addEventListener("click", nextProblem);
    $("#prev-page").addEventListener("click", () => {
      view.page = Math.max(0, view.page - 1);
      poll();
    });
    $("#next-page").addEventListener("click", () => {
      view.page++;
      poll();
    });
    document.addEventListener("keydown", (ev) => {
      if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.target.closest("input, select, textarea, dialog")) {
        if (ev.key === "Escape" && ev.target.id === "search") ev.target.blur();
        return;
      }
      if (ev.key === "n" || ev.key === "j") {
        ev.preventDefault();
        nextProblem();
      } else if (ev.key === "/") {
        ev.preventDefault();
        $("#search").focus();
      }
    });
    window.addEventListener("resize", () => {
      const before = view.pageSize;
      fitPage();
      if (view.pageSize !== before) poll();
    });
    $("#control-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sendControl();
    });
    $("#control-cancel").addEventListener("click", () => $("#control").close());
    $("#token-forget").addEventListener("click", () => {
      storeToken("");
      $("#token-field").hidden = false;
      $("#token-known").hidden = true;
      $("#token").focus();
    });

    connectStream();
    setInterval(tick, 1000);
  }

  start();
})();
