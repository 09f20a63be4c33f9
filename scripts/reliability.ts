// Figures for docs/reliability.md (`npm run reliability [disk|memory] [--runs N]`).
// A measurement script, not a test: each figure is the median of RUNS runs (default 3),
// each run in a fresh child process so heap and file figures do not carry over.
//
//   disk    Disk per refused send under a flood, on a file log: an agent with no rights
//           floods N asks (default 200,000) at full speed, then refused replies with a
//           100 KiB inReplyTo; the figure is the file's bytes after close() / refused sends.
//   memory  Rows kept and memory after 10⁶ asks (2·10⁶ records) on the default `:memory:` log
//           (maxRows retention at its default, 1,000,000 records).
//   wal     Max-rate asks on a file log for DURATION_S seconds (default 60): 256 closed-loop askers; the
//           largest `-wal` file seen (sampled every 50 ms), asks/s, backpressure events, and the
//           bytes left beside the database file after close(). WORKER=false: `worker: false`.
//   soak    The same load for DURATION_S seconds (default 300) on a file log: RSS and the main
//           thread's JS heap each 30 s after a forced GC, and the same WAL and close figures.
//
// SWITCHBOARD_SRC=/path/to/other/checkout/src runs the same against another version: that is
// how the "before" figures were taken (the commit before refusal summaries, a70cc61):
//   mkdir /tmp/before && git archive a70cc61 src | tar -x -C /tmp/before
//   ln -s "$PWD/node_modules" /tmp/before/node_modules && cp package.json /tmp/before/
//   SWITCHBOARD_SRC=/tmp/before/src npm run reliability disk
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { askersUntilStopped } from '../bench/closed-loop.js';

const src = process.env.SWITCHBOARD_SRC;
const mod = (await import(src === undefined ? '../src/index.js' : pathToFileURL(resolve(src, 'index.ts')).href)) as typeof import('../src/index.js');
const { Orchestrator } = mod;

type Figures = Record<string, number>;

/** One flood of refused sends (and one of refused replies) against a file log; bytes per refusal. */
async function disk(): Promise<Figures> {
  const sends = Number(process.env.SENDS ?? 200_000);
  const replies = Number(process.env.REPLIES ?? 20_000);
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-reliability-'));
  try {
    const figures: Figures = {};
    for (const [what, n] of [
      ['send', sends],
      ['reply', replies],
    ] as const) {
      const path = join(dir, `${what}.db`);
      const bus = new Orchestrator({ policies: [], audit: { path } });
      bus.register('bob', { handlers: { '*': () => 'ok' } });
      const mallory = bus.register('mallory');
      const inReplyTo = 'm'.repeat(100 * 1024);
      const t0 = performance.now();
      let settled = 0;
      // Batches of 1,000 awaited in turn: the flood runs as fast as the bus refuses.
      for (let i = 0; i < n; i += 1_000) {
        const batch: Promise<unknown>[] = [];
        for (let j = i; j < Math.min(n, i + 1_000); j++) batch.push(what === 'send' ? mallory.ask('bob', 'steal', { j }) : mallory.reply(`${inReplyTo}${j}`, { j }));
        for (const r of await Promise.allSettled(batch)) if (r.status === 'rejected') settled++;
      }
      const ms = performance.now() - t0;
      const rows = bus.auditHead().seq;
      await bus.close();
      const bytes = statSync(path).size;
      if (settled !== n) throw new Error(`expected ${n} refusals, got ${settled}`);
      figures[`${what}: refusals`] = n;
      figures[`${what}: seconds`] = ms / 1000;
      figures[`${what}: rows`] = rows;
      figures[`${what}: file bytes`] = bytes;
      figures[`${what}: bytes per refusal`] = bytes / n;
    }
    return figures;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** 10⁶ asks through the default `:memory:` log; rows kept and memory after a GC. */
async function memory(): Promise<Figures> {
  const asks = Number(process.env.ASKS ?? 1_000_000);
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with --expose-gc (npm run reliability does)');
  const bus = new Orchestrator({ policies: [{ from: 'a', to: 'b', allow: ['ask'] }], limits: { rate: false } });
  bus.register('b', { handlers: { ping: (p) => p } });
  const a = bus.register('a');
  gc();
  const before = process.memoryUsage();
  const t0 = performance.now();
  for (let i = 0; i < asks; i += 1_000) {
    const batch: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(asks, i + 1_000); j++) batch.push(a.ask('b', 'ping', j));
    await Promise.all(batch);
  }
  const ms = performance.now() - t0;
  const head = bus.auditHead();
  const verified = bus.verifyAuditLog();
  gc();
  const after = process.memoryUsage();
  await bus.close();
  return {
    asks,
    seconds: ms / 1000,
    'records written': head.seq,
    'records kept': verified.checked,
    'verify ok': verified.ok ? 1 : 0,
    'heap MB after': after.heapUsed / 2 ** 20,
    'heap MB growth': (after.heapUsed - before.heapUsed) / 2 ** 20,
    'rss MB after': after.rss / 2 ** 20,
    'rss MB growth': (after.rss - before.rss) / 2 ** 20,
  };
}

/** Closed-loop max-rate asks on a file log; the WAL's largest size, RSS over time, and what close() leaves. */
async function sustained(defaultSeconds: number, rssEvery: number | undefined): Promise<Figures> {
  const seconds = Number(process.env.DURATION_S ?? defaultSeconds);
  const rssEverySeconds = Math.min(seconds, rssEvery ?? seconds);
  const worker = process.env.WORKER !== 'false';
  const gc = (globalThis as { gc?: () => void }).gc;
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-reliability-'));
  try {
    const path = join(dir, 'audit.db');
    const bus = new Orchestrator({ policies: [{ from: '*', to: '*', allow: ['ask'] }], limits: { rate: false }, audit: { path, worker } });
    let backpressure = 0;
    bus.events.on('audit:backpressure', () => backpressure++);
    bus.register('echo', { handlers: { ping: (p) => p } });
    const askers = askersUntilStopped(bus);
    const wal = () => statSync(`${path}-wal`, { throwIfNoEntry: false })?.size ?? 0;
    let maxWal = 0;
    const sampler = setInterval(() => (maxWal = Math.max(maxWal, wal())), 50);
    const figures: Figures = {};
    const t0 = performance.now();
    for (let s = rssEverySeconds; s <= seconds; s += rssEverySeconds) {
      await new Promise((r) => setTimeout(r, t0 + s * 1000 - performance.now()));
      if (rssEverySeconds < seconds) {
        gc?.();
        const m = process.memoryUsage();
        figures[`rss MB at ${s} s`] = m.rss / 2 ** 20;
        figures[`heap MB at ${s} s`] = m.heapUsed / 2 ** 20;
      }
    }
    await askers.stop();
    const ms = performance.now() - t0;
    clearInterval(sampler);
    figures['asks/s'] = askers.asks() / (ms / 1000);
    figures['max wal MiB'] = maxWal / 2 ** 20;
    figures['backpressure events'] = backpressure;
    await bus.close();
    figures['db MiB'] = statSync(path).size / 2 ** 20;
    figures['bytes beside the file after close'] = readdirSync(dir)
      .filter((f) => f !== 'audit.db')
      .reduce((sum, f) => sum + statSync(join(dir, f)).size, 0);
    return figures;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const child = process.env.RELIABILITY_CHILD;
if (child !== undefined) {
  const figures = child === 'disk' ? await disk() : child === 'memory' ? await memory() : child === 'wal' ? await sustained(60, undefined) : await sustained(300, 30);
  process.stdout.write(JSON.stringify(figures));
} else {
  const args = process.argv.slice(2);
  const runsAt = args.indexOf('--runs');
  const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 3;
  const which = args.filter((a, i) => !a.startsWith('--') && args[i - 1] !== '--runs');
  const kinds = which.length > 0 ? which : ['disk', 'memory'];
  console.log(`source: ${src ?? 'this checkout'}; node ${process.version}; ${runs} runs each; load average ${(await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  for (const kind of kinds) {
    if (!['disk', 'memory', 'wal', 'soak'].includes(kind)) throw new Error(`unknown measurement "${kind}" (disk, memory, wal or soak)`);
    const all: Figures[] = [];
    for (let i = 0; i < runs; i++) {
      const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', fileURLToPath(import.meta.url)], {
        env: { ...process.env, RELIABILITY_CHILD: kind },
        encoding: 'utf8',
        maxBuffer: 1 << 20,
      });
      all.push(JSON.parse(out) as Figures);
    }
    console.log(`\n${kind} (median of ${runs}; min–max)`);
    for (const key of Object.keys(all[0]!)) {
      const values = all.map((f) => f[key]!).sort((x, y) => x - y);
      const median = values[values.length >> 1]!;
      const f = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 2 : 1));
      console.log(`  ${key}: ${f(median)}  (${f(values[0]!)}–${f(values.at(-1)!)})`);
    }
  }
}
