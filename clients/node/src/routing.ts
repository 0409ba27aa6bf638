import http from 'node:http';
import https from 'node:https';
import { syncBuiltinESMExports } from 'node:module';
import { Duplex } from 'node:stream';
import { CircuitBreakerOpenError, seedState } from './errors.js';
import type { Sidecar } from './sidecar.js';

interface Route {
  circuit: string;
  base: string; // the upstream's path, without a trailing slash
  prefix: string; // "/genesys/eu-west-1": the circuit's path on the sidecar
}

/**
 * The sidecar's HTTP circuits by upstream origin: which URLs go through
 * which circuit, and where on the sidecar.
 */
export class Routes {
  private byOrigin = new Map<string, Route[]>();
  private hosts = new Set<string>();

  constructor(readonly sidecar: Sidecar) {
    this.rebuild();
    sidecar.onChange(() => this.rebuild());
  }

  private rebuild(): void {
    const byOrigin = new Map<string, Route[]>();
    const hosts = new Set<string>();
    for (const c of this.sidecar.list()) {
      if (c.kind !== 'http') continue;
      let u: URL;
      try {
        u = new URL(c.upstream);
      } catch {
        continue;
      }
      const list = byOrigin.get(u.origin) ?? [];
      list.push({ circuit: c.name, base: u.pathname.replace(/\/+$/, ''), prefix: '/' + c.name });
      byOrigin.set(u.origin, list);
      hosts.add(u.hostname);
    }
    for (const list of byOrigin.values()) list.sort((a, b) => b.base.length - a.base.length);
    this.byOrigin = byOrigin;
    this.hosts = hosts;
  }

  /** Whether hostname is the host of some upstream (a cheap first check). */
  hasHost(hostname: string): boolean {
    return this.hosts.has(hostname);
  }

  /**
   * The circuit and the sidecar URL of a request to url, or undefined when
   * url is not under any upstream.
   */
  match(url: URL): { circuit: string; target: string } | undefined {
    const list = this.byOrigin.get(url.origin);
    if (list === undefined) return undefined;
    const path = url.pathname;
    for (const r of list) {
      if (path.startsWith(r.base) && (path.length === r.base.length || path[r.base.length] === '/')) {
        return { circuit: r.circuit, target: this.sidecar.proxy.origin + r.prefix + path.slice(r.base.length) + url.search };
      }
    }
    return undefined;
  }
}

/** Whether a response is the sidecar's open-circuit answer. */
function isOpenAnswer(status: number | undefined, stateHeader: string | string[] | null | undefined): boolean {
  return status === 503 && stateHeader === 'open';
}

/** The CircuitBreakerOpenError for the sidecar's 503, from its headers and JSON body. */
function openError(circuit: string, retryAfter: string | null | undefined, body: string): CircuitBreakerOpenError {
  let state = 'open';
  let secs = Number(retryAfter);
  try {
    const j = JSON.parse(body) as { state?: string; retry_after_seconds?: number; circuit?: string };
    if (typeof j.state === 'string') state = j.state;
    if (typeof j.retry_after_seconds === 'number') secs = j.retry_after_seconds;
    if (typeof j.circuit === 'string') circuit = j.circuit;
  } catch {
    // the headers say enough
  }
  return new CircuitBreakerOpenError(circuit, seedState(state), Number.isFinite(secs) ? secs * 1000 : 1000);
}

type Fetch = typeof globalThis.fetch;

/** A fetch that sends requests under an upstream through the sidecar. */
export function routedFetch(routes: Routes, next: Fetch): Fetch {
  return async function fetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
    let url: URL;
    try {
      url = input instanceof Request ? new URL(input.url) : input instanceof URL ? input : new URL(String(input));
    } catch {
      return next(input, init); // let fetch report the bad URL as it does
    }
    const m = routes.hasHost(url.hostname) ? routes.match(url) : undefined;
    if (m === undefined) return next(input, init);
    routes.sidecar.check(m.circuit);
    let res: Response;
    if (input instanceof Request) {
      const r = input;
      res = await next(m.target, {
        method: r.method,
        headers: r.headers,
        body: r.body,
        signal: r.signal,
        redirect: r.redirect,
        duplex: 'half',
        ...init,
      } as RequestInit);
    } else {
      res = await next(m.target, init);
    }
    if (isOpenAnswer(res.status, res.headers.get('breakerbox-state'))) {
      throw openError(m.circuit, res.headers.get('retry-after'), await res.text());
    }
    return res;
  };
}

type RequestFn = typeof http.request;

// What a request to the sidecar must not carry over from one to the
// upstream: where to connect, and how (TLS, an https.Agent).
const dropped = ['protocol', 'host', 'hostname', 'port', 'path', 'agent', 'createConnection', 'socketPath', 'lookup', 'family', 'localAddress', 'defaultPort', 'servername', 'ca', 'cert', 'key', 'pfx', 'passphrase', 'rejectUnauthorized', 'checkServerIdentity', 'ALPNProtocols', 'ciphers', 'secureContext', 'session'];

/**
 * An http.request or https.request (next, whose default protocol is
 * protocol) that sends requests under an upstream through the sidecar with
 * sidecarRequest (the original http.request). Other requests are next's,
 * untouched.
 */
function routedRequest(routes: Routes, next: RequestFn, sidecarRequest: RequestFn, protocol: string): RequestFn {
  return function request(this: unknown, ...args: unknown[]): http.ClientRequest {
    let url: URL | undefined;
    let options: Record<string, unknown> = {};
    let cb: ((res: http.IncomingMessage) => void) | undefined;
    let i = 0;
    if (typeof args[0] === 'string' || args[0] instanceof URL) {
      try {
        url = new URL(args[0] as string | URL);
      } catch {
        return (next as (...a: unknown[]) => http.ClientRequest)(...args);
      }
      i = 1;
    }
    if (args[i] !== null && typeof args[i] === 'object') options = args[i++] as Record<string, unknown>;
    if (typeof args[i] === 'function') cb = args[i] as typeof cb;

    const hostname = String(options.hostname ?? options.host ?? url?.hostname ?? 'localhost').replace(/^\[|\]$/g, '');
    if (!routes.hasHost(hostname) && !routes.hasHost(`[${hostname}]`)) {
      return (next as (...a: unknown[]) => http.ClientRequest)(...args);
    }
    const proto = String(options.protocol ?? url?.protocol ?? protocol);
    const port = options.port ?? url?.port ?? '';
    const path = String(options.path ?? (url ? url.pathname + url.search : '/'));
    let full: URL;
    try {
      full = new URL(`${proto}//${hostname.includes(':') ? `[${hostname}]` : hostname}${port ? `:${port}` : ''}${path}`);
    } catch {
      return (next as (...a: unknown[]) => http.ClientRequest)(...args);
    }
    const m = routes.match(full);
    if (m === undefined) return (next as (...a: unknown[]) => http.ClientRequest)(...args);

    const target = new URL(m.target);
    const opts: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(options)) if (!dropped.includes(k)) opts[k] = v;
    opts.protocol = 'http:';
    opts.hostname = target.hostname;
    opts.port = target.port;
    opts.path = target.pathname + target.search;
    if (url?.username && opts.auth === undefined) opts.auth = decodeURIComponent(`${url.username}:${url.password}`);

    let open: Error | undefined;
    try {
      routes.sidecar.check(m.circuit);
    } catch (err) {
      open = err as Error;
    }
    if (open !== undefined) {
      // Open: a request on a socket that goes nowhere, failed at once; no
      // connection is made.
      opts.createConnection = () => new Duplex({ read() {}, write: (_c, _e, done) => done() });
    }
    const req = sidecarRequest(opts as http.RequestOptions);
    if (cb) req.once('response', cb);
    if (open !== undefined) {
      process.nextTick(() => req.destroy(open));
      return req;
    }
    // The sidecar's open answer becomes an 'error' event, as a refused
    // connection would: the caller's response handler never sees it.
    const emit = req.emit;
    req.emit = function (this: http.ClientRequest, event: string | symbol, ...rest: unknown[]): boolean {
      const res = rest[0] as http.IncomingMessage;
      if (event === 'response' && isOpenAnswer(res.statusCode, res.headers['breakerbox-state'])) {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => emit.call(req, 'error', openError(m.circuit, res.headers['retry-after'], body)));
        return true;
      }
      return emit.call(this, event, ...rest);
    } as typeof req.emit;
    return req;
  } as RequestFn;
}

function get(request: RequestFn): typeof http.get {
  return function get(...args: unknown[]): http.ClientRequest {
    const req = (request as (...a: unknown[]) => http.ClientRequest)(...args);
    req.end();
    return req;
  } as typeof http.get;
}

/** A header of undici's raw list ([name, value, name, value, ...]). */
function rawHeader(raw: unknown, name: string): string | undefined {
  if (!Array.isArray(raw)) return undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (String(raw[i]).toLowerCase() === name) return String(raw[i + 1]);
  }
  return undefined;
}

type Handler = Record<string | symbol, unknown>;
type Fn = (...a: unknown[]) => unknown;

/**
 * undici's handler for a routed request, turning the sidecar's open answer
 * into an abort with CircuitBreakerOpenError: the request fails with it, as
 * with a refused connection. undici's legacy handlers (onConnect,
 * onHeaders: undici 6, Node's own, and undici 7's request()) and its newer
 * ones (onRequestStart, onResponseStart) are both covered.
 */
function guard(handler: Handler, circuit: string): Handler {
  const bound = (t: Handler, p: string | symbol) => {
    const v = t[p];
    return typeof v === 'function' ? (v as Fn).bind(t) : v;
  };
  if (typeof handler.onRequestStart === 'function') {
    return new Proxy(handler, {
      get(t, p) {
        if (p !== 'onResponseStart') return bound(t, p);
        return (c: { abort(e: Error): void }, status: number, headers: Record<string, string>, text: string) => {
          if (isOpenAnswer(status, headers?.['breakerbox-state'])) return c.abort(openError(circuit, headers['retry-after'], ''));
          return (t.onResponseStart as Fn | undefined)?.call(t, c, status, headers, text);
        };
      },
    });
  }
  let abort: ((e: Error) => void) | undefined;
  return new Proxy(handler, {
    get(t, p) {
      if (p === 'onConnect') {
        return (a: (e: Error) => void, ctx: unknown) => {
          abort = a;
          return (t.onConnect as Fn | undefined)?.call(t, a, ctx);
        };
      }
      if (p === 'onHeaders') {
        return (status: number, raw: unknown, resume: unknown, text: string) => {
          if (abort && isOpenAnswer(status, rawHeader(raw, 'breakerbox-state'))) {
            abort(openError(circuit, rawHeader(raw, 'retry-after'), ''));
            return false;
          }
          return (t.onHeaders as Fn).call(t, status, raw, resume, text);
        };
      }
      return bound(t, p);
    },
  });
}

interface Dispatcher {
  dispatch(opts: Record<string, unknown>, handler: Handler): boolean;
}

// undici's global dispatcher, shared by Node's fetch and every copy of the
// npm undici package (its request(), stream(), fetch() and Agents created
// without a dispatcher of their own go through it).
const dispatcherKey = Symbol.for('undici.globalDispatcher.1');

/**
 * The global dispatcher, routing requests under an upstream through the
 * sidecar: the original dispatcher with its dispatch wrapped (every other
 * method is the original's, through the prototype).
 */
function routedDispatcher(routes: Routes, next: Dispatcher): Dispatcher {
  const d = Object.create(next) as Dispatcher;
  d.dispatch = (opts, handler) => {
    let m: { circuit: string; target: string } | undefined;
    if (opts.origin) {
      try {
        const u = new URL(String(opts.path ?? '/'), String(opts.origin));
        if (routes.hasHost(u.hostname)) m = routes.match(u);
      } catch {
        // undici reports the bad origin or path itself
      }
    }
    if (m === undefined) return next.dispatch(opts, handler);
    const t = new URL(m.target);
    return next.dispatch({ ...opts, origin: t.origin, path: t.pathname + t.search }, guard(handler, m.circuit));
  };
  return d;
}

interface Saved {
  fetch: Fetch;
  httpRequest: RequestFn;
  httpGet: typeof http.get;
  httpsRequest: RequestFn;
  httpsGet: typeof https.get;
  dispatcher: Dispatcher | undefined;
}

let saved: Saved | undefined;

/** Patches global fetch, undici's global dispatcher and http(s).request/get to route through the sidecar. */
export function patch(routes: Routes): void {
  unpatch();
  void globalThis.Request; // loads Node's undici, which sets up the global dispatcher
  const g = globalThis as unknown as Record<symbol, Dispatcher | undefined>;
  saved = { fetch: globalThis.fetch, httpRequest: http.request, httpGet: http.get, httpsRequest: https.request, httpsGet: https.get, dispatcher: g[dispatcherKey] };
  if (saved.dispatcher !== undefined) g[dispatcherKey] = routedDispatcher(routes, saved.dispatcher);
  globalThis.fetch = routedFetch(routes, saved.fetch);
  http.request = routedRequest(routes, saved.httpRequest, saved.httpRequest, 'http:');
  http.get = get(http.request);
  https.request = routedRequest(routes, saved.httpsRequest, saved.httpRequest, 'https:');
  https.get = get(https.request);
  syncBuiltinESMExports(); // `import { request } from 'node:http'` sees the patched one
}

/** Undoes patch. */
export function unpatch(): void {
  if (saved === undefined) return;
  globalThis.fetch = saved.fetch;
  http.request = saved.httpRequest;
  http.get = saved.httpGet;
  https.request = saved.httpsRequest;
  https.get = saved.httpsGet;
  if (saved.dispatcher !== undefined) (globalThis as unknown as Record<symbol, Dispatcher>)[dispatcherKey] = saved.dispatcher;
  saved = undefined;
  syncBuiltinESMExports();
}
