import {
  BusError,
  type Agent,
  type Contracts,
  type Envelope,
  type HandlerContext,
  type Orchestrator,
  type OutputOf,
  type PayloadOf,
  type RegisterOptions,
} from '../index.js';
import type { AnyContracts } from './preset.js';

const BEHAVIOR: unique symbol = Symbol('agent-switchboard/testing.behavior');

/**
 * A scripted way to answer that is not a plain value: {@link fail}, {@link delay},
 * {@link never}, {@link manual}, {@link sequence}. `T` is what it eventually answers with
 * (`never` for those that do not), so a typed script still checks the value.
 */
export interface StubBehavior<T = unknown> {
  /** What it does, for error messages: `fail("boom")`, `delay(500ms)`, … */
  readonly description: string;
  /** @internal */
  readonly [BEHAVIOR]: (payload: unknown, ctx: HandlerContext<Contracts>, stub: StubState) => unknown;
  /** Type-only: what the behavior answers with. */
  readonly __answers?: T;
}

/** Any value a loosely typed stub may answer with (anything the bus can carry as JSON). */
export type StubValue = string | number | boolean | null | undefined | object;

/** An answer: a value, or a behavior that produces one. */
export type StubResult<Out> = Out | StubBehavior<Out>;

/** A function answer: gets the payload and the handler context, returns (a promise of) an answer. */
export type StubFunction<In, Out, C extends Contracts = AnyContracts> = (payload: In, ctx: HandlerContext<C>) => StubResult<Out> | Promise<StubResult<Out>>;

/** How a stub answers one intent: a fixed value, a behavior, or a function. */
export type StubResponse<In = unknown, Out = StubValue, C extends Contracts = AnyContracts> = StubResult<Out> | StubFunction<In, Out, C>;

/** What the stub may answer intent `K` with: the contract's output, or any value without contracts. */
type StubOut<C extends Contracts, K> = unknown extends OutputOf<C, K> ? StubValue : OutputOf<C, K>;

/**
 * A stub's script: intent → how to answer it. With contracts, the payload a function gets
 * and the value it returns are typed by the intent's contract. `'*'` answers every intent
 * without its own entry; an intent with neither is refused at send time with `NO_HANDLER`,
 * as for any agent.
 */
export type StubScript<C extends Contracts = AnyContracts> = {
  [K in keyof C & string]?: StubResponse<PayloadOf<C, K>, StubOut<C, K>, C>;
} & { '*'?: StubResponse<unknown, StubValue, C> };

/** One message a stub's handler received. Plain, frozen data. */
export interface StubCall<P = unknown> {
  /** The message's intent (also for calls taken by `'*'`). */
  readonly intent: string;
  /** The payload as the handler got it (a deep-frozen copy of what was sent). */
  readonly payload: P;
  /** The whole envelope: id, type, from, conversationId, causationId, depth, deadline, … */
  readonly envelope: Envelope<P>;
}

/** A stub agent: the real agent handle, with a script and a record of what it received. */
export interface StubAgent<C extends Contracts = AnyContracts> {
  /** Its agent id. */
  readonly id: string;
  /** Its handle, to send from the stub: `stub.agent.ask('research', 'clarify', …)`. */
  readonly agent: Agent<C>;
  /** Every message its handlers received, in the order they started. A live, read-only list. */
  readonly calls: readonly StubCall[];
  /** The calls for one intent, in order. */
  callsFor<K extends keyof C & string>(intent: K): StubCall<PayloadOf<C, K>>[];
  /** The last call (for one intent, if given), or undefined. */
  lastCall(intent?: string): StubCall | undefined;
  /** Adds or replaces how one intent is answered (from the next message on). */
  respond<K extends (keyof C & string) | '*'>(intent: K, response: K extends '*' ? StubResponse<unknown, StubValue, C> : StubResponse<PayloadOf<C, K>, StubOut<C, K>, C>): this;
  /**
   * Answers a message that a {@link manual} behavior is holding: with a value, a behavior
   * (`fail('no')`), or a function of the payload. Throws `INVALID_ARGUMENT` when no call
   * with that message id is waiting.
   */
  answer(call: StubCall | string, response: StubResponse<unknown, StubValue, C>): void;
  /** Calls held by {@link manual} and not answered yet, oldest first. */
  waiting(): StubCall[];
  /** Forgets the recorded calls (the script stays). */
  reset(): void;
}

/** @internal What behaviors may touch: the stub's manual queue. */
export interface StubState {
  /** The recorded call of the message being handled. */
  callFor(envelope: Envelope): StubCall;
  hold(call: StubCall, waiter: HeldCall): void;
}

/** @internal A call a manual() behavior holds: how to settle its handler, and its context. */
interface HeldCall {
  readonly ctx: HandlerContext<Contracts>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

function behavior<T>(description: string, run: StubBehavior<T>[typeof BEHAVIOR]): StubBehavior<T> {
  return Object.freeze({ description, [BEHAVIOR]: run }) as StubBehavior<T>;
}

function isBehavior(value: unknown): value is StubBehavior {
  return typeof value === 'object' && value !== null && typeof (value as { [BEHAVIOR]?: unknown })[BEHAVIOR] === 'function';
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** Turns a response into the handler's result: a value, a thrown error, or a promise of either. */
function perform(response: unknown, payload: unknown, ctx: HandlerContext<Contracts>, stub: StubState): unknown {
  const out = typeof response === 'function' ? (response as (p: unknown, c: unknown) => unknown)(payload, ctx) : response;
  if (isThenable(out)) return Promise.resolve(out).then((value) => perform(value, payload, ctx, stub));
  if (isBehavior(out)) return out[BEHAVIOR](payload, ctx, stub);
  return out;
}

/** A promise that rejects with the signal's reason once it aborts (and never settles otherwise). */
function untilAborted(signal: AbortSignal, onAbort?: () => void): Promise<never> {
  return new Promise<never>((_, reject) => {
    const abort = (): void => {
      onAbort?.();
      reject(signal.reason);
    };
    if (signal.aborted) abort();
    else signal.addEventListener('abort', abort, { once: true });
  });
}

/**
 * Makes the handler throw, so the sender's ask or delegate rejects with `HANDLER_FAILED`
 * carrying `message` (for a notify, the delivery is audited and emitted as failed).
 *
 * @example
 * stubAgent(bus, 'writer', { summarize: fail('model overloaded') });
 * await expect(research.delegate('writer', 'summarize', {})).rejects.toMatchObject({ code: 'HANDLER_FAILED' });
 */
export function fail(error: string | Error = 'stub failure'): StubBehavior<never> {
  if (typeof error !== 'string' && !(error instanceof Error)) throw new BusError('INVALID_ARGUMENT', 'fail(error): expected a message or an Error');
  const message = typeof error === 'string' ? error : error.message;
  return behavior(`fail(${JSON.stringify(message)})`, () => {
    throw typeof error === 'string' ? new Error(error) : error;
  });
}

/**
 * Answers after `ms` ms of (fake or real) time, with `response` (a value, a behavior or a
 * function; `undefined` when omitted). Uses `setTimeout`, so under vitest fake timers it
 * answers when the test advances the clock. If the message expires or is cancelled first,
 * or the bus closes, the timer is cleared and the handler gives up at once.
 *
 * @example
 * stubAgent(bus, 'writer', { summarize: delay(2_000, { summary: 'done' }) });
 * const job = research.delegate('writer', 'summarize', {});
 * await vi.advanceTimersByTimeAsync(2_000);
 * await expect(job).resolves.toEqual({ summary: 'done' });
 */
export function delay<T = undefined>(ms: number, response?: StubResult<T> | StubFunction<unknown, T, Contracts>): StubBehavior<T> {
  if (typeof ms !== 'number' || !(ms >= 0 && ms <= 2_147_483_647)) {
    throw new BusError('INVALID_ARGUMENT', `delay(ms): expected a number of ms from 0 to 2147483647, got ${String(ms)}`);
  }
  return behavior(`delay(${ms}ms)`, (payload, ctx, stub) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    });
    return Promise.race([waited, untilAborted(ctx.signal, () => clearTimeout(timer))]).then(() => perform(response, payload, ctx, stub));
  });
}

/**
 * Never answers: the handler runs until the message's deadline passes (the sender gets
 * `TIMEOUT`), the sender cancels, or the bus closes; then it gives up at once (it follows
 * `ctx.signal`), so `close()` need not wait for it. For timeout tests.
 *
 * @example
 * stubAgent(bus, 'writer', { clarify: never() });
 * const answer = research.ask('writer', 'clarify', {}, { timeoutMs: 5_000 });
 * await vi.advanceTimersByTimeAsync(5_000);
 * await expect(answer).rejects.toMatchObject({ code: 'TIMEOUT' });
 */
export function never(): StubBehavior<never> {
  return behavior('never()', (_payload, ctx) => untilAborted(ctx.signal));
}

/**
 * Holds the message until the test answers it with `stub.answer(call, response)`: for
 * checking what happens while an agent is still working. Like {@link never}, it gives up
 * when the message expires, is cancelled, or the bus closes.
 *
 * @example
 * const writer = stubAgent(bus, 'writer', { summarize: manual() });
 * const job = research.delegate('writer', 'summarize', { task: 'x' });
 * await flushMicrotasks(); // the message reaches the stub (runUntilIdle would wait for the answer)
 * expect(transcript.lines()).toEqual(['research → writer delegate summarize sent', 'research → writer delegate summarize delivered']);
 * writer.answer(writer.waiting()[0]!, { summary: 'now' });
 * await expect(job).resolves.toEqual({ summary: 'now' });
 */
export function manual(): StubBehavior<never> {
  return behavior('manual()', (_payload, ctx, stub) => {
    const call = stub.callFor(ctx.message);
    return new Promise((resolve, reject) => {
      stub.hold(call, { ctx, resolve, reject });
      untilAborted(ctx.signal).catch(reject);
    });
  });
}

/**
 * Answers the n-th message with the n-th response; once they run out, the last one keeps
 * answering. For retries: `sequence(fail('busy'), fail('busy'), { ok: true })`. The count
 * lives in the returned behavior, so use a fresh `sequence()` per stub.
 *
 * @example
 * stubAgent(bus, 'writer', { summarize: sequence(fail('busy'), { summary: 'second try' }) });
 * await expect(research.delegate('writer', 'summarize', {})).rejects.toMatchObject({ code: 'HANDLER_FAILED' });
 * await expect(research.delegate('writer', 'summarize', {})).resolves.toEqual({ summary: 'second try' });
 */
export function sequence<T>(...responses: readonly (StubResult<T> | StubFunction<unknown, T, Contracts>)[]): StubBehavior<T> {
  if (responses.length === 0) throw new BusError('INVALID_ARGUMENT', 'sequence(): give at least one response');
  let next = 0;
  return behavior(`sequence(${responses.length})`, (payload, ctx, stub) => {
    const response = responses[Math.min(next, responses.length - 1)];
    next++;
    return perform(response, payload, ctx, stub);
  });
}

function callOf(envelope: Envelope): StubCall {
  return Object.freeze({ intent: envelope.intent, payload: envelope.payload, envelope });
}

/**
 * Registers a scripted agent: each intent of `script` is answered with a fixed value, a
 * function of the payload, or a behavior ({@link fail}, {@link delay}, {@link never},
 * {@link manual}, {@link sequence}); a function may itself return a behavior. Every message
 * it receives is recorded in `calls`, in order. It is a real agent (registered with
 * `registerOptions`, e.g. `concurrency` or `capabilities`), so the policy, limits and audit
 * apply to it as to any other, and `stub.agent` sends as it.
 *
 * @example
 * const writer = stubAgent(bus, 'writer', {
 *   summarize: (payload) => ({ summary: `about ${payload.task}` }),
 *   clarify: 'for engineers',
 *   publish: fail('read-only today'),
 * });
 * await research.delegate('writer', 'summarize', { task: 'otters' });
 * expect(writer.callsFor('summarize')).toHaveLength(1);
 * expect(writer.calls[0]).toMatchObject({ intent: 'summarize', payload: { task: 'otters' }, envelope: { from: 'research' } });
 * await writer.agent.notify('published', { url }, { to: ['research'] }); // send as the stub
 */
export function stubAgent<C extends Contracts>(
  bus: Orchestrator<C>,
  id: string,
  script: StubScript<C> = {},
  registerOptions: Omit<RegisterOptions<C>, 'handlers'> = {},
): StubAgent<C> {
  if (typeof script !== 'object' || script === null) throw new BusError('INVALID_ARGUMENT', `stubAgent("${id}"): script must be an object of responses by intent`);
  if (typeof registerOptions === 'object' && registerOptions !== null && 'handlers' in registerOptions) {
    throw new BusError('INVALID_ARGUMENT', `stubAgent("${id}"): pass responses in the script, not handlers in the register options`);
  }
  const calls: StubCall[] = [];
  const held = new Map<string, HeldCall & { call: StubCall }>();
  const byEnvelope = new WeakMap<Envelope, StubCall>();
  const state: StubState = {
    callFor(envelope) {
      return byEnvelope.get(envelope) ?? callOf(envelope);
    },
    hold(call, waiter) {
      held.set(call.envelope.id, { call, ...waiter });
    },
  };
  const release = (messageId: string): void => {
    held.delete(messageId);
  };

  const handlerFor =
    (response: unknown) =>
    (payload: unknown, ctx: HandlerContext<Contracts>): unknown => {
      const call = callOf(ctx.message);
      calls.push(call);
      byEnvelope.set(ctx.message, call);
      const out = perform(response, payload, ctx, state);
      // A manual() call that ends any way (answered, expired, closed) is no longer waiting.
      if (isThenable(out)) return Promise.resolve(out).finally(() => release(ctx.message.id));
      return out;
    };

  const handlers: Record<string, unknown> = {};
  for (const intent of Object.keys(script)) {
    handlers[intent] = handlerFor((script as Record<string, unknown>)[intent]);
  }
  const agent = bus.register(id, { ...registerOptions, handlers } as RegisterOptions<C>);

  const stub: StubAgent<C> = {
    id: agent.id,
    agent,
    calls,
    callsFor(intent) {
      return calls.filter((c) => c.intent === intent) as never;
    },
    lastCall(intent) {
      for (let i = calls.length - 1; i >= 0; i--) if (intent === undefined || calls[i]!.intent === intent) return calls[i];
      return undefined;
    },
    respond(intent, response) {
      agent.handle(intent as never, handlerFor(response) as never);
      return stub;
    },
    answer(call, response) {
      const messageId = typeof call === 'string' ? call : call?.envelope?.id;
      const waiting = messageId === undefined ? undefined : held.get(messageId);
      if (waiting === undefined) {
        throw new BusError('INVALID_ARGUMENT', `${id}.answer(): no call ${JSON.stringify(messageId)} is waiting for an answer (held calls: ${[...held.keys()].join(', ') || 'none'})`);
      }
      held.delete(messageId!);
      try {
        const out = perform(response, waiting.call.payload, waiting.ctx, state);
        waiting.resolve(out);
      } catch (error) {
        waiting.reject(error);
      }
    },
    waiting() {
      return Array.from(held.values(), (h) => h.call);
    },
    reset() {
      calls.length = 0;
    },
  };
  return Object.freeze(stub);
}
