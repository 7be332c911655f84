// Stocky pages: the helpers the hub's back office (/ui/backoffice.js) and the store's
// register (/ui/register.js) share. Served at /ui/app.js on both tiers; no build step, no
// dependencies, no inline script (the pages run under a strict CSP).
//
//  - session: the signed-in user's tokens in localStorage (`stocky.session`), shared by the
//    tabs of one origin; `api()` sends the access token, refreshes it ahead of expiry and
//    once after a 401 with POST /api/auth/refresh, and signs out when the refresh is
//    refused. Refresh tokens rotate, so this file is the only refresher: one tab refreshes
//    ahead of time (Web Lock `stocky-session-keeper`), refreshes run one at a time
//    (`stocky-auth-refresh`), and the SDK asks for the token through `freshToken()`.
//  - errors: `ApiError` from the API's {success:false,error:{code,message}} envelope, and
//    `describeError()` turning it into a sentence people can act on.
//  - DOM: `h()` builds elements from data with textContent only (nothing user-made ever
//    goes through innerHTML), `toast()` speaks through an aria-live region.
//  - `createRouter()`: a tiny #/hash router; `renderSignIn()`: the sign-in form
//    (POST /api/auth/login).
//  - live: `startLive()` opens the browser SDK (/sdk/stocky.js, `connect`) with the
//    session's tokens; `liveIndicator()` shows its `state` (live / reconnecting / offline).
//  - `runPage()`: a page's life: sign-in, start once signed in (shell, live, first load),
//    teardown on sign-out in any tab.
//  - sales and orders of both tiers: refunds, the orders board and `ordersPanel()` (the
//    orders view but for the page's toolbar, stats and texts).
//  - formatting of money, quantities, dates, and `uuid()` (crypto.randomUUID, or a v4
//    built from crypto.getRandomValues where the page is not a secure context).

const SESSION_KEY = 'stocky.session';
const REFRESH_AHEAD_MS = 60_000;

// ---------------------------------------------------------------- session

export const session = {
  get() {
    try {
      return JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
    } catch {
      return null;
    }
  },
  /** Stores a login or refresh answer ({accessToken, refreshToken, expiresAt, user}). */
  save(answer, extra = {}) {
    const previous = session.get() || {};
    const next = {
      ...previous,
      ...extra,
      accessToken: answer.accessToken,
      refreshToken: answer.refreshToken ?? previous.refreshToken,
      expiresAt: answer.expiresAt ?? previous.expiresAt,
      ttlMs: answer.expiresIn ? answer.expiresIn * 1000 : previous.ttlMs,
      user: answer.user ?? previous.user,
    };
    localStorage.setItem(SESSION_KEY, JSON.stringify(next));
    return next;
  },
  clear() {
    localStorage.removeItem(SESSION_KEY);
  },
  /** Calls `fn(session|null)` when another tab signs in, refreshes or signs out. */
  onChange(fn) {
    const handler = (e) => { if (e.key === SESSION_KEY || e.key === null) fn(session.get()); };
    window.addEventListener('storage', handler);
    return () => window.removeEventListener('storage', handler);
  },
};

const signedOutListeners = new Set();
/** `fn(reason)` runs when the session ends (refused refresh, sign-out in any tab). */
export function onSignedOut(fn) {
  signedOutListeners.add(fn);
  return () => signedOutListeners.delete(fn);
}
function endSession(reason) {
  session.clear();
  for (const fn of signedOutListeners) fn(reason);
}

/** How long before expiry a token is refreshed: a minute, or a quarter of a short lifetime. */
function aheadMs(s) {
  return Math.min(REFRESH_AHEAD_MS, (s?.ttlMs || Infinity) / 4);
}

function expiringSoon(s) {
  if (!s?.expiresAt) return false;
  return Date.parse(s.expiresAt) - Date.now() < aheadMs(s);
}

let refreshing = null;
/** A fresh access token (refreshing it if `failedToken` was refused or it expires soon). */
function refreshSession(failedToken) {
  if (!refreshing) {
    refreshing = withLock('stocky-auth-refresh', () => doRefresh(failedToken))
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

async function doRefresh(failedToken) {
  const s = session.get();
  if (!s?.refreshToken) throw new ApiError(401, 'unauthorized', 'signed out');
  // Another tab (or the SDK) may have refreshed while we waited for the lock.
  if (s.accessToken !== failedToken && !expiringSoon(s)) return s.accessToken;
  const tried = s.refreshToken;
  let response;
  try {
    response = await fetch('/api/auth/refresh', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ refreshToken: tried }),
    });
  } catch {
    throw new ApiError(0, 'network', 'network error');
  }
  const body = await readBody(response);
  if (response.ok) return session.save(body).accessToken;
  if (response.status === 401) {
    // Refused: maybe another tab used this refresh token first (they rotate). Its answer
    // reaches this tab's localStorage a moment later: wait for it before giving up.
    const other = await rotatedElsewhere(tried);
    if (other) return other.accessToken;
    endSession('expired');
    throw new ApiError(401, 'unauthorized', 'session expired');
  }
  throw errorFrom(response.status, body);
}

/** The session another tab stored after rotating `tried`, if one shows up within 2 s. */
async function rotatedElsewhere(tried) {
  for (let i = 0; i < 20; i++) {
    const now = session.get();
    if (!now) return null;
    if (now.refreshToken && now.refreshToken !== tried) return now;
    await new Promise((r) => setTimeout(r, 100));
  }
  return null;
}

async function withLock(name, fn) {
  if (navigator.locks?.request) return navigator.locks.request(name, fn);
  return fn();
}

// ---------------------------------------------------------------- REST

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

async function readBody(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function errorFrom(status, body) {
  const err = body && typeof body === 'object' ? body.error : null;
  if (err && typeof err === 'object') return new ApiError(status, err.code, err.message, body);
  return new ApiError(status, `http_${status}`, typeof body === 'string' && body ? body : `HTTP ${status}`, body);
}

/**
 * A REST call to this origin with the session's token. Resolves to the parsed body;
 * rejects with an ApiError (status 0, code `network` when the server cannot be reached).
 * Options: method, body (JSON), headers, idempotencyKey, ifMatch, deviceId, auth (default true).
 */
export async function api(path, options = {}) {
  const { method, body, headers = {}, idempotencyKey, ifMatch, deviceId, auth = true } = options;
  let s = session.get();
  let token = s?.accessToken;
  if (auth && s && expiringSoon(s)) {
    try { token = await refreshSession(token); } catch (e) { if (e.status === 401) throw e; }
  }
  const send = (bearer) => {
    const h = { ...headers };
    if (body !== undefined) h['Content-Type'] = 'application/json';
    if (auth && bearer) h.Authorization = `Bearer ${bearer}`;
    if (idempotencyKey) h['Idempotency-Key'] = idempotencyKey;
    if (ifMatch !== undefined && ifMatch !== null) h['If-Match'] = String(ifMatch);
    if (deviceId) h['X-Device-Id'] = deviceId;
    return fetch(path, {
      method: method || (body === undefined ? 'GET' : 'POST'),
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  };
  let response;
  try {
    response = await send(token);
    if (response.status === 401 && auth && token) {
      token = await refreshSession(token);
      response = await send(token);
    }
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw new ApiError(0, 'network', 'network error');
  }
  const parsed = await readBody(response);
  if (!response.ok) {
    if (response.status === 401 && auth) endSession('expired');
    throw errorFrom(response.status, parsed);
  }
  return parsed;
}

/** Signs in with POST /api/auth/login; stores and returns the session. */
export async function signIn(email, password, deviceId) {
  const answer = await api('/api/auth/login', {
    body: { email, password, ...(deviceId ? { deviceId } : {}) },
    auth: false,
  });
  return session.save(answer, { email: email.trim().toLowerCase() });
}

/** Ends the session here and in every tab (POST /api/auth/logout, best effort). */
export async function signOut() {
  const s = session.get();
  if (s?.accessToken) {
    fetch('/api/auth/logout', { method: 'POST', headers: { Authorization: `Bearer ${s.accessToken}` } })
      .catch(() => {});
  }
  endSession('signed-out');
}

// ---------------------------------------------------------------- errors people can read

const MESSAGES = {
  network: "Can't reach the server. Check the network connection and try again.",
  unauthorized: 'Your session has ended. Please sign in again.',
  rate_limited: 'Too many attempts in a short time. Wait a moment, then try again.',
  unavailable: 'The server cannot save or read right now. Nothing was changed; try again shortly.',
  version_conflict: 'Someone changed this at the same time. The view was refreshed: please try again.',
  sale_cancelled: 'This sale was voided, so it cannot be changed any more.',
  site_offline: 'One of the two stores is offline. A transfer needs both stores online to be requested.',
  weak_password: 'The password needs at least 8 characters.',
  wrong_password: 'The current password is not right.',
  invalid_email: "That email address doesn't look right.",
  product_exists: 'A product with this number already exists.',
  transfer_rejected: 'This transfer was rejected already.',
  transfer_approved: 'This transfer was approved already, so it cannot be rejected.',
  body_too_large: 'That is too much data for one request.',
  activation_code_unknown: 'No such activation code.',
};

/** A sentence for `err` (an ApiError or any Error) that a person can act on. */
export function describeError(err, { action } = {}) {
  if (!(err instanceof ApiError)) return err?.message || 'Something went wrong.';
  const prefix = action ? `${action}: ` : '';
  const server = err.message && !/^HTTP \d+$/.test(err.message) ? err.message : '';
  if (err.code === 'insufficient_stock') {
    const m = /Actual:\s*(-?\d+),\s*Solicitado:\s*(\d+)/.exec(server);
    return prefix + (m ? `Not enough stock: ${m[1]} on hand, ${m[2]} requested.` : 'Not enough stock.');
  }
  if (err.code === 'forbidden') return `${prefix}Not allowed${server ? ` (${server})` : ''}.`;
  if (err.code === 'refund_exceeds_sale') return `${prefix}That is more than is left to refund${server ? ` (${server})` : ''}.`;
  if (MESSAGES[err.code]) return prefix + MESSAGES[err.code];
  if (err.status === 404) return `${prefix}Not found${server ? `: ${server}` : ''}.`;
  if (err.status >= 500) return `${prefix}The server had a problem (${err.status}). Try again shortly.`;
  return prefix + (server ? capitalize(server) : `The request failed (${err.status}).`);
}

function capitalize(text) {
  const t = String(text);
  return t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? '' : '.');
}

// ---------------------------------------------------------------- DOM

/**
 * Builds an element. `props`: class, text, dataset ({k: v}), on ({event: fn}), attrs
 * ({name: value}; null/false leaves it out), and plain properties (value, type, …).
 * Children: nodes, strings (as text), arrays, null/false (skipped).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === 'class') el.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'on') for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (key === 'attrs') {
      for (const [name, v] of Object.entries(value)) {
        if (v === null || v === undefined || v === false) continue;
        el.setAttribute(name, v === true ? '' : String(v));
      }
    } else el[key] = value;
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces `el`'s children. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Highlights `el` briefly (a value that just changed). */
export function flash(el) {
  if (!el) return;
  el.classList.remove('flash');
  void el.offsetWidth; // restart the animation
  el.classList.add('flash');
  el.dataset.changedAt = String(Date.now());
}

let toastRegion;
/** A short message in the corner, read out by screen readers. kind: ok | bad | warn | info. */
export function toast(message, kind = 'info', ms = 5000) {
  if (!toastRegion) {
    toastRegion = h('div', { class: 'toasts', attrs: { role: 'status', 'aria-live': 'polite', 'data-testid': 'toasts' } });
    document.body.append(toastRegion);
  }
  const item = h('div', { class: ['toast', kind], text: message });
  toastRegion.append(item);
  setTimeout(() => item.remove(), kind === 'bad' ? Math.max(ms, 8000) : ms);
}

/** A labelled form field: { label, input, hint }. */
export function field(label, input, hint) {
  if (!input.id) input.id = `f-${Math.random().toString(36).slice(2, 9)}`;
  const hintEl = hint ? h('span', { class: 'hint', id: `${input.id}-hint`, text: hint }) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { attrs: { for: input.id }, text: label }), input, hintEl);
}

/** A <select> of [value, label] pairs. */
export function select(options, { value, label, ...props } = {}) {
  const el = h('select', props, options.map(([v, text]) => h('option', { value: v, text })));
  if (value !== undefined) el.value = value;
  if (label) el.setAttribute('aria-label', label);
  return el;
}

/** A status pill: kind ok | warn | bad | info | neutral. */
export function pill(text, kind = 'neutral', props = {}) {
  return h('span', { ...props, class: ['pill', kind, props.class] , text });
}

/** Opens a modal <dialog> holding `content`; resolves when it closes. */
export function openDialog(title, build) {
  const titleId = `d-${Math.random().toString(36).slice(2, 9)}`;
  const dialog = h('dialog', { attrs: { 'aria-labelledby': titleId } });
  const close = () => dialog.close();
  const body = h('div', { class: 'dialog-body' }, h('h2', { id: titleId, text: title }));
  dialog.append(body);
  append(body, [build(close)]);
  document.body.append(dialog);
  dialog.addEventListener('close', () => dialog.remove());
  dialog.showModal();
  const first = dialog.querySelector('input, select, textarea, button');
  if (first) first.focus();
  return dialog;
}

// ---------------------------------------------------------------- router

/**
 * A #/hash router: `onRoute({name, params, path})` runs at start and on every change.
 * `#/sales/abc` gives name "sales", params ["abc"].
 */
export function createRouter(onRoute) {
  const current = () => {
    const path = decodeURIComponent(location.hash.replace(/^#\/?/, ''));
    const [name = '', ...params] = path.split('/');
    return { name, params, path };
  };
  window.addEventListener('hashchange', () => onRoute(current()));
  return {
    current,
    start: () => onRoute(current()),
    go: (path) => {
      const target = `#/${path}`;
      if (location.hash === target) onRoute(current());
      else location.hash = target;
    },
  };
}

// ---------------------------------------------------------------- sign-in

/**
 * Renders the sign-in form into `root`. `onSignedIn(session)` runs after a successful
 * POST /api/auth/login. Options: title, subtitle, note (a line under the form), deviceId.
 */
export function renderSignIn(root, { title, subtitle, note, deviceId, onSignedIn }) {
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true });
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const error = h('div', { class: 'form-error', attrs: { role: 'alert', 'data-testid': 'signin-error' } });
  const submit = h('button', { class: 'btn primary', type: 'submit', text: 'Sign in' });
  const form = h('form', { attrs: { 'aria-labelledby': 'signin-title', novalidate: true } },
    error,
    field('Email', email),
    field('Password', password),
    submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    if (!email.value.trim() || !password.value) {
      error.textContent = 'Enter your email and password.';
      (email.value.trim() ? password : email).focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      const s = await signIn(email.value, password.value, deviceId);
      onSignedIn(s);
    } catch (err) {
      error.textContent = err.status === 401
        ? 'Wrong email or password.'
        : describeError(err);
      password.select();
      password.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = 'Sign in';
    }
  });
  mount(root, h('main', { class: 'signin-wrap', id: 'main' },
    h('section', { class: 'signin' },
      h('div', { class: 'brand' }, h('img', { src: '/favicon.svg', alt: '' }), 'Stocky', subtitle ? h('small', { text: subtitle }) : null),
      h('h1', { id: 'signin-title', text: title }),
      form,
      note ? h('p', { class: 'foot', text: note }) : null)));
  email.focus();
}

// ---------------------------------------------------------------- live (browser SDK)

const STATE_TEXT = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
};

/**
 * Opens the live connection through the browser SDK. The SDK asks for the access token
 * through a function, so this file stays the only one that refreshes it (refresh tokens
 * rotate: two refreshers would race); when the server closes the socket for an expired
 * token (4001) the SDK asks again and gets a fresh one. Also keeps the session fresh ahead
 * of expiry. Resolves to the SDK client, or to a stand-in that stays `offline` if the SDK
 * cannot be loaded (the pages then work on REST alone and say so).
 */
export async function startLive({ deviceId } = {}) {
  keepFresh();
  let sdk = null;
  try {
    sdk = await import('/sdk/stocky.js');
  } catch (e) {
    console.warn('browser SDK unavailable', e);
  }
  if (!sdk || typeof sdk.connect !== 'function' || !session.get()) return offlineLive();
  try {
    return sdk.connect({ token: freshToken, deviceId });
  } catch (e) {
    console.warn('browser SDK refused to start', e);
    return offlineLive();
  }
}

/** The stored access token, refreshed first when it has expired or expires soon. */
export async function freshToken() {
  const s = session.get();
  if (!s) throw new Error('signed out');
  if (expiringSoon(s)) return refreshSession(s.accessToken);
  return s.accessToken;
}

let freshTimer = null;
let keeper = null; // null, 'waiting' or 'holding'
/**
 * Refreshes the session a little before it expires. One tab does it (the holder of the Web
 * Lock `stocky-session-keeper`; another takes over when it closes), so the tabs do not
 * race to rotate the same refresh token; the others refresh only when they must.
 */
function keepFresh() {
  if (keeper === 'holding') { scheduleRefresh(); return; }
  if (keeper) return;
  keeper = 'waiting';
  const hold = () => {
    keeper = 'holding';
    scheduleRefresh();
    return new Promise(() => {}); // held for the life of the tab
  };
  if (navigator.locks?.request) navigator.locks.request('stocky-session-keeper', hold).catch(() => {});
  else hold();
}

function scheduleRefresh() {
  clearTimeout(freshTimer);
  const s = session.get();
  if (!s?.expiresAt) return;
  const ahead = aheadMs(s);
  const wait = Math.max(1_000, Date.parse(s.expiresAt) - Date.now() - ahead - Math.min(30_000, ahead / 2));
  freshTimer = setTimeout(async () => {
    try {
      await freshToken();
    } catch { /* a REST call or the socket will try again */ }
    if (session.get()) scheduleRefresh();
  }, Math.min(wait, 2 ** 31 - 1));
}

function offlineLive() {
  return {
    state: 'offline',
    unavailable: true,
    on(type, fn) {
      if (type === 'state') queueMicrotask(() => fn('offline'));
      return () => {};
    },
    send: () => Promise.reject(new Error('live connection unavailable')),
    close() {},
  };
}

/** The state of `live` ('connecting' | 'live' | 'reconnecting' | 'offline') from an SDK 'state' notification. */
export function stateOf(live, notification) {
  if (typeof notification === 'string') return notification;
  return notification?.state || live?.state || 'connecting';
}

/** A pill that follows the SDK's `state` (aria-live, data-state for tests). */
export function liveIndicator(live) {
  const el = h('span', {
    class: 'pill live',
    attrs: { role: 'status', 'aria-live': 'polite', 'data-testid': 'live-state', title: 'Live updates' },
  });
  const show = (state) => {
    el.dataset.state = state;
    el.textContent = STATE_TEXT[state] || state;
    if (live?.unavailable) el.title = 'Live updates are not available: the page works on REST alone';
  };
  show(live?.state || 'connecting');
  live?.on?.('state', (n) => show(stateOf(live, n)));
  return el;
}

// ---------------------------------------------------------------- page lifecycle

/**
 * Runs a page for signed-in people: the sign-in form while signed out (again when the
 * session ends in any tab), else the page, started once a session appears in any tab.
 * `page` is the page's state; this keeps its started, user, live, view, router,
 * unsubscribe (functions run on sign-out) and timers (intervals cleared on sign-out).
 * Options: root (the page's element), route (the #/hash router's handler), deviceId,
 * signIn {documentTitle, title, subtitle, note}, shell(liveSlot) to draw the signed-in
 * frame (liveSlot becomes the live indicator) and start what needs no live connection,
 * onEvent(ev) for every live event, onFullRefresh() before the open view reloads on
 * 'full_refresh', load() for what the first route needs (a failure is toasted).
 */
export function runPage(page, { root, route, deviceId, signIn: texts, shell, onEvent, onFullRefresh, load }) {
  function showSignIn() {
    teardown();
    root.setAttribute('aria-busy', 'false');
    document.title = texts.documentTitle;
    renderSignIn(root, {
      title: texts.title,
      subtitle: texts.subtitle,
      deviceId,
      note: texts.note,
      onSignedIn: () => start(),
    });
  }

  function teardown() {
    page.view?.destroy?.();
    page.view = null;
    for (const off of page.unsubscribe || []) off();
    for (const t of page.timers || []) clearInterval(t);
    page.unsubscribe = [];
    page.timers = [];
    page.live?.close?.();
    page.live = null;
    page.started = false;
  }

  async function start() {
    if (page.started) return;
    page.started = true;
    const s = session.get();
    page.user = { ...(s.user || {}), email: s.email };
    const liveSlot = h('span');
    shell(liveSlot);
    root.setAttribute('aria-busy', 'false');
    page.live = await startLive({ deviceId });
    if (!page.started) { page.live.close?.(); return; }
    liveSlot.replaceWith(liveIndicator(page.live));
    page.unsubscribe.push(
      page.live.on('*', onEvent),
      page.live.on('full_refresh', () => { onFullRefresh?.(); page.view?.reload?.(); }),
    );
    try {
      await load?.();
    } catch (err) {
      toast(describeError(err), 'bad');
    }
    if (page.started) page.router.start();
  }

  wireSkipLink();
  page.router = createRouter(route);
  onSignedOut(() => showSignIn());
  session.onChange((s) => {
    if (!s) showSignIn();
    else if (!page.started) start();
  });
  if (session.get()) start();
  else showSignIn();
}

// ---------------------------------------------------------------- formatting

const moneyFormat = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const qtyFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 3 });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const clockFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

export const fmt = {
  money: (n) => (n === null || n === undefined || Number.isNaN(Number(n)) ? '—' : moneyFormat.format(Number(n))),
  qty: (n) => (n === null || n === undefined ? '—' : qtyFormat.format(Number(n))),
  dateTime: (iso) => (iso ? dateTimeFormat.format(new Date(iso)) : '—'),
  time: (iso) => (iso ? timeFormat.format(new Date(iso)) : '—'),
  clock: (iso) => (iso ? clockFormat.format(new Date(iso)) : '—'),
  /** "just now", "5 min ago", "3 h ago", "2 days ago". */
  ago(iso) {
    if (!iso) return 'never';
    const secs = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
    if (secs < 10) return 'just now';
    if (secs < 60) return `${secs} s ago`;
    if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
    if (secs < 86400) return `${Math.floor(secs / 3600)} h ago`;
    return `${Math.floor(secs / 86400)} days ago`;
  },
  /** Today's date, YYYY-MM-DD, in UTC (the sales API's `day`). */
  utcDay: (d = new Date()) => d.toISOString().slice(0, 10),
  /** Today's date, YYYY-MM-DD, in the browser's time zone. */
  localDay(d = new Date()) {
    const pad = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  },
};

/** Whole cents of an amount (prices have at most two decimals). */
export const cents = (amount) => Math.round(Number(amount || 0) * 100);

// ---------------------------------------------------------------- ids and roles

/** A UUID v4: crypto.randomUUID where available (secure contexts), else from getRandomValues. */
export function uuid() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** This browser's device id for `prefix` (kept in localStorage): e.g. "register-3f9a1c". */
export function deviceId(prefix) {
  const key = `stocky.deviceId.${prefix}`;
  let id = localStorage.getItem(key);
  if (!id) {
    id = `${prefix}-${uuid().slice(0, 8)}`;
    localStorage.setItem(key, id);
  }
  return id;
}

const RANK = { cashier: 1, manager: 2, admin: 3, owner: 4 };
/** Whether `role` is at least `least` (cashier < manager < admin < owner). */
export function atLeast(role, least) {
  return (RANK[role] || 0) >= (RANK[least] || 99);
}

/** Makes the page's "Skip to content" link focus #main without touching the #/hash route. */
export function wireSkipLink() {
  const link = document.querySelector('.skip-link');
  if (!link || link.dataset.wired) return;
  link.dataset.wired = '1';
  link.addEventListener('click', (e) => {
    e.preventDefault();
    const main = document.getElementById('main');
    if (main) {
      main.setAttribute('tabindex', '-1');
      main.focus();
    }
  });
}

// ---------------------------------------------------------------- sales (both tiers)

const SALE_STATUS = {
  completed: ['Completed', 'ok'],
  pending: ['Payment pending', 'warn'],
  partially_refunded: ['Partly refunded', 'info'],
  refunded: ['Refunded', 'neutral'],
  cancelled: ['Voided', 'bad'],
};

export function saleStatusPill(status) {
  const [text, kind] = SALE_STATUS[status] || [status, 'neutral'];
  return pill(text, kind, { attrs: { 'data-status': status } });
}

/** Per product of `sale`: [{productId, sold, returned, left, unitPrice}] (refunds and void). */
export function saleLeft(sale) {
  const rows = new Map();
  for (const line of sale.lines || []) {
    const row = rows.get(line.productId) || { productId: line.productId, sold: 0, returned: 0, value: 0 };
    row.sold += line.quantity;
    row.value += cents(line.total);
    rows.set(line.productId, row);
  }
  const back = [...(sale.refunds || []).flatMap((r) => r.lines || []), ...((sale.void && sale.void.lines) || [])];
  for (const line of back) {
    const row = rows.get(line.productId);
    if (row) row.returned += line.quantity;
  }
  return [...rows.values()].map((r) => ({ ...r, left: Math.max(0, r.sold - r.returned), unitCents: r.sold ? r.value / r.sold : 0 }));
}

/** What was given back of `sale`, in cents (refunds and void, at the lines' net prices). */
export function refundedCents(sale) {
  return saleLeft(sale).reduce((sum, r) => sum + Math.round(Math.min(r.returned, r.sold) * r.unitCents), 0);
}

/** "2 × Café 250 g, 1 × Tea" for a sale's or order's lines. */
export function linesSummary(lines, productName) {
  return (lines || []).map((l) => `${fmt.qty(l.quantity)} × ${l.name || productName(l.productId)}`).join(', ');
}

/**
 * The refund dialog for `sale`: a quantity per product still refundable and a reason.
 * POST /api/sales/{id}/refunds with a refund UUID made when the dialog opens, so a
 * retry of the same refund is never a second one. `onDone(sale)` gets the sale after it.
 */
export function refundDialog(sale, { productName, deviceId, onDone }) {
  const refundId = uuid();
  openDialog('Refund', (close) => {
    const left = saleLeft(sale).filter((r) => r.left > 0);
    const error = h('div', { class: 'form-error', attrs: { role: 'alert' } });
    const inputs = left.map((r) => h('input', {
      type: 'number', min: '0', max: String(r.left), step: '1', value: String(r.left),
      attrs: { 'aria-label': `Quantity of ${productName(r.productId)} to refund`, 'data-product-id': r.productId },
    }));
    const reason = h('input', { type: 'text', maxLength: 500, placeholder: 'e.g. damaged, customer changed mind' });
    const submit = h('button', { class: 'btn primary', type: 'submit', text: 'Refund' });
    const form = h('form', {},
      error,
      left.length
        ? h('table', { class: 'table' },
          h('thead', {}, h('tr', {}, h('th', { text: 'Product' }), h('th', { class: 'num', text: 'Sold' }), h('th', { class: 'num', text: 'Left' }), h('th', { class: 'num', text: 'Refund' }))),
          h('tbody', {}, left.map((r, i) => h('tr', {},
            h('td', { text: productName(r.productId) }),
            h('td', { class: 'num', text: fmt.qty(r.sold) }),
            h('td', { class: 'num', text: fmt.qty(r.left) }),
            h('td', { class: 'num' }, inputs[i])))))
        : h('p', { class: 'empty', text: 'Nothing is left to refund on this sale.' }),
      field('Reason (optional)', reason),
      h('div', { class: 'form-actions' },
        h('button', { class: 'btn', type: 'button', text: 'Cancel', on: { click: close } }),
        left.length ? submit : null));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const lines = left
        .map((r, i) => ({ productId: r.productId, quantity: Number(inputs[i].value) }))
        .filter((l) => l.quantity > 0);
      if (!lines.length) { error.textContent = 'Choose at least one item to refund.'; return; }
      if (lines.some((l) => !Number.isInteger(l.quantity))) { error.textContent = 'Quantities are whole numbers.'; return; }
      submit.disabled = true;
      try {
        const answer = await api(`/api/sales/${encodeURIComponent(sale.id)}/refunds`, {
          body: { id: refundId, lines, ...(reason.value.trim() ? { reason: reason.value.trim() } : {}) },
          deviceId,
        });
        toast('Refund recorded.', 'ok');
        close();
        onDone?.(answer.sale);
      } catch (err) {
        error.textContent = describeError(err);
        submit.disabled = false;
      }
    });
    return form;
  });
}

// ---------------------------------------------------------------- orders (both tiers)

/** The board's columns, in the order an order moves through them. */
export const ORDER_FLOW = ['pending', 'accepted', 'preparing', 'ready', 'delivered'];
const ORDER_LABEL = {
  pending: 'New', accepted: 'Accepted', preparing: 'Preparing', ready: 'Ready', delivered: 'Delivered', cancelled: 'Cancelled',
};
const ORDER_NEXT = {
  pending: ['accepted', 'Accept'], accepted: ['preparing', 'Start preparing'], preparing: ['ready', 'Mark ready'], ready: ['delivered', 'Delivered'],
};

export const orderLabel = (status) => ORDER_LABEL[status] || status;

/**
 * One order as a card: its daily number (or "awaiting a number"), channel, customer,
 * lines and notes, and buttons that move it on (`onStatus(order, status)`).
 */
export function orderCard(order, { onStatus, showSite = false } = {}) {
  const next = ORDER_NEXT[order.status];
  const customer = order.customer && (order.customer.firstName || order.customer.name || order.customer.phone);
  const number = order.dailyNumber != null
    ? h('span', { class: 'num-big', attrs: { 'data-testid': 'daily-number' }, text: `#${order.dailyNumber}` })
    : h('span', { class: 'num-big none', text: 'Awaiting number' });
  return h('li', { class: 'order-card', dataset: { orderId: order.id, status: order.status }, attrs: { 'aria-label': `Order ${order.dailyNumber != null ? `number ${order.dailyNumber}` : 'awaiting a number'}` } },
    h('div', {}, number),
    h('div', { class: 'meta' }, [
      showSite ? order.siteId : null,
      order.channel ? `${order.channel}${order.externalId ? ` ${order.externalId}` : ''}` : null,
      fmt.clock(order.createdAt),
    ].filter(Boolean).join(' · ')),
    customer ? h('div', { class: 'small', text: String(customer) }) : null,
    h('ul', { class: 'lines' }, (order.lines || []).map((l) => h('li', { text: `${fmt.qty(l.quantity)} × ${l.name || (l.productId != null ? `item ${l.productId}` : 'item')}` }))),
    order.notes ? h('div', { class: 'small muted', text: `Note: ${order.notes}` }) : null,
    onStatus && (next || order.status !== 'cancelled') && order.status !== 'delivered'
      ? h('div', { class: 'actions' },
        next ? h('button', { class: 'btn small primary', type: 'button', text: next[1], on: { click: () => onStatus(order, next[0]) } }) : null,
        order.status !== 'cancelled'
          ? h('button', { class: 'btn small danger', type: 'button', text: 'Cancel', attrs: { 'aria-label': `Cancel order ${order.dailyNumber ?? ''}`.trim() }, on: { click: () => onStatus(order, 'cancelled') } })
          : null)
      : null);
}

/** Changes an order's status with PATCH /api/orders/{id} at its version. */
export async function setOrderStatus(order, status) {
  const answer = await api(`/api/orders/${encodeURIComponent(order.id)}`, {
    method: 'PATCH', body: { status }, ifMatch: order.version,
  });
  return answer.order;
}

/** Count per status and the numbers of the day's orders: {total, awaiting, byStatus}. */
export function orderStats(orders) {
  const byStatus = {};
  for (const o of orders) byStatus[o.status] = (byStatus[o.status] || 0) + 1;
  return { total: orders.length, awaiting: orders.filter((o) => o.dailyNumber == null && o.status !== 'cancelled').length, byStatus };
}

/** The orders board: a column per status of ORDER_FLOW, cancelled ones counted apart. */
export function ordersBoard(orders, { onStatus, showSite } = {}) {
  const cols = ORDER_FLOW.map((status) => {
    const list = orders.filter((o) => o.status === status);
    return h('section', { class: 'order-col', attrs: { 'aria-label': `${orderLabel(status)} orders`, 'data-column': status } },
      h('h2', {}, orderLabel(status), pill(String(list.length), 'neutral', { class: 'plain' })),
      list.length
        ? h('ul', {}, list.map((o) => orderCard(o, { onStatus, showSite })))
        : h('p', { class: 'muted small', text: 'None' }));
  });
  return h('div', { class: 'order-board', attrs: { 'data-testid': 'orders-board' } }, cols);
}

/** Orders sorted as the API lists them: numbered by day and number, then the others by creation. */
export function sortOrders(orders) {
  return [...orders].sort((a, b) => {
    const an = a.dailyNumber == null ? 1 : 0;
    const bn = b.dailyNumber == null ? 1 : 0;
    if (an !== bn) return an - bn;
    if (!an) {
      if (a.businessDay !== b.businessDay) return String(a.businessDay).localeCompare(String(b.businessDay));
      if (a.dailyNumber !== b.dailyNumber) return a.dailyNumber - b.dailyNumber;
    }
    return String(a.createdAt).localeCompare(String(b.createdAt));
  });
}

/**
 * What an orders page shares: the day's orders and those awaiting a number (GET
 * /api/orders twice, merged by id) as the board in `body`, the page's stats in `stats`,
 * status changes (PATCH at the order's version; a conflict reloads) and the events
 * order_created / order_updated (a changed card flashes). The page keeps its toolbar:
 * day() is the business day shown, query(params) the GET query for {day} or {pending},
 * inView(order) whether an order belongs to what is shown, renderStats(orders) the stat
 * tiles, renderError(err, retry) the failure, board() more ordersBoard options, empty the
 * text when there are none. Loads at once; returns the view ({onEvent, reload}).
 */
export function ordersPanel({ stats, body, day, query, inView, renderStats, renderError, board = () => ({}), empty }) {
  let orders = [];

  async function load() {
    try {
      const [ofDay, pending] = await Promise.all([
        api(`/api/orders?${query({ day: day() })}`),
        api(`/api/orders?${query({ pending: 'true' })}`),
      ]);
      const byId = new Map();
      for (const o of [...(ofDay.data || []), ...(pending.data || [])]) byId.set(o.id, o);
      orders = sortOrders([...byId.values()]);
      render();
    } catch (err) {
      mount(body, renderError(err, load));
    }
  }

  function render() {
    mount(stats, renderStats(orders));
    mount(body, orders.length
      ? ordersBoard(orders, { ...board(), onStatus: changeStatus })
      : h('div', { class: 'card' }, h('p', { class: 'empty', text: empty })));
  }

  async function changeStatus(order, status) {
    try {
      upsert(await setOrderStatus(order, status), true);
    } catch (err) {
      toast(describeError(err), 'bad');
      if (err.code === 'version_conflict') load();
    }
  }

  function upsert(order, highlight) {
    if (!order?.id) return;
    const i = orders.findIndex((o) => o.id === order.id);
    if (i >= 0 && orders[i].version > order.version) return; // older than shown
    if (i >= 0) orders[i] = order;
    else if (inView(order)) orders.push(order);
    else return;
    orders = sortOrders(orders.filter(inView));
    render();
    if (highlight) flash(body.querySelector(`[data-order-id="${CSS.escape(order.id)}"]`));
  }

  function onEvent(ev) {
    if (ev.event === 'order_created' || ev.event === 'order_updated') upsert(ev.data, true);
  }

  load();
  return { onEvent, reload: load };
}
