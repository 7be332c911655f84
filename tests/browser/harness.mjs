// Test support for the browser tests: real `stocky hub` and `stocky edge` processes on
// port 0 with temporary data directories, a REST helper, and headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core). Nothing is mocked.
//
// The binary is $STOCKY_BIN, else <target>/debug/stocky where <target> is
// $CARGO_TARGET_DIR or the repository's ./target (`cargo build -p stocky` first).

import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, '..', '..');

export function binary() {
  if (process.env.STOCKY_BIN) return process.env.STOCKY_BIN;
  const target = process.env.CARGO_TARGET_DIR || join(repo, 'target');
  return join(target, 'debug', 'stocky');
}

export function tempDir(prefix = 'stocky-browser-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

const QUIET = { RUST_LOG: process.env.RUST_LOG || 'warn', NO_COLOR: '1' };

/** Spawns `stocky <args>` and resolves once stdout says "listening on http://ADDR". */
function startProcess(args, env, label) {
  return new Promise((resolveStart, reject) => {
    const child = spawn(binary(), args, {
      env: { ...process.env, ...QUIET, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${label} did not start within 20 s\n${out}\n${err}`));
    }, 20000);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = out.match(/listening on http:\/\/(\S+)/);
      if (m && !child.started) {
        child.started = true;
        clearTimeout(timer);
        resolveStart({ child, addr: m[1], banner: () => out, stderr: () => err });
      }
    });
    child.stderr.on('data', (chunk) => {
      err += chunk;
      if (err.length > 200000) err = err.slice(-100000);
    });
    child.on('exit', (code, signal) => {
      if (!child.started) {
        clearTimeout(timer);
        reject(new Error(`${label} exited (${code ?? signal}) before listening\n${out}\n${err}`));
      }
    });
  });
}

/** `startProcess` on the port a stopped process had: it may linger in TIME_WAIT for a
 * moment after a stop, so the start is retried briefly. */
async function startAgain(args, env, label) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await startProcess(args, env, label);
    } catch (e) {
      if (attempt >= 20) throw e;
      await sleep(250);
    }
  }
}

function stopProcess(child, signal = 'SIGTERM') {
  return new Promise((done) => {
    if (child.exitCode !== null || child.signalCode !== null) return done();
    child.once('exit', () => done());
    child.kill(signal);
  });
}

/** A REST call: resolves to { status, body } (body parsed when JSON). */
export async function api(base, path, { token, method, body, headers } = {}) {
  const response = await fetch(base + path, {
    method: method || (body === undefined ? 'GET' : 'POST'),
    headers: {
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed = text;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: response.status, body: parsed };
}

/** Like `api`, but throws unless the status is 2xx; resolves to the body. */
export async function ok(base, path, options) {
  const r = await api(base, path, options);
  if (r.status < 200 || r.status > 299) {
    throw new Error(`${options?.method || (options?.body ? 'POST' : 'GET')} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  }
  return r.body;
}

export async function login(base, email, password) {
  return ok(base, '/api/auth/login', { body: { email, password } });
}

/**
 * A hub on a free port with its own data directory. `restart()` stops it (SIGTERM, or
 * SIGKILL with `{ kill: true }`) and starts it again on the same port and data.
 */
export async function startHub({ env = {} } = {}) {
  const dataDir = tempDir('stocky-hub-');
  const args = (port) => ['hub', '--port', String(port), '--data-dir', dataDir];
  const first = await startProcess(args(0), env, 'hub');
  const banner = first.banner();
  const owner = {
    email: banner.match(/owner account (\S+)/)[1],
    password: banner.match(/with password (\S+)/)[1],
  };
  const hub = {
    dataDir,
    addr: first.addr,
    url: `http://${first.addr}`,
    ws: `ws://${first.addr}/ws`,
    owner,
    process: first,
    async stop({ kill = false } = {}) {
      await stopProcess(hub.process.child, kill ? 'SIGKILL' : 'SIGTERM');
    },
    async start() {
      hub.process = await startAgain(args(hub.addr.split(':').pop()), env, 'hub');
    },
    async restart(options) {
      await hub.stop(options);
      await hub.start();
    },
    async dispose() {
      await hub.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  const session = await login(hub.url, owner.email, owner.password);
  hub.ownerToken = session.accessToken;
  return hub;
}

/** Creates the site at the hub unless it exists. */
export async function ensureSite(hub, siteId) {
  const sites = await ok(hub.url, '/api/admin/sites', { token: hub.ownerToken });
  const list = Array.isArray(sites) ? sites : sites.data || sites.sites || []; // the answer is {data:[…]}
  if (!list.some((s) => (s.id || s.siteId) === siteId)) {
    await ok(hub.url, '/api/admin/sites', { token: hub.ownerToken, body: { id: siteId, name: siteId } });
  }
}

/** Creates a user at the hub (owner's token; its site too) and resolves to { email, password, userId }. */
export async function createUser(hub, { email, password = 'correct horse battery 1', role, siteId }) {
  if (siteId) await ensureSite(hub, siteId);
  const created = await ok(hub.url, '/api/admin/users', {
    token: hub.ownerToken,
    body: { email, password, role, siteId },
  });
  return { email, password, userId: created.userId, role, siteId };
}

/**
 * A store node for `siteId` (created at the hub if needed), activated with a one-time code
 * and running on a free port. `stop()`/`start()` keep its data.
 */
export async function startEdge(hub, { siteId = 'store-1', env = {} } = {}) {
  await ensureSite(hub, siteId);
  const { code } = await ok(hub.url, `/api/admin/sites/${siteId}/activation-codes`, {
    token: hub.ownerToken,
    body: {},
  });
  const dataDir = tempDir('stocky-edge-');
  await promisify(execFile)(binary(), ['edge', 'activate', '--hub', hub.url, '--code', code, '--data-dir', dataDir], {
    env: { ...process.env, ...QUIET },
  });
  const args = (port) => ['edge', '--data-dir', dataDir, '--port', String(port), ...(env.EDGE_ARGS || [])];
  const first = await startProcess(args(0), env, 'edge');
  const edge = {
    siteId,
    dataDir,
    addr: first.addr,
    url: `http://${first.addr}`,
    ws: `ws://${first.addr}/ws`,
    process: first,
    async stop({ kill = false } = {}) {
      await stopProcess(edge.process.child, kill ? 'SIGKILL' : 'SIGTERM');
    },
    async start() {
      edge.process = await startAgain(args(edge.addr.split(':').pop()), env, 'edge');
    },
    async dispose() {
      await edge.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return edge;
}

/** Headless Chromium (Debian's), with the flags this closed network needs. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // Tabs in the background must keep their timers (leader hand-over, pings).
      '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
      '--disable-backgrounding-occluded-windows',
    ],
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` (sync or async) until it returns a truthy value, or throws after `ms`. */
export async function eventually(check, { ms = 10000, every = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    }
    await sleep(every);
  }
}

/** The number of WebSocket connections the server has open, by its `/api/stock/status`. */
export async function openConnections(server, token) {
  const status = await ok(server.url, '/api/stock/status', { token });
  return status.connectedClients ?? status.clients ?? status.connections;
}

// ---------------------------------------------------------------- pages (back office, register)

/** Signs in through a page's sign-in form (the hub's back office or an edge's register). */
export async function signInUI(page, email, password) {
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor({ timeout: 15000 });
}

/**
 * Collects a page's console errors and uncaught exceptions (CSP violations show up as
 * console errors), so a test can assert that a page ran cleanly. Network failures the test
 * causes on purpose can be filtered with `ignore` (regexps).
 */
export function watchErrors(page, { ignore = [] } = {}) {
  const errors = [];
  const keep = (text) => !ignore.some((re) => re.test(text));
  page.on('console', (m) => { if (m.type() === 'error' && keep(m.text())) errors.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => { if (keep(e.message)) errors.push(`pageerror: ${e.message}`); });
  return errors;
}
