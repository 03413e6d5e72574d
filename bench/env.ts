/** A benchmark's settings from the environment, refused by name where they are not what it takes. */

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
