import type { Contracts, Orchestrator } from '../index.js';

/**
 * The fake timer controls the kit uses: vitest's `vi` has them all (so does `jest` for the
 * two that matter). Only `advanceTimersByTimeAsync` is required.
 */
export interface FakeTimers {
  /** Moves the fake clock forward, running due timers and the microtasks between them. */
  advanceTimersByTimeAsync(ms: number): Promise<unknown>;
  /** Moves the fake clock to the next timer and runs it. Used by {@link advanceUntilIdle} when present. */
  advanceTimersToNextTimerAsync?(): Promise<unknown>;
  /** How many fake timers are pending. */
  getTimerCount?(): number;
  /** Whether fake timers are installed right now. */
  isFakeTimers?(): boolean;
}

/** What the idle helpers need of a bus. */
export type IdleSource = Pick<Orchestrator<Contracts>, 'onIdle'>;

/**
 * Lets `rounds` turns of the microtask queue run. Uses promises only, never a timer or
 * `setImmediate` (vitest fakes both by default), so it behaves the same under fake timers.
 * Enough for a message to reach its handler (the audit commit and delivery are
 * microtasks), without waiting for the handler to finish as {@link runUntilIdle} does.
 *
 * @example
 * const writer = stubAgent(bus, 'writer', { summarize: manual() });
 * const job = research.delegate('writer', 'summarize', {});
 * await flushMicrotasks();
 * expect(writer.waiting()).toHaveLength(1);
 */
export async function flushMicrotasks(rounds = 50): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

/** True when the bus is idle now, found out without waiting for any handler. */
async function idleNow(bus: IdleSource): Promise<boolean> {
  let idle = false;
  const probe = bus.onIdle().then(() => {
    idle = true;
  });
  // onIdle() of an idle bus resolves within a few microtasks; a busy one waits on a handler.
  await flushMicrotasks(20);
  void probe;
  return idle;
}

/**
 * Resolves when nothing is in flight on the bus: no handler running or waiting, nothing
 * staged for the audit log, and the microtasks that follow (replies reaching their askers,
 * the code after their `await`, the messages that code sends) have run too. Loops until
 * all of that is quiet at once.
 *
 * It waits on promises only, never on a timer, so it works the same with real and with
 * fake timers. It does not move time: a handler waiting on a timer (a `delay()` stub, a
 * `setTimeout`) or on nothing (`never()`) keeps the bus busy; under fake timers use
 * {@link advanceUntilIdle} for those. Held approvals and asks waiting for an explicit
 * `reply()` from outside do not count as in flight (as with `bus.onIdle()`).
 *
 * @example
 * const run = research.delegate('writer', 'summarize', { task: 'x' });
 * await runUntilIdle(bus);
 * expect(transcript.lines()).toContain('writer → research reply summarize replied');
 * await run;
 */
export async function runUntilIdle(bus: IdleSource): Promise<void> {
  for (;;) {
    await bus.onIdle();
    await flushMicrotasks();
    if (await idleNow(bus)) return;
  }
}

/** Options of {@link advanceUntilIdle}. */
export interface AdvanceOptions {
  /**
   * Fake ms per step when `timers` has no `advanceTimersToNextTimerAsync`. @default 100
   */
  stepMs?: number;
  /** Give up (with an error) after this many steps. @default 10000 */
  maxSteps?: number;
}

/**
 * Under fake timers: runs the bus until it is idle, moving the fake clock from timer to
 * timer while a handler waits on one (a `delay()` stub, a deadline that will abort a
 * `never()` stub). Resolves with how many fake ms it advanced.
 *
 * It refuses to wait forever: if the bus is busy and no fake timer is pending, nothing
 * the clock can do will finish the work (say, a handler awaiting a promise nobody
 * resolves, or a `never()` stub handling a notify, which has no deadline), so it rejects
 * with an error that says so instead of hanging the test.
 *
 * Note that moving to the next timer fires whatever is due first, deadlines included:
 * to check what happens *before* a deadline, advance by an exact amount with
 * `vi.advanceTimersByTimeAsync(ms)` instead.
 *
 * @example
 * vi.useFakeTimers();
 * stubAgent(bus, 'writer', { summarize: delay(2_000, { summary: 'ok' }) });
 * const job = research.delegate('writer', 'summarize', { task: 'x' });
 * expect(await advanceUntilIdle(bus, vi)).toBe(2_000);
 * await expect(job).resolves.toEqual({ summary: 'ok' });
 */
export async function advanceUntilIdle(bus: IdleSource, timers: FakeTimers, options: AdvanceOptions = {}): Promise<number> {
  const stepMs = options.stepMs ?? 100;
  const maxSteps = options.maxSteps ?? 10_000;
  if (timers.isFakeTimers?.() === false) {
    throw new Error('advanceUntilIdle(): fake timers are not installed (call vi.useFakeTimers() first, or use runUntilIdle())');
  }
  const start = Date.now();
  for (let step = 0; ; step++) {
    await flushMicrotasks();
    if (await idleNow(bus)) {
      await flushMicrotasks();
      if (await idleNow(bus)) return Date.now() - start;
    }
    if (timers.getTimerCount?.() === 0) {
      throw new Error(
        'advanceUntilIdle(): the bus is busy but no fake timer is pending, so advancing time cannot finish the work ' +
          '(a handler awaits something only the test can settle, or never answers a message that has no deadline, such as a notify)',
      );
    }
    if (step >= maxSteps) throw new Error(`advanceUntilIdle(): the bus is still busy after ${maxSteps} timer steps`);
    if (timers.advanceTimersToNextTimerAsync !== undefined) await timers.advanceTimersToNextTimerAsync();
    else await timers.advanceTimersByTimeAsync(stepMs);
  }
}
