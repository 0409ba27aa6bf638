// Zero-code routing against the real sidecar: fetch and http(s) requests to
// the sidecar's upstreams go through it, others do not, and its open answer
// becomes a CircuitBreakerOpenError.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import { get as namedGet } from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { getGlobalDispatcher, request as undiciRequest } from 'undici';
import { promisify } from 'node:util';
import { CircuitBreakerOpenError, CircuitBreakerRegistry, install, uninstall } from '../dist/esm/index.js';
import { startSidecar, stopAll, upstream, waitFor } from '../testing/helpers.mjs';

let sidecar, billing, eu, us, other, tls, tlsConnections, sc;

before(async () => {
  [billing, eu, us, other] = await Promise.all([upstream(), upstream(), upstream(), upstream()]);
  // An "https" upstream that is a plain TCP server: it counts the sidecar's
  // connections and hangs up (the sidecar answers 502).
  tlsConnections = 0;
  tls = net.createServer((s) => (tlsConnections++, s.destroy()));
  await new Promise((r) => tls.listen(0, '127.0.0.1', r));
  sidecar = await startSidecar(`
defaults: {failure_threshold: 3, open_timeout: 1h, half_open_successes: 2, half_open_probes: 1, timeout: 10s}
services:
  - name: billing
    upstream: ${billing.url}
  - name: secure
    upstream: https://127.0.0.1:${tls.address().port}
  - name: genesys
    open_timeout: 200ms
    per_region:
      eu-west-1: ${eu.url}/api
      us-east-1: ${us.url}
`);
  sc = await install({ admin: sidecar.admin, proxy: sidecar.proxy });
});

after(() => {
  uninstall();
  tls.close();
  stopAll();
});

const last = (u) => u.requests.at(-1);

test('fetch to an upstream goes through its circuit on the sidecar; the path and query are kept', async () => {
  const res = await fetch(`${billing.url}/v1/invoices?id=7`, { method: 'POST', body: 'hello' });
  assert.equal(res.status, 200);
  assert.equal(last(billing).url, '/v1/invoices?id=7');
  assert.equal(last(billing).body, 'hello');
  assert.equal(last(billing).headers['x-forwarded-prefix'], '/billing');
});

test('fetch with a Request object is routed, method and body kept', async () => {
  const res = await fetch(new Request(`${billing.url}/r`, { method: 'PUT', body: 'req-body', headers: { 'x-a': '1' } }));
  assert.equal(res.status, 200);
  assert.deepEqual([last(billing).method, last(billing).url, last(billing).body, last(billing).headers['x-a']], ['PUT', '/r', 'req-body', '1']);
  assert.equal(last(billing).headers['x-forwarded-prefix'], '/billing');
});

test('hosts that are no upstream are untouched', async () => {
  await (await fetch(`${other.url}/direct`)).text();
  assert.equal(last(other).url, '/direct');
  assert.equal(last(other).headers['x-forwarded-prefix'], undefined);
});

test("an upstream's base path selects the circuit; other paths on that host go direct", async () => {
  await (await fetch(`${eu.url}/api/v2/conversations/messages/inbound`)).text();
  assert.equal(last(eu).url, '/api/v2/conversations/messages/inbound');
  assert.equal(last(eu).headers['x-forwarded-prefix'], '/genesys/eu-west-1');
  await (await fetch(`${eu.url}/apix`)).text();
  assert.equal(last(eu).url, '/apix');
  assert.equal(last(eu).headers['x-forwarded-prefix'], undefined);
});

test("undici's request() (npm undici, through the global dispatcher) is routed; the open 503 becomes the error", async () => {
  const { statusCode, body } = await undiciRequest(`${billing.url}/undici?q=1`, { method: 'POST', body: 'u' });
  await body.text();
  assert.equal(statusCode, 200);
  assert.deepEqual([last(billing).method, last(billing).url, last(billing).body, last(billing).headers['x-forwarded-prefix']], ['POST', '/undici?q=1', 'u', '/billing']);
  const { body: b2 } = await undiciRequest(`${other.url}/undici-direct`);
  await b2.text();
  assert.equal(last(other).headers['x-forwarded-prefix'], undefined);

  await sidecar.control('billing', 'open');
  const hits = billing.requests.length;
  const err = await undiciRequest(`${billing.url}/undici-open`).then(
    () => assert.fail('request resolved'),
    (e) => e,
  );
  assert.ok(err instanceof CircuitBreakerOpenError, String(err));
  assert.deepEqual([err.circuit, err.state], ['billing', 'OPEN']);
  // undici's newer handler API (onRequestStart, onResponseStart, ...), as interceptors use it.
  const newStyle = await new Promise((resolve) => {
    getGlobalDispatcher().dispatch(
      { origin: billing.url, path: '/undici-new', method: 'GET' },
      {
        onRequestStart() {},
        onResponseStart(_c, status) {
          resolve(`response ${status}`);
        },
        onResponseData() {},
        onResponseEnd() {},
        onResponseError(_c, e) {
          resolve(e);
        },
      },
    );
  });
  assert.ok(newStyle instanceof CircuitBreakerOpenError, String(newStyle));
  assert.equal(billing.requests.length, hits);
  await sidecar.control('billing', 'reset');
  await waitFor('the client to see billing closed', () => sc.state('billing') === 'CLOSED');
});

function collect(req) {
  return new Promise((resolve, reject) => {
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
  });
}

test('http.request, http.get and the named ESM import are routed', async () => {
  const req = http.request({ host: '127.0.0.1', port: new URL(billing.url).port, path: '/opts?x=1', method: 'DELETE' });
  req.end();
  assert.equal((await collect(req)).status, 200);
  assert.deepEqual([last(billing).method, last(billing).url, last(billing).headers['x-forwarded-prefix']], ['DELETE', '/opts?x=1', '/billing']);

  assert.equal((await collect(http.get(`${billing.url}/get`))).status, 200);
  assert.deepEqual([last(billing).url, last(billing).headers['x-forwarded-prefix']], ['/get', '/billing']);

  const cb = await new Promise((resolve) => namedGet(new URL(`${billing.url}/named`), { headers: { 'x-b': '2' } }, (res) => (res.resume(), resolve(res.statusCode))));
  assert.equal(cb, 200);
  assert.deepEqual([last(billing).url, last(billing).headers['x-b'], last(billing).headers['x-forwarded-prefix']], ['/named', '2', '/billing']);
});

test('https.get to an https upstream goes to the sidecar in plain HTTP, and the sidecar makes the TLS call', async () => {
  const before = tlsConnections;
  // Direct, this would fail the TLS handshake; through the sidecar, the
  // sidecar's own connection fails and it answers 502.
  const res = await collect(https.get(`https://127.0.0.1:${tls.address().port}/x`));
  assert.equal(res.status, 502);
  assert.ok(tlsConnections > before, 'the sidecar connected to the upstream');
  await sidecar.control('secure', 'reset');
});

test('while a circuit is open, routed calls fail fast with CircuitBreakerOpenError and reach nobody', async () => {
  await sidecar.control('billing', 'open');
  await waitFor('the client to see billing open', () => sc.state('billing') === 'OPEN');
  const hits = billing.requests.length;
  const err = await fetch(`${billing.url}/v1/x`).then(
    () => assert.fail('fetch resolved'),
    (e) => e,
  );
  assert.ok(err instanceof CircuitBreakerOpenError, String(err));
  assert.equal(err.circuit, 'billing');
  assert.equal(err.state, 'OPEN');
  assert.ok(err.retryAfterMs > 0);
  const httpErr = await collect(http.get(`${billing.url}/v1/y`)).then(
    () => assert.fail('http.get answered'),
    (e) => e,
  );
  assert.ok(httpErr instanceof CircuitBreakerOpenError, String(httpErr));
  assert.equal(billing.requests.length, hits, 'no request reached the upstream');
  await sidecar.control('billing', 'reset');
  await waitFor('the client to see billing closed', () => sc.state('billing') === 'CLOSED');
  assert.equal((await fetch(`${billing.url}/v1/z`)).status, 200);
});

test("the sidecar's 503 becomes CircuitBreakerOpenError (half-open, the probe slot taken), for fetch and http", async () => {
  const cb = new CircuitBreakerRegistry('genesys').get('us-east-1');
  us.status = 500;
  for (let i = 0; i < 3; i++) assert.equal((await fetch(`${us.url}/fail`)).status, 500);
  await waitFor('us-east-1 to half-open', () => cb.getState() === 'HALF_OPEN');
  us.status = 200;
  us.hold();
  const probe = fetch(`${us.url}/probe`);
  await waitFor('the probe to reach the upstream', () => us.held.length === 1);
  const err = await fetch(`${us.url}/second`).then(
    () => assert.fail('fetch resolved'),
    (e) => e,
  );
  assert.ok(err instanceof CircuitBreakerOpenError, String(err));
  assert.deepEqual([err.circuit, err.state], ['genesys/us-east-1', 'HALF_OPEN']);
  assert.ok(err.retryAfterMs >= 1000);
  const httpErr = await collect(http.get(`${us.url}/third`)).then(
    () => assert.fail('http.get answered'),
    (e) => e,
  );
  assert.ok(httpErr instanceof CircuitBreakerOpenError, String(httpErr));
  assert.equal(httpErr.state, 'HALF_OPEN');
  us.release();
  assert.equal((await probe).status, 200);
  assert.equal(us.requests.filter((r) => r.url !== '/fail').length, 1, 'only the probe reached the upstream');
});

test('node --import @breakerbox/node/register routes an unchanged app', async () => {
  const register = fileURLToPath(new URL('../dist/esm/register.js', import.meta.url));
  const app = `const r = await fetch(${JSON.stringify(billing.url + '/from-app')}); console.log(r.status);`;
  const env = { ...process.env, BREAKERBOX_ADMIN: sidecar.admin, BREAKERBOX_PROXY: sidecar.proxy };
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', register, '--input-type=module', '-e', app], { env });
  assert.equal(stdout.trim(), '200');
  assert.deepEqual([last(billing).url, last(billing).headers['x-forwarded-prefix']], ['/from-app', '/billing']);
});

test('register without a sidecar exits 1, naming BREAKERBOX_ADMIN', async () => {
  const register = fileURLToPath(new URL('../dist/esm/register.js', import.meta.url));
  const env = { ...process.env, BREAKERBOX_ADMIN: 'http://127.0.0.1:1', BREAKERBOX_CONNECT_TIMEOUT_MS: '100' };
  const err = await promisify(execFile)(process.execPath, ['--import', register, '-e', '0'], { env }).then(
    () => assert.fail('started'),
    (e) => e,
  );
  assert.equal(err.code, 1);
  assert.match(err.stderr, /BREAKERBOX_ADMIN/);
});

test('the CommonJS build exports the same API', () => {
  const cjs = createRequire(import.meta.url)('../dist/cjs/index.js');
  for (const name of ['install', 'connect', 'uninstall', 'CircuitBreakerRegistry', 'CircuitBreaker', 'CircuitBreakerOpenError', 'waitUntilAllowed', 'Sidecar']) {
    assert.equal(typeof cjs[name], 'function', name);
  }
  assert.throws(() => new cjs.Sidecar({ admin: 'ftp://x' }), /admin "ftp:\/\/x" must be http:\/\//);
  const amqp = createRequire(import.meta.url)('../dist/cjs/amqp.js');
  assert.equal(typeof amqp.consumeWithBreaker, 'function');
});
