// SPEC "Delivery": mailboxes, reentrancy, the one JSON copy, and the order of checks.
import { afterEach, describe, expect, it } from 'vitest';
import { bus, closeAll, OPEN, refusal, settle } from './probe-kit.js';

afterEach(closeAll);

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

describe('"Each agent has a mailbox: concurrency handlers at a time (default 1), in priority then arrival order, bounded by maxQueue"', () => {
  it('runs one at a time by default, waiting messages by priority then arrival', async () => {
    const b = bus({ policies: [...OPEN], limits: { rate: false } });
    const g = gate();
    const order: string[] = [];
    let running = 0;
    let most = 0;
    b.register('w', {
      handlers: {
        x: async (p) => {
          running++;
          most = Math.max(most, running);
          order.push(p as string);
          if (p === 'first') await g.opened;
          running--;
          return p;
        },
      },
    });
    const a = b.register('a');
    const all = [
      a.ask('w', 'x', 'first'),
      a.ask('w', 'x', 'low', { priority: 'low' }),
      a.ask('w', 'x', 'normal-1'),
      a.ask('w', 'x', 'high', { priority: 'high' }),
      a.ask('w', 'x', 'normal-2', { priority: 'normal' }),
      a.ask('w', 'x', 'critical', { priority: 'critical' }),
    ];
    await settle();
    g.open();
    await Promise.all(all);
    expect(order).toEqual(['first', 'critical', 'high', 'normal-1', 'normal-2', 'low']);
    expect(most).toBe(1);
  });

  it('`concurrency: 3` runs three at once', async () => {
    const b = bus({ policies: [...OPEN], limits: { rate: false } });
    const g = gate();
    let running = 0;
    let most = 0;
    b.register('w', { concurrency: 3, handlers: { x: async () => (running++, (most = Math.max(most, running)), await g.opened, running--) } });
    const a = b.register('a');
    const all = Array.from({ length: 6 }, () => a.ask('w', 'x', 1));
    await settle();
    expect(most).toBe(3);
    g.open();
    await Promise.all(all);
  });

  it('maxQueue counts waiting messages: one running and maxQueue waiting are taken, the next is MAILBOX_FULL naming the agent', async () => {
    const b = bus({ policies: [...OPEN], limits: { rate: false } });
    const g = gate();
    b.register('w', { maxQueue: 2, handlers: { x: async () => (await g.opened, 'ok') } });
    const a = b.register('a');
    const taken = [a.ask('w', 'x', 1)];
    await settle();
    taken.push(a.ask('w', 'x', 2), a.ask('w', 'x', 3));
    const e = await refusal(a.ask('w', 'x', 4));
    expect(e.code).toBe('MAILBOX_FULL');
    expect(e.message).toContain('w');
    expect(e.messageId).toEqual(expect.any(String));
    g.open();
    await expect(Promise.all(taken)).resolves.toEqual(['ok', 'ok', 'ok']);
    await b.flush();
    expect(b.getMessageLog({ limit: 100 }).find((x) => x.messageId === e.messageId)).toMatchObject({ decision: 'allowed', outcome: 'failed' });
  });

  it('a notify to a full mailbox lists the recipient in `failed`', async () => {
    const b = bus({ policies: [...OPEN], limits: { rate: false } });
    const g = gate();
    b.register('w', { maxQueue: 0, handlers: { x: async () => void (await g.opened) } });
    const a = b.register('a');
    const first = a.ask('w', 'x', 1);
    await settle();
    const receipt = await a.notify('x', 1, { to: ['w'] });
    expect(receipt.failed).toEqual(['w']);
    g.open();
    await first;
  });
});

describe('"Call-chain reentrancy: A→B→A inside one chain never deadlocks"', () => {
  it('A (busy, concurrency 1) asks B, whose handler asks A back within the chain', async () => {
    const b = bus({ policies: [...OPEN], limits: { rate: false } });
    b.register('A', {
      handlers: {
        start: async (_p, ctx) => `A got ${String(await ctx.ask('B', 'mid', {}))}`,
        back: () => 'back',
      },
    });
    b.register('B', { handlers: { mid: async (_p, ctx) => `B got ${String(await ctx.ask('A', 'back', {}))}` } });
    const client = b.register('client');
    await expect(client.ask('A', 'start', {})).resolves.toBe('A got B got back');
  });

  it('a message of another chain still waits for the busy agent', async () => {
    const b = bus({ policies: [...OPEN], limits: { rate: false } });
    const g = gate();
    const order: string[] = [];
    b.register('A', { handlers: { slow: async () => (order.push('slow'), await g.opened, order.push('slow done')), quick: () => void order.push('quick') } });
    const c = b.register('c');
    const slow = c.ask('A', 'slow', {});
    await settle();
    const quick = c.ask('A', 'quick', {});
    await settle();
    expect(order).toEqual(['slow']);
    g.open();
    await Promise.all([slow, quick]);
    expect(order).toEqual(['slow', 'slow done', 'quick']);
  });

  it('"Chains deeper than maxDepth fail with MAX_DEPTH"', async () => {
    const b = bus({ policies: [...OPEN], limits: { rate: false, maxDepth: 1 } });
    const depths: number[] = [];
    b.register('x', { handlers: { hop: async (_p, ctx) => (depths.push(ctx.message.depth), ctx.ask('y', 'hop', {})) } });
    let inner: unknown;
    b.register('y', {
      handlers: {
        hop: async (_p, ctx) => {
          depths.push(ctx.message.depth);
          return ctx.ask('x', 'hop', {}).catch((error: unknown) => {
            inner = error;
            throw error;
          });
        },
      },
    });
    const e = await refusal(b.register('c').ask('x', 'hop', {}));
    expect(depths).toEqual([0, 1]);
    expect(inner).toMatchObject({ code: 'MAX_DEPTH', message: expect.stringContaining('maxDepth 1') });
    expect(e.code).toBe('HANDLER_FAILED');
  });
});

describe('"The payload is serialized once to JSON … parsed into a fresh deep-frozen copy … Nothing the sender holds is shared"', () => {
  it('the recipient gets a deep-frozen copy; the sender changing its object later changes nothing', async () => {
    const b = bus({ policies: [...OPEN] });
    let got: unknown;
    const g = gate();
    b.register('w', { handlers: { x: async (p) => (await g.opened, (got = p), 'ok') } });
    const payload = { list: [{ n: 1 }], s: 'x' };
    const asked = b.register('a').ask('w', 'x', payload);
    payload.list[0]!.n = 2;
    payload.s = 'changed';
    g.open();
    await asked;
    expect(got).toEqual({ list: [{ n: 1 }], s: 'x' });
    expect(Object.isFrozen(got)).toBe(true);
    expect(Object.isFrozen((got as typeof payload).list[0])).toBe(true);
  });

  class Money {
    constructor(readonly cents: number) {}
    toJSON() {
      return { cents: this.cents };
    }
  }
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  const bad: Array<[string, unknown]> = [
    ['a function', { f: () => 1 }],
    ['a BigInt', { n: 1n }],
    ['a cycle', cyclic],
    ['a class instance with toJSON', { m: new Money(5) }],
    ['a Date', { d: new Date(0) }],
    ['a Map', { m: new Map([[1, 2]]) }],
    ['a Proxy', { p: new Proxy({}, {}) }],
    ['a __proto__ key', JSON.parse('{"a":{"__proto__":{"admin":true}}}')],
    ['a symbol value', { s: Symbol('x') }],
    ['NaN', { n: Number.NaN }],
    ['Infinity', [Infinity]],
  ];
  it.each(bad)('refuses %s with INVALID_PAYLOAD, before any handler runs', async (_what, payload) => {
    const b = bus({ policies: [...OPEN] });
    let ran = false;
    b.register('w', { handlers: { x: () => ((ran = true), 'ok') } });
    const e = await refusal(b.register('a').ask('w', 'x', payload));
    expect(e.code).toBe('INVALID_PAYLOAD');
    expect(ran).toBe(false);
  });

  it('an undefined payload (none given) arrives as null', async () => {
    const b = bus({ policies: [...OPEN] });
    b.register('w', { handlers: { x: (p) => ({ isNull: p === null }) } });
    await expect(b.register('a').ask('w', 'x', undefined)).resolves.toEqual({ isNull: true });
  });

  it('measures size in UTF-8 bytes: a 4-byte emoji counts 4', async () => {
    const b = bus({ policies: [...OPEN], limits: { maxPayloadBytes: 10 } });
    b.register('w', { handlers: { x: () => 'ok' } });
    const a = b.register('a');
    await expect(a.ask('w', 'x', '😀😀')).resolves.toBe('ok'); // 8 + 2 quotes = 10
    expect((await refusal(a.ask('w', 'x', '😀😀a'))).code).toBe('PAYLOAD_TOO_LARGE');
    await b.flush();
    expect(b.getMessageLog({ decision: 'allowed', type: 'ask' })[0]!.payloadBytes).toBe(10);
  });
});

describe('"Order of checks for a send"', () => {
  it('arguments come before size: a bad intent with an oversized payload is INVALID_ARGUMENT', async () => {
    const b = bus({ policies: [...OPEN], limits: { maxPayloadBytes: 5 } });
    b.register('w', { handlers: { '*': () => 1 } });
    const a = b.register('a');
    expect((await refusal(a.ask('w', '', 'x'.repeat(100)))).code).toBe('INVALID_ARGUMENT');
    expect((await refusal(a.ask('a', 'x', 'x'.repeat(100)))).code).toBe('SELF_MESSAGE');
    // The walk is bounded by the size limit, so a non-JSON value is named only when the walk
    // reaches it before the limit: here it comes first.
    expect((await refusal(a.ask('w', 'x', [() => 1, 'x'.repeat(100)]))).code).toBe('INVALID_PAYLOAD');
  });

  it('size comes before rate: refused-by-size sends spend no token', async () => {
    const b = bus({ policies: [...OPEN], limits: { maxPayloadBytes: 5, rate: { perSecond: 1, burst: 2 } }, clock: { now: () => 0 } });
    b.register('w', { handlers: { x: () => 1 } });
    const a = b.register('a');
    for (let i = 0; i < 5; i++) expect((await refusal(a.ask('w', 'x', 'too long'))).code).toBe('PAYLOAD_TOO_LARGE');
    await a.ask('w', 'x', 1);
    await a.ask('w', 'x', 2);
    expect((await refusal(a.ask('w', 'x', 3))).code).toBe('RATE_LIMITED');
  });

  it('rate comes before policy, and refused sends spend their token: two denied sends empty a bucket of 2', async () => {
    const b = bus({ policies: [{ from: 'a', to: 'w', allow: ['ask'] }], limits: { rate: { perSecond: 1, burst: 2 } }, clock: { now: () => 0 } });
    b.register('w', { handlers: { x: () => 1 } });
    b.register('z', { handlers: { x: () => 1 } });
    const a = b.register('a');
    expect((await refusal(a.ask('z', 'x', 1))).code).toBe('POLICY_DENIED');
    expect((await refusal(a.ask('z', 'x', 1))).code).toBe('POLICY_DENIED');
    expect((await refusal(a.ask('w', 'x', 1))).code).toBe('RATE_LIMITED');
  });

  it('"a refusal never drives a bucket below empty": after many refusals, one token is back after 1/perSecond', async () => {
    let now = 0;
    const b = bus({ policies: [...OPEN], limits: { rate: { perSecond: 2, burst: 1 } }, clock: { now: () => now } });
    b.register('w', { handlers: { x: () => 1 } });
    const a = b.register('a');
    await a.ask('w', 'x', 0);
    for (let i = 0; i < 20; i++) expect((await refusal(a.ask('w', 'x', i))).code).toBe('RATE_LIMITED');
    now += 500;
    await expect(a.ask('w', 'x', 'again')).resolves.toBe(1);
  });

  it('"replies spend none": an agent with a bucket of 1 answers many asks', async () => {
    const b = bus({ policies: [...OPEN], limits: { rate: false }, clock: { now: () => 0 } });
    b.register('w', { rate: { perSecond: 1, burst: 1 }, handlers: { x: (p) => p } });
    const a = b.register('a');
    for (let i = 0; i < 5; i++) await expect(a.ask('w', 'x', i)).resolves.toBe(i);
  });

  it('policy comes before delivery: a denied send to an agent without a handler is POLICY_DENIED, an allowed one NO_HANDLER', async () => {
    const b = bus({ policies: [{ from: 'a', to: 'w', allow: ['ask'], intents: ['ok'] }] });
    b.register('w');
    const a = b.register('a');
    expect((await refusal(a.ask('w', 'nope', 1))).code).toBe('POLICY_DENIED');
    const e = await refusal(a.ask('w', 'ok', 1));
    expect(e.code).toBe('NO_HANDLER');
    expect(e.message).toContain('ok');
  });

  it('"closed" comes first: after close every send is CLOSED, even one with bad arguments', async () => {
    const b = bus({ policies: [...OPEN] });
    const a = b.register('a');
    await b.close();
    expect((await refusal(a.ask('', '', undefined))).code).toBe('CLOSED');
  });

  it('"Every outcome, refused ones included, is audited" with the refusal code', async () => {
    const b = bus({ policies: [{ from: 'a', to: 'w', allow: ['ask'] }], limits: { maxPayloadBytes: 20 } });
    b.register('w');
    b.register('z');
    const a = b.register('a');
    await refusal(a.ask('z', 'x', 1));
    await refusal(a.ask('w', 'x', 'x'.repeat(50)));
    await refusal(a.ask('w', 'x', 1));
    await refusal(a.ask('ghost', 'x', 1));
    await b.flush();
    const codes = b.getMessageLog().map((e) => (e as { code?: string }).code ?? e.outcome);
    expect(codes).toEqual(expect.arrayContaining(['POLICY_DENIED', 'PAYLOAD_TOO_LARGE', 'UNKNOWN_AGENT']));
    expect(b.getMessageLog()).toHaveLength(4);
  });
});
