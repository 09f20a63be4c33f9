// The order of a send's checks, as data: for every pair of checks an ask can fail, an ask
// that fails both is refused by the earlier one. Reordering a check in the pipeline
// without reordering this list (and docs/architecture.md) fails here.
import { afterEach, describe, expect, it } from 'vitest';
import type { Agent, Orchestrator } from '../src/index.js';
import { closeBuses, makeBus, rejectionOf } from './support/helpers.js';

afterEach(closeBuses);

/** One ask, valid until faults change it. */
interface Ask {
  to: string;
  intent: string;
  payload: unknown;
  options: Record<string, unknown> | undefined;
  before: Array<(bus: Orchestrator, research: Agent) => Promise<void> | void>;
}

/** A check an ask can fail: how to make it fail, and how its refusal reads. */
interface Fault {
  readonly name: string;
  apply(ask: Ask): void;
  readonly code: string;
  readonly message: RegExp;
}

const ORDER: readonly Fault[] = [
  { name: 'closed', apply: (a) => a.before.push((bus) => bus.close()), code: 'CLOSED', message: /closed/ },
  { name: 'sender', apply: (a) => a.before.push((bus) => void bus.unregister('research')), code: 'UNKNOWN_AGENT', message: /research's handle is dead/ },
  { name: 'recipient', apply: (a) => (a.to = 'nobody'), code: 'UNKNOWN_AGENT', message: /no agent "nobody"/ },
  { name: 'intent', apply: (a) => (a.intent = ''), code: 'INVALID_ARGUMENT', message: /intent must be/ },
  { name: 'options', apply: (a) => (a.options = { timeoutMS: 5 }), code: 'INVALID_ARGUMENT', message: /unknown option "timeoutMS"/ },
  { name: 'payload', apply: (a) => (a.payload = 'x'.repeat(100)), code: 'PAYLOAD_TOO_LARGE', message: /payload/ },
  { name: 'rate', apply: (a) => a.before.push(async (_bus, research) => void (await research.ask('writer', 'x', {}))), code: 'RATE_LIMITED', message: /too fast/ },
  { name: 'policy', apply: (a) => (a.to = 'stranger'), code: 'POLICY_DENIED', message: /may not ask stranger/ },
];

/** Pairs that cannot both be made at once (both set the recipient). */
const EXCLUSIVE = new Set(['recipient+policy']);

const pairs = ORDER.flatMap((first, i) => ORDER.slice(i + 1).map((second) => [first, second] as const)).filter(([a, b]) => !EXCLUSIVE.has(`${a.name}+${b.name}`));

describe('the order of checks of an ask', () => {
  it.each(pairs.map(([a, b]) => [a.name, b.name, a, b] as const))('refuses an ask failing %s and %s with the first', async (_a, _b, first, second) => {
    const bus = makeBus({
      policies: [{ from: 'research', to: 'writer', allow: ['ask'] }],
      limits: { maxPayloadBytes: 50, rate: { perSecond: 0.001, burst: 1 } },
    });
    bus.register('writer', { handlers: { x: () => 1 } });
    bus.register('stranger', { handlers: { x: () => 1 } });
    const research = bus.register('research');
    const ask: Ask = { to: 'writer', intent: 'x', payload: {}, options: undefined, before: [] };
    // The later check's fault first: a token is spent before the sender leaves or the bus closes.
    second.apply(ask);
    first.apply(ask);
    for (const step of ask.before) await step(bus, research);
    const e = await rejectionOf(research.ask(ask.to, ask.intent, ask.payload, ask.options as never));
    expect([e.code, e.message]).toEqual([first.code, expect.stringMatching(first.message)]);
  });

  it('refuses each fault alone with its own code', async () => {
    for (const fault of ORDER) {
      const bus = makeBus({ policies: [{ from: 'research', to: 'writer', allow: ['ask'] }], limits: { maxPayloadBytes: 50, rate: { perSecond: 0.001, burst: 1 } } });
      bus.register('writer', { handlers: { x: () => 1 } });
      bus.register('stranger', { handlers: { x: () => 1 } });
      const research = bus.register('research');
      const ask: Ask = { to: 'writer', intent: 'x', payload: {}, options: undefined, before: [] };
      fault.apply(ask);
      for (const step of ask.before) await step(bus, research);
      const e = await rejectionOf(research.ask(ask.to, ask.intent, ask.payload, ask.options as never));
      expect([fault.name, e.code]).toEqual([fault.name, fault.code]);
    }
  });
});
