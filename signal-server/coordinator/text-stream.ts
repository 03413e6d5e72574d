/**
 * Turns the growing list of generated token ids into text pieces that are safe
 * to stream: a piece that ends inside a multi-byte character, or that could be
 * the start of a stop sequence, is held back until it is known; the first stop
 * sequence ends the text (and is not part of it), as OpenAI's `stop` does.
 */
export class TextStream {
  private shown = '';
  private cut: string | null = null;

  constructor(
    private readonly decode: (ids: readonly number[]) => string,
    private readonly stops: readonly string[] = [],
  ) {}

  /** True once a stop sequence has appeared: generate no more. */
  get stopped(): boolean {
    return this.cut !== null;
  }

  /** The text so far (cut before the stop sequence once one appeared). */
  get text(): string {
    return this.cut ?? this.shown;
  }

  /** Takes every id generated so far; returns the new text that may be shown now (maybe ""). */
  push(ids: readonly number[]): string {
    if (this.cut !== null) return '';
    const text = this.decode(ids);
    // Decoding can in rare cases rewrite earlier characters; never take back what was shown.
    if (!text.startsWith(this.shown)) return '';
    let stopAt = -1;
    for (const s of this.stops) {
      const i = text.indexOf(s);
      if (i >= 0 && (stopAt < 0 || i < stopAt)) stopAt = i;
    }
    if (stopAt >= 0) {
      this.cut = text.slice(0, Math.max(stopAt, this.shown.length));
      return this.take(this.cut);
    }
    let safe = text.length;
    while (safe > this.shown.length && text[safe - 1] === '\uFFFD') safe--;
    // Hold back the longest ending that a stop sequence begins with.
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, safe - this.shown.length); k > 0; k--) {
        if (text.slice(safe - k, safe) === s.slice(0, k)) {
          safe -= k;
          break;
        }
      }
    }
    return this.take(text.slice(0, safe));
  }

  /** The generation ended: everything held back may be shown now. */
  finish(ids: readonly number[]): string {
    if (this.cut !== null) return '';
    const text = this.decode(ids);
    return text.startsWith(this.shown) ? this.take(text) : '';
  }

  private take(upTo: string): string {
    if (upTo.length <= this.shown.length) return '';
    const piece = upTo.slice(this.shown.length);
    this.shown = upTo;
    return piece;
  }
}
