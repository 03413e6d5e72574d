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
    // Most files wait on sockets and timers more than they compute: three at once on 2 cores took 5.7 minutes
    // where one at a time took 9 (3.7 with the baseline tier below).
    fileParallelism: true,
    maxWorkers: 3,
    // The files of one worker share the modules they import (each test file still runs as a module of its own):
    // onnxruntime-web, socket.io and the server were imported again for each of about 190 files, 153 s of the
    // workers' time. Measured here: 410 s isolated, 271 s not, the same 1 242 tests passing. Tests restore what they
    // change (timers, listeners); none mocks a module or stubs a global.
    isolate: false,
    // WebAssembly (onnxruntime-web in the reference runner and the Node volunteers) on V8's baseline tier only:
    // the same results, without the optimizing tier's compile of the 14 MB module in every file (measured: the
    // reference runner's first 17 steps in 1.6 s instead of 3.7, a third of the CPU).
    execArgv: ['--liftoff-only'],
  },
});
