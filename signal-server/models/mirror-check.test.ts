// WEIGHTS_URL asked at start as a volunteer's page would ask it. The mirrors are real HTTP servers on port 0
// (testing/static-folder-server.ts, written apart from webswarm's server), told to misbehave the ways a volunteer's
// layer fetch refuses (web/compute/range-fetch.ts; e2e/layer-fetch.spec.ts runs those in Chromium).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type StaticFolderOptions, startStaticFolderServer } from '../../testing/static-folder-server.js';
import { optionsFrom, startServer } from '../main.js';
import type { SignalServer } from '../server.js';
import { freePort } from '../testing/redis-server.js';
import { serverLog } from '../testing/server-log.js';
import { DEFAULT_MODEL, modelDir } from '../defaults.js';
import { mirrorProblem } from './mirror-check.js';

const ORIGIN = 'http://127.0.0.1:8080';
const FILE = 'model.safetensors';

async function problemWith(o: StaticFolderOptions, file = FILE): Promise<{ problem: string | null; url: string }> {
  const mirror = await startStaticFolderServer(modelDir(DEFAULT_MODEL), o);
  try {
    return { problem: await mirrorProblem(mirror.url, file, ORIGIN), url: `${mirror.url}${file}` };
  } finally {
    await mirror.close();
  }
}

describe('mirrorProblem', () => {
  it('a static server with ranges and CORS passes; so does one that allows the swarm’s origin by name', async () => {
    expect((await problemWith({})).problem).toBeNull();
    expect((await problemWith({ allowOrigin: ORIGIN })).problem).toBeNull();
  });

  it('names each way a volunteer’s load would fail', async () => {
    const ignored = await problemWith({ ignoreRange: true });
    expect(ignored.problem).toBe(`${ignored.url} answered a range request with HTTP 200: the server must support range requests`);
    const hidden = await problemWith({ hideContentRange: true });
    expect(hidden.problem).toBe(`${hidden.url} hides Content-Range from scripts: a cross-origin server must list it in Access-Control-Expose-Headers`);
    const none = await problemWith({ allowOrigin: null });
    expect(none.problem).toBe(`${none.url} sends no Access-Control-Allow-Origin: the swarm's pages cannot read it`);
    const other = await problemWith({ allowOrigin: 'https://elsewhere.example' });
    expect(other.problem).toBe(`${other.url} lets only pages of https://elsewhere.example read it (this server is ${ORIGIN})`);
    const missing = await problemWith({}, 'model-00001-of-00002.safetensors');
    expect(missing.problem).toBe(`${missing.url} answered HTTP 404`);
    const port = await freePort();
    expect(await mirrorProblem(`http://127.0.0.1:${port}/m/`, FILE, ORIGIN)).toBe(
      `http://127.0.0.1:${port}/m/${FILE} cannot be reached (ECONNREFUSED)`,
    );
  });
});

describe('the server at start', () => {
  let tmp: string;
  const servers: SignalServer[] = [];
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'webswarm-mirror-'));
  });
  afterAll(async () => {
    for (const s of servers) await s.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('warns by name of a WEIGHTS_URL its volunteers cannot load from (before: only volunteers joining and leaving), and says a good one answers', async () => {
    const port = await freePort();
    const base = { ...optionsFrom({}), port: 0, host: '127.0.0.1', webRoot: tmp, stageCache: tmp };
    const dead = serverLog();
    servers.push(await startServer({ ...base, weightsUrl: `http://127.0.0.1:${port}/austen/` }, dead.logger));
    await expect
      .poll(() => dead.lines.find((l) => l.includes('WEIGHTS_URL')), { timeout: 15_000 })
      .toContain(
        `WEIGHTS_URL (--weights-url): http://127.0.0.1:${port}/austen/${FILE} cannot be reached (ECONNREFUSED); volunteers cannot load their layers from it`,
      );
    expect(dead.lines.find((l) => l.includes('WEIGHTS_URL'))).toContain('"level":40');

    const mirror = await startStaticFolderServer(modelDir(DEFAULT_MODEL));
    try {
      const good = serverLog();
      servers.push(await startServer({ ...base, weightsUrl: mirror.url }, good.logger));
      await expect
        .poll(() => good.lines.find((l) => l.includes('WEIGHTS_URL')), { timeout: 15_000 })
        .toContain(`WEIGHTS_URL (--weights-url) ${mirror.url} answers range requests for the model's weights`);
      expect(mirror.log).toEqual([`GET ${FILE} bytes=0-7`]);
    } finally {
      await mirror.close();
    }
  });
});
