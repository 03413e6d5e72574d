/** Which pairs of peers may exchange signalling messages: only those the coordinator linked. */
export class Links {
  private readonly pairs = new Map<string, Set<string>>();

  link(a: string, b: string): void {
    if (a === b) throw new Error('a peer cannot be linked to itself');
    this.side(a).add(b);
    this.side(b).add(a);
  }

  linked(a: string, b: string): boolean {
    return this.pairs.get(a)?.has(b) ?? false;
  }

  /** Forgets every link of a peer (it left). */
  drop(a: string): void {
    for (const b of this.pairs.get(a) ?? []) this.pairs.get(b)?.delete(a);
    this.pairs.delete(a);
  }

  private side(a: string): Set<string> {
    let s = this.pairs.get(a);
    if (s === undefined) {
      s = new Set();
      this.pairs.set(a, s);
    }
    return s;
  }
}
