// The amqplib gate against a real RabbitMQ node and the real sidecar: the
// consumer stops while the region's circuit is open (messages wait in the
// queue), probes one message at a time while it is half-open, and drains the
// queue once it closes; no message is lost.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import amqp from 'amqplib';
import { consumeWithBreaker } from '../dist/esm/amqp.js';
import { CircuitBreakerOpenError, install, uninstall } from '../dist/esm/index.js';
import { atExit, haveRabbitMQ, repoRoot, startRabbitMQ, startSidecar, stopAll, tempDir, upstream, waitFor } from '../testing/helpers.mjs';

const skip = haveRabbitMQ() ? false : 'rabbitmq-server not installed (apt-get install rabbitmq-server)';
let rabbit, sidecar, genesys, genesysUS, conn;

before(async () => {
  if (skip) return;
  [genesys, genesysUS] = await Promise.all([upstream(), upstream()]);
  [rabbit, sidecar] = await Promise.all([
    startRabbitMQ(),
    startSidecar(`
services:
  - name: genesys
    failure_threshold: 3
    open_timeout: 1s
    half_open_successes: 2
    half_open_probes: 1
    per_region:
      eu-west-1: ${genesys.url}
      us-east-1: ${genesysUS.url}
`),
  ]);
  await install({ admin: sidecar.admin, proxy: sidecar.proxy });
  conn = await amqp.connect(rabbit.url);
});

after(async () => {
  await conn?.close().catch(() => {});
  uninstall();
  stopAll();
});

test('T10 over RabbitMQ: paused while OPEN, one at a time while HALF_OPEN, every message delivered', { skip }, async () => {
  const queue = 'genesys-inbound';
  const admin = await conn.createChannel();
  await admin.assertQueue(queue, { durable: false });
  const ch = await conn.createChannel();

  // What the gate asks of the channel, in order.
  const log = [];
  const spy = {
    consume: (...a) => (log.push('consume'), ch.consume(...a)),
    cancel: (...a) => (log.push('cancel'), ch.cancel(...a)),
    prefetch: (n, ...a) => (log.push(`prefetch ${n}`), ch.prefetch(n, ...a)),
    ack: (m) => ch.ack(m),
    nack: (...a) => ch.nack(...a),
  };

  const delivered = new Set();
  let openErrors = 0;
  genesys.status = 500; // Genesys is down
  const gate = await consumeWithBreaker(spy, {
    queue,
    circuit: 'genesys/eu-west-1',
    prefetch: 5,
    requeueDelayMs: 20,
    onMessage: async (msg) => {
      const id = msg.content.toString();
      try {
        const res = await fetch(`${genesys.url}/api/v2/conversations/messages/inbound`, { method: 'POST', body: id });
        if (res.status >= 500) throw new Error(`genesys answered ${res.status}`);
        delivered.add(id);
      } catch (err) {
        if (err instanceof CircuitBreakerOpenError) openErrors++;
        throw err;
      }
    },
    onError: () => 'requeue', // a 5xx: try the message again later
  });
  assert.equal(gate.mode(), 'consuming');

  const ids = Array.from({ length: 20 }, (_, i) => `msg-${i}`);
  for (const id of ids) admin.sendToQueue(queue, Buffer.from(id));

  await waitFor('the circuit to open and the gate to stop consuming', () => log.includes('cancel'));
  genesys.status = 202; // Genesys recovers; the sidecar half-opens after its open timeout
  await waitFor('every message to be delivered', () => ids.every((id) => delivered.has(id)), 60_000);
  await waitFor('the gate to consume normally again', () => gate.mode() === 'consuming');

  // Closed → open (cancel) → half-open: prefetch 1 (again after any failed
  // probe) → closed: the full prefetch.
  assert.match(log.join(', '), /^prefetch 5, consume, cancel, (prefetch 1, consume, cancel, )+prefetch 5, consume$/);
  const c = await sidecar.circuit('genesys/eu-west-1');
  assert.equal(c.rejected_half_open, 0, 'one message at a time while half-open: no probe was turned away');
  assert.equal((await admin.checkQueue(queue)).messageCount, 0);
  assert.ok(openErrors >= 0);
  await gate.stop();
  assert.equal(gate.mode(), 'paused');
  assert.equal((await admin.checkQueue(queue)).consumerCount, 0);
});

test('examples/node-genesys-t10, unchanged, under node --import @breakerbox/node/register: a region down waits, the other flows', { skip }, async () => {
  // Build the example as its `npm run build` would, into a directory whose
  // node_modules holds this package and amqplib, and start it as `npm start` does.
  const here = dirname(fileURLToPath(import.meta.url));
  const example = join(repoRoot, 'examples/node-genesys-t10');
  const dir = tempDir('node-genesys-t10-');
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '-p', join(example, 'tsconfig.ci.json'), '--outDir', join(dir, 'dist')], { stdio: 'inherit' });
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
  mkdirSync(join(dir, 'node_modules/@breakerbox'), { recursive: true });
  symlinkSync(resolve(here, '..'), join(dir, 'node_modules/@breakerbox/node'));
  symlinkSync(resolve(here, '../node_modules/amqplib'), join(dir, 'node_modules/amqplib'));

  const euFirst = genesys.requests.length; // the requests before are the first test's
  genesys.status = 500; // eu-west-1 is down
  genesysUS.status = 202;
  const service = spawn(process.execPath, ['--import', '@breakerbox/node/register', 'dist/service.js'], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      AMQP_URL: rabbit.url,
      BREAKERBOX_ADMIN: sidecar.admin,
      BREAKERBOX_PROXY: sidecar.proxy,
      GENESYS_API_BASES: JSON.stringify({ 'eu-west-1': genesys.url, 'us-east-1': genesysUS.url }),
    },
  });
  let out = '';
  service.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  service.stderr.setEncoding('utf8').on('data', (d) => (out += d));
  atExit(() => service.kill('SIGKILL'));
  let exited = false;
  service.on('exit', () => (exited = true));
  const alive = () => {
    if (exited) throw new Error(`the example exited:\n${out}`);
  };
  await waitFor('the example to consume both regions', () => (alive(), out.includes('consuming genesys.inbound.eu-west-1') && out.includes('consuming genesys.inbound.us-east-1')), 60_000);

  const ch = await conn.createChannel();
  const sent = (region) => Array.from({ length: 10 }, (_, i) => JSON.stringify({ tenant: `${region}-tenant-${i}`, text: 'hi' }));
  for (const region of ['eu-west-1', 'us-east-1']) for (const m of sent(region)) ch.sendToQueue(`genesys.inbound.${region}`, Buffer.from(m));
  const deliveredTo = (u, region) => sent(region).every((m) => u.requests.some((r) => r.body === m && r.status === 202));

  await waitFor('us-east-1 to get every message', () => (alive(), deliveredTo(genesysUS, 'us-east-1')), 60_000);
  await waitFor('eu-west-1 to open', () => (alive(), out.includes('Circuit breaker OPEN for region eu-west-1')), 60_000);
  assert.ok(!deliveredTo(genesys, 'eu-west-1'));
  genesys.status = 202; // eu-west-1 recovers
  await waitFor('eu-west-1 to get every message', () => (alive(), deliveredTo(genesys, 'eu-west-1')), 60_000);
  await waitFor('eu-west-1 to close', () => (alive(), out.includes('Circuit breaker CLOSED for region eu-west-1 — recovered')), 60_000);
  assert.ok(genesys.requests.slice(euFirst).every((r) => r.url === '/api/v2/conversations/messages/inbound/open' && r.headers['x-forwarded-prefix'] === '/genesys/eu-west-1'));
  service.kill('SIGTERM');
  await ch.close();
});
