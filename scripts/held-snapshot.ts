// What a bus's thread does while another connection holds a read snapshot of its file log
// (so no checkpoint can shrink the WAL): the WAL is filled to three quarters of a 1 MiB
// maxWalBytes, then 20 looping senders run for HOLD_MS while the snapshot is held, and a
// 10 ms interval counts its ticks on the bus's thread. Measurement only (docs/reliability.md,
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
let ticks = 0;
let longestGap = 0;
let last = performance.now();
const interval = setInterval(() => {
  const now = performance.now();
  longestGap = Math.max(longestGap, now - last);
  last = now;
  ticks++;
}, 10);
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
await Promise.all(senders);
clearInterval(interval);
console.log(
  JSON.stringify({ worker, filled, holdMs: hold, heldMs: Math.round(heldMs), ticks, ticksIfNeverDelayed: Math.round(hold / 10), longestGapMs: Math.round(longestGap), refused, answered, episodes, loadavg: readFileSync('/proc/loadavg', 'utf8').trim() }),
);
await bus.close();
rmSync(dir, { recursive: true, force: true });
