/**
 * What the coordinator's text stream costs a token as a generation grows:
 * the windowed stream (signal-server/coordinator/text-stream.ts) against the
 * same stream decoding every id at every token (windowed = false, as before),
 * side by side in one run, on austen-2m's tokenizer and the ids of its
 * sample text. Median over runs of the mean ms a token over the stream.
 *
 *   node --import tsx bench/text-stream.ts, or in npm run bench (BENCH_TEXT_STREAM=0 skips it)
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { Tokenizer } from '../shared/model/tokenizer.js';
import { TextStream } from '../signal-server/coordinator/text-stream.js';
import { median, printTable } from './table.js';

const LENGTHS = [256, 512, 2048] as const;
const STOPS = ['\n\nTHE END'];

/** Mean ms a token of streaming `ids` one token at a time. */
function streamMs(tokenizer: Tokenizer, ids: readonly number[], windowed: boolean): number {
  const s = new TextStream((x) => tokenizer.decode(x), STOPS, windowed);
  const t0 = performance.now();
  for (let n = 1; n <= ids.length; n++) s.push(ids.slice(0, n));
  return (performance.now() - t0) / ids.length;
}

export function benchTextStream(o: { repeats: number }): void {
  const tokenizer = Tokenizer.fromJson(
    'austen-2m',
    readFileSync('models/austen-2m/tokenizer.json', 'utf8'),
    readFileSync('models/austen-2m/tokenizer_config.json', 'utf8'),
  );
  const all = tokenizer.encode(readFileSync('models/austen-2m/samples.txt', 'utf8').repeat(8));
  const load0 = loadavg()[0] as number;
  const rows = LENGTHS.map((n) => {
    const ids = all.slice(0, n);
    const whole: number[] = [];
    const windowed: number[] = [];
    // A warm-up of each, then the two interleaved.
    streamMs(tokenizer, ids, false);
    streamMs(tokenizer, ids, true);
    for (let i = 0; i < o.repeats; i++) {
      whole.push(streamMs(tokenizer, ids, false));
      windowed.push(streamMs(tokenizer, ids, true));
    }
    const w = median(whole);
    const v = median(windowed);
    return [String(n), w.toFixed(4), v.toFixed(4), `${(w / v).toFixed(1)} ×`];
  });
  printTable(
    `the coordinator's text stream, austen-2m's tokenizer, its sample text: mean ms a token over a stream of n tokens, median of ${o.repeats} runs (load average ${load0.toFixed(1)}–${(loadavg()[0] as number).toFixed(1)})`,
    ['tokens', 'every id decoded', 'a window decoded', 'ratio'],
    rows,
  );
}

if (process.argv[1]?.endsWith('text-stream.ts')) benchTextStream({ repeats: 5 });
