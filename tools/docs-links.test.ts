// README.md and docs/*.md link to each other, to files and to headings by
// GitHub's ids: every relative link must land (a file that exists, an anchor
// that is a heading of it). The checker is first shown to catch each kind of
// broken link on small pages, then run over the repository.
import { describe, expect, it } from 'vitest';
import { brokenLinks, githubSlug, headingIds, linkTargets, projectMarkdown, repositoryReader } from './docs-links.js';

/** A reader over an in-memory tree of files. */
function tree(files: Record<string, string>): (path: string) => string | undefined {
  return (path) => files[path];
}

describe('githubSlug', () => {
  it("makes GitHub's ids: lower case, punctuation and code marks dropped, spaces as hyphens", () => {
    expect(githubSlug('The default model: `austen-2m`')).toBe('the-default-model-austen-2m');
    expect(githubSlug("Where a token's time goes")).toBe('where-a-tokens-time-goes');
    expect(githubSlug('API (OpenAI-compatible)')).toBe('api-openai-compatible');
    expect(githubSlug('The floor under a token, and what is above it')).toBe('the-floor-under-a-token-and-what-is-above-it');
    expect(githubSlug('`GET /api/swarm`')).toBe('get-apiswarm');
    expect(githubSlug('Stage graphs: plain and fused')).toBe('stage-graphs-plain-and-fused');
    expect(githubSlug('r = 3 ÷ r = 1 × 3')).toBe('r--3--r--1--3');
  });
});

describe('headingIds', () => {
  it('numbers repeated headings -1, -2 and ignores # lines in code fences', () => {
    const ids = headingIds('# Title\n\n## Limits\n\n```sh\n# not a heading\n```\n\n### Limits\n\n## Limits ##\n');
    expect([...ids]).toEqual(['title', 'limits', 'limits-1', 'limits-2']);
  });
});

describe('linkTargets', () => {
  it('finds links and images with the line of their target, not in code spans or fences', () => {
    const md = 'See [a](#x) and ![b](pic.png)\n`[c](#not)` and [wrapped\ntext](other.md#y)\n```\n[d](#fenced)\n```\n';
    expect(linkTargets(md)).toEqual([
      { target: '#x', line: 1 },
      { target: 'pic.png', line: 1 },
      { target: 'other.md#y', line: 3 },
    ]);
  });
});

describe('brokenLinks', () => {
  const files = {
    'README.md': '# Top\n\n## Speed\n\nSee [it](docs/a.md#detail), [speed](#speed), [web](https://example.org/#nowhere).\n',
    'docs/a.md': '# A\n\n## Detail\n\n## Detail\n\n![shot](screenshots/x.png) [back](../README.md#speed) [second](#detail-1)\n',
    'docs/screenshots/x.png': '',
  };

  it('passes links that land: files, headings, repeated headings, images, external links', () => {
    expect(brokenLinks(['README.md', 'docs/a.md'], tree(files))).toEqual([]);
  });

  it('names each kind of broken link: a missing file, a missing heading, a wrong relative path, an anchor into a non-page', () => {
    const broken = {
      ...files,
      'README.md': `${files['README.md']}\n[gone](docs/b.md) [typo](#sped) [moved](docs/a.md#speed)\n`,
      'docs/a.md': `${files['docs/a.md']}\n![old path](docs/screenshots/x.png) [code](../signal-server/x.ts) [third](#detail-2) [img](screenshots/x.png#top)\n`,
    };
    const found = brokenLinks(['README.md', 'docs/a.md'], tree(broken)).map((b) => `${b.file}:${b.line} ${b.target}: ${b.reason}`);
    expect(found).toEqual([
      'README.md:7 docs/b.md: no file docs/b.md',
      'README.md:7 #sped: no heading #sped in README.md',
      'README.md:7 docs/a.md#speed: no heading #speed in docs/a.md',
      'docs/a.md:9 docs/screenshots/x.png: no file docs/docs/screenshots/x.png',
      'docs/a.md:9 ../signal-server/x.ts: no file signal-server/x.ts',
      'docs/a.md:9 #detail-2: no heading #detail-2 in docs/a.md',
      'docs/a.md:9 screenshots/x.png#top: an anchor into docs/screenshots/x.png, which has no headings',
    ]);
  });
});

describe("the repository's markdown", () => {
  it('README.md and docs/*.md have no broken relative link', () => {
    const files = projectMarkdown('.');
    expect(files).toContain('README.md');
    expect(files.length).toBeGreaterThan(1);
    expect(brokenLinks(files, repositoryReader('.'))).toEqual([]);
  });
});
