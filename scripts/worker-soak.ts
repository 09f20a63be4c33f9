// Where the RSS of a file log with the audit worker goes over a soak: the process's RSS, the
// main thread's heap, each worker thread's V8 heap (its own getHeapStatistics()), the -wal
// and -shm files, sampled every EVERY_S seconds (default 15) for DURATION_S (default 150)
// under 256 closed-loop askers. Measurement only (docs/reliability.md, "RSS over a soak"):
//   node --expose-gc --import tsx scripts/worker-soak.ts           (WORKER=false: inline log)
//   MALLOC_ARENA_MAX=2 node --expose-gc --import tsx scripts/worker-soak.ts
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { askersUntilStopped } from '../bench/closed-loop.js';

// Every Worker the bus starts (the audit worker, the checkpoint thread) is kept here to be asked for its heap.
const require = createRequire(import.meta.url);
const threads = require('node:worker_threads') as typeof import('node:worker_threads');
const workers: import('node:worker_threads').Worker[] = [];
const Original = threads.Worker;
threads.Worker = class extends Original {
  constructor(...args: ConstructorParameters<typeof Original>) {
    super(...args);
    workers.push(this);
    this.on('exit', () => workers.splice(workers.indexOf(this), 1));
  }
} as typeof Original;
syncBuiltinESMExports();
const { Orchestrator } = await import('../src/index.js');

const seconds = Number(process.env.DURATION_S ?? 150);
const every = Number(process.env.EVERY_S ?? 15);
const worker = process.env.WORKER !== 'false';
const gc = (globalThis as { gc?: () => void }).gc;
const dir = mkdtempSync(join(tmpdir(), 'switchboard-soak-'));
const path = join(dir, 'audit.db');
const size = (f: string) => statSync(f, { throwIfNoEntry: false })?.size ?? 0;
const MB = 2 ** 20;
const rollup = () => Object.fromEntries([...readFileSync('/proc/self/smaps_rollup', 'utf8').matchAll(/^(\w+):\s+(\d+) kB/gm)].map((m) => [m[1], Number(m[2]) / 1024]));

const bus = new Orchestrator({ policies: [{ from: '*', to: '*', allow: ['ask'] }], limits: { rate: false }, audit: { path, worker } });
bus.register('echo', { handlers: { ping: (p) => p } });
const askers = askersUntilStopped(bus);
const t0 = performance.now();
console.log('s\tasks\trssMB\tanonMB\tmainHeapMB\tmainExtMB\tthreads(used/total/malloced MB)\twalMB\tshmMB');
for (let s = every; s <= seconds; s += every) {
  await new Promise((r) => setTimeout(r, t0 + s * 1000 - performance.now()));
  gc?.();
  const m = process.memoryUsage();
  const heaps = await Promise.all(workers.map((w) => w.getHeapStatistics().catch(() => undefined)));
  const r = rollup();
  const t = heaps.map((h) => (h === undefined ? '-' : `${(h.used_heap_size / MB).toFixed(1)}/${(h.total_heap_size / MB).toFixed(1)}/${(h.malloced_memory / MB).toFixed(1)}`)).join(' ');
  console.log(`${s}\t${askers.asks()}\t${(m.rss / MB).toFixed(0)}\t${r.Anonymous?.toFixed(0)}\t${(m.heapUsed / MB).toFixed(1)}\t${(m.external / MB).toFixed(1)}\t${t}\t${(size(`${path}-wal`) / MB).toFixed(1)}\t${(size(`${path}-shm`) / MB).toFixed(2)}`);
}
await askers.stop();
console.log(`asks/s ${(askers.asks() / ((performance.now() - t0) / 1000)).toFixed(0)}`);
await bus.close();
rmSync(dir, { recursive: true, force: true });
