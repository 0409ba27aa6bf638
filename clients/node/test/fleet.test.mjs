// The state a Node service sees is the fleet's when the sidecars share their
// circuits through Redis: failures through one replica's sidecar open the
// circuit, and a service attached to another replica's sidecar fails fast.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CircuitBreakerOpenError, CircuitBreakerRegistry, connect } from '../dist/esm/index.js';
import { fetchDirect, haveRedis, startRedis, startSidecar, stopAll, upstream, waitFor } from '../testing/helpers.mjs';

const skip = haveRedis() ? false : 'redis-server not installed (apt-get install redis-server)';
let a, b, eu, sc;

before(async () => {
  if (skip) return;
  eu = await upstream();
  const redis = await startRedis();
  const config = `state: ${redis.url}
services:
  - name: genesys
    failure_threshold: 3
    open_timeout: 1h
    per_region:
      eu-west-1: ${eu.url}
`;
  [a, b] = await Promise.all([startSidecar(config), startSidecar(config)]);
  sc = await connect({ admin: b.admin, proxy: b.proxy }); // this service's own sidecar is B
});

after(() => {
  sc?.close();
  stopAll();
});

test("a circuit opened through another replica's sidecar is OPEN here, and call fails fast", { skip }, async () => {
  const cb = new CircuitBreakerRegistry({ service: 'genesys', sidecar: sc }).get('eu-west-1');
  assert.equal(cb.getState(), 'CLOSED');
  eu.status = 500;
  for (let i = 0; i < 3; i++) await (await fetchDirect(`${a.proxy}/genesys/eu-west-1/x`)).arrayBuffer(); // through replica A
  await waitFor("B's client to see the fleet's circuit open", () => cb.getState() === 'OPEN');
  let ran = false;
  await assert.rejects(
    cb.call(async () => (ran = true)),
    (err) => err instanceof CircuitBreakerOpenError && err.circuit === 'genesys/eu-west-1',
  );
  assert.equal(ran, false);
});
