import http from 'node:http';
import { CircuitBreakerOpenError, seedState, type CircuitState } from './errors.js';

// The original http.request, taken before routing patches the module: the
// admin API is never routed, and must not pay for the routing check.
const request = http.request;

/** Where the sidecar listens. Both default from the environment, then from the sidecar's default config. */
export interface SidecarOptions {
  /** The admin listener: BREAKERBOX_ADMIN, else http://127.0.0.1:7071. */
  admin?: string;
  /** The proxy listener: BREAKERBOX_PROXY, else http://127.0.0.1:7070. */
  proxy?: string;
  /** How long connect() waits for the sidecar to answer, in ms: BREAKERBOX_CONNECT_TIMEOUT_MS, else 10 000. */
  connectTimeoutMs?: number;
}

/** A circuit as the client sees it, from the admin API and the event stream. */
export interface Circuit {
  readonly name: string;
  readonly kind: string; // "http", "smtp", "imap"
  readonly service: string;
  readonly region?: string;
  readonly upstream: string;
  /** The sidecar's state: closed, open, half_open, forced_open, disabled. */
  readonly sidecarState: string;
  readonly state: CircuitState;
  readonly openTimeoutMs: number;
}

/** A state change of a circuit, from the sidecar's event stream. */
export interface Transition {
  circuit: string;
  from: CircuitState;
  to: CircuitState;
  /** The sidecar's names: closed, open, half_open, forced_open, disabled. */
  sidecarFrom: string;
  sidecarTo: string;
  reason: string;
  message: string;
  at: string;
}

interface Entry extends Circuit {
  stamp: bigint; // the last transition's time, in ns, for ordering stream against snapshot
  retryAt: number; // Date.now() at which the sidecar lets a probe through
}

interface CircuitJSON {
  name: string;
  kind: string;
  service: string;
  region?: string;
  upstream: string;
  state: string;
  retry_after_seconds: number;
  last_transition: { at: string } | null;
  settings: { open_timeout_seconds: number };
}

interface TransitionJSON {
  circuit: string;
  at: string;
  from: string;
  to: string;
  reason: string;
  message: string;
}

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}

function baseURL(value: string, field: string): URL {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new Error(`breakerbox: ${field} ${JSON.stringify(value)} is not a URL: want http://host:port, e.g. http://127.0.0.1:7071`);
  }
  if (u.protocol !== 'http:') {
    throw new Error(`breakerbox: ${field} ${JSON.stringify(value)} must be http:// (the sidecar listens on plain HTTP on loopback)`);
  }
  return u;
}

/** A time as the sidecar writes it (RFC 3339 with up to 9 fractional digits), in ns. */
function stampOf(at: string | undefined): bigint {
  if (!at) return 0n;
  const ms = Date.parse(at);
  if (Number.isNaN(ms)) return 0n;
  const frac = /\.(\d+)/.exec(at)?.[1] ?? '';
  return BigInt(Math.floor(ms / 1000)) * 1_000_000_000n + BigInt((frac + '000000000').slice(0, 9));
}

/**
 * A connection to one sidecar: its circuits, kept current from its event
 * stream (GET /api/events). Create one with connect(); install() makes one
 * and routes the process's HTTP calls through it.
 */
export class Sidecar {
  readonly admin: URL;
  readonly proxy: URL;
  readonly connectTimeoutMs: number;
  private circuits = new Map<string, Entry>();
  // Circuits with a transition on the current stream: the only ones whose
  // state a snapshot read after it may be older than (a restarted sidecar's
  // snapshot is newer than anything its predecessor said).
  private streamed = new Set<string>();
  private listeners = new Set<(t: Transition) => void>();
  private changeListeners = new Set<() => void>();
  private stream: http.ClientRequest | undefined;
  private reconnect: NodeJS.Timeout | undefined;
  private retryMs = 1000;
  private closed = false;
  private live_ = false;

  constructor(opts: SidecarOptions = {}) {
    this.admin = baseURL(opts.admin ?? env('BREAKERBOX_ADMIN') ?? 'http://127.0.0.1:7071', opts.admin ? 'admin' : 'BREAKERBOX_ADMIN');
    this.proxy = baseURL(opts.proxy ?? env('BREAKERBOX_PROXY') ?? 'http://127.0.0.1:7070', opts.proxy ? 'proxy' : 'BREAKERBOX_PROXY');
    const t = opts.connectTimeoutMs ?? Number(env('BREAKERBOX_CONNECT_TIMEOUT_MS') ?? 10_000);
    if (!(t >= 0)) throw new Error(`breakerbox: connect timeout ${t} (connectTimeoutMs or BREAKERBOX_CONNECT_TIMEOUT_MS) must be a number of ms ≥ 0`);
    this.connectTimeoutMs = t;
  }

  /**
   * Whether the event stream is connected and the circuits are current.
   * While it is not, nothing fails fast locally: calls go to the sidecar,
   * which decides.
   */
  get live(): boolean {
    return this.live_;
  }

  /** Opens the event stream, then reads the circuits; retries until timeoutMs. */
  async start(timeoutMs = this.connectTimeoutMs): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.openStream();
        await this.resync();
        this.live_ = true;
        return;
      } catch (err) {
        this.stream?.destroy();
        if (this.closed) throw new Error('breakerbox: closed while connecting');
        if (Date.now() >= deadline) {
          throw new Error(
            `breakerbox: the sidecar's admin API at ${this.admin.origin} did not answer within ${timeoutMs} ms (${(err as Error).message}): ` +
              'start breakerbox (go run ./cmd/breakerbox), or point BREAKERBOX_ADMIN at its admin listener',
          );
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /** Closes the event stream. */
  close(): void {
    this.closed = true;
    this.live_ = false;
    clearTimeout(this.reconnect);
    this.stream?.destroy();
  }

  /** Every circuit, by name. */
  list(): Circuit[] {
    return [...this.circuits.values()];
  }

  /** The circuit called name, or undefined. */
  circuit(name: string): Circuit | undefined {
    return this.circuits.get(name);
  }

  /** The seed's state of a circuit; throws for an unknown circuit. */
  state(name: string): CircuitState {
    return this.must(name).state;
  }

  /**
   * Throws CircuitBreakerOpenError if the circuit is open as far as the
   * event stream says, without a network round trip.
   */
  check(name: string): void {
    const c = this.circuits.get(name);
    if (c !== undefined && c.state === 'OPEN' && this.live_) {
      throw new CircuitBreakerOpenError(name, 'OPEN', Math.max(0, c.retryAt - Date.now()));
    }
  }

  /** Calls fn on every transition; returns a function that stops it. */
  onTransition(fn: (t: Transition) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Calls fn when the set of circuits may have changed (for routing). */
  onChange(fn: () => void): () => void {
    this.changeListeners.add(fn);
    return () => this.changeListeners.delete(fn);
  }

  must(name: string): Entry {
    const c = this.circuits.get(name);
    if (c === undefined) {
      const names = [...this.circuits.keys()].join(', ');
      throw new Error(`breakerbox: the sidecar has no circuit "${name}" (it has: ${names}): add it to the sidecar's config (services, or per_region of a service)`);
    }
    return c;
  }

  /** GET path on the admin listener, as JSON. */
  private getJSON<T>(path: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const req = request(new URL(path, this.admin), { headers: { accept: 'application/json' } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`GET ${path}: ${res.statusCode} ${body.slice(0, 200)}`));
          try {
            resolve(JSON.parse(body) as T);
          } catch (err) {
            reject(new Error(`GET ${path}: ${(err as Error).message}`));
          }
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.setTimeout(5000, () => req.destroy(new Error('timed out after 5 s')));
      req.end();
    });
  }

  /** Reads every circuit; keeps what the stream said if it is newer. */
  private async resync(): Promise<void> {
    const list = await this.getJSON<CircuitJSON[]>('/api/circuits');
    const now = Date.now();
    const next = new Map<string, Entry>();
    for (const c of list ?? []) {
      const prev = this.circuits.get(c.name);
      const stamp = stampOf(c.last_transition?.at);
      const e: Entry = {
        name: c.name,
        kind: c.kind,
        service: c.service,
        region: c.region || undefined,
        upstream: c.upstream,
        sidecarState: c.state,
        state: seedState(c.state),
        openTimeoutMs: c.settings.open_timeout_seconds * 1000,
        stamp,
        retryAt: now + c.retry_after_seconds * 1000,
      };
      next.set(c.name, prev !== undefined && this.streamed.has(c.name) && prev.stamp > stamp ? { ...e, sidecarState: prev.sidecarState, state: prev.state, stamp: prev.stamp, retryAt: prev.retryAt } : e);
    }
    const states = new Map([...this.circuits].map(([k, v]) => [k, v.state]));
    this.circuits = next;
    for (const fn of this.changeListeners) fn();
    // Transitions missed while disconnected are delivered as one each.
    for (const c of next.values()) {
      const was = states.get(c.name);
      if (was !== undefined && was !== c.state) {
        this.emit({ circuit: c.name, from: was, to: c.state, sidecarFrom: '', sidecarTo: c.sidecarState, reason: 'resync', message: `${c.name}: ${c.sidecarState} (read after reconnecting)`, at: new Date().toISOString() });
      }
    }
  }

  private emit(t: Transition): void {
    for (const fn of this.listeners) {
      try {
        fn(t);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  private apply(t: TransitionJSON): void {
    const c = this.circuits.get(t.circuit);
    if (c === undefined) {
      // A circuit added by a reload of the sidecar's config.
      void this.resync().catch(() => {});
      return;
    }
    const stamp = stampOf(t.at);
    if (stamp < c.stamp) return; // older than the snapshot read after it
    this.streamed.add(t.circuit);
    const from = c.state;
    const to = seedState(t.to);
    const retryAt = t.to === 'open' || t.to === 'forced_open' ? Date.now() + c.openTimeoutMs : 0;
    this.circuits.set(t.circuit, { ...c, sidecarState: t.to, state: to, stamp, retryAt });
    this.emit({ circuit: t.circuit, from, to, sidecarFrom: t.from, sidecarTo: t.to, reason: t.reason, message: t.message, at: t.at });
  }

  /** Opens GET /api/events; resolves once the sidecar answered 200. */
  private openStream(): Promise<void> {
    this.streamed.clear();
    return new Promise((resolve, reject) => {
      const req = request(new URL('/api/events', this.admin), { headers: { accept: 'text/event-stream' } }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return reject(new Error(`GET /api/events: ${res.statusCode}`));
        }
        res.socket.unref(); // the stream alone does not keep the process alive
        resolve();
        res.setEncoding('utf8');
        let buf = '';
        let event = '';
        let data = '';
        res.on('data', (chunk: string) => {
          buf += chunk;
          let i: number;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i).replace(/\r$/, '');
            buf = buf.slice(i + 1);
            if (line === '') {
              if (event === 'transition' && data !== '') {
                try {
                  this.apply(JSON.parse(data) as TransitionJSON);
                } catch {
                  // not a transition we understand; the next resync corrects
                }
              }
              event = data = '';
            } else if (line.startsWith('event:')) {
              event = line.slice(6).trim();
            } else if (line.startsWith('data:')) {
              data += (data ? '\n' : '') + line.slice(5).replace(/^ /, '');
            } else if (line.startsWith('retry:')) {
              const ms = Number(line.slice(6).trim());
              if (Number.isFinite(ms) && ms > 0) this.retryMs = ms;
            }
          }
        });
        res.on('close', () => this.lost());
        res.on('error', () => {});
      });
      req.on('error', (err) => {
        reject(err);
        this.lost();
      });
      req.end();
      this.stream = req;
    });
  }

  /** The stream ended: reconnect after the sidecar's retry interval, then resync. */
  private lost(): void {
    if (this.closed || this.reconnect !== undefined || !this.live_) return;
    this.live_ = false;
    const again = () => {
      this.reconnect = undefined;
      if (this.closed) return;
      this.openStream()
        .then(() => this.resync())
        .then(() => {
          this.live_ = true;
        })
        .catch(() => {
          this.stream?.destroy();
          this.reconnect = setTimeout(again, this.retryMs);
          this.reconnect.unref();
        });
    };
    this.reconnect = setTimeout(again, this.retryMs);
    this.reconnect.unref();
  }
}
