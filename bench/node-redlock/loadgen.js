// The load generator shared by bench.js (node-redlock) and lockp.js (lockd over LOCKP):
// one client loop, one clock, one set of percentiles and one RESULT line, so the two
// sides of bench/run.sh differ only in how a lock is taken and given back.
//   uncontended: each client loops acquire(own resource) / release; cycles/s,
//                acquire+release and acquire latency p50/p99/p99.9.
//   contended:   all clients acquire one resource, hold it H ms, release; cycles/s,
//                wait p50/p99/max, handoff p50/p99 (release sent -> next grant, for a
//                client that was already waiting), overlaps and fence order when the
//                driver returns fences.
// A driver gives run() acquire(resource, contended, client index) -> {release(), fence?}
// (it throws when the lock was not granted; e.backoff: ms to wait first) and close().
"use strict";

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Parses --key value pairs into a copy of defaults (numbers stay numbers).
function parseArgs(argv, defaults, usage) {
  const o = { ...defaults };
  for (let i = 2; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, "");
    const v = argv[i + 1];
    if (!argv[i].startsWith("--") || !(k in defaults) || v === undefined) {
      throw new Error(usage);
    }
    o[k] = typeof defaults[k] === "number" ? parseFloat(v) : v;
  }
  if (!["uncontended", "contended"].includes(o.mode)) throw new Error(usage);
  return o;
}

function pct(sorted, q) {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.floor(q * sorted.length));
  return sorted[i];
}

const fmt3 = (a, qs) => qs.map((q) => pct(a, q).toFixed(3).padStart(9)).join(" ");

// o: {impl, label, mode, clients, duration, hold, resource}; driver: see above.
async function run(o, driver) {
  const acq = [], cycle = [], wait = [], handoff = [];
  let cycles = 0, errors = 0, overlaps = 0, fenceErrors = 0, holder = false;
  let lastFence = -1n, lastReleaseMs = 0, running = true;
  const contended = o.mode === "contended";
  const t0 = nowMs();
  const tEnd = t0 + o.duration * 1000;

  async function client(i) {
    const resource = contended ? o.resource : `${o.resource}:${i}`;
    while (running) {
      const ta = nowMs();
      let lock;
      try {
        lock = await driver.acquire(resource, contended, i);
      } catch (e) {
        if (running) errors++;
        if (e.backoff) await sleep(e.backoff);
        continue;
      }
      const tg = nowMs();
      if (!running) {
        lock.release().catch(() => {});
        break;
      }
      if (contended) {
        wait.push(tg - ta);
        if (lastReleaseMs > ta) handoff.push(tg - lastReleaseMs);
        if (lock.fence !== undefined) {
          if (lock.fence <= lastFence) fenceErrors++;
          lastFence = lock.fence;
        }
        if (holder) overlaps++;
        holder = true;
        if (o.hold > 0) await sleep(o.hold);
        holder = false;
        lastReleaseMs = nowMs();
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
      if (!contended) cycle.push(nowMs() - ta);
    }
  }

  for (let i = 0; i < o.clients; i++) client(i);
  await sleep(Math.max(0, tEnd - nowMs()));
  running = false;
  const secs = (nowMs() - t0) / 1000;
  const rate = cycles / secs;
  for (const a of [acq, cycle, wait, handoff]) a.sort((x, y) => x - y);

  console.log(`${o.impl}  mode=${o.mode}  clients=${o.clients}  duration=${secs.toFixed(2)}s` +
              `  hold=${o.hold}ms  ${o.detail || ""}`);
  console.log(`  cycles                 ${cycles}`);
  console.log(`  cycles/s               ${rate.toFixed(1)}`);
  const head = `RESULT impl=${o.impl}${o.label ? ` label=${o.label}` : ""} mode=${o.mode} ` +
               `clients=${o.clients} duration_s=${secs.toFixed(2)}`;
  const us = (a, q) => Math.round(pct(a, q) * 1000);
  const ms = (a, q) => pct(a, q).toFixed(3);
  if (!contended) {
    console.log("  latency (ms)           p50       p99     p99.9");
    console.log(`  acquire+release  ${fmt3(cycle, [0.5, 0.99, 0.999])}`);
    console.log(`  acquire          ${fmt3(acq, [0.5, 0.99, 0.999])}`);
    console.log(`  errors                 ${errors}`);
    console.log(`${head} cycles=${cycles} cycles_per_s=${rate.toFixed(1)} ` +
                `cycle_p50_us=${us(cycle, 0.5)} cycle_p99_us=${us(cycle, 0.99)} ` +
                `acquire_p50_us=${us(acq, 0.5)} acquire_p99_us=${us(acq, 0.99)} errors=${errors}`);
  } else {
    const wmax = wait.length ? wait[wait.length - 1] : 0;
    console.log("  latency (ms)           p50       p99       max");
    console.log(`  wait             ${fmt3(wait, [0.5, 0.99])} ${wmax.toFixed(3).padStart(9)}`);
    console.log(`  handoff          ${fmt3(handoff, [0.5, 0.99])}`);
    console.log(`  overlaps               ${overlaps}`);
    console.log(`  fence errors           ${fenceErrors}`);
    console.log(`  errors                 ${errors}`);
    console.log(`${head} hold_ms=${o.hold} cycles=${cycles} cycles_per_s=${rate.toFixed(1)} ` +
                `wait_p50_ms=${ms(wait, 0.5)} wait_p99_ms=${ms(wait, 0.99)} ` +
                `wait_max_ms=${wmax.toFixed(3)} handoff_p50_ms=${ms(handoff, 0.5)} ` +
                `handoff_p99_ms=${ms(handoff, 0.99)} overlaps=${overlaps} ` +
                `fence_errors=${fenceErrors} errors=${errors}`);
  }
  await driver.close();
  process.exit(overlaps > 0 || fenceErrors > 0 ? 1 : 0);
}

module.exports = { parseArgs, run, sleep };
