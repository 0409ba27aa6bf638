// breakerbox dashboard: renders GET api/circuits and api/transitions, and
// stays live with the api/events stream (each transition triggers an
// immediate re-fetch) plus a 2 s poll for the counters. No build step, no
// dependencies: this file is embedded in the binary as is.
"use strict";

(() => {
  const POLL_MS = 2000;
  const FETCH_TIMEOUT_MS = 4000;
  const TIMELINE_MAX = 200;
  const MAX_SEGMENTS = 20; // a larger threshold is drawn as a plain bar

  const STATE_LABEL = {
    closed: "Closed",
    half_open: "Half-open",
    open: "Open",
    forced_open: "Forced open",
    disabled: "Disabled",
  };
  // Worst first: the favicon and the page title follow the worst state.
  const SEVERITY = ["forced_open", "open", "half_open", "disabled", "closed"];
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
  const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  const day = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

  const model = {
    circuits: [],           // last api/circuits answer
    probeAt: new Map(),     // circuit name → performance.now() deadline of the next probe
    transitions: [],        // newest first
    seen: new Set(),        // transition keys already in the timeline
    fresh: new Set(),       // transition keys to highlight once
    skewMs: 0,              // server clock minus ours, when it matters
    lastOK: 0,              // Date.now() of the last good api/circuits answer
    apiDown: false,
    stream: "connecting",   // live | reconnecting | connecting
  };
  const cards = new Map(); // circuit name → card element

  // ---- fetching ----------------------------------------------------------

  async function getJSON(path) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    try {
      const res = await fetch(path, { signal: ctl.signal, cache: "no-store", headers: { Accept: "application/json" } });
      if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
      const date = Date.parse(res.headers.get("Date") || "");
      if (!Number.isNaN(date)) {
        const skew = date - Date.now();
        // Date has 1 s resolution: only correct a skew that is clearly real.
        model.skewMs = Math.abs(skew) > 2000 ? skew : 0;
      }
      return await res.json();
    } finally {
      clearTimeout(timer);
    }
  }

  let inFlight = null;
  let again = false;
  let pollTimer = 0;

  // refresh re-reads the circuits; calls while one is in flight coalesce
  // into one more read after it, so a burst of events costs two requests.
  function refresh() {
    if (inFlight) {
      again = true;
      return inFlight;
    }
    clearTimeout(pollTimer);
    inFlight = getJSON("api/circuits")
      .then((list) => {
        model.apiDown = false;
        model.lastOK = Date.now();
        setCircuits(list || []);
      })
      .catch(() => {
        model.apiDown = true;
      })
      .finally(() => {
        inFlight = null;
        renderConnection();
        if (again) {
          again = false;
          refresh();
        } else {
          pollTimer = setTimeout(refresh, POLL_MS);
        }
      });
    return inFlight;
  }

  async function loadTransitions() {
    try {
      const list = await getJSON("api/transitions");
      addTransitions((list || []).slice().reverse(), false);
    } catch {
      // the poll reports the API as unreachable; the timeline keeps what it has
    }
  }

  function connectStream() {
    if (!("EventSource" in window)) {
      model.stream = "reconnecting";
      renderConnection();
      return;
    }
    const es = new EventSource("api/events");
    es.addEventListener("open", () => {
      const wasDown = model.stream !== "live";
      model.stream = "live";
      renderConnection();
      // Transitions may have happened while the stream was down.
      if (wasDown) {
        loadTransitions();
        refresh();
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
      addTransitions([t], true);
      refresh();
    });
  }

  // ---- model updates -----------------------------------------------------

  function setCircuits(list) {
    const now = performance.now();
    for (const c of list) {
      if (c.state !== "open") {
        model.probeAt.delete(c.name);
        continue;
      }
      const at = now + c.retry_after_seconds * 1000;
      const prev = model.probeAt.get(c.name);
      // Keep the running countdown unless the server disagrees by more than
      // its rounding, so the seconds do not jitter on every poll.
      if (prev === undefined || Math.abs(prev - at) > 1000) model.probeAt.set(c.name, at);
    }
    model.circuits = list;
    renderCircuits();
    renderTotals();
    tick();
  }

  const transitionKey = (t) => `${t.circuit}|${t.at}|${t.from}|${t.to}`;

  // addTransitions takes transitions oldest first and puts the new ones on
  // top of the timeline.
  function addTransitions(list, highlight) {
    let added = false;
    for (const t of list) {
      const k = transitionKey(t);
      if (model.seen.has(k)) continue;
      model.seen.add(k);
      if (highlight) {
        model.fresh.add(k);
        setText($("#announce"), t.message || `${t.circuit}: ${STATE_LABEL[t.to] || t.to}`);
      }
      model.transitions.unshift(t);
      added = true;
    }
    if (!added) return;
    model.transitions.sort((a, b) => Date.parse(b.at) - Date.parse(a.at));
    while (model.transitions.length > TIMELINE_MAX) model.seen.delete(transitionKey(model.transitions.pop()));
    renderTimeline();
  }

  // ---- rendering ---------------------------------------------------------

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

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function host(url) {
    try {
      return new URL(url).host;
    } catch {
      return url;
    }
  }

  // groups puts single-upstream services together and gives each per-region
  // service its own group, so that the regions of one provider sit side by
  // side.
  function groups(list) {
    const single = { key: "", title: "Services", circuits: [] };
    const regional = new Map();
    for (const c of list) {
      if (!c.region) {
        single.circuits.push(c);
        continue;
      }
      if (!regional.has(c.service)) regional.set(c.service, { key: c.service, title: c.service, circuits: [] });
      regional.get(c.service).circuits.push(c);
    }
    const out = [];
    if (single.circuits.length) out.push(single);
    for (const g of [...regional.values()].sort((a, b) => a.key.localeCompare(b.key))) out.push(g);
    return out;
  }

  let layoutKey = "";

  function renderCircuits() {
    const root = $("#groups");
    const gs = groups(model.circuits);
    const key = gs.map((g) => g.key + ":" + g.circuits.map((c) => c.name).join(",")).join(";");
    if (key !== layoutKey) {
      // The set of circuits changed (first load or a config reload): rebuild.
      layoutKey = key;
      cards.clear();
      root.replaceChildren();
      if (!gs.length) root.append(el("p", { class: "placeholder", text: "No circuits configured." }));
      for (const g of gs) {
        const grid = el("div", { class: "grid" });
        const summary = el("span", { class: "group-summary" });
        const section = el(
          "section",
          { class: "group", "data-group": g.key || "services", "aria-label": g.key ? `${g.title} regions` : g.title },
          el("div", { class: "group-h" }, el("h3", { text: g.title }), el("span", { class: "group-meta muted" }), summary),
          grid,
        );
        for (const c of g.circuits) {
          const card = newCard(c, !!g.key);
          cards.set(c.name, card);
          grid.append(card);
        }
        root.append(section);
      }
      root.setAttribute("aria-busy", "false");
    }
    for (const c of model.circuits) updateCard(cards.get(c.name), c);
    for (const section of root.querySelectorAll(".group")) updateGroup(section, gs.find((g) => (g.key || "services") === section.dataset.group));
  }

  function updateGroup(section, g) {
    if (!g) return;
    const meta = $(".group-meta", section);
    if (g.key) {
      const s = g.circuits[0].settings;
      setText(meta, `${g.circuits.length} regions · opens after ${s.failure_threshold} failures · ${dur(s.open_timeout_seconds)} open`);
    } else {
      setText(meta, `${g.circuits.length} upstreams`);
    }
    const bad = g.circuits.filter((c) => c.state !== "closed").length;
    const summary = $(".group-summary", section);
    setText(summary, bad ? `${bad} not closed` : "all closed");
    summary.dataset.ok = bad ? "false" : "true";
  }

  function newCard(c, regional) {
    const title = regional ? c.region : c.name;
    const card = el(
      "article",
      { class: "card", "data-circuit": c.name, "data-state": c.state, tabindex: "-1" },
      el(
        "header",
        { class: "card-h" },
        el("h4", { class: "name", title: c.name, text: title }),
        el(
          "div",
          { class: "card-sub" },
          el("span", { class: "upstream muted", title: c.upstream, text: (c.kind && c.kind !== "http" ? c.kind.toUpperCase() + " " : "") + host(c.upstream) }),
          el("span", { class: "pill", "data-role": "state" }),
        ),
      ),
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
    return card;
  }

  function count(key, label) {
    return el("div", { "data-count": key }, el("dt", { text: label }), el("dd", { text: "0" }));
  }

  function updateCard(card, c) {
    if (!card) return;
    if (card.dataset.state !== c.state) {
      card.dataset.state = c.state;
      card.classList.remove("flash");
      void card.offsetWidth; // restart the animation
      card.classList.add("flash");
    }
    card.setAttribute("aria-label", `${c.name}: ${STATE_LABEL[c.state] || c.state}`);
    setText($("[data-role=state]", card), STATE_LABEL[c.state] || c.state);

    const counts = { success: c.counts.success, failure: c.counts.failure, ignored: c.counts.ignored, rejected: c.rejected + c.rejected_half_open };
    for (const [k, v] of Object.entries(counts)) {
      const dd = $(`[data-count=${k}] dd`, card);
      setText(dd, num.format(v || 0));
      dd.parentElement.dataset.zero = v ? "false" : "true";
    }

    updateMeter($("[data-role=meter]", card), c);

    card.dataset.openFor = String(c.settings.open_timeout_seconds);

    for (const b of card.querySelectorAll("[data-action]")) {
      b.disabled = (b.dataset.action === "open" && c.state === "forced_open") || (b.dataset.action === "close" && c.state === "disabled");
    }
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
    meter.setAttribute("aria-valuemax", String(max));
    meter.setAttribute("aria-valuenow", String(n));
    meter.setAttribute("aria-label", kind === "probes" ? `${n} of ${max} successful probes needed to close` : `${c.consecutive_failures} of ${s.failure_threshold} consecutive failures`);
    const segs = $(".segs", meter);
    const segCount = max <= MAX_SEGMENTS ? max : 1;
    if (segs.childElementCount !== segCount) segs.replaceChildren(...Array.from({ length: segCount }, () => el("i")));
    segs.dataset.bar = segCount === 1 && max > 1 ? "true" : "false";
    if (segs.dataset.bar === "true") segs.firstChild.style.setProperty("--fill", `${(100 * n) / max}%`);
    else [...segs.children].forEach((seg, i) => seg.classList.toggle("on", i < n));
    setText($(".meter-label", meter), label);
  }

  // tick redraws everything that depends on the time: countdowns, "ago"
  // labels and the connection's freshness. It runs every second.
  function tick() {
    const now = performance.now();
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
          msg = "Half-opening now…";
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
    card.querySelector(".drain").hidden = pct === null;
    if (pct !== null) fill.style.width = `${pct}%`;
  }

  function renderTotals() {
    const totals = { closed: 0, half_open: 0, open: 0, forced_open: 0, disabled: 0 };
    for (const c of model.circuits) totals[c.state] = (totals[c.state] || 0) + 1;
    for (const li of document.querySelectorAll("#totals [data-total]")) {
      const n = totals[li.dataset.total] || 0;
      setText($("b", li), String(n));
      li.dataset.zero = n ? "false" : "true";
      // Forced and disabled circuits are rare: their chips appear only when needed.
      li.hidden = !n && (li.dataset.total === "forced_open" || li.dataset.total === "disabled");
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
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="${FAVICON_COLOR[state]}"/></svg>`;
    $("#favicon").href = "data:image/svg+xml," + encodeURIComponent(svg);
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

  function renderTimeline() {
    const ol = $("#timeline");
    const items = model.transitions.map((t) => {
      const k = transitionKey(t);
      const li = el(
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
          t.message ? el("p", { class: "tl-msg", text: t.message }) : null,
        ),
      );
      if (model.fresh.has(k)) li.classList.add("new");
      return li;
    });
    model.fresh.clear();
    ol.replaceChildren(...items);
    $("#timeline-empty").hidden = items.length > 0;
    setText($("#timeline-count"), items.length ? `${items.length} recent` : "");
  }

  // ---- time formatting ---------------------------------------------------

  function mmss(s) {
    if (s >= 3600) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  function dur(s) {
    if (s >= 60 && s % 60 === 0) return `${s / 60} min`;
    return `${s}s`;
  }

  function stamp(iso) {
    const d = new Date(iso);
    const today = new Date().toDateString() === d.toDateString();
    return today ? clock.format(d) : `${day.format(d)} ${clock.format(d)}`;
  }

  // agoText is "12s ago" for a time in our clock's milliseconds. Server
  // times are shifted into ours first (minus model.skewMs).
  function agoText(ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 2) return "just now";
    if (s < 60) return `${s}s ago`;
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
      refresh();
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

  function goTo(circuit) {
    const card = cards.get(circuit);
    if (!card) return;
    card.scrollIntoView({ block: "nearest", behavior: matchMedia("(prefers-reduced-motion: reduce)").matches ? "auto" : "smooth" });
    card.focus({ preventScroll: true });
    card.classList.remove("flash");
    void card.offsetWidth;
    card.classList.add("flash");
  }

  // ---- start -------------------------------------------------------------

  function start() {
    setText($("#where"), `· ${location.host}`);
    $("#groups").addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-action]");
      if (b) openControl(b.closest("[data-circuit]").dataset.circuit, b.dataset.action);
    });
    $("#timeline").addEventListener("click", (ev) => {
      const b = ev.target.closest("[data-goto]");
      if (b) goTo(b.dataset.goto);
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

    refresh();
    loadTransitions().then(() => {
      if (!model.transitions.length) $("#timeline-empty").hidden = false;
    });
    connectStream();
    setInterval(tick, 1000);
  }

  start();
})();
