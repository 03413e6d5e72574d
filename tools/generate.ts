/**
 * The reference runner: every stage of a model in sequence in this process, with
 * each stage's KV cache. The oracle of the swarm's end-to-end tests.
 *
 * npm run generate -- --prompt "TEXT" --max-tokens N [--model ID] [--stages N]
 *   [--weights f32|f16|q8|q4] [--temperature T --top-k K --top-p P --seed S]
 *   [--frequency-penalty F --presence-penalty P --logit-bias ID=B,ID=B] [--json] [--timing]
 */
import { GREEDY, type SamplingParams, samplingError } from '../shared/model/sampling.js';
import { generateText } from '../signal-server/reference/reference-runner.js';
import { cliArgs, DEFAULT_MODEL, modelDir, partitionFrom, runCli, weightsFrom } from './cli-args.js';

const USAGE =
  'usage: npm run generate -- --prompt "TEXT" --max-tokens N [--model ID] [--stages N | --layers 0-2,2-4]\n' +
  '         [--weights f32|f16|q8|q4] [--temperature T --top-k K --top-p P --seed S]\n' +
  '         [--frequency-penalty F --presence-penalty P --logit-bias ID=B,ID=B] [--json] [--timing]';

function num(name: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) {
    process.stderr.write(`--${name} must be a number, got "${String(v)}"\n${USAGE}\n`);
    process.exit(2);
  }
  return n;
}

/** --logit-bias 50=-100,7=2.5: token id = bias pairs, as the API's logit_bias. */
function biasOf(v: unknown): [number, number][] {
  if (v === undefined) return [];
  return String(v)
    .split(',')
    .map((pair) => {
      const [id, bias] = pair.split('=');
      const n = [Number(id), Number(bias)] as [number, number];
      if (id === undefined || bias === undefined || id.trim() === '' || bias.trim() === '' || !n.every(Number.isFinite)) {
        process.stderr.write(`--logit-bias takes ID=BIAS pairs separated by commas, got "${pair}"\n${USAGE}\n`);
        process.exit(2);
      }
      return n;
    });
}

runCli(async () => {
  const v = cliArgs(
    {
      prompt: { type: 'string' },
      'max-tokens': { type: 'string', default: '32' },
      model: { type: 'string', default: DEFAULT_MODEL },
      stages: { type: 'string' },
      layers: { type: 'string' },
      weights: { type: 'string' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      seed: { type: 'string' },
      'frequency-penalty': { type: 'string' },
      'presence-penalty': { type: 'string' },
      'logit-bias': { type: 'string' },
      json: { type: 'boolean', default: false },
      timing: { type: 'boolean', default: false },
    },
    USAGE,
  );
  if (typeof v.prompt !== 'string' || v.prompt.length === 0) {
    process.stderr.write(`--prompt is required\n${USAGE}\n`);
    process.exit(2);
  }
  const sampling: SamplingParams = {
    temperature: num('temperature', v.temperature, GREEDY.temperature),
    topK: num('top-k', v['top-k'], GREEDY.topK),
    topP: num('top-p', v['top-p'], GREEDY.topP),
    seed: num('seed', v.seed, GREEDY.seed),
    frequencyPenalty: num('frequency-penalty', v['frequency-penalty'], 0),
    presencePenalty: num('presence-penalty', v['presence-penalty'], 0),
    logitBias: biasOf(v['logit-bias']),
  };
  const problem = samplingError(sampling);
  const maxTokens = num('max-tokens', v['max-tokens'], 32);
  if (problem !== null || !Number.isInteger(maxTokens) || maxTokens < 1) {
    process.stderr.write(`${problem?.message ?? '--max-tokens must be a positive integer'}\n${USAGE}\n`);
    process.exit(2);
  }
  const r = await generateText({
    modelDir: modelDir(v.model as string),
    partition: partitionFrom({ stages: v.stages as string | undefined, layers: v.layers as string | undefined }),
    weights: weightsFrom(v.weights as string | undefined),
    prompt: v.prompt,
    maxTokens,
    sampling,
    onText: v.json ? undefined : (piece) => process.stdout.write(piece),
  });
  if (v.json) {
    process.stdout.write(
      `${JSON.stringify({ prompt_tokens: r.promptTokens, tokens: r.tokens, text: r.text, finish_reason: r.finishReason })}\n`,
    );
  } else {
    process.stdout.write('\n');
  }
  if (v.timing) {
    const decode = r.stepMs.slice(1).sort((a, b) => a - b);
    const median = decode.length > 0 ? (decode[Math.floor(decode.length / 2)] as number) : Number.NaN;
    process.stderr.write(
      `prompt ${r.stepMs[0]?.toFixed(2)} ms; decode median ${median.toFixed(3)} ms/token over ${decode.length} tokens\n`,
    );
  }
});
