// A/B of `audit: false` throughput between two source trees: each run is a fresh child
// process, the trees alternate, so drift in machine load hits both alike. Prints medians of
// asks/s, CPU per ask, loop turns, GC time and the process's CPU share of wall time.
//   node --import tsx bench/ab-off.ts <srcA> <srcB> [runs] [total]   (AB_FLAGS: extra node flags)
import { execFileSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { closedLoop } from './closed-loop.js';

const PAYLOAD = { task: 'summarize', url: 'https://example.com/reports/q3.pdf', words: 120, tags: ['finance', 'quarterly'] };

async function one(src: string, total: number): Promise<number> {
  const { Orchestrator } = await import(pathToFileURL(`${src}/index.ts`).href);
  const bus = new Orchestrator({ audit: false, policies: [{ from: '*', to: '*', allow: ['ask', 'notify'] }], limits: { rate: false, maxQueue: 1_000_000 } });
  bus.register('worker', { concurrency: 1000, handlers: { echo: (p: unknown) => p } });
  const client = bus.register('client');
  const loop = (n: number) => closedLoop(() => client.ask('worker', 'echo', PAYLOAD), n);
  await loop(20_000);
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const e0 = performance.eventLoopUtilization();
  let gcMs = 0;
  const { PerformanceObserver } = await import('node:perf_hooks');
  const obs = new PerformanceObserver((l) => { for (const e of l.getEntries()) gcMs += e.duration; });
  obs.observe({ entryTypes: ['gc'] });
  let turns = 0;
  const h = setInterval(() => {}, 1 << 30);
  const count = () => { turns++; if (!done) setImmediate(count); };
  let done = false;
  setImmediate(count);
  await loop(total);
  done = true;
  clearInterval(h);
  const s = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(c0);
  const elu = performance.eventLoopUtilization(e0);
  await bus.close();
  console.log(JSON.stringify({ rate: total / s, cpuUsPerAsk: (cpu.user + cpu.system) / total, turns, idleMs: elu.idle, gcMs, cpuShare: (cpu.user + cpu.system) / 1e6 / s }));
  return total / s;
}

const [a, b, runsArg, totalArg] = process.argv.slice(2);
if (process.env.AB_CHILD) {
  await one(process.env.AB_CHILD, Number(totalArg ?? 300_000));
} else {
  const runs = Number(runsArg ?? 5);
  const res: Record<string, { rate: number; cpuUsPerAsk: number; turns: number }[]> = { A: [], B: [] };
  for (let r = 0; r < runs; r++) {
    for (const [k, src] of r % 2 === 0 ? [['A', a], ['B', b]] : [['B', b], ['A', a]]) {
      const out = execFileSync(process.execPath, [...(process.env.AB_FLAGS ?? '').split(' ').filter(Boolean), '--import', 'tsx', process.argv[1]!, a!, b!, '1', String(totalArg ?? 300_000)], { env: { ...process.env, AB_CHILD: src }, encoding: 'utf8' });
      res[k!]!.push(JSON.parse(out.trim().split('\n').pop()!));
    }
  }
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  for (const k of ['A', 'B']) console.log(k, 'median asks/s', Math.round(med(res[k]!.map((x) => x.rate))), 'cpu us/ask', med(res[k]!.map((x) => x.cpuUsPerAsk)).toFixed(2), 'turns', med(res[k]!.map((x) => x.turns)), 'gcMs', med(res[k]!.map((x: any) => x.gcMs)).toFixed(0), 'cpuShare', med(res[k]!.map((x: any) => x.cpuShare)).toFixed(2), 'runs', res[k]!.map((x) => Math.round(x.rate)).join(' '));
  console.log('B/A', (med(res.B!.map((x) => x.rate)) / med(res.A!.map((x) => x.rate))).toFixed(3), 'loadavg', (await import('node:fs')).readFileSync('/proc/loadavg', 'utf8').trim());
}
