// A server gives back its runners' onnxruntime sessions when it closes. They
// live in one WASM heap (at most 4 GiB, now the runner thread's), which every
// server started in the process shares and no garbage collection gives back:
// before,
// `bench/redundancy.ts`, which starts a server per run, had its fifth fail on
// the SmolLM-135M-shaped checkpoint ("challenge for stage 0 could not be made:
// std::bad_alloc"; no volunteer could be made ready, ERR_NO_ROUTE).
import { describe, expect, it } from 'vitest';
import { OrtExecutor } from './reference/ort-executor.js';
import { ThreadExecutor } from './reference/thread-executor.js';
import { httpSwarm, WAIT_MS } from './testing/http-swarm.js';

const { start, volunteer, readyCount, complete } = httpSwarm('server-close');

describe('closing a server', () => {
  it("releases its challenge runner's and its fallback runner's sessions, and a second close changes nothing", async () => {
    const { server, url, expected } = await start(3, 1, { fallback: 'stage' });
    const before = OrtExecutor.liveSessions;
    const runners = ThreadExecutor.live;
    // A volunteer's challenge makes the server load its oracle (3 stages, in the runner thread); the request,
    // with stages 1 and 2 short of volunteers, its fallback runner (3 more). The volunteer runs its stage here.
    const v = volunteer(url, '127.0.0.60');
    await expect.poll(() => readyCount(url), { timeout: WAIT_MS }).toBe(1);
    const r = await complete(url);
    expect(r.status).toBe(200);
    expect(r.body.webswarm?.tokens).toEqual(expected);
    expect(r.body.webswarm?.server_stages.length).toBeGreaterThan(0);
    expect(OrtExecutor.liveSessions).toBe(before + 1);
    expect(ThreadExecutor.live).toBe(runners + 2);
    await v.close();
    expect(OrtExecutor.liveSessions).toBe(before);
    await server.close();
    expect(ThreadExecutor.live).toBe(runners);
    await server.close();
    expect(ThreadExecutor.live).toBe(runners);
  });
});
