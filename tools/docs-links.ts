/**
 * Relative links in the project's markdown (README.md, docs/*.md): each one's
 * file must exist and its `#anchor` must name a heading of that file, by
 * GitHub's rules for heading ids, since that is where the pages are read.
 * Pure functions over text, plus one that reads the files; docs-links.test.ts
 * runs it over the repository.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

/** A link that does not resolve: where it is, what it points at, and why. */
export interface BrokenLink {
  readonly file: string;
  readonly line: number;
  readonly target: string;
  readonly reason: string;
}

/**
 * GitHub's id for a heading's text (github-slugger's rule): lower case, every
 * character that is not a letter, mark, digit, connector (`_`), hyphen or
 * space dropped, each space a hyphen.
 */
export function githubSlug(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, '')
    .replace(/ /g, '-');
}

/** Blanks fenced code blocks (keeping line count), so neither their `#` lines nor their brackets count. */
function withoutFences(markdown: string): string[] {
  let fence: string | null = null;
  return markdown.split('\n').map((line) => {
    const open = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (fence === null && open?.[1] !== undefined) {
      fence = open[1];
      return '';
    }
    if (fence !== null) {
      if (line.trim().startsWith(fence)) fence = null;
      return '';
    }
    return line;
  });
}

/** The ids of a file's headings, in order; a repeated one gets `-1`, `-2`, … as on GitHub. */
export function headingIds(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const ids = new Set<string>();
  for (const line of withoutFences(markdown)) {
    const m = /^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/.exec(line);
    if (m?.[1] === undefined) continue;
    const base = githubSlug(m[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    ids.add(n === 0 ? base : `${base}-${n}`);
  }
  return ids;
}

/** Every inline link and image target with its line, outside code fences and code spans. */
export function linkTargets(markdown: string): { target: string; line: number }[] {
  const lines = withoutFences(markdown);
  // Code spans may wrap lines: blank them in the whole text, keeping newlines so line numbers hold.
  const text = lines.join('\n').replace(/`[^`]*`/g, (span) => span.replace(/[^\n]/g, ' '));
  const found: { target: string; line: number }[] = [];
  for (const m of text.matchAll(/\]\(\s*(<[^>]*>|[^()\s]+)(?:\s+"[^"]*")?\s*\)/g)) {
    const raw = m[1] ?? '';
    const target = raw.startsWith('<') ? raw.slice(1, -1) : raw;
    const line = text.slice(0, m.index).split('\n').length;
    found.push({ target, line });
  }
  return found;
}

/** True for a link that leaves the repository (a scheme, or protocol-relative). */
function external(target: string): boolean {
  return /^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//');
}

/**
 * Checks the relative links of `files` (paths relative to `root`), reading
 * them and the files they point at through `read` (undefined: no such file).
 */
export function brokenLinks(files: readonly string[], read: (path: string) => string | undefined): BrokenLink[] {
  const ids = new Map<string, Set<string>>();
  const idsOf = (path: string, text: string): Set<string> => {
    let set = ids.get(path);
    if (set === undefined) {
      set = headingIds(text);
      ids.set(path, set);
    }
    return set;
  };
  const broken: BrokenLink[] = [];
  for (const file of files) {
    const text = read(file);
    if (text === undefined) throw new Error(`${file} does not exist`);
    for (const { target, line } of linkTargets(text)) {
      if (external(target)) continue;
      const hash = target.indexOf('#');
      const pathPart = hash < 0 ? target : target.slice(0, hash);
      const anchor = hash < 0 ? '' : decodeURIComponent(target.slice(hash + 1));
      const path = pathPart === '' ? file : normalize(join(dirname(file), decodeURIComponent(pathPart)));
      if (path.startsWith('..')) {
        broken.push({ file, line, target, reason: 'points outside the repository' });
        continue;
      }
      const targetText = read(path);
      if (targetText === undefined) {
        broken.push({ file, line, target, reason: `no file ${path}` });
        continue;
      }
      if (anchor === '') continue;
      if (!path.endsWith('.md')) {
        broken.push({ file, line, target, reason: `an anchor into ${path}, which has no headings` });
      } else if (!idsOf(path, targetText).has(anchor)) {
        broken.push({ file, line, target, reason: `no heading #${anchor} in ${path}` });
      }
    }
  }
  return broken;
}

/** README.md and every docs/*.md of the repository at `root`, relative to it. */
export function projectMarkdown(root: string): string[] {
  const docs = join(root, 'docs');
  const inDocs = existsSync(docs) ? readdirSync(docs).filter((f) => f.endsWith('.md')) : [];
  return ['README.md', ...inDocs.sort().map((f) => relative(root, join(docs, f)))];
}

/** Reads a repository file for brokenLinks: its text, '' for a directory or other file that exists, undefined for none. */
export function repositoryReader(root: string): (path: string) => string | undefined {
  return (path) => {
    const full = join(root, path);
    if (!existsSync(full)) return undefined;
    return path.endsWith('.md') ? readFileSync(full, 'utf8') : '';
  };
}
