// lockd over LOCKP, driven by loadgen.js: the same client loop as bench.js (node-redlock),
// so both sides of bench/run.sh are driven by the same Node code.
//   node lockp.js --server H:P [--clients 64] [--duration 10]
//                 [--mode uncontended|contended] [--hold 1] [--sessions N]
//                 [--resource R] [--label L] [--client raw|lib]
// uncontended: ACQUIRE <own resource> 10000 0 (one attempt, as node-redlock's retryCount
//              0) / RELEASE. contended: ACQUIRE <one resource> 10000 60000 / hold / RELEASE.
// Sessions: one LOCKP session (TCP connection) per client by default, as lockbench; with
// --sessions N the clients share N sessions round-robin through tagged pipelining (how
// one Node process would use one lock-service connection, as node-redlock shares one
// connection per master). The requests a session gets in one turn of Node's loop go out in
// one write, as ioredis's auto-pipelining (on in bench.js) does for node-redlock. Contended runs need a session per client (a session cannot
// wait twice for one resource). --resource names the resource (two drivers on two lockds
// share it), --label tags the RESULT line. --client lib (uncontended only): the project's
// Node library (clients/node) instead of raw LOCKP, one Client per session (a Client is one
// session), its callers sharing it as an application's would: what a user of the library
// gets, deadlines, timers and all. No dependency beyond Node.
"use strict";

const net = require("net");
const { parseArgs, run } = require("./loadgen");

const usage = "usage: node lockp.js --server H:P [--clients C] [--duration S] " +
              "[--mode uncontended|contended] [--hold MS] [--sessions N] [--resource R] " +
              "[--label L] [--client raw|lib] (contended: one session per client; lib: uncontended)";

// One LOCKP session: tagged requests, replies matched by tag (they may come in any order).
class Session {
  constructor(host, port) {
    this.sock = net.connect({ host, port });
    this.sock.setNoDelay(true);
    this.buf = "";
    this.pending = new Map();
    this.tag = 0;
    this.out = ""; // requests of this tick, written at once (as ioredis's auto-pipelining)
    this.sock.on("data", (d) => this.onData(d));
    this.sock.on("error", (e) => this.fail(e));
    this.sock.on("close", () => this.fail(new Error("connection closed")));
  }
  ready() {
    return new Promise((res, rej) => {
      this.sock.once("connect", res);
      this.sock.once("error", rej);
    });
  }
  fail(e) {
    for (const [, p] of this.pending) p.reject(e);
    this.pending.clear();
  }
  onData(d) {
    this.buf += d.toString("latin1");
    let at;
    while ((at = this.buf.indexOf("\n")) >= 0) {
      const line = this.buf.slice(0, at);
      this.buf = this.buf.slice(at + 1);
      const sp = line.indexOf(" ");
      const p = this.pending.get(line.slice(0, sp)); // "*" pushes match no request
      if (p) {
        this.pending.delete(line.slice(0, sp));
        p.resolve(line.slice(sp + 1).split(" "));
      }
    }
  }
  call(req) {
    const tag = (this.tag++).toString(36);
    return new Promise((resolve, reject) => {
      this.pending.set(tag, { resolve, reject });
      if (this.out === "") process.nextTick(() => this.flush());
      this.out += `${tag} ${req}\n`;
    });
  }
  flush() {
    const out = this.out;
    this.out = "";
    if (out !== "") this.sock.write(out);
  }
  close() {
    this.sock.removeAllListeners("close");
    this.sock.destroy();
  }
}

async function main() {
  const o = parseArgs(process.argv, { server: "", clients: 64, duration: 10,
                                      mode: "uncontended", hold: 1, sessions: 0,
                                      resource: "", label: "", client: "raw" }, usage);
  if (!o.server) throw new Error(usage);
  if (o.sessions <= 0 || o.sessions > o.clients) o.sessions = o.clients;
  if (o.mode === "contended" && o.sessions < o.clients) throw new Error(usage);
  if (o.client !== "raw" && (o.client !== "lib" || o.mode !== "uncontended")) throw new Error(usage);
  const resource = o.resource || `bench:lockp:${process.pid}`;
  if (o.client === "lib") return runLib(o, resource);
  const [host, port] = o.server.split(":");
  const sessions = [];
  for (let i = 0; i < o.sessions; i++) sessions.push(new Session(host, parseInt(port, 10)));
  await Promise.all(sessions.map((s) => s.ready()));
  const driver = {
    acquire: async (resource, contended, client) => {
      const s = sessions[client % sessions.length];
      const r = await s.call(`ACQUIRE ${resource} 10000 ${contended ? 60000 : 0}`);
      if (r[0] !== "OK") {
        const e = new Error(r.join(" "));
        e.backoff = r[0] === "ERR" ? 10 : 0;
        throw e;
      }
      return {
        fence: BigInt(r[2]),
        release: async () => {
          const rr = await s.call(`RELEASE ${resource} ${r[1]}`);
          if (rr[0] !== "OK") throw new Error(rr.join(" "));
        },
      };
    },
    close: async () => { for (const s of sessions) s.close(); },
  };
  await run({ ...o, impl: "lockd-node", resource, detail: `sessions=${o.sessions}` }, driver);
}

// The same loop through clients/node: ACQUIRE with a fixed 10 s lease and no wait (as the
// raw driver's), RELEASE through the lease.
async function runLib(o, resource) {
  const url = require("url").pathToFileURL(require("path").join(__dirname, "../../clients/node/index.js"));
  const { Client } = await import(url.href);
  const clients = [];
  for (let i = 0; i < o.sessions; i++) clients.push(new Client(o.server, { name: `bench${i}` }));
  await Promise.all(clients.map((c) => c.connect()));
  const driver = {
    acquire: async (res, contended, client) => {
      const lease = await clients[client % clients.length].acquire(res, { leaseMs: 10000 });
      return { fence: lease.fence, release: () => lease.release() };
    },
    close: async () => { for (const c of clients) await c.close(); },
  };
  await run({ ...o, impl: "lockd-lib", resource, detail: `clients=${o.sessions}` }, driver);
}

main().catch((e) => {
  console.error(`lockp driver: ${e.message}`);
  process.exit(2);
});
