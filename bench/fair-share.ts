// Local asks of one node while another node floods it, with and without the fair share per
// peer node (`limits.inboundPerNode`). A measurement, not a test: figures are ratios to the
// same node's unflooded local asks in the same run (medians of --runs), beside the load.
//
// "Calm" is the mean of B's local asks measured before and after the flood (the audit log
// grows meanwhile, which alone slows later measurements).
//
// Node B (this process) has two local agents, l1 asking l2 with 64 asks in flight, and
// `sink`, which the flooding node's agent asks with 1,000 in flight (a child process, its
// own rate limits off: its full rate). Both nodes use natsTransport against one nats-server.
//
//   npm run bench:fair-share                       file audit log on B (default)
//   npm run bench:fair-share -- --audit=memory     :memory: audit log on B
//   npm run bench:fair-share -- --runs=5 --seconds=3 --server=nats://127.0.0.1:4222
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Orchestrator, type InboundPerNode } from '../src/index.js';
import { natsTransport } from '../src/nats/index.js';
import { benchServer } from './nats-baseline.js';

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;

if (arg('role', '') === 'flood') await flood(arg('server', ''), arg('bus', ''));
else await main();

/** The flooding node: asks B's `sink` with 1,000 in flight until killed; says "flooding" once answers come back. */
async function flood(url: string, bus: string): Promise<void> {
  const node = new Orchestrator({
    node: 'peer',
    transport: await natsTransport({ servers: url, bus, insecure: true }),
    policies: [{ from: 'a', to: 'sink', allow: ['ask'] }],
    limits: { rate: false },
    audit: false,
  });
  const a = node.register('a');
  await node.ready();
  let told = false;
  const loop = async (): Promise<void> => {
    for (;;) {
      await a.ask('sink', 'echo', { n: 1 }, { timeoutMs: 10_000 }).catch(() => undefined);
      if (!told) {
        told = true;
        process.send?.('flooding');
      }
    }
  };
  for (let i = 0; i < 1_000; i++) void loop();
}

interface Figures {
  asksPerSecond: number;
  p99: number;
  /** Asks from the peer that B's `sink` ran per second. */
  inboundPerSecond: number;
  /** Asks from the peer that B refused per second (its share's queue full, or their budget spent waiting). */
  refusedPerSecond: number;
}

/** 64 local asks in flight for `seconds`: asks/s and p99 latency (ms); and what `sink` ran meanwhile. */
async function measureLocal(l1: { ask(to: string, intent: string, payload: unknown): Promise<unknown> }, seconds: number, sinkRuns: () => number, refused: () => number): Promise<Figures> {
  const latencies: number[] = [];
  const end = performance.now() + seconds * 1000;
  const sink0 = sinkRuns();
  const refused0 = refused();
  const t0 = performance.now();
  const worker = async () => {
    while (performance.now() < end) {
      const t = performance.now();
      await l1.ask('l2', 'echo', { n: 1 });
      latencies.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  latencies.sort((x, y) => x - y);
  return {
    asksPerSecond: latencies.length / elapsed,
    p99: latencies[Math.floor(latencies.length * 0.99)] ?? Number.NaN,
    inboundPerSecond: (sinkRuns() - sink0) / elapsed,
    refusedPerSecond: (refused() - refused0) / elapsed,
  };
}

/** Node B with the given fair share: unflooded figures, then figures under the peer's flood. */
async function oneRun(url: string, bus: string, share: InboundPerNode | false, audit: string, dir: string, seconds: number): Promise<{ calm: Figures; flooded: Figures }> {
  const b = new Orchestrator({
    node: 'victim',
    transport: await natsTransport({ servers: url, bus, insecure: true }),
    policies: [
      { from: 'l1', to: 'l2', allow: ['ask'] },
      { from: 'a', to: 'sink', allow: ['ask'] },
    ],
    limits: { rate: false, maxQueue: 100_000, inboundPerNode: share },
    audit: audit === 'memory' ? { path: ':memory:' } : { path: join(dir, `${bus}.db`) },
  });
  let sinkRuns = 0;
  let refused = 0;
  b.events.on('message:denied', () => void refused++);
  b.register('sink', { concurrency: 100_000, handlers: { echo: (p) => (sinkRuns++, p) } });
  b.register('l2', { concurrency: 100_000, handlers: { echo: (p) => p } });
  const l1 = b.register('l1');
  await b.ready();
  const calm = await measureLocal(l1, seconds, () => sinkRuns, () => refused);
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [`--role=flood`, `--server=${url}`, `--bus=${bus}`], { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`the flooding node exited with ${code}`)));
  });
  // Let the flood reach its full rate before measuring.
  await new Promise((r) => setTimeout(r, 500));
  const flooded = await measureLocal(l1, seconds, () => sinkRuns, () => refused);
  child.removeAllListeners('exit');
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  // Measured again after the flood: the log has grown meanwhile, so "calm" is the mean of before and after.
  await new Promise((r) => setTimeout(r, 500));
  const after = await measureLocal(l1, seconds, () => sinkRuns, () => refused);
  await b.close();
  return { calm: { asksPerSecond: (calm.asksPerSecond + after.asksPerSecond) / 2, p99: (calm.p99 + after.p99) / 2, inboundPerSecond: 0, refusedPerSecond: 0 }, flooded };
}

async function main(): Promise<void> {
  const runs = Number(arg('runs', '3'));
  const seconds = Number(arg('seconds', '3'));
  const audit = arg('audit', 'file');
  const server = await benchServer(args);
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-fair-share-'));
  const tried = arg('share', '');
  const modes: (readonly [string, InboundPerNode | false])[] = [
    ['off', false],
    ['on', tried === '' ? {} : (JSON.parse(tried) as InboundPerNode)],
  ];
  const only = arg('modes', 'off,on').split(',');
  modes.splice(0, modes.length, ...modes.filter(([name]) => only.includes(name)));
  const results: Record<string, { calm: Figures; flooded: Figures }[]> = { off: [], on: [] };
  try {
    for (let run = 0; run < runs; run++) {
      for (const [name, share] of modes) results[name]!.push(await oneRun(server.url, `fair${process.pid}r${run}${name}`, share, audit, dir, seconds));
    }
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  console.log(`local asks of node B (64 in flight, ${seconds}s) while node A floods B's agent with 1,000 asks in flight; audit ${audit} on B; ${runs} runs, medians of per-run ratios`);
  console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} at the end`);
  console.log('limits.inboundPerNode        local asks/s flooded ÷ calm   p99 flooded ÷ calm   peer asks served/s ÷ local calm   peer asks refused/s ÷ local calm');
  for (const [name] of modes) {
    const r = results[name]!;
    const label = name === 'off' ? 'false (no fair share)' : tried === '' ? 'default' : tried;
    const aps = median(r.map((x) => x.flooded.asksPerSecond / x.calm.asksPerSecond));
    const p99 = median(r.map((x) => x.flooded.p99 / x.calm.p99));
    const inbound = median(r.map((x) => x.flooded.inboundPerSecond / x.calm.asksPerSecond));
    const refusedRatio = median(r.map((x) => x.flooded.refusedPerSecond / x.calm.asksPerSecond));
    console.log(`${label.padEnd(29)}${aps.toFixed(2).padStart(28)}${p99.toFixed(1).padStart(21)}${inbound.toFixed(2).padStart(34)}${refusedRatio.toFixed(2).padStart(35)}`);
    if (args.includes('--raw')) for (const x of r) console.log('  ', JSON.stringify(x));
  }
}
