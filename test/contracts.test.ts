import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { BusError, defineContracts, Orchestrator, type Envelope, type HandlerContext, type NotifyReceipt } from '../src/index.js';

const contracts = defineContracts({
  summarize: {
    type: 'delegate',
    input: z.object({ task: z.string() }),
    output: z.object({ summary: z.string() }),
  },
  clarify: { type: 'ask', input: z.object({ q: z.string() }), output: z.string() },
  found: { type: 'notify', input: z.object({ url: z.url() }) },
});

const everything = [{ from: '*', to: '*', allow: ['ask', 'delegate', 'notify'] as const }];

let bus: Orchestrator<typeof contracts>;
afterEach(async () => {
  await bus?.close();
});

function setup() {
  bus = new Orchestrator({ contracts, policies: everything, limits: { rate: false } });
  return bus;
}

describe('defineContracts() types', () => {
  it('infers payloads, handler arguments and results from the schemas', async () => {
    const bus = setup();
    const writer = bus.register('writer', {
      handlers: {
        summarize: (payload, ctx) => {
          expectTypeOf(payload).toEqualTypeOf<{ task: string }>();
          expectTypeOf(ctx).toEqualTypeOf<HandlerContext<typeof contracts>>();
          expectTypeOf(ctx.message).toEqualTypeOf<Envelope>();
          return { summary: `did ${payload.task}` };
        },
        clarify: (payload) => {
          expectTypeOf(payload).toEqualTypeOf<{ q: string }>();
          return 'yes';
        },
      },
    });
    writer.handle('found', (payload) => {
      expectTypeOf(payload).toEqualTypeOf<{ url: string }>();
    });
    const research = bus.register('research');

    const summary = await research.delegate('writer', 'summarize', { task: 'x' });
    expectTypeOf(summary).toEqualTypeOf<{ summary: string }>();
    expect(summary).toEqual({ summary: 'did x' });

    const answer = await research.ask('writer', 'clarify', { q: 'why' });
    expectTypeOf(answer).toEqualTypeOf<string>();
    expect(answer).toBe('yes');

    const receipt = await research.notify('found', { url: 'https://example.com/' });
    expectTypeOf(receipt).toEqualTypeOf<NotifyReceipt>();
    expect(receipt.delivered).toEqual(['writer']);
  });

  it('makes a wrong intent, a wrong type or a wrong payload a compile error', () => {
    const bus = setup();
    const research = bus.register('research');
    // Each line below must fail to compile; the calls are never awaited (they reject at run time too).
    const refused: Promise<unknown>[] = [];
    // @ts-expect-error unknown intent
    refused.push(research.ask('writer', 'nope', { q: 'x' }));
    // @ts-expect-error summarize is a delegate, not an ask
    refused.push(research.ask('writer', 'summarize', { task: 'x' }));
    // @ts-expect-error payload of the wrong shape
    refused.push(research.ask('writer', 'clarify', { question: 'x' }));
    // @ts-expect-error notify intents only
    refused.push(research.notify('clarify', { q: 'x' }));
    bus.register('writer', {
      handlers: {
        // @ts-expect-error the handler must return the contract's output
        clarify: () => 42,
      },
    });
    for (const p of refused) p.catch(() => undefined);
  });

  it('keeps everything loosely typed without contracts', async () => {
    const loose = new Orchestrator({ policies: everything, audit: false });
    loose.register('b', { handlers: { anything: (p) => p } });
    const a = loose.register('a');
    const out = await a.ask('b', 'anything', { n: 1 });
    expectTypeOf(out).toEqualTypeOf<unknown>();
    expect(out).toEqual({ n: 1 });
    await loose.close();
  });
});

describe('contracts at run time', () => {
  it('refuses bad input as the sender\'s INVALID_PAYLOAD, naming the path', async () => {
    const bus = setup();
    const handled: unknown[] = [];
    bus.register('writer', { handlers: { clarify: (p) => (handled.push(p), 'ok') } });
    const research = bus.register('research');
    const error = await research.ask('writer', 'clarify', { q: 42 } as never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BusError);
    expect((error as BusError).code).toBe('INVALID_PAYLOAD');
    expect((error as BusError).message).toContain('q');
    expect(handled).toEqual([]);
    const entry = bus.getMessageLog({ agentId: 'research' })[0];
    expect(entry).toMatchObject({ decision: 'denied', code: 'INVALID_PAYLOAD', intent: 'clarify' });
  });

  it('refuses bad output as the handler\'s HANDLER_FAILED', async () => {
    const bus = setup();
    bus.register('writer', { handlers: { summarize: () => ({ summary: 7 }) as never } });
    const research = bus.register('research');
    const error = await research.delegate('writer', 'summarize', { task: 't' }).catch((e: unknown) => e);
    expect((error as BusError).code).toBe('HANDLER_FAILED');
    expect((error as BusError).message).toContain('summary');
  });

  it('refuses an intent sent as the wrong message type', async () => {
    const bus = setup();
    bus.register('writer', { handlers: { summarize: () => ({ summary: 's' }) } });
    const research = bus.register('research');
    const error = await research.send({ to: 'writer', type: 'ask', intent: 'summarize', payload: { task: 't' } }).catch((e: unknown) => e);
    expect((error as BusError).code).toBe('INVALID_ARGUMENT');
    expect((error as BusError).message).toContain('delegate');
  });

  it('checks a notify payload against its schema', async () => {
    const bus = setup();
    bus.register('writer', { handlers: { found: () => undefined } });
    const research = bus.register('research');
    const error = await research.notify('found', { url: 'not a url' }).catch((e: unknown) => e);
    expect((error as BusError).code).toBe('INVALID_PAYLOAD');
  });

  it('refuses a malformed contract set at definition', () => {
    expect(() => defineContracts({ x: { type: 'reply' as never, input: z.string() } })).toThrow(/type must be one of/);
    expect(() => defineContracts({ x: { type: 'ask', input: 'nope' as never } })).toThrow(/Standard Schema/);
    expect(() => defineContracts({ x: { type: 'notify', input: z.string(), output: z.string() } })).toThrow(/no reply/);
  });
});
