import { BusError, Orchestrator, type Clock, type ContractDef, type Contracts, type OrchestratorOptions, type PolicyRule } from '../index.js';
import type { FakeTimers } from './idle.js';

/** The loose default of the contracts generic: any intent, any payload. */
export type AnyContracts = Record<string, ContractDef>;

/**
 * One rule that lets every agent ask, delegate to and notify every other one. For tests
 * that are not about policy; see {@link TestBusOptions.allowAll}.
 */
export const ALLOW_ALL: readonly PolicyRule[] = Object.freeze([
  Object.freeze({ from: '*', to: '*', allow: Object.freeze(['ask', 'delegate', 'notify'] as const), name: 'allow-all' }),
]) as readonly PolicyRule[];

/** Options of {@link createTestBus}: every `Orchestrator` option, plus `allowAll`. */
export interface TestBusOptions<C extends Contracts = AnyContracts> extends OrchestratorOptions<C> {
  /**
   * Adds {@link ALLOW_ALL} (`* → *` may ask, delegate and notify) after `policies`.
   * It is the least specific rule there is, so your own rules still decide where they
   * match: a `deny` anywhere wins, and an `A → B` rule with `requireApproval` still holds.
   * Without it the bus is default deny, as in production: with no rules, every message
   * is refused with `POLICY_DENIED`. `bus.setPolicies()` replaces it like any other rule.
   * @default false
   */
  allowAll?: boolean;
}

/** The clock each test bus was made with, for the transcript's relative times. */
const clocks = new WeakMap<object, Clock>();

/** The clock a bus made by {@link createTestBus} reads; undefined for other buses. */
export function clockOf(bus: object): Clock | undefined {
  return clocks.get(bus);
}

/**
 * The preset's default clock: reads `Date.now()` on every call, so vitest fake timers
 * (which fake `Date` by default) drive deadlines, approval expiry and rate buckets.
 */
export const fakeableClock: Clock = Object.freeze({ now: () => Date.now() });

/**
 * A message id generator that counts: `msg-1`, `msg-2`, … Each call of
 * `sequentialIds()` starts its own count, so two buses never share one.
 *
 * @example
 * const ids = sequentialIds('m');
 * ids(); // 'm1'
 * ids(); // 'm2'
 */
export function sequentialIds(prefix = 'msg-'): () => string {
  if (typeof prefix !== 'string') throw new BusError('INVALID_ARGUMENT', `sequentialIds(prefix): expected a string, got ${typeof prefix}`);
  let n = 0;
  return () => `${prefix}${++n}`;
}

/**
 * An `Orchestrator` for tests. It is the real bus, with every check in place (the policy
 * is still default deny), set up so tests are fast and their output is stable:
 *
 * - audit log in memory (`{ path: ':memory:' }`), unless `audit` is given;
 * - no per-sender rate limit (`limits.rate: false`), unless `limits.rate` is given;
 * - a clock that reads `Date.now()` on every call, so vitest fake timers drive it, unless
 *   `clock` is given;
 * - message ids `msg-1`, `msg-2`, … counted per bus, unless `ids` is given; so
 *   transcripts, audit entries and snapshots do not change from run to run.
 *
 * Every other option is the `Orchestrator`'s, validated as strictly (a misspelled key is an
 * `INVALID_ARGUMENT` that names it), and `contracts` keeps its types.
 *
 * @example
 * const bus = createTestBus({
 *   policies: [{ from: 'research', to: 'writer', allow: ['ask'] }],
 * });
 * bus.register('writer', { handlers: { clarify: () => 'for engineers' } });
 * const research = bus.register('research');
 * await research.ask('writer', 'clarify', { q: 'Audience?' }); // 'for engineers' (message id msg-1)
 * await bus.close();
 *
 * @example
 * // Not about policy? Let everything through (your deny and approval rules still apply).
 * const bus = createTestBus({ allowAll: true, contracts });
 */
export function createTestBus<C extends Contracts = AnyContracts>(options: TestBusOptions<C> = {}): Orchestrator<C> {
  if (typeof options !== 'object' || options === null) {
    throw new BusError('INVALID_ARGUMENT', `createTestBus(options): expected an object, got ${options === null ? 'null' : typeof options}`);
  }
  const { allowAll, ...rest } = options;
  if (allowAll !== undefined && typeof allowAll !== 'boolean') {
    throw new BusError('INVALID_ARGUMENT', `createTestBus(): allowAll must be a boolean, got ${typeof allowAll}`);
  }
  const clock = rest.clock ?? fakeableClock;
  const resolved: OrchestratorOptions<C> = {
    ...rest,
    audit: rest.audit ?? { path: ':memory:' },
    clock,
    ids: rest.ids ?? sequentialIds(),
  };
  const limits: unknown = rest.limits;
  // A limits value that is not an object is passed on untouched, so the bus names the problem.
  if (limits === undefined) resolved.limits = { rate: false };
  else if (typeof limits === 'object' && limits !== null && !Array.isArray(limits)) resolved.limits = { rate: false, ...(limits as object) };
  if (allowAll === true) {
    const policies: unknown = rest.policies;
    resolved.policies = Array.isArray(policies) ? [...(policies as PolicyRule[]), ...ALLOW_ALL] : policies === undefined ? ALLOW_ALL : (policies as PolicyRule[]);
  }
  const bus = new Orchestrator<C>(resolved);
  clocks.set(bus, clock);
  return bus;
}

/** Options of {@link closeBus}. */
export interface CloseBusOptions {
  /** Fake ms to advance per step while `close()` waits for a handler. @default 100 */
  stepMs?: number;
}

/**
 * Closes a bus; under fake timers, also advances them until `close()` resolves.
 *
 * `close()` aborts running handlers' signals and waits for them at most
 * `timeouts.closeMs` (1000 ms by default) on a `setTimeout`. Under fake timers that
 * timer only fires when the test advances time, so a handler that ignores its signal would
 * hold `await bus.close()` forever. Pass `vi` (or any object with the same timer
 * methods) and `closeBus` advances the fake clock for you; with real timers, or without
 * `timers`, it is `await bus.close()`.
 *
 * @example
 * afterEach(async () => {
 *   await closeBus(bus, vi);
 *   vi.useRealTimers();
 * });
 */
export async function closeBus(bus: Pick<Orchestrator<Contracts>, 'close'>, timers?: FakeTimers, options: CloseBusOptions = {}): Promise<void> {
  const stepMs = options.stepMs ?? 100;
  if (!(Number.isFinite(stepMs) && stepMs > 0)) throw new BusError('INVALID_ARGUMENT', `closeBus(): stepMs must be a positive number, got ${String(stepMs)}`);
  let done = false;
  const closing = bus.close();
  const mark = (): void => {
    done = true;
  };
  closing.then(mark, mark);
  if (timers !== undefined && (timers.isFakeTimers?.() ?? true)) {
    // Give close() its microtasks first: with responsive handlers it needs no timer at all.
    for (let i = 0; i < 20 && !done; i++) await Promise.resolve();
    while (!done) {
      if (timers.getTimerCount?.() === 0) break; // nothing a fake clock could move: just wait
      await timers.advanceTimersByTimeAsync(stepMs);
    }
  }
  await closing;
}
