import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['e2e/**/*.spec.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    fileParallelism: false,
    // The specs share the harness's modules (each spec file still runs as a module of its own): about 1 s of
    // imports a file saved, as in vitest.config.ts.
    isolate: false,
    globalSetup: ['e2e/global-setup.ts'],
    // WebAssembly on V8's baseline tier in every tab the specs open (tools/local-swarm.ts launchChromium): the
    // same results, without 2.3 s of optimizing compile a tab on this 2-core machine.
    env: { WEBSWARM_LIFTOFF_ONLY: '1' },
    // And in this process (the servers, their challenge runners, the reference runner): see vitest.config.ts.
    execArgv: ['--liftoff-only'],
  },
});
