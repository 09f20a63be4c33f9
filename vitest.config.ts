import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Type tests (expectTypeOf, @ts-expect-error) live beside the others and are checked
    // by `tsc` in `npm test` before vitest runs.
    testTimeout: 20_000,
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/**/*.test.ts'], exclude: ['test/nats/**'] } },
      // The NATS suites share one real nats-server started by the global setup; only they pay for it.
      { extends: true, test: { name: 'nats', include: ['test/nats/**/*.test.ts'], globalSetup: ['test/nats/global-setup.ts'] } },
    ],
  },
});
