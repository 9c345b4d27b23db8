// Real servers for the lockp tests: redis-server and lockd on free loopback ports in a
// temp dir, stopped by PID (SIGCONT first, then SIGKILL) in stopAll(), which every
// test calls in a finally block, pass or fail.
// LOCKD_BIN names the lockd binary (default: build/bin/lockd under the repository).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '..', '..', '..');
export const LOCKD_BIN = process.env.LOCKD_BIN || path.join(REPO, 'build', 'bin', 'lockd');
// Short timeouts keep the fault tests fast: session timeout 1500 ms (the client PINGs
// every 500 ms at most and calls a lockd dead after 1000 ms of silence), watchdog lease
// 3000 ms; a Redis round may take 250 ms (a loaded test machine misses 50).
export const FAST = 'session: {timeout_ms: 1500}\nwatchdog: {lease_ms: 3000}\nredlock: {redis_timeout_ms: 250}';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function tryConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('connect', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

/** Sends LOCKP request lines ('<tag> <VERB> ...') over a raw socket (no lockp: the
 * fixtures must not depend on it, and an admin's REVOKE is no lockp call); resolves to
 * {tag: reply line} once every tag is answered (pushes are skipped). */
export function rawLockp(port, ...requests) {
  const tags = new Set(requests.map((r) => r.split(' ')[0]));
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const out = {};
    let buf = '';
    s.setEncoding('latin1');
    s.on('error', reject);
    s.on('close', () => reject(new Error(`lockd :${port} closed before answering ${requests}`)));
    s.on('connect', () => s.write(requests.map((r) => `${r}\n`).join('')));
    s.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).replace(/\r$/, '');
        buf = buf.slice(i + 1);
        const tag = line.split(' ')[0];
        if (tags.has(tag)) out[tag] = line;
      }
      if (Object.keys(out).length === tags.size) {
        s.destroy();
        resolve(out);
      }
    });
  });
}

/** lockd's INFO as an object of strings. */
export async function rawInfo(port, auth) {
  const line = (await rawLockp(port, ...(auth ? [`a AUTH ${auth}`] : []), 'i INFO')).i;
  const out = {};
  for (const kv of line.split(' ').slice(2)) {
    const i = kv.indexOf('=');
    if (i > 0) out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

/** One connection to a redis-server, for a test that plays a master losing its data or
 * another writer (RESP by hand: the suite needs no dependency). Replies: string (simple
 * or bulk), number, null (nil); an error rejects. One command at a time. */
export class RedisConn {
  constructor(port) {
    this.sock = net.connect({ host: '127.0.0.1', port });
    this.sock.setNoDelay(true);
    this.buf = Buffer.alloc(0);
    this.waiting = null;
    this.sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.parse();
    });
    this.sock.on('error', (e) => this.waiting?.reject(e));
  }

  parse() {
    if (!this.waiting) return;
    const eol = this.buf.indexOf('\r\n');
    if (eol < 0) return;
    const line = this.buf.subarray(0, eol).toString();
    const kind = line[0];
    const rest = line.slice(1);
    let value;
    let used = eol + 2;
    if (kind === '+') value = rest;
    else if (kind === ':') value = Number(rest);
    else if (kind === '$' && rest === '-1') value = null;
    else if (kind === '$') {
      const n = Number(rest);
      if (this.buf.length < used + n + 2) return;
      value = this.buf.subarray(used, used + n).toString();
      used += n + 2;
    } else {
      value = new Error(`redis: ${line}`);
    }
    this.buf = this.buf.subarray(used);
    const { resolve, reject } = this.waiting;
    this.waiting = null;
    if (value instanceof Error) reject(value);
    else resolve(value);
  }

  cmd(...args) {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      const parts = args.map(String);
      this.sock.write(`*${parts.length}\r\n${parts.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
      this.parse();
    });
  }

  close() {
    this.sock.destroy();
  }
}

/** Resolves right after lockd renewed key on master (its PTTL jumped up), so the next
 * watchdog renewal is a full period away; polls every 2 ms. */
export async function waitRenewed(master, key, timeoutMs = 3000) {
  const r = new RedisConn(master.port);
  try {
    const deadline = Date.now() + timeoutMs;
    let prev = await r.cmd('PTTL', key);
    while (Date.now() < deadline) {
      await sleep(2);
      const cur = await r.cmd('PTTL', key);
      if (cur > prev + 100) return;
      prev = cur;
    }
    throw new Error(`${key} on ${master.addr}: no renewal seen in ${timeoutMs} ms`);
  } finally {
    r.close();
  }
}

class Proc {
  constructor(argv, log, port) {
    this.argv = argv;
    this.log = log;
    this.port = port;
    this.addr = `127.0.0.1:${port}`;
  }

  async start() {
    const fd = fs.openSync(this.log, 'a');
    this.child = spawn(this.argv[0], this.argv.slice(1), { stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    this.exited = false;
    this.child.on('exit', () => { this.exited = true; });
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline && !this.exited) {
      if (await tryConnect(this.port)) return this;
      await sleep(10);
    }
    this.stop();
    throw new Error(`${this.argv[0]} did not start on ${this.port}: ${fs.readFileSync(this.log, 'latin1').slice(-2000)}`);
  }

  kill(sig) {
    if (!this.exited) process.kill(this.child.pid, sig);
  }

  stop() {
    if (this.exited) return;
    try {
      process.kill(this.child.pid, 'SIGCONT');
      process.kill(this.child.pid, 'SIGKILL');
    } catch { /* gone already */ }
  }
}

export class World {
  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lockp-node-'));
    this.procs = [];
  }

  async redis() {
    const port = await freePort();
    const p = new Proc(['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '',
      '--appendonly', 'no', '--dir', this.dir, '--protected-mode', 'no'],
    path.join(this.dir, `redis-${port}.log`), port);
    this.procs.push(p);
    return p.start();
  }

  /** lockd over the given redis Procs; extra: more YAML lines; auth: its secret. */
  async lockd(redis, extra = FAST, auth = null) {
    const port = await freePort();
    const conf = path.join(this.dir, `lockd-${port}.yaml`);
    fs.writeFileSync(conf, `listen: 127.0.0.1:${port}\nredis: [${redis.map((r) => r.addr).join(', ')}]\n`
      + `log: {level: warn}\n${extra}\n${auth ? `auth: "${auth}"\n` : ''}`);
    const p = new Proc([LOCKD_BIN, '--config', conf], path.join(this.dir, `lockd-${port}.log`), port);
    this.procs.push(p);
    await p.start();
    const deadline = Date.now() + 15000;
    while (Number((await rawInfo(port, auth)).masters_up ?? 0) < redis.length) {
      if (Date.now() > deadline) throw new Error(`lockd ${p.addr}: masters not up`);
      await sleep(20);
    }
    return p;
  }

  /** Three masters and two lockds over them. */
  async threeAndTwo(extra = FAST) {
    const m = [await this.redis(), await this.redis(), await this.redis()];
    return { m, l1: await this.lockd(m, extra), l2: await this.lockd(m, extra) };
  }

  stopAll() {
    this.stopped = true; // a pending restart (see the masters-down test) must not run now
    for (const p of this.procs.reverse()) p.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

let seq = 0;
/** A resource name no other test uses. */
export const uniq = (p = 'test') => `${p}:${process.pid}-${Date.now()}-${++seq}`;
