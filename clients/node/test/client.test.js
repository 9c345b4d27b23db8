// lockp (Node) against real lockd and redis-server processes. The fault tests take
// timestamps on this machine (performance.now) and check the holder's AbortSignal fires
// BEFORE another session is granted the lock through another lockd (the other grant's
// time is when its reply arrived: the latest it can be).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { Client, LOCAL_REASONS, LOCKD_REASONS, Lease, LockError, now } from '../index.js';
import { FAST, RedisConn, World, freePort, rawLockp, sleep, uniq, waitRenewed } from '../testlib/servers.js';

const here = path.dirname(fileURLToPath(import.meta.url));

// Servers for the tests that break nothing: three masters, two lockds.
let shared;
before(async () => {
  shared = new World();
  Object.assign(shared, await shared.threeAndTwo());
});
after(() => shared.stopAll());

/** Runs fn(world) with a fresh World, stopped afterwards whatever happens. */
async function withWorld(fn) {
  const w = new World();
  try {
    return await fn(w);
  } finally {
    w.stopAll();
  }
}

async function withClients(clients, fn) {
  try {
    return await fn(...clients);
  } finally {
    for (const c of clients) await c.close();
  }
}

const rejectsCode = async (p, code) => {
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof LockError, `not a LockError: ${e}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
};

// ---------------------------------------------------------------- basics

test('acquire/release: fence is a growing BigInt, token a string', async () => {
  const res = uniq();
  await withClients([new Client(shared.l1.addr, { name: 'basic' })], async (c) => {
    const a = await c.acquire(res, { waitMs: 2000 });
    assert.ok(a instanceof Lease);
    assert.equal(typeof a.fence, 'bigint');
    assert.match(a.token, /^[0-9a-f]{32}$/);
    assert.ok(!a.lost && !a.signal.aborted && a.held);
    assert.ok(a.remainingMs() > 0 && a.remainingMs() <= 3000);
    assert.equal(await a.release(), true);
    assert.equal(await a.release(), true);
    const b = await c.acquire(res, { waitMs: 2000 });
    assert.ok(b.fence > a.fence);
    await b.release();
    assert.ok((await c.ping()) < 1000);
    assert.equal((await c.info()).masters_up, 3);
  });
});

test('using(): runs the work with the lease, returns its value, releases', async () => {
  const res = uniq();
  await withClients([new Client(shared.l1.addr), new Client(shared.l2.addr)], async (c1, c2) => {
    const fences = [];
    for (const c of [c1, c2, c1, c2]) {
      const v = await c.using(res, { waitMs: 2000 }, async (lease, signal) => {
        assert.ok(signal instanceof AbortSignal && !signal.aborted);
        fences.push(lease.fence);
        return 'done';
      });
      assert.equal(v, 'done');
    }
    assert.deepEqual([...fences].sort((x, y) => (x < y ? -1 : 1)), fences);
    assert.equal(new Set(fences).size, 4);
    await assert.rejects(c1.using(res, {}, async () => { throw new Error('work failed'); }), /work failed/);
    const after = await c1.acquire(res, { waitMs: 2000 }); // released despite the error
    await after.release();
  });
});

test('wait, TIMEOUT and HELD', async () => {
  const res = uniq();
  await withClients([new Client(shared.l1.addr), new Client(shared.l2.addr)], async (a, b) => {
    const lease = await a.acquire(res, { waitMs: 2000 });
    await rejectsCode(a.acquire(res), 'HELD');
    const t0 = now();
    await rejectsCode(b.acquire(res, { waitMs: 300 }), 'TIMEOUT');
    assert.ok(now() - t0 >= 290);
    await rejectsCode(b.using(res, {}, async () => {}), 'TIMEOUT');
    // pipelining: a waiting ACQUIRE does not hold back a PING on the same session
    const waiting = b.acquire(res, { waitMs: 3000 });
    await sleep(100);
    assert.ok((await b.ping()) < 500);
    const tRelease = now();
    await lease.release();
    const got = await waiting;
    assert.ok(now() >= tRelease && got.fence > lease.fence);
    await got.release();
  });
});

test('an abandoned wait gives its late grant back', async () => {
  const res = uniq();
  await withClients([new Client(shared.l1.addr), new Client(shared.l1.addr), new Client(shared.l2.addr)], async (a, b, c) => {
    const lease = await a.acquire(res, { waitMs: 2000 });
    await assert.rejects(b.acquire(res, { waitMs: 5000, signal: AbortSignal.timeout(200) }));
    await lease.release(); // lockd hands it to b's abandoned ACQUIRE: b gives it back
    const got = await c.acquire(res, { waitMs: 3000 });
    assert.ok(got.fence > lease.fence + 1n);
    await got.release();
  });
});

test('renew extends a fixed lease', async () => {
  const res = uniq();
  await withClients([new Client(shared.l1.addr)], async (c) => {
    await c.using(res, { waitMs: 2000, leaseMs: 400 }, async (lease) => {
      const v = await lease.renew(3000);
      // past the 400 ms lease; the deadline is also bounded by the last send + the session
      // timeout (1500 ms), which moves with every PING
      assert.ok(v > 2500 && v <= 3000 && lease.remainingMs() > 1000, `${v} ${lease.remainingMs()}`);
      await sleep(600);
      assert.ok(!lease.lost);
    });
  });
});

// ---------------------------------------------------------------- errors

test('LIMIT', () => withWorld(async (w) => {
  const l1 = await w.lockd([await w.redis()], `${FAST}\nlimits: {max_lease_ms: 5000}`);
  await withClients([new Client(l1.addr)], async (c) => {
    await rejectsCode(c.acquire(uniq(), { leaseMs: 60000 }), 'LIMIT');
  });
}));

test('NOQUORUM when a majority of masters is down', () => withWorld(async (w) => {
  const m = [await w.redis(), await w.redis(), await w.redis()];
  const l1 = await w.lockd(m);
  await withClients([new Client(l1.addr)], async (c) => {
    m[0].stop();
    m[1].stop();
    const deadline = now() + 5000;
    for (;;) {
      try {
        await (await c.acquire(uniq())).release();
      } catch (e) {
        assert.equal(e.code, 'NOQUORUM', e.message);
        break;
      }
      assert.ok(now() < deadline, 'no NOQUORUM with 2 of 3 masters down');
      await sleep(50);
    }
  });
}));

test('AUTH and NOAUTH', () => withWorld(async (w) => {
  const l1 = await w.lockd([await w.redis()], FAST, 's3cret');
  await withClients([new Client(l1.addr, { auth: 'wrong' }), new Client(l1.addr), new Client(l1.addr, { auth: 's3cret' })], async (bad, none, good) => {
    await rejectsCode(bad.acquire('R'), 'AUTH');
    await rejectsCode(none.acquire('R'), 'NOAUTH');
    await good.using('R', { waitMs: 2000 }, async (lease) => assert.ok(lease.fence >= 1n));
  });
}));

test('bad input gives a clear BADARG error', async () => {
  for (const eps of ['localhost', 'h:0', 'h:70000', 'h:x', ':7380', '', [], 42, ['127.0.0.1:1', 'nope']]) {
    assert.throws(() => new Client(eps), (e) => e.code === 'BADARG' && /endpoint/.test(e.message), String(eps));
  }
  assert.throws(() => new Client('127.0.0.1:1', { name: 'two words' }), (e) => e.code === 'BADARG');
  const c = new Client('127.0.0.1:1'); // never connects: the checks come first
  for (const r of ['has space', '', 'x'.repeat(257), 'caf\u00e9', 'tab\t', 42]) {
    await assert.rejects(c.acquire(r), (e) => e.code === 'BADARG' && /resource/.test(e.message));
    await assert.rejects(c.using(r, {}, async () => {}), (e) => e.code === 'BADARG');
  }
  await rejectsCode(c.acquire('R', { leaseMs: -1 }), 'BADARG');
  await c.close();
});

test('no lockd reachable: NOTCONNECTED; closed client: CLOSED', async () => {
  const c = new Client([`127.0.0.1:${await freePort()}`, `127.0.0.1:${await freePort()}`]);
  await assert.rejects(c.acquire('R'), (e) => e.code === 'NOTCONNECTED' && /no lockd reachable/.test(e.message));
  await c.close();
  await rejectsCode(c.acquire('R'), 'CLOSED');
});

// ---------------------------------------------------------------- LOST reasons

/** A fake lockd for one session: answers HELLO, PING, RELEASE and QUIT, grants every
 * ACQUIRE (token n as 32 hex digits, fence n) and follows the grant of resource R with
 * the line pushes[R] (if any). Resolves to { addr, server }. */
function scriptedLockd(pushes) {
  return new Promise((resolve) => {
    let n = 0;
    const server = net.createServer((sock) => {
      let buf = '';
      sock.setEncoding('latin1');
      sock.on('error', () => {});
      sock.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const [tag, verb, ...args] = buf.slice(0, i).split(' ');
          buf = buf.slice(i + 1);
          let out;
          if (verb === 'HELLO') out = `${tag} OK s1 10000\n`;
          else if (verb === 'ACQUIRE') {
            const token = (++n).toString(16).padStart(32, '0');
            out = `${tag} OK ${token} ${n} 5000\n`;
            if (pushes[args[0]]) out += `${pushes[args[0]].replace('{token}', token)}\n`;
          } else if (verb === 'QUIT') out = `${tag} OK BYE\n`;
          else out = verb === 'PING' ? `${tag} OK PONG\n` : `${tag} OK\n`;
          sock.write(out);
        }
      });
    });
    server.listen(0, '127.0.0.1', () => resolve({ addr: `127.0.0.1:${server.address().port}`, server }));
  });
}

test('the LOST reason is the optional fourth field (lostReason, signal.reason, using)', async () => {
  const { addr, server } = await scriptedLockd({
    A: '* LOST A {token} renew_refused', B: '* LOST B {token}', C: '* LOST C {token} some_new_reason',
  });
  try {
    await withClients([new Client(addr)], async (c) => {
      for (const [res, reason] of [['A', 'renew_refused'], ['B', 'lost'], ['C', 'some_new_reason']]) {
        let seen = null;
        await assert.rejects(c.using(res, {}, async (lease, signal) => {
          if (!signal.aborted) await new Promise((r) => signal.addEventListener('abort', r));
          seen = lease;
        }), (e) => e.code === 'LOST' && e.reason === reason && e.resource === res);
        assert.equal(seen.lostReason, reason);
        assert.ok(seen.signal.reason instanceof LockError);
        assert.equal(seen.signal.reason.code, 'LOST');
        assert.equal(seen.signal.reason.reason, reason);
      }
    });
    assert.deepEqual([...LOCAL_REASONS], ['deadline', 'lockd_dead', 'disconnected', 'closed', 'lost']);
    assert.ok(LOCKD_REASONS.includes('revoked'));
  } finally {
    server.close();
  }
});

// ---------------------------------------------------------------- failover

test('failover: a dead first endpoint, then a killed lockd', () => withWorld(async (w) => {
  const { l1, l2 } = await w.threeAndTwo();
  const dead = `127.0.0.1:${await freePort()}`;
  await withClients([new Client([dead, l1.addr, l2.addr])], async (c) => {
    const lease = await c.acquire('F', { waitMs: 2000 });
    l1.kill('SIGKILL');
    await new Promise((r) => (lease.signal.aborted ? r() : lease.signal.addEventListener('abort', r)));
    assert.equal(lease.lostReason, 'disconnected');
    assert.equal(lease.signal.reason.code, 'LOST');
    const again = await c.acquire('F2', { waitMs: 2000 }); // through l2 now
    assert.ok(again.fence >= 1n);
    await again.release();
  });
}));

// ---------------------------------------------------------------- faults: lost before another grant

/** ACQUIRE with waitMs, again after NOQUORUM (masters down), as a waiter would. */
async function acquireDespiteNoQuorum(c, res, waitMs) {
  const deadline = now() + waitMs;
  for (;;) {
    try {
      return await c.acquire(res, { waitMs });
    } catch (e) {
      if (e.code !== 'NOQUORUM' || now() > deadline) throw e;
      await sleep(50);
    }
  }
}

/** A holds R through l1; B waits for R through l2; fault(l1) (which may resolve to the
 * moment the fault really happened). Resolves once B is granted, with A's lease, the
 * time its signal fired, B's grant time and the fault time. */
async function holderAndWaiter(w, fault, leaseMs = 0, traffic = false) {
  const { m, l1, l2 } = await w.threeAndTwo();
  w.masters = m;
  const a = new Client(l1.addr, { name: 'holder' });
  const b = new Client(l2.addr, { name: 'waiter' });
  w.clients = [a, b];
  const lease = await a.acquire('R', { waitMs: 2000, leaseMs });
  let tLost = null;
  lease.signal.addEventListener('abort', () => { tLost = now(); });
  const waiting = acquireDespiteNoQuorum(b, 'R', 15000);
  const busy = [];
  const pump = traffic && setInterval(() => busy.push(a.acquire(uniq()).catch(() => null)), 50);
  await sleep(100);
  const tFault = (await fault(l1)) ?? now();
  const got = await waiting;
  const tGrant = now();
  clearInterval(pump);
  await Promise.all(busy);
  for (let i = 0; i < 30 && !lease.lost; i++) await sleep(100); // if it comes late, say by how much
  return { lease, tLost, tGrant, tFault, got };
}

function toldFirst({ lease, tLost, tGrant, tFault }) {
  assert.ok(lease.lost && tLost !== null, 'the holder was never told');
  assert.ok(tLost < tGrant, `holder's signal fired ${(tLost - tFault).toFixed(1)} ms after the fault (${lease.lostReason}), other grant at ${(tGrant - tFault).toFixed(1)} ms`);
}

async function faultCase(fault, leaseMs, check, traffic = false) {
  await withWorld(async (w) => {
    try {
      const r = await holderAndWaiter(w, (l1) => fault(l1, w), leaseMs, traffic);
      await check(r);
    } finally {
      for (const c of w.clients ?? []) await c.close();
    }
  });
}

test('lost before another grant: lockd SIGKILL', () => faultCase((l) => l.kill('SIGKILL'), 0, (r) => {
  toldFirst(r);
  assert.equal(r.lease.lostReason, 'disconnected');
  assert.ok(r.lease.lostAt - r.tFault < 1000);
}));

test('lost before another grant: lockd SIGSTOP', () => faultCase((l) => l.kill('SIGSTOP'), 0, (r) => {
  toldFirst(r);
  assert.equal(r.lease.lostReason, 'lockd_dead');
  assert.ok(r.lease.lostAt - r.tFault < 2000); // the liveness rule (1000 ms of silence), not the keys' TTL
}));

test('lost before another grant: lockd SIGSTOP while the holder keeps sending (judged by what it receives)', () => faultCase((l) => l.kill('SIGSTOP'), 0, (r) => {
  toldFirst(r);
  assert.equal(r.lease.lostReason, 'lockd_dead');
}, true));

test('lost before another grant: majority of masters down (lockd\'s LOST push)', async () => {
  let restarted = null;
  let back = null;
  await faultCase((l1, w) => {
    w.masters[0].stop();
    w.masters[1].stop();
    // the masters come back (empty) after the keys' TTL: then l2 can grant
    restarted = sleep(3300).then(async () => {
      if (w.stopped) return;
      await w.masters[0].start();
      await w.masters[1].start();
      back = now();
    });
  }, 0, async (r) => {
    await restarted;
    toldFirst(r);
    assert.ok(r.lease.lostAt < back);
    assert.equal(r.lease.lostReason, 'no_quorum');
  });
});

test('lost before another grant: lockd SIGTERM', () => faultCase((l) => l.kill('SIGTERM'), 0, (r) => {
  // lockd pushes `* LOST ... shutdown` before it releases the keys
  toldFirst(r);
  assert.equal(r.lease.lostReason, 'shutdown');
}));

// Right after a watchdog renewal, 2 of 3 masters get another value under R's key (a
// master that lost its data and granted R to someone else, or a clock jump: Kleppmann's
// case). l1's next renewal, a third of the 3 s lease later, is refused by a majority: it
// must push LOST renew_refused then. The other value expires after 2 s and l2 grants the
// waiter. A lockd that retries a refused renewal until validity runs out tells the
// holder only ~3 s after the overwrite, after that grant.
const FOREIGN_PX = 2000;
test('lost before another grant: renew refused by a majority', () => faultCase(async (l1, w) => {
  const key = 'lockd:lock:R'; // key_prefix "lockd:" (the default) + "lock:" + resource
  await waitRenewed(w.masters[2], key);
  const tFault = now();
  for (const m of w.masters.slice(0, 2)) {
    const r = new RedisConn(m.port);
    assert.equal(await r.cmd('SET', key, 'f'.repeat(32), 'PX', FOREIGN_PX), 'OK');
    r.close();
  }
  return tFault;
}, 0, (r) => {
  toldFirst(r);
  assert.equal(r.lease.lostReason, 'renew_refused');
}));

test('lost before another grant: fixed lease expiry', () => faultCase(() => {}, 700, (r) => {
  toldFirst(r);
  // the client's own deadline comes first (it counts from the ACQUIRE's send, less a
  // margin); lockd's `expired` push, from the grant, can only win on a stalled client
  assert.ok(['deadline', 'expired'].includes(r.lease.lostReason), r.lease.lostReason);
  assert.ok(r.lease.lostAt - r.tFault < 700);
}));

// SPEC 2b's REVOKE from an admin session on the holder's lockd: the holder's signal
// fires with reason revoked before the waiter (same lockd, handed the lock at once) is
// granted, and the waiter's fence is above the one REVOKE answered.
test('REVOKE: the signal fires with reason revoked before a waiter is granted', () => withWorld(async (w) => {
  const admin = 'adm1n-secret';
  const l1 = await w.lockd([await w.redis()], `${FAST}\nadmin_auth: "${admin}"`);
  await withClients([new Client(l1.addr, { name: 'holder' }), new Client(l1.addr, { name: 'waiter' })], async (a, b) => {
    const res = uniq();
    const lease = await a.acquire(res, { waitMs: 2000 });
    let tLost = null;
    lease.signal.addEventListener('abort', () => { tLost = now(); });
    let tGrant = null;
    const waiting = b.acquire(res, { waitMs: 5000 }).then((g) => { tGrant = now(); return g; });
    await sleep(200);
    assert.equal(tGrant, null, 'the waiter was granted a held lock');
    const r = await rawLockp(l1.port, `t1 AUTH ${admin}`, `t2 REVOKE ${res}`);
    assert.equal(r.t1, 't1 OK');
    const m = /^t2 OK (\d+)$/.exec(r.t2);
    assert.ok(m && BigInt(m[1]) > lease.fence, r.t2);
    const got = await waiting;
    assert.ok(tLost !== null && tLost < tGrant, `signal at ${tLost}, grant at ${tGrant}`);
    assert.equal(lease.lostReason, 'revoked');
    assert.equal(lease.signal.reason.code, 'LOST');
    assert.equal(lease.signal.reason.reason, 'revoked');
    assert.ok(got.fence > BigInt(m[1]));
    await got.release();
  });
}));

test('using() rejects with LOST when the lock is lost inside', () => withWorld(async (w) => {
  const m = [await w.redis()];
  const l1 = await w.lockd(m);
  await withClients([new Client(l1.addr)], async (c) => {
    let aborted = null;
    await assert.rejects(c.using(uniq(), { waitMs: 2000, leaseMs: 300 }, async (lease, signal) => {
      await new Promise((r) => signal.addEventListener('abort', r));
      aborted = signal.reason;
    }), (e) => e.code === 'LOST' && ['deadline', 'expired'].includes(e.reason));
    assert.equal(aborted.code, 'LOST');
    await assert.rejects(c.using(uniq(), { waitMs: 2000 }, async (lease, signal) => {
      l1.kill('SIGSTOP');
      await new Promise((r) => signal.addEventListener('abort', r));
    }), (e) => e.code === 'LOST' && e.reason === 'lockd_dead');
  });
}));

/** The child's stdout by lines: waitLine(n) resolves to its n-th line (undefined after 10 s). */
function lineReader(child) {
  const lines = [];
  let wake = null;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => { lines.push(...d.split('\n').filter(Boolean)); if (wake) wake(); });
  return async (n) => {
    const deadline = now() + 10000;
    while (lines.length < n && now() < deadline) await new Promise((r) => { wake = r; setTimeout(r, 100); });
    return lines[n - 1];
  };
}

// A frozen client: lockd expires its session and pushes `* LOST S <token> session`. Its 30 s
// fixed lease is bounded by the session timeout, so the client that wakes has lost it by
// then: it reports the loss at once, by its own deadline or by the push, whichever it
// handles first, and the lock has moved on.
test('session expiry: a frozen client that wakes is told at once (its deadline or the LOST push)', () => withWorld(async (w) => {
  const l1 = await w.lockd([await w.redis()]);
  const child = spawn(process.execPath, [path.join(here, '..', 'testlib', 'child-holder.js'), l1.addr], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const waitLine = lineReader(child);
    assert.equal(await waitLine(1), 'granted');
    process.kill(child.pid, 'SIGSTOP');
    await sleep(2200); // past session.timeout_ms (1500)
    process.kill(child.pid, 'SIGCONT');
    const lost = await waitLine(2);
    assert.ok(['lost session', 'lost deadline'].includes(lost), lost);
    await withClients([new Client(l1.addr)], async (c) => {
      const lease = await c.acquire('S', { waitMs: 1000 }); // and the lock moved on
      assert.ok(lease.fence >= 2n);
      await lease.release();
    });
  } finally {
    try { process.kill(child.pid, 'SIGCONT'); child.kill('SIGKILL'); } catch { /* gone */ }
  }
}));

/** Resolves once the process is stopped (state T in /proc/<pid>/stat). */
async function stopped(pid) {
  for (const end = now() + 5000; now() < end; await sleep(5)) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) return true;
  }
  return false;
}

// The HOLDER is paused (SIGSTOP: a GC pause, a VM stall) right after it was granted a
// watchdog lease (3000 ms) and a fixed lease (6000 ms), longer than the session timeout
// (1500 ms), while another session waits for both locks. lockd ends the silent session and
// grants them to the waiter at once; each lock's local deadline (lease.deadline: the one in
// force when it was lost, reported by the holder once continued) must come before that
// grant: it is bounded by the last send + the session timeout. Without the bound it ran
// ~1.4 s (watchdog) and ~4.4 s (fixed) past the other grant.
test('lost before another grant: holder paused past the session timeout', () => withWorld(async (w) => {
  const l1 = await w.lockd([await w.redis()]);
  const child = spawn(process.execPath, [path.join(here, '..', 'testlib', 'child-paused.js'), l1.addr, '6000'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const mono = () => Number(process.hrtime.bigint()) / 1e6; // CLOCK_MONOTONIC, as the child's
  try {
    const waitLine = lineReader(child);
    assert.equal(await waitLine(1), 'granted');
    assert.ok(await stopped(child.pid), 'the holder did not stop itself');
    const tStop = mono();
    await withClients([new Client(l1.addr, { name: 'waiter' })], async (b) => {
      const granted = {};
      await Promise.all(['P:watchdog', 'P:fixed'].map(async (res) => {
        const lease = await b.acquire(res, { waitMs: 8000 });
        granted[res] = { lease, t: mono() };
      }));
      process.kill(child.pid, 'SIGCONT');
      const late = [];
      for (let n = 2; n <= 3; n++) {
        const line = await waitLine(n);
        const [, res, reason, deadline] = (line ?? '').split(' ');
        assert.ok(granted[res], `the holder said ${line}`);
        assert.ok(['deadline', 'session'].includes(reason), line);
        const { t } = granted[res];
        if (Number(deadline) >= t) late.push(`${res}: the holder's deadline is ${(Number(deadline) - t).toFixed(1)} ms after the waiter's grant (stopped ${(t - tStop).toFixed(1)} ms before it)`);
      }
      assert.deepEqual(late, []);
      for (const { lease } of Object.values(granted)) await lease.release();
    });
  } finally {
    try { process.kill(child.pid, 'SIGCONT'); child.kill('SIGKILL'); } catch { /* gone */ }
  }
}));

// A grant read after a pause: the waiting holder's ACQUIRE went out, it stopped (SIGSTOP),
// lockd granted it the lock, ended its silent session and granted the lock to the next
// waiter. Continued, the holder sends a PING before its loop reads the grant; it must not
// count the grant as held past the other grant: refused at once, or lost with a deadline
// before it. Before, the session bound counted from that PING, and the grant was held about
// 1.4 s past the other's.
test('a grant read after a pause gets no deadline from the send that followed the pause', () => withWorld(async (w) => {
  const l1 = await w.lockd([await w.redis()]);
  const mono = () => Number(process.hrtime.bigint()) / 1e6; // CLOCK_MONOTONIC, as the child's
  await withClients([new Client(l1.addr, { name: 'first' }), new Client(l1.addr, { name: 'next' })], async (first, next) => {
    const held = await first.acquire('G', { waitMs: 5000 });
    const child = spawn(process.execPath, [path.join(here, '..', 'testlib', 'child-waiting.js'), l1.addr], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const waitLine = lineReader(child);
      assert.ok(await stopped(child.pid), 'the waiting holder did not stop itself');
      await sleep(100); // its ACQUIRE waits at lockd: the child is first in line
      const granted = next.acquire('G', { waitMs: 8000 }).then((lease) => ({ lease, t: mono() }));
      await sleep(50);
      await held.release();
      const { lease, t } = await granted;
      process.kill(child.pid, 'SIGCONT');
      const line = (await waitLine(1)) ?? '';
      const [what, , deadline] = line.split(' ');
      assert.ok(['refused', 'lost'].includes(what), `the holder said ${line}`);
      if (what === 'lost') assert.ok(Number(deadline) < t, `the stopped holder's grant has a deadline ${(Number(deadline) - t).toFixed(1)} ms after the next waiter's grant (fence ${lease.fence})`);
      await lease.release();
    } finally {
      try { process.kill(child.pid, 'SIGCONT'); child.kill('SIGKILL'); } catch { /* gone */ }
    }
  });
}));

// A lockd that answers HELLO and PING but never an ACQUIRE: the request times out after
// requestTimeoutMs (checked by the session's keep-alive tick, not a timer per request),
// the session is dropped with CLIENT_TIMEOUT, and requests sent in one turn of the loop
// reached the server in one write (auto-pipelining).
test('a request lockd never answers: CLIENT_TIMEOUT after requestTimeoutMs; one write per turn', async () => {
  const chunks = [];
  const server = net.createServer((s) => {
    s.setEncoding('latin1');
    let buf = '';
    s.on('data', (d) => {
      chunks.push(d);
      buf += d;
      let at;
      while ((at = buf.indexOf('\n')) >= 0) {
        const [tag, cmd] = buf.slice(0, at).split(' ');
        buf = buf.slice(at + 1);
        if (cmd === 'HELLO') s.write(`${tag} OK fake1 3000\n`);
        else if (cmd === 'PING') s.write(`${tag} OK PONG\n`);
      }
    });
    s.on('error', () => {});
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const c = new Client(`127.0.0.1:${server.address().port}`, { requestTimeoutMs: 600 });
  try {
    await c.connect();
    const write = net.Socket.prototype.write;
    let writes = 0;
    net.Socket.prototype.write = function (data, ...rest) {
      if (String(data).includes('ACQUIRE')) writes++;
      return write.call(this, data, ...rest);
    };
    const t0 = now();
    let errs;
    try {
      const all = ['T1', 'T2', 'T3'].map((r) => c.acquire(r).then(() => null, (e) => e));
      errs = await Promise.all(all);
    } finally {
      net.Socket.prototype.write = write;
    }
    const took = now() - t0;
    for (const e of errs) assert.equal(e?.code, 'CLIENT_TIMEOUT', String(e));
    assert.ok(took >= 600 && took < 600 + 1000, `timed out after ${took.toFixed(0)} ms`);
    assert.equal(writes, 1, 'the three ACQUIREs of one turn went out in one write');
    assert.equal(chunks.join('').split('\n').filter((l) => l.includes('ACQUIRE')).length, 3);
  } finally {
    await c.close().catch(() => {});
    server.close();
  }
  assert.throws(() => new Client('127.0.0.1:1', { requestTimeoutMs: 0 }), /requestTimeoutMs/);
});

test('a lease\'s signal asked for after the loss is already aborted with the reason', () => withWorld(async (w) => {
  const l1 = await w.lockd([await w.redis()]);
  await withClients([new Client(l1.addr)], async (c) => {
    const lease = await c.acquire('late-signal', { leaseMs: 300 });
    await sleep(500); // past the fixed lease: lost locally, nobody asked for the signal
    assert.ok(lease.lost);
    assert.equal(lease.lostReason, 'deadline');
    assert.ok(lease.signal.aborted);
    assert.equal(lease.signal.reason.code, 'LOST');
    assert.throws(() => lease.check(), (e) => e.code === 'LOST');
  });
}));
