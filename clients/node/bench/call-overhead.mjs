// What the client costs per call, against the real sidecar (built from this
// repository) and an upstream on loopback. Run: npm run bench (after npm run
// build). Sequential calls, mean per call; numbers vary with the machine:
// compare the rows of one run.
import http from 'node:http';
import { CircuitBreakerOpenError, CircuitBreakerRegistry, install, uninstall } from '../dist/esm/index.js';
import { Routes, routedFetch } from '../dist/esm/routing.js';
import { fetchDirect, startSidecar, stopAll, upstream, waitFor } from '../testing/helpers.mjs';

const N = Number(process.env.N ?? 3000);
const up = await upstream();
const sidecar = await startSidecar(`
services:
  - name: api
    upstream: ${up.url}
`);

async function measure(name, n, fn) {
  for (let i = 0; i < Math.min(200, n); i++) await fn(); // warm up: connections, JIT
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await fn();
  const ns = Number(process.hrtime.bigint() - start) / n;
  const text = ns >= 1000 ? `${(ns / 1000).toFixed(1)} µs` : `${ns.toFixed(0)} ns`;
  console.log(`${name.padEnd(62)} ${text.padStart(10)} /call`);
  return ns;
}

const get = (url) =>
  new Promise((resolve, reject) => {
    http.get(url, (res) => res.resume().on('end', resolve)).on('error', reject);
  });

console.log(`node ${process.version}, ${N} sequential calls each\n`);
const direct = await measure('fetch, direct to the upstream (no breaker)', N, async () => (await fetchDirect(`${up.url}/x`)).arrayBuffer());
const viaSidecar = await measure('fetch to the sidecar URL (the README snippet)', N, async () => (await fetchDirect(`${sidecar.proxy}/api/x`)).arrayBuffer());
const httpSidecar = await measure('http.get to the sidecar URL', N, () => get(`${sidecar.proxy}/api/x`));

const sc = await install({ admin: sidecar.admin, proxy: sidecar.proxy });
const routed = await measure('fetch to the upstream URL, routed by install()', N, async () => (await fetch(`${up.url}/x`)).arrayBuffer());
const httpRouted = await measure('http.get to the upstream URL, routed by install()', N, () => get(`${up.url}/x`));
// The work routing adds to a call, without the network: parse the URL, find
// its circuit, check its state, build the sidecar URL (the next fetch is a
// no-op that returns one prebuilt Response).
const answer = new Response(null);
const routeOnly = routedFetch(new Routes(sc), async () => answer);
const decision = await measure('routing decision alone (URL → circuit → sidecar URL), no I/O', N * 100, () => routeOnly(`${up.url}/x?y=1`));
const cb = new CircuitBreakerRegistry().get('api');
await measure('cb.call(fn), circuit CLOSED, fn = routed fetch', N, () => cb.call(async () => (await fetch(`${up.url}/x`)).arrayBuffer()));
const noop = async () => 1;
const callClosed = await measure('cb.call(fn), circuit CLOSED, fn = async no-op', N * 100, () => cb.call(noop));
const bare = await measure('fn alone, async no-op (baseline of the row above)', N * 100, noop);

await sidecar.control('api', 'open');
await waitFor('the client to see the circuit open', () => sc.state('api') === 'OPEN');
const fail = async (fn) => {
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof CircuitBreakerOpenError)) throw e;
  }
};
const callOpen = await measure('cb.call(fn), circuit OPEN: CircuitBreakerOpenError, no I/O', N * 100, () => fail(() => cb.call(noop)));
await measure('routed fetch, circuit OPEN: CircuitBreakerOpenError, no I/O', N * 10, () => fail(() => fetch(`${up.url}/x`)));
const open503 = await measure('fetch to the sidecar URL, circuit OPEN: its 503 round trip', N, async () => (await fetchDirect(`${sidecar.proxy}/api/x`)).arrayBuffer());
uninstall();

console.log(`
routing decision: ${(decision / 1000).toFixed(2)} µs per call (target < 50 µs); end to end (routed − sidecar URL, noisy): fetch ${((routed - viaSidecar) / 1000).toFixed(1)} µs, http.get ${((httpRouted - httpSidecar) / 1000).toFixed(1)} µs
sidecar hop (sidecar URL − direct): ${((viaSidecar - direct) / 1000).toFixed(1)} µs
call() overhead when CLOSED: ${(callClosed - bare).toFixed(0)} ns; fast fail when OPEN: ${(callOpen / 1000).toFixed(2)} µs (the sidecar's 503: ${(open503 / 1000).toFixed(1)} µs)`);
await up.close();
stopAll();
