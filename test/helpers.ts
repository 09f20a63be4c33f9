// Shared setup for the bus tests: a fresh orchestrator per test, closed after it.
import { vi } from 'vitest';
import { BusError, Orchestrator, isBusError, type OrchestratorOptions, type PolicyRule } from '../src/index.js';

/** Lets every agent ask, delegate and notify every other one: for tests that are not about policy. */
export const ALLOW_ALL: readonly PolicyRule[] = Object.freeze([{ from: '*', to: '*', allow: ['ask', 'delegate', 'notify'] }]);

const open: Orchestrator[] = [];

/** A fresh orchestrator (policies default to ALLOW_ALL), closed by `closeBuses()`. */
export function makeBus(options: OrchestratorOptions = {}): Orchestrator {
  const bus = new Orchestrator({ policies: ALLOW_ALL, ...options });
  open.push(bus);
  return bus;
}

/** Closes every bus made in the test, advancing fake timers if a handler holds `close` up. */
export async function closeBuses(): Promise<void> {
  const buses = open.splice(0);
  for (const bus of buses) {
    let done = false;
    const closing = bus.close().then(() => (done = true));
    while (!done && vi.isFakeTimers()) await vi.advanceTimersByTimeAsync(100);
    await closing;
  }
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

/** Lets the bus's microtasks (audit commit, delivery, replies) run. */
export async function settle(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
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
