"""Real servers for the lockp tests: redis-server and lockd on free loopback ports in a
temp dir, stopped by PID (also when a test fails: the fixtures' finalizers call stop).

LOCKD_BIN names the lockd binary (default: build/bin/lockd under the repository).
"""

import os
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

# Short timeouts keep the fault tests fast: session timeout 1500 ms (the client PINGs
# every 500 ms at most and calls a lockd dead after 1000 ms of silence), watchdog lease
# 3000 ms; a Redis round may take 250 ms (a loaded test machine misses 50).
FAST = ("session: {timeout_ms: 1500}\nwatchdog: {lease_ms: 3000}\n"
        "redlock: {redis_timeout_ms: 250}")

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
LOCKD_BIN = os.environ.get("LOCKD_BIN") or os.path.join(REPO, "build", "bin", "lockd")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.01)
    return False


class Proc:
    """A server we started: stop() ends it by its PID (SIGCONT first if stopped)."""

    def __init__(self, argv, log, port):
        self.argv, self.log, self.port = argv, log, port
        self.addr = f"127.0.0.1:{port}"
        self.start()

    def start(self, timeout=15.0):
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen(self.argv, stdout=f, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        if not wait_port(self.port, self.proc, timeout):
            self.stop()
            raise RuntimeError(f"{self.argv[0]} did not start on {self.port}: "
                               f"{open(self.log, errors='replace').read()[-2000:]}")

    @property
    def pid(self):
        return self.proc.pid

    def kill(self, sig):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=3.0):
        if self.proc.poll() is not None:
            return
        try:
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass


class World:
    """Every server of one test (or module); stop_all() ends them all."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="lockp-test-")
        self.procs = []

    def redis(self, port=None):
        port = port or free_port()
        p = Proc(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--dir", self.dir, "--protected-mode", "no"],
                 os.path.join(self.dir, f"redis-{port}.log"), port)
        self.procs.append(p)
        return p

    def lockd(self, redis, extra="", auth=None):
        """lockd over the given redis Procs; extra: more YAML lines; auth: its secret."""
        port = free_port()
        conf = os.path.join(self.dir, f"lockd-{port}.yaml")
        with open(conf, "w") as f:
            f.write(f"listen: 127.0.0.1:{port}\n")
            f.write("redis: [" + ", ".join(r.addr for r in redis) + "]\n")
            f.write("log: {level: warn}\n")
            f.write(extra + "\n")
            if auth:
                f.write(f'auth: "{auth}"\n')
        p = Proc([LOCKD_BIN, "--config", conf], os.path.join(self.dir, f"lockd-{port}.log"), port)
        p.n_redis, p.auth = len(redis), auth
        self.procs.append(p)
        wait_masters(p, p.n_redis)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            p.stop(signal.SIGKILL)
        subprocess.run(["rm", "-rf", self.dir], check=False)


def lockp_raw(port, *requests, timeout=5.0):
    """Sends LOCKP request lines ("<tag> <VERB> ...") over a raw socket (no lockp: the
    fixtures must not depend on it, and an admin's REVOKE is no lockp call) and returns
    {tag: reply line} once every tag is answered; pushes are skipped."""
    tags = {r.split(" ", 1)[0] for r in requests}
    out = {}
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall("".join(r + "\n" for r in requests).encode())
        f = s.makefile("rb")
        while tags - out.keys():
            line = f.readline()
            if not line:
                raise RuntimeError(f"lockd :{port} closed before answering {requests}: {out}")
            line = line.decode().rstrip("\r\n")
            tag = line.split(" ", 1)[0]
            if tag in tags:
                out[tag] = line
    return out


def info(port, auth=None):
    """lockd's INFO as a dict (over lockp_raw)."""
    line = lockp_raw(port, *([f"a AUTH {auth}"] if auth else []), "i INFO")["i"]
    return dict(kv.split("=", 1) for kv in line.split()[2:] if "=" in kv)


class RedisConn:
    """One connection to a redis-server, for a test that plays a master losing its data
    or another writer (RESP by hand: the suite needs nothing beyond the standard
    library)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        self.f = self.sock.makefile("rb")

    def cmd(self, *args):
        """The reply: str (simple or bulk), int, None (nil); an error raises."""
        out = [f"*{len(args)}\r\n"]
        for a in map(str, args):
            out.append(f"${len(a.encode())}\r\n{a}\r\n")
        self.sock.sendall("".join(out).encode())
        line = self.f.readline().decode().rstrip("\r\n")
        kind, rest = line[:1], line[1:]
        if kind == "+":
            return rest
        if kind == ":":
            return int(rest)
        if kind == "$":
            return None if rest == "-1" else self.f.read(int(rest) + 2)[:-2].decode()
        raise RuntimeError(f"redis: {line}")

    def close(self):
        self.f.close()
        self.sock.close()


def wait_renewed(master, key, timeout=3.0):
    """Returns right after lockd renewed key on master (its PTTL jumped up), so the next
    watchdog renewal is a full period away; polls every 2 ms."""
    r = RedisConn(master.port)
    try:
        deadline = time.monotonic() + timeout
        prev = r.cmd("PTTL", key)
        while time.monotonic() < deadline:
            time.sleep(0.002)
            cur = r.cmd("PTTL", key)
            if cur > prev + 100:
                return
            prev = cur
        raise RuntimeError(f"{key} on {master.addr}: no renewal seen in {timeout} s")
    finally:
        r.close()


def waiter(client, resource, wait_ms, **kw):
    """client.acquire in a thread (again after NOQUORUM, as a waiter would while masters
    are down): .result is the Lease (or the exception), .t the time.monotonic() it came:
    the latest moment the grant can be said to have happened."""
    box = threading.Thread()
    box.result, box.t = None, None

    def run():
        import lockp
        deadline = time.monotonic() + wait_ms / 1000
        while True:
            try:
                box.result = client.acquire(resource, wait_ms=wait_ms, **kw)
            except lockp.NoQuorum as e:
                box.result = e
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
            except Exception as e:  # noqa: BLE001 - handed to the test
                box.result = e
            box.t = time.monotonic()
            return

    box.run = run
    box.start()
    return box


def wait_masters(lockd, n, timeout=15.0):
    """lockd accepts sessions before its masters are connected: wait for them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(info(lockd.port, lockd.auth).get("masters_up", 0)) >= n:
            return
        time.sleep(0.02)
    raise RuntimeError(f"lockd {lockd.addr}: masters not up")


@pytest.fixture
def world():
    """A fresh set of servers per test, every one stopped by PID after it, pass or fail
    (the fixture of clients/python/tests and tests/clients, imported by their conftests)."""
    w = World()
    try:
        yield w
    finally:
        w.stop_all()
