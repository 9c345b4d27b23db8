"""lockp.AsyncClient (the asyncio twin) against real lockd and redis-server processes."""

import asyncio
import signal
import time

import pytest

import lockp
from servers import FAST


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_async_acquire_release_fence(shared, res):
    async def main():
        async with lockp.AsyncClient(shared.l1.addr, name="aio") as c:
            async with c.lock(res, wait_ms=2000) as a:
                assert isinstance(a, lockp.AsyncLease) and len(a.token) == 32
                assert isinstance(a.fence, int) and not a.lost.is_set()
            async with c.lock(res, wait_ms=2000) as b:
                assert b.fence > a.fence
            lease = await c.acquire(res, wait_ms=2000)
            assert await lease.release() is True
            assert (await c.info())["masters_up"] == 3
    run(main())


def test_async_wait_timeout_held(shared, res):
    async def main():
        async with lockp.AsyncClient(shared.l1.addr) as a, \
                lockp.AsyncClient(shared.l2.addr) as b:
            lease = await a.acquire(res, wait_ms=2000)
            with pytest.raises(lockp.LockHeld):
                await a.acquire(res)
            t0 = time.monotonic()
            with pytest.raises(lockp.LockTimeout):
                async with b.lock(res, wait_ms=300):
                    pass
            assert time.monotonic() - t0 >= 0.29
            # pipelining: a waiting ACQUIRE does not hold back a PING on the same session
            waiting = asyncio.ensure_future(b.acquire(res, wait_ms=3000))
            await asyncio.sleep(0.1)
            assert await b.ping() < 0.5 and not waiting.done()
            await lease.release()
            got = await waiting
            assert got.fence > lease.fence
            await got.release()
    run(main())


def test_async_cancelled_acquire_gives_late_grant_back(shared, res):
    async def main():
        async with lockp.AsyncClient(shared.l1.addr) as a, \
                lockp.AsyncClient(shared.l1.addr) as b, \
                lockp.AsyncClient(shared.l2.addr) as c:
            lease = await a.acquire(res, wait_ms=2000)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(b.acquire(res, wait_ms=5000), 0.2)
            await lease.release()  # lockd hands it to b's abandoned ACQUIRE: b gives it back
            async with c.lock(res, wait_ms=3000) as got:
                assert got.fence > lease.fence + 1
    run(main())


def test_async_lost_on_lockd_kill_then_failover(world, res):
    masters = [world.redis() for _ in range(3)]
    l1, l2 = world.lockd(masters, FAST), world.lockd(masters, FAST)

    async def main():
        async with lockp.AsyncClient([l1.addr, l2.addr]) as c, \
                lockp.AsyncClient(l2.addr) as other:
            lease = await c.acquire(res, wait_ms=2000)
            waiting = asyncio.ensure_future(other.acquire(res, wait_ms=10000))
            await asyncio.sleep(0.1)
            l1.stop(signal.SIGKILL)
            await asyncio.wait_for(lease.wait_lost(), 2)
            got = await waiting
            t_grant = time.monotonic()
            assert lease.lost_at < t_grant and lease.lost_reason == "disconnected"
            async with c.lock(res + "b", wait_ms=2000) as again:  # through l2 now
                assert again.fence >= 1
            await got.release()
    run(main())


def test_async_lock_lost_in_block(world, res):
    masters = [world.redis() for _ in range(3)]
    l1 = world.lockd(masters, FAST)

    async def main():
        async with lockp.AsyncClient(l1.addr) as c:
            with pytest.raises(lockp.LockLost) as ei:
                async with c.lock(res, lease_ms=300) as lease:
                    await lease.wait_lost()
            assert ei.value.reason in ("deadline", "expired")
            with pytest.raises(lockp.LockLost) as ei:
                async with c.lock(res + "s", wait_ms=2000):
                    l1.kill(signal.SIGSTOP)
                    await asyncio.sleep(1.5)
            assert ei.value.reason == "lockd_dead"
    run(main())


def test_async_bad_input():
    with pytest.raises(lockp.BadArgument):
        lockp.AsyncClient("no-port")

    async def main():
        c = lockp.AsyncClient("127.0.0.1:1")
        with pytest.raises(lockp.BadArgument):
            c.lock("two words")
        with pytest.raises(lockp.BadArgument):
            await c.acquire("")
        with pytest.raises(lockp.Unavailable) as ei:
            await c.acquire("R")
        assert ei.value.code == "NOTCONNECTED"
        await c.close()
    run(main())


def test_async_lost_before_another_grant_lockd_sigstop_with_traffic(world, res):
    """Issue 12 case 2: a client that keeps SENDING to a frozen lockd still judges it by
    what it RECEIVES: its lock is lost before another lockd grants it."""
    masters = [world.redis() for _ in range(3)]
    l1, l2 = world.lockd(masters, FAST), world.lockd(masters, FAST)

    async def main():
        async with lockp.AsyncClient(l1.addr) as a, lockp.AsyncClient(l2.addr) as b:
            lease = await a.acquire(res, wait_ms=2000)
            waiting = asyncio.ensure_future(b.acquire(res, wait_ms=15000))
            busy = []

            async def traffic():  # an ACQUIRE of another resource every 50 ms
                for i in range(100):
                    busy.append(asyncio.ensure_future(a.acquire(f"{res}-{i}")))
                    await asyncio.sleep(0.05)

            pump = asyncio.ensure_future(traffic())
            await asyncio.sleep(0.1)
            t_fault = time.monotonic()
            l1.kill(signal.SIGSTOP)
            got = await waiting
            t_grant = time.monotonic()
            pump.cancel()
            await asyncio.gather(*busy, return_exceptions=True)
            assert lease.lost.is_set(), "the holder was never told"
            assert lease.lost_at < t_grant, (f"told {lease.lost_at - t_fault:.3f} s after the "
                                             f"SIGSTOP, other grant at {t_grant - t_fault:.3f} s")
            assert lease.lost_reason == "lockd_dead"
            await got.release()
    run(main())
