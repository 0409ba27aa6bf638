// The seeds' API (T10's registry.get(region), call, getState; ADR-002's
// execute) backed by the real sidecar's circuits, kept current from its
// event stream.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CircuitBreakerOpenError, CircuitBreakerRegistry, install, uninstall, waitUntilAllowed } from '../dist/esm/index.js';
import { startSidecar, stopAll, upstream, waitFor } from '../testing/helpers.mjs';

let sidecar, eu, cloudflare, sc;

before(async () => {
  [eu, cloudflare] = await Promise.all([upstream(), upstream()]);
  sidecar = await startSidecar(`
defaults: {failure_threshold: 5, open_timeout: 1h, half_open_successes: 2, half_open_probes: 1, timeout: 10s}
services:
  - name: cloudflare
    upstream: ${cloudflare.url}
  - name: genesys            # T10's region profile, with a short open timeout
    failure_threshold: 10
    open_timeout: 300ms
    half_open_successes: 3
    per_region:
      eu-west-1: ${eu.url}
`);
  sc = await install({ admin: sidecar.admin, proxy: sidecar.proxy });
});

after(() => {
  uninstall();
  stopAll();
});

// T10's sendInboundMessageWithRetry, minus the retries: a 5xx is an error.
async function sendInbound(base, id) {
  const res = await fetch(`${base}/api/v2/conversations/messages/inbound`, { method: 'POST', body: JSON.stringify({ id }) });
  if (res.status >= 500) throw new Error(`genesys answered ${res.status}`);
  return res.status;
}

test("T10: ten 5xx open the region's circuit; call fails fast without running fn; HALF_OPEN, three successes close it", async () => {
  const registry = new CircuitBreakerRegistry({ service: 'genesys' });
  const cb = registry.get('eu-west-1');
  assert.equal(registry.get('eu-west-1'), cb, 'one breaker per region');
  assert.equal(cb.getState(), 'CLOSED');
  const seen = [];
  const off = sc.onTransition((t) => t.circuit === 'genesys/eu-west-1' && seen.push(`${t.from}->${t.to}`));

  eu.status = 503;
  for (let i = 0; i < 10; i++) await assert.rejects(cb.call(() => sendInbound(eu.url, i)), /genesys answered 503/);
  await waitFor('the client to see genesys/eu-west-1 OPEN', () => seen.includes('CLOSED->OPEN'));

  // While OPEN: no call runs, nothing reaches Genesys. (The open timeout
  // may have passed already on a busy machine: then the state is HALF_OPEN
  // and the check below is skipped, not failed.)
  const hits = eu.requests.length;
  let ran = false;
  const err = await cb.execute(async () => (ran = true)).then(
    () => undefined,
    (e) => e,
  );
  if (err !== undefined) {
    assert.ok(err instanceof CircuitBreakerOpenError);
    assert.deepEqual([err.circuit, err.state, ran], ['genesys/eu-west-1', 'OPEN', false]);
    assert.equal(eu.requests.length, hits);
  } else {
    assert.ok(seen.includes('OPEN->HALF_OPEN'), 'a call ran while the circuit was open');
  }

  await waitUntilAllowed(cb); // HALF_OPEN, after the sidecar's open timeout
  await waitFor('HALF_OPEN', () => cb.getState() === 'HALF_OPEN');
  eu.status = 202;
  for (let i = 0; i < 3; i++) assert.equal(await cb.call(() => sendInbound(eu.url, 100 + i)), 202);
  await waitFor('CLOSED', () => cb.getState() === 'CLOSED');
  off();
  assert.deepEqual(seen, ['CLOSED->OPEN', 'OPEN->HALF_OPEN', 'HALF_OPEN->CLOSED']);
});

test('one failure in HALF_OPEN reopens the circuit', async () => {
  const cb = new CircuitBreakerRegistry('genesys').get('eu-west-1');
  eu.status = 500;
  for (let i = 0; i < 10; i++) await assert.rejects(cb.call(() => sendInbound(eu.url, i)));
  await waitFor('HALF_OPEN', () => cb.getState() === 'HALF_OPEN');
  const seen = [];
  const off = sc.onTransition((t) => t.circuit === cb.name && seen.push(`${t.from}->${t.to}`));
  await assert.rejects(cb.call(() => sendInbound(eu.url, 'probe')));
  await waitFor('the failed probe to reopen it', () => seen[0] === 'HALF_OPEN->OPEN');
  off();
  eu.status = 200;
  await sidecar.control(cb.name, 'reset');
  await waitFor('CLOSED', () => cb.getState() === 'CLOSED');
});

test('an unknown region is an error naming the circuits the sidecar has', () => {
  assert.throws(() => new CircuitBreakerRegistry('genesys').get('mars-1'), /no circuit "genesys\/mars-1" \(it has: cloudflare, genesys\/eu-west-1\).*per_region/);
});

test('ADR-002: execute() on a service circuit; a forced-open circuit is OPEN, a reset one CLOSED', async () => {
  const cb = new CircuitBreakerRegistry().get('cloudflare');
  assert.equal(await cb.execute(async () => (await fetch(`${cloudflare.url}/zones`)).status), 200);
  await sidecar.control('cloudflare', 'open');
  await waitFor('OPEN', () => cb.getState() === 'OPEN');
  await assert.rejects(cb.execute(async () => 1), CircuitBreakerOpenError);
  await sidecar.control('cloudflare', 'reset');
  await waitFor('CLOSED', () => cb.getState() === 'CLOSED');
  assert.equal(await cb.execute(async () => 1), 1);
});

test('waitUntilAllowed: resolves when the circuit closes, rejects with the reason when aborted', async () => {
  await sidecar.control('cloudflare', 'open');
  await waitFor('OPEN', () => sc.state('cloudflare') === 'OPEN');
  const ac = new AbortController();
  const aborted = waitUntilAllowed('cloudflare', { signal: ac.signal });
  const waiting = waitUntilAllowed('cloudflare');
  ac.abort(new Error('shutting down'));
  await assert.rejects(aborted, /shutting down/);
  await sidecar.control('cloudflare', 'close'); // forced closed (disabled): calls pass
  await waiting;
  assert.equal(sc.state('cloudflare'), 'CLOSED');
  await sidecar.control('cloudflare', 'reset');
});

test('a bad address in the environment is an error naming the variable', async () => {
  const { Sidecar } = await import('../dist/esm/index.js');
  process.env.BREAKERBOX_PROXY = 'not a url';
  try {
    assert.throws(() => new Sidecar(), /BREAKERBOX_PROXY "not a url" is not a URL/);
  } finally {
    delete process.env.BREAKERBOX_PROXY;
  }
});

test('the sidecar restarts: nothing fails fast while the stream is down, and the client resyncs after', async () => {
  const { Sidecar } = await import('../dist/esm/index.js');
  const config = `services:\n  - name: cloudflare\n    upstream: ${cloudflare.url}\n`;
  const first = await startSidecar(config);
  const client = new Sidecar({ admin: first.admin, proxy: first.proxy });
  await client.start();
  try {
    const cb = new CircuitBreakerRegistry({ sidecar: client }).get('cloudflare');
    await first.control('cloudflare', 'open');
    await waitFor('OPEN', () => cb.getState() === 'OPEN');
    const seen = [];
    client.onTransition((t) => seen.push(`${t.from}->${t.to} ${t.reason}`));

    first.kill();
    await waitFor('the client to notice the stream is gone', () => !client.live);
    assert.equal(await cb.call(async () => 'ran'), 'ran', 'while the stream is down the sidecar decides, not a stale mirror');

    // Same ports: a restarted sidecar, every circuit CLOSED again.
    await startSidecar(config, { listen: new URL(first.proxy).host, admin: new URL(first.admin).host });
    await waitFor('the client to reconnect', () => client.live);
    assert.equal(cb.getState(), 'CLOSED');
    assert.deepEqual(seen, ['OPEN->CLOSED resync']);
  } finally {
    client.close();
  }
});
