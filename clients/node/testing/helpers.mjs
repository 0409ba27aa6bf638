// Test helpers: the real breakerbox sidecar (built from this repository),
// upstreams on loopback that the test makes fail and recover, and a
// RabbitMQ node of the test's own. Everything listens on free loopback
// ports and is killed when the test file ends.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '../../..');
export const adminToken = 'node-test-admin-token-0123456789';

const cleanups = [];
/** Runs fn when the test process exits (servers are killed even if a test throws). */
export function atExit(fn) {
  cleanups.push(fn);
}
/** Kills and closes everything the helpers started; test files call it in after(). */
export function stopAll() {
  for (const fn of cleanups.splice(0).reverse()) {
    try {
      fn();
    } catch {
      // best effort
    }
  }
}
process.on('exit', stopAll);

/** A temporary directory, removed at exit. */
export function tempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  atExit(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Polls cond (sync or async) until it returns a truthy value; fails after timeoutMs, a deadlock guard only. */
export async function waitFor(what, cond, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let binary;
/** Builds cmd/breakerbox once per test process (go's build cache makes the next ones quick). */
export function sidecarBinary() {
  if (binary) return binary;
  if (process.env.BREAKERBOX_BIN) return (binary = process.env.BREAKERBOX_BIN);
  const dir = tempDir('breakerbox-bin-');
  binary = join(dir, 'breakerbox');
  execFileSync('go', ['build', '-o', binary, './cmd/breakerbox'], { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit'] });
  return binary;
}

/**
 * Starts the sidecar on config (YAML, without listen/admin: both get a free
 * port, read back from its banner, unless given). Returns its proxy and
 * admin URLs.
 */
export async function startSidecar(config, { listen = '127.0.0.1:0', admin = '127.0.0.1:0' } = {}) {
  const dir = tempDir('breakerbox-cfg-');
  const file = join(dir, 'breakerbox.yaml');
  writeFileSync(file, `listen: ${listen}\nadmin: ${admin}\nadmin_token: ${adminToken}\n${config}`);
  const child = spawn(sidecarBinary(), ['serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (out += d));
  let exited = false;
  child.on('exit', () => (exited = true));
  atExit(() => child.kill('SIGKILL'));
  const m = await waitFor('the sidecar to print its addresses', () => {
    if (exited) throw new Error(`breakerbox exited:\n${out}`);
    const proxy = /proxy[:=]\s*(http:\/\/[^/\s]+)\//.exec(out);
    const admin = /dashboard[:=]\s*(http:\/\/[^/\s]+)\//.exec(out);
    return proxy && admin ? { proxy: proxy[1], admin: admin[1] } : undefined;
  });
  return {
    ...m,
    output: () => out,
    kill: () => child.kill('SIGKILL'),
    /** POST /api/circuits/{name}/{action} (open, close, reset) with the admin token. */
    async control(name, action) {
      const res = await fetchDirect(`${m.admin}/api/circuits/${name}/${action}`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } });
      if (!res.ok) throw new Error(`${action} ${name}: ${res.status} ${await res.text()}`);
      return res.json();
    },
    async circuit(name) {
      return (await fetchDirect(`${m.admin}/api/circuits/${name}`)).json();
    },
  };
}

// fetch as it was before any test installed routing.
export const fetchDirect = globalThis.fetch;

/**
 * An HTTP server on a free loopback port that records what it receives and
 * answers with status (settable). hold() makes it keep requests waiting
 * until release().
 */
export async function upstream() {
  const u = { requests: [], status: 200, inFlight: 0, maxInFlight: 0, held: [] };
  let holding = false;
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      u.requests.push({ method: req.method, url: req.url, headers: req.headers, body, status: u.status });
      u.inFlight++;
      u.maxInFlight = Math.max(u.maxInFlight, u.inFlight);
      const answer = () => {
        u.inFlight--;
        res.writeHead(u.status, { 'content-type': 'application/json' }).end(JSON.stringify({ url: req.url, body }));
      };
      if (holding) u.held.push(answer);
      else answer();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  u.url = `http://127.0.0.1:${server.address().port}`;
  u.hold = () => (holding = true);
  u.release = () => {
    holding = false;
    for (const a of u.held.splice(0)) a();
  };
  u.close = () => new Promise((r) => (server.closeAllConnections(), server.close(r)));
  atExit(() => (server.closeAllConnections(), server.close()));
  return u;
}

/** A free TCP port on 127.0.0.1 (free a moment ago). */
export async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

// /usr/lib/erlang/erts-*/bin/epmd
function ertsEPMD() {
  try {
    return readdirSync('/usr/lib/erlang').filter((d) => d.startsWith('erts-')).map((d) => `/usr/lib/erlang/${d}/bin/epmd`);
  } catch {
    return [];
  }
}

function find(...paths) {
  for (const p of paths) if (p && existsSync(p)) return p;
  return undefined;
}

function inCI() {
  return !['', 'false', '0'].includes((process.env.CI ?? '').trim().toLowerCase());
}

/**
 * The binary, or undefined when it is missing outside CI (the caller skips);
 * in CI a missing server fails.
 */
export function need(name, ...paths) {
  const p = find(...paths);
  if (!p && inCI()) throw new Error(`${name} not found, and CI is set: install it (apt-get install ${name})`);
  return p;
}

/** Spawns a server in a process group of its own, killed (with its children) at exit. */
function spawnGroup(bin, args, opts) {
  const child = spawn(bin, args, { ...opts, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (out += d));
  let exited = false;
  child.on('exit', () => (exited = true));
  const kill = () => {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // gone already
    }
  };
  atExit(kill);
  return { child, output: () => out, exited: () => exited, kill };
}

const rabbitBin = () => need('rabbitmq-server', '/usr/lib/rabbitmq/bin/rabbitmq-server', '/usr/sbin/rabbitmq-server');

/** Whether a RabbitMQ node can be started here (undefined: skip; in CI a missing one fails). */
export function haveRabbitMQ() {
  return Boolean(rabbitBin() && need('erlang-base', '/usr/bin/epmd', ...ertsEPMD()));
}

/** Answers whether the broker at port speaks AMQP yet (RabbitMQ accepts connections before it has booted). */
function amqpOK(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.setTimeout(2000, () => (s.destroy(), resolve(false)));
    s.on('error', () => resolve(false));
    s.on('connect', () => s.write(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1')));
    s.on('data', (d) => (s.destroy(), resolve(d[0] === 1)));
  });
}

/**
 * Starts a RabbitMQ node of the test's own, as internal/brokertest does for
 * the Go tests: its own epmd, node name, ports, data, logs and config, no
 * plugins; never the system's on 5672. Returns its AMQP URL.
 */
export async function startRabbitMQ() {
  const bin = rabbitBin();
  const epmd = find('/usr/bin/epmd', ...ertsEPMD());
  let last;
  for (let attempt = 0; attempt < 5; attempt++) {
    const dir = tempDir('breakerbox-rabbit-');
    const [port, dist, epmdPort] = [await freePort(), await freePort(), await freePort()];
    const pm = spawnGroup(epmd, ['-d', '-d', '-d', '-port', String(epmdPort), '-address', '127.0.0.1'], { cwd: dir });
    try {
      await waitFor('epmd', () => {
        if (pm.exited()) throw new Error(`epmd exited: ${pm.output()}`);
        return pm.output().includes('entering the main select() loop');
      }, 10_000);
    } catch (err) {
      pm.kill();
      last = err;
      continue;
    }
    const files = {
      'rabbitmq.conf': `listeners.tcp.1 = 127.0.0.1:${port}\nloopback_users = none\n`,
      'advanced.config': '[].\n',
      enabled_plugins: '[].\n',
      'rabbitmq-env.conf': '',
    };
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    const node = `bbnode-${process.pid}-${port}@localhost`;
    const env = {
      ...process.env,
      HOME: dir,
      RABBITMQ_NODENAME: node,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(port),
      RABBITMQ_DIST_PORT: String(dist),
      RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(dir, 'log'),
      RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
      RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, 'advanced.config'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
      RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
      RABBITMQ_PID_FILE: join(dir, 'rabbitmq.pid'),
      ERL_CRASH_DUMP: join(dir, 'erl_crash.dump'),
      ERL_EPMD_ADDRESS: '127.0.0.1',
      ERL_EPMD_PORT: String(epmdPort),
    };
    const rabbit = spawnGroup(bin, [], { cwd: dir, env });
    try {
      await waitFor(`rabbitmq-server ${node}`, async () => {
        if (rabbit.exited()) throw new Error(`rabbitmq-server exited:\n${rabbit.output().slice(-4000)}`);
        return rabbit.output().includes('completed with') && (await amqpOK(port));
      }, 120_000);
      return { url: `amqp://guest:guest@127.0.0.1:${port}/`, kill: () => (rabbit.kill(), pm.kill()) };
    } catch (err) {
      rabbit.kill();
      pm.kill();
      last = err;
      if (!/already in use|eaddrinuse|dist_port_already_used/i.test(String(err.message))) break;
    }
  }
  throw last;
}

/** Whether redis-server is here (undefined: skip; in CI a missing one fails). */
export function haveRedis() {
  return Boolean(need('redis-server', '/usr/bin/redis-server', '/usr/sbin/redis-server'));
}

/** Starts a redis-server of the test's own on a free loopback port; returns its redis:// URL. */
export async function startRedis() {
  const bin = need('redis-server', '/usr/bin/redis-server', '/usr/sbin/redis-server');
  let last;
  for (let attempt = 0; attempt < 5; attempt++) {
    const dir = tempDir('breakerbox-redis-');
    const port = await freePort();
    const r = spawnGroup(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'yes'], { cwd: dir });
    try {
      await waitFor('redis-server', () => {
        if (r.exited()) throw new Error(`redis-server exited:\n${r.output()}`);
        return r.output().includes('Ready to accept connections');
      }, 30_000);
      return { url: `redis://127.0.0.1:${port}/0`, kill: r.kill };
    } catch (err) {
      r.kill();
      last = err;
      if (!/in use/i.test(String(err.message))) break;
    }
  }
  throw last;
}
