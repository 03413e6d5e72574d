/** A benchmark's settings from the environment, refused by name where they are not what it takes. */

import type { GraphForm } from '../shared/model/stage-graph-fused.js';
import { GRAPH_SETTINGS, graphFor } from '../signal-server/main.js';

/** The comma-separated values of `name`, each one of `allowed`; `fallback` where it is unset or empty. */
export function envChoices<T extends string>(name: string, allowed: readonly T[], fallback: readonly T[]): T[] {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return [...fallback];
  return raw.split(',').map((v) => {
    const choice = allowed.find((a) => a === v.trim());
    if (choice === undefined) throw new RangeError(`${name}: ${JSON.stringify(v)} is not one of ${allowed.join(', ')}`);
    return choice;
  });
}

/**
 * The stage graphs' form a swarm bench runs (BENCH_GRAPH: auto, plain or fused), the same choice as `npm start`'s
 * GRAPH and resolved the same way: auto, the default, is fused where the model has that form, else plain.
 */
export function benchGraph(modelDir: string, given?: GraphForm): GraphForm {
  if (given !== undefined) return given;
  const choices = envChoices('BENCH_GRAPH', GRAPH_SETTINGS, ['auto']);
  const [setting] = choices;
  if (setting === undefined || choices.length !== 1) throw new RangeError(`BENCH_GRAPH: one of ${GRAPH_SETTINGS.join(', ')}, not a list`);
  return graphFor(setting, modelDir, () => {});
}
