"""lockp.Client against real lockd and redis-server processes.

The fault tests take timestamps on this machine (time.monotonic) and check the
holder's loss is noticed BEFORE another session is granted the lock through another
lockd (the other grant's time is when its reply arrived: the latest it can be)."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import lockp
import servers
from servers import FAST, waiter


def three_and_two(world, extra=FAST):
    masters = [world.redis() for _ in range(3)]
    return masters, world.lockd(masters, extra), world.lockd(masters, extra)


# ---------------------------------------------------------------- basics

def test_acquire_release_fence_grows(shared, res):
    with lockp.Client(shared.l1.addr, name="basic") as c:
        with c.lock(res, wait_ms=2000) as a:
            assert isinstance(a.fence, int) and a.fence >= 1
            assert len(a.token) == 32 and int(a.token, 16) >= 0
            assert not a.lost.is_set() and a.held
            assert 0 < a.remaining() <= 3.0
        assert not a.held and not a.lost.is_set()
        with c.lock(res, wait_ms=2000) as b:
            assert b.fence > a.fence and b.token != a.token


def test_fence_grows_across_lockds(shared, res):
    with lockp.Client(shared.l1.addr) as c1, lockp.Client(shared.l2.addr) as c2:
        fences = []
        for c in (c1, c2, c1, c2):
            with c.lock(res, wait_ms=2000) as lease:
                fences.append(lease.fence)
        assert fences == sorted(fences) and len(set(fences)) == 4


def test_manual_acquire_release(shared, res):
    with lockp.Client(shared.l1.addr) as c:
        lease = c.acquire(res, wait_ms=2000)
        assert lease.release() is True
        assert lease.release() is True  # a second release is no error
        assert c.ping() < 1.0
        assert c.info()["masters_up"] == 3


def test_wait_granted_on_release(shared, res):
    with lockp.Client(shared.l1.addr) as a, lockp.Client(shared.l2.addr) as b:
        lease = a.acquire(res, wait_ms=2000)
        w = waiter(b, res, 5000)
        time.sleep(0.3)
        assert w.result is None  # still waiting
        t_release = time.monotonic()
        assert lease.release()
        w.join(5)
        assert isinstance(w.result, lockp.Lease) and w.result.fence > lease.fence
        assert w.t >= t_release
        w.result.release()


def test_wait_timeout(shared, res):
    with lockp.Client(shared.l1.addr) as a, lockp.Client(shared.l2.addr) as b:
        with a.lock(res, wait_ms=2000):
            t0 = time.monotonic()
            with pytest.raises(lockp.LockTimeout) as ei:
                with b.lock(res, wait_ms=300):
                    pass
            assert time.monotonic() - t0 >= 0.29
            assert ei.value.code == "TIMEOUT" and isinstance(ei.value, lockp.LockError)
            with pytest.raises(lockp.LockTimeout):
                b.acquire(res)  # wait_ms 0: one attempt


def test_held(shared, res):
    with lockp.Client(shared.l1.addr) as c:
        with c.lock(res, wait_ms=2000):
            with pytest.raises(lockp.LockHeld) as ei:
                c.acquire(res)
            assert ei.value.code == "HELD"


def test_lost_callback_and_renew(shared, res):
    with lockp.Client(shared.l1.addr) as c:
        seen = []
        with c.lock(res, lease_ms=400, wait_ms=2000) as lease:
            lease.on_lost(lambda: seen.append(time.monotonic()))
            v = lease.renew(3000)
            # past the 400 ms lease; the deadline is also bounded by the last send + the
            # session timeout (1500 ms), which moves with every PING
            assert 2500 < v <= 3000 and lease.remaining() > 1.0
            time.sleep(0.6)  # past the first lease: the renewal keeps it
            assert not lease.lost.is_set()
        assert seen == []


# ---------------------------------------------------------------- errors

def test_limit(world, res):
    m = [world.redis()]
    l1 = world.lockd(m, FAST + "\nlimits: {max_lease_ms: 5000}")
    with lockp.Client(l1.addr) as c:
        with pytest.raises(lockp.LimitExceeded) as ei:
            c.acquire(res, lease_ms=60000)
        assert ei.value.code == "LIMIT"


def test_noquorum(world, res):
    m = [world.redis() for _ in range(3)]
    l1 = world.lockd(m, FAST)
    with lockp.Client(l1.addr) as c:
        m[0].stop(signal.SIGKILL)
        m[1].stop(signal.SIGKILL)
        deadline = time.monotonic() + 5
        while True:  # lockd notices the masters are gone within a round or two
            try:
                c.acquire(res).release()
            except lockp.NoQuorum as e:
                assert e.code == "NOQUORUM"
                break
            assert time.monotonic() < deadline, "no NOQUORUM with 2 of 3 masters down"
            time.sleep(0.05)


def test_auth(world, res):
    m = [world.redis()]
    l1 = world.lockd(m, FAST, auth="s3cret")
    with pytest.raises(lockp.AuthError) as ei:
        lockp.Client(l1.addr, auth="wrong").acquire(res)
    assert ei.value.code == "AUTH"
    with pytest.raises(lockp.AuthError) as ei:
        lockp.Client(l1.addr).acquire(res)
    assert ei.value.code == "NOAUTH"
    with lockp.Client(l1.addr, auth="s3cret") as c:
        with c.lock(res, wait_ms=2000) as lease:
            assert lease.fence >= 1


@pytest.mark.parametrize("eps", ["localhost", "h:0", "h:70000", "h:x", ":7380", "", [], 42,
                                 ["127.0.0.1:1", "nope"]])
def test_bad_endpoint(eps):
    with pytest.raises(lockp.BadArgument) as ei:
        lockp.Client(eps)
    assert isinstance(ei.value, ValueError) and "endpoint" in str(ei.value)


@pytest.mark.parametrize("resource", ["has space", "", "x" * 257, "caf\u00e9", "tab\t", 42])
def test_bad_resource(resource):
    c = lockp.Client("127.0.0.1:1")  # never connects: the check comes first
    try:
        with pytest.raises(lockp.BadArgument) as ei:
            c.lock(resource)
        assert "resource" in str(ei.value)
        with pytest.raises(ValueError):
            c.acquire(resource)
        with pytest.raises(lockp.BadArgument):
            c.lock("ok", lease_ms=-1)
        with pytest.raises(lockp.BadArgument):
            lockp.Client("127.0.0.1:1", name="two words")
    finally:
        c.close()


def test_unreachable():
    c = lockp.Client(["127.0.0.1:%d" % servers.free_port(), "127.0.0.1:%d" % servers.free_port()])
    with pytest.raises(lockp.Unavailable) as ei:
        c.acquire("R")
    assert ei.value.code == "NOTCONNECTED" and "no lockd reachable" in str(ei.value)
    c.close()
    with pytest.raises(lockp.Unavailable) as ei:
        c.acquire("R")
    assert ei.value.code == "CLOSED"


# ---------------------------------------------------------------- LOST reasons

def scripted_lockd(pushes):
    """A fake lockd on a free port, for one session: answers HELLO, PING, RELEASE and
    QUIT, grants every ACQUIRE (token n as 32 hex digits, fence n) and follows the grant
    of resource R with the line pushes[R] (if any). Returns (addr, thread)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve():
        conn, _ = srv.accept()
        srv.close()
        n = 0
        with conn, conn.makefile("rb") as f:
            for line in f:
                tag, verb, *args = line.decode().split()
                if verb == "HELLO":
                    out = f"{tag} OK s1 10000\n"
                elif verb == "ACQUIRE":
                    n += 1
                    out = f"{tag} OK {n:032x} {n} 5000\n"
                    if args[0] in pushes:
                        out += pushes[args[0]].format(token=f"{n:032x}") + "\n"
                elif verb == "QUIT":
                    conn.sendall(f"{tag} OK BYE\n".encode())
                    return
                else:
                    out = f"{tag} OK PONG\n" if verb == "PING" else f"{tag} OK\n"
                conn.sendall(out.encode())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return "127.0.0.1:%d" % srv.getsockname()[1], t


def test_lost_reason_is_the_optional_fourth_field():
    """`* LOST <res> <token> <reason>` gives lease.lost_reason and LockLost.reason; a
    lockd that sends three fields gives "lost"; a reason this client does not know is
    passed on as it is."""
    addr, t = scripted_lockd({"A": "* LOST A {token} renew_refused", "B": "* LOST B {token}",
                              "C": "* LOST C {token} some_new_reason"})
    with lockp.Client(addr) as c:
        for res, reason in (("A", "renew_refused"), ("B", "lost"), ("C", "some_new_reason")):
            with pytest.raises(lockp.LockLost) as ei:
                with c.lock(res) as lease:
                    assert lease.lost.wait(2)
            assert lease.lost_reason == reason and ei.value.reason == reason
            assert ei.value.code == "LOST" and ei.value.resource == res
        assert lockp.LOCAL_REASONS == ("deadline", "lockd_dead", "disconnected", "closed",
                                       "lost")
        assert "revoked" in lockp.LOCKD_REASONS
    t.join(5)


# ---------------------------------------------------------------- failover

def test_failover_first_endpoint_down(shared, res):
    dead = "127.0.0.1:%d" % servers.free_port()
    with lockp.Client([dead, shared.l1.addr]) as c:
        with c.lock(res, wait_ms=2000) as lease:
            assert lease.fence >= 1


def test_failover_after_lockd_killed(world, res):
    _, l1, l2 = three_and_two(world)
    with lockp.Client([l1.addr, l2.addr]) as c:
        lease = c.acquire(res, wait_ms=2000)
        l1.stop(signal.SIGKILL)
        assert lease.lost.wait(2), "no loss after the lockd was killed"
        assert lease.lost_reason == "disconnected"
        with c.lock(res + "b", wait_ms=2000) as other:  # new requests go to the second endpoint
            assert other.fence >= 1
        assert c.info()["sessions"] >= 1


# ---------------------------------------------------------------- faults: lost before another grant
# SPEC 2b's ordering promise and 3b's deadlines, one test per fault case of issue 12:
# the holder's loss (lease.lost_at) must come before the waiter's grant (w.t).

def _holder_and_waiter(world, fault, lease_ms=0):
    """A holds R through l1; B waits for R through l2; fault(l1) (which may return the
    moment the fault really happened); returns (A's lease, B's waiter, fault time) once
    B is granted."""
    masters, l1, l2 = three_and_two(world)
    world.masters = masters
    a = lockp.Client(l1.addr, name="holder")
    b = lockp.Client(l2.addr, name="waiter")
    world.clients = (a, b)
    lease = a.acquire("R", lease_ms=lease_ms, wait_ms=2000)
    w = waiter(b, "R", 15000)
    time.sleep(0.1)
    t_fault = time.monotonic()
    t_fault = fault(l1) or t_fault
    w.join(15)
    assert isinstance(w.result, lockp.Lease), f"B not granted: {w.result!r}"
    lease.lost.wait(3)  # if it comes late, the test says by how much
    return lease, w, t_fault


def _told_first(lease, w, t_fault):
    assert lease.lost.is_set(), "the holder was never told"
    assert lease.lost_at < w.t, (f"holder told {lease.lost_at - t_fault:.3f} s after the "
                                 f"fault ({lease.lost_reason}), other grant at "
                                 f"{w.t - t_fault:.3f} s")


def _close(world):
    for c in world.clients:
        c.close()


def test_lost_before_another_grant_lockd_sigkill(world):
    lease, w, t_fault = _holder_and_waiter(world, lambda l: l.stop(signal.SIGKILL))
    _told_first(lease, w, t_fault)
    assert lease.lost_at - t_fault < 1.0  # EOF: at once
    assert lease.lost_reason == "disconnected"
    _close(world)


def test_lost_before_another_grant_lockd_sigstop(world):
    lease, w, t_fault = _holder_and_waiter(world, lambda l: l.kill(signal.SIGSTOP))
    _told_first(lease, w, t_fault)
    assert lease.lost_reason == "lockd_dead"
    assert lease.lost_at - t_fault < 2.0  # the liveness rule (1 s of silence), not the TTL
    _close(world)


def test_lost_before_another_grant_lockd_sigterm(world):
    lease, w, t_fault = _holder_and_waiter(world, lambda l: l.kill(signal.SIGTERM))
    # lockd pushes `* LOST ... shutdown` before it releases the keys
    _told_first(lease, w, t_fault)
    assert lease.lost_reason == "shutdown"
    _close(world)


FOREIGN_PX = 2000  # how long the other value stays on the two masters (ms)


def test_lost_before_another_grant_renew_refused_by_a_majority(world):
    """Right after a watchdog renewal, 2 of 3 masters get another value under R's key (a
    master that lost its data and granted R to someone else, or a clock jump:
    Kleppmann's case). l1's next renewal, a third of the 3 s lease later, is refused by
    a majority: it must push LOST renew_refused then. The other value expires after 2 s
    and l2 grants the waiter. A lockd that retries a refused renewal until validity runs
    out tells the holder only ~3 s after the overwrite, after that grant."""
    key = "lockd:lock:R"  # key_prefix "lockd:" (the default) + "lock:" + resource

    def overwrite(l1):
        servers.wait_renewed(world.masters[2], key)
        t = time.monotonic()
        for m in world.masters[:2]:
            r = servers.RedisConn(m.port)
            assert r.cmd("SET", key, "f" * 32, "PX", FOREIGN_PX) == "OK"
            r.close()
        return t

    lease, w, t_fault = _holder_and_waiter(world, overwrite)
    _told_first(lease, w, t_fault)
    assert lease.lost_reason == "renew_refused"
    _close(world)


def test_lost_before_another_grant_fixed_lease_expiry(world):
    lease, w, t_fault = _holder_and_waiter(world, lambda l: None, lease_ms=700)
    _told_first(lease, w, t_fault)
    # the client's own deadline comes first (it counts from the ACQUIRE's send, less a
    # margin); lockd's `expired` push, from the grant, can only win on a stalled client
    assert lease.lost_reason in ("deadline", "expired")
    assert lease.lost_at - t_fault < 0.7
    _close(world)


def test_lost_before_another_grant_majority_of_masters_down(world):
    """2 of 3 masters die; l1's watchdog renewals miss the quorum and it pushes LOST
    before the validity runs out; the masters come back (empty) after the keys' TTL and
    l2 grants the waiter."""
    back = []

    def majority_down(l1):
        for m in world.masters[:2]:
            m.stop(signal.SIGKILL)

        def restart():
            for m in world.masters[:2]:
                m.start()
            back.append(time.monotonic())

        timer = threading.Timer(3.3, restart)
        timer.start()
        world.timer = timer

    try:
        lease, w, t_fault = _holder_and_waiter(world, majority_down)
    finally:
        if hasattr(world, "timer"):
            world.timer.join()
    _told_first(lease, w, t_fault)
    assert lease.lost_at < back[0]
    assert lease.lost_reason == "no_quorum"
    _close(world)


def test_with_block_raises_lock_lost(world, res):
    _, l1, _ = three_and_two(world)
    with lockp.Client(l1.addr) as c:
        with pytest.raises(lockp.LockLost) as ei:
            with c.lock(res + "x", lease_ms=300):  # a fixed lease outlived by the block
                time.sleep(0.5)
        assert ei.value.reason in ("deadline", "expired")
        with pytest.raises(lockp.LockLost) as ei:
            with c.lock(res, wait_ms=2000) as lease:
                l1.stop(signal.SIGKILL)
                assert lease.lost.wait(2)
        assert ei.value.code == "LOST" and ei.value.reason == "disconnected"


CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import lockp
c = lockp.Client(sys.argv[2])
lease = c.acquire("S", lease_ms=30000)
print("granted", flush=True)
lease.lost.wait(20)
print("lost", lease.lost_reason, flush=True)
"""


def test_session_expiry_lost_push(world):
    """A frozen client: lockd expires its session and pushes `* LOST S <token> session`.
    Its 30 s fixed lease is bounded by the session timeout, so the client that wakes has
    lost it by then: it reports the loss at once, by its own deadline or by the push,
    whichever it handles first, and the lock has moved on."""
    m = [world.redis()]
    l1 = world.lockd(m, FAST)
    pkg = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    child = subprocess.Popen([sys.executable, "-c", CHILD, pkg, l1.addr],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "granted"
        os.kill(child.pid, signal.SIGSTOP)
        time.sleep(2.2)  # past session.timeout_ms (1500)
        os.kill(child.pid, signal.SIGCONT)
        assert child.stdout.readline().strip() in ("lost session", "lost deadline")
        with lockp.Client(l1.addr) as c:  # and the lock moved on
            with c.lock("S", wait_ms=1000) as lease:
                assert lease.fence >= 2
    finally:
        os.kill(child.pid, signal.SIGCONT)
        child.kill()
        child.wait()


PAUSED_CHILD = r"""
import os, signal, sys, time
sys.path.insert(0, sys.argv[1])
import lockp
c = lockp.Client(sys.argv[2], name="paused")
leases = [c.acquire("P:watchdog", lease_ms=0, wait_ms=2000),
          c.acquire("P:fixed", lease_ms=int(sys.argv[3]), wait_ms=2000)]
print("granted", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)  # a pause right after the grants
for lease in leases:
    lease.lost.wait(5)
    print("lost", lease.resource, lease.lost_reason, repr(lease.deadline), flush=True)
c.close()
"""


def _stopped(pid, timeout=5.0):
    """Waits until the process is stopped (state T in /proc/<pid>/stat)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return True
        time.sleep(0.005)
    return False


def _reap(child):
    """Ends a child that has not exited (a failed test): it may be stopped."""
    if child.poll() is None:
        os.kill(child.pid, signal.SIGCONT)
        child.kill()
        child.wait()


def test_lost_before_another_grant_holder_paused_past_the_session_timeout(world):
    """The HOLDER is paused (SIGSTOP: a GC pause, a VM stall) right after it was granted
    a watchdog lease (3000 ms) and a fixed lease (6000 ms), longer than the session timeout
    (1500 ms), while another session waits for both locks. lockd ends the silent session
    and grants them to the waiter at once; each lock's local deadline (lease.deadline: the
    one in force when it was lost, reported by the holder once continued) must come before
    that grant: it is bounded by the last send + the session timeout. Without the bound
    it ran ~1.4 s (watchdog) and ~4.4 s (fixed) past the other grant."""
    m = [world.redis()]
    l1 = world.lockd(m, FAST)
    pkg = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    child = subprocess.Popen([sys.executable, "-c", PAUSED_CHILD, pkg, l1.addr, "6000"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "granted"
        assert _stopped(child.pid), "the holder did not stop itself"
        t_stop = time.monotonic()
        with lockp.Client(l1.addr, name="waiter") as b:
            ws = {res: waiter(b, res, 8000) for res in ("P:watchdog", "P:fixed")}
            for w in ws.values():
                w.join(10)
            os.kill(child.pid, signal.SIGCONT)
            late = []
            for _ in ws:
                _, res, reason, deadline = child.stdout.readline().split()
                w, deadline = ws[res], float(deadline)
                assert isinstance(w.result, lockp.Lease), f"{res} not granted: {w.result!r}"
                assert reason in ("deadline", "session"), reason
                if deadline >= w.t:
                    late.append(f"{res}: the holder's deadline is {deadline - w.t:.3f} s after "
                                f"the waiter's grant (stopped {w.t - t_stop:.3f} s before it)")
                w.result.release()
            assert not late, "; ".join(late)
        assert child.wait(5) == 0
    finally:
        _reap(child)


WAITING_CHILD = r"""
import asyncio, os, signal, sys
sys.path.insert(0, sys.argv[1])
import lockp

async def main():
    c = lockp.AsyncClient(sys.argv[2], name="waiting")
    await c.connect()
    acq = asyncio.ensure_future(c.acquire("G", wait_ms=8000))  # a watchdog lease
    await asyncio.sleep(0.02)  # the ACQUIRE goes out
    os.kill(os.getpid(), signal.SIGSTOP)
    # awake: a request goes out before the loop reads the grant (an application's next
    # request, or the keep-alive PING when its timer runs first)
    pong = asyncio.ensure_future(c.ping())
    try:
        lease = await acq
    except lockp.LockError as e:
        print("refused", e.code, flush=True)
    else:
        await asyncio.wait_for(lease.wait_lost(), 5)
        print("lost", lease.lost_reason, repr(lease.deadline), flush=True)
    await asyncio.gather(pong, return_exceptions=True)
    await c.close()

asyncio.run(main())
"""


def test_grant_read_after_a_pause_gets_no_deadline_from_the_send_that_followed_it(world):
    """A grant read after a pause: the waiting holder's ACQUIRE went out, it stopped
    (SIGSTOP), lockd granted it the lock, ended its silent session and granted the lock to
    the next waiter. Continued, the holder sends a PING before its loop reads the grant; it
    must not count the grant as held past the other grant: refused at once, or lost with
    a deadline before it. Before, the session bound counted from that PING, and the grant
    was held about 1.4 s past the other's."""
    m = [world.redis()]
    l1 = world.lockd(m, FAST)
    pkg = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    with lockp.Client(l1.addr, name="first") as first, lockp.Client(l1.addr, name="next") as b:
        held = first.acquire("G", wait_ms=5000)
        child = subprocess.Popen([sys.executable, "-c", WAITING_CHILD, pkg, l1.addr],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert _stopped(child.pid), "the waiting holder did not stop itself"
            time.sleep(0.1)  # its ACQUIRE waits at lockd: the child is first in line
            w = waiter(b, "G", 8000)
            time.sleep(0.05)
            held.release()
            w.join(10)
            assert isinstance(w.result, lockp.Lease), \
                f"the next waiter was not granted G while the holder was stopped: {w.result!r}"
            os.kill(child.pid, signal.SIGCONT)
            line = child.stdout.readline().split()
            assert line and line[0] in ("refused", "lost"), f"the holder said {line}"
            if line[0] == "lost":
                deadline = float(line[2])
                assert deadline < w.t, (f"the stopped holder's grant has a deadline "
                                        f"{deadline - w.t:.3f} s after the next waiter's grant "
                                        f"(fence {w.result.fence})")
            w.result.release()
            assert child.wait(5) == 0
        finally:
            _reap(child)
