// Cross-node asks beside bare NATS request/reply, in the same run against the same server
// (issue 12's target: ≥ 0.5× bare NATS asks/s, unloaded p50 ≤ 3×). Two nodes in this one
// process on two connections, like the baseline's requester and responder; the bus checks
// and records everything on both sides (audit off, in memory and in a file, reported
// separately). The transport alone (two `natsTransport`s, no orchestrator) is beside them.
//
//   npm run bench:nodes                 starts a nats-server of its own
//   npm run bench:nodes -- --quick      smaller counts
//   npm run bench:nodes -- --runs=5     medians of five runs (default 3)
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Orchestrator } from '../src/index.js';
import { natsTransport } from '../src/nats/index.js';
import { findNatsServer, INSTALL_HINT, startNatsServer } from '../scripts/nats-server.js';
import { natsBaseline } from './nats-baseline.js';
import { natsTransportPair } from './nats-transport.js';

type Audit = 'off' | 'memory' | 'file';

const PAYLOAD = { task: 'summarize', url: 'https://example.com/reports/q3.pdf', words: 120, tags: ['finance', 'quarterly'] };

interface Figures {
  asksPerSecond: number;
  p50: number;
  p99: number;
}

async function nodePair(url: string, bus: string, audit: Audit, dir: string) {
  const make = async (node: string) =>
    new Orchestrator({
      node,
      transport: await natsTransport({ servers: url, bus }),
      policies: [{ from: 'client', to: 'echo', allow: ['ask'] }],
      limits: { rate: false, maxQueue: 1_000_000 },
      audit: audit === 'off' ? (false as const) : audit === 'memory' ? { path: ':memory:' } : { path: join(dir, `${bus}-${node}.db`) },
    });
  const a = await make('bench-a');
  const b = await make('bench-b');
  const client = a.register('client');
  b.register('echo', { concurrency: 10_000, handlers: { echo: (payload) => payload } });
  await Promise.all([a.ready(), b.ready()]);
  return {
    ask: (payload: unknown) => client.ask('echo', 'echo', payload),
    close: async () => {
      await a.close();
      await b.close();
    },
  };
}

async function measure(ask: (p: unknown) => Promise<unknown>, quick: boolean): Promise<Figures> {
  const total = quick ? 20_000 : 100_000;
  const loop = async (n: number) => {
    let sent = 0;
    const lane = async () => {
      while (sent < n) {
        sent++;
        await ask(PAYLOAD);
      }
    };
    await Promise.all(Array.from({ length: 1000 }, lane));
  };
  await loop(total / 5);
  const started = performance.now();
  await loop(total);
  const asksPerSecond = total / ((performance.now() - started) / 1000);
  const count = quick ? 1_000 : 5_000;
  const times = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    await ask(PAYLOAD);
    times[i] = performance.now() - t;
  }
  times.sort();
  return { asksPerSecond, p50: times[Math.floor(count * 0.5)]!, p99: times[Math.floor(count * 0.99)]! };
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const runs = Number(args.find((a) => a.startsWith('--runs='))?.slice(7) ?? 3);
const bin = findNatsServer();
if (bin === undefined) {
  console.error(`nats-server not found: ${INSTALL_HINT}`);
  process.exit(1);
}
const server = await startNatsServer(bin);
const rows: Record<string, Figures[]> = { bare: [], transport: [], off: [], memory: [], file: [] };
const dir = mkdtempSync(join(tmpdir(), 'switchboard-nodes-bench-'));
for (let run = 0; run < runs; run++) {
  rows.bare!.push(await natsBaseline(server.url, quick));
  const transport = await natsTransportPair(server.url);
  rows.transport!.push(await measure(transport.ask, quick));
  await transport.close();
  for (const audit of ['off', 'memory', 'file'] as const) {
    const pair = await nodePair(server.url, `bench${run}${audit}`, audit, dir);
    rows[audit]!.push(await measure(pair.ask, quick));
    await pair.close();
  }
}
await server.dispose();
rmSync(dir, { recursive: true, force: true });

const bare = { asksPerSecond: median(rows.bare!.map((r) => r.asksPerSecond)), p50: median(rows.bare!.map((r) => r.p50)) };
console.log(`nats-server ${server.url}; ${runs} runs, medians; 1000 asks in flight, then one at a time for p50/p99`);
console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} at the end`);
console.log('figure                         asks/s    ×bare   p50 ms   ×bare   p99 ms');
const labels = [
  ['bare', 'bare NATS request/reply'],
  ['transport', 'natsTransport alone'],
  ['off', 'cross-node ask, audit off'],
  ['memory', 'cross-node ask, audit :memory:'],
  ['file', 'cross-node ask, audit file'],
] as const;
for (const [name, label] of labels) {
  const r = rows[name]!;
  const aps = median(r.map((x) => x.asksPerSecond));
  const p50 = median(r.map((x) => x.p50));
  const p99 = median(r.map((x) => x.p99));
  console.log(
    `${label.padEnd(30)} ${String(Math.round(aps)).padStart(7)}  ${(aps / bare.asksPerSecond).toFixed(2).padStart(6)}×  ${p50.toFixed(3).padStart(7)}  ${(p50 / bare.p50).toFixed(2).padStart(5)}×  ${p99.toFixed(3).padStart(7)}`,
  );
}
