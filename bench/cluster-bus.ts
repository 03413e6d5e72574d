/**
 * What a forwarded step:logits costs between two server processes of a
 * cluster (REDIS_URL): a real redis-server, the real codec
 * (signal-server/cluster/messages.ts: a JSON header, the logits' bytes raw)
 * against the form it replaced (the logits as base64 inside the JSON), side by
 * side in one run. A 49 152-token vocabulary (SmolLM-135M's), N messages
 * published at once by one connection, read by another in the same process
 * (so the CPU column is both ends). Run alone: `node --import tsx bench/cluster-bus.ts`;
 * BENCH_BUS_MESSAGES (default 300), BENCH_BUS_REPEATS (default 3).
 */
import { createClient } from 'redis';
import { decodeInbox, encodeMessage, floatBytes, type InboxMessage, ownArrayBuffer } from '../signal-server/cluster/messages.js';
import { startRedisServer } from '../signal-server/testing/redis-server.js';
import { median, printTable } from './table.js';

const VOCAB = 49_152;

type Form = 'json + base64 (before)' | 'header + raw bytes';
const FORMS: readonly Form[] = ['json + base64 (before)', 'header + raw bytes'];

export async function benchClusterBus(options: { messages: number; repeats: number }): Promise<void> {
  const redis = await startRedisServer();
  const pub = createClient({ url: redis.url });
  const sub = pub.duplicate();
  await pub.connect();
  await sub.connect();
  const logits = new Float32Array(VOCAB).map((_, i) => Math.sin(i));
  const report = (step: number): InboxMessage => ({
    t: 'report',
    proc: 1,
    from: 'volunteer-1',
    event: 'step:logits',
    m: { sessionId: 65_537, step, resets: 0 },
    bytes: floatBytes(logits),
  });
  const results = new Map<Form, { ms: number[]; cpu: number[]; bytes: number }>(FORMS.map((f) => [f, { ms: [], cpu: [], bytes: 0 }]));
  try {
    for (let rep = 0; rep < options.repeats; rep++)
      for (const form of FORMS) {
        const channel = `bus-bench-${rep}-${form.length}`;
        let got = 0;
        let bytes = 0;
        let done: () => void = () => {};
        const all = new Promise<void>((resolve) => (done = resolve));
        await sub.subscribe(
          channel,
          (raw) => {
            bytes += raw.byteLength;
            let floats: Float32Array;
            if (form === 'header + raw bytes') {
              const m = decodeInbox(raw);
              if (m?.t !== 'report' || m.bytes === undefined) throw new Error('a report did not read back');
              floats = new Float32Array(ownArrayBuffer(m.bytes));
            } else {
              const m = JSON.parse(raw.toString('utf8')) as { m: { logits: string } };
              floats = new Float32Array(ownArrayBuffer(Buffer.from(m.m.logits, 'base64')));
            }
            if (floats.length !== VOCAB) throw new Error(`${floats.length} logits read back`);
            if (++got === options.messages) done();
          },
          true,
        );
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        for (let step = 0; step < options.messages; step++) {
          const m = report(step);
          if (form === 'header + raw bytes') void pub.publish(channel, encodeMessage(m));
          else {
            const { bytes: _, ...head } = m as Extract<InboxMessage, { t: 'report' }>;
            const base64 = Buffer.from(logits.buffer).toString('base64');
            void pub.publish(channel, JSON.stringify({ ...head, m: { ...head.m, logits: base64 } }));
          }
        }
        await all;
        const ms = performance.now() - t0;
        const cpu = process.cpuUsage(cpu0);
        await sub.unsubscribe(channel);
        const r = results.get(form) as { ms: number[]; cpu: number[]; bytes: number };
        r.ms.push(ms);
        r.cpu.push((cpu.user + cpu.system) / 1000);
        r.bytes = bytes / options.messages;
      }
  } finally {
    pub.destroy();
    sub.destroy();
    await redis.stop();
  }
  const before = results.get(FORMS[0] as Form) as { ms: number[]; cpu: number[] };
  printTable(
    `Forwarded step:logits between two server processes through Redis: ${options.messages} at once, ${VOCAB.toLocaleString('en')}-token vocabulary, medians of ${options.repeats}`,
    ['form', 'bytes a message', 'wall ms', 'messages/s', 'CPU ms a message (both ends)', 'CPU vs before'],
    FORMS.map((form) => {
      const r = results.get(form) as { ms: number[]; cpu: number[]; bytes: number };
      const ms = median(r.ms);
      const cpu = median(r.cpu);
      return [
        form,
        r.bytes.toFixed(0),
        ms.toFixed(0),
        ((options.messages * 1000) / ms).toFixed(0),
        (cpu / options.messages).toFixed(2),
        `${(cpu / median(before.cpu)).toFixed(2)} ×`,
      ];
    }),
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await benchClusterBus({ messages: Number(process.env.BENCH_BUS_MESSAGES ?? 300), repeats: Number(process.env.BENCH_BUS_REPEATS ?? 3) });
}
