"""lockp's threaded Client: the asyncio core on a private event loop in one daemon
thread ("lockp-io"), so keep-alive, liveness and lock deadlines run while the caller's
thread does its work (or blocks). Calls from any thread are forwarded to that loop and
wait for the answer. The client owns the thread; close() stops and joins it.
"""

import asyncio
import concurrent.futures
import threading

from . import _proto
from ._aio import _Core
from ._async import Lease, block_verdict
from ._errors import LockError, Unavailable


class _LockContext:
    def __init__(self, client, resource, lease_ms, wait_ms):
        self._client, self._args = client, (resource, lease_ms, wait_ms)
        self._lease = None

    def __enter__(self):
        resource, lease_ms, wait_ms = self._args
        self._lease = self._client.acquire(resource, lease_ms=lease_ms, wait_ms=wait_ms)
        return self._lease

    def __exit__(self, et, ev, tb):
        lease, outcome = self._lease, None
        if not lease.lost.is_set():
            try:
                outcome = lease.release()
            except LockError as e:
                outcome = e
        return block_verdict(lease, et, outcome)


class Client:
    """Threaded LOCKP client. ``with client.lock("R") as lease: ...``.

    endpoints: "host:port" or a list of them, tried in order (failover). name: the
    HELLO name (default "client"); auth: the shared secret, if lockd wants one."""

    def __init__(self, endpoints, *, name=None, auth=None):
        self._core = _Core(endpoints, name, auth)  # checks the arguments here
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="lockp-io", daemon=True)
        self._closed = False
        self._thread.start()

    def _run(self):
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _run_soon(self, fn, *args):
        self._loop.call_soon_threadsafe(fn, *args)

    def _call(self, coro):
        if self._closed:
            coro.close()
            raise Unavailable("the client is closed", code="CLOSED")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("lockp.Client called from its own I/O thread (a lost "
                               "callback must not block: use AsyncClient there)")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result()
        except (KeyboardInterrupt, concurrent.futures.CancelledError):
            fut.cancel()  # a waiting ACQUIRE is given up; a late grant is released
            raise

    def connect(self):
        """Connects now (else the first request does)."""
        self._call(self._core.session())

    def lock(self, resource, *, lease_ms=0, wait_ms=0):
        """Context manager: acquires, yields a Lease, releases; raises LockLost on
        leaving the block if the lock was lost inside it.

        lease_ms 0 = watchdog lease (kept while the client lives); > 0 = fixed lease,
        lost at its deadline unless renewed. wait_ms 0 = one attempt; else wait up to
        wait_ms, then LockTimeout."""
        _proto.check_resource(resource)
        _proto.check_ms(lease_ms, "lease_ms")
        _proto.check_ms(wait_ms, "wait_ms")
        return _LockContext(self, resource, lease_ms, wait_ms)

    def acquire(self, resource, *, lease_ms=0, wait_ms=0):
        """Acquires for manual use: returns a Lease; call lease.release()."""
        return Lease(self, self._call(self._core.acquire(resource, lease_ms, wait_ms)))

    def ping(self):
        """Round trip to lockd in seconds."""
        return self._call(self._core.ping())

    def info(self):
        """lockd's INFO as a dict."""
        return self._call(self._core.info())

    def close(self):
        """Ends the session (lockd releases what it still holds for us) and the thread."""
        if self._closed:
            return
        asyncio.run_coroutine_threadsafe(self._core.close(), self._loop).result()
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
