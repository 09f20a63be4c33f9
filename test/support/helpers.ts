// Shared setup for the bus tests, on the public test kit (src/testing, shipped as
// `agent-switchboard/testing`): a fresh test bus per test, closed after it. What is here
// is only what the kit does not offer: a registry of the buses a test made, error
// extractors, a gate, and a handler body that honours its signal.
import { vi } from 'vitest';
import { BusError, isBusError, type Orchestrator, type OrchestratorOptions } from '../../src/index.js';
import { closeBus, createTestBus, flushMicrotasks, sequentialIds } from '../../src/testing/index.js';

export { ALLOW_ALL } from '../../src/testing/index.js';

const open: Orchestrator[] = [];
let made = 0;

/**
 * A fresh bus from the kit's `createTestBus()` (in-memory log, no rate limit unless `limits.rate`
 * is given, a clock fake timers drive), closed by `closeBuses()`. Its message ids count per bus
 * with a prefix of their own (`bus3-msg-1`, …), so two buses of one test (two nodes) never share
 * an id. Without `policies`, every agent may ask, delegate and notify every other one (the kit's
 * `allowAll`), for tests that are not about policy; given `policies` are used as they are.
 */
export function makeBus(options: OrchestratorOptions = {}): Orchestrator {
  const bus = createTestBus({ allowAll: options.policies === undefined, ids: sequentialIds(`bus${++made}-msg-`), ...options });
  open.push(bus);
  return bus;
}

/** Closes every bus made in the test (advancing fake timers if a handler holds `close` up), then restores real timers. */
export async function closeBuses(): Promise<void> {
  for (const bus of open.splice(0)) await closeBus(bus, vi);
  vi.useRealTimers();
}

/** The BusError a promise rejects with; fails the test if it resolves or rejects otherwise. */
export async function rejectionOf(promise: Promise<unknown>): Promise<BusError> {
  let value: unknown;
  try {
    value = await promise;
  } catch (error) {
    if (isBusError(error)) return error;
    throw new Error(`expected a BusError, got ${String(error)}`, { cause: error });
  }
  throw new Error(`expected a rejection, got a resolution with ${JSON.stringify(value)}`);
}

/** The BusError a function throws synchronously. */
export function thrownBy(fn: () => unknown): BusError {
  try {
    fn();
  } catch (error) {
    if (isBusError(error)) return error;
    throw new Error(`expected a BusError, got ${String(error)}`, { cause: error });
  }
  throw new Error('expected a throw');
}

/** A promise with its resolve exposed: a gate a handler can wait on. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((res) => (resolve = res));
  return { promise, resolve };
}

/**
 * Lets the bus's microtasks (audit commit, delivery, replies) run, then one macrotask (a
 * zero-ms fake advance under fake timers), without waiting for handlers to finish (the
 * kit's `runUntilIdle()` would wait for a handler that is held on a gate).
 */
export async function settle(rounds = 10): Promise<void> {
  await flushMicrotasks(rounds);
  if (vi.isFakeTimers()) await vi.advanceTimersByTimeAsync(0);
  else await new Promise<void>((resolve) => setImmediate(resolve));
}

export { BusError };

/** A handler body that never answers but gives up when its signal aborts (so close() need not wait). */
export function hang(ctx: { signal: AbortSignal }): Promise<never> {
  return new Promise((_, reject) => {
    if (ctx.signal.aborted) reject(ctx.signal.reason);
    ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true });
  });
}
