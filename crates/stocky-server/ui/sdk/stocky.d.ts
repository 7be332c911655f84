// Type declarations of the Stocky browser SDK, /sdk/stocky.js (docs/browser-sdk.md).
//
// In a TypeScript app, save this file (e.g. as src/vendor/stocky.d.ts) and map the URL:
//   tsconfig.json: "compilerOptions": { "paths": { "/sdk/stocky.js": ["./src/vendor/stocky.d.ts"] } }
//   import { connect, type StockyEvent } from '/sdk/stocky.js';

/** The connection state every tab shows ('live' only while the shared socket is up to date). */
export type ConnectionState = 'connecting' | 'live' | 'reconnecting' | 'offline';

/** What `on('state', fn)` handlers get. `reason` says why (absent when live). */
export interface StateChange {
  state: ConnectionState;
  reason?: string;
}

/** The tenant and site an event belongs to (`siteId` `"*"`: the whole tenant). */
export interface EventScope {
  tenantId: string;
  siteId: string;
}

/** A stock line as events carry it: the resulting level in `stock`. */
export interface StockLine {
  productId: number;
  stock: number;
  quantity?: number;
  siteId?: string;
}

/**
 * An event envelope (docs/protocol.md §2.4). Delivered once per tab, in id order.
 * The tab's own commands' events are built from their acks and look the same
 * (no `scope` then).
 */
export interface StockyEvent<D = unknown> {
  id: number;
  prev: number;
  epoch: string;
  event: string;
  data: D;
  clientId?: string;
  timestamp?: string;
  scope?: EventScope;
  opId?: string;
}

/** The answer to a command (docs/protocol.md §2.5). */
export interface Ack<D = StockLine[]> {
  type: 'ack';
  id: number;
  ids: number[];
  prev: number;
  epoch: string;
  command: string;
  data: D;
  clientId?: string;
  timestamp?: string;
  opId?: string;
  /** The opId had already been applied: nothing changed, `id` is the original event's. */
  duplicate?: true;
  /** The command's event came back in a replay after a reconnect instead of its ack. */
  replayed?: true;
}

/** GET /api/stock (docs/protocol.md §3.2). */
export interface StockSnapshot {
  data: Array<{ productId: number; stock: number; updatedAt: string; lastEventId: number }>;
  count: number;
  lastEventId: number;
  epoch: string;
  timestamp: string;
}

/**
 * The server replaced the missed events by a snapshot (docs/protocol.md §2.8), or this tab
 * fell further behind than the leader tab remembers (`local: true`). Replace local state
 * with `stock` (the frame's, exactly at `lastEventId`) or `snapshot` (reloaded over REST
 * right after; null if that failed).
 */
export interface FullRefresh {
  type: 'full_refresh';
  event: 'full_refresh';
  reason: string;
  epoch: string;
  lastEventId: number;
  stock: Array<{ productId: number; stock: number }> | null;
  snapshot: StockSnapshot | null;
  timestamp?: string;
  local?: true;
}

/** A refused command (docs/protocol.md §2.6): `data.code` is the error code. */
export interface StockErrorFrame {
  event: 'stock:error';
  data: { error: string; reason?: string; code: string; originalEvent: string | null; opId?: string };
  timestamp?: string;
  clientId?: string;
}

/** A login or refresh answer (docs/security.md §2.3), as passed to `onTokenRefresh`. */
export interface TokenSession {
  accessToken: string;
  refreshToken?: string | null;
  expiresAt?: string | null;
  expiresIn?: number;
  [key: string]: unknown;
}

export interface ConnectOptions {
  /** An access token or API key, or a function giving the current one (asked at every connect). */
  token: string | (() => string | Promise<string>);
  /** With it, the SDK refreshes the access token itself, ~60 s before it expires and on close 4001. */
  refreshToken?: string;
  /** Called in every tab with the new session after a refresh, so the app can keep it. */
  onTokenRefresh?: (session: TokenSession) => void;
  /** WebSocket URL; default ws(s)://<this page's host>/ws. */
  url?: string;
  /** REST base for refresh and snapshots; default the WebSocket URL's origin (http(s)). */
  baseUrl?: string;
  /** Device id for the server's one-connection-per-user-and-device rule; default a per-browser `web-xxxxxxxx`. */
  deviceId?: string;
  /** Names the lock, channel and localStorage keys; default derived from server + tenant + user. */
  storageKey?: string;
  /** Start from this position instead of the stored one (e.g. that of your own GET /api/stock). */
  lastEventId?: number;
  epoch?: string;
  /** `false`: ignore the stored position when this tab opens the connection (start from the head). */
  resume?: boolean;
  /** `'broadcast'`: use the BroadcastChannel election even where Web Locks exist. */
  election?: 'locks' | 'broadcast';
  /** App-level ping period in ms (default 30000); two silent periods → reconnect. */
  pingInterval?: number;
  /** Default `send` timeout in ms (default 30000). */
  sendTimeout?: number;
  /** Sends waiting for an answer, per tab (default 1000). */
  maxQueue?: number;
  /** Refresh the access token this many ms before it expires (default 60000; at most half its lifetime). */
  refreshBefore?: number;
  /** Entries each tab keeps to resend to tabs that fell behind (default 2000). */
  ringSize?: number;
  /** ms from opening the socket to auth_success before giving up on the attempt (default 15000). */
  connectTimeout?: number;
}

export interface SendOptions {
  /** Idempotency key (1–128 bytes); default `${deviceId}/${random}`. A repeat gets a duplicate ack. */
  opId?: string;
  /** ms before the promise rejects with code 'timeout' (default `sendTimeout`). */
  timeout?: number;
}

/** What `send` rejects with: `code` is the server's (`insufficient_stock`, `forbidden`, …) or the SDK's (`timeout`, `closed`, `queue_full`). */
export declare class StockyError extends Error {
  readonly name: 'StockyError';
  readonly code: string;
  readonly opId?: string;
  readonly data?: StockErrorFrame['data'];
  readonly frame?: StockErrorFrame;
  constructor(code: string, message: string, extra?: Record<string, unknown>);
}

export interface Principal {
  userId: string;
  tenantId: string;
  siteId: string | null;
  role: string;
  modules: string[] | null;
}

export interface StockyConnection {
  /** 'connecting' | 'live' | 'reconnecting' | 'offline'; the same in every tab. */
  readonly state: ConnectionState;
  /** Why the state is what it is (e.g. the close reason), or undefined when live. */
  readonly reason: string | undefined;
  /** Whether this tab holds the shared socket. */
  readonly isLeader: boolean;
  /** The id of the last event (or position) this tab has; null before it has one. */
  readonly lastEventId: number | null;
  readonly epoch: string | null;
  readonly deviceId: string;
  /** The lock / channel name; localStorage keys start with it. Set once `ready` resolved. */
  readonly storageKey: string | undefined;
  /** The principal of the connection (from auth_success), once known. */
  readonly user: Principal | undefined;
  /** Resolves once the tab has joined the election (the token was obtained). */
  readonly ready: Promise<void>;

  on(type: 'state', fn: (change: StateChange) => void): () => void;
  on(type: 'full_refresh', fn: (refresh: FullRefresh) => void): () => void;
  on(type: 'stock:error', fn: (frame: StockErrorFrame) => void): () => void;
  on(type: '*', fn: (event: StockyEvent | FullRefresh) => void): () => void;
  on<D = StockLine[]>(type: 'stock:update' | 'stock:add' | 'stock:subtract' | 'stock:sync', fn: (event: StockyEvent<D>) => void): () => void;
  on<D = unknown>(type: string, fn: (event: StockyEvent<D>) => void): () => void;

  /** Sends a command through the leader tab; resolves with its ack, rejects with a StockyError. */
  send<D = StockLine[]>(event: string, data: unknown, options?: SendOptions): Promise<Ack<D>>;
  /** New credentials from the app (e.g. after a new login), shared with every tab. */
  setToken(accessToken: string, refreshToken?: string): void;
  /** Leaves: closes the socket if this tab holds it (another tab takes over), rejects pending sends. */
  close(): void;
}

export declare function connect(options: ConnectOptions): StockyConnection;

/** The reconnect delay in ms for attempt `attempt` (0-based): min(30 s, 500 ms·2^n) ±50 % for 10 tries, then 45–75 s. */
export declare function backoffDelay(attempt: number, random?: () => number): number;

/** The payload of a JWT (not verified), or null. */
export declare function jwtClaims(token: string): Record<string, unknown> | null;

export declare const VERSION: string;
