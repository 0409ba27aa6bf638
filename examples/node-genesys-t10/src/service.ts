// T10 end to end, in TypeScript: consume inbound messages from RabbitMQ, one
// queue per Genesys Cloud region, send each to its region's Genesys API, and
// NACK (requeue later) while the region's circuit is open — with the
// breakers kept by the breakerbox sidecar, shared by every replica, and
// this code calling Genesys by its real URLs.
//
//   go run ./cmd/breakerbox &              # the sidecar, with T10's regions
//   npm install && npm start               # AMQP_URL=amqp://... by default
//
// `npm start` runs `node --import @breakerbox/node/register dist/service.js`:
// the sidecar routes https://api.mypurecloud.ie/... through the circuit
// genesys/eu-west-1 before this file's first line runs.
import amqp from 'amqplib';
import { CircuitBreakerRegistry, connect, type Sidecar } from '@breakerbox/node';
import { consumeWithBreaker, type Gate } from '@breakerbox/node/amqp';

/** Genesys Cloud's API per region (GENESYS_API_BASES, a JSON object, overrides: tests point it at loopback). */
const apiBases: Record<string, string> = process.env.GENESYS_API_BASES
  ? (JSON.parse(process.env.GENESYS_API_BASES) as Record<string, string>)
  : { 'us-east-1': 'https://api.mypurecloud.com', 'eu-west-1': 'https://api.mypurecloud.ie' };

interface InboundMessage {
  tenant: string;
  text: string;
}

/** A 4xx: the message is wrong, Genesys is fine (T10: not counted; dead-letter the message). */
class MessageRejected extends Error {}

// T05/T08: the call T10 wraps. Its URL is Genesys's own; the sidecar counts
// 5xx, timeouts and connection errors against the region.
async function sendInboundMessage(region: string, msg: InboundMessage): Promise<void> {
  const res = await fetch(`${apiBases[region]}/api/v2/conversations/messages/inbound/open`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(msg),
  });
  if (res.status >= 500) throw new Error(`Genesys ${region} answered ${res.status}`);
  if (res.status >= 400) throw new MessageRejected(`Genesys ${region} rejected the message: ${res.status}`);
}

function logTransitions(sidecar: Sidecar): void {
  sidecar.onTransition((t) => {
    const [service, region] = t.circuit.split('/');
    if (service !== 'genesys') return;
    if (t.to === 'OPEN') console.error(`Circuit breaker OPEN for region ${region}: ${t.message}`);
    else if (t.to === 'CLOSED') console.info(`Circuit breaker CLOSED for region ${region} — recovered`);
    else console.warn(`Circuit breaker HALF_OPEN for region ${region}: probing`);
  });
}

async function main(): Promise<void> {
  // With --import @breakerbox/node/register this is the sidecar it
  // connected to; connect() alone (no routing) would do for the registry.
  const sidecar = await connect();
  logTransitions(sidecar);
  const registry = new CircuitBreakerRegistry({ service: 'genesys', sidecar });

  const conn = await amqp.connect(process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672/');
  const gates: Gate[] = [];
  for (const region of Object.keys(apiBases)) {
    const queue = `genesys.inbound.${region}`;
    const ch = await conn.createChannel(); // a channel per region: prefetch is per consumer
    await ch.assertQueue(queue, { durable: true });
    gates.push(
      await consumeWithBreaker(ch, {
        queue,
        circuit: registry.get(region), // all tenants of a region share its circuit
        prefetch: 10,
        requeueDelayMs: 1000,
        onMessage: (m) => sendInboundMessage(region, JSON.parse(m.content.toString()) as InboundMessage),
        // A 5xx after the circuit let the call through: try again later.
        // A 4xx: the message is bad; reject it (dead-letter if configured).
        onError: (err) => (err instanceof MessageRejected ? 'reject' : 'requeue'),
      }),
    );
    console.info(`consuming ${queue} through circuit genesys/${region}`);
  }

  const stop = async () => {
    for (const g of gates) await g.stop();
    await conn.close();
    sidecar.close();
  };
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
