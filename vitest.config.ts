import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Type tests (expectTypeOf, @ts-expect-error) live beside the others and are checked
    // by `tsc` in `npm test` before vitest runs.
    testTimeout: 20_000,
  },
});
