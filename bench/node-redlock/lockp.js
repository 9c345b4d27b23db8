// lockd over LOCKP, driven by loadgen.js: the same client loop as bench.js (node-redlock),
// so both sides of bench/run.sh are driven by the same Node code.
//   node lockp.js --server H:P [--clients 64] [--duration 10]
//                 [--mode uncontended|contended] [--hold 1] [--sessions N]
//                 [--resource R] [--label L]
// uncontended: ACQUIRE <own resource> 10000 0 (one attempt, as node-redlock's retryCount
//              0) / RELEASE. contended: ACQUIRE <one resource> 10000 60000 / hold / RELEASE.
// Sessions: one LOCKP session (TCP connection) per client by default, as lockbench; with
// --sessions N the clients share N sessions round-robin through tagged pipelining (how
// one Node process would use one lock-service connection, as node-redlock shares one
// connection per master). Contended runs need a session per client (a session cannot
// wait twice for one resource). --resource names the resource (two drivers on two lockds
// share it), --label tags the RESULT line. No dependency beyond Node.
"use strict";

const net = require("net");
const { parseArgs, run } = require("./loadgen");

const usage = "usage: node lockp.js --server H:P [--clients C] [--duration S] " +
              "[--mode uncontended|contended] [--hold MS] [--sessions N] [--resource R] " +
              "[--label L] (contended: one session per client)";

// One LOCKP session: tagged requests, replies matched by tag (they may come in any order).
class Session {
  constructor(host, port) {
    this.sock = net.connect({ host, port });
    this.sock.setNoDelay(true);
    this.buf = "";
    this.pending = new Map();
    this.tag = 0;
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
      this.sock.write(`${tag} ${req}\n`);
    });
  }
  close() {
    this.sock.removeAllListeners("close");
    this.sock.destroy();
  }
}

async function main() {
  const o = parseArgs(process.argv, { server: "", clients: 64, duration: 10,
                                      mode: "uncontended", hold: 1, sessions: 0,
                                      resource: "", label: "" }, usage);
  if (!o.server) throw new Error(usage);
  if (o.sessions <= 0 || o.sessions > o.clients) o.sessions = o.clients;
  if (o.mode === "contended" && o.sessions < o.clients) throw new Error(usage);
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
  await run({ ...o, impl: "lockd-node", resource: o.resource || `bench:lockp:${process.pid}`,
              detail: `sessions=${o.sessions}` }, driver);
}

main().catch((e) => {
  console.error(`lockp driver: ${e.message}`);
  process.exit(2);
});
