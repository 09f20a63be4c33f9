// A function written for the untyped bus or handle accepts one built with contracts.
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { defineContracts, Orchestrator, type Agent, type PendingApproval } from '../src/index.js';
import { closeBuses } from './support/helpers.js';

afterEach(closeBuses);

/** The helper from docs/approvals.md, written against the untyped bus. */
function escalate(bus: Orchestrator, afterMs: number, page: (a: PendingApproval) => void): () => void {
  const timers = new Map<string, ReturnType<typeof setTimeout>>();
  const offRequested = bus.events.on('approval:requested', ({ approval }) => {
    timers.set(approval.id, setTimeout(() => page(approval), afterMs));
  });
  const offDecided = bus.events.on('approval:decided', ({ approval }) => clearTimeout(timers.get(approval.id)));
  return () => {
    offRequested();
    offDecided();
  };
}

const app = defineContracts({ clarify: { type: 'ask', input: z.object({ q: z.string() }), output: z.string() } });

describe('typed buses and handles', () => {
  it('the docs/approvals.md escalate helper compiles with a typed bus and unsubscribes with what events.on returns', async () => {
    const bus = new Orchestrator({ audit: false, contracts: app });
    const stop = escalate(bus, 1000, () => undefined);
    stop();
    await bus.close();
  });

  it('a function taking Orchestrator or Agent accepts a bus and a handle built with contracts', async () => {
    const bus = new Orchestrator({ audit: false, contracts: app, policies: [{ from: 'a', to: 'b', allow: ['ask'] }] });
    const names = (any: Orchestrator): string[] => any.agents().map((x) => x.id);
    const idOf = (agent: Agent): string => agent.id;
    bus.register('b', { handlers: { clarify: ({ q }) => `re: ${q}` } });
    const a = bus.register('a');
    expect(names(bus)).toEqual(['b', 'a']);
    expect(idOf(a)).toBe('a');
    expectTypeOf(bus).toExtend<Orchestrator>();
    expectTypeOf(a).toExtend<Agent>();
    // The typed handle keeps its types: intents, payloads and replies are still checked.
    const reply = a.ask('b', 'clarify', { q: 'x' });
    expectTypeOf(reply).resolves.toEqualTypeOf<string>();
    await expect(reply).resolves.toBe('re: x');
    // @ts-expect-error an intent the contracts do not name
    void a.ask('b', 'nope', { q: 'x' }).catch(() => undefined);
    // @ts-expect-error a payload that does not match the contract
    void a.ask('b', 'clarify', { q: 1 }).catch(() => undefined);
    // An untyped bus's replies stay unknown, not any.
    const plain = new Orchestrator({ audit: false });
    const untyped = plain.register('x').ask('y', 'anything', {});
    await expect(untyped).rejects.toMatchObject({ code: 'UNKNOWN_AGENT' });
    expectTypeOf(untyped).resolves.toEqualTypeOf<unknown>();
    await plain.close();
    await bus.close();
  });

  it('events.on returns a function that unsubscribes the listener', async () => {
    const bus = new Orchestrator({ audit: false, policies: [{ from: '*', to: '*', allow: ['notify'] }] });
    bus.register('b', { handlers: { n: () => undefined } });
    const seen: string[] = [];
    const off = bus.events.on('message:sent', ({ envelope }) => seen.push(envelope.id));
    expectTypeOf(off).toEqualTypeOf<() => void>();
    const a = bus.register('a');
    await a.notify('n', {});
    off();
    await a.notify('n', {});
    expect(seen).toHaveLength(1);
    await bus.close();
  });

  it('ready() resolves at once with the in-process transport', async () => {
    const bus = new Orchestrator({ audit: false, node: 'billing-1' });
    bus.register('a');
    await expect(bus.ready()).resolves.toBeUndefined();
    expect(bus.node).toBe('billing-1');
    await bus.close();
  });
});
