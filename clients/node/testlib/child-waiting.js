// A waiting holder for the grant-read-after-a-pause test: connects to the lockd at argv[2],
// sends ACQUIRE G (a watchdog lease, waiting up to 8 s) and stops itself (SIGSTOP) once it
// went out, so that lockd's grant waits unread in its socket while lockd ends the silent
// session and grants G to the next waiter. Continued, it sends a PING before its loop reads
// the grant (an application's next request, or the keep-alive PING when its timer runs
// first), then prints "refused <code>" if the grant is refused, or "lost <reason>
// <deadline>" once it is lost; deadline is the deadline that was in force then, in
// CLOCK_MONOTONIC ms (process.hrtime: comparable with another process's).
import { Client, now } from '../index.js';

const toMono = (t) => Number(process.hrtime.bigint()) / 1e6 - now() + t;
const c = new Client(process.argv[2], { name: 'waiting' });
await c.ping(); // connected
const acquired = c.acquire('G', { waitMs: 8000 }).then((lease) => ({ lease }), (err) => ({ err }));
await new Promise((r) => setTimeout(r, 20)); // the ACQUIRE goes out
process.kill(process.pid, 'SIGSTOP');
// awake: the PING is written before the loop reads the socket (microtasks and nextTick
// run before I/O callbacks)
const pong = c.ping().catch(() => {});
const { lease, err } = await acquired;
if (err) {
  console.log(`refused ${err.code}`);
} else {
  if (!lease.lost) await new Promise((r) => lease.signal.addEventListener('abort', r));
  console.log(`lost ${lease.lostReason} ${toMono(lease.deadline)}`);
}
await pong;
await c.close();
