// A server process's heartbeat, in a thread of its own (see heartbeat.ts): it
// renews the process's key in Redis every `intervalMs` while the main thread
// has beaten within `stallLimitMs`. A process that crashes stops at once; one
// whose main thread is only held for a while (a long synchronous load, a
// starved CPU) is not taken for dead. Plain JavaScript: a worker thread is
// loaded by Node itself, without the TypeScript loader.
import { workerData } from 'node:worker_threads';
import { createClient } from 'redis';

const { url, key, mark, intervalMs, deadAfterMs, stallLimitMs, reconnectMaxMs, beat } = workerData;
const mainBeat = new Int32Array(beat);
const client = createClient({ url, socket: { reconnectStrategy: (retries) => Math.min(100 * 2 ** retries, reconnectMaxMs) } });
client.on('error', () => {});
await client.connect();

setInterval(() => {
  const sinceMainS = Math.floor(Date.now() / 1000) - Atomics.load(mainBeat, 0);
  if (sinceMainS * 1000 > stallLimitMs) return;
  client.set(key, mark, { expiration: { type: 'PX', value: deadAfterMs } }).catch(() => {});
}, intervalMs);
