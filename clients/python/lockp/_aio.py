"""lockp's asyncio core: AsyncClient, and the session logic the threaded Client reuses.

Owns one TCP session to one lockd at a time (endpoints tried in order for failover),
tagged pipelining (tags are decimal numbers; replies may come in any order), keep-alive
and liveness, and the local deadline of every lock (SPEC 3b):

- A lock's deadline is validity_ms counted from the moment its ACQUIRE (or RENEW) was
  SENT, or from a later moment that is provably before lockd wrote the reply: lockd
  writes replies in order on the stream, so a reply that arrives after the reply to a
  request sent at time S was written after S. ``_Session.alive_sent`` keeps that bound.
- A fixed lease (lease_ms > 0) is lost locally at its deadline unless a RENEW reply
  extended it, whatever lockd says.
- A watchdog lease (lease_ms 0) is renewed by lockd, and LOCKP tells the client nothing
  about those renewals. A lockd that answers keeps them alive (it renews every third of
  its lease and pushes ``* LOST`` before it gives one up), so the client extends the
  deadline by liveness: the lock holds until max(grant bound + validity, alive_sent +
  validity/2). lockd renews every third of the lease, so a lockd seen alive at A has
  renewed at or after A - lease/3 and its keys last at least until about A + 2/3 lease:
  half of the validity leaves a sixth of it for round trips and drift.
- The session bound: lockd ends a session that sent nothing for the session timeout
  (HELLO's reply) and hands its locks to the next waiter at once; its silence is counted
  from its last receipt, which comes after our last send. So every deadline, watchdog or
  fixed lease, is at most sess_tx + the session timeout (less the same margin): a holder
  stopped right after its grant (SIGSTOP, a GC pause, a VM stall) has lost the lock
  locally before anyone else can get it. sess_tx is the last send while the bound has
  not passed (a PING at least every third of the timeout), so a running client loses
  nothing; a deadline that passed is not brought back by a later send
  (``_Hold.frozen``). After a longer silence (a pause) lockd may have ended the session,
  and a send proves nothing until lockd answers it: only then (a reply other than
  ``ERR SESSION``) does sess_tx move to that request's send. Else a grant read just
  after a pause, its ACQUIRE sent before, got a bound counted from the PING the waking
  loop sent first.
- Liveness is judged by bytes RECEIVED: a PING goes out when nothing was received (or
  sent) for the ping interval (a third of the session timeout; a sixth of the validity
  while a watchdog lease is held); a lockd that sent nothing for two thirds of the
  session timeout is dead: the session is dropped and every lock taken through it is
  lost at once.

Ownership: the client owns its sessions, pending requests and holds; a Lease object
is a view of a hold (see _async.py) that the caller keeps as long as it likes. Lost
callbacks run on the client's event loop (for the threaded Client: its I/O thread) and
must not block.
"""

import asyncio
import enum
import logging
import threading
import time

from . import _proto
from ._errors import (CLOSED, DEADLINE, DISCONNECTED, LOCKD_DEAD, NO_REASON, LockError, LockLost,
                      LockTimeout, Unavailable, error_for)

log = logging.getLogger("lockp")

CONNECT_TIMEOUT_S = 1.0  # TCP connect + HELLO/AUTH, per endpoint
REQUEST_SLACK_S = 10.0  # a reply later than wait_ms + this: the session is dropped
MIN_PING_S = 0.02


def now():
    """The client's clock: monotonic seconds (asyncio's loop.time() is the same)."""
    return time.monotonic()


def deadline_from(bound, validity_ms):
    """bound + validity, less a margin for our own wake-up latency (a loaded machine
    runs a timer late; the lost signal must still come first): 5% of the validity, at
    most 50 ms."""
    return bound + (validity_ms - min(validity_ms * 0.05, 50.0)) / 1000.0


class SessionState(enum.Enum):
    CONNECTING = "connecting"  # TCP connect in progress
    HANDSHAKE = "handshake"  # HELLO (then AUTH) sent, replies pending
    READY = "ready"  # requests flow; keep-alive and liveness run
    CLOSED = "closed"  # gone: pending requests failed, holds lost; never reused


_SESSION_MOVES = {
    SessionState.CONNECTING: {SessionState.HANDSHAKE, SessionState.CLOSED},
    SessionState.HANDSHAKE: {SessionState.READY, SessionState.CLOSED},
    SessionState.READY: {SessionState.CLOSED},
    SessionState.CLOSED: set(),
}


class HoldState(enum.Enum):
    HELD = "held"  # granted and within its deadline
    RELEASING = "releasing"  # RELEASE sent; a LOST push before its reply still counts
    RELEASED = "released"  # given back in time (final)
    LOST = "lost"  # lost: pushed, deadline passed, session gone (final)


_HOLD_MOVES = {
    HoldState.HELD: {HoldState.RELEASING, HoldState.LOST},
    HoldState.RELEASING: {HoldState.RELEASED, HoldState.LOST},
    HoldState.RELEASED: set(),
    HoldState.LOST: set(),
}


class _Hold:
    """One granted lock as the client tracks it."""

    def __init__(self, sess, resource, token, fence, lease_ms, validity_ms, bound):
        self.sess = sess
        self.resource = resource
        self.token = token
        self.fence = fence
        self.lease_ms = lease_ms  # 0: watchdog lease
        self.validity_ms = validity_ms  # of the last grant or renewal
        self.base_deadline = deadline_from(bound, validity_ms)  # monotonic seconds
        self.state = HoldState.HELD
        self.lost = threading.Event()
        self.lost_reason = None
        self.lost_at = None  # monotonic seconds when the loss was noticed
        # the deadline once it can no longer move: it passed before a send moved the
        # session bound, or the lock was lost (then: the deadline in force at that moment)
        self.frozen = None
        self.callbacks = []
        self.timer = None

    def move(self, to):
        assert to in _HOLD_MOVES[self.state], f"hold {self.resource}: {self.state} -> {to}"
        log.debug("lock %s (%s): %s -> %s", self.resource, self.token, self.state.value, to.value)
        self.state = to

    def deadline(self):
        """When the lock is lost locally unless extended (monotonic seconds): never after
        the session bound."""
        if self.frozen is not None:
            return self.frozen
        d = self.base_deadline
        if self.lease_ms == 0:
            d = max(d, self.sess.alive_sent + self.validity_ms / 2000.0)
        return min(d, self.sess.session_bound())


class _Pending:
    __slots__ = ("tag", "kind", "sent_at", "future", "resource", "lease_ms", "wait_ms", "hold",
                 "cancelled")

    def __init__(self, tag, kind, future, resource=None, lease_ms=0, wait_ms=0, hold=None):
        self.tag = tag
        self.kind = kind
        self.sent_at = 0.0
        self.future = future  # None: internal, nobody waits
        self.resource = resource
        self.lease_ms = lease_ms
        self.wait_ms = wait_ms
        self.hold = hold
        self.cancelled = False  # the caller gave up: a late grant is released at once


class _Session:
    """One TCP connection to one lockd."""

    def __init__(self, client, ep):
        self.client = client
        self.ep = ep
        self.where = f"{ep[0]}:{ep[1]}"
        self.state = SessionState.CONNECTING
        self.reader = self.writer = None
        self.session_id = None
        self.timeout_ms = 10000
        self.pending = {}
        self.holds = {}  # token -> _Hold
        t = now()
        self.last_rx = self.last_tx = t
        self.sess_tx = t  # the send the session bound counts from (see the module doc)
        self.alive_sent = t  # lockd was alive at or after this moment (see module doc)
        self.ping_out = False
        self.end_code = "DISCONNECTED"
        self.end_why = "the lockd session ended"
        self.lost_reason = DISCONNECTED
        self.tasks = []

    def move(self, to):
        assert to in _SESSION_MOVES[self.state], f"session {self.where}: {self.state} -> {to}"
        log.debug("session %s: %s -> %s", self.where, self.state.value, to.value)
        self.state = to

    def session_bound(self):
        """No lock of this session outlives it (see the module doc): lockd's silence
        timer starts at its last receipt, after our last send."""
        return deadline_from(self.sess_tx, self.timeout_ms)

    def session_sent(self, t):
        """A send at t moves the session bound only while it has not passed: after a
        longer silence (a pause) lockd may have ended the session, and a send proves
        nothing until lockd answers it (session_alive)."""
        if t < self.session_bound():
            self.sess_tx = t

    def session_alive(self, sent_at):
        """lockd answered a request sent at sent_at (not ERR SESSION): its silence timer
        restarted then."""
        self.sess_tx = max(self.sess_tx, sent_at)

    def freeze_passed(self, t):
        """Before a send at t moves the session bound: a lock whose deadline passed
        already stays lost (lockd may have ended the session meanwhile; only its timer,
        which our stopped loop did not run, is late). Nothing else moves with a send."""
        if self.holds and t >= self.session_bound():
            for h in self.holds.values():
                if h.frozen is None and t >= h.deadline():
                    h.frozen = h.deadline()

    @property
    def dead_s(self):
        return max(0.2, self.timeout_ms * 2 / 3000.0)

    def ping_interval(self):
        s = self.timeout_ms / 3000.0
        for h in self.holds.values():
            if h.lease_ms == 0:
                s = min(s, h.validity_ms / 6000.0)
        for p in self.pending.values():
            # a waiting fixed-lease ACQUIRE: keep alive_sent fresh so the grant's
            # deadline is not counted from long before lockd granted it
            if p.kind == "ACQUIRE" and p.lease_ms > 0 and p.wait_ms > 0:
                s = min(s, p.lease_ms / 4000.0)
        return max(MIN_PING_S, s)


class _Core:
    """What AsyncClient and Client share: runs on one event loop."""

    def __init__(self, endpoints, name, auth):
        self.eps = _proto.parse_endpoints(endpoints)
        self.name = _proto.check_word(name if name is not None else "client", "name",
                                      _proto.NAME_MAX)
        self.auth = _proto.check_word(auth, "auth", _proto.SECRET_MAX) if auth else None
        self.ep_idx = 0
        self.sess = None
        self.next_tag = 0
        self.closed = False
        self._connecting = None  # the connect round in progress (a Task), if any

    # ------------------------------------------------------------ sessions

    async def session(self):
        """The READY session, connecting (with failover) when there is none. Concurrent
        callers share one connect round and its outcome."""
        if self.closed:
            raise Unavailable("the client is closed", code="CLOSED")
        if self.sess is not None and self.sess.state is SessionState.READY:
            return self.sess
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect_round())
            self._connecting.add_done_callback(self._round_done)
        return await asyncio.shield(self._connecting)

    def _round_done(self, fut):
        self._connecting = None
        if not fut.cancelled():
            fut.exception()  # retrieved: the callers got it

    async def _connect_round(self):
        errors = []
        for _ in range(len(self.eps)):
            if self.closed:
                raise Unavailable("the client is closed", code="CLOSED")
            ep = self.eps[self.ep_idx]
            try:
                self.sess = await self._open(ep)
                return self.sess
            except LockError as e:
                if e.code in ("AUTH", "NOAUTH"):
                    raise
                errors.append(f"{ep[0]}:{ep[1]}: {e}")
            except (OSError, asyncio.TimeoutError) as e:
                errors.append(f"{ep[0]}:{ep[1]}: {e or type(e).__name__}")
            self.ep_idx = (self.ep_idx + 1) % len(self.eps)
        raise Unavailable("no lockd reachable (" + "; ".join(errors) + ")", code="NOTCONNECTED")

    async def _open(self, ep):
        sess = _Session(self, ep)
        try:
            sess.reader, sess.writer = await asyncio.wait_for(
                asyncio.open_connection(ep[0], ep[1], limit=1 << 16), CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError) as e:
            raise Unavailable(f"cannot connect: {e or 'timeout'}", code="NOTCONNECTED") from None
        sess.move(SessionState.HANDSHAKE)
        sess.tasks.append(asyncio.ensure_future(self._read_loop(sess)))
        try:
            rest = await asyncio.wait_for(self._call(sess, "HELLO", f"HELLO {self.name}"),
                                          CONNECT_TIMEOUT_S)
            parts = rest.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise Unavailable(f"malformed HELLO reply {rest!r}", code="NOTCONNECTED")
            sess.session_id, sess.timeout_ms = parts[0], max(1, int(parts[1]))
            if self.auth:
                await asyncio.wait_for(self._call(sess, "AUTH", f"AUTH {self.auth}"),
                                       CONNECT_TIMEOUT_S)
        except BaseException as e:
            why = "handshake timed out" if isinstance(e, asyncio.TimeoutError) else str(e)
            self._down(sess, why)
            if isinstance(e, asyncio.TimeoutError):
                raise Unavailable(why, code="NOTCONNECTED") from None
            raise
        sess.move(SessionState.READY)
        t = now()
        sess.last_rx = max(sess.last_rx, t)
        sess.tasks.append(asyncio.ensure_future(self._tick_loop(sess)))
        log.debug("session %s ready: id %s, session timeout %d ms", sess.where, sess.session_id,
                  sess.timeout_ms)
        return sess

    def _down(self, sess, why, *, code=None, reason=None):
        """Ends a session: fails its pending requests, loses its holds (a releasing hold
        counts as released: any loss would have been pushed before the end)."""
        if sess.state is SessionState.CLOSED:
            return
        if code is not None:
            sess.end_code, sess.end_why = code, why
        if reason is not None:
            sess.lost_reason = reason
        was_ready = sess.state is SessionState.READY
        sess.move(SessionState.CLOSED)
        (log.warning if was_ready and sess.holds else log.debug)(
            "session with lockd %s ended: %s", sess.where, why)
        if self.sess is sess:
            self.sess = None
            if was_ready:  # new requests go to the next endpoint first (failover)
                self.ep_idx = (self.ep_idx + 1) % len(self.eps)
        if sess.writer is not None:
            sess.writer.close()
        me = asyncio.current_task()
        for t in sess.tasks:
            if t is not me:
                t.cancel()
        for h in list(sess.holds.values()):
            if h.state is HoldState.RELEASING:
                self._hold_end(h, HoldState.RELEASED)
            else:
                self.lose(h, sess.lost_reason, release=False)
        pending, sess.pending = sess.pending, {}
        for p in pending.values():
            if p.future is not None and not p.future.done():
                p.future.set_exception(Unavailable(f"{sess.end_why} ({why})" if sess.end_why
                                                   != why else why, code=sess.end_code,
                                                   resource=p.resource))

    # ------------------------------------------------------------ holds

    def _arm(self, h):
        if h.timer is not None:
            h.timer.cancel()
        h.timer = asyncio.get_running_loop().call_at(h.deadline(), self._on_deadline, h)

    def _on_deadline(self, h):
        h.timer = None
        if h.state is not HoldState.HELD:
            return
        if now() < h.deadline():
            self._arm(h)  # extended meanwhile
            return
        self.lose(h, DEADLINE)

    def _hold_end(self, h, to):
        h.move(to)
        if h.timer is not None:
            h.timer.cancel()
            h.timer = None
        h.sess.holds.pop(h.token, None)

    def lose(self, h, reason, *, release=True):
        """The lock is gone: tell the lease (event, callbacks) and, if the session still
        lives, give it back (best effort: lockd may still count it as ours)."""
        if h.state in (HoldState.LOST, HoldState.RELEASED):
            return
        h.lost_at = now()
        h.lost_reason = reason
        if h.frozen is None:
            h.frozen = h.deadline()  # lease.deadline: the one in force when it was lost
        self._hold_end(h, HoldState.LOST)
        h.lost.set()
        log.warning("lock %s lost (%s)", h.resource, reason)
        for cb in list(h.callbacks):
            try:
                cb()
            except Exception:  # a callback's bug must not break the session
                log.exception("lockp: lost callback of %s failed", h.resource)
        if release and h.sess.state is SessionState.READY:
            self._send(h.sess, "RELEASE", f"RELEASE {h.resource} {h.token}", future=None)

    # ------------------------------------------------------------ requests

    def _send(self, sess, kind, text, *, future, **kw):
        self.next_tag += 1
        tag = str(self.next_tag)
        p = _Pending(tag, kind, future, **kw)
        p.sent_at = now()  # before the write: a lower bound of when lockd reads it
        sess.pending[tag] = p
        sess.writer.write(f"{tag} {text}\n".encode())
        sess.freeze_passed(p.sent_at)
        sess.session_sent(p.sent_at)
        sess.last_tx = p.sent_at
        return p

    async def _call(self, sess, kind, text, timeout=None, **kw):
        fut = asyncio.get_running_loop().create_future()
        p = self._send(sess, kind, text, future=fut, **kw)
        try:
            if timeout is None:
                return await asyncio.shield(fut)
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            # lockd answers PINGs but not this: the session (and any late grant) goes
            self._down(sess, f"no reply to {kind} in {timeout:.1f} s", code="CLIENT_TIMEOUT")
            raise Unavailable(f"no reply to {kind} from lockd {sess.where} in time",
                              code="CLIENT_TIMEOUT", resource=p.resource) from None
        except asyncio.CancelledError:
            p.cancelled = True
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                r = fut.result()
                if isinstance(r, _Hold):
                    await self.release(r, wait=False)
            raise

    async def acquire(self, resource, lease_ms, wait_ms):
        _proto.check_resource(resource)
        _proto.check_ms(lease_ms, "lease_ms")
        _proto.check_ms(wait_ms, "wait_ms")
        sess = await self.session()
        return await self._call(sess, "ACQUIRE", f"ACQUIRE {resource} {lease_ms} {wait_ms}",
                                wait_ms / 1000.0 + REQUEST_SLACK_S, resource=resource,
                                lease_ms=lease_ms, wait_ms=wait_ms)

    async def renew(self, h, lease_ms):
        if h.state is not HoldState.HELD:
            raise LockLost(f"lock {h.resource} is not held ({h.lost_reason or h.state.value})",
                           resource=h.resource, reason=h.lost_reason or "released")
        if lease_ms is None:
            lease_ms = h.lease_ms
        _proto.check_ms(lease_ms, "lease_ms")
        return await self._call(h.sess, "RENEW", f"RENEW {h.resource} {h.token} {lease_ms}",
                                REQUEST_SLACK_S, resource=h.resource, lease_ms=lease_ms, hold=h)

    async def release(self, h, wait=True):
        """Gives the lock back: True if it was held until the release, False if lost."""
        if h.state is HoldState.RELEASED:
            return True
        if h.state is not HoldState.HELD:
            return h.state is HoldState.RELEASED
        if now() >= h.deadline():
            self.lose(h, DEADLINE)
            return False
        sess = h.sess
        if sess.state is not SessionState.READY:
            self.lose(h, sess.lost_reason, release=False)
            return False
        h.move(HoldState.RELEASING)
        if h.timer is not None:
            h.timer.cancel()
            h.timer = None
        if not wait:
            self._send(sess, "RELEASE", f"RELEASE {h.resource} {h.token}", future=None, hold=h)
            return True
        try:
            await self._call(sess, "RELEASE", f"RELEASE {h.resource} {h.token}", REQUEST_SLACK_S,
                             resource=h.resource, hold=h)
        except Unavailable:
            pass  # the session ended after the RELEASE went out: lockd released it
        return h.state is HoldState.RELEASED

    async def ping(self):
        sess = await self.session()
        t = now()
        await self._call(sess, "PING", "PING", REQUEST_SLACK_S)
        return now() - t

    async def info(self):
        sess = await self.session()
        return _proto.parse_info(await self._call(sess, "INFO", "INFO", REQUEST_SLACK_S))

    async def close(self):
        self.closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        sess = self.sess
        if sess is not None:
            if sess.state is SessionState.READY:
                sess.writer.write(b"q QUIT\n")
            self._down(sess, "client closed", code="CLOSED", reason=CLOSED)
            for t in sess.tasks:
                if t is not asyncio.current_task():
                    try:
                        await t
                    except BaseException:
                        pass
            try:
                await sess.writer.wait_closed()
            except (OSError, asyncio.CancelledError):
                pass

    # ------------------------------------------------------------ reading

    async def _read_loop(self, sess):
        why = "closed by lockd"
        try:
            while True:
                line = await sess.reader.readline()
                if not line:
                    break
                if not line.endswith(b"\n"):
                    why = "closed by lockd in the middle of a line"
                    break
                sess.last_rx = now()
                self._on_line(sess, line.decode("ascii", "replace").rstrip("\r\n"))
                if sess.state is SessionState.CLOSED:
                    return
        except asyncio.CancelledError:
            return
        except (OSError, ValueError) as e:  # ValueError: a line over the reader's limit
            why = f"read error: {e}"
        except Exception as e:  # a bug of ours: end the session rather than hang it
            log.exception("lockp: error handling a line from lockd %s", sess.where)
            why = f"client error: {e!r}"
        self._down(sess, why)

    def _on_line(self, sess, line):
        tag, word, rest = _proto.split_reply(line)
        if tag == "*":
            self._on_push(sess, word, rest)
            return
        p = sess.pending.pop(tag, None)
        if p is None:
            log.debug("reply to unknown tag %s", tag)
            return
        bound = max(p.sent_at, sess.alive_sent)  # lockd wrote this reply after `bound`
        sess.alive_sent = bound
        if not (word == "ERR" and rest.startswith("SESSION")):
            sess.session_alive(p.sent_at)
        if p.kind == "PING" and p.future is None:
            sess.ping_out = False
        fut = p.future
        try:
            result = self._result(sess, p, word, rest, bound)
        except LockError as e:
            if fut is not None and not fut.done():
                if p.cancelled:
                    fut.cancel()  # nobody waits for it any more
                else:
                    fut.set_exception(e)
            return
        if fut is not None and not fut.done():
            fut.set_result(result)

    def _result(self, sess, p, word, rest, bound):
        """The value of a reply, or raises its LockError; keeps the holds up to date."""
        if word == "ERR":
            code, _, text = rest.partition(" ")
            if p.kind == "RELEASE" and p.hold is not None and p.hold.state is HoldState.RELEASING:
                self._hold_end(p.hold, HoldState.RELEASED)
            raise error_for(code, text or code, p.resource)
        if p.kind == "ACQUIRE":
            if word == "TIMEOUT":
                raise LockTimeout(f"lock {p.resource} not granted within {p.wait_ms} ms",
                                  resource=p.resource)
            if word != "OK":
                raise LockError(f"unexpected reply {word} to ACQUIRE", code="BADREPLY")
            parts = rest.split()
            if (len(parts) != 3 or len(parts[0]) != _proto.TOKEN_LEN or not parts[1].isdigit()
                    or not parts[2].isdigit()):
                raise LockError(f"malformed grant {rest!r}", code="BADREPLY")
            h = _Hold(sess, p.resource, parts[0], int(parts[1]), p.lease_ms, int(parts[2]), bound)
            sess.holds[h.token] = h
            if p.cancelled or p.future is None or p.future.done():
                self.lose(h, "cancelled")  # nobody wants it: give it back at once
                raise LockError("cancelled", code="CANCELLED")
            if now() >= h.deadline():
                self.lose(h, DEADLINE)
                raise LockTimeout(f"lock {p.resource} granted after its validity ran out "
                                  f"(validity {h.validity_ms} ms)", resource=p.resource)
            self._arm(h)
            return h
        if p.kind == "RENEW":
            h = p.hold
            if word == "OK" and rest.isdigit():
                if h.state is not HoldState.HELD:  # lost locally while the RENEW flew
                    raise LockLost(f"lock {p.resource} lost ({h.lost_reason})",
                                   resource=p.resource, reason=h.lost_reason or NO_REASON)
                h.validity_ms = int(rest)
                h.base_deadline = deadline_from(bound, h.validity_ms)
                if p.lease_ms > 0:
                    h.lease_ms = p.lease_ms
                self._arm(h)
                return int(rest)
            self.lose(h, NO_REASON, release=False)
            raise LockLost(f"lock {p.resource} was not held any more (RENEW: {word})",
                           resource=p.resource, reason=NO_REASON)
        if p.kind == "RELEASE":
            h = p.hold
            if h is not None and h.state is HoldState.RELEASING:
                if word == "OK":
                    self._hold_end(h, HoldState.RELEASED)
                else:
                    self.lose(h, NO_REASON, release=False)
            return word == "OK"
        if word != "OK":
            raise LockError(f"unexpected reply {word} {rest}", code=word or "BADREPLY")
        return rest

    def _on_push(self, sess, word, rest):
        if word == "LOST":
            parts = rest.split(" ")
            if len(parts) < 2:
                log.warning("malformed LOST push %r", rest)
                return
            h = sess.holds.get(parts[1])
            if h is not None and h.resource == parts[0]:
                # the reason is the optional fourth field (SPEC 2b); older lockds send none
                self.lose(h, parts[2] if len(parts) > 2 and parts[2] else NO_REASON,
                          release=False)
        elif word == "ERR" and rest.startswith("SESSION"):
            # lockd expired the session (its LOSTs came first) and closes it next
            self._down(sess, f"session {rest[8:]}", code="SESSION", reason="session")
        elif word == "ERR":
            log.warning("lockd %s: %s", sess.where, rest)
        else:
            log.debug("ignoring push %s %s", word, rest)

    # ------------------------------------------------------------ keep-alive

    async def _tick_loop(self, sess):
        """PING when idle; drop a lockd that sent nothing for dead_s."""
        try:
            while sess.state is SessionState.READY:
                t = now()
                if t - sess.last_rx >= sess.dead_s:
                    # We may have been frozen ourselves: read what waits first.
                    for _ in range(3):
                        await asyncio.sleep(0)
                    if sess.state is not SessionState.READY:
                        return
                    if now() - sess.last_rx >= sess.dead_s:
                        self._down(sess, f"lockd sent nothing for {sess.dead_s * 1000:.0f} ms",
                                   code="DISCONNECTED", reason=LOCKD_DEAD)
                        return
                    continue
                idle = sess.ping_interval()
                if not sess.ping_out and (t - sess.last_rx >= idle or t - sess.last_tx >= idle):
                    sess.ping_out = True
                    self._send(sess, "PING", "PING", future=None)
                nxt = sess.last_rx + sess.dead_s
                if not sess.ping_out:
                    nxt = min(nxt, sess.last_rx + idle, sess.last_tx + idle)
                await asyncio.sleep(min(max(0.002, nxt - now()), idle / 2))
        except asyncio.CancelledError:
            return
        except Exception as e:  # a write on a dying socket
            self._down(sess, f"keep-alive failed: {e}")
