/** The states of the seeds' TypeScript breakers (ADR-002, T10). */
export type CircuitState = 'CLOSED' | 'OPEN' | 'HALF_OPEN';

/**
 * Thrown instead of making a call while the circuit is open: by a breaker's
 * call()/execute() when the sidecar's event stream says the circuit is open
 * (no network round trip), and by routed fetch and http(s) requests when the
 * sidecar answers 503 with `Breakerbox-State: open` (nothing left the host).
 */
export class CircuitBreakerOpenError extends Error {
  /** The sidecar's circuit, e.g. "genesys/eu-west-1". */
  readonly circuit: string;
  /** 'OPEN', or 'HALF_OPEN' when the probe slots were all taken. */
  readonly state: CircuitState;
  /** How long until the sidecar lets a probe through, in milliseconds. */
  readonly retryAfterMs: number;

  constructor(circuit: string, state: CircuitState, retryAfterMs: number) {
    super(`circuit ${circuit} is ${state === 'OPEN' ? 'open' : 'half-open with every probe slot taken'}; retry in ${Math.ceil(retryAfterMs / 1000)} s`);
    this.name = 'CircuitBreakerOpenError';
    this.circuit = circuit;
    this.state = state;
    this.retryAfterMs = retryAfterMs;
  }
}

/** ADR-002's name for the same error. */
export { CircuitBreakerOpenError as CircuitOpenError };

/** Maps the sidecar's state names to the seeds' three states. */
export function seedState(sidecarState: string): CircuitState {
  switch (sidecarState) {
    case 'open':
    case 'forced_open':
      return 'OPEN';
    case 'half_open':
      return 'HALF_OPEN';
    default: // closed, disabled (forced closed: everything passes)
      return 'CLOSED';
  }
}
