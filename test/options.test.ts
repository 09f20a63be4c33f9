import { afterEach, describe, expect, it } from 'vitest';
import { Orchestrator, type OrchestratorOptions, type RegisterOptions } from '../src/index.js';
import { closeBuses, makeBus, thrownBy } from './support/helpers.js';

afterEach(closeBuses);

/** Options that TypeScript would refuse, as a user without types might write them. */
function loose(options: unknown): OrchestratorOptions {
  return options as OrchestratorOptions;
}

describe('new Orchestrator(options)', () => {
  it.each([
    [{ limts: { maxDepth: 3 } }, 'limts'],
    [{ limits: { maxPayloadByte: 10 } }, 'limits.maxPayloadByte'],
    [{ limits: { rate: { perSecond: 1, brust: 2 } } }, 'limits.rate.brust'],
    [{ timeouts: { askMS: 10 } }, 'timeouts.askMS'],
    [{ audit: { pth: ':memory:' } }, 'pth'],
    [{ approvals: { ttl: 5 } }, 'approvals.ttl'],
    [{ policy: [] }, 'policy'],
  ])('throws INVALID_ARGUMENT naming the misspelled key in %o', (options, key) => {
    const error = thrownBy(() => new Orchestrator(loose(options)));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain(key);
  });

  it.each([
    [{ limits: { maxPayloadBytes: 0 } }, 'limits.maxPayloadBytes'],
    [{ limits: { maxDepth: -1 } }, 'limits.maxDepth'],
    [{ limits: { rate: { perSecond: 0, burst: 1 } } }, 'limits.rate'],
    [{ timeouts: { askMs: Number.NaN } }, 'timeouts.askMs'],
    [{ timeouts: { closeMs: -5 } }, 'timeouts.closeMs'],
    [{ audit: { durability: 'sometimes' } }, 'audit'],
  ])('throws INVALID_ARGUMENT naming the key with a bad value in %o', (options, key) => {
    const error = thrownBy(() => new Orchestrator(loose(options)));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain(key);
  });

  it('refuses a bad policy set with INVALID_ARGUMENT', () => {
    expect(thrownBy(() => new Orchestrator(loose({ policies: [{ from: 'a', to: 'b', allow: ['shout'] }] }))).code).toBe('INVALID_ARGUMENT');
  });

  it('accepts no options at all, with default deny', async () => {
    const bus = makeBus({ policies: [] });
    expect(bus.policies()).toEqual([]);
    expect(bus.explain({ from: 'a', to: 'b', type: 'ask', intent: 'x' }).decision).toBe('deny');
  });
});

describe('Orchestrator#register() options', () => {
  it.each([
    [{ concurency: 2 }, 'concurency'],
    [{ handler: {} }, 'handler'],
    [{ rate: { perSecond: 1, burts: 1 } }, 'burts'],
    [{ maxQueue: -1 }, 'maxQueue'],
    [{ concurrency: 0 }, 'concurrency'],
    [{ concurrency: 1.5 }, 'concurrency'],
    [{ trust: Number.NaN }, 'trust'],
    [{ handlers: { x: 'not a function' } }, 'handlers'],
  ])('throws INVALID_ARGUMENT naming the key in %o', (options, key) => {
    const bus = makeBus();
    const error = thrownBy(() => bus.register('writer', options as unknown as RegisterOptions));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain(key);
    // Nothing was registered.
    expect(bus.agents()).toEqual([]);
  });
});

describe('agent ids', () => {
  it.each([
    ['*'],
    [''],
    [' a'],
    ['a '],
    ['a b'],
    ['a\u0000'],
    ['\u0430'], // Cyrillic 'а', looks like Latin 'a'
    ['p\u0430yment'],
    ['-leading-dash'],
    ['.dot'],
    ['a/b'],
    ['__proto__'], // does not start with a letter or digit
    ['x'.repeat(129)],
  ])('refuses %j with INVALID_ARGUMENT', (id) => {
    const bus = makeBus();
    expect(thrownBy(() => bus.register(id)).code).toBe('INVALID_ARGUMENT');
    expect(bus.agents()).toEqual([]);
  });

  it.each([[123], [null], [undefined], [{}]])('refuses the non-string %j with INVALID_ARGUMENT', (id) => {
    const bus = makeBus();
    expect(thrownBy(() => bus.register(id as unknown as string)).code).toBe('INVALID_ARGUMENT');
  });

  it('accepts the longest id (128 characters) and every allowed character', () => {
    const bus = makeBus();
    expect(bus.register('x'.repeat(128)).id).toBe('x'.repeat(128));
    expect(bus.register('Agent-1.v2_b:eu').id).toBe('Agent-1.v2_b:eu');
    expect(bus.register('7').id).toBe('7');
  });

  it('refuses a duplicate id with DUPLICATE_AGENT', () => {
    const bus = makeBus();
    bus.register('writer');
    expect(thrownBy(() => bus.register('writer')).code).toBe('DUPLICATE_AGENT');
    expect(bus.agents().map((a) => a.id)).toEqual(['writer']);
  });

  it.each(['constructor', 'toString', 'hasOwnProperty', 'valueOf', 'isPrototypeOf'])(
    'treats %s as an ordinary agent id',
    async (id) => {
      const bus = makeBus();
      const named = bus.register(id, { handlers: { ping: (_p, ctx) => `pong from ${ctx.agentId}` } });
      const research = bus.register('research', { handlers: { ping: (_p, ctx) => `pong to ${ctx.message.from}` } });
      expect(named.id).toBe(id);
      expect(thrownBy(() => bus.register(id)).code).toBe('DUPLICATE_AGENT');
      await expect(research.ask(id, 'ping', {})).resolves.toBe(`pong from ${id}`);
      await expect(named.ask('research', 'ping', {})).resolves.toBe(`pong to ${id}`);
      expect(bus.agents().map((a) => a.id).sort()).toEqual([id, 'research'].sort());
      expect(bus.unregister(id)).toBe(true);
      expect(bus.unregister(id)).toBe(false);
    },
  );

  it('does not mistake an unregistered prototype-named id for a registered agent', async () => {
    const bus = makeBus();
    const research = bus.register('research');
    for (const id of ['constructor', 'toString', 'hasOwnProperty']) {
      await expect(research.ask(id, 'ping', {})).rejects.toMatchObject({ code: 'UNKNOWN_AGENT' });
    }
    expect(bus.unregister('constructor')).toBe(false);
  });
});
