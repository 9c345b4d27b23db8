// lockp: a LOCKP/1 client for lockd (Node 18+, ESM, no runtime dependency).
//
// One TCP session to one lockd at a time (endpoints tried in order for failover),
// tagged pipelining (tags are decimal numbers; replies may come in any order), keep-alive
// and liveness, and the local deadline of every lock (SPEC 3b):
//
// - A lock's deadline is validity_ms counted from the moment its ACQUIRE (or RENEW) was
//   SENT, or from a later moment that is provably before lockd wrote the reply: lockd
//   writes replies in order on the stream, so a reply that arrives after the reply to a
//   request sent at time S was written after S (session.aliveSent keeps that bound).
// - A fixed lease (leaseMs > 0) is lost locally at its deadline unless a RENEW reply
//   extended it, whatever lockd says.
// - A watchdog lease (leaseMs 0) is renewed by lockd, and LOCKP tells the client nothing
//   about those renewals. A lockd that answers keeps them alive (it renews every third
//   of its lease and pushes `* LOST` before it gives one up), so the deadline is
//   extended by liveness: max(grant bound + validity, aliveSent + validity / 2).
// - The session bound: lockd ends a session that sent nothing for the session timeout
//   (HELLO's reply) and hands its locks to the next waiter at once; its silence is counted
//   from its last receipt, which comes after our last send. So every deadline, watchdog or
//   fixed lease, is at most sessTx + the session timeout (less the same margin): a holder
//   stopped right after its grant (SIGSTOP, a GC pause, a VM stall) has lost the lock
//   locally before anyone else can get it. sessTx is the last send while the bound has not
//   passed (a PING at least every third of the timeout), so a running client loses
//   nothing; a deadline that passed is not brought back by a later send (hold.frozen).
//   After a longer silence (a pause) lockd may have ended the session, and a send proves
//   nothing until lockd answers it: only then (a reply other than `ERR SESSION`) does
//   sessTx move to that request's send. Else a grant read just after a pause, its ACQUIRE
//   sent before, got a bound counted from the PING the waking loop sent first.
// - Liveness is judged by bytes RECEIVED: a PING goes out when nothing was received (or
//   sent) for the ping interval (a third of the session timeout; a sixth of the validity
//   while a watchdog lease is held); a lockd silent for two thirds of the session
//   timeout is dead: the session is dropped and every lock taken through it is lost.
//
// Ownership: the client owns its sessions, pending requests and holds; a Lease is the
// caller's view of one hold. Loss is reported through lease.signal (an AbortSignal whose
// reason is a LockError with code LOST) the moment it is noticed.

import net from 'node:net';
import { performance } from 'node:perf_hooks';

const RESOURCE_MAX = 256;
const NAME_MAX = 64;
const SECRET_MAX = 256;
const CONNECT_TIMEOUT_MS = 1000;
const REQUEST_SLACK_MS = 10000; // the default of requestTimeoutMs
const MIN_PING_MS = 20;
const LINE_MAX = 4096;

// Why a lock was lost (lease.lostReason, the LOST error's reason). lockd's, the fourth
// field of `* LOST <resource> <token> <reason>` (SPEC 2b): a fixed lease ran out; a
// majority of masters holds another value; renewals missed the quorum until validity
// ran out; an admin REVOKEd it; this lockd is stopping; the session timed out.
export const LOCKD_REASONS = Object.freeze(['expired', 'renew_refused', 'no_quorum', 'revoked', 'shutdown', 'session']);
// The client's own (SPEC 3b), for losses it decides without lockd's word:
const LOST_DEADLINE = 'deadline'; // the lock's local validity deadline passed
const LOST_LOCKD_DEAD = 'lockd_dead'; // nothing received from lockd for the client timeout
const LOST_DISCONNECTED = 'disconnected'; // the session ended: EOF, reset or socket error
const LOST_CLOSED = 'closed'; // the client was closed while holding it
// lockd said LOST without a reason (a lockd of before SPEC 2b's reasons), or answered
// a RENEW or RELEASE with LOST
const LOST_NO_REASON = 'lost';
export const LOCAL_REASONS = Object.freeze([LOST_DEADLINE, LOST_LOCKD_DEAD, LOST_DISCONNECTED, LOST_CLOSED, LOST_NO_REASON]);

/** The client's clock: monotonic milliseconds. */
export const now = () => performance.now();

// bound + validity, less a margin for our own wake-up latency (a loaded machine runs a
// timer late; the lost signal must still come first): 5% of the validity, at most 50 ms.
const deadlineFrom = (bound, validityMs) => bound + validityMs - Math.min(validityMs * 0.05, 50);

/** Every lockp error: `code` is the LOCKP code (TIMEOUT, NOQUORUM, HELD, LIMIT, LOST, AUTH,
 * NOAUTH, BADREQ, SESSION, SHUTDOWN) or the client's own (BADARG, NOTCONNECTED,
 * DISCONNECTED, CLIENT_TIMEOUT, CLOSED). LOST errors carry `reason`. */
export class LockError extends Error {
  constructor(code, message, { resource, reason, cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.name = 'LockError';
    this.code = code;
    if (resource !== undefined) this.resource = resource;
    if (reason !== undefined) this.reason = reason;
  }
}

const printable = (s) => /^[\x21-\x7e]+$/.test(s);

function badArg(msg) {
  return new LockError('BADARG', msg);
}

function checkResource(resource) {
  if (typeof resource !== 'string') throw badArg(`resource must be a string, not ${typeof resource}`);
  if (resource.length === 0) throw badArg('resource is empty');
  if (resource.length > RESOURCE_MAX) {
    throw badArg(`resource is ${resource.length} characters long (at most ${RESOURCE_MAX})`);
  }
  if (!printable(resource)) {
    throw badArg(`resource ${JSON.stringify(resource)}: only printable ASCII without spaces (0x21-0x7E) is allowed`);
  }
  return resource;
}

function checkMs(v, what) {
  if (!Number.isSafeInteger(v) || v < 0) throw badArg(`${what} must be a non-negative integer (milliseconds), not ${v}`);
  return v;
}

function checkWord(v, what, max) {
  if (typeof v !== 'string' || v.length === 0 || v.length > max || !printable(v)) {
    throw badArg(`${what} must be 1-${max} printable ASCII characters without spaces`);
  }
  return v;
}

function parseEndpoint(ep) {
  if (typeof ep !== 'string') throw badArg(`endpoint must be a 'host:port' string, not ${typeof ep}`);
  let host, port;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(ep);
  if (v6) {
    [, host, port] = v6;
  } else {
    const i = ep.lastIndexOf(':');
    host = i > 0 ? ep.slice(0, i) : '';
    port = i > 0 ? ep.slice(i + 1) : '';
  }
  const n = /^\d+$/.test(port) ? Number(port) : NaN;
  if (!host || !(n > 0 && n < 65536)) {
    throw badArg(`bad endpoint ${JSON.stringify(ep)}: expected 'host:port' with a port in 1-65535`);
  }
  return { host, port: n, where: `${host}:${n}` };
}

function parseEndpoints(endpoints) {
  const list = typeof endpoints === 'string' ? [endpoints] : endpoints;
  if (!Array.isArray(list)) throw badArg("endpoints must be a 'host:port' string or an array of them");
  if (list.length === 0) throw badArg('no endpoint given');
  return list.map(parseEndpoint);
}

function errorFor(code, text, resource) {
  return new LockError(code, text || code, { resource });
}

// Session states: CONNECTING (TCP connect), HANDSHAKE (HELLO/AUTH sent), READY (requests
// flow, keep-alive runs), CLOSED (gone: pending failed, holds lost; never reused).
const SESSION_MOVES = {
  CONNECTING: ['HANDSHAKE', 'CLOSED'],
  HANDSHAKE: ['READY', 'CLOSED'],
  READY: ['CLOSED'],
  CLOSED: [],
};

// Hold states: HELD (granted, within its deadline), RELEASING (RELEASE sent; a LOST push
// before its reply still counts), RELEASED and LOST (final).
const HOLD_MOVES = {
  HELD: ['RELEASING', 'LOST'],
  RELEASING: ['RELEASED', 'LOST'],
  RELEASED: [],
  LOST: [],
};

function move(obj, table, to, what) {
  if (!table[obj.state].includes(to)) throw new Error(`lockp: illegal move ${what}: ${obj.state} -> ${to}`);
  if (process.env.LOCKP_DEBUG) console.error(`lockp: ${what}: ${obj.state} -> ${to}`);
  obj.state = to;
}

// Every armed hold of every Client in this process, and the earliest time one of them
// is due. One event loop serves them all, and after a stall it may hand a socket's data
// to its callback before running an overdue timer: a grant read for one Client must not
// come before the loss of another Client's lock that was due earlier. So every data
// event first runs the overdue deadlines (sweepDue), cheaply when none is due.
const armed = new Set();
let nextDue = Infinity;

function sweepDue() {
  if (now() < nextDue) return;
  nextDue = Infinity;
  for (const h of [...armed]) {
    if (h.due <= now()) h.client._onDeadline(h);
    else nextDue = Math.min(nextDue, h.due);
  }
}

class Hold {
  constructor(sess, resource, token, fence, leaseMs, validityMs, bound) {
    this.sess = sess;
    this.resource = resource;
    this.token = token;
    this.fence = fence;
    this.leaseMs = leaseMs;
    this.validityMs = validityMs;
    this.baseDeadline = deadlineFrom(bound, validityMs);
    this.state = 'HELD';
    // The AbortSignal is made when someone asks for it (most locks are released unasked,
    // and an AbortController costs more than the rest of a grant): lossError holds the
    // reason until then.
    this.controller = null;
    this.lossError = null;
    this.lostReason = null;
    this.lostAt = null;
    // the deadline once it can no longer move: it passed before a send moved the session
    // bound, or the lock was lost (then: the deadline in force at that moment)
    this.frozen = null;
    this.timer = null;
    this.due = Infinity; // the deadline the timer was armed for
    this.client = null; // the Client that armed it (for sweepDue)
  }

  get signal() {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.lossError) this.controller.abort(this.lossError);
    }
    return this.controller.signal;
  }

  abort(err) {
    this.lossError = err;
    if (this.controller) this.controller.abort(err);
  }

  deadline() {
    if (this.frozen !== null) return this.frozen;
    let d = this.baseDeadline;
    if (this.leaseMs === 0) d = Math.max(d, this.sess.aliveSent + this.validityMs / 2);
    return Math.min(d, this.sess.sessionBound());
  }

  move(to) {
    move(this, HOLD_MOVES, to, `lock ${this.resource}`);
  }
}

class Session {
  constructor(ep) {
    this.ep = ep;
    this.state = 'CONNECTING';
    this.socket = null;
    this.buf = '';
    this.out = ''; // requests not yet written: those of one turn of the loop go in one write
    this.timeoutMs = 10000;
    this.sessionId = null;
    this.pending = new Map();
    this.holds = new Map();
    const t = now();
    this.lastRx = t;
    this.lastTx = t;
    this.sessTx = t; // the send the session bound counts from (see the module comment)
    this.aliveSent = t;
    this.pingOut = false;
    this.nextDue = Infinity; // no pending request times out before this (see _call)
    this.tick = null;
    this.endCode = 'DISCONNECTED';
    this.endWhy = 'the lockd session ended';
    this.lostReason = LOST_DISCONNECTED;
  }

  /** No lock of this session outlives it (see the module comment): lockd's silence timer
   * starts at its last receipt, after our last send. */
  sessionBound() {
    return deadlineFrom(this.sessTx, this.timeoutMs);
  }

  /** A send at t moves the session bound only while it has not passed: after a longer
   * silence (a pause) lockd may have ended the session, and a send proves nothing until
   * lockd answers it (sessionAlive). */
  sessionSent(t) {
    if (t < this.sessionBound()) this.sessTx = t;
  }

  /** lockd answered a request sent at sentAt (not ERR SESSION): its silence timer
   * restarted then. */
  sessionAlive(sentAt) {
    this.sessTx = Math.max(this.sessTx, sentAt);
  }

  /** Before a send at t moves the session bound: a lock whose deadline passed already
   * stays lost (lockd may have ended the session meanwhile; only its timer, which our
   * stopped loop did not run, is late). Nothing else moves with a send. */
  freezePassed(t) {
    if (this.holds.size === 0 || t < this.sessionBound()) return;
    for (const h of this.holds.values()) if (h.frozen === null && t >= h.deadline()) h.frozen = h.deadline();
  }

  get deadMs() {
    return Math.max(200, (this.timeoutMs * 2) / 3);
  }

  pingInterval() {
    let ms = this.timeoutMs / 3;
    for (const h of this.holds.values()) if (h.leaseMs === 0) ms = Math.min(ms, h.validityMs / 6);
    for (const p of this.pending.values()) {
      // a waiting fixed-lease ACQUIRE: keep aliveSent fresh so the grant's deadline is
      // not counted from long before lockd granted it
      if (p.kind === 'ACQUIRE' && p.leaseMs > 0 && p.waitMs > 0) ms = Math.min(ms, p.leaseMs / 4);
    }
    return Math.max(MIN_PING_MS, ms);
  }

  move(to) {
    move(this, SESSION_MOVES, to, `session ${this.ep.where}`);
  }
}

/** A granted lock. `fence` is a BigInt, `token` a string, `signal` an AbortSignal that
 * fires the moment the lock is lost (its reason: a LockError with code LOST). */
export class Lease {
  #client;
  #hold;

  constructor(client, hold) {
    this.#client = client;
    this.#hold = hold;
  }

  get resource() { return this.#hold.resource; }
  get token() { return this.#hold.token; }
  get fence() { return this.#hold.fence; }
  get leaseMs() { return this.#hold.leaseMs; }
  get validityMs() { return this.#hold.validityMs; }
  get signal() { return this.#hold.signal; }
  get lost() { return this.#hold.lossError !== null; }
  get lostReason() { return this.#hold.lostReason; }
  /** performance.now() when the loss was noticed, or null. */
  get lostAt() { return this.#hold.lostAt; }
  /** performance.now() at which the lock is lost unless extended (never after the
   * session bound); once lost, the deadline that was in force then. */
  get deadline() { return this.#hold.deadline(); }
  get held() { return this.#hold.state === 'HELD' && !this.lost; }
  remainingMs() { return this.#hold.deadline() - now(); }

  /** Throws the LOST error if the lock is lost (call before a write it protects). */
  check() {
    if (this.lost) throw this.signal.reason;
  }

  /** RENEW (a fixed lease: leaseMs or its own); resolves to validity_ms. */
  renew(leaseMs) {
    return this.#client._renew(this.#hold, leaseMs);
  }

  /** RELEASE: true if the lock was held until now, false if it was lost. */
  release() {
    return this.#client._release(this.#hold);
  }
}

export class Client {
  /** endpoints: 'host:port' or an array of them, tried in order (failover). */
  constructor(endpoints, { name, auth, requestTimeoutMs = REQUEST_SLACK_MS } = {}) {
    this._eps = parseEndpoints(endpoints);
    this._slackMs = checkMs(requestTimeoutMs, 'requestTimeoutMs');
    if (this._slackMs === 0) throw badArg('requestTimeoutMs must be at least 1');
    this._name = checkWord(name ?? 'client', 'name', NAME_MAX);
    this._auth = auth ? checkWord(auth, 'auth', SECRET_MAX) : null;
    this._epIdx = 0;
    this._sess = null;
    this._connecting = null;
    this._nextTag = 0;
    this._closed = false;
  }

  // ------------------------------------------------------------ sessions

  /** Connects now (else the first request does). */
  async connect() {
    await this._session();
  }

  async _session() {
    if (this._closed) throw new LockError('CLOSED', 'the client is closed');
    if (this._sess && this._sess.state === 'READY') return this._sess;
    if (!this._connecting) {
      this._connecting = this._connectRound().finally(() => { this._connecting = null; });
    }
    return this._connecting;
  }

  async _connectRound() {
    const errors = [];
    for (let i = 0; i < this._eps.length; i++) {
      if (this._closed) throw new LockError('CLOSED', 'the client is closed');
      const ep = this._eps[this._epIdx];
      try {
        this._sess = await this._open(ep);
        return this._sess;
      } catch (e) {
        if (e.code === 'AUTH' || e.code === 'NOAUTH') throw e;
        errors.push(`${ep.where}: ${e.message}`);
      }
      this._epIdx = (this._epIdx + 1) % this._eps.length;
    }
    throw new LockError('NOTCONNECTED', `no lockd reachable (${errors.join('; ')})`);
  }

  _open(ep) {
    const sess = new Session(ep);
    return new Promise((resolve, reject) => {
      const fail = (e) => {
        clearTimeout(timer);
        this._down(sess, e.message);
        reject(e);
      };
      const timer = setTimeout(() => fail(new LockError('NOTCONNECTED', 'connect/handshake timed out')), CONNECT_TIMEOUT_MS);
      const sock = net.connect({ host: ep.host, port: ep.port });
      sess.socket = sock;
      sock.setNoDelay(true);
      sock.setEncoding('latin1');
      sock.on('error', (e) => {
        if (sess.state === 'CONNECTING') fail(new LockError('NOTCONNECTED', `cannot connect: ${e.message}`));
        else this._down(sess, `socket error: ${e.message}`);
      });
      sock.on('close', () => this._down(sess, 'closed by lockd'));
      sock.on('data', (chunk) => this._onData(sess, chunk));
      sock.on('connect', async () => {
        sess.move('HANDSHAKE');
        try {
          const rest = await this._call(sess, 'HELLO', `HELLO ${this._name}`);
          const parts = rest.split(' ');
          if (parts.length !== 2 || !/^\d+$/.test(parts[1])) throw new LockError('NOTCONNECTED', `malformed HELLO reply ${rest}`);
          sess.sessionId = parts[0];
          sess.timeoutMs = Math.max(1, Number(parts[1]));
          if (this._auth) await this._call(sess, 'AUTH', `AUTH ${this._auth}`);
        } catch (e) {
          fail(e);
          return;
        }
        clearTimeout(timer);
        if (sess.state !== 'HANDSHAKE') {
          reject(new LockError('NOTCONNECTED', 'session ended during the handshake'));
          return;
        }
        sess.move('READY');
        sess.lastRx = Math.max(sess.lastRx, now());
        this._tick(sess);
        resolve(sess);
      });
    });
  }

  _down(sess, why, { code, reason } = {}) {
    if (sess.state === 'CLOSED') return;
    if (code) {
      sess.endCode = code;
      sess.endWhy = why;
    }
    if (reason) sess.lostReason = reason;
    const wasReady = sess.state === 'READY';
    sess.move('CLOSED');
    if (this._sess === sess) {
      this._sess = null;
      if (wasReady) this._epIdx = (this._epIdx + 1) % this._eps.length; // failover
    }
    clearTimeout(sess.tick);
    if (sess.socket) sess.socket.destroy();
    for (const h of [...sess.holds.values()]) {
      if (h.state === 'RELEASING') this._holdEnd(h, 'RELEASED');
      else this._lose(h, sess.lostReason, false);
    }
    const pending = [...sess.pending.values()];
    sess.pending.clear();
    for (const p of pending) {
      if (p.reject) {
        const msg = sess.endWhy !== why ? `${sess.endWhy} (${why})` : why;
        p.reject(new LockError(sess.endCode, msg, { resource: p.resource }));
      }
    }
  }

  // ------------------------------------------------------------ holds

  _arm(h) {
    clearTimeout(h.timer);
    h.client = this;
    h.due = h.deadline();
    h.timer = setTimeout(() => this._onDeadline(h), Math.max(0, h.due - now()));
    armed.add(h);
    nextDue = Math.min(nextDue, h.due);
  }

  _onDeadline(h) {
    clearTimeout(h.timer);
    h.timer = null;
    armed.delete(h);
    if (h.state !== 'HELD') return;
    if (now() < h.deadline()) {
      this._arm(h); // extended meanwhile
      return;
    }
    this._lose(h, LOST_DEADLINE);
  }

  _holdEnd(h, to) {
    h.move(to);
    clearTimeout(h.timer);
    h.timer = null;
    armed.delete(h);
    h.sess.holds.delete(h.token);
  }

  _lose(h, reason, release = true) {
    if (h.state === 'LOST' || h.state === 'RELEASED') return;
    h.lostAt = now();
    h.lostReason = reason;
    if (h.frozen === null) h.frozen = h.deadline(); // lease.deadline: the one in force when it was lost
    this._holdEnd(h, 'LOST');
    h.abort(new LockError('LOST', `lock ${h.resource} lost (${reason})`, { resource: h.resource, reason }));
    if (release && h.sess.state === 'READY') this._send(h.sess, 'RELEASE', `RELEASE ${h.resource} ${h.token}`, {});
  }

  // ------------------------------------------------------------ requests

  _send(sess, kind, text, extra) {
    const tag = String(++this._nextTag);
    const p = { tag, kind, sentAt: now(), dueAt: Infinity, timeoutMs: 0, resource: undefined, leaseMs: 0, waitMs: 0, hold: null, resolve: null, reject: null, cancelled: false, ...extra };
    sess.pending.set(tag, p);
    // Auto-pipelining (as ioredis's): the requests made in one turn of the event loop (the
    // continuations a burst of replies wakes, many callers of one Client) go out in ONE
    // write after it, so lockd reads them with one recv and answers with one writev. sentAt
    // is taken now, before the write: a deadline counted from it is earlier, never later.
    if (sess.out === '') process.nextTick(() => this._flush(sess));
    sess.out += `${tag} ${text}\n`;
    sess.freezePassed(p.sentAt);
    sess.sessionSent(p.sentAt);
    sess.lastTx = p.sentAt;
    return p;
  }

  _flush(sess) {
    const out = sess.out;
    sess.out = '';
    if (out !== '' && sess.socket && !sess.socket.destroyed) sess.socket.write(out);
  }

  // timeoutMs: lockd answers PINGs but not this request in that time: the session (and
  // any late grant) goes. Checked by the session's tick (_tick), not a timer per request:
  // the timeouts are 10 s and more, and a timer per request cost a fifth of a cycle.
  _call(sess, kind, text, { timeoutMs, signal, ...extra } = {}) {
    return new Promise((resolve, reject) => {
      let p = null;
      const done = signal ? (fn) => (v) => {
        signal.removeEventListener('abort', onAbort);
        fn(v);
      } : (fn) => fn;
      const onAbort = () => {
        p.cancelled = true; // a late grant is given back at once
        p.resolve = p.reject = null;
        p.dueAt = Infinity;
        reject(signal.reason ?? new LockError('CANCELLED', 'cancelled'));
      };
      p = this._send(sess, kind, text, { ...extra, resolve: done(resolve), reject: done(reject) });
      if (timeoutMs !== undefined) {
        p.timeoutMs = timeoutMs;
        p.dueAt = p.sentAt + timeoutMs;
        if (p.dueAt < sess.nextDue) sess.nextDue = p.dueAt;
      }
      if (signal) {
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      }
    });
  }

  /** Acquires for manual use: resolves to a Lease; call lease.release().
   * leaseMs 0 = watchdog lease (kept while the client lives); > 0 = fixed lease, lost at
   * its deadline unless renewed. waitMs 0 = one attempt; else wait up to waitMs, then
   * TIMEOUT. signal: an AbortSignal that gives up the wait. */
  async acquire(resource, { leaseMs = 0, waitMs = 0, signal } = {}) {
    checkResource(resource);
    checkMs(leaseMs, 'leaseMs');
    checkMs(waitMs, 'waitMs');
    const sess = await this._session();
    const hold = await this._call(sess, 'ACQUIRE', `ACQUIRE ${resource} ${leaseMs} ${waitMs}`, {
      timeoutMs: waitMs + this._slackMs, signal, resource, leaseMs, waitMs,
    });
    return new Lease(this, hold);
  }

  /** Acquires, runs fn(lease, signal), releases on every path. signal fires the moment
   * the lock is lost; if it was lost, `using` rejects with code LOST once fn is done. */
  async using(resource, opts, fn) {
    if (typeof opts === 'function') [opts, fn] = [{}, opts];
    const lease = await this.acquire(resource, opts ?? {});
    let result;
    let error = null;
    try {
      result = await fn(lease, lease.signal);
    } catch (e) {
      error = e;
    }
    let held = false;
    if (!lease.lost) {
      try {
        held = await lease.release();
      } catch (e) {
        if (error) throw error; // the work's own error wins
        throw e;
      }
    }
    if (!held) {
      throw new LockError('LOST', `lock ${resource} was lost while the work ran (${lease.lostReason ?? LOST_NO_REASON})`, {
        resource, reason: lease.lostReason ?? LOST_NO_REASON, cause: error ?? undefined,
      });
    }
    if (error) throw error;
    return result;
  }

  async _renew(h, leaseMs) {
    if (h.state !== 'HELD') {
      throw new LockError('LOST', `lock ${h.resource} is not held (${h.lostReason ?? 'released'})`, { resource: h.resource, reason: h.lostReason ?? 'released' });
    }
    const lease = checkMs(leaseMs ?? h.leaseMs, 'leaseMs');
    return this._call(h.sess, 'RENEW', `RENEW ${h.resource} ${h.token} ${lease}`, {
      timeoutMs: this._slackMs, resource: h.resource, leaseMs: lease, hold: h,
    });
  }

  async _release(h) {
    if (h.state === 'RELEASED') return true;
    if (h.state !== 'HELD') return false;
    if (now() >= h.deadline()) {
      this._lose(h, LOST_DEADLINE);
      return false;
    }
    const sess = h.sess;
    if (sess.state !== 'READY') {
      this._lose(h, sess.lostReason, false);
      return false;
    }
    h.move('RELEASING');
    clearTimeout(h.timer);
    h.timer = null;
    armed.delete(h);
    try {
      await this._call(sess, 'RELEASE', `RELEASE ${h.resource} ${h.token}`, {
        timeoutMs: this._slackMs, resource: h.resource, hold: h,
      });
    } catch (e) {
      if (!['DISCONNECTED', 'SESSION', 'CLIENT_TIMEOUT', 'CLOSED'].includes(e.code)) throw e;
      // the session ended after the RELEASE went out: lockd released it
    }
    return h.state === 'RELEASED';
  }

  /** Round trip to lockd in milliseconds. */
  async ping() {
    const sess = await this._session();
    const t = now();
    await this._call(sess, 'PING', 'PING', { timeoutMs: this._slackMs });
    return now() - t;
  }

  /** lockd's INFO as an object (numbers where the value is a number). */
  async info() {
    const sess = await this._session();
    const rest = await this._call(sess, 'INFO', 'INFO', { timeoutMs: this._slackMs });
    const out = {};
    for (const kv of rest.split(' ')) {
      const i = kv.indexOf('=');
      if (i > 0) out[kv.slice(0, i)] = /^\d+$/.test(kv.slice(i + 1)) ? Number(kv.slice(i + 1)) : kv.slice(i + 1);
    }
    return out;
  }

  /** Ends the session (lockd releases what it still holds for us). */
  async close() {
    this._closed = true;
    const sess = this._sess;
    if (!sess) return;
    this._flush(sess); // what was asked before close goes out before the QUIT
    if (sess.state === 'READY') sess.socket.write('q QUIT\n');
    const closed = new Promise((r) => sess.socket.once('close', r));
    sess.socket.end();
    this._down(sess, 'client closed', { code: 'CLOSED', reason: LOST_CLOSED });
    await closed;
  }

  // ------------------------------------------------------------ reading

  _onData(sess, chunk) {
    sweepDue();
    sess.lastRx = now();
    sess.buf += chunk;
    let i;
    while (sess.state !== 'CLOSED' && (i = sess.buf.indexOf('\n')) >= 0) {
      let line = sess.buf.slice(0, i);
      sess.buf = sess.buf.slice(i + 1);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      this._onLine(sess, line);
    }
    if (sess.buf.length > LINE_MAX + 1) this._down(sess, 'line too long from lockd');
  }

  _onLine(sess, line) {
    const sp1 = line.indexOf(' ');
    const tag = sp1 < 0 ? line : line.slice(0, sp1);
    const after = sp1 < 0 ? '' : line.slice(sp1 + 1);
    const sp2 = after.indexOf(' ');
    const word = (sp2 < 0 ? after : after.slice(0, sp2)).toUpperCase();
    const rest = sp2 < 0 ? '' : after.slice(sp2 + 1);
    if (tag === '*') {
      this._onPush(sess, word, rest);
      return;
    }
    const p = sess.pending.get(tag);
    if (!p) return;
    sess.pending.delete(tag);
    const bound = Math.max(p.sentAt, sess.aliveSent); // lockd wrote this reply after `bound`
    sess.aliveSent = bound;
    if (!(word === 'ERR' && rest.startsWith('SESSION'))) sess.sessionAlive(p.sentAt);
    if (p.kind === 'PING' && !p.resolve) sess.pingOut = false;
    let value;
    try {
      value = this._result(sess, p, word, rest, bound);
    } catch (e) {
      if (p.reject) p.reject(e);
      return;
    }
    if (p.resolve) p.resolve(value);
  }

  _result(sess, p, word, rest, bound) {
    if (word === 'ERR') {
      const sp = rest.indexOf(' ');
      const code = sp < 0 ? rest : rest.slice(0, sp);
      if (p.kind === 'RELEASE' && p.hold && p.hold.state === 'RELEASING') this._holdEnd(p.hold, 'RELEASED');
      throw errorFor(code, sp < 0 ? '' : rest.slice(sp + 1), p.resource);
    }
    switch (p.kind) {
      case 'ACQUIRE': {
        if (word === 'TIMEOUT') throw new LockError('TIMEOUT', `lock ${p.resource} not granted within ${p.waitMs} ms`, { resource: p.resource });
        const m = word === 'OK' ? /^([0-9a-f]{32}) (\d+) (\d+)$/.exec(rest) : null;
        if (!m) throw new LockError('BADREPLY', `unexpected reply ${word} ${rest} to ACQUIRE`);
        const h = new Hold(sess, p.resource, m[1], BigInt(m[2]), p.leaseMs, Number(m[3]), bound);
        sess.holds.set(h.token, h);
        if (p.cancelled || !p.resolve) {
          this._lose(h, 'cancelled'); // nobody wants it: give it back at once
          return null;
        }
        if (now() >= h.deadline()) {
          this._lose(h, LOST_DEADLINE);
          throw new LockError('TIMEOUT', `lock ${p.resource} granted after its validity ran out (validity ${h.validityMs} ms)`, { resource: p.resource });
        }
        this._arm(h);
        return h;
      }
      case 'RENEW': {
        const h = p.hold;
        if (word === 'OK' && /^\d+$/.test(rest)) {
          if (h.state !== 'HELD') {
            throw new LockError('LOST', `lock ${p.resource} lost (${h.lostReason})`, { resource: p.resource, reason: h.lostReason ?? LOST_NO_REASON });
          }
          h.validityMs = Number(rest);
          h.baseDeadline = deadlineFrom(bound, h.validityMs);
          if (p.leaseMs > 0) h.leaseMs = p.leaseMs;
          this._arm(h);
          return h.validityMs;
        }
        this._lose(h, LOST_NO_REASON, false);
        throw new LockError('LOST', `lock ${p.resource} was not held any more (RENEW: ${word})`, { resource: p.resource, reason: LOST_NO_REASON });
      }
      case 'RELEASE': {
        const h = p.hold;
        if (h && h.state === 'RELEASING') {
          if (word === 'OK') this._holdEnd(h, 'RELEASED');
          else this._lose(h, LOST_NO_REASON, false);
        }
        return word === 'OK';
      }
      default:
        if (word !== 'OK') throw new LockError(word || 'BADREPLY', `unexpected reply ${word} ${rest}`);
        return rest;
    }
  }

  _onPush(sess, word, rest) {
    if (word === 'LOST') {
      const parts = rest.split(' ');
      const h = sess.holds.get(parts[1]);
      if (h && h.resource === parts[0]) this._lose(h, parts[2] || LOST_NO_REASON, false); // the 4th field is optional (SPEC 2b)
    } else if (word === 'ERR' && rest.startsWith('SESSION')) {
      // lockd expired the session (its LOSTs came first) and closes it next
      this._down(sess, `session ${rest.slice(8)}`, { code: 'SESSION', reason: 'session' });
    }
  }

  // ------------------------------------------------------------ keep-alive

  /** PING when idle; drop a lockd that sent nothing for deadMs. Re-arms itself. */
  _tick(sess) {
    if (sess.state !== 'READY') return;
    const t = now();
    if (t - sess.lastRx >= sess.deadMs) {
      // We may have been frozen ourselves: let waiting input be read first.
      sess.tick = setImmediate(() => setImmediate(() => {
        if (sess.state !== 'READY') return;
        if (now() - sess.lastRx >= sess.deadMs) {
          this._down(sess, `lockd sent nothing for ${Math.round(sess.deadMs)} ms`, { reason: LOST_LOCKD_DEAD });
        } else {
          this._tick(sess);
        }
      }));
      return;
    }
    if (t >= sess.nextDue) {
      sess.nextDue = Infinity;
      for (const p of sess.pending.values()) {
        if (p.dueAt <= t) {
          this._down(sess, `no reply to ${p.kind} in ${p.timeoutMs} ms`, { code: 'CLIENT_TIMEOUT' });
          return;
        }
        if (p.dueAt < sess.nextDue) sess.nextDue = p.dueAt;
      }
    }
    const idle = sess.pingInterval();
    if (!sess.pingOut && (t - sess.lastRx >= idle || t - sess.lastTx >= idle)) {
      sess.pingOut = true;
      this._send(sess, 'PING', 'PING', {});
    }
    let next = Math.min(sess.lastRx + sess.deadMs, sess.nextDue);
    if (!sess.pingOut) next = Math.min(next, sess.lastRx + idle, sess.lastTx + idle);
    sess.tick = setTimeout(() => this._tick(sess), Math.min(Math.max(2, next - now()), idle / 2));
    sess.tick.unref?.();
  }
}

export default Client;
