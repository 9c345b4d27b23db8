"""sql/fence.sql against a real PostgreSQL (scripts/pg.sh starts it in a temp dir, as the
postgres account when run as root; stopped by its PID in a finalizer, pass or fail).

Proves: lock_fence_advance is true for a fence >= every fence seen and records it,
false for an older one; two transactions that race on one resource run one after
the other (the row lock), for an existing row and for a first insert; loading the file
twice is harmless; bad arguments are refused; and with real lockd fences (through
lockp) an old holder's write is refused once a newer holder has written."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))
sys.path.insert(0, os.path.join(REPO, "clients", "python", "tests"))

PSQL = os.path.join(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"), "psql")
FENCE_SQL = os.path.join(REPO, "sql", "fence.sql")


@pytest.fixture(scope="module")
def pg():
    import servers
    d = tempfile.mkdtemp(prefix="lockp-pg-")
    port = servers.free_port()
    try:
        out = subprocess.run(["bash", os.path.join(REPO, "scripts", "pg.sh"), "start", d,
                              str(port)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        conn = ["-h", d, "-p", str(port), "-U", "booking", "-d", "booking"]
        for _ in range(2):  # loading twice is harmless
            subprocess.run([PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", FENCE_SQL] + conn,
                           check=True, capture_output=True, timeout=30)
        yield conn
    finally:
        subprocess.run(["bash", os.path.join(REPO, "scripts", "pg.sh"), "stop", d, "immediate"],
                       capture_output=True, timeout=60)
        shutil.rmtree(d, ignore_errors=True)


class Session:
    """One psql session fed line by line (a transaction can stay open across calls)."""

    def __init__(self, conn):
        self.p = subprocess.Popen([PSQL, "-X", "-q", "-At"] + conn, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def send(self, sql):
        self.p.stdin.write(sql.rstrip(";") + ";\n\\echo __END__\n")
        self.p.stdin.flush()

    def result(self):
        lines = []
        while (line := self.p.stdout.readline()) and line.strip() != "__END__":
            lines.append(line.strip())
        return "\n".join(lines)

    def q(self, sql):
        self.send(sql)
        return self.result()

    def close(self):
        self.p.stdin.close()
        self.p.wait(10)


def later(session):
    """Reads the session's next result in a thread: .value once it came, .t when."""
    t = threading.Thread()
    t.value = t.t = None

    def run():
        t.value = session.result()
        t.t = time.monotonic()

    t.run = run
    t.start()
    return t


def test_advance_basic(pg):
    s = Session(pg)
    try:
        assert s.q("SELECT lock_fence_advance('R1', 5)") == "t"
        assert s.q("SELECT lock_fence_advance('R1', 5)") == "t"  # same holder, again
        assert s.q("SELECT lock_fence_advance('R1', 4)") == "f"
        assert s.q("SELECT lock_fence_advance('R1', 18446744073709551615)") == "t"  # 2^64-1
        assert s.q("SELECT fence FROM lock_fences WHERE resource = 'R1'") == \
            "18446744073709551615"
        assert s.q("SELECT lock_fence_advance('R2', 1)") == "t"  # resources are independent
        assert s.q("SELECT lock_fence_advance(resource => 'R3', fence => 7)") == "t"
        for bad in ("NULL, 1", "'R', NULL", "'R', -1", "'R', 1.5"):
            assert "bad arguments" in s.q(f"SELECT lock_fence_advance({bad})")
    finally:
        s.close()


@pytest.mark.parametrize("first", ["existing", "new"])
def test_advance_concurrent_is_serialized(pg, first):
    """Holder 6 (newer) and holder 5 (older) race in open transactions: whichever order,
    the older one never succeeds after the newer one committed."""
    res = f"C-{first}"
    if first == "existing":
        s0 = Session(pg)
        assert s0.q(f"SELECT lock_fence_advance('{res}', 1)") == "t"
        s0.close()
    new, old = Session(pg), Session(pg)
    try:
        assert new.q("BEGIN") == ""
        assert new.q(f"SELECT lock_fence_advance('{res}', 6)") == "t"  # row locked now
        assert old.q("BEGIN") == ""
        old.send(f"SELECT lock_fence_advance('{res}', 5)")
        waiter = later(old)
        time.sleep(0.3)
        assert waiter.value is None, "the older holder did not wait for the row lock"
        t_commit = time.monotonic()
        assert new.q("COMMIT") == ""
        waiter.join(10)
        assert waiter.value == "f" and waiter.t >= t_commit
        assert old.q("COMMIT") == ""
        # and the other way round: an older holder first, rolled back; the newer wins
        assert old.q("BEGIN") == "" and old.q(f"SELECT lock_fence_advance('{res}', 6)") == "t"
        new.send(f"SELECT lock_fence_advance('{res}', 7)")
        waiter = later(new)
        time.sleep(0.2)
        assert waiter.value is None
        assert old.q("ROLLBACK") == ""
        waiter.join(10)
        assert waiter.value == "t"
        assert new.q(f"SELECT fence FROM lock_fences WHERE resource = '{res}'") == "7"
    finally:
        new.close()
        old.close()


def test_advance_with_lockd_fences(pg, world):
    """Real fences: A holds, loses the lock (fixed lease runs out), B is granted and
    writes; A's late write is refused."""
    import lockp
    import servers
    l1 = world.lockd([world.redis()], servers.FAST)
    s = Session(pg)
    with lockp.Client(l1.addr) as c1, lockp.Client(l1.addr) as c2:
        a = c1.acquire("Doc:1", lease_ms=300)
        assert a.lost.wait(2) and a.lost_reason in ("deadline", "expired")
        with c2.lock("Doc:1", wait_ms=2000) as b:
            assert b.fence > a.fence
            assert s.q(f"SELECT lock_fence_advance('Doc:1', {b.fence})") == "t"
        assert s.q(f"SELECT lock_fence_advance('Doc:1', {a.fence})") == "f"
    s.close()


ADMIN = "adm1n-secret"


def test_revoke_holder_lost_fenced_write_refused_waiter_granted(pg, world):
    """SPEC 2b's REVOKE, as an admin would use it with fence.sql: the holder is told
    LOST revoked before the waiter (on the same lockd, handed the lock at once) is
    granted; the admin records the fence REVOKE answered, so the old holder's next
    fenced write is refused at once; the waiter's fence is above it and its write goes
    through."""
    import lockp
    import servers
    masters = [world.redis() for _ in range(3)]
    l1 = world.lockd(masters, servers.FAST + f'\nadmin_auth: "{ADMIN}"')
    s = Session(pg)
    res = "Acct:9"
    try:
        with lockp.Client(l1.addr, name="holder") as c1, \
                lockp.Client(l1.addr, name="waiter") as c2:
            a = c1.acquire(res, wait_ms=2000)
            assert s.q(f"SELECT lock_fence_advance('{res}', {a.fence})") == "t"  # a writes
            w = servers.waiter(c2, res, 5000)
            time.sleep(0.2)
            assert w.result is None, "the waiter was granted a held lock"
            r = servers.lockp_raw(l1.port, f"t1 AUTH {ADMIN}", f"t2 REVOKE {res}")
            assert r["t1"] == "t1 OK", r
            ok, fence = r["t2"].split()[1:3]
            assert ok == "OK" and int(fence) > a.fence, r
            revoked_at = int(fence)
            assert a.lost.wait(2), "the holder was never told"
            assert a.lost_reason == "revoked"
            # the admin records the revocation's fence: the old holder's writes fail from now
            assert s.q(f"SELECT lock_fence_advance('{res}', {revoked_at})") == "t"
            assert s.q(f"SELECT lock_fence_advance('{res}', {a.fence})") == "f"
            w.join(5)
            assert isinstance(w.result, lockp.Lease), f"the waiter was not granted: {w.result!r}"
            assert a.lost_at < w.t, "the waiter was granted before the holder was told"
            assert w.result.fence > revoked_at
            assert s.q(f"SELECT lock_fence_advance('{res}', {w.result.fence})") == "t"
            w.result.release()
    finally:
        s.close()
