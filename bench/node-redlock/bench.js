// node-redlock baseline for lockbench: the same two modes against the same Redis masters.
//   node bench.js --servers H:P,H:P,H:P [--clients 64] [--duration 10]
//                 [--mode uncontended|contended] [--hold 1]
// uncontended: each client loops acquire(own resource, 10 s) / release; cycles/s, acquire p99.
// contended:   all clients acquire one resource (redlock retries with its default jitter,
//              retryCount high), hold it H ms, release; cycles/s, wait p50/p99/max.
// One ioredis connection per master, auto-pipelining on, shared by the clients (the usual
// way to run redlock in one Node process). The client loop, clocks and RESULT line are
// loadgen.js's, shared with lockp.js (lockd's driver).
"use strict";

const Redis = require("ioredis");
const Redlock = require("redlock").default;
const { parseArgs, run } = require("./loadgen");

const usage = "usage: node bench.js --servers H:P,H:P,H:P [--clients C] [--duration S] " +
              "[--mode uncontended|contended] [--hold MS]";

async function main() {
  const o = parseArgs(process.argv, { servers: "", clients: 64, duration: 10,
                                      mode: "uncontended", hold: 1 }, usage);
  if (!o.servers) throw new Error(usage);
  const redises = o.servers.split(",").map((hp) => {
    const [host, port] = hp.split(":");
    return new Redis({ host, port: parseInt(port, 10), enableAutoPipelining: true,
                       maxRetriesPerRequest: 1 });
  });
  const redlock = new Redlock(redises, {
    driftFactor: 0.01,
    retryCount: o.mode === "contended" ? 100000 : 0,
    // retryDelay and retryJitter: redlock's defaults (200 ms, 100 ms)
  });
  redlock.on("error", () => {}); // per-attempt ResourceLockedError noise
  const driver = {
    acquire: async (resource) => {
      const lock = await redlock.acquire([resource], 10000);
      return { release: () => lock.release() };
    },
    close: async () => { for (const r of redises) r.disconnect(); },
  };
  await run({ ...o, impl: "node-redlock", resource: `bench:node:${process.pid}`,
              detail: `masters=${redises.length}` }, driver);
}

main().catch((e) => {
  console.error(`node-redlock bench: ${e.message}`);
  process.exit(2);
});
