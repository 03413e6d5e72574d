/** Prints one plain closing line for CI over the unit and e2e runs: "tests: N passed, N failed". */
import { existsSync, readFileSync } from 'node:fs';

let passed = 0;
let failed = 0;
for (const file of ['.cache/test-results/unit.json', '.cache/test-results/e2e.json']) {
  if (!existsSync(file)) {
    process.stderr.write(`missing ${file}: a test run did not finish\n`);
    process.exit(1);
  }
  const r = JSON.parse(readFileSync(file, 'utf8')) as { numPassedTests: number; numFailedTests: number };
  passed += r.numPassedTests;
  failed += r.numFailedTests;
}
process.stdout.write(`tests: ${passed} passed, ${failed} failed\n`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
