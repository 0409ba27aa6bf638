// The amqplib gate against a real RabbitMQ node and the real sidecar: the
// consumer stops while the region's circuit is open (messages wait in the
// queue), probes one message at a time while it is half-open, and drains the
// queue once it closes; no message is lost.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import amqp from 'amqplib';
import { consumeWithBreaker } from '../dist/esm/amqp.js';
import { CircuitBreakerOpenError, install, uninstall } from '../dist/esm/index.js';
import { haveRabbitMQ, startRabbitMQ, startSidecar, stopAll, upstream, waitFor } from '../testing/helpers.mjs';

const skip = haveRabbitMQ() ? false : 'rabbitmq-server not installed (apt-get install rabbitmq-server)';
let rabbit, sidecar, genesys, conn;

before(async () => {
  if (skip) return;
  genesys = await upstream();
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
