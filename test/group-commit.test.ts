// GroupCommit (src/group-commit.ts): audit before delivery without a write per message.
// Tested through its public face only (stage, flush, shutdown, enabled) against fake logs,
// so the promises hold whatever the batching inside does.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AsyncAuditLog, AuditLog, AuditRecord } from '../src/audit/types.js';
import { BusError } from '../src/errors.js';
import { FairYield, type FairClock } from '../src/fair-yield.js';
import { GroupCommit, MAX_HELD_RECORDS } from '../src/group-commit.js';
import { flushMicrotasks } from '../src/testing/index.js';

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

/** A record that says which message it belongs to. */
function rec(messageId: string): AuditRecord {
  return {
    kind: 'attempt', ts: 1, messageId, from: 'a', to: 'b', type: 'ask', intent: 'q',
    payloadHash: 'h', payloadBytes: 2, decision: 'allowed', policyVersion: 1, conversationId: messageId,
  };
}

const ids = (records: readonly AuditRecord[]): string[] => records.map((r) => (r.kind === 'digest' ? r.digestId : r.messageId));

/** A synchronous log: each append is one transaction; `failNext` makes appends throw. */
function syncLog(): AuditLog & { appends: string[][]; failNext: number; failWith: unknown } {
  const log = {
    appends: [] as string[][],
    failNext: 0,
    failWith: new Error('SQLITE_FULL: database or disk is full') as unknown,
    append(records: readonly AuditRecord[]) {
      if (log.failNext > 0) {
        log.failNext--;
        throw log.failWith;
      }
      log.appends.push(ids(records));
    },
    query: () => [],
    verify: () => ({ ok: true, checked: 0 }),
    close: () => undefined,
  };
  return log;
}

/** A pipelined log (as the worker log): chunks wait in flight until the test answers them, in order. */
function asyncLog(): AsyncAuditLog & { sent: string[][]; inFlight(): number; commitNext(error?: Error): void } {
  const waiting: { records: string[]; done: (error?: Error) => void }[] = [];
  const log = {
    sent: [] as string[][],
    inFlight: () => waiting.length,
    commitNext(error?: Error) {
      const next = waiting.shift();
      if (next === undefined) throw new Error('no chunk in flight');
      next.done(error);
    },
    appendAsync(records: readonly AuditRecord[], done: (error?: Error) => void) {
      log.sent.push(ids(records));
      waiting.push({ records: ids(records), done });
    },
    drain() {
      while (waiting.length > 0) log.commitNext();
    },
    append: () => {
      throw new Error('a pipelined log is written through appendAsync');
    },
    query: () => [],
    verify: () => ({ ok: true, checked: 0 }),
    close: () => undefined,
  };
  return log;
}

/** A fair clock whose slice never ends: every flush stays on a microtask, deterministically. */
const steadyClock: FairClock = { now: () => 0, defer: () => undefined };

function commitOf(log: AuditLog | undefined, maxBatch = 250, onError: (error: Error, records: number) => void = () => {}): GroupCommit {
  return new GroupCommit(log, maxBatch, onError, new FairYield(steadyClock));
}

/** Callbacks that write what happened, in order, to `events`. */
function waiter(events: string[], name: string): [() => void, (error: BusError) => void] {
  return [() => void events.push(`${name} committed`), (error) => void events.push(`${name} ${error.code}`)];
}

describe('GroupCommit#stage()', () => {
  it('writes every record staged in one tick in one append, after the tick, in staging order', async () => {
    const log = syncLog();
    const commit = commitOf(log);
    commit.stage(rec('m1'));
    commit.stage([rec('m2'), rec('m3')]);
    commit.stage(rec('m4'));
    expect(log.appends).toEqual([]); // nothing is written while the tick runs
    await flushMicrotasks();
    expect(log.appends).toEqual([['m1', 'm2', 'm3', 'm4']]);
  });

  it("runs a send's onCommit only after the append that holds its records has returned", async () => {
    const log = syncLog();
    const commit = commitOf(log);
    const seenAtCommit: number[] = [];
    commit.stage(rec('m1'), () => seenAtCommit.push(log.appends.length));
    commit.stage(rec('m2'), () => seenAtCommit.push(log.appends.length));
    await flushMicrotasks();
    expect(seenAtCommit).toEqual([1, 1]);
  });

  it('runs the callbacks in staging order, entries without records included', async () => {
    const events: string[] = [];
    const commit = commitOf(syncLog());
    commit.stage(rec('m1'), ...waiter(events, 'a'));
    commit.stage(undefined, ...waiter(events, 'b')); // an outcome with nothing to record (audit: false rows)
    commit.stage([], ...waiter(events, 'c'));
    commit.stage(rec('m2'), ...waiter(events, 'd'));
    await flushMicrotasks();
    expect(events).toEqual(['a committed', 'b committed', 'c committed', 'd committed']);
  });

  it('writes what a callback stages as the next batch, after the batch that committed it', async () => {
    const log = syncLog();
    const commit = commitOf(log);
    const events: string[] = [];
    commit.stage(rec('m1'), () => {
      events.push('m1 committed');
      commit.stage(rec('m1-reply'), () => events.push('m1-reply committed'));
    });
    commit.stage(rec('m2'), () => events.push('m2 committed'));
    await flushMicrotasks();
    expect(log.appends).toEqual([['m1', 'm2'], ['m1-reply']]);
    expect(events).toEqual(['m1 committed', 'm2 committed', 'm1-reply committed']);
  });

  it('lets what a callback queued before staging (a reply sent ahead of its row) run before that row is written', async () => {
    const log = syncLog();
    const commit = commitOf(log);
    const events: string[] = [];
    commit.stage(rec('ask'), () => {
      // As a reply sent ahead of its row does: the socket flushes on a microtask queued first.
      queueMicrotask(() => events.push(`socket flush, appends: ${log.appends.length}`));
      commit.stage(rec('reply'), () => events.push('reply committed'));
    });
    await flushMicrotasks();
    expect(events).toEqual(['socket flush, appends: 1', 'reply committed']);
    expect(log.appends).toEqual([['ask'], ['reply']]);
  });

  it('keeps staging order when a callback flushes the log from inside the commit', async () => {
    const log = syncLog();
    const commit = commitOf(log);
    const events: string[] = [];
    commit.stage(rec('m1'), () => {
      events.push('m1');
      commit.stage(rec('m3'), () => events.push('m3'));
      commit.flush(); // a handler reading the log (getMessageLog) flushes from inside a callback
      events.push('m1 done');
    });
    commit.stage(rec('m2'), () => events.push('m2'));
    await flushMicrotasks();
    expect(log.appends).toEqual([['m1', 'm2'], ['m3']]); // the inner flush wrote m3 at once
    expect(events).toEqual(['m1', 'm1 done', 'm2', 'm3']); // but its callback waited its turn
  });
});

describe('GroupCommit batch size (maxBatch)', () => {
  it('splits a large tick into appends of at most maxBatch records', async () => {
    const log = syncLog();
    const commit = commitOf(log, 3);
    for (let i = 1; i <= 7; i++) commit.stage(rec(`m${i}`));
    await flushMicrotasks();
    expect(log.appends).toEqual([
      ['m1', 'm2', 'm3'],
      ['m4', 'm5', 'm6'],
      ['m7'],
    ]);
  });

  it("never splits one send's records across two appends", async () => {
    const log = syncLog();
    const commit = commitOf(log, 3);
    for (let i = 1; i <= 5; i++) commit.stage([rec(`s${i}-attempt`), rec(`s${i}-outcome`)]);
    await flushMicrotasks();
    expect(log.appends.flat()).toEqual(Array.from({ length: 5 }, (_, i) => [`s${i + 1}-attempt`, `s${i + 1}-outcome`]).flat());
    expect(log.appends.length).toBeGreaterThan(1);
    for (const append of log.appends) {
      expect(append.length % 2).toBe(0);
      for (let i = 0; i < append.length; i += 2) expect(append[i + 1]).toBe(append[i]!.replace('attempt', 'outcome'));
    }
  });

  it('writes a send with more records than maxBatch in one append of its own', async () => {
    const log = syncLog();
    const commit = commitOf(log, 2);
    commit.stage([rec('big-1'), rec('big-2'), rec('big-3'), rec('big-4')]);
    await flushMicrotasks();
    expect(log.appends).toEqual([['big-1', 'big-2', 'big-3', 'big-4']]);
  });
});

describe('GroupCommit when the log cannot be written (fail closed)', () => {
  it('fails every waiter of the refused batch with AUDIT_UNAVAILABLE and commits none of them', async () => {
    const log = syncLog();
    log.failNext = 1;
    const errors: [Error, number][] = [];
    const commit = commitOf(log, 250, (error, records) => errors.push([error, records]));
    const events: string[] = [];
    const failures: BusError[] = [];
    commit.stage(rec('m1'), ...waiter(events, 'a'));
    commit.stage([rec('m2'), rec('m3')], () => events.push('b committed'), (error) => failures.push(error));
    commit.stage(undefined, ...waiter(events, 'c')); // no records, but it waits on the same batch
    await flushMicrotasks();
    expect(events).toEqual(['a AUDIT_UNAVAILABLE', 'c AUDIT_UNAVAILABLE']);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toBeInstanceOf(BusError);
    expect(failures[0]!.message).toMatch(/3 records refused: SQLITE_FULL/);
    expect((failures[0]!.cause as Error).message).toMatch(/SQLITE_FULL/);
    expect(errors).toHaveLength(1); // reported once per batch, with its record count
    expect(errors[0]![0]).toBe(failures[0]);
    expect(errors[0]![1]).toBe(3);
    expect(log.appends).toEqual([]);
  });

  it('passes an AUDIT_UNAVAILABLE from the log on unchanged', async () => {
    const log = syncLog();
    log.failNext = 1;
    log.failWith = new BusError('AUDIT_UNAVAILABLE', 'the audit file was replaced');
    const commit = commitOf(log);
    const failures: BusError[] = [];
    commit.stage(rec('m1'), undefined, (error) => failures.push(error));
    await flushMicrotasks();
    expect(failures).toEqual([log.failWith]);
  });

  it('fails only the batch whose append failed: the batches before and after it commit', async () => {
    const log = syncLog();
    const commit = commitOf(log, 2);
    const events: string[] = [];
    let appends = 0;
    const append = log.append.bind(log);
    log.append = (records) => {
      if (++appends === 2) throw new Error('SQLITE_IOERR');
      append(records);
    };
    for (const name of ['a', 'b', 'c', 'd', 'e', 'f']) commit.stage(rec(name), ...waiter(events, name));
    await flushMicrotasks();
    expect(events).toEqual(['a committed', 'b committed', 'c AUDIT_UNAVAILABLE', 'd AUDIT_UNAVAILABLE', 'e committed', 'f committed']);
    expect(log.appends).toEqual([['a', 'b'], ['e', 'f']]);
  });

  it('writes again on the next tick once the log recovers', async () => {
    const log = syncLog();
    log.failNext = 1;
    const commit = commitOf(log);
    const events: string[] = [];
    commit.stage(rec('m1'), ...waiter(events, 'm1'));
    await flushMicrotasks();
    commit.stage(rec('m2'), ...waiter(events, 'm2'));
    await flushMicrotasks();
    expect(events).toEqual(['m1 AUDIT_UNAVAILABLE', 'm2 committed']);
    expect(log.appends).toEqual([['m2']]);
  });

  it('goes on with the other callbacks when one throws, and says so in a process warning', async () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const commit = commitOf(syncLog());
    const events: string[] = [];
    commit.stage(rec('m1'), () => {
      throw new Error('a bug in bus code');
    });
    commit.stage(rec('m2'), ...waiter(events, 'm2'));
    await flushMicrotasks();
    expect(events).toEqual(['m2 committed']);
    expect(warn).toHaveBeenCalledWith(expect.stringContaining('a bug in bus code'), expect.objectContaining({ code: 'SWITCHBOARD_INTERNAL' }));
  });
});

describe('GroupCommit with a pipelined log (AsyncAuditLog)', () => {
  it('hands the batch to the log without waiting, and runs its callbacks only when the log confirms the commit', async () => {
    const log = asyncLog();
    const commit = commitOf(log);
    const events: string[] = [];
    commit.stage(rec('m1'), ...waiter(events, 'm1'));
    await flushMicrotasks();
    expect(log.sent).toEqual([['m1']]);
    expect(events).toEqual([]);
    log.commitNext();
    expect(events).toEqual(['m1 committed']);
  });

  it('gathers what is staged while a batch is in flight into the next batch, committed after it', async () => {
    const log = asyncLog();
    const commit = commitOf(log);
    const events: string[] = [];
    commit.stage(rec('m1'), ...waiter(events, 'm1'));
    await flushMicrotasks();
    commit.stage(rec('m2'), ...waiter(events, 'm2'));
    commit.stage(rec('m3'), ...waiter(events, 'm3'));
    await flushMicrotasks();
    expect(log.sent).toEqual([['m1'], ['m2', 'm3']]);
    log.commitNext();
    expect(events).toEqual(['m1 committed']);
    log.commitNext();
    expect(events).toEqual(['m1 committed', 'm2 committed', 'm3 committed']);
  });

  it('splits what it hands over into batches of at most maxBatch records', async () => {
    const log = asyncLog();
    const commit = commitOf(log, 2);
    for (let i = 1; i <= 5; i++) commit.stage(rec(`m${i}`));
    await flushMicrotasks();
    expect(log.sent).toEqual([['m1', 'm2'], ['m3', 'm4'], ['m5']]);
  });

  it('stops handing batches over at its in-flight limit; what is staged meanwhile waits and goes over in one batch', async () => {
    const log = asyncLog();
    const commit = commitOf(log);
    let staged = 0;
    const stageTicks = async (ticks: number): Promise<void> => {
      for (let i = 0; i < ticks; i++) {
        commit.stage(rec(`m${++staged}`));
        await flushMicrotasks();
      }
    };
    await stageTicks(100); // nothing is confirmed meanwhile
    const inFlight = log.inFlight();
    expect(inFlight).toBeGreaterThan(1); // pipelined,
    expect(inFlight).toBeLessThan(100); // but bounded
    await stageTicks(20);
    expect(log.inFlight()).toBe(inFlight); // still at the limit: the new records wait
    log.commitNext(); // a slot frees up
    await flushMicrotasks();
    expect(log.inFlight()).toBe(inFlight);
    const waitedBatch = log.sent.at(-1)!;
    expect(waitedBatch.length).toBeGreaterThan(1); // everything that waited, together
    log.drain();
    expect(log.sent.flat()).toEqual(Array.from({ length: staged }, (_, i) => `m${i + 1}`)); // each record once, in order
  });

  it('fails the waiters of a batch the log refuses with AUDIT_UNAVAILABLE, and commits the next one', async () => {
    const log = asyncLog();
    const errors: number[] = [];
    const commit = commitOf(log, 250, (_error, records) => errors.push(records));
    const events: string[] = [];
    commit.stage(rec('m1'), ...waiter(events, 'm1'));
    commit.stage(rec('m2'), ...waiter(events, 'm2'));
    await flushMicrotasks();
    commit.stage(rec('m3'), ...waiter(events, 'm3'));
    await flushMicrotasks();
    log.commitNext(new Error('SQLITE_FULL'));
    log.commitNext();
    expect(events).toEqual(['m1 AUDIT_UNAVAILABLE', 'm2 AUDIT_UNAVAILABLE', 'm3 committed']);
    expect(errors).toEqual([2]);
  });
});

describe('GroupCommit#flush()', () => {
  it('writes what is staged and runs its callbacks before it returns', () => {
    const log = syncLog();
    const commit = commitOf(log);
    const events: string[] = [];
    commit.stage(rec('m1'), ...waiter(events, 'm1'));
    commit.flush();
    expect(log.appends).toEqual([['m1']]);
    expect(events).toEqual(['m1 committed']);
  });

  it('waits for every batch in flight on a pipelined log', async () => {
    const log = asyncLog();
    const commit = commitOf(log);
    const events: string[] = [];
    commit.stage(rec('m1'), ...waiter(events, 'm1'));
    await flushMicrotasks(); // m1 is in flight
    commit.stage(rec('m2'), ...waiter(events, 'm2')); // m2 is staged
    commit.flush();
    expect(log.inFlight()).toBe(0);
    expect(events).toEqual(['m1 committed', 'm2 committed']);
  });

  it('is harmless with nothing staged, and the scheduled flush then has nothing left to do', async () => {
    const log = syncLog();
    const commit = commitOf(log);
    commit.flush();
    commit.stage(rec('m1'));
    commit.flush();
    await flushMicrotasks();
    expect(log.appends).toEqual([['m1']]);
  });
});

describe('GroupCommit#shutdown() and enabled', () => {
  it('writes what is staged, then records nothing more', async () => {
    const log = syncLog();
    const commit = commitOf(log);
    expect(commit.enabled).toBe(true);
    commit.stage(rec('m1'));
    commit.shutdown();
    expect(log.appends).toEqual([['m1']]);
    expect(commit.enabled).toBe(false);
    commit.stage(rec('m2'));
    await flushMicrotasks();
    expect(log.appends).toEqual([['m1']]);
  });

  it('without a log (audit: false) records nothing and still runs the callbacks in order', async () => {
    const commit = commitOf(undefined);
    expect(commit.enabled).toBe(false);
    const events: string[] = [];
    commit.stage(rec('m1'), ...waiter(events, 'a'));
    commit.stage(undefined, ...waiter(events, 'b'));
    await flushMicrotasks();
    expect(events).toEqual(['a committed', 'b committed']);
  });
});

describe('GroupCommit timers', () => {
  it('flushes on microtasks under fake timers without anyone advancing them, and leaves no timer behind', async () => {
    vi.useFakeTimers();
    const log = syncLog();
    const commit = new GroupCommit(log, 250, () => {}); // the default fair scheduling
    const events: string[] = [];
    for (let i = 1; i <= 5; i++) commit.stage(rec(`m${i}`), ...waiter(events, `m${i}`));
    await flushMicrotasks();
    expect(log.appends).toEqual([['m1', 'm2', 'm3', 'm4', 'm5']]);
    expect(events).toHaveLength(5);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('leaves no timer behind with a pipelined log once its batches are confirmed', async () => {
    vi.useFakeTimers();
    const log = asyncLog();
    const commit = new GroupCommit(log, 2, () => {});
    for (let i = 1; i <= 5; i++) commit.stage(rec(`m${i}`));
    await flushMicrotasks();
    log.drain();
    await flushMicrotasks();
    expect(log.inFlight()).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('GroupCommit: records nobody waits for, after a failed write', () => {
  it('holds them (not those whose stager was told), and writes them first once the log works again', () => {
    const log = syncLog();
    const commit = new GroupCommit(log, 250, () => {});
    log.failNext = 1;
    let refused = 0;
    commit.stage(rec('outcome-1'));
    commit.stage(rec('attempt-1'), () => {}, () => refused++);
    commit.stage(rec('outcome-2'));
    commit.flush();
    expect(refused).toBe(1);
    expect(commit.heldCount).toBe(2);
    commit.stage(rec('attempt-2'), () => {});
    commit.flush();
    expect(log.appends).toEqual([['outcome-1', 'outcome-2'], ['attempt-2']]);
    expect(commit.heldCount).toBe(0);
  });

  it('tries again on a timer while nothing else is written', () => {
    vi.useFakeTimers();
    const log = syncLog();
    const commit = new GroupCommit(log, 250, () => {});
    log.failNext = 2;
    commit.stage(rec('outcome-1'));
    commit.flush();
    vi.advanceTimersByTime(1_000); // still failing
    expect(commit.heldCount).toBe(1);
    vi.advanceTimersByTime(1_000);
    expect(log.appends).toEqual([['outcome-1']]);
    expect(commit.heldCount).toBe(0);
    commit.shutdown();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('writes held records again in transactions of at most maxBatch, in order, and holds again from the first that fails', () => {
    const log = syncLog();
    const commit = commitOf(log, 4);
    log.failNext = 3; // the three chunks of ten records
    for (let i = 0; i < 10; i++) commit.stage(rec(`o${i}`));
    commit.flush();
    expect(commit.heldCount).toBe(10);
    log.failNext = 0;
    const append = log.append;
    let fails = 2; // the second slice, through this flush (which tries the held records twice)
    log.append = (records: readonly AuditRecord[]) => {
      if (records[0] !== undefined && ids([records[0]])[0] === 'o4' && fails-- > 0) throw new Error('SQLITE_FULL');
      append(records);
    };
    commit.stage(rec('n0'));
    commit.flush();
    // The first slice written; the rest held again, ahead of the newer record (which was written).
    expect(log.appends).toEqual([['o0', 'o1', 'o2', 'o3'], ['n0']]);
    expect(commit.heldCount).toBe(6);
    commit.stage(rec('n1'));
    commit.flush();
    expect(log.appends.slice(2)).toEqual([['o4', 'o5', 'o6', 'o7'], ['o8', 'o9'], ['n1']]);
    commit.shutdown();
  });

  it('sends held records again to a pipelined log in one request (one transaction there), and holds them all again, in order, when it fails', async () => {
    const log = asyncLog();
    const commit = commitOf(log, 4);
    for (let i = 0; i < 10; i++) commit.stage(rec(`o${i}`));
    await flushMicrotasks();
    while (log.inFlight() > 0) log.commitNext(new Error('SQLITE_BUSY'));
    await flushMicrotasks();
    expect(commit.heldCount).toBe(10);
    const held = Array.from({ length: 10 }, (_, i) => `o${i}`);
    commit.stage(rec('n0'));
    await flushMicrotasks();
    expect(log.sent.slice(-2)).toEqual([held, ['n0']]);
    // The held records fail again while what came after them commits: none of them is
    // written after a later one of theirs (slices in flight at once could fail one and commit the next).
    log.commitNext(new Error('SQLITE_BUSY'));
    log.commitNext();
    await flushMicrotasks();
    expect(commit.heldCount).toBe(10);
    commit.stage(rec('n1'));
    await flushMicrotasks();
    expect(log.sent.slice(-2)).toEqual([held, ['n1']]);
    log.drain();
    await flushMicrotasks();
    expect(commit.heldCount).toBe(0);
    commit.shutdown();
  });

  it(`keeps at most ${MAX_HELD_RECORDS} records, dropping the oldest, and says how many were dropped`, () => {
    const warnings: string[] = [];
    vi.spyOn(process, 'emitWarning').mockImplementation(((w: string) => void warnings.push(w)) as typeof process.emitWarning);
    const log = syncLog();
    const commit = new GroupCommit(log, 100_000, () => {});
    log.failNext = 1;
    commit.stage(Array.from({ length: MAX_HELD_RECORDS + 5 }, (_, i) => rec(`o${i}`)));
    commit.flush();
    expect(commit.heldCount).toBe(MAX_HELD_RECORDS);
    commit.flush();
    expect(log.appends[0]).toHaveLength(MAX_HELD_RECORDS);
    expect(log.appends[0]![0]).toBe('o5');
    expect(warnings.join('\n')).toMatch(/5 audit records held while it failed were dropped/);
    commit.shutdown();
  });
});
