// The approval row of `npm run bench`: messages held for a human per second (a :memory: log
// and a file log, which also stores each held message beside its pending row), and how
// long a bus takes to open a file that holds N messages (restoring them) against opening
// one that holds none. Also runnable alone, so the same code measures another checkout:
//
//   node --import tsx bench/approvals.ts [held per round] [rounds]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Orchestrator } from '../src/index.js';

const RULES = [{ from: 'purchase', to: 'payment', allow: ['ask' as const], requireApproval: true }];
/** About 120 bytes of JSON, like a small payment order. */
const ORDER = { item: 'GPU hours', amount: 120, currency: 'EUR', po: 'PO-7781', approver: 'finance', tags: ['q3', 'infra'] };

function open(path: string, count: number): Orchestrator {
  return new Orchestrator({
    audit: { path },
    policies: RULES,
    limits: { rate: false, maxQueue: 1_000_000 },
    approvals: { maxPending: count, maxPendingPerSender: count, ttlMs: 3_600_000 },
  });
}

/**
 * Holds `count` asks (each with its pending row committed): held messages per second, and
 * the CPU time of the process (every thread) per held message, which a shared machine's
 * load disturbs less than the wall clock.
 */
export async function held(path: string, count: number): Promise<{ perSecond: number; cpuMicros: number }> {
  const bus = open(path, count);
  bus.register('payment', { handlers: { pay: () => 'paid' } });
  const purchase = bus.register('purchase');
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (let i = 0; i < count; i++) purchase.ask('payment', 'pay', ORDER, { timeoutMs: 3_600_000 }).catch(() => undefined);
  await bus.flush();
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  if (bus.approvals.list().length !== count) throw new Error('not every message was held');
  await bus.close();
  return { perSecond: count / seconds, cpuMicros: (used.user + used.system) / count };
}

/**
 * Milliseconds to open a bus on a file holding `count` messages (they are restored and
 * listed), and on a file with the same rows whose messages were all decided.
 */
export async function restoreMs(dir: string, count: number): Promise<{ restoreMs: number; emptyOpenMs: number; restored: number }> {
  const path = join(dir, `restore-${count}-${Date.now()}.db`);
  await held(path, count);
  let started = performance.now();
  const bus = open(path, count);
  const restored = bus.approvals.list().length;
  const restoreMs = performance.now() - started;
  for (const a of bus.approvals.list()) bus.approvals.reject(a.id, { by: 'bench' });
  await bus.close();
  started = performance.now();
  const empty = open(path, count);
  const emptyOpenMs = performance.now() - started;
  await empty.close();
  return { restoreMs, emptyOpenMs, restored };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

if (import.meta.url === `file://${process.argv[1]}`) {
  const count = Number(process.argv[2] ?? 10_000);
  const rounds = Number(process.argv[3] ?? 5);
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-approvals-bench-'));
  try {
    const runs: Record<'memory' | 'file', { perSecond: number; cpuMicros: number }[]> = { memory: [], file: [] };
    for (let r = 0; r < rounds; r++) {
      runs.memory.push(await held(':memory:', count));
      runs.file.push(await held(join(dir, `held-${r}.db`), count));
    }
    const summary = (xs: { perSecond: number; cpuMicros: number }[]) => ({
      perSecond: Math.round(median(xs.map((x) => x.perSecond))),
      cpuMicros: Number(median(xs.map((x) => x.cpuMicros)).toFixed(1)),
    });
    console.log(JSON.stringify({ count, rounds, memory: summary(runs.memory), file: summary(runs.file) }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
