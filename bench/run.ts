// `npm run bench`: the performance figures of docs/performance.md, measured side by side in
// one process against a hand-rolled mitt request/reply (the floor a user could write), so a
// noisy shared machine moves both alike. Prints a table and writes bench/results.json.
//
//   npm run bench                 the full suite (a few minutes on 2 cores)
//   npm run bench -- --quick      smaller counts, for a smoke run
//   npm run bench -- --only=throughput,latency
//   npm run bench -- --quick --only=telemetry   asks/s with no telemetry vs an OpenTelemetry SDK
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setImmediate as tick } from 'node:timers/promises';
import { Orchestrator, SqliteAuditLog, type AttemptRecord, type OrchestratorOptions } from '../src/index.js';
import { held, restoreMs } from './approvals.js';
import { costModel } from './cost-model.js';
import { mittRequestReply } from './mitt-baseline.js';
import { telemetryModes } from './telemetry.js';

const args = new Set(process.argv.slice(2));
const quick = args.has('--quick');
const only = [...args].find((a) => a.startsWith('--only='))?.slice(7).split(',');
const wants = (name: string) => only === undefined || only.includes(name);

const dir = mkdtempSync(join(tmpdir(), 'switchboard-bench-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

/** About 120 bytes of JSON, like a small task description. */
const PAYLOAD = { task: 'summarize', url: 'https://example.com/reports/q3.pdf', words: 120, tags: ['finance', 'quarterly'] };

// memory-worker: `:memory:` written from a worker thread (`audit: { path: ':memory:', worker: true }`),
// beside the default (SQLite on the bus's thread), so the trade-off shows in the same run.
type Mode = 'mitt' | 'off' | 'memory' | 'memory-worker' | 'file';
const MODES: Mode[] = ['mitt', 'off', 'memory', 'file', 'memory-worker'];
const AUDIT: Record<Exclude<Mode, 'mitt'>, () => NonNullable<OrchestratorOptions['audit']>> = {
  off: () => false,
  memory: () => ({ path: ':memory:' }),
  'memory-worker': () => ({ path: ':memory:', worker: true }),
  file: () => ({ path: join(dir, `bench-${fileCounter++}.db`) }),
};
let fileCounter = 0;

/** A bus set up as the figures assume: wildcard allow, rate limit off, roomy mailboxes. */
function makeBus(mode: Exclude<Mode, 'mitt'>, extra: OrchestratorOptions = {}): Orchestrator {
  return new Orchestrator({
    audit: AUDIT[mode](),
    policies: [{ from: '*', to: '*', allow: ['ask', 'notify'] }],
    limits: { rate: false, maxQueue: 1_000_000 },
    ...extra,
  });
}

interface Asker {
  ask(payload: unknown): Promise<unknown>;
  close(): Promise<void>;
}

function asker(mode: Mode, timeoutMs?: number): Asker {
  if (mode === 'mitt') return mittRequestReply((payload) => payload);
  const bus = makeBus(mode);
  bus.register('worker', { concurrency: 1000, handlers: { echo: (payload) => payload } });
  const client = bus.register('client');
  const options = timeoutMs === undefined ? undefined : { timeoutMs };
  return { ask: (payload) => client.ask('worker', 'echo', payload, options), close: () => bus.close() };
}

/** Asks per second with `inFlight` outstanding at all times. */
async function throughput(mode: Mode, total: number, inFlight = 1000): Promise<number> {
  const a = asker(mode);
  // Warm up: let the JIT see the path before timing it.
  await closedLoop(a, Math.min(20_000, total / 5), inFlight);
  const started = performance.now();
  await closedLoop(a, total, inFlight);
  const seconds = (performance.now() - started) / 1000;
  await a.close();
  return total / seconds;
}

async function closedLoop(a: Asker, total: number, inFlight: number): Promise<void> {
  let sent = 0;
  const lane = async () => {
    while (sent < total) {
      sent++;
      await a.ask(PAYLOAD);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** One ask at a time: p50/p99 of the round trip, in ms. */
async function sequentialLatency(mode: Mode, count: number): Promise<{ p50: number; p99: number }> {
  const a = asker(mode);
  for (let i = 0; i < 2000; i++) await a.ask(PAYLOAD);
  const times = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    await a.ask(PAYLOAD);
    times[i] = performance.now() - t0;
  }
  await a.close();
  times.sort();
  return { p50: percentile(times, 50), p99: percentile(times, 99) };
}

/**
 * Open loop: asks are offered at `rate` per second whatever the replies do, and each one's
 * latency is measured from when it was due, so queueing delay counts (no coordinated omission).
 */
async function offeredLoad(mode: Mode, rate: number, seconds: number): Promise<{ p50: number; p99: number; p999: number; achieved: number }> {
  const a = asker(mode);
  for (let i = 0; i < 5000; i++) await a.ask(PAYLOAD);
  const total = Math.round(rate * seconds);
  const latencies = new Float64Array(total);
  let done = 0;
  let sent = 0;
  const start = performance.now();
  const all: Promise<void>[] = [];
  while (sent < total) {
    const now = performance.now();
    const due = Math.min(total, Math.floor(((now - start) / 1000) * rate));
    while (sent < due) {
      const index = sent++;
      const dueAt = start + (index / rate) * 1000;
      all.push(
        a.ask(PAYLOAD).then(() => {
          latencies[index] = performance.now() - dueAt;
          done++;
        }),
      );
    }
    await tick(); // let replies run, then offer what became due meanwhile
  }
  await Promise.all(all);
  const elapsed = (performance.now() - start) / 1000;
  await a.close();
  latencies.sort();
  return { p50: percentile(latencies, 50), p99: percentile(latencies, 99), p999: percentile(latencies, 99.9), achieved: done / elapsed };
}

/** Notifies per second, each fanned out to `fanOut` agents, 100 notifies in flight. */
async function notifyFanOut(mode: Exclude<Mode, 'mitt'>, fanOut: number, total: number): Promise<{ notifies: number; deliveries: number }> {
  const bus = makeBus(mode);
  let received = 0;
  for (let i = 0; i < fanOut; i++) bus.register(`listener-${i}`, { concurrency: 1000, handlers: { news: () => void received++ } });
  const source = bus.register('source');
  const run = async (count: number) => {
    let sent = 0;
    const lane = async () => {
      while (sent < count) {
        sent++;
        await source.notify('news', PAYLOAD);
      }
    };
    await Promise.all(Array.from({ length: 100 }, lane));
    await bus.onIdle();
  };
  await run(Math.max(100, total / 10));
  received = 0;
  const started = performance.now();
  await run(total);
  const seconds = (performance.now() - started) / 1000;
  await bus.close();
  if (received !== total * fanOut) throw new Error(`fan-out lost messages: ${received} of ${total * fanOut}`);
  return { notifies: total / seconds, deliveries: received / seconds };
}

function heapMb(): number {
  globalThis.gc?.();
  globalThis.gc?.();
  return process.memoryUsage().heapUsed / 1024 / 1024;
}

function activeTimers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

/** Heap growth after `count` asks (audit off, so only the bus itself is measured). */
async function heapGrowth(count: number): Promise<{ beforeMb: number; afterMb: number; growthMb: number }> {
  const a = asker('off');
  await closedLoop(a, 20_000, 1000);
  const beforeMb = heapMb();
  await closedLoop(a, count, 1000);
  const afterMb = heapMb();
  await a.close();
  return { beforeMb, afterMb, growthMb: afterMb - beforeMb };
}

/** Timers left behind after `count` asks that all time out (sent in waves), before close(). */
async function timersAfterTimeouts(count: number): Promise<{ timedOut: number; timersLeft: number; timersBefore: number }> {
  const bus = makeBus('off');
  bus.register('sleeper', { concurrency: Infinity, handlers: { wait: () => new Promise(() => undefined) } });
  const client = bus.register('client');
  const timersBefore = activeTimers();
  let timedOut = 0;
  const wave = 20_000;
  for (let sent = 0; sent < count; sent += wave) {
    const n = Math.min(wave, count - sent);
    const asks = Array.from({ length: n }, () =>
      client.ask('sleeper', 'wait', PAYLOAD, { timeoutMs: 1 }).catch((e: { code?: string }) => {
        if (e.code === 'TIMEOUT') timedOut++;
      }),
    );
    await Promise.all(asks);
  }
  const timersLeft = activeTimers() - timersBefore;
  await bus.close();
  return { timedOut, timersLeft, timersBefore };
}

/** getMessageLog({ agentId, limit: 50 }) on a file of `rows` rows, for the busiest agent. */
function logQuery(rows: number): { rows: number; buildSeconds: number; verifySeconds: number; bytesPerRecord: number; p50Ms: number; p99Ms: number; busiestShare: number } {
  const path = join(dir, 'query.db');
  const log = new SqliteAuditLog({ path });
  const agents = Array.from({ length: 20 }, (_, i) => `agent-${i}`);
  const started = performance.now();
  let busiest = 0;
  const batch: AttemptRecord[] = [];
  for (let i = 0; i < rows; i++) {
    // agent-0 takes part in about a third of all rows; the rest spread evenly.
    const from = i % 3 === 0 ? 'agent-0' : agents[1 + (i % 19)]!;
    const to = agents[1 + ((i * 7) % 19)]!;
    if (from === 'agent-0') busiest++;
    batch.push({
      kind: 'attempt',
      ts: 1_700_000_000_000 + i,
      messageId: `m-${i}`,
      from,
      to,
      type: 'ask',
      intent: 'work',
      payloadHash: 'a'.repeat(64),
      payloadBytes: 120,
      decision: 'allowed',
      policyVersion: 1,
      outcome: 'delivered',
      conversationId: `m-${i}`,
    });
    if (batch.length === 1000) log.append(batch.splice(0));
  }
  if (batch.length > 0) log.append(batch.splice(0));
  const buildSeconds = (performance.now() - started) / 1000;
  const v0 = performance.now();
  const verified = log.verify();
  const verifySeconds = (performance.now() - v0) / 1000;
  if (!verified.ok || verified.checked !== rows) throw new Error('verify failed on the bench log');
  log.close();
  const bytesPerRecord = statSync(path).size / rows;
  const bus = new Orchestrator({ audit: { path } });
  for (let i = 0; i < 50; i++) bus.getMessageLog({ agentId: 'agent-0', limit: 50 });
  const times = new Float64Array(500);
  for (let i = 0; i < times.length; i++) {
    const t0 = performance.now();
    const entries = bus.getMessageLog({ agentId: 'agent-0', limit: 50 });
    times[i] = performance.now() - t0;
    if (entries.length !== 50) throw new Error('query returned the wrong number of entries');
  }
  void bus.close();
  times.sort();
  return { rows, buildSeconds, verifySeconds, bytesPerRecord, p50Ms: percentile(times, 50), p99Ms: percentile(times, 99), busiestShare: busiest / rows };
}

// ---- Run and report -------------------------------------------------------------------------

const results: Record<string, unknown> = {
  when: new Date().toISOString(),
  node: process.version,
  commit: gitCommit(),
  cpus: `${(await import('node:os')).cpus().length} × ${(await import('node:os')).cpus()[0]?.model ?? '?'}`,
  quick,
  payloadBytes: Buffer.byteLength(JSON.stringify(PAYLOAD)),
};
const lines: string[] = [];
const say = (line: string) => {
  lines.push(line);
  console.log(line);
};
const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

say(`agent-switchboard bench — node ${process.version}, ${results.cpus as string}, commit ${results.commit as string}${quick ? ' (quick)' : ''}`);
say(`payload ${results.payloadBytes as number} B; policy *→* allow; rate limit off\n`);

if (wants('throughput')) {
  const total = quick ? 50_000 : 300_000;
  const rounds = quick ? 1 : 3;
  const best: Record<string, number[]> = {};
  // Interleave the modes round by round, so drift in machine load hits every mode alike.
  for (let r = 0; r < rounds; r++) {
    for (const mode of MODES) (best[mode] ??= []).push(await throughput(mode, mode === 'mitt' ? total * 3 : total));
  }
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  const mitt = median(best.mitt!);
  say('asks/s, 1000 in flight (median of rounds)   asks/s       ratio to mitt');
  const table: Record<string, { asksPerSecond: number; ratioToMitt: number; rounds: number[] }> = {};
  for (const mode of MODES) {
    const v = median(best[mode]!);
    table[mode] = { asksPerSecond: Math.round(v), ratioToMitt: v / mitt, rounds: best[mode]!.map(Math.round) };
    say(`  ${mode.padEnd(40)} ${fmt(v).padStart(10)}   ${(v / mitt).toFixed(3)}`);
  }
  results.throughput = table;
  say('');
}

if (wants('telemetry')) {
  // Three interleaved rounds even with --quick: the figure is a ratio of two close numbers.
  const total = quick ? 50_000 : 200_000;
  const rounds = 3;
  const modes = await telemetryModes();
  const runs: Record<string, number[]> = { mitt: [] };
  for (let r = 0; r < rounds; r++) {
    runs.mitt!.push(await throughput('mitt', total * 3));
    for (const m of modes) {
      const a = m.asker(makeBus);
      await closedLoop(a, Math.min(20_000, total / 5), 1000);
      const started = performance.now();
      await closedLoop(a, total, 1000);
      (runs[m.name] ??= []).push(total / ((performance.now() - started) / 1000));
      await a.close();
    }
  }
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  const mitt = median(runs.mitt!);
  say('telemetry: asks/s, 1000 in flight (median of 3)  asks/s    ratio to mitt   vs no telemetry');
  const table: Record<string, unknown> = {};
  const labels: Record<string, string> = Object.fromEntries([['mitt', 'mitt (baseline)'], ...modes.map((m) => [m.name, m.label])]);
  for (const name of Object.keys(runs)) {
    const v = median(runs[name]!);
    const base = name.endsWith('+sdk') ? median(runs[name.replace('+sdk', '')]!) : undefined;
    table[name] = { asksPerSecond: Math.round(v), ratioToMitt: v / mitt, ...(base !== undefined ? { ratioToNoTelemetry: v / base } : {}), rounds: runs[name]!.map(Math.round) };
    say(`  ${labels[name]!.padEnd(44)} ${fmt(v).padStart(9)}   ${(v / mitt).toFixed(4).padStart(8)}   ${base === undefined ? '' : `${(v / base).toFixed(2)}×`}`);
  }
  for (const m of modes) if (m.report !== undefined) say(`  ${m.report()}`);
  results.telemetry = table;
  say('');
}

if (wants('latency')) {
  const count = quick ? 5000 : 20_000;
  say('sequential ask latency (ms)                 p50        p99');
  const table: Record<string, unknown> = {};
  for (const mode of MODES) {
    const r = await sequentialLatency(mode, count);
    table[mode] = r;
    say(`  ${mode.padEnd(40)} ${r.p50.toFixed(4).padStart(8)}   ${r.p99.toFixed(4).padStart(8)}`);
  }
  results.sequentialLatency = table;
  say('');
}

if (wants('load')) {
  const rate = 20_000;
  const seconds = quick ? 1 : 3;
  say(`latency under ${fmt(rate)} asks/s offered (ms)   p50        p99        p999     achieved/s`);
  const table: Record<string, unknown> = {};
  for (const mode of MODES) {
    const r = await offeredLoad(mode, rate, seconds);
    table[mode] = r;
    say(`  ${mode.padEnd(40)} ${r.p50.toFixed(3).padStart(8)}   ${r.p99.toFixed(3).padStart(8)}   ${r.p999.toFixed(3).padStart(8)}   ${fmt(r.achieved).padStart(8)}`);
  }
  results.offeredLoad = { rate, seconds, modes: table };
  say('');
}

if (wants('fanout')) {
  const total = quick ? 1000 : 5000;
  say('notify fan-out to 100 agents                notifies/s   deliveries/s');
  const table: Record<string, unknown> = {};
  for (const mode of ['off', 'memory', 'file'] as const) {
    const r = await notifyFanOut(mode, 100, total);
    table[mode] = r;
    say(`  ${mode.padEnd(40)} ${fmt(r.notifies).padStart(10)}   ${fmt(r.deliveries).padStart(10)}`);
  }
  results.fanOut = table;
  say('');
}

if (wants('approvals')) {
  const count = quick ? 2000 : 10_000;
  const rounds = quick ? 1 : 3;
  say(`approvals: ${fmt(count)} asks held for a human          held/s   CPU µs each`);
  const table: Record<string, { perSecond: number; cpuMicros: number }> = {};
  const mid = (xs: number[]) => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;
  for (const mode of ['memory', 'file'] as const) {
    const runs: { perSecond: number; cpuMicros: number }[] = [];
    for (let r = 0; r < rounds; r++) runs.push(await held(mode === 'memory' ? ':memory:' : join(dir, `held-${r}.db`), count));
    const row = (table[mode] = { perSecond: Math.round(mid(runs.map((x) => x.perSecond))), cpuMicros: mid(runs.map((x) => x.cpuMicros)) });
    say(`  ${mode.padEnd(40)} ${fmt(row.perSecond).padStart(10)}   ${row.cpuMicros.toFixed(1).padStart(8)}`);
  }
  const restore = await restoreMs(dir, count);
  say(`  open a file holding ${fmt(count)} (restored, listed)  ${restore.restoreMs.toFixed(0)} ms   (the same file, nothing held: ${restore.emptyOpenMs.toFixed(0)} ms)`);
  results.approvals = { count, held: table, ...restore };
  say('');
}

if (wants('memory')) {
  const count = quick ? 100_000 : 1_000_000;
  if (globalThis.gc === undefined) say('(heap figures need --expose-gc: run through `npm run bench`)');
  const heap = await heapGrowth(count);
  say(`heap after ${fmt(count)} asks (audit off)          ${heap.beforeMb.toFixed(1)} MB → ${heap.afterMb.toFixed(1)} MB  growth ${heap.growthMb.toFixed(2)} MB`);
  const timers = await timersAfterTimeouts(count);
  say(`timers left after ${fmt(count)} timed-out asks     ${timers.timersLeft} (of ${fmt(timers.timedOut)} TIMEOUTs)`);
  results.memory = { asks: count, heap, timers };
  say('');
}

if (wants('query')) {
  const rows = quick ? 100_000 : 1_000_000;
  const q = logQuery(rows);
  say(`getMessageLog({ agentId, limit: 50 }) on ${fmt(rows)} rows (busiest agent in ${(q.busiestShare * 100).toFixed(0)}%)`);
  say(`  p50 ${q.p50Ms.toFixed(3)} ms, p99 ${q.p99Ms.toFixed(3)} ms   (file built in ${q.buildSeconds.toFixed(1)} s)`);
  say(`  verify ${q.verifySeconds.toFixed(2)} s, ${q.bytesPerRecord.toFixed(0)} bytes per record on disk`);
  results.logQuery = q;
  say('');
}

if (wants('cost')) {
  say('cost model: each step of an ask, timed alone (µs)');
  const steps = await costModel(PAYLOAD);
  for (const s of steps) say(`  ${s.step.padEnd(44)} ${s.microseconds.toFixed(3).padStart(8)}   ${s.note}`);
  results.costModel = steps;
  say('');
}

const out = join(import.meta.dirname, 'results.json');
writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
console.log(`wrote ${out}`);

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}
