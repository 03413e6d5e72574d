/**
 * A token's own text and UTF-8 bytes, as OpenAI's log-probabilities show each
 * token. A token of a byte-level BPE can hold part of a character: its bytes
 * are exact, and its text escapes the bytes that are not whole characters
 * (`\xe2\x80`) instead of showing U+FFFD, so that different tokens never
 * look the same.
 */

export interface TokenText {
  readonly token: string;
  readonly bytes: readonly number[];
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** GPT-2's bytes_to_unicode, reversed: the printable character a byte-level BPE writes for each byte. */
function byteLevelDecoder(): Map<string, number> {
  const bytes: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const chars = [...bytes];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(256 + n++);
    }
  }
  return new Map(bytes.map((b, i) => [String.fromCodePoint(chars[i] as number), b]));
}

/** The bytes' text where they are whole UTF-8 characters; otherwise every byte outside ASCII as \xNN. */
export function textOfBytes(bytes: readonly number[]): string {
  try {
    return strictUtf8.decode(Uint8Array.from(bytes));
  } catch {
    return bytes.map((b) => (b < 0x80 ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
  }
}

/** How many bytes the character that `lead` begins has in UTF-8 (0: no character begins with it). */
function charLength(lead: number): number {
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;
  return 0;
}

/** Whether `bytes` are one character's first bytes (or all of them), by UTF-8's rules (no surrogates, no overlongs). */
export function beginsCharacter(bytes: readonly number[]): boolean {
  const lead = bytes[0];
  if (lead === undefined || bytes.length > charLength(lead)) return false;
  for (const [i, b] of bytes.entries()) {
    if (i === 0) continue;
    // The second byte's range depends on the lead; the others are 0x80..0xbf.
    const lo = i === 1 && lead === 0xe0 ? 0xa0 : i === 1 && lead === 0xf0 ? 0x90 : 0x80;
    const hi = i === 1 && lead === 0xed ? 0x9f : i === 1 && lead === 0xf4 ? 0x8f : 0xbf;
    if (b < lo || b > hi) return false;
  }
  return true;
}

/** How many of the last bytes begin a character they do not finish (0: the bytes end on a whole character or an invalid one). */
export function unfinishedBytes(bytes: readonly number[]): number {
  for (let k = Math.min(3, bytes.length); k > 0; k--) {
    const tail = bytes.slice(bytes.length - k);
    if (beginsCharacter(tail) && k < charLength(tail[0] as number)) return k;
  }
  return 0;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function usesByteLevel(decoder: unknown): boolean {
  if (!isObject(decoder)) return false;
  if (decoder.type === 'ByteLevel') return true;
  return decoder.type === 'Sequence' && Array.isArray(decoder.decoders) && decoder.decoders.some(usesByteLevel);
}

/** Every token's text and bytes, read from a Hugging Face tokenizer.json (what `decode` alone cannot give). */
export class TokenTexts {
  private readonly cache = new Map<number, TokenText>();

  private constructor(
    private readonly pieces: ReadonlyMap<number, string>,
    private readonly added: ReadonlyMap<number, string>,
    private readonly byteLevel: Map<string, number> | null,
    private readonly decode: (ids: readonly number[]) => string,
  ) {}

  /**
   * From tokenizer.json's text; `decode` (the tokenizer's) is the fallback for ids the vocabulary
   * does not list. Throws when the text is not a tokenizer.json with a vocabulary.
   */
  static fromTokenizerJson(json: string, decode: (ids: readonly number[]) => string): TokenTexts {
    const raw: unknown = JSON.parse(json);
    if (!isObject(raw) || !isObject(raw.model)) throw new Error('tokenizer.json has no "model" section');
    const vocab = raw.model.vocab;
    const pieces = new Map<number, string>();
    // BPE and WordPiece: {piece: id}; Unigram: [[piece, score], …] with the id as the index.
    if (isObject(vocab)) {
      for (const [piece, id] of Object.entries(vocab)) if (typeof id === 'number') pieces.set(id, piece);
    } else if (Array.isArray(vocab)) {
      for (const [id, entry] of vocab.entries()) if (Array.isArray(entry) && typeof entry[0] === 'string') pieces.set(id, entry[0]);
    } else throw new Error('tokenizer.json has no vocabulary (model.vocab)');
    const added = new Map<number, string>();
    if (Array.isArray(raw.added_tokens))
      for (const t of raw.added_tokens)
        if (isObject(t) && typeof t.id === 'number' && typeof t.content === 'string') added.set(t.id, t.content);
    return new TokenTexts(pieces, added, usesByteLevel(raw.decoder) ? byteLevelDecoder() : null, decode);
  }

  /** The text and bytes of one token id. */
  of(id: number): TokenText {
    let t = this.cache.get(id);
    if (t === undefined) {
      const bytes = this.bytesOf(id);
      t = { token: textOfBytes(bytes), bytes };
      // Bounded by the vocabulary: ids come from the model's logits.
      this.cache.set(id, t);
    }
    return t;
  }

  /**
   * The bytes at the end of `ids` that begin a character they do not finish (a prompt of token ids may end inside
   * one), and how many of the last ids hold them: none when the ids end on a whole character.
   */
  unfinished(ids: readonly number[]): { readonly ids: number; readonly bytes: readonly number[] } {
    const bytes: number[] = [];
    const lengths: number[] = [];
    // The last three bytes are enough: a character has at most four.
    for (let i = ids.length - 1; i >= 0 && bytes.length < 3; i--) {
      const own = this.of(ids[i] as number).bytes;
      bytes.unshift(...own);
      lengths.push(own.length);
    }
    const n = unfinishedBytes(bytes);
    let count = 0;
    for (let held = 0; held < n; count++) held += lengths[count] as number;
    return { ids: count, bytes: bytes.slice(bytes.length - n) };
  }

  private bytesOf(id: number): number[] {
    const special = this.added.get(id);
    if (special !== undefined) return [...utf8.encode(special)];
    const piece = this.pieces.get(id);
    if (piece === undefined) return [...utf8.encode(this.decode([id]))];
    if (this.byteLevel !== null) {
      const out: number[] = [];
      for (const ch of piece) {
        const b = this.byteLevel.get(ch);
        if (b === undefined) return [...utf8.encode(this.decode([id]))];
        out.push(b);
      }
      return out;
    }
    // SentencePiece conventions: byte-fallback pieces <0xNN>, and ▁ for a space.
    const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
    if (byte !== null) return [Number.parseInt(byte[1] as string, 16)];
    return [...utf8.encode(piece.replaceAll('\u2581', ' '))];
  }
}
