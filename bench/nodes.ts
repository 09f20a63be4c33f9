// Cross-node asks beside bare NATS request/reply, in the same run against the same server.
// Two nodes (bench/node-pair.ts) on two connections, like the baseline's requester and
// responder; the bus checks and records everything on both sides (audit off, in memory and in
// a file; with a roster, each proof mode, sealed or not). The transport alone (two
// `natsTransport`s, no orchestrator) is beside them.
//
// Each row reports asks/s with 1000 in flight, the p50/p99 of one ask at a time, the p95 of
// the loaded asks, the CPU time per ask (every thread of the processes involved, and the
// server's), and the latency at a fixed offered rate (an open loop: seed 000's "p95 under
// 100 ms at 10,000 messages/s" is `--rate=5000`, an ask and its reply being two messages).
//
//   npm run bench:nodes                 starts a nats-server of its own
//   npm run bench:nodes -- --quick      smaller counts
//   npm run bench:nodes -- --runs=5     medians of five runs (default 3)
//   npm run bench:nodes -- --split      the answering side (bare NATS's responder, node bench-b)
//                                       in a process of its own, as deployed nodes run
//   npm run bench:nodes -- --rate=5000  asks/s offered for the open-loop latency (0: skip)
//   npm run bench:nodes -- --only=file,signed,digest   these rows beside bare NATS
//   npm run bench:nodes -- --server=nats://127.0.0.1:4222   against a running server
//   npm run bench:nodes -- --inbound-per-node=false          limits.inboundPerNode of both nodes (JSON)
//   npm run bench:nodes -- --audit-worker=false              audit.worker of both nodes' file logs
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { InboundPerNode } from '../src/index.js';
import { benchServer, measureAsker, measureRate, natsBaseline, natsRequester, type AskFigures, type RateFigures } from './nats-baseline.js';
import { natsTransportPair } from './nats-transport.js';
import { createFleet, makeNode, serveEcho, untilEchoAnswers, type Audit, type PairSetup, type Trust } from './node-pair.js';

interface Asker {
  ask(payload: unknown): Promise<unknown>;
  close(): Promise<void>;
  /** The answering side's process, when it runs apart. */
  readonly responderPid?: number;
}

/** Starts bench/responder.ts with `job`; resolves once it serves. */
async function responder(job: unknown): Promise<{ pid: number; close(): Promise<void> }> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'responder.ts'), JSON.stringify(job)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('ready\n')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the responder exited with ${code} before serving`)));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    pid: child.pid!,
    close: async () => {
      child.stdin!.end();
      await exited;
    },
  };
}

async function bareAsker(url: string): Promise<Asker> {
  const subject = `bench.echo.${Math.random().toString(36).slice(2)}`;
  const answering = await responder({ kind: 'bare', url, subject });
  const requester = await natsRequester(url, subject);
  return {
    ask: requester.ask,
    responderPid: answering.pid,
    async close() {
      await requester.close();
      await answering.close();
    },
  };
}

async function nodePair(setup: PairSetup): Promise<Asker> {
  await createFleet(setup);
  const a = await makeNode(setup, 'bench-a');
  let closeB: () => Promise<void>;
  let responderPid: number | undefined;
  if (split) {
    const answering = await responder({ kind: 'node', setup });
    closeB = answering.close;
    responderPid = answering.pid;
  } else {
    const b = await makeNode(setup, 'bench-b');
    serveEcho(b);
    await b.ready();
    closeB = () => b.close();
  }
  const client = a.register('client');
  await a.ready();
  await untilEchoAnswers(client);
  return {
    ask: (payload: unknown) => client.ask('echo', 'echo', payload),
    ...(responderPid === undefined ? {} : { responderPid }),
    close: async () => {
      await a.close();
      await closeB();
    },
  };
}

const args = process.argv.slice(2);
const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const quick = args.includes('--quick');
const split = args.includes('--split');
const runs = Number(flag('runs') ?? 3);
const rate = Number(flag('rate') ?? 5000);
/** `--only=signed,file`: just these rows (and bare NATS), e.g. to profile one with `node --cpu-prof`. */
const only = flag('only')?.split(',');
const wanted = (row: string) => only === undefined || only.includes(row);
const share = flag('inbound-per-node');
const inboundPerNode = share === undefined ? {} : { inboundPerNode: JSON.parse(share) as InboundPerNode | false };
const workerArg = flag('audit-worker');
const auditWorker = workerArg === undefined ? {} : { auditWorker: workerArg === 'true' };

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

interface Figures extends AskFigures {
  rate: RateFigures | undefined;
}
const server = await benchServer(args);
const rows: Record<string, Figures[]> = { bare: [], transport: [], off: [], memory: [], file: [], signed: [], sealed: [], mac: [], digest: [], 'digest-sealed': [] };
const dir = mkdtempSync(join(tmpdir(), 'switchboard-nodes-bench-'));

async function measure(row: string, asker: Asker): Promise<void> {
  try {
    const figures = await measureAsker(asker.ask, quick, server.pid, asker.responderPid);
    const atRate = rate > 0 ? await measureRate(asker.ask, rate, quick ? 3 : 10) : undefined;
    rows[row]!.push({ ...figures, rate: atRate });
  } finally {
    await asker.close();
  }
}

for (let run = 0; run < runs; run++) {
  if (split) await measure('bare', await bareAsker(server.url));
  else rows.bare!.push({ ...(await natsBaseline(server.url, quick, server.pid)), rate: undefined });
  if (wanted('transport') && !split) await measure('transport', await natsTransportPair(server.url));
  for (const audit of ['off', 'memory', 'file'] as const) {
    if (!wanted(audit)) continue;
    await measure(audit, await nodePair({ url: server.url, bus: `bench${run}${audit}`, audit, trust: 'insecure', dir, ...auditWorker, ...inboundPerNode }));
  }
  for (const trust of ['signed', 'sealed', 'mac', 'digest', 'digest-sealed'] as const satisfies readonly Trust[]) {
    if (!wanted(trust)) continue;
    const audit: Audit = 'file';
    await measure(trust, await nodePair({ url: server.url, bus: `bench${run}${trust}`, audit, trust, dir, ...auditWorker, ...inboundPerNode }));
  }
}
await server.stop();
rmSync(dir, { recursive: true, force: true });

const bare = { asksPerSecond: median(rows.bare!.map((r) => r.asksPerSecond)), p50: median(rows.bare!.map((r) => r.p50)) };
console.log(`nats-server ${server.url}; ${runs} runs, medians; ${split ? 'the answering side in a process of its own' : 'both sides in this process'}`);
console.log(`1000 asks in flight, then one at a time for p50/p99; open loop at ${rate} asks/s (${2 * rate} messages/s) for ${quick ? 3 : 10} s`);
console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} at the end`);
console.log('figure                         asks/s    ×bare   p50 ms   ×bare   p99 ms  loaded p95 ms  CPU µs/ask (processes + server)  at rate: p50 / p95 / p99 ms');
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
  const cpu = median(r.map((x) => x.cpuPerAsk));
  const serverCpu = median(r.map((x) => x.serverCpuPerAsk));
  const rated = r.flatMap((x) => (x.rate === undefined ? [] : [x.rate]));
  const atRate =
    rated.length === 0
      ? ''
      : `${median(rated.map((x) => x.p50)).toFixed(2)} / ${median(rated.map((x) => x.p95)).toFixed(2)} / ${median(rated.map((x) => x.p99)).toFixed(2)}${median(rated.map((x) => x.achieved)) < 0.98 * rate ? ` (kept up with ${Math.round(median(rated.map((x) => x.achieved)))}/s)` : ''}`;
  console.log(
    `${label.padEnd(30)} ${String(Math.round(aps)).padStart(7)}  ${(aps / bare.asksPerSecond).toFixed(2).padStart(6)}×  ${p50.toFixed(3).padStart(7)}  ${(p50 / bare.p50).toFixed(2).padStart(5)}×  ${p99.toFixed(3).padStart(7)}  ${lp95.toFixed(1).padStart(9)}  ${cpu.toFixed(1).padStart(9)} + ${serverCpu.toFixed(1).padEnd(20)}  ${atRate}`,
  );
}
