import { setDefaultSidecar } from './breaker.js';
import { patch, Routes, unpatch } from './routing.js';
import { Sidecar, type SidecarOptions } from './sidecar.js';

export { CircuitBreakerOpenError, CircuitOpenError, type CircuitState } from './errors.js';
export { CircuitBreaker, CircuitBreakerRegistry, waitUntilAllowed, type RegistryOptions, type WaitOptions } from './breaker.js';
export { Sidecar, type SidecarOptions, type Circuit, type Transition } from './sidecar.js';

export interface InstallOptions extends SidecarOptions {
  /** Route global fetch and http(s).request/get through the sidecar (default true). */
  route?: boolean;
}

let installed: Sidecar | undefined;

/**
 * Connects to the sidecar without touching fetch or http: its circuits, kept
 * current from its event stream, for CircuitBreakerRegistry and
 * waitUntilAllowed. Becomes the default sidecar of both.
 */
export async function connect(opts: SidecarOptions = {}): Promise<Sidecar> {
  const s = new Sidecar(opts);
  await s.start();
  setDefaultSidecar(s);
  return s;
}

/**
 * Connects to the sidecar (see connect) and routes this process's requests
 * made with global fetch and http(s).request/get to the sidecar's upstreams
 * through the sidecar: https://api.mypurecloud.ie/x goes to
 * http://127.0.0.1:7070/genesys/eu-west-1/x. Other hosts are untouched. The
 * sidecar's open-circuit 503 becomes a CircuitBreakerOpenError. Calling it
 * again replaces the earlier installation.
 */
export async function install(opts: InstallOptions = {}): Promise<Sidecar> {
  const s = await connect(opts);
  uninstall();
  installed = s;
  setDefaultSidecar(s);
  if (opts.route !== false) patch(new Routes(s));
  return s;
}

/** Undoes install(): fetch and http(s) as they were, the event stream closed. */
export function uninstall(): void {
  unpatch();
  installed?.close();
  installed = undefined;
}
