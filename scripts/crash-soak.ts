// The larger crash run behind `npm run crash-soak [kills]`: the regular suite kills 4 times.
// Runs test/crash.test.ts's scenario many times against one database and reports.
import { execFileSync } from 'node:child_process';

const kills = Number(process.argv[2] ?? 40);
if (!Number.isInteger(kills) || kills < 1) {
  console.error('usage: npm run crash-soak [kills]   (a positive integer, default 40)');
  process.exit(2);
}
execFileSync('npx', ['vitest', 'run', 'test/crash.test.ts'], {
  stdio: 'inherit',
  env: { ...process.env, CRASH_KILLS: String(kills) },
});
