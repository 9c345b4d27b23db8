"""lockp's public objects over the core (_aio.py): Lease, AsyncLease, the with-block
rules (block_verdict, shared with the threaded Client) and AsyncClient.

A Lease is a view of one hold of the core; it owns nothing. AsyncClient owns its core.
"""

import asyncio

from . import _proto
from ._aio import HoldState, _Core, now
from ._errors import NO_REASON, LockError, LockLost


class Lease:
    """A granted lock (threaded Client). ``fence`` (int), ``token`` (str), ``lost``
    (threading.Event, set the moment the lock is lost), ``lost_reason`` (None, or one of
    LOCKD_REASONS / LOCAL_REASONS, see _errors.py), ``lost_at``
    (time.monotonic() of the loss), ``deadline`` (time.monotonic() it is lost at
    unless extended; once lost, the deadline that was in force then)."""

    def __init__(self, client, hold):
        self._client = client
        self._hold = hold

    resource = property(lambda self: self._hold.resource)
    token = property(lambda self: self._hold.token)
    fence = property(lambda self: self._hold.fence)
    lease_ms = property(lambda self: self._hold.lease_ms)
    validity_ms = property(lambda self: self._hold.validity_ms)
    lost = property(lambda self: self._hold.lost)
    lost_reason = property(lambda self: self._hold.lost_reason)
    lost_at = property(lambda self: self._hold.lost_at)
    deadline = property(lambda self: self._hold.deadline())

    @property
    def held(self):
        """True while granted, not released and not lost."""
        return self._hold.state is HoldState.HELD and not self._hold.lost.is_set()

    def remaining(self):
        """Seconds until the local deadline (<= 0: lost)."""
        return self._hold.deadline() - now()

    def check(self):
        """Raises LockLost if the lock is lost (call before a write it protects)."""
        if self._hold.lost.is_set():
            raise LockLost(f"lock {self.resource} lost ({self.lost_reason})",
                           resource=self.resource, reason=self.lost_reason)

    def on_lost(self, fn):
        """fn() runs once, on the client's event loop, when the lock is lost (at once if
        it already is). It must not block."""
        self._client._run_soon(self._add_cb, fn)

    def _add_cb(self, fn):
        if self._hold.lost.is_set():
            fn()
        elif self._hold.state is HoldState.HELD:
            self._hold.callbacks.append(fn)

    def __repr__(self):
        state = f"lost: {self.lost_reason}" if self.lost.is_set() else self._hold.state.value
        return f"<Lease {self.resource} fence={self.fence} {state}>"

    def renew(self, lease_ms=None):
        """RENEW (fixed lease: lease_ms or the lease's own); returns validity_ms."""
        return self._client._call(self._client._core.renew(self._hold, lease_ms))

    def release(self):
        """RELEASE: True if the lock was held until now, False if it was lost."""
        return self._client._call(self._client._core.release(self._hold))


class AsyncLease(Lease):
    """A granted lock (AsyncClient): as Lease, with coroutine methods."""

    async def renew(self, lease_ms=None):
        return await self._client._core.renew(self._hold, lease_ms)

    async def release(self):
        return await self._client._core.release(self._hold)

    async def wait_lost(self):
        """Returns when the lock is lost (never, if it is released first)."""
        fut = asyncio.get_running_loop().create_future()
        self._add_cb(lambda: fut.done() or fut.set_result(None))
        await fut


class _AsyncLockContext:
    def __init__(self, client, resource, lease_ms, wait_ms):
        self._client, self._args = client, (resource, lease_ms, wait_ms)
        self._lease = None

    async def __aenter__(self):
        resource, lease_ms, wait_ms = self._args
        self._lease = await self._client.acquire(resource, lease_ms=lease_ms, wait_ms=wait_ms)
        return self._lease

    async def __aexit__(self, et, ev, tb):
        lease, outcome = self._lease, None
        if not lease.lost.is_set():
            try:
                outcome = await lease.release()
            except LockError as e:
                outcome = e
        return block_verdict(lease, et, outcome)


def block_verdict(lease, et, outcome):
    """How a with-block ends: outcome is None (lost before the release), the release's
    result (True: held throughout) or the LockError it raised. Returns False (let the
    block's own exception through) or raises LockLost / the release's error."""
    if isinstance(outcome, LockError):
        if et is not None:
            return False  # the block's own error wins
        raise outcome
    if outcome:
        return False
    raise LockLost(f"lock {lease.resource} was lost while the block ran ({lease.lost_reason})",
                   resource=lease.resource, reason=lease.lost_reason or NO_REASON)


class AsyncClient:
    """asyncio LOCKP client. ``async with client.lock("R") as lease: ...``.

    Connects on first use (or ``await client.connect()``); ``await client.close()``."""

    def __init__(self, endpoints, *, name=None, auth=None):
        self._core = _Core(endpoints, name, auth)

    def _run_soon(self, fn, *args):
        fn(*args)

    async def connect(self):
        await self._core.session()

    def lock(self, resource, *, lease_ms=0, wait_ms=0):
        """Async context manager: acquires, yields an AsyncLease, releases; raises
        LockLost on leaving the block if the lock was lost inside it."""
        _proto.check_resource(resource)
        return _AsyncLockContext(self, resource, lease_ms, wait_ms)

    async def acquire(self, resource, *, lease_ms=0, wait_ms=0):
        return AsyncLease(self, await self._core.acquire(resource, lease_ms, wait_ms))

    async def ping(self):
        """Round trip to lockd in seconds."""
        return await self._core.ping()

    async def info(self):
        """lockd's INFO as a dict."""
        return await self._core.info()

    async def close(self):
        """Ends the session (lockd releases what it still holds for us)."""
        await self._core.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
