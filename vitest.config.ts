import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'bench/**/*.test.ts',
      'shared/**/*.test.ts',
      'signal-server/**/*.test.ts',
      'testing/**/*.test.ts',
      'tools/**/*.test.ts',
      'web/**/*.test.ts',
    ],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: files in parallel would only fight over them.
    fileParallelism: false,
  },
});
