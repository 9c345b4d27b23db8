// node-redlock baseline for lockbench: the same two modes against the same Redis masters.
//   node bench.js --servers H:P,H:P,H:P [--clients 64] [--duration 10]
//                 [--mode uncontended|contended] [--hold 1]
// uncontended: each client loops acquire(own resource, 10 s) / release; cycles/s, acquire p99.
// contended:   all clients acquire one resource (redlock retries with its default jitter,
//              retryCount high), hold it H ms, release; cycles/s, wait p50/p99/max.
// One ioredis connection per master, auto-pipelining on, shared by the clients (the usual
// way to run redlock in one Node process). Prints a table and a final RESULT line.
"use strict";

const Redis = require("ioredis");
const Redlock = require("redlock").default;

function parseArgs(argv) {
  const o = { servers: null, clients: 64, duration: 10, mode: "uncontended", hold: 1 };
  for (let i = 2; i < argv.length; i += 2) {
    const k = argv[i];
    const v = argv[i + 1];
    if (v === undefined) throw new Error(`missing value for ${k}`);
    if (k === "--servers") o.servers = v;
    else if (k === "--clients") o.clients = parseInt(v, 10);
    else if (k === "--duration") o.duration = parseFloat(v);
    else if (k === "--mode") o.mode = v;
    else if (k === "--hold") o.hold = parseFloat(v);
    else throw new Error(`unknown option ${k}`);
  }
  if (!o.servers || !["uncontended", "contended"].includes(o.mode)) {
    throw new Error("usage: node bench.js --servers H:P,H:P,H:P [--clients C] [--duration S] " +
                    "[--mode uncontended|contended] [--hold MS]");
  }
  return o;
}

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function pct(sorted, q) {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.floor(q * sorted.length));
  return sorted[i];
}

async function main() {
  const o = parseArgs(process.argv);
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

  const acq = [];   // uncontended: acquire latency (ms)
  const cycle = []; // uncontended: acquire + release (ms)
  const wait = [];  // contended: acquire call -> granted (ms)
  let cycles = 0, errors = 0, overlaps = 0, holder = false;
  let running = true;
  const t0 = nowMs();
  const tEnd = t0 + o.duration * 1000;

  async function client(i) {
    const resource = o.mode === "contended" ? `bench:node:${process.pid}`
                                            : `bench:node:${process.pid}:${i}`;
    while (running) {
      const ta = nowMs();
      let lock;
      try {
        lock = await redlock.acquire([resource], 10000);
      } catch (e) {
        if (running) errors++;
        continue;
      }
      const tg = nowMs();
      if (!running) break;
      if (o.mode === "contended") {
        wait.push(tg - ta);
        if (holder) overlaps++;
        holder = true;
        if (o.hold > 0) await sleep(o.hold);
        holder = false;
      } else {
        acq.push(tg - ta);
      }
      try {
        await lock.release();
      } catch (e) {
        if (running) errors++;
        continue;
      }
      if (!running) break;
      cycles++;
      if (o.mode === "uncontended") cycle.push(nowMs() - ta);
    }
  }

  for (let i = 0; i < o.clients; i++) client(i);
  await sleep(Math.max(0, tEnd - nowMs()));
  running = false;
  const secs = (nowMs() - t0) / 1000;
  const rate = cycles / secs;
  for (const a of [acq, cycle, wait]) a.sort((x, y) => x - y);

  console.log(`node-redlock  mode=${o.mode}  clients=${o.clients}  duration=${secs.toFixed(2)}s` +
              `  hold=${o.hold}ms  masters=${redises.length}`);
  console.log(`  cycles                 ${cycles}`);
  console.log(`  cycles/s               ${rate.toFixed(1)}`);
  if (o.mode === "uncontended") {
    console.log("  latency (ms)           p50       p99     p99.9");
    console.log(`  acquire+release  ${pct(cycle, 0.5).toFixed(3).padStart(9)} ` +
                `${pct(cycle, 0.99).toFixed(3).padStart(9)} ${pct(cycle, 0.999).toFixed(3).padStart(9)}`);
    console.log(`  acquire          ${pct(acq, 0.5).toFixed(3).padStart(9)} ` +
                `${pct(acq, 0.99).toFixed(3).padStart(9)} ${pct(acq, 0.999).toFixed(3).padStart(9)}`);
    console.log(`  errors                 ${errors}`);
    console.log(`RESULT impl=node-redlock mode=uncontended clients=${o.clients} ` +
                `duration_s=${secs.toFixed(2)} cycles=${cycles} cycles_per_s=${rate.toFixed(1)} ` +
                `cycle_p50_us=${Math.round(pct(cycle, 0.5) * 1000)} ` +
                `cycle_p99_us=${Math.round(pct(cycle, 0.99) * 1000)} ` +
                `acquire_p50_us=${Math.round(pct(acq, 0.5) * 1000)} ` +
                `acquire_p99_us=${Math.round(pct(acq, 0.99) * 1000)} errors=${errors}`);
  } else {
    const wmax = wait.length ? wait[wait.length - 1] : 0;
    console.log("  latency (ms)           p50       p99       max");
    console.log(`  wait             ${pct(wait, 0.5).toFixed(3).padStart(9)} ` +
                `${pct(wait, 0.99).toFixed(3).padStart(9)} ${wmax.toFixed(3).padStart(9)}`);
    console.log(`  overlaps               ${overlaps}`);
    console.log(`  errors                 ${errors}`);
    console.log(`RESULT impl=node-redlock mode=contended clients=${o.clients} ` +
                `duration_s=${secs.toFixed(2)} hold_ms=${o.hold} cycles=${cycles} ` +
                `cycles_per_s=${rate.toFixed(1)} wait_p50_ms=${pct(wait, 0.5).toFixed(3)} ` +
                `wait_p99_ms=${pct(wait, 0.99).toFixed(3)} wait_max_ms=${wmax.toFixed(3)} ` +
                `overlaps=${overlaps} errors=${errors}`);
  }
  for (const r of redises) r.disconnect();
  process.exit(0);
}

main().catch((e) => {
  console.error(`node-redlock bench: ${e.message}`);
  process.exit(2);
});
