import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FairYield, type FairClock } from '../src/fair-yield.js';
import { GroupCommit } from '../src/group-commit.js';
import { Orchestrator } from '../src/index.js';
import type { OrchestratorOptions } from '../src/index.js';
import type { AuditRecord } from '../src/audit/types.js';

/** A clock the test moves by hand, and a macrotask queue it runs by hand. */
function manualClock(): FairClock & { t: number; later: (() => void)[]; runLater(): void } {
  const clock = {
    t: 0,
    later: [] as (() => void)[],
    now: () => clock.t,
    defer: (task: () => void) => void clock.later.push(task),
    runLater() {
      const tasks = clock.later.splice(0);
      for (const task of tasks) task();
    },
  };
  return clock;
}

/** One attempt record (the group commit only counts them). */
function record(): AuditRecord {
  return { kind: 'outcome', ts: 0, messageId: 'm', to: 'b', outcome: 'replied' };
}

async function microtasks(rounds = 100): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

describe('FairYield', () => {
  it('keeps the first tasks of a macrotask on microtasks, whatever the clock says', async () => {
    const clock = manualClock();
    const fair = new FairYield(clock, 4, 16);
    let ran = 0;
    for (let i = 0; i < 16; i++) {
      clock.t += 100;
      fair.schedule(() => ran++);
    }
    await microtasks(5);
    expect(ran).toBe(16);
  });

  it('moves a task to the next macrotask once the slice has run long enough, then starts a new slice', async () => {
    const clock = manualClock();
    const fair = new FairYield(clock, 4, 2);
    const order: string[] = [];
    fair.schedule(() => order.push('a')); // opens the slice at t = 0
    clock.t = 1;
    fair.schedule(() => order.push('b')); // 1 task, under the count
    clock.t = 3;
    fair.schedule(() => order.push('c')); // 3 ms: under the time
    clock.t = 5;
    fair.schedule(() => order.push('d')); // past both: deferred
    await microtasks(5);
    expect(order).toEqual(['a', 'b', 'c']);
    clock.runLater(); // the slice's end marker, then d
    expect(order).toEqual(['a', 'b', 'c', 'd']);
    fair.schedule(() => order.push('e')); // a new slice: microtask again
    await microtasks(5);
    expect(order.at(-1)).toBe('e');
  });
});

describe('GroupCommit fair flushing', () => {
  it('lets a macrotask run between two flushes while a sender loops on commits', async () => {
    const clock = manualClock();
    const commit = new GroupCommit(undefined, 250, () => {}, new FairYield(clock, 4, 2));
    let flushes = 0;
    // A sender that sends again once each send is committed (its `await`): a pure microtask loop.
    const loop = (): void => {
      flushes++;
      clock.t += 1; // each cycle costs 1 ms
      if (flushes < 1_000) queueMicrotask(() => commit.stage(undefined, loop));
    };
    commit.stage(undefined, loop);
    await microtasks(200);
    const before = flushes;
    expect(before).toBeLessThan(1_000); // the loop stopped for the event loop
    expect(clock.later.length).toBeGreaterThan(0);
    clock.runLater(); // what the event loop does next: the timers had their turn, then the flush
    await microtasks(200);
    expect(before).toBeGreaterThan(2);
    expect(flushes).toBeGreaterThan(before); // and the loop goes on after it
  });

  it('writes a full batch at once while its flush waits for the next macrotask, and runs its callbacks only then', async () => {
    const clock = manualClock();
    const appended: number[] = [];
    const log = { append: (r: readonly unknown[]) => void appended.push(r.length), query: () => [], verify: () => ({ ok: true, checked: 0 }), close: () => undefined };
    const commit = new GroupCommit(log, 10, () => {}, new FairYield(clock, 0, 1));
    let committed = 0;
    commit.stage(record(), () => committed++); // opens the slice
    await microtasks(2);
    clock.t = 10;
    for (let i = 0; i < 10; i++) commit.stage(record(), () => committed++); // the first is deferred, the 10th writes ahead
    await microtasks(2);
    expect(appended).toEqual([1, 10]); // the records are not piling up
    expect(committed).toBe(1); // but their deliveries wait for the event loop's turn
    clock.runLater();
    expect(committed).toBe(11);
  });

  it('settles at most a slice of sends per macrotask, however many senders share one flush', async () => {
    const clock = manualClock();
    const commit = new GroupCommit(undefined, 250, () => {}, new FairYield(clock, 4, 16));
    let committed = 0;
    // 10,000 senders staged in one tick; each delivery costs 0.1 ms.
    for (let i = 0; i < 10_000; i++)
      commit.stage(undefined, () => {
        committed++;
        clock.t += 0.1;
      });
    await microtasks(20);
    // One chunk of 250 is past the 4 ms slice: the other chunks wait for the next macrotask.
    expect(committed).toBe(250);
    let turns = 1;
    while (committed < 10_000 && turns < 100) {
      clock.runLater();
      await microtasks(20);
      turns++;
    }
    expect(committed).toBe(10_000);
    expect(turns).toBe(40);
  });
});

describe('timers beside a looping sender', () => {
  let bus: Orchestrator | undefined;
  afterEach(async () => {
    await bus?.close();
    bus = undefined;
  });

  const audits: [string, OrchestratorOptions['audit']][] = [
    ['the default :memory: log', undefined],
    ['audit: false', false],
    ['audit: { worker: false }', { path: ':memory:', worker: false }],
  ];

  it.each(audits)('fires a timer while an ask ping-pong loops, with %s', async (_name, audit) => {
    bus = new Orchestrator({ policies: [{ from: '*', to: '*', allow: ['ask', 'notify'] }], limits: { rate: false }, ...(audit !== undefined ? { audit } : {}) });
    bus.register('echo', { handlers: { ping: (p) => p } });
    const sender = bus.register('sender');
    let fired = false;
    setTimeout(() => (fired = true), 0);
    let asks = 0;
    // Without yielding, all of these run before the timer (one macrotask of microtasks).
    while (!fired && asks < 50_000) {
      await sender.ask('echo', 'ping', asks);
      asks++;
    }
    expect(fired).toBe(true);
    expect(asks).toBeLessThan(50_000);
  });

  it('fires a timer while a notify ping-pong loops between two agents', async () => {
    bus = new Orchestrator({ policies: [{ from: '*', to: '*', allow: ['notify'] }], limits: { rate: false }, audit: false });
    let hops = 0;
    let fired = false;
    const a = bus.register('a', { handlers: { ball: () => void (!fired && hops < 50_000 && (hops++, a.notify('ball', hops, { to: ['b'] }))) } });
    const b = bus.register('b', { handlers: { ball: () => void (!fired && hops < 50_000 && (hops++, b.notify('ball', hops, { to: ['a'] }))) } });
    setTimeout(() => (fired = true), 0);
    await a.notify('ball', 0, { to: ['b'] });
    while (!fired && hops < 50_000) await new Promise((r) => setImmediate(r));
    expect(fired).toBe(true);
    expect(hops).toBeLessThan(50_000);
  });
});

describe('fairness beside 1,000 closed-loop askers', () => {
  let bus: Orchestrator | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    await bus?.close();
    bus = undefined;
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  const modes: [string, () => OrchestratorOptions['audit']][] = [
    ['the default :memory: log', () => undefined],
    ['audit: false', () => false],
    ['a :memory: log on a worker', () => ({ worker: true })],
    ['a file log', () => ({ path: join((dir = mkdtempSync(join(tmpdir(), 'fair-'))), 'audit.db') })],
    ['a file log with worker: false', () => ({ path: join((dir = mkdtempSync(join(tmpdir(), 'fair-'))), 'audit.db'), worker: false })],
  ];

  /** Starts 1,000 askers that each ask again as soon as answered, until `stop()` says so or 30,000 asks were answered. */
  function closedLoop(audit: OrchestratorOptions['audit'], stop: () => boolean): { asks: () => number; done: Promise<unknown> } {
    bus = new Orchestrator({ policies: [{ from: '*', to: '*', allow: ['ask'] }], limits: { rate: false }, ...(audit !== undefined ? { audit } : {}) });
    bus.register('echo', { handlers: { ping: (p) => p } });
    let asks = 0;
    const loops: Promise<void>[] = [];
    for (let i = 0; i < 1_000; i++) {
      const asker = bus.register(`asker-${i}`);
      loops.push(
        (async () => {
          while (!stop() && asks < 30_000) {
            await asker.ask('echo', 'ping', i);
            asks++;
          }
        })(),
      );
    }
    return { asks: () => asks, done: Promise.all(loops) };
  }

  it.each(modes)('lets a timer run within 10,000 asks, with %s', async (_name, audit) => {
    let firedAt = -1;
    const loop = closedLoop(audit(), () => firedAt >= 0);
    setTimeout(() => (firedAt = loop.asks()), 0);
    await loop.done;
    // Without yielding, the askers keep one macrotask busy until they stop at 30,000.
    expect(firedAt).toBeGreaterThanOrEqual(0);
    expect(firedAt).toBeLessThan(10_000);
  });

  it.each(modes.slice(0, 2))('rejects an ask with TIMEOUT at its deadline within 10,000 asks of the others, with %s', async (_name, audit) => {
    let timedOutAt = -1;
    const loop = closedLoop(audit(), () => timedOutAt >= 0);
    const waiter = bus!.register('waiter');
    bus!.register('silent', { handlers: { wait: (_p, ctx) => new Promise<void>((r) => ctx.signal.addEventListener('abort', () => r())) } });
    const outcome = waiter.ask('silent', 'wait', {}, { timeoutMs: 1 }).catch((e: unknown) => {
      timedOutAt = loop.asks();
      return e;
    });
    await loop.done;
    expect(await outcome).toMatchObject({ code: 'TIMEOUT' });
    expect(timedOutAt).toBeGreaterThanOrEqual(0);
    expect(timedOutAt).toBeLessThan(10_000);
  });
});
