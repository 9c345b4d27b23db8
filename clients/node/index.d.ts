// Types for lockp (index.js): a LOCKP/1 client for lockd.

/** LOCKP codes (TIMEOUT, NOQUORUM, HELD, LIMIT, LOST, AUTH, NOAUTH, BADREQ, SESSION,
 * SHUTDOWN) and the client's own (BADARG, NOTCONNECTED, DISCONNECTED, CLIENT_TIMEOUT,
 * CLOSED, CANCELLED, BADREPLY). */
export type LockErrorCode =
  | 'TIMEOUT' | 'NOQUORUM' | 'HELD' | 'LIMIT' | 'LOST' | 'AUTH' | 'NOAUTH' | 'BADREQ'
  | 'SESSION' | 'SHUTDOWN' | 'BADARG' | 'NOTCONNECTED' | 'DISCONNECTED' | 'CLIENT_TIMEOUT'
  | 'CLOSED' | 'CANCELLED' | 'BADREPLY' | (string & {});

/** Why a lock was lost: lockd's LOST reasons (expired, renew_refused, no_quorum, revoked,
 * shutdown, session) or the client's own (expired: its local deadline passed;
 * unreachable: lockd silent; disconnected: the session dropped; closed; lost). */
export type LostReason =
  | 'expired' | 'renew_refused' | 'no_quorum' | 'revoked' | 'shutdown' | 'session'
  | 'unreachable' | 'disconnected' | 'closed' | 'lost' | (string & {});

export class LockError extends Error {
  constructor(code: LockErrorCode, message: string,
              options?: { resource?: string; reason?: LostReason; cause?: unknown });
  readonly code: LockErrorCode;
  /** The resource the error is about, when it is about one. */
  readonly resource?: string;
  /** For code LOST: how it was lost. */
  readonly reason?: LostReason;
}

export interface ClientOptions {
  /** HELLO name (1-64 printable ASCII characters, no spaces); default "client". */
  name?: string;
  /** The shared secret, when lockd has `auth` set. */
  auth?: string;
}

export interface AcquireOptions {
  /** 0 (default): watchdog lease, kept while the client lives; > 0: fixed lease. */
  leaseMs?: number;
  /** 0 (default): one attempt; > 0: wait up to this long, then TIMEOUT. */
  waitMs?: number;
  /** Gives up the wait (a late grant is released at once). */
  signal?: AbortSignal;
}

export class Lease {
  readonly resource: string;
  readonly token: string;
  readonly fence: bigint;
  readonly leaseMs: number;
  /** validity_ms of the last grant or renewal. */
  readonly validityMs: number;
  /** Fires the moment the lock is lost; its reason is a LockError with code LOST. */
  readonly signal: AbortSignal;
  readonly lost: boolean;
  readonly lostReason: LostReason | null;
  /** performance.now() when the loss was noticed, or null. */
  readonly lostAt: number | null;
  /** performance.now() at which the lock is lost unless extended. */
  readonly deadline: number;
  /** Granted, not released, not lost. */
  readonly held: boolean;
  remainingMs(): number;
  /** Throws the LOST error if the lock is lost. */
  check(): void;
  /** RENEW (leaseMs, or the lease's own); resolves to validity_ms. */
  renew(leaseMs?: number): Promise<number>;
  /** RELEASE: true if the lock was held until now, false if it was lost. */
  release(): Promise<boolean>;
}

export class Client {
  /** endpoints: 'host:port' or an array of them, tried in order (failover). */
  constructor(endpoints: string | string[], options?: ClientOptions);
  connect(): Promise<void>;
  acquire(resource: string, options?: AcquireOptions): Promise<Lease>;
  /** Acquires, runs fn, releases on every path; rejects with code LOST if the lock was
   * lost while fn ran (signal fired then). */
  using<T>(resource: string, options: AcquireOptions,
           fn: (lease: Lease, signal: AbortSignal) => Promise<T>): Promise<T>;
  using<T>(resource: string, fn: (lease: Lease, signal: AbortSignal) => Promise<T>): Promise<T>;
  /** Round trip to lockd in milliseconds. */
  ping(): Promise<number>;
  info(): Promise<Record<string, string | number>>;
  close(): Promise<void>;
}

/** The client's clock: performance.now(). */
export function now(): number;

export default Client;
