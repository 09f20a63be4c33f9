// Runs asks through one bus, for a CPU profile or a quick comparison; prints asks/s and CPU
// time per ask (process and main thread: steadier than asks/s on a shared machine).
//   node --import tsx bench/profile-asks.ts MODE [ASKS]
//   node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx bench/profile-asks.ts memory 300000
// MODE: off | null (records built, NullAuditLog) | memory | memworker (:memory: on the worker) | file
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { NullAuditLog } from '../src/audit/index.js';
import { Orchestrator } from '../src/index.js';
import { closedLoop } from './closed-loop.js';

const mode = process.argv[2] ?? 'memory';
const total = Number(process.argv[3] ?? 300_000);
const dir = mkdtempSync(join(tmpdir(), 'switchboard-profile-'));
const audit = mode === 'off' ? false : mode === 'null' ? new NullAuditLog() : mode === 'memory' ? { path: ':memory:' } : mode === 'memworker' ? { path: ':memory:', worker: true } : { path: join(dir, 'p.db') };
const bus = new Orchestrator({ audit, policies: [{ from: '*', to: '*', allow: ['ask'] }], limits: { rate: false, maxQueue: 1_000_000 } });
bus.register('worker', { concurrency: 1000, handlers: { echo: (p) => p } });
const client = bus.register('client');
const PAYLOAD = { task: 'summarize', url: 'https://example.com/reports/q3.pdf', words: 120, tags: ['finance', 'quarterly'] };
const loop = (n: number) => closedLoop(() => client.ask('worker', 'echo', PAYLOAD), n);
await loop(20_000);
const t0 = performance.now();
const cpu0 = process.cpuUsage();
const main0 = process.threadCpuUsage();
await loop(total);
const s = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
const main = process.threadCpuUsage(main0);
const perAsk = (u: { user: number; system: number }) => ((u.user + u.system) / total).toFixed(1);
// CPU time per ask is steadier than asks/s on a shared machine: the process's, and the main thread's.
console.log(`${mode}: ${Math.round(total / s)} asks/s; CPU µs/ask: process ${perAsk(cpu)}, main thread ${perAsk(main)}`);
await bus.close();
rmSync(dir, { recursive: true, force: true });
