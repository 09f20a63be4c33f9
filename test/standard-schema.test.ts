import type { StandardSchemaV1 as SpecSchema } from '@standard-schema/spec';
import { type } from 'arktype';
import * as v from 'valibot';
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { BusError, defineContracts, Orchestrator, type StandardSchemaV1 } from '../src/index.js';
import { describeIssues } from '../src/contracts.js';

const everything = [{ from: '*', to: '*', allow: ['ask', 'delegate', 'notify'] as const }];

let bus: Orchestrator<any> | undefined;
afterEach(async () => {
  await bus?.close();
  bus = undefined;
});

// One contract set per schema library: the same shapes, so the same runtime checks apply.
const libraries = {
  zod: defineContracts({
    sum: { type: 'ask', input: z.object({ a: z.number(), b: z.number() }), output: z.object({ total: z.number() }) },
  }),
  valibot: defineContracts({
    sum: { type: 'ask', input: v.object({ a: v.number(), b: v.number() }), output: v.object({ total: v.number() }) },
  }),
  arktype: defineContracts({
    sum: { type: 'ask', input: type({ a: 'number', b: 'number' }), output: type({ total: 'number' }) },
  }),
};

describe('contracts accept any Standard Schema: types', () => {
  it('infers zod payloads and replies as zod does', async () => {
    const typed = new Orchestrator({ contracts: libraries.zod, policies: everything, limits: { rate: false } });
    bus = typed;
    typed.register('calc', { handlers: { sum: (p) => (expectTypeOf(p).toEqualTypeOf<{ a: number; b: number }>(), { total: p.a + p.b }) } });
    const reply = await typed.register('user').ask('calc', 'sum', { a: 1, b: 2 });
    expectTypeOf(reply).toEqualTypeOf<{ total: number }>();
    // @ts-expect-error b must be a number
    await expect(typed.register('other').ask('calc', 'sum', { a: 1, b: '2' })).rejects.toThrow();
  });

  it('infers valibot payloads and replies', async () => {
    const typed = new Orchestrator({ contracts: libraries.valibot, policies: everything, limits: { rate: false } });
    bus = typed;
    typed.register('calc', { handlers: { sum: (p) => (expectTypeOf(p).toEqualTypeOf<{ a: number; b: number }>(), { total: p.a + p.b }) } });
    const reply = await typed.register('user').ask('calc', 'sum', { a: 1, b: 2 });
    expectTypeOf(reply).toEqualTypeOf<{ total: number }>();
    // @ts-expect-error b must be a number
    await expect(typed.register('other').ask('calc', 'sum', { a: 1, b: '2' })).rejects.toThrow();
  });

  it('infers arktype payloads and replies', async () => {
    const typed = new Orchestrator({ contracts: libraries.arktype, policies: everything, limits: { rate: false } });
    bus = typed;
    typed.register('calc', { handlers: { sum: (p) => (expectTypeOf(p).toEqualTypeOf<{ a: number; b: number }>(), { total: p.a + p.b }) } });
    const reply = await typed.register('user').ask('calc', 'sum', { a: 1, b: 2 });
    expectTypeOf(reply).toEqualTypeOf<{ total: number }>();
    // @ts-expect-error b must be a number
    await expect(typed.register('other').ask('calc', 'sum', { a: 1, b: '2' })).rejects.toThrow();
  });

  it('inlines the Standard Schema interface faithfully: the spec package and ours fit both ways', () => {
    expectTypeOf<SpecSchema<{ a: 1 }, { b: 2 }>>().toExtend<StandardSchemaV1<{ a: 1 }, { b: 2 }>>();
    expectTypeOf<StandardSchemaV1<{ a: 1 }, { b: 2 }>>().toExtend<SpecSchema<{ a: 1 }, { b: 2 }>>();
  });

  it('StandardSchemaV1.InferInput and InferOutput keep a zod transform\'s two types apart', () => {
    const c = defineContracts({ n: { type: 'notify', input: z.object({ at: z.string().transform((s) => s.length) }) } });
    expectTypeOf<StandardSchemaV1.InferInput<(typeof c)['n']['input']>>().toEqualTypeOf<{ at: string }>();
    expectTypeOf<StandardSchemaV1.InferOutput<(typeof c)['n']['input']>>().toEqualTypeOf<{ at: number }>();
  });
});

describe.each(Object.entries(libraries))('contracts with %s at run time', (_name, contracts) => {
  function setup(reply: unknown) {
    bus = new Orchestrator({ contracts, policies: everything, limits: { rate: false } });
    const loose = bus as unknown as Orchestrator;
    loose.register('calc', { handlers: { sum: () => reply } });
    return loose.register('user');
  }

  it('delivers a payload and reply that match', async () => {
    const user = setup({ total: 3 });
    await expect(user.ask('calc', 'sum', { a: 1, b: 2 })).resolves.toEqual({ total: 3 });
  });

  it('rejects a payload that fails the input schema with INVALID_PAYLOAD naming the field', async () => {
    const user = setup({ total: 3 });
    const error = await user.ask('calc', 'sum', { a: 1, b: 'two' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BusError);
    expect((error as BusError).code).toBe('INVALID_PAYLOAD');
    expect((error as BusError).message).toMatch(/payload for "sum" does not match its contract: b: /);
  });

  it('fails a reply that breaks the output schema with HANDLER_FAILED naming the field', async () => {
    const user = setup({ total: 'three' });
    const error = await user.ask('calc', 'sum', { a: 1, b: 2 }).catch((e: unknown) => e);
    expect((error as BusError).code).toBe('HANDLER_FAILED');
    expect((error as BusError).message).toMatch(/reply to "sum" does not match its contract: total: /);
  });
});

describe('schemas the synchronous pipeline cannot use', () => {
  it('refuses an async input schema with INVALID_ARGUMENT instead of letting the payload through', async () => {
    const contracts = defineContracts({
      slow: { type: 'notify', input: z.object({ x: z.number() }).refine(async () => true) },
    });
    bus = new Orchestrator({ contracts, policies: everything, limits: { rate: false } });
    const loose = bus as unknown as Orchestrator;
    let delivered = 0;
    loose.register('sink', { handlers: { slow: () => void delivered++ } });
    const error = await loose.register('src').notify('slow', { x: 1 }).catch((e: unknown) => e);
    expect((error as BusError).code).toBe('INVALID_ARGUMENT');
    expect((error as BusError).message).toMatch(/the input of "slow" validates asynchronously/);
    expect(delivered).toBe(0);
  });

  it('fails a reply checked by an async output schema instead of resolving it', async () => {
    const contracts = defineContracts({
      q: { type: 'ask', input: z.object({}), output: z.string().refine(async () => true) },
    });
    bus = new Orchestrator({ contracts, policies: everything, limits: { rate: false } });
    const loose = bus as unknown as Orchestrator;
    loose.register('calc', { handlers: { q: () => 'ok' } });
    const error = await loose.register('user').ask('calc', 'q', {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BusError);
    expect((error as BusError).message).toMatch(/the output of "q" validates asynchronously/);
  });

  it('refuses a payload with INVALID_ARGUMENT when the schema itself throws, delivering nothing', async () => {
    const boom = new Error('boom');
    const throwing: StandardSchemaV1 = {
      '~standard': {
        version: 1,
        vendor: 'test',
        validate: () => {
          throw boom;
        },
      },
    };
    bus = new Orchestrator({ contracts: defineContracts({ t: { type: 'notify', input: throwing } }), policies: everything, limits: { rate: false } });
    const loose = bus as unknown as Orchestrator;
    let delivered = 0;
    loose.register('sink', { handlers: { t: () => void delivered++ } });
    const error = await loose.register('src').notify('t', {}).catch((e: unknown) => e);
    expect((error as BusError).code).toBe('INVALID_ARGUMENT');
    expect((error as BusError).message).toBe('the schema of the input of "t" threw instead of validating: boom');
    expect((error as BusError).cause).toBe(boom);
    expect(delivered).toBe(0);
  });

  it('refuses at defineContracts() a schema that is not a Standard Schema', () => {
    expect(() => defineContracts({ x: { type: 'notify', input: { safeParse: () => ({ success: true }) } as never } })).toThrow(
      /contracts\.x\.input must be a Standard Schema/,
    );
  });
});

describe('describeIssues()', () => {
  it('joins paths given as keys or as { key } segments, and marks the root', () => {
    expect(describeIssues({ issues: [{ message: 'bad', path: ['a', { key: 0 }, 'b'] }, { message: 'worse' }] })).toBe('a.0.b: bad; (root): worse');
  });
});
