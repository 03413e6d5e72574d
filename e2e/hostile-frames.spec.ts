// Hostile bytes on the data channels: a volunteer tab of stage 0 that joins,
// loads and computes as any other (its honest frames count in the votes), but
// also sends raw messages of its choosing on both channels of each connection
// it has (`webswarm-frames`, id 1000, and simple-peer's ordinary one) to honest
// tabs on both data paths: the replicas of stage 1 it feeds (it is in their
// `prev`) and the last stage's, which send it their tokens (the mesh loop links
// them; it is not in their `prev`). Real Chromium tabs, a real server on port
// 0; the reference runner's tokens are the oracle.
import { describe, expect, it } from 'vitest';
import { GREEDY } from '../shared/model/sampling.js';
import { strayPositionLimit } from '../shared/swarm/replica-core.js';
import { expectUnanimous, hostileSwarm, type Seen, seen as seenOf } from './hostile-status.js';

const PROMPT = 'It is a truth universally acknowledged, that a single man';
/**
 * Tabs fill the stages in order (0, 1, 2, 0, 1, 2). Tab 0 is the hostile one
 * (main-thread path: its channels stay in the page, where its script is); each
 * of stages 1 and 2 gets one tab of each data path.
 */
const HOSTILE = 0;
const pathOf = (i: number) => (i === HOSTILE || i >= 4 ? 'main' : 'worker');
/** Small junk messages flooded on the frames channel of each stage-1 tab during a generation. */
const FLOOD = 10_000;
/** Unfinished frames poured into each stage-1 tab's frames channel meanwhile (64 MiB in all). */
const BIG_BYTES = 32 * 1024 * 1024;
/** austen-2m's largest frame: hidden size 160 × 512 positions × 4 bytes. */
const MAX_FRAME_BYTES = 160 * 512 * 4;

type Held = { assemblingBytes: number; strayBytes: number; openVotes: number } | null;

/** What a tab's inbound frames hold now, read where its data path runs (the page, or its compute worker). */
async function held(index: number): Promise<Held> {
  const page = rig.e.swarm.pages[index];
  if (page === undefined) return null;
  if (pathOf(index) === 'main') return page.evaluate(() => window.webswarmHeld?.() ?? null);
  for (const w of page.workers()) {
    const h = await w.evaluate(() => (self as unknown as { webswarmHeld?: () => Held }).webswarmHeld?.() ?? null).catch(() => null);
    if (h !== null) return h;
  }
  return null;
}

const rig = hostileSwarm(HOSTILE, pathOf);

const seen = () => seenOf(rig.e.swarm.pages);
/** The honest tabs the hostile one has connections to: stages 1 and 2. */
const targets = async () => (await seen()).filter((s) => s.index !== HOSTILE && s.stage !== 0);

describe('a hostile volunteer sends raw bytes on both data channels', () => {
  it('has the layout the spec attacks: the hostile tab in stage 0, one tab of each path in stages 1 and 2', async () => {
    const s = await seen();
    expect(s.map((x) => x.stage)).toEqual([0, 1, 2, 0, 1, 2]);
    expect(s.map((x) => x.dataPath)).toEqual(s.map((x) => pathOf(x.index)));
    for (const x of s) expect(x.state).toBe('ready');
  });

  it('junk of every shape outside a session: each message refused once, by its named code, and the tabs still compute exactly', async () => {
    const expected = await rig.e.expected(PROMPT, 16, GREEDY);
    const first = await rig.e.complete({ prompt: PROMPT, max_tokens: 16, temperature: 0 });
    expect(first.json.webswarm.tokens).toEqual(expected);
    // The connections the generation opened stay 30 s: two to stage 1 (fed), two to stage 2 (tokens came from there).
    const links = await rig.hostile.evaluate(() => {
      const h = window.__hostile;
      return { fed: h?.fed().length, tokens: h?.tokenSenders().length };
    });
    expect(links).toEqual({ fed: 2, tokens: 2 });
    // Late honest frames of the session that ended are refused too: let them land before the count starts.
    await new Promise((r) => setTimeout(r, 1500));
    const before = await targets();
    const sent = await rig.hostile.evaluate(async () => {
      const h = window.__hostile;
      if (h === undefined) throw new Error('no hooks');
      const c = h.chunk;
      const cut = (b: ArrayBuffer, n: number) => b.slice(0, n);
      const nanCounts = c({});
      new DataView(nanCounts).setFloat64(16, Number.NaN, true); // stage, replica, index and count: the bytes of a NaN
      const strings = ['', 'hello', '{"sessionId":1,"step":0,"stage":0}', 'x'.repeat(100), '4294967295'];
      const binary: ArrayBuffer[] = [
        new ArrayBuffer(0), // empty
        cut(c({}), 10), // truncated fixed header
        cut(c({}), 31),
        cut(c({}), 40), // rank 3 needs 44 bytes of header
        c({ magic: 0xdeadbeef }),
        c({ version: 2 }),
        c({ dtype: 7 }),
        c({ rank: 0, dims: [] }),
        c({ rank: 200 }),
        c({ dims: [0xffffffff, 0xffffffff, 0xffffffff], totalBytes: 0xffffffff, bodyBytes: 16 }), // absurd size
        c({ dims: [0x10000, 0x10000, 1], totalBytes: 0, bodyBytes: 0 }), // 2^32 values claimed in 0 bytes
        c({ dims: [1, 0, 160], totalBytes: 0, bodyBytes: 0 }),
        c({ totalBytes: 12 }), // shape and length disagree
        c({ count: 0 }),
        c({ index: 5, count: 2 }),
        c({ count: 65535 }),
        c({ bodyBytes: 642, totalBytes: 640 }),
        nanCounts,
        c({ step: 0xffffffff }), // a well-formed frame (step -1) of a session nobody holds
        c({ sessionId: 0 }),
      ];
      const counts = { frames: 0, ordinary: 0, links: 0 };
      for (const l of [...h.fed(), ...h.tokenSenders()]) {
        counts.links += 1;
        for (const dc of h.channels(l)) {
          const frames = dc.id === 1000;
          await h.pour(dc, [...strings, ...binary.map((b) => b.slice(0))]);
          // The ordinary channel is a stream in simple-peer: an empty message is no data there, so it never reaches the replica.
          const n = strings.length + binary.length - (frames ? 0 : 2);
          if (frames) counts.frames = n;
          else counts.ordinary = n;
        }
      }
      return counts;
    });
    expect(sent.links).toBe(4);
    const want = sent.frames + sent.ordinary;
    await expect
      .poll(async () => (await targets()).map((t, i) => t.rejected - (before[i]?.rejected ?? 0)), { timeout: 30_000, interval: 250 })
      .toEqual([want, want, want, want]);
    const after = await targets();
    for (const [i, t] of after.entries()) {
      const b = before[i]?.by ?? {};
      const delta = (code: string) => (t.by[code] ?? 0) - (b[code] ?? 0);
      // The strings on the frames channel are refused for what they are; on simple-peer's channel they arrive as bytes.
      expect(delta('ERR_FRAME_NOT_BINARY'), `tab ${t.index}`).toBe(5);
      for (const code of ['ERR_FRAME_TOO_SHORT', 'ERR_FRAME_MAGIC', 'ERR_FRAME_VERSION', 'ERR_FRAME_DTYPE', 'ERR_FRAME_SHAPE'])
        expect(delta(code), `tab ${t.index} ${code}`).toBeGreaterThan(0);
      for (const code of ['ERR_FRAME_TOO_LARGE', 'ERR_FRAME_CHUNK', 'ERR_FRAME_UNWANTED'])
        expect(delta(code), `tab ${t.index} ${code}`).toBeGreaterThan(0);
      expect(t.state).toBe('ready');
    }
    const again = await rig.e.complete({ prompt: PROMPT, max_tokens: 16, temperature: 0 });
    expect(again.json.webswarm.tokens).toEqual(expected);
    expectUnanimous(again.json);
  });

  it('frames of a live session (forged ids, wrong eras and steps, bad sums, 64 MB of unfinished frames) change no vote: the reference tokens, unanimous', async () => {
    const tokens = 48;
    const sampling = { temperature: 0.8, topK: 0, topP: 0.95, seed: 11 };
    const expected = await rig.e.expected(PROMPT, tokens, sampling);
    const before = await targets();
    const sessionsBefore = await rig.hostile.evaluate(() => window.__hostile?.fed().map((l) => l.sent?.sessionId ?? -1) ?? []);
    const generation = rig.e.complete({ prompt: PROMPT, max_tokens: tokens, temperature: 0.8, top_p: 0.95, seed: 11 });
    // The attack starts once this tab has fed stage 1 a few steps of the new session (its own frames say which, in which era).
    const attack = rig.hostile.evaluate(
      async ({ old, bigBytes, floodSize }) => {
        const h = window.__hostile;
        if (h === undefined) throw new Error('no hooks');
        const until = performance.now() + 60_000;
        const current = () => h.fed().find((l) => l.sent !== null && !old.includes(l.sent.sessionId) && l.sent.step >= 3)?.sent ?? null;
        while (current() === null) {
          if (performance.now() > until) throw new Error('the generation never reached step 3 here');
          await new Promise((r) => setTimeout(r, 20));
        }
        const s0 = current();
        if (s0 === null) throw new Error('unreachable');
        const { sessionId, era, replica } = s0;
        const other = 1 - replica; // the honest replica of stage 0: its index, forged
        const c = h.chunk;
        const counts = { rounds: 0, big: 0, flood: 0 };
        // One round: every kind of frame that must not count, at the step the session is at.
        const round = async (step: number) => {
          const fed: ArrayBuffer[] = [
            c({ sessionId: sessionId + 1000, step, replica }), // a session the receiver does not hold
            c({ sessionId, step: step + 1, stage: 1, replica }), // the receiver's own stage
            c({ sessionId, step: step + 1, replica, era: (era + 255) & 0xff, fill: 1e30 }), // an era since rolled back
            c({ sessionId, step: step + 1, replica, era: (era + 1) & 0xff, fill: 1e30 }), // an era to come
            c({ sessionId, step: step + 1000, replica, era }), // far ahead
            c({ sessionId, step: 0xffffffff, replica, era }),
            c({ sessionId, step: 0, replica, era, fill: 1e30 }), // the past
            c({ sessionId, step: step + 2, replica, era, dims: [1, 1, 7] }), // the right peer, the wrong shape
            c({ sessionId, step: step + 1000, replica, era, sum: 1 }), // a bad checksum
            // The honest replica's index, forged, on the steps to come: counted, these would break the vote.
            ...[1, 2, 3].map((k) => c({ sessionId, step: step + k, replica: other, era, fill: 1e30 })),
          ];
          // The last stage does not take stage 0's frames from this tab: stage 1's, forged under both indexes.
          // Ten of them on each channel: more than the 16 a session keeps aside, so some are dropped (and counted) in one round.
          const last: ArrayBuffer[] = [0, 1, 2, 3, 4].flatMap((k) =>
            [0, 1].map((r) => c({ sessionId, step: step + k, stage: 1, replica: r, era, fill: 1e30 })),
          );
          for (const l of h.tokenSenders())
            for (const dc of h.channels(l))
              await h.pour(
                dc,
                last.map((b) => b.slice(0)),
              );
          for (const l of h.fed())
            for (const dc of h.channels(l))
              await h.pour(
                dc,
                fed.map((b) => b.slice(0)),
              );
          counts.rounds += 1;
        };
        // The first round at once, before the floods fill the frames channels to stage 1 (a loaded machine may leave time for no other).
        await round(s0.step);
        // 64 MB in all: first chunks of frames as large as the model allows, of this session, never completed.
        const maxFrame = 160 * 512 * 4;
        const per = Math.floor((256 * 1024 - 44) / 4) * 4;
        const big = (async () => {
          for (const l of h.fed())
            for (const dc of h.channels(l)) {
              if (dc.id !== 1000) continue;
              const n = Math.ceil(bigBytes / per);
              const messages = Array.from({ length: n }, (_, k) =>
                c({ sessionId, era, replica, step: 0x80000000 + k, dims: [1, 512, 160], totalBytes: maxFrame, count: 2, bodyBytes: per }),
              );
              if (await h.pour(dc, messages)) counts.big += n;
            }
        })();
        // A flood on the frames channel of each tab fed: small messages refused for one code only, none of them lost.
        const flood = (async () => {
          const one = c({ sessionId, era, replica, dtype: 7, dims: [1, 1, 1] });
          for (const l of h.fed())
            for (const dc of h.channels(l))
              if (
                dc.id === 1000 &&
                (await h.pour(
                  dc,
                  Array.from({ length: floodSize }, () => one.slice(0)),
                ))
              )
                counts.flood += floodSize;
        })();
        // More rounds while the generation runs.
        while (performance.now() < until) {
          await new Promise((r) => setTimeout(r, 30));
          const now = current();
          if (now === null || now.sessionId !== sessionId || performance.now() - now.at > 1500) break;
          await round(now.step);
        }
        await Promise.all([big, flood]);
        return counts;
      },
      { old: sessionsBefore, bigBytes: BIG_BYTES, floodSize: FLOOD },
    );
    // Meanwhile, what the stage-1 tabs hold of inbound frames, sampled on the thread that reads them.
    let attacking = true;
    const watching = (async () => {
      const peak = { samples: 0, assemblingBytes: 0, strayBytes: 0, openVotes: 0 };
      const until = Date.now() + 120_000;
      while (attacking && Date.now() < until) {
        for (const index of [1, 4]) {
          const h = await held(index);
          if (h === null) continue;
          peak.samples += 1;
          peak.assemblingBytes = Math.max(peak.assemblingBytes, h.assemblingBytes);
          peak.strayBytes = Math.max(peak.strayBytes, h.strayBytes);
          peak.openVotes = Math.max(peak.openVotes, h.openVotes);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      return peak;
    })();
    const [{ status, json }, counts] = await Promise.all([generation, attack.finally(() => (attacking = false))]);
    const peak = await watching;
    process.stderr.write(`hostile-frames: stage-1 tabs held at most ${JSON.stringify(peak)} (${counts.rounds} rounds)\n`);
    // 32 MiB of unfinished frames poured into each, of which at most its two senders' budgets (2 × 2 of the largest frame) are held.
    expect(peak.samples).toBeGreaterThan(0);
    expect(peak.assemblingBytes).toBeGreaterThan(0);
    expect(peak.assemblingBytes).toBeLessThanOrEqual(2 * 2 * MAX_FRAME_BYTES);
    expect(peak.strayBytes).toBeLessThanOrEqual(strayPositionLimit(2, 512) * 160 * 4); // r = 2: strays of a session carry at most so many positions
    expect(peak.openVotes).toBeLessThanOrEqual(65);
    expect(status).toBe(200);
    expect(json.webswarm.tokens).toEqual(expected);
    expectUnanimous(json);
    expect(counts.rounds).toBeGreaterThan(0);
    expect(counts.flood).toBe(2 * FLOOD);
    expect(counts.big).toBe(2 * Math.ceil(BIG_BYTES / (Math.floor((256 * 1024 - 44) / 4) * 4)));
    // Every message of the flood is read and refused (the junk of the test before had the only other bad dtype), and the
    // unfinished 256 KiB chunks are dropped from a budget of two such frames, each further one pushing out the oldest.
    // The last stage kept the forged stage-1 frames aside (the route may yet name their sender) until too many waited.
    const byCode = (t: Seen, code: string) => (t.by[code] ?? 0) - (before.find((x) => x.index === t.index)?.by[code] ?? 0);
    await expect
      .poll(
        async () =>
          (await targets()).map((t) =>
            t.stage === 1 ? [byCode(t, 'ERR_FRAME_DTYPE'), byCode(t, 'ERR_FRAME_BUDGET') >= 100] : [byCode(t, 'ERR_NOT_LINKED') > 0],
          ),
        { timeout: 30_000, interval: 250 },
      )
      .toEqual([[FLOOD, true], [true], [FLOOD, true], [true]]);
    const after = await targets();
    for (const [i, t] of after.entries()) {
      const b = before[i]?.by ?? {};
      const delta = (code: string) => (t.by[code] ?? 0) - (b[code] ?? 0);
      expect(t.state, `tab ${t.index}`).toBe('ready');
      if (t.stage === 1) {
        for (const code of ['ERR_FRAME_UNWANTED', 'ERR_STALE_STEP', 'ERR_FRAME_CHECKSUM', 'ERR_FRAME_SHAPE'])
          expect(delta(code), `tab ${t.index} ${code}`).toBeGreaterThan(0);
      }
    }
    // The compute workers of the worker-path tabs still answer, and every tab computes exactly.
    for (const t of after.filter((x) => x.dataPath === 'worker')) {
      const workers = rig.e.swarm.pages[t.index]?.workers() ?? [];
      expect(workers.length, `tab ${t.index}`).toBeGreaterThan(0);
      for (const w of workers) expect(await w.evaluate(() => 1 + 1)).toBe(2);
    }
    const greedy = await rig.e.expected(PROMPT, 16, GREEDY);
    const last = await rig.e.complete({ prompt: PROMPT, max_tokens: 16, temperature: 0 });
    expect(last.json.webswarm.tokens).toEqual(greedy);
    expectUnanimous(last.json);
  });
});
