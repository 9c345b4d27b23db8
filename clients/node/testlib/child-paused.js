// A holder for the paused-holder test: takes P:watchdog (a watchdog lease) and P:fixed (a
// fixed lease of argv[3] ms) through the lockd at argv[2], prints "granted" and stops
// itself (SIGSTOP: a pause right after the grants). Once continued it prints, per lock,
// "lost <resource> <reason> <deadline>" when the lock is lost; deadline is the deadline
// that was in force then, in CLOCK_MONOTONIC ms (process.hrtime: comparable with another
// process's, unlike performance.now()).
import { Client, now } from '../index.js';

const toMono = (t) => Number(process.hrtime.bigint()) / 1e6 - now() + t;
const c = new Client(process.argv[2], { name: 'paused' });
const leases = [
  await c.acquire('P:watchdog', { waitMs: 2000 }),
  await c.acquire('P:fixed', { leaseMs: Number(process.argv[3]), waitMs: 2000 }),
];
console.log('granted');
process.kill(process.pid, 'SIGSTOP');
for (const lease of leases) {
  if (!lease.lost) await new Promise((r) => lease.signal.addEventListener('abort', r));
  console.log(`lost ${lease.resource} ${lease.lostReason} ${toMono(lease.deadline)}`);
}
await c.close();
