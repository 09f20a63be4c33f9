// Cross-node asks beside bare NATS request/reply, in the same run against the same server
// (the target: ≥ 0.5× bare NATS asks/s, unloaded p50 ≤ 3×). Two nodes in this one
// process on two connections, like the baseline's requester and responder; the bus checks
// and records everything on both sides (audit off, in memory and in a file, reported
// separately). The transport alone (two `natsTransport`s, no orchestrator) is beside them.
//
//   npm run bench:nodes                 starts a nats-server of its own
//   npm run bench:nodes -- --quick      smaller counts
//   npm run bench:nodes -- --runs=5     medians of five runs (default 3)
//   npm run bench:nodes -- --server=nats://127.0.0.1:4222   against a running server
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Orchestrator } from '../src/index.js';
import { natsTransport } from '../src/nats/index.js';
import { benchServer, measureAsker, natsBaseline, type AskFigures } from './nats-baseline.js';
import { natsTransportPair } from './nats-transport.js';

type Audit = 'off' | 'memory' | 'file';


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

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const runs = Number(args.find((a) => a.startsWith('--runs='))?.slice(7) ?? 3);
const server = await benchServer(args);
const rows: Record<string, AskFigures[]> = { bare: [], transport: [], off: [], memory: [], file: [] };
const dir = mkdtempSync(join(tmpdir(), 'switchboard-nodes-bench-'));
for (let run = 0; run < runs; run++) {
  rows.bare!.push(await natsBaseline(server.url, quick));
  const transport = await natsTransportPair(server.url);
  rows.transport!.push(await measureAsker(transport.ask, quick));
  await transport.close();
  for (const audit of ['off', 'memory', 'file'] as const) {
    const pair = await nodePair(server.url, `bench${run}${audit}`, audit, dir);
    rows[audit]!.push(await measureAsker(pair.ask, quick));
    await pair.close();
  }
}
await server.stop();
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
