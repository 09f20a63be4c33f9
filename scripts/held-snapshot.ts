// What a bus's thread does while another connection holds a read snapshot of its file log
// (so no checkpoint can shrink the WAL): the WAL is filled to three quarters of a 1 MiB
// maxWalBytes (the last ask of the fill waits the episode's one wait, 5 s, and is refused),
// then 20 looping senders run for HOLD_MS while the snapshot is held; a 10 ms interval counts
// its ticks on the bus's thread in both phases. Measurement only (docs/reliability.md,
// "A reader that holds its snapshot"):
//   npx tsx scripts/held-snapshot.ts            (WORKER=false: the inline log; HOLD_MS=12000)
//   SWITCHBOARD_SRC=/path/to/other/src npx tsx scripts/held-snapshot.ts   (another tree)
import Database from 'better-sqlite3';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const src = process.env.SWITCHBOARD_SRC === undefined ? '../src/index.js' : pathToFileURL(resolve(process.env.SWITCHBOARD_SRC, 'index.ts')).href;
const { Orchestrator } = (await import(src)) as typeof import('../src/index.js');
const worker = process.env.WORKER !== 'false';
const hold = Number(process.env.HOLD_MS ?? 12_000);
const dir = mkdtempSync(join(tmpdir(), 'switchboard-snapshot-'));
const path = join(dir, 'audit.db');
const bus = new Orchestrator({ policies: [{ from: '*', to: '*', allow: ['ask'] }], limits: { rate: false }, audit: { path, worker, maxWalBytes: 2 ** 20 } });
bus.register('echo', { handlers: { ping: (p) => p } });
const first = bus.register('first');
await first.ask('echo', 'ping', {});
const reader = new Database(path, { readonly: true });
reader.exec('BEGIN');
reader.prepare('SELECT count(*) FROM audit_batch').get();
const tick = () => {
  const t = { ticks: 0, longestGap: 0, last: performance.now() };
  const interval = setInterval(() => {
    const now = performance.now();
    t.longestGap = Math.max(t.longestGap, now - t.last);
    t.last = now;
    t.ticks++;
  }, 10);
  return { t, stop: () => (clearInterval(interval), (t.longestGap = Math.max(t.longestGap, performance.now() - t.last))) };
};
const fillTicks = tick();
const fillStarted = performance.now();
let episodes = 0;
bus.events.on('audit:backpressure', () => episodes++);
// Until the first refusal: the WAL is at three quarters and the episode's wait has run out.
let filled = 0;
for (;;) {
  try {
    await first.ask('echo', 'ping', { text: 'x'.repeat(200) });
    filled++;
  } catch {
    break;
  }
}
const fillMs = performance.now() - fillStarted;
fillTicks.stop();
const holdTicks = tick();
let stop = false;
let refused = 0;
let answered = 0;
const started = performance.now();
const senders = Array.from({ length: 20 }, async (_, i) => {
  const sender = bus.register(`loop-${i}`);
  while (!stop) {
    try {
      await sender.ask('echo', 'ping', {});
      answered++;
    } catch {
      refused++;
    }
    await new Promise((r) => setImmediate(r));
  }
});
await new Promise((r) => setTimeout(r, hold));
const heldMs = performance.now() - started;
reader.exec('COMMIT');
reader.close();
stop = true;
holdTicks.stop();
await Promise.all(senders);
console.log(
  JSON.stringify({
    worker,
    fill: { asks: filled, ms: Math.round(fillMs), ticks: fillTicks.t.ticks, longestGapMs: Math.round(fillTicks.t.longestGap) },
    hold: { ms: hold, heldMs: Math.round(heldMs), ticks: holdTicks.t.ticks, ticksIfNeverDelayed: Math.round(hold / 10), longestGapMs: Math.round(holdTicks.t.longestGap), refused, answered },
    episodes,
    loadavg: readFileSync('/proc/loadavg', 'utf8').trim(),
  }),
);
await bus.close();
rmSync(dir, { recursive: true, force: true });
