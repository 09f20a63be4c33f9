// SPEC "Contracts (typed intents)": run-time checks of input and output, what the handler
// receives, compile-time inference, and defineContracts() validation.
import * as v from 'valibot';
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { defineContracts, Orchestrator } from '../../src/index.js';
import { closeAll, refusal, settle } from './probe-kit.js';

const extra: Orchestrator<typeof contracts>[] = [];
afterEach(async () => {
  await Promise.all(extra.splice(0).map((b) => b.close()));
  await closeAll();
});

const contracts = defineContracts({
  summarize: { type: 'delegate', input: z.object({ task: z.string() }), output: z.object({ summary: z.string() }) },
  clarify: { type: 'ask', input: z.object({ q: z.string() }), output: z.string() },
  found: { type: 'notify', input: z.object({ url: z.url() }) },
});

function typedBus() {
  const b = new Orchestrator({ contracts, policies: [{ from: '*', to: '*', allow: ['ask', 'delegate', 'notify'] }] });
  extra.push(b);
  return b;
}

describe('"checked at run time: bad input is the sender\'s INVALID_PAYLOAD, bad output the handler\'s HANDLER_FAILED"', () => {
  it('bad input never reaches the handler, and the error names the bad field', async () => {
    const b = typedBus();
    let ran = false;
    b.register('writer', { handlers: { clarify: () => ((ran = true), 'ok') } });
    const research = b.register('research');
    const e = await refusal(research.ask('writer', 'clarify', { q: 42 } as never));
    expect(e.code).toBe('INVALID_PAYLOAD');
    expect(e.message).toContain('q');
    expect(ran).toBe(false);
    await b.flush();
    expect(b.getMessageLog()[0]).toMatchObject({ decision: 'denied', intent: 'clarify' });
  });

  it('bad output from the handler is HANDLER_FAILED for the sender', async () => {
    const b = typedBus();
    b.register('writer', { handlers: { summarize: () => ({ summary: 7 }) as never } });
    const e = await refusal(b.register('research').delegate('writer', 'summarize', { task: 't' }));
    expect(e.code).toBe('HANDLER_FAILED');
    expect(e.message).toContain('summary');
  });

  it('a notify with bad input is refused with INVALID_PAYLOAD before any recipient', async () => {
    const b = typedBus();
    let got = 0;
    b.register('writer', { handlers: { found: () => void got++ } });
    const e = await refusal(b.register('research').notify('found', { url: 'not a url' }));
    expect(e.code).toBe('INVALID_PAYLOAD');
    await settle();
    expect(got).toBe(0);
  });

  it('a contract intent sent with another type than its contract names is refused (INVALID_ARGUMENT or INVALID_PAYLOAD), never delivered', async () => {
    const b = typedBus();
    let ran = false;
    b.register('writer', { handlers: { summarize: () => ((ran = true), { summary: 's' }) } });
    const e = await refusal(b.register('research').send({ to: 'writer', type: 'ask', intent: 'summarize', payload: { task: 't' } }));
    expect(['INVALID_ARGUMENT', 'INVALID_PAYLOAD']).toContain(e.code);
    expect(ran).toBe(false);
  });

  it('a good round trip resolves with the checked output', async () => {
    const b = typedBus();
    b.register('writer', { handlers: { summarize: (p) => ({ summary: `of ${p.task}` }) } });
    await expect(b.register('research').delegate('writer', 'summarize', { task: 't' })).resolves.toEqual({ summary: 'of t' });
  });

  it('another Standard Schema library (valibot) works the same', async () => {
    const vc = defineContracts({ add: { type: 'ask', input: v.object({ a: v.number(), b: v.number() }), output: v.number() } });
    const b = new Orchestrator({ contracts: vc, policies: [{ from: '*', to: '*', allow: ['ask'] }] });
    try {
      b.register('calc', { handlers: { add: ({ a, b: y }) => a + y } });
      const c = b.register('c');
      await expect(c.ask('calc', 'add', { a: 1, b: 2 })).resolves.toBe(3);
      expect((await refusal(c.ask('calc', 'add', { a: '1', b: 2 } as never))).code).toBe('INVALID_PAYLOAD');
    } finally {
      await b.close();
    }
  });

  it('an async schema is refused rather than waited on or skipped', async () => {
    const ac = defineContracts({ slow: { type: 'ask', input: z.string().refine(async () => true), output: z.string() } });
    const b = new Orchestrator({ contracts: ac, policies: [{ from: '*', to: '*', allow: ['ask'] }] });
    try {
      let ran = false;
      b.register('w', { handlers: { slow: () => ((ran = true), 'x') } });
      const e = await refusal(b.register('c').ask('w', 'slow', 'hi'));
      expect(['INVALID_ARGUMENT', 'INVALID_PAYLOAD']).toContain(e.code);
      expect(ran).toBe(false);
    } finally {
      await b.close();
    }
  });
});

describe('"intents, payloads, handler arguments and results are inferred by TypeScript (a wrong intent or payload is a compile error)"', () => {
  it('infers results and refuses wrong intents and payloads at compile time', async () => {
    const b = typedBus();
    b.register('writer', { handlers: { clarify: (p) => p.q } });
    const research = b.register('research');
    const out = research.ask('writer', 'clarify', { q: 'x' });
    expectTypeOf(out).resolves.toEqualTypeOf<string>();
    await out;
    // @ts-expect-error: "summarize" is a delegate, not an ask
    research.ask('writer', 'summarize', { task: 't' }).catch(() => {});
    // @ts-expect-error: q must be a string
    research.ask('writer', 'clarify', { q: 1 }).catch(() => {});
    // @ts-expect-error: no such intent
    research.notify('lost', { url: 'https://x' }).catch(() => {});
  });
});

describe('"Contracts validate but do not transform" (docs/reference.md): the types say what arrives', () => {
  it('a .default() field the sender leaves out is absent for the handler, and typed optional; a transform does not run and is not typed as run', async () => {
    const dc = defineContracts({
      d: { type: 'ask', input: z.object({ n: z.number().default(7), s: z.string().transform((x) => x.length) }), output: z.object({ ok: z.boolean().default(true) }) },
    });
    const b = new Orchestrator({ contracts: dc, policies: [{ from: '*', to: '*', allow: ['ask'] }] });
    try {
      let got: unknown;
      b.register('w', {
        handlers: {
          d: (p) => {
            expectTypeOf(p).toEqualTypeOf<{ n?: number | undefined; s: string }>();
            got = p;
            return {};
          },
        },
      });
      const out = await b.register('a').ask('w', 'd', { s: 'abc' });
      expectTypeOf(out).toEqualTypeOf<{ ok?: boolean | undefined }>();
      expect(got).toEqual({ s: 'abc' });
      expect(out).toEqual({});
    } finally {
      await b.close();
    }
  });
});

describe('defineContracts() validation', () => {
  const bad: Array<[string, unknown]> = [
    ['a non-object', 'x'],
    ['a "*" intent', { '*': { type: 'ask', input: z.string(), output: z.string() } }],
    ['an unknown type', { a: { type: 'reply', input: z.string() } }],
    ['an input that is not a schema', { a: { type: 'ask', input: { parse() {} } } }],
    ['a notify with an output', { a: { type: 'notify', input: z.string(), output: z.string() } }],
  ];
  it.each(bad)('refuses %s with INVALID_ARGUMENT', (_what, def) => {
    expect(() => defineContracts(def as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('refuses contracts that are not defineContracts()-shaped in the Orchestrator options', () => {
    expect(() => new Orchestrator({ contracts: 'nope' as never })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
