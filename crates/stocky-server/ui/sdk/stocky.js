// stocky.js — the Stocky browser SDK (plain ES module, no build step, no dependencies).
// Served by every hub and edge at /sdk/stocky.js; types at /sdk/stocky.d.ts; reference in
// docs/browser-sdk.md; protocol in docs/protocol.md §2.
//
//   import { connect } from '/sdk/stocky.js';
//   const s = connect({ token });
//   s.on('stock:update', (e) => …); s.on('state', ({ state }) => …);
//   await s.send('stock:add', [{ productId: 1, quantity: 5 }]);
//
// Invariants:
// 1. One WebSocket per user per browser. The tabs of one user (the "scope": server, tenant,
//    user) elect a leader with the Web Locks API (a BroadcastChannel heartbeat election
//    where navigator.locks is missing); only the leader holds a socket. Everything else
//    travels over a BroadcastChannel named after the scope.
// 2. Every tab keeps its own position (epoch, lastEventId) and applies "chain entries" in
//    order: an event whose `prev` <= position < `id` is delivered and advances the position;
//    `id` <= position is a duplicate and is dropped; `prev` > position (or another epoch) is
//    a gap. So each tab's handlers see every event once, in id order, whatever reaches it
//    twice (hand-over, replay, resend). All tabs are the same principal, so they are
//    entitled to the same events and one connection's `prev` chain is valid for all.
// 3. The leader turns socket frames into entries (events, non-duplicate acks, sync_complete
//    positions, full_refresh resets), applies them, and broadcasts only the ones it applied:
//    followers receive a gap-free chain. A gap on the socket → one `request_sync` at a time.
// 4. Every tab keeps the last entries it applied (a ring). A follower with a gap asks the
//    leader, which resends from its ring; what the ring no longer holds becomes a local
//    full_refresh (REST snapshot) in that tab. A new leader resumes the socket from its own
//    position (?lastEventId=&epoch=), which it persists in localStorage after every entry.
// 5. Commands carry an opId (generated if the caller gave none). They wait in the leader's
//    outbox until the socket is live and are re-sent with the same opId after a reconnect or
//    a hand-over (the server answers a repeat with a duplicate ack), so a send is answered
//    once: its ack, or its stock:error, routed back to the calling tab by opId.
// 6. Never a tight loop: reconnects back off exponentially with jitter (10 fast tries, then
//    about a minute apart); 1008 (after one re-authentication), 1009 and 4002 stop.

export const VERSION = '1.0.0';

const DEFAULTS = {
  pingInterval: 30_000, // app-level ping while live; 2 silent intervals → reconnect
  sendTimeout: 30_000, // a send without an answer by then rejects with code 'timeout'
  maxQueue: 1000, // sends waiting for an answer, per tab
  refreshBefore: 60_000, // refresh the access token this long before it expires
  ringSize: 2000, // entries each tab keeps for followers that fell behind
  connectTimeout: 15_000, // from opening the socket to auth_success
  fetchTimeout: 10_000, // REST calls (token refresh, snapshot)
  stableAfter: 5_000, // a connection live this long resets the backoff
};
const FAST_TRIES = 10;
const BEAT_EVERY = 250; // fallback election: leader heartbeat period
const BEAT_LOST = 1000; // fallback election: no heartbeat this long → claim
const RESEND_WAIT = 2000; // a follower asks again for a resend after this long

/** What `send` rejects with (and what other failures are reported as). */
export class StockyError extends Error {
  constructor(code, message, extra = {}) {
    super(message);
    this.name = 'StockyError';
    this.code = code;
    Object.assign(this, extra);
  }
}

/** Milliseconds to wait before reconnect attempt `attempt` (0-based). */
export function backoffDelay(attempt, random = Math.random) {
  if (attempt < FAST_TRIES) {
    const base = Math.min(30_000, 500 * 2 ** attempt);
    return Math.round(base * (0.5 + random())); // ±50 %
  }
  return Math.round(60_000 * (0.75 + 0.5 * random())); // 45–75 s, forever
}

/** Starts (or joins) the user's shared connection. See docs/browser-sdk.md. */
export function connect(options = {}) {
  return new Session(options);
}

// ---------------------------------------------------------------------------- helpers

function randomHex(bytes) {
  const b = new Uint8Array(bytes);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** The payload of a JWT, or null. No signature check: only used to name the scope. */
export function jwtClaims(token) {
  const parts = typeof token === 'string' ? token.split('.') : [];
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
  } catch {
    return null;
  }
}

function shortHash(text) {
  let h = 0x811c9dc5; // FNV-1a, 32 bits: a name, not a secret
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}

function scopeName(token, url) {
  const c = jwtClaims(token);
  const user = c && (c.userId || c.sub);
  const who = user ? `${c.tenantId ?? c.tenant ?? '-'}/${user}` : `key-${shortHash(String(token))}`;
  const u = new URL(url);
  return `stocky:${u.host}${u.pathname}:${who}`;
}

const store = {
  get(key) {
    try {
      return JSON.parse(localStorage.getItem(key));
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(key, JSON.stringify(value));
    } catch {
      /* storage disabled or full: positions then live in memory only */
    }
  },
};

function defaultDeviceId() {
  let id = store.get('stocky:deviceId');
  if (typeof id !== 'string' || !id) {
    id = `web-${randomHex(4)}`;
    store.set('stocky:deviceId', id);
  }
  return id;
}

function defaultUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

function httpBase(wsUrl) {
  const u = new URL(wsUrl);
  return `${u.protocol === 'wss:' ? 'https:' : 'http:'}//${u.host}`;
}

/** The (lo, hi] span of ids an entry covers, and its epoch. */
function span(entry) {
  if (entry.k === 'ev') return { epoch: entry.env.epoch, lo: entry.env.prev, hi: entry.env.id };
  return { epoch: entry.epoch, lo: entry.from, hi: entry.to };
}

function behind(mine, theirs) {
  if (!theirs) return false;
  if (!mine) return true;
  if (mine.epoch && theirs.epoch && mine.epoch !== theirs.epoch) return true;
  return mine.last < theirs.last;
}

function expOf(token) {
  return jwtClaims(token)?.exp ?? 0;
}

/** The event envelope of a non-duplicate ack (the sender gets the ack instead of the event). */
function envelopeOfAck(ack) {
  const env = { id: ack.id, prev: ack.prev, epoch: ack.epoch, event: ack.command, data: ack.data };
  for (const k of ['clientId', 'timestamp', 'scope', 'opId']) if (ack[k] !== undefined) env[k] = ack[k];
  return env;
}

/** An ack for a command whose event reached us in a replay instead of its ack. */
function ackOfEnvelope(env) {
  return { ...env, type: 'ack', ids: [env.id], command: env.event, replayed: true };
}

// ---------------------------------------------------------------------------- session

class Session {
  constructor(options) {
    if (options.token === undefined || options.token === null || options.token === '') {
      throw new TypeError('connect({ token }): a token (string or function) is required');
    }
    this.options = { ...DEFAULTS, ...options };
    this.url = options.url || defaultUrl();
    this.baseUrl = (options.baseUrl || httpBase(this.url)).replace(/\/$/, '');
    this.deviceId = options.deviceId || defaultDeviceId();
    this.tabId = `${Date.now().toString(36)}-${randomHex(4)}`;
    this.state = 'connecting';
    this.reason = undefined;
    this.isLeader = false;
    this.leaderId = null;
    this.pos = Number.isInteger(options.lastEventId)
      ? { epoch: options.epoch || null, last: options.lastEventId }
      : null;
    this.session = {
      accessToken: typeof options.token === 'string' ? options.token : null,
      refreshToken: options.refreshToken || null,
      expiresAt: null,
    };
    this.handlers = new Map();
    this.pending = new Map(); // this tab's sends: opId → { resolve, reject, timer, req }
    this.outbox = new Map(); // leader: every tab's sends: opId → { ...req, sentOn, at }
    this.ring = [];
    this.resets = [];
    this.inbox = Promise.resolve();
    this.timers = {};
    this.listeners = [];
    this.conn = null;
    this.connSerial = 0;
    this.attempts = 0;
    this.everLive = false;
    this.stopped = null;
    this.closed = false;
    this.ready = this.start();
  }

  // ------------------------------------------------------------------ public API

  get lastEventId() {
    return this.pos ? this.pos.last : null;
  }

  get epoch() {
    return this.pos ? this.pos.epoch : null;
  }

  on(type, fn) {
    if (typeof fn !== 'function') throw new TypeError('on(type, fn): fn must be a function');
    let set = this.handlers.get(type);
    if (!set) this.handlers.set(type, (set = new Set()));
    const handler = (x) => fn(x); // the same fn may be registered twice
    set.add(handler);
    return () => set.delete(handler);
  }

  send(event, data, options = {}) {
    if (this.closed) return Promise.reject(new StockyError('closed', 'this connection was closed'));
    if (typeof event !== 'string' || !event) return Promise.reject(new TypeError('send(event, data): event must be a string'));
    if (this.pending.size >= this.options.maxQueue) {
      return Promise.reject(new StockyError('queue_full', `${this.pending.size} sends are already waiting for an answer`));
    }
    const opId = options.opId || `${this.deviceId}/${randomHex(8)}`;
    if (this.pending.has(opId)) return Promise.reject(new StockyError('op_id_pending', `opId ${opId} is already waiting`, { opId }));
    const timeout = options.timeout ?? this.options.sendTimeout;
    const req = { opId, event, data };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.timeOut(opId, event, timeout), timeout);
      this.pending.set(opId, { resolve, reject, timer, req });
      this.dispatch(req);
    });
  }

  /** New credentials from the app (e.g. after a new login): shared with every tab. */
  setToken(accessToken, refreshToken) {
    this.adoptSession({ accessToken, refreshToken: refreshToken ?? this.session.refreshToken }, true);
  }

  close() {
    if (this.closed) return;
    const wasLeader = this.isLeader;
    this.closed = true;
    for (const t of Object.values(this.timers)) {
      clearTimeout(t);
      clearInterval(t);
    }
    for (const [target, type, fn] of this.listeners) target.removeEventListener(type, fn);
    if (this.wakeStart) this.wakeStart();
    this.dropSocket('client closed');
    for (const [opId, p] of this.pending) {
      clearTimeout(p.timer);
      if (!wasLeader) this.post({ t: 'cancel', opId });
      p.reject(new StockyError('closed', 'the connection was closed before an answer came', { opId }));
    }
    this.pending.clear();
    this.outbox.clear();
    if (wasLeader) this.post({ t: 'bye' });
    this.isLeader = false;
    if (this.releaseLock) this.releaseLock();
    if (this.lockAbort) this.lockAbort.abort();
    try {
      this.channel?.close();
    } catch {
      /* already closed */
    }
    this.setState('offline', 'closed');
  }

  // ------------------------------------------------------------------ start-up

  async start() {
    const token = await this.firstToken();
    if (this.closed) return;
    this.scope = this.options.storageKey || scopeName(token, this.url);
    this.storageKey = this.scope;
    this.listen(globalThis, 'online', () => this.onOnline());
    this.listen(globalThis, 'offline', () => this.onOffline());
    this.listen(globalThis, 'pagehide', () => this.isLeader && this.post({ t: 'bye' }));
    if (typeof BroadcastChannel !== 'function') {
      // No way to share a socket: this tab connects on its own, under its own device id.
      this.channel = { postMessage() {}, close() {} };
      this.deviceId = `${this.deviceId}-${this.tabId}`;
      this.election = 'none';
      return this.becomeLeader();
    }
    this.channel = new BroadcastChannel(this.scope);
    this.channel.onmessage = (m) => this.onChannel(m.data);
    this.post({ t: 'hello', session: this.session.accessToken ? this.session : null });
    for (const p of this.pending.values()) this.dispatch(p.req);
    const locks = typeof navigator !== 'undefined' && navigator.locks;
    if (this.options.election !== 'broadcast' && locks && typeof locks.request === 'function') {
      this.electWithLocks();
    } else {
      this.electWithBeats();
    }
  }

  /** The token names the scope, so nothing starts without one: ask until there is one. */
  async firstToken() {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.token();
      } catch (e) {
        if (this.closed) return null;
        this.setState(attempt >= FAST_TRIES ? 'offline' : 'connecting', `no token yet: ${e.message}`);
        await new Promise((r) => {
          this.wakeStart = r; // close() wakes it
          this.timers.start = setTimeout(r, backoffDelay(attempt));
        });
        if (this.closed) return null;
      }
    }
  }

  listen(target, type, fn) {
    if (!target || typeof target.addEventListener !== 'function') return;
    target.addEventListener(type, fn);
    this.listeners.push([target, type, fn]);
  }

  async token() {
    if (this.session.accessToken) return this.session.accessToken;
    const t = this.options.token;
    const value = typeof t === 'function' ? await t() : t;
    if (typeof value !== 'string' || !value) throw new StockyError('no_token', 'the token option gave no token');
    return value;
  }

  // ------------------------------------------------------------------ delivery (every tab)

  emit(type, payload) {
    const set = this.handlers.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(payload);
      } catch (e) {
        console.error(`stocky: a '${type}' handler threw`, e);
      }
    }
  }

  setState(state, reason) {
    if (state === 'live') this.everLive = true;
    if (this.state === state && this.reason === reason) return;
    this.state = state;
    this.reason = reason;
    if (this.isLeader) this.post({ t: 'state', state, reason });
    this.emit('state', { state, reason });
  }

  /** Invariant 2: 'applied' (position advanced), 'dup' (already had it) or 'gap'. */
  apply(entry) {
    if (entry.k === 'reset') {
      if (this.resets.includes(entry.rid)) return 'dup';
      this.resets.push(entry.rid);
      if (this.resets.length > 64) this.resets.shift();
      this.pos = { epoch: entry.epoch, last: entry.last };
      return 'applied';
    }
    const { epoch, lo, hi } = span(entry);
    const p = this.pos;
    if (!p) {
      this.pos = { epoch, last: hi }; // a tab without a position joins where the chain is
      return 'applied';
    }
    if (p.epoch && epoch !== p.epoch) return 'gap';
    if (hi <= p.last) return 'dup';
    if (lo > p.last) return 'gap';
    this.pos = { epoch, last: hi };
    return 'applied';
  }

  /** After an applied entry: keep it for resends, persist (leader), run the handlers. */
  accepted(entry) {
    this.ring.push(entry);
    if (this.ring.length > this.options.ringSize) this.ring.splice(0, this.ring.length - this.options.ringSize);
    if (this.isLeader) store.set(`${this.scope}:position`, { epoch: this.pos.epoch, lastEventId: this.pos.last });
    if (entry.k === 'ev') {
      this.emit(entry.env.event, entry.env);
      this.emit('*', entry.env);
    } else if (entry.k === 'reset') {
      this.emit('full_refresh', entry.env);
      this.emit('*', entry.env);
    }
  }

  /** Frames and channel entries are handled one at a time, in arrival order. */
  serial(fn) {
    this.inbox = this.inbox.then(fn).catch((e) => console.error('stocky:', e));
    return this.inbox;
  }

  // ------------------------------------------------------------------ the channel

  post(msg) {
    try {
      this.channel?.postMessage({ from: this.tabId, ...msg });
    } catch {
      /* channel closed */
    }
  }

  onChannel(msg) {
    if (!msg || this.closed || msg.from === this.tabId || (msg.to && msg.to !== this.tabId)) return;
    const fromLeader = () => {
      this.leaderId = msg.from;
      this.leaderSeenAt = Date.now();
    };
    switch (msg.t) {
      case 'entry':
        fromLeader();
        return this.serial(() => this.onEntry(msg.entry));
      case 'state':
        fromLeader();
        if (!this.isLeader) this.setState(msg.state, msg.reason);
        return;
      case 'leader':
      case 'welcome':
        fromLeader();
        return this.onLeaderInfo(msg);
      case 'beat':
        fromLeader();
        return this.onBeat(msg);
      case 'claim':
        return this.onClaim(msg);
      case 'bye':
        if (msg.from === this.leaderId) this.leaderSeenAt = 0;
        return;
      case 'hello':
        return this.isLeader && this.onHello(msg);
      case 'send':
        return this.isLeader && this.enqueue(msg.req);
      case 'cancel':
        return this.isLeader && this.outbox.delete(msg.opId);
      case 'result':
        return this.settle(msg.opId, msg.ok, msg.frame);
      case 'resend':
        return this.isLeader && this.answerResend(msg);
      case 'resent':
        return this.serial(() => this.onResent(msg));
      case 'token':
        return this.adoptSession(msg.session, false);
    }
  }

  onEntry(entry, quiet = false) {
    const r = this.apply(entry);
    if (r === 'applied') this.accepted(entry);
    else if (r === 'gap' && !this.isLeader && !quiet) this.askResend(false);
  }

  leaderInfo() {
    const session = this.session.refreshedAt ? this.session : null;
    return { state: this.state, reason: this.reason, pos: this.pos, user: this.user, session };
  }

  onHello(msg) {
    // A tab that starts with other credentials while this leader gave up on its own.
    if (this.stopped === 'auth' && msg.session && msg.session.accessToken !== this.session.accessToken) {
      this.adoptSession(msg.session, true);
    }
    this.post({ t: 'welcome', to: msg.from, ...this.leaderInfo() });
  }

  onLeaderInfo(msg) {
    if (this.isLeader) return this.onBeat(msg);
    this.setState(msg.state, msg.reason);
    if (msg.user) this.user = msg.user;
    if (msg.session && expOf(msg.session.accessToken) > expOf(this.session.accessToken)) {
      this.adoptSession(msg.session, false);
    }
    if (!this.pos && msg.pos) this.pos = { ...msg.pos };
    else if (behind(this.pos, msg.pos)) this.askResend(true);
    for (const p of this.pending.values()) this.post({ t: 'send', req: p.req });
  }

  askResend(force) {
    const now = Date.now();
    if (!force && now - (this.resendAskedAt || 0) < RESEND_WAIT) return;
    this.resendAskedAt = now;
    this.post({ t: 'resend', pos: this.pos });
  }

  answerResend(msg) {
    const p = msg.pos;
    const entries = this.ring.filter((e) => !(p && e.k === 'ev' && e.env.epoch === p.epoch && e.env.id <= p.last));
    this.post({ t: 'resent', to: msg.from, entries, head: this.pos });
  }

  async onResent(msg) {
    for (const entry of msg.entries) this.onEntry(entry, true);
    this.resendAskedAt = 0;
    if (behind(this.pos, msg.head)) await this.lostSync(msg.head);
  }

  /** The leader no longer holds what this tab missed: start again from a REST snapshot. */
  async lostSync(head) {
    const snapshot = await this.fetchSnapshot();
    this.pos = { ...head };
    const env = {
      type: 'full_refresh',
      event: 'full_refresh',
      reason: 'this tab missed events that the leader tab no longer holds',
      epoch: head.epoch,
      lastEventId: head.last,
      stock: Array.isArray(snapshot?.data) ? snapshot.data.map(({ productId, stock }) => ({ productId, stock })) : null,
      snapshot,
      local: true,
      timestamp: new Date().toISOString(),
    };
    this.accepted({ k: 'reset', rid: randomHex(6), epoch: head.epoch, last: head.last, env });
  }

  // ------------------------------------------------------------------ election

  electWithLocks() {
    this.election = 'locks';
    this.lockAbort = new AbortController();
    navigator.locks
      .request(this.scope, { signal: this.lockAbort.signal }, () => {
        if (this.closed) return undefined;
        return new Promise((release) => {
          this.releaseLock = release;
          this.becomeLeader();
        });
      })
      .catch(() => {
        /* aborted by close() */
      });
  }

  /** Fallback without Web Locks: heartbeats; the lowest tab id wins a contested claim. */
  electWithBeats() {
    this.election = 'beats';
    this.leaderSeenAt = 0;
    const started = Date.now();
    this.timers.beat = setInterval(() => {
      if (this.isLeader) return this.post({ t: 'beat' });
      const now = Date.now();
      if (now - started > 2 * BEAT_EVERY && now - this.leaderSeenAt > BEAT_LOST) this.claim();
    }, BEAT_EVERY);
  }

  claim() {
    if (this.claiming) return;
    this.claiming = true;
    this.outranked = false;
    this.post({ t: 'claim' });
    setTimeout(() => {
      this.claiming = false;
      if (!this.closed && !this.outranked && Date.now() - this.leaderSeenAt > BEAT_LOST) this.becomeLeader();
    }, 300);
  }

  onClaim(msg) {
    if (this.isLeader) this.post({ t: 'beat' });
    else if (this.claiming && msg.from < this.tabId) this.outranked = true;
  }

  onBeat(msg) {
    if (!this.isLeader || this.election !== 'beats') return;
    if (msg.from < this.tabId) this.stepDown();
    else this.post({ t: 'beat' });
  }

  becomeLeader() {
    if (this.closed || this.isLeader) return;
    this.isLeader = true;
    this.leaderId = this.tabId;
    this.stopped = null; // a new term: try once more whatever stopped an earlier one
    if (!this.pos && this.options.resume !== false) this.pos = this.loadPosition();
    this.post({ t: 'leader', ...this.leaderInfo() });
    this.setState(this.everLive ? 'reconnecting' : 'connecting', this.everLive ? 'this tab takes over the connection' : undefined);
    for (const p of this.pending.values()) this.enqueue(p.req);
    this.timers.ping = setInterval(() => this.pingTick(), this.options.pingInterval);
    this.openSocket();
  }

  stepDown() {
    if (!this.isLeader) return;
    this.isLeader = false;
    clearInterval(this.timers.ping);
    clearTimeout(this.timers.retry);
    clearTimeout(this.timers.refresh);
    this.dropSocket('another tab leads');
    this.outbox.clear();
    for (const p of this.pending.values()) this.post({ t: 'send', req: p.req });
  }

  loadPosition() {
    const v = store.get(`${this.scope}:position`);
    return v && Number.isInteger(v.lastEventId) ? { epoch: v.epoch || null, last: v.lastEventId } : null;
  }

  // ------------------------------------------------------------------ leader: the socket

  async openSocket() {
    clearTimeout(this.timers.retry);
    if (this.closed || !this.isLeader || this.conn || this.stopped) return;
    const conn = { serial: ++this.connSerial, ws: null, lastSeen: Date.now(), syncs: 0 };
    this.conn = conn;
    let token;
    try {
      token = await this.token();
    } catch (e) {
      return this.connClosed(conn, { code: 0, reason: e.message });
    }
    if (this.conn !== conn) return;
    const query = new URLSearchParams({ deviceId: this.deviceId });
    if (this.pos) {
      query.set('lastEventId', String(this.pos.last));
      if (this.pos.epoch) query.set('epoch', this.pos.epoch);
      conn.syncs = 1; // the resume ends with a sync_complete
    }
    try {
      conn.ws = new WebSocket(`${this.url}${this.url.includes('?') ? '&' : '?'}${query}`);
    } catch (e) {
      return this.connClosed(conn, { code: 0, reason: e.message });
    }
    // The credential goes in the `auth` message, not the URL (docs/security.md §2.1).
    conn.ws.onopen = () => conn.ws.send(JSON.stringify({ type: 'auth', token, deviceId: this.deviceId }));
    conn.ws.onmessage = (m) => {
      conn.lastSeen = Date.now();
      this.serial(() => this.onFrame(conn, m.data));
    };
    conn.ws.onclose = (e) => this.serial(() => this.connClosed(conn, e));
    conn.timer = setTimeout(() => conn.authed || this.dropConn(conn, 'no auth_success in time'), this.options.connectTimeout);
  }

  /** Forget the socket without waiting for its close handshake. */
  dropSocket(reason) {
    const conn = this.conn;
    this.conn = null;
    if (!conn) return;
    conn.handled = true;
    clearTimeout(conn.timer);
    try {
      conn.ws?.close(1000, reason);
    } catch {
      /* not open yet */
    }
  }

  dropConn(conn, reason) {
    try {
      conn.ws?.close(1000, reason);
    } catch {
      /* not open yet */
    }
    this.serial(() => this.connClosed(conn, { code: 1006, reason }));
  }

  connClosed(conn, e) {
    if (conn.handled) return;
    conn.handled = true;
    clearTimeout(conn.timer);
    if (this.conn === conn) this.conn = null;
    if (this.closed || !this.isLeader) return;
    if (conn.planned) return this.openSocket(); // token refreshed: reconnect at once
    if (conn.liveAt && Date.now() - conn.liveAt >= this.options.stableAfter) this.attempts = 0;
    const code = e.code;
    const reason = conn.authError || e.reason || (code ? `closed (${code})` : 'connection failed');
    if (code === 4002) {
      const otherLeader = this.leaderId !== this.tabId && Date.now() - this.leaderSeenAt < BEAT_LOST;
      if (this.election === 'beats' && otherLeader) return this.stepDown(); // a tab of ours leads too
      return this.stop('replaced', 'another connection of this user and device took over (4002)');
    }
    if (code === 1009) return this.stop('too_large', `a message was too large (1009): ${reason}`);
    if (code === 4001 || (code === 1008 && !/unavailable|retry later/i.test(reason))) {
      return this.reauthenticate(code, reason);
    }
    this.scheduleReconnect(reason);
  }

  async reauthenticate(code, reason) {
    const canRefresh = Boolean(this.session.refreshToken);
    const canAsk = typeof this.options.token === 'function';
    if ((!canRefresh && !canAsk) || (code === 1008 && this.authRetried)) {
      return this.stop('auth', code === 4001 ? 'the access token expired (4001)' : `${reason} (${code})`);
    }
    if (canRefresh) {
      try {
        await this.refreshSession();
      } catch (e) {
        if (e.code === 'session_ended') return this.stop('auth', e.message);
        return this.scheduleReconnect(`token refresh failed: ${e.message}`);
      }
    } else {
      this.session.accessToken = null; // token() asks the app's function again
    }
    this.authRetried = true;
    this.openSocket();
  }

  stop(kind, reason) {
    this.stopped = kind;
    this.setState('offline', reason);
  }

  scheduleReconnect(reason) {
    if (this.closed || !this.isLeader || this.stopped) return;
    const attempt = this.attempts++;
    const offline = typeof navigator !== 'undefined' && navigator.onLine === false;
    if (offline) this.setState('offline', 'browser offline');
    else if (attempt >= FAST_TRIES) this.setState('offline', `server unreachable (${reason}); still retrying`);
    else this.setState(this.everLive ? 'reconnecting' : 'connecting', reason);
    clearTimeout(this.timers.retry);
    this.timers.retry = setTimeout(() => this.openSocket(), backoffDelay(attempt));
  }

  onOnline() {
    if (!this.isLeader || this.conn || this.stopped || this.closed) return;
    this.openSocket(); // try now instead of waiting for the backoff timer
  }

  onOffline() {
    if (this.isLeader && !(this.conn && this.conn.live)) this.setState('offline', 'browser offline');
  }

  pingTick() {
    const conn = this.conn;
    if (!conn || !conn.authed) return;
    if (Date.now() - conn.lastSeen > 2 * this.options.pingInterval) {
      return this.dropConn(conn, 'nothing received for two ping intervals');
    }
    try {
      conn.ws.send('{"type":"ping"}');
    } catch {
      /* closing */
    }
  }

  // ------------------------------------------------------------------ leader: frames

  async onFrame(conn, text) {
    if (conn.handled) return;
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg.event === 'stock:error') return this.onStockError(msg);
    switch (msg.type) {
      case 'auth_success':
        return this.onAuthSuccess(conn, msg);
      case 'auth_error':
        conn.authError = msg.error;
        return;
      case 'ack':
        return this.onAck(conn, msg);
      case 'sync_complete':
        return this.onSyncComplete(conn, msg);
      case 'full_refresh':
        return this.onFullRefresh(conn, msg);
      case 'welcome':
      case 'pong':
        return;
    }
    if (typeof msg.event === 'string' && Number.isInteger(msg.id)) this.onEvent(conn, msg);
  }

  /** Applies an entry that came from the socket; broadcasts it if it was new. */
  leaderApply(conn, entry) {
    const r = this.apply(entry);
    if (r === 'applied') {
      this.post({ t: 'entry', entry });
      this.accepted(entry);
    } else if (r === 'gap' && entry.k === 'ev') {
      this.requestSync(conn);
    }
    return r;
  }

  onAuthSuccess(conn, msg) {
    conn.authed = true;
    clearTimeout(conn.timer);
    this.authRetried = false;
    this.user = { userId: msg.userId, tenantId: msg.tenantId, siteId: msg.siteId, role: msg.role, modules: msg.modules };
    if (msg.expiresAt) this.session.expiresAt = msg.expiresAt;
    this.scheduleRefresh(msg.expiresAt);
    if (!this.pos) this.leaderApply(conn, { k: 'pos', epoch: msg.epoch, from: msg.lastEventId, to: msg.lastEventId });
    if (!conn.syncs) this.goLive(conn);
  }

  onEvent(conn, env) {
    const r = this.leaderApply(conn, { k: 'ev', env });
    if (r === 'applied' && env.opId && this.outbox.has(env.opId)) this.routeResult(env.opId, true, ackOfEnvelope(env));
  }

  onAck(conn, ack) {
    if (!ack.duplicate && Number.isInteger(ack.id)) this.leaderApply(conn, { k: 'ev', env: envelopeOfAck(ack) });
    this.routeResult(ack.opId, true, ack);
  }

  requestSync(conn) {
    conn.dropped = true;
    if (conn.requested || !conn.ws || conn.ws.readyState !== WebSocket.OPEN) return;
    conn.requested = true;
    conn.syncs++;
    conn.ws.send(JSON.stringify({ type: 'request_sync', lastEventId: this.pos.last, epoch: this.pos.epoch || undefined }));
  }

  onSyncComplete(conn, msg) {
    conn.syncs = Math.max(0, conn.syncs - 1);
    // With frames dropped, only the last sync_complete covers them (its replay re-sent them).
    if (this.pos && (!conn.dropped || conn.syncs === 0)) {
      this.leaderApply(conn, { k: 'pos', epoch: msg.epoch, from: this.pos.last, to: msg.lastEventId });
    }
    if (conn.syncs === 0) {
      conn.dropped = false;
      conn.requested = false;
      if (!conn.live) this.goLive(conn);
    }
  }

  async onFullRefresh(conn, msg) {
    const snapshot = await this.fetchSnapshot();
    const env = { ...msg, event: 'full_refresh', snapshot };
    this.leaderApply(conn, { k: 'reset', rid: randomHex(6), epoch: msg.epoch, last: msg.lastEventId, env });
  }

  goLive(conn) {
    conn.live = true;
    conn.liveAt = Date.now();
    this.setState('live');
    this.flush();
  }

  // ------------------------------------------------------------------ commands

  dispatch(req) {
    if (!this.channel) return; // before start(): dispatched when it finishes
    if (this.isLeader) this.enqueue(req);
    else this.post({ t: 'send', req });
  }

  enqueue(req) {
    if (!this.outbox.has(req.opId)) this.outbox.set(req.opId, { ...req, sentOn: 0, at: Date.now() });
    this.flush();
  }

  flush() {
    const conn = this.conn;
    if (!conn || !conn.live || conn.ws.readyState !== WebSocket.OPEN) return;
    for (const item of this.outbox.values()) {
      if (item.sentOn === conn.serial) continue;
      if (Date.now() - item.at > this.options.sendTimeout + 5000) {
        this.outbox.delete(item.opId); // its tab gave up long ago
        continue;
      }
      item.sentOn = conn.serial;
      conn.ws.send(JSON.stringify({ event: item.event, data: item.data, opId: item.opId }));
    }
  }

  onStockError(msg) {
    const opId = msg.data && msg.data.opId;
    if (opId) return this.routeResult(opId, false, msg);
    this.emit('stock:error', msg); // not attributable to a send (the SDK sends none such)
  }

  routeResult(opId, ok, frame) {
    if (!opId) return;
    this.outbox.delete(opId);
    this.post({ t: 'result', opId, ok, frame });
    this.settle(opId, ok, frame);
  }

  settle(opId, ok, frame) {
    const p = this.pending.get(opId);
    if (!p) return;
    this.pending.delete(opId);
    clearTimeout(p.timer);
    if (ok) return p.resolve(frame);
    this.emit('stock:error', frame);
    const d = frame.data || {};
    p.reject(new StockyError(d.code || 'refused', d.reason || d.error || 'the command was refused', { opId, data: d, frame }));
  }

  timeOut(opId, event, timeout) {
    const p = this.pending.get(opId);
    if (!p) return;
    this.pending.delete(opId);
    if (this.isLeader) this.outbox.delete(opId);
    else this.post({ t: 'cancel', opId });
    p.reject(
      new StockyError(
        'timeout',
        `no answer to ${event} within ${timeout} ms (state ${this.state}); it may still apply: send it again with opId ${opId} to find out`,
        { opId },
      ),
    );
  }

  // ------------------------------------------------------------------ tokens and REST

  scheduleRefresh(expiresAt) {
    clearTimeout(this.timers.refresh);
    if (!expiresAt || !this.session.refreshToken) return;
    const left = Date.parse(expiresAt) - Date.now();
    const lead = Math.min(this.options.refreshBefore, left / 2);
    this.timers.refresh = setTimeout(() => this.refreshAhead(), Math.max(0, left - lead));
  }

  async refreshAhead() {
    if (!this.isLeader || this.closed) return;
    try {
      await this.refreshSession();
    } catch (e) {
      // Try again shortly; if the token expires first, the 4001 close refreshes.
      if (e.code !== 'session_ended') this.timers.refresh = setTimeout(() => this.refreshAhead(), 5000);
      return;
    }
    const conn = this.conn;
    if (conn && conn.ws) {
      conn.planned = true; // reconnect with the new token and ?lastEventId, state unchanged
      conn.ws.close(1000, 'token refreshed');
    }
  }

  refreshSession() {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  async doRefresh() {
    const res = await this.http('/api/auth/refresh', { body: { refreshToken: this.session.refreshToken }, auth: false });
    if (res.status === 401) throw new StockyError('session_ended', 'the refresh token was refused: log in again');
    if (!res.ok) throw new StockyError('refresh_failed', `POST /api/auth/refresh answered ${res.status}`);
    const body = await res.json();
    this.adoptSession(body, true);
  }

  /** New credentials: from this tab's refresh, another tab's, or the app (setToken). */
  adoptSession(s, broadcast) {
    if (!s || !s.accessToken) return;
    const same = s.accessToken === this.session.accessToken && (s.refreshToken || null) === this.session.refreshToken;
    if (same) return;
    this.session = {
      accessToken: s.accessToken,
      refreshToken: s.refreshToken || null,
      expiresAt: s.expiresAt || null,
      refreshedAt: s.refreshedAt || Date.now(),
    };
    if (broadcast) this.post({ t: 'token', session: this.session });
    if (this.options.onTokenRefresh) {
      try {
        this.options.onTokenRefresh({ ...s });
      } catch (e) {
        console.error('stocky: onTokenRefresh threw', e);
      }
    }
    if (this.isLeader && this.stopped === 'auth') {
      this.stopped = null;
      this.attempts = 0;
      this.authRetried = false;
      this.openSocket();
    }
  }

  async http(path, { method, body, auth = true } = {}) {
    const headers = {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (auth) headers.Authorization = `Bearer ${await this.token()}`;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.options.fetchTimeout);
    try {
      return await fetch(this.baseUrl + path, {
        method: method || (body === undefined ? 'GET' : 'POST'),
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: abort.signal,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /** GET /api/stock (the caller's home site), or null if it failed. */
  async fetchSnapshot() {
    try {
      const res = await this.http('/api/stock');
      return res.ok ? await res.json() : null;
    } catch {
      return null;
    }
  }
}
