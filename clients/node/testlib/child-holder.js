// A lock holder for the session-expiry test: acquires S with a 30 s fixed lease through
// the lockd at argv[2], prints "granted", then "lost <reason>" when the lock is lost.
import { Client } from '../index.js';

const c = new Client(process.argv[2]);
const lease = await c.acquire('S', { leaseMs: 30000 });
console.log('granted');
lease.signal.addEventListener('abort', async () => {
  console.log(`lost ${lease.lostReason}`);
  await c.close();
  process.exit(0);
});
