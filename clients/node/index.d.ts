// Types for lockp (index.js): a LOCKP/1 client for lockd.

/** LOCKP codes (TIMEOUT, NOQUORUM, HELD, LIMIT, LOST, AUTH, NOAUTH, BADREQ, SESSION,
 * SHUTDOWN) and the client's own (BADARG, NOTCONNECTED, DISCONNECTED, CLIENT_TIMEOUT,
 * CLOSED, CANCELLED, BADREPLY). */
export type LockErrorCode =
  | 'TIMEOUT' | 'NOQUORUM' | 'HELD' | 'LIMIT' | 'LOST' | 'AUTH' | 'NOAUTH' | 'BADREQ'
  | 'SESSION' | 'SHUTDOWN' | 'BADARG' | 'NOTCONNECTED' | 'DISCONNECTED' | 'CLIENT_TIMEOUT'
  | 'CLOSED' | 'CANCELLED' | 'BADREPLY' | (string & {});

/** Why a lock was lost, as lockd says it: the fourth field of
 * `* LOST <resource> <token> <reason>` (SPEC 2b).
 * - `expired`: a fixed lease ran out (not renewed in time);
 * - `renew_refused`: a majority of Redis masters holds another value (a master lost its
 *   data or its clock jumped: someone else may hold the lock now);
 * - `no_quorum`: renewals could not reach a majority of masters before validity ran out;
 * - `revoked`: an admin REVOKEd the lock;
 * - `shutdown`: the lockd is stopping;
 * - `session`: lockd timed the session out (read when the client wakes). */
export type LockdLostReason =
  | 'expired' | 'renew_refused' | 'no_quorum' | 'revoked' | 'shutdown' | 'session';

/** Why a lock was lost, when the client decides it itself (SPEC 3b):
 * - `deadline`: the lock's local validity deadline passed (validity_ms from when the
 *   ACQUIRE or RENEW was sent, and never after the session bound: the last send + the
 *   session timeout, where a send after a longer silence counts once lockd answers it)
 *   without a renewal;
 * - `lockd_dead`: nothing was received from lockd for the client timeout (two thirds of
 *   the session timeout): every lock taken through it is lost;
 * - `disconnected`: the session ended (EOF, reset, socket error);
 * - `closed`: the client was closed while holding it;
 * - `lost`: lockd said LOST without a reason (an older lockd), or answered a RENEW or
 *   RELEASE with LOST. */
export type LocalLostReason = 'deadline' | 'lockd_dead' | 'disconnected' | 'closed' | 'lost';

export type LostReason = LockdLostReason | LocalLostReason | (string & {});

/** Every lockd reason, and every local reason. */
export const LOCKD_REASONS: readonly LockdLostReason[];
export const LOCAL_REASONS: readonly LocalLostReason[];

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
  /** How long past a request's own wait lockd may take to answer it (it still answers
   * PINGs) before the session is dropped with CLIENT_TIMEOUT and its locks are lost;
   * default 10000 ms. Checked by the session's keep-alive tick, so it fires up to one
   * tick (a sixth of the session timeout at most) late. */
  requestTimeoutMs?: number;
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
  /** Fires the moment the lock is lost; `signal.reason` is a LockError with code LOST
   * and `reason` (the LostReason, as lostReason). */
  readonly signal: AbortSignal;
  readonly lost: boolean;
  /** Why it was lost (null while it is not). */
  readonly lostReason: LostReason | null;
  /** performance.now() when the loss was noticed, or null. */
  readonly lostAt: number | null;
  /** performance.now() at which the lock is lost unless extended: never after the last
   * send + the session timeout (less the margin), since lockd ends a silent session and
   * hands its locks on (a send after a longer silence counts only once lockd answers
   * it); once lost, the deadline that was in force then. */
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
