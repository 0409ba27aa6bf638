import type { CircuitState } from './errors.js';
import type { Sidecar } from './sidecar.js';

let defaultSidecar: Sidecar | undefined;

/** Sets the sidecar that registries and waitUntilAllowed use by default (install() and connect() do). */
export function setDefaultSidecar(s: Sidecar | undefined): void {
  defaultSidecar = s;
}

function sidecarOr(s: Sidecar | undefined): Sidecar {
  const got = s ?? defaultSidecar;
  if (got === undefined) {
    throw new Error(
      'breakerbox: not connected to the sidecar: start node with --import @breakerbox/node/register, or await install() (or connect()) first',
    );
  }
  return got;
}

/**
 * One of the sidecar's circuits with the seeds' API (ADR-002's execute(),
 * T10's call() and getState()). The sidecar counts the outcomes of the calls
 * that go through it; this object knows the circuit's state from the
 * sidecar's event stream, so a call while it is open fails at once, without
 * a network round trip, and the state is the fleet's when the sidecar shares
 * it through Redis.
 */
export class CircuitBreaker {
  constructor(
    readonly name: string,
    /** The sidecar whose circuit this is. */
    readonly sidecar: Sidecar,
  ) {
    sidecar.must(name);
  }

  /** 'CLOSED', 'OPEN' or 'HALF_OPEN' (a forced-open circuit is 'OPEN', a disabled one 'CLOSED'). */
  getState(): CircuitState {
    return this.sidecar.state(this.name);
  }

  /**
   * Runs fn unless the circuit is open; rejects with CircuitBreakerOpenError
   * (fn not run) if it is. fn's HTTP calls to the circuit's upstream go
   * through the sidecar (routed by install(), or addressed to it), which
   * counts them: 5xx, timeouts and connection errors fail, 4xx succeed, 429
   * is ignored.
   */
  async call<T>(fn: () => Promise<T>): Promise<T> {
    this.sidecar.check(this.name);
    return fn();
  }

  /** ADR-002's name for call(). */
  execute<T>(fn: () => Promise<T>): Promise<T> {
    return this.call(fn);
  }
}

/** Options of a CircuitBreakerRegistry. */
export interface RegistryOptions {
  /** With a service ("genesys"), get(region) returns the circuit "genesys/<region>"; without, get takes a circuit's name. */
  service?: string;
  /** The sidecar; by default the one install() or connect() made. */
  sidecar?: Sidecar;
}

/** T10's per-region registry, over the sidecar's circuits. */
export class CircuitBreakerRegistry {
  private readonly service: string | undefined;
  private readonly sidecar: Sidecar | undefined;
  private readonly breakers = new Map<string, CircuitBreaker>();

  constructor(opts: RegistryOptions | string = {}) {
    const o = typeof opts === 'string' ? { service: opts } : opts;
    this.service = o.service;
    this.sidecar = o.sidecar;
  }

  /**
   * The breaker of region (of the registry's service), or of the circuit
   * called key. Throws, naming the circuits the sidecar has, when it has no
   * such circuit: circuits come from the sidecar's config.
   */
  get(key: string): CircuitBreaker {
    let b = this.breakers.get(key);
    if (b === undefined) {
      b = new CircuitBreaker(this.service ? `${this.service}/${key}` : key, sidecarOr(this.sidecar));
      this.breakers.set(key, b);
    }
    return b;
  }
}

/** Options of waitUntilAllowed. */
export interface WaitOptions {
  signal?: AbortSignal;
  sidecar?: Sidecar;
}

/**
 * Resolves as soon as the circuit lets calls through (CLOSED or HALF_OPEN),
 * at once if it does now; rejects with the signal's reason when aborted.
 * For consumers: wait here instead of taking messages that would fail.
 */
export function waitUntilAllowed(circuit: string | CircuitBreaker, opts: WaitOptions = {}): Promise<void> {
  const s = sidecarOr(opts.sidecar);
  const name = typeof circuit === 'string' ? circuit : circuit.name;
  s.must(name);
  const { signal } = opts;
  if (signal?.aborted) return Promise.reject(signal.reason);
  if (s.state(name) !== 'OPEN' || !s.live) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = () => {
      off();
      signal?.removeEventListener('abort', abort);
    };
    const off = s.onTransition((t) => {
      if (t.circuit === name && t.to !== 'OPEN') {
        done();
        resolve();
      }
    });
    const abort = () => {
      done();
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', abort, { once: true });
  });
}
