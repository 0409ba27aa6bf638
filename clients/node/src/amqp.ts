// A RabbitMQ consumer (amqplib) gated by a circuit: T10's "NACK while open",
// without taking messages that would fail.
import { CircuitBreaker, CircuitBreakerRegistry } from './breaker.js';
import { CircuitBreakerOpenError, type CircuitState } from './errors.js';
import type { Sidecar } from './sidecar.js';

/** The part of an amqplib message the gate uses. */
export interface Message {
  fields: { deliveryTag: number; redelivered: boolean };
}

/** The part of an amqplib (promise API) channel the gate uses; amqplib's Channel and ConfirmChannel fit. */
export interface Channel<M extends Message = Message> {
  consume(queue: string, onMessage: (msg: M | null) => void, options?: { noAck?: boolean }): Promise<{ consumerTag: string }>;
  cancel(consumerTag: string): Promise<unknown>;
  prefetch(count: number, global?: boolean): Promise<unknown>;
  ack(message: M): void;
  nack(message: M, allUpTo?: boolean, requeue?: boolean): void;
}

/** What to do with a message whose handler failed (not with an open circuit). */
export type Verdict = 'ack' | 'requeue' | 'reject';

export interface GateOptions<M extends Message> {
  /** The queue to consume from. */
  queue: string;
  /** The circuit the handler's calls go through: a breaker, or its name ("genesys/eu-west-1"). */
  circuit: CircuitBreaker | string;
  /** Handles one message; resolve to ack it. A CircuitBreakerOpenError requeues it after requeueDelayMs. */
  onMessage: (msg: M) => Promise<void>;
  /** Messages in flight while the circuit is CLOSED (default 10). HALF_OPEN takes one at a time. */
  prefetch?: number;
  /** How long a message whose call met an open circuit is held before it is NACKed back to the queue (default 1000 ms). */
  requeueDelayMs?: number;
  /** For any other error: 'reject' (NACK without requeue: dead-letter; the default), 'requeue' (after requeueDelayMs) or 'ack'. */
  onError?: (err: unknown, msg: M) => Verdict;
  /** The sidecar; by default the one install() or connect() made. */
  sidecar?: Sidecar;
}

/** The gate's mode: consuming with the full prefetch, probing one at a time, or paused. */
export type Mode = 'consuming' | 'probing' | 'paused';

export interface Gate {
  /** The current mode. */
  mode(): Mode;
  /** Stops consuming; NACKs (requeues) the messages it was holding back at once. */
  stop(): Promise<void>;
}

const modeOf = (s: CircuitState): Mode => (s === 'OPEN' ? 'paused' : s === 'HALF_OPEN' ? 'probing' : 'consuming');

/**
 * Consumes queue on channel while the circuit lets calls through: with
 * prefetch messages in flight while it is CLOSED, one at a time (prefetch 1)
 * while it is HALF_OPEN, and not at all while it is OPEN (the consumer is
 * cancelled, so messages wait in the queue instead of being taken and
 * NACKed). A message whose call still meets an open circuit (the race at
 * the moment it opens, or a full probe slot) is NACKed with requeue after
 * requeueDelayMs: T10's NACK, without a retry storm.
 *
 * The channel's prefetch is set per consumer (basic.qos, global false), so
 * the gate needs a channel of its own.
 */
export async function consumeWithBreaker<M extends Message>(channel: Channel<M>, opts: GateOptions<M>): Promise<Gate> {
  const breaker =
    typeof opts.circuit !== 'string'
      ? opts.circuit
      : opts.sidecar
        ? new CircuitBreaker(opts.circuit, opts.sidecar)
        : new CircuitBreakerRegistry().get(opts.circuit);
  const sidecar = breaker.sidecar;
  const prefetch = opts.prefetch ?? 10;
  const delay = opts.requeueDelayMs ?? 1000;
  if (!Number.isInteger(prefetch) || prefetch < 1) throw new RangeError(`consumeWithBreaker: prefetch ${prefetch} must be a whole number ≥ 1`);
  if (!(delay >= 0)) throw new RangeError(`consumeWithBreaker: requeueDelayMs ${delay} must be ≥ 0`);

  let tag: string | undefined;
  let current: Mode = 'paused';
  let stopped = false;
  const held = new Map<M, NodeJS.Timeout>(); // messages waiting for their delayed NACK

  const requeueLater = (msg: M) => {
    held.set(
      msg,
      setTimeout(() => {
        held.delete(msg);
        nack(msg, true);
      }, delay),
    );
  };
  // On a closed channel ack and nack throw; the broker requeues what was
  // unacked then, so there is nothing left to do.
  const nack = (msg: M, requeue: boolean) => {
    try {
      channel.nack(msg, false, requeue);
    } catch {
      // the channel closed
    }
  };
  const ack = (msg: M) => {
    try {
      channel.ack(msg);
    } catch {
      // the channel closed
    }
  };
  const warn = (what: string, err: unknown) =>
    process.emitWarning(`consumeWithBreaker(${opts.queue}): ${what}: ${(err as Error)?.message ?? err}`, 'BreakerboxWarning');

  const handle = async (msg: M | null) => {
    if (msg === null) return; // cancelled by the broker (queue deleted)
    try {
      await breaker.call(() => opts.onMessage(msg));
      ack(msg);
    } catch (err) {
      if (err instanceof CircuitBreakerOpenError) return requeueLater(msg);
      let verdict: Verdict = 'reject';
      try {
        verdict = opts.onError?.(err, msg) ?? 'reject';
      } catch (thrown) {
        warn('onError threw; rejecting the message', thrown);
      }
      if (verdict === 'ack') ack(msg);
      else if (verdict === 'requeue') requeueLater(msg);
      else nack(msg, false);
    }
  };

  // Mode changes run one after another, each to the latest wanted mode.
  let chain: Promise<void> = Promise.resolve();
  const reconcile = () => {
    chain = chain.catch(() => {}).then(async () => {
      const want: Mode = stopped ? 'paused' : modeOf(breaker.getState());
      if (want === current) return;
      if (tag !== undefined) {
        const t = tag;
        tag = undefined;
        await channel.cancel(t);
      }
      current = 'paused';
      if (want === 'paused') return;
      await channel.prefetch(want === 'probing' ? 1 : prefetch);
      tag = (await channel.consume(opts.queue, (m) => void handle(m))).consumerTag;
      current = want;
    });
    return chain;
  };

  const off = sidecar.onTransition((t) => {
    if (t.circuit === breaker.name) reconcile().catch((err) => warn(`following ${t.circuit} to ${t.to} failed (is the channel closed?)`, err));
  });
  try {
    await reconcile();
  } catch (err) {
    off();
    throw err;
  }

  return {
    mode: () => current,
    async stop() {
      stopped = true;
      off();
      await reconcile();
      for (const [msg, timer] of held) {
        clearTimeout(timer);
        nack(msg, true);
      }
      held.clear();
    },
  };
}
