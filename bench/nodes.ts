// Cross-node asks beside bare NATS request/reply, in the same run against the same server
// (the target: ≥ 0.5× bare NATS asks/s, unloaded p50 ≤ 3×). Two nodes in this one
// process on two connections, like the baseline's requester and responder; the bus checks
// and records everything on both sides (audit off, in memory and in a file, reported
// separately). The transport alone (two `natsTransport`s, no orchestrator) is beside them.
//
//   npm run bench:nodes                 starts a nats-server of its own
//   npm run bench:nodes -- --quick      smaller counts
//   npm run bench:nodes -- --runs=5     medians of five runs (default 3)
//   npm run bench:nodes -- --only=file,signed,digest   these rows beside bare NATS
//   npm run bench:nodes -- --server=nats://127.0.0.1:4222   against a running server
//   npm run bench:nodes -- --inbound-per-node=false          limits.inboundPerNode of both nodes (JSON)
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Orchestrator, type InboundPerNode } from '../src/index.js';
import { runFleetBucket, runFleetInit } from '../src/cli/fleet.js';
import { natsTransport, type NatsTransportOptions } from '../src/nats/index.js';
import { benchServer, measureAsker, natsBaseline, type AskFigures } from './nats-baseline.js';
import { natsTransportPair } from './nats-transport.js';

type Audit = 'off' | 'memory' | 'file';
/** Insecure (no roster); a roster with every message signed, MAC'd, or MAC'd with signed digests; sealed besides. */
type Trust = 'insecure' | 'signed' | 'mac' | 'digest' | 'sealed' | 'digest-sealed';

const quietIO = { out: () => {}, err: (l: string) => console.error(l) };

/** A two-node fleet of `bus` (fleet init, then the claims bucket): each node's transport options. */
async function fleet(url: string, bus: string, dir: string, trust: Trust): Promise<(node: string) => Partial<NatsTransportOptions>> {
  if (trust === 'insecure') return () => ({ insecure: true });
  const out = join(dir, bus);
  writeFileSync(`${out}.json`, JSON.stringify({ bus, nodes: { 'bench-a': ['client'], 'bench-b': ['echo'] } }));
  if (runFleetInit([`${out}.json`, '--out', out], quietIO) !== 0) throw new Error('fleet init failed');
  if ((await runFleetBucket(['--servers', url, '--roster', join(out, 'roster.json')], quietIO)) !== 0) throw new Error('fleet bucket failed');
  return (node) => ({
    roster: join(out, 'roster.json'),
    nkeySeed: readFileSync(join(out, `${node}.nk`), 'utf8'),
    ...(trust === 'sealed' || trust === 'digest-sealed' ? { seal: 'always' as const } : {}),
    // Named, not left to the default: each row measures the proof it names.
    ...(trust === 'signed' || trust === 'sealed' ? { proof: 'signature' as const } : {}),
    ...(trust === 'mac' ? { proof: 'mac' as const } : {}),
    ...(trust === 'digest' || trust === 'digest-sealed' ? { proof: 'digest' as const } : {}),
  });
}

async function nodePair(url: string, bus: string, audit: Audit, dir: string, trust: Trust = 'insecure') {
  const options = await fleet(url, bus, dir, trust);
  const make = async (node: string) =>
    new Orchestrator({
      node,
      transport: await natsTransport({ servers: url, bus, ...options(node) }),
      policies: [{ from: 'client', to: 'echo', allow: ['ask'] }],
      limits: { rate: false, maxQueue: 1_000_000, ...inboundPerNode },
      audit: audit === 'off' ? (false as const) : audit === 'memory' ? { path: ':memory:' } : { path: join(dir, `${bus}-${node}.db`) },
    });
  const a = await make('bench-a');
  const b = await make('bench-b');
  const client = a.register('client');
  b.register('echo', { concurrency: 10_000, handlers: { echo: (payload) => payload } });
  await Promise.all([a.ready(), b.ready()]);
  // a's watch of the claims may not show b's agent yet.
  for (let tries = 0; ; tries++) {
    try {
      await client.ask('echo', 'echo', 0);
      break;
    } catch (e) {
      if (tries > 200 || (e as { code?: string }).code !== 'UNKNOWN_AGENT') throw e;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  return {
    ask: (payload: unknown) => client.ask('echo', 'echo', payload),
    close: async () => {
      await a.close();
      await b.close();
    },
  };
}

const share = process.argv.find((a) => a.startsWith('--inbound-per-node='))?.slice('--inbound-per-node='.length);
const inboundPerNode = share === undefined ? {} : { inboundPerNode: JSON.parse(share) as InboundPerNode | false };

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const runs = Number(args.find((a) => a.startsWith('--runs='))?.slice(7) ?? 3);
/** `--only=signed,file`: just these rows (and bare NATS), e.g. to profile one with `node --cpu-prof`. */
const only = args.find((a) => a.startsWith('--only='))?.slice(7).split(',');
const wanted = (row: string) => only === undefined || only.includes(row);
const server = await benchServer(args);
const rows: Record<string, AskFigures[]> = { bare: [], transport: [], off: [], memory: [], file: [], signed: [], sealed: [], mac: [], digest: [], 'digest-sealed': [] };
const dir = mkdtempSync(join(tmpdir(), 'switchboard-nodes-bench-'));
for (let run = 0; run < runs; run++) {
  rows.bare!.push(await natsBaseline(server.url, quick));
  if (wanted('transport')) {
    const transport = await natsTransportPair(server.url);
    rows.transport!.push(await measureAsker(transport.ask, quick));
    await transport.close();
  }
  for (const audit of ['off', 'memory', 'file'] as const) {
    if (!wanted(audit)) continue;
    const pair = await nodePair(server.url, `bench${run}${audit}`, audit, dir);
    rows[audit]!.push(await measureAsker(pair.ask, quick));
    await pair.close();
  }
  for (const trust of ['signed', 'sealed', 'mac', 'digest', 'digest-sealed'] as const) {
    if (!wanted(trust)) continue;
    const pair = await nodePair(server.url, `bench${run}${trust}`, 'file', dir, trust);
    rows[trust]!.push(await measureAsker(pair.ask, quick));
    await pair.close();
  }
}
await server.stop();
rmSync(dir, { recursive: true, force: true });

const bare = { asksPerSecond: median(rows.bare!.map((r) => r.asksPerSecond)), p50: median(rows.bare!.map((r) => r.p50)) };
console.log(`nats-server ${server.url}; ${runs} runs, medians; 1000 asks in flight, then one at a time for p50/p99`);
console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} at the end`);
console.log('figure                         asks/s    ×bare   p50 ms   ×bare   p99 ms  loaded p95 ms');
const labels = [
  ['bare', 'bare NATS request/reply'],
  ['transport', 'natsTransport alone'],
  ['off', 'cross-node ask, audit off'],
  ['memory', 'cross-node ask, audit :memory:'],
  ['file', 'cross-node ask, audit file'],
  ['signed', 'signed (roster), audit file'],
  ['sealed', 'signed + sealed, audit file'],
  ['mac', 'MAC (roster), audit file'],
  ['digest', 'MAC + signed digests, file'],
  ['digest-sealed', 'digests + sealed, file'],
] as const;
for (const [name, label] of labels) {
  const r = rows[name]!;
  if (r.length === 0) continue;
  const aps = median(r.map((x) => x.asksPerSecond));
  const p50 = median(r.map((x) => x.p50));
  const p99 = median(r.map((x) => x.p99));
  const lp95 = median(r.map((x) => x.loadedP95));
  console.log(
    `${label.padEnd(30)} ${String(Math.round(aps)).padStart(7)}  ${(aps / bare.asksPerSecond).toFixed(2).padStart(6)}×  ${p50.toFixed(3).padStart(7)}  ${(p50 / bare.p50).toFixed(2).padStart(5)}×  ${p99.toFixed(3).padStart(7)}  ${lp95.toFixed(1).padStart(9)}`,
  );
}
