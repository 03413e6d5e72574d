// The name an operator likely meant: for a mistyped flag or environment variable.

/** Edits (insertions, deletions, substitutions, two neighbours swapped) that make `a` into `b`. */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  const at = (i: number, j: number) => (d[i] as number[])[j] as number;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, at(i - 2, j - 2) + 1);
      (d[i] as number[])[j] = best;
    }
  return at(a.length, b.length);
}

/**
 * A parseArgs error's message, with the flag meant where an unknown one is one or two edits from a known one
 * ("Unknown option '--prot': did you mean --port?"), else where the flags are listed (`listedIn`); any other error's
 * message as it is.
 */
export function unknownOptionHint(e: unknown, flags: readonly string[], listedIn?: string): string {
  const message = e instanceof Error ? e.message : String(e);
  if ((e as NodeJS.ErrnoException).code !== 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return message;
  const given = /'--?([^'=]+)/.exec(message)?.[1];
  if (given === undefined) return message;
  const near = flags
    .map((f) => ({ f, d: editDistance(given, f) }))
    .filter((x) => x.d <= (x.f.length <= 5 ? 1 : 2))
    .sort((a, b) => a.d - b.d)[0];
  if (near !== undefined) return `${message}: did you mean --${near.f}?`;
  return listedIn === undefined ? message : `${message} (every flag: ${listedIn})`;
}
