/**
 * Which pairs of peers may exchange signalling messages: only those a live
 * session links. A pair is counted once per session that links it, and is
 * unlinked when the last of them ends (or a peer leaves).
 */
export class Links {
  private readonly pairs = new Map<string, Map<string, number>>();

  link(a: string, b: string): void {
    if (a === b) throw new Error('a peer cannot be linked to itself');
    this.side(a).set(b, (this.side(a).get(b) ?? 0) + 1);
    this.side(b).set(a, (this.side(b).get(a) ?? 0) + 1);
  }

  /** Takes back one `link(a, b)`; the pair is unlinked once none is left. */
  unlink(a: string, b: string): void {
    for (const [x, y] of [
      [a, b],
      [b, a],
    ] as const) {
      const side = this.pairs.get(x);
      const n = side?.get(y);
      if (side === undefined || n === undefined) continue;
      if (n > 1) side.set(y, n - 1);
      else side.delete(y);
      if (side.size === 0) this.pairs.delete(x);
    }
  }

  linked(a: string, b: string): boolean {
    return this.pairs.get(a)?.has(b) ?? false;
  }

  /** Forgets every link of a peer (it left). */
  drop(a: string): void {
    for (const b of this.pairs.get(a)?.keys() ?? []) this.pairs.get(b)?.delete(a);
    this.pairs.delete(a);
  }

  private side(a: string): Map<string, number> {
    let s = this.pairs.get(a);
    if (s === undefined) {
      s = new Map();
      this.pairs.set(a, s);
    }
    return s;
  }
}
