// How late a 50 ms deadline fires beside a sender that loops (`npm run fairness-bench`).
// A measurement script, not a test. For each audit mode and each kind of loop: one agent
// asks a silent agent with timeoutMs 50 while another loop runs flat out; the figure is
// the time from that ask to its TIMEOUT, over RUNS runs (default 5: best, median, worst), and how many
// messages the loop got through meanwhile. A loop that starves timers is stopped after 10 s.
// Then, per audit mode, ASKERS (default 1000) closed-loop askers (each asks again as soon as
// answered) run for a second before DEADLINES (default 10) 50 ms deadlines are timed one after
// the other; the figure is their worst lateness (time past the 50 ms), per run.
//
// SWITCHBOARD_SRC=/path/to/other/checkout/src runs the same against another version
// (that is how the "before" figures in docs/reliability.md were taken).
import { rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';

const src = process.env.SWITCHBOARD_SRC;
const mod = (await import(src === undefined ? '../src/index.js' : pathToFileURL(resolve(src, 'index.ts')).href)) as typeof import('../src/index.js');
const { Orchestrator } = mod;
type Options = import('../src/index.js').OrchestratorOptions;

const CAP_MS = 10_000;
const RUNS = Number(process.env.RUNS ?? 5);
const DEADLINE_MS = 50;

async function once(audit: Options['audit'], loop: 'ask' | 'notify'): Promise<{ late: number; messages: number }> {
  const bus = new Orchestrator({
    policies: [{ from: '*', to: '*', allow: ['ask', 'notify'] }],
    limits: { rate: false },
    ...(audit !== undefined ? { audit } : {}),
  });
  let stop = false;
  let messages = 0;
  const start = performance.now();
  const over = () => stop || performance.now() - start > CAP_MS;
  bus.register('silent', { handlers: { wait: (_p, ctx) => new Promise<void>((r) => ctx.signal.addEventListener('abort', () => r())) } });
  bus.register('echo', { handlers: { ping: (p) => p } });
  const a = bus.register('a', { handlers: { ball: () => void (over() || (messages++, a.notify('ball', messages, { to: ['b'] }))) } });
  const b = bus.register('b', { handlers: { ball: () => void (over() || (messages++, b.notify('ball', messages, { to: ['a'] }))) } });
  const asker = bus.register('asker');
  const sender = bus.register('sender');

  const t0 = performance.now();
  const deadline = asker.ask('silent', 'wait', {}, { timeoutMs: DEADLINE_MS }).then(
    () => performance.now() - t0,
    () => performance.now() - t0,
  );
  const running =
    loop === 'ask'
      ? (async () => {
          while (!over()) {
            await sender.ask('echo', 'ping', messages);
            messages++;
          }
        })()
      : a.notify('ball', 0, { to: ['b'] });
  const fired = await deadline;
  stop = true;
  await running;
  await bus.close();
  return { late: fired, messages };
}

/** Worst lateness (ms past 50) of DEADLINES 50 ms deadlines, timed one after the other beside ASKERS closed-loop askers. */
async function closedLoop(audit: Options['audit']): Promise<{ worst: number; asksPerSecond: number }> {
  const askers = Number(process.env.ASKERS ?? 1000);
  const deadlines = Number(process.env.DEADLINES ?? 10);
  const bus = new Orchestrator({
    policies: [{ from: '*', to: '*', allow: ['ask'] }],
    limits: { rate: false },
    ...(audit !== undefined ? { audit } : {}),
  });
  bus.register('silent', { handlers: { wait: (_p, ctx) => new Promise<void>((r) => ctx.signal.addEventListener('abort', () => r())) } });
  bus.register('echo', { handlers: { ping: (p) => p } });
  const asker = bus.register('asker');
  let stop = false;
  let asks = 0;
  const start = performance.now();
  const loops = Array.from({ length: askers }, async (_, i) => {
    const sender = bus.register(`sender-${i}`);
    while (!stop && performance.now() - start < CAP_MS) {
      await sender.ask('echo', 'ping', i);
      asks++;
    }
  });
  await new Promise((r) => setTimeout(r, 1000)); // warm: every asker in its loop
  let worst = 0;
  for (let i = 0; i < deadlines; i++) {
    const t0 = performance.now();
    await asker.ask('silent', 'wait', {}, { timeoutMs: DEADLINE_MS }).catch(() => undefined);
    worst = Math.max(worst, performance.now() - t0 - DEADLINE_MS);
  }
  stop = true;
  const seconds = (performance.now() - start) / 1000;
  await Promise.all(loops);
  await bus.close();
  const path = typeof audit === 'object' && audit !== null && 'path' in audit ? audit.path : undefined;
  if (path !== undefined && path !== ':memory:') rmSync(path, { force: true });
  return { worst, asksPerSecond: asks / seconds };
}

const modes: [string, Options['audit']][] = [
  ['default :memory: log', undefined],
  ['audit: { worker: false } file log', { path: `/tmp/fairness-${process.pid}.db`, worker: false }],
  ['audit: false', false],
];
const closedLoopModes: [string, () => Options['audit']][] = [
  ['default :memory: log', () => undefined],
  ['audit: { worker: true } :memory: log', () => ({ worker: true })],
  ['file log (worker)', () => ({ path: `/tmp/fairness-${process.pid}-${Math.random().toString(36).slice(2)}.db` })],
  ['audit: { worker: false } file log', () => ({ path: `/tmp/fairness-${process.pid}-${Math.random().toString(36).slice(2)}.db`, worker: false })],
  ['audit: false', () => false],
];
console.log(`source: ${src ?? 'this checkout'}`);
for (const [name, audit] of modes) {
  for (const loop of ['ask', 'notify'] as const) {
    const runs: { late: number; messages: number }[] = [];
    for (let i = 0; i < RUNS; i++) runs.push(await once(audit, loop));
    runs.sort((x, y) => x.late - y.late);
    const f = (n: number) => n.toFixed(0);
    const mid = runs[runs.length >> 1]!;
    console.log(`| ${name}, ${loop} ping-pong | 50 ms deadline fired after ${f(runs[0]!.late)} / ${f(mid.late)} / ${f(runs.at(-1)!.late)} ms (best / median / worst of ${RUNS}); ${mid.messages} loop messages meanwhile |`);
  }
}

const askers = Number(process.env.ASKERS ?? 1000);
for (const [name, audit] of closedLoopModes) {
  const runs: { worst: number; asksPerSecond: number }[] = [];
  for (let i = 0; i < RUNS; i++) runs.push(await closedLoop(audit()));
  const lateness = runs.map((r) => r.worst.toFixed(0)).join(', ');
  const rate = runs.map((r) => r.asksPerSecond).sort((x, y) => x - y)[runs.length >> 1]!;
  console.log(`| ${name}, ${askers} closed-loop askers | worst lateness of a 50 ms deadline per run: ${lateness} ms; median ${rate.toFixed(0)} asks/s meanwhile | load ${(await import('node:os')).loadavg()[0]!.toFixed(1)} |`);
}
