// SPEC "Agent handle": every bullet, probed through the public entry.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Envelope } from '../../src/index.js';
import { bus, closeAll, hang, OPEN, refusal, settle } from './probe-kit.js';

afterEach(async () => {
  await closeAll();
  vi.useRealTimers();
});

function pair(handlers: Record<string, (p: unknown, ctx: never) => unknown> = {}) {
  const b = bus({ policies: [...OPEN], limits: { rate: false } });
  const writer = b.register('writer', { handlers: handlers as never });
  const research = b.register('research');
  return { b, writer, research };
}

describe('"`from` is always the handle\'s own id; nothing a caller passes can change it"', () => {
  it('refuses `from` in send() and in send options with INVALID_ARGUMENT, and sends nothing', async () => {
    const seen: string[] = [];
    const { b, research } = pair({ x: (_p, ctx: { message: Envelope }) => seen.push(ctx.message.from) });
    const e1 = await refusal(research.send({ to: 'writer', type: 'ask', intent: 'x', payload: 1, from: 'writer' } as never));
    expect(e1.code).toBe('INVALID_ARGUMENT');
    expect(e1.message).toContain('from');
    const e2 = await refusal(research.ask('writer', 'x', 1, { from: 'writer' } as never));
    expect(e2.code).toBe('INVALID_ARGUMENT');
    expect(e2.message).toContain('from');
    expect(seen).toEqual([]);
    await research.ask('writer', 'x', 1);
    expect(seen).toEqual(['research']);
    expect(b.getMessageLog({ type: 'ask', decision: 'allowed' }).map((e) => e.from)).toEqual(['research']);
  });
});

describe('Agent#ask() / delegate(): "resolve with the reply payload … validated and copied like any payload"', () => {
  it('the sender gets a deep-frozen copy: the handler changing its object afterwards changes nothing', async () => {
    const kept = { list: [1, 2], nested: { a: 1 } };
    const { research } = pair({
      x: () => {
        queueMicrotask(() => {
          kept.list.push(3);
          kept.nested.a = 2;
        });
        return kept;
      },
    });
    const out = (await research.ask('writer', 'x', {})) as typeof kept;
    await settle(1);
    expect(out).toEqual({ list: [1, 2], nested: { a: 1 } });
    expect(out).not.toBe(kept);
    expect(Object.isFrozen(out.list)).toBe(true);
    expect(Object.isFrozen(out.nested)).toBe(true);
  });

  it('a handler returning undefined resolves the sender with null (JSON has no undefined)', async () => {
    const { research } = pair({ x: () => undefined });
    await expect(research.ask('writer', 'x', {})).resolves.toBeNull();
  });

  it('a handler returning a value that is not plain JSON fails the sender with HANDLER_FAILED, not a crash', async () => {
    const { research } = pair({ big: () => 10n, fn: () => ({ f() {} }), cyc: () => { const o: Record<string, unknown> = {}; o.o = o; return o; } });
    for (const intent of ['big', 'fn', 'cyc']) {
      const e = await refusal(research.ask('writer', intent, {}));
      expect(e.code).toBe('HANDLER_FAILED');
    }
  });

  it('"A handler that throws makes the sender\'s promise reject with HANDLER_FAILED (the message, not the stack, crosses over)"', async () => {
    const { research } = pair({
      err: () => {
        throw new Error('disk on fire');
      },
      str: () => {
        throw 'plain string';
      },
      rej: () => Promise.reject(new TypeError('bad type')),
    });
    const e = await refusal(research.ask('writer', 'err', {}));
    expect(e.code).toBe('HANDLER_FAILED');
    expect(e.message).toContain('disk on fire');
    expect(e.message).not.toMatch(/\n\s+at /);
    expect(String((e as { cause?: unknown }).cause ?? '')).not.toMatch(/\n\s+at /);
    expect((await refusal(research.ask('writer', 'str', {}))).message).toContain('plain string');
    expect((await refusal(research.delegate('writer', 'rej', {}))).message).toContain('bad type');
  });

  it('a handler that throws an object with a throwing getter still fails the sender with HANDLER_FAILED', async () => {
    const { research } = pair({
      x: () => {
        throw {
          get message(): string {
            throw new Error('gotcha');
          },
        };
      },
    });
    expect((await refusal(research.ask('writer', 'x', {}))).code).toBe('HANDLER_FAILED');
  });
});

describe('Agent#notify()', () => {
  it('"resolves with { id, delivered, denied, pending, failed }"; "each recipient gets its own envelope, with `to` set to that recipient"', async () => {
    const b = bus({
      policies: [
        { from: 'src', to: '*', allow: ['notify'] },
        { from: 'src', to: 'held', allow: ['notify'], requireApproval: true },
        { from: '*', to: 'vault', deny: ['notify'] },
      ],
    });
    const got: Envelope[] = [];
    b.register('one', { handlers: { found: (_p, ctx) => void got.push(ctx.message) } });
    b.register('two', { handlers: { found: (_p, ctx) => void got.push(ctx.message) } });
    b.register('vault', { handlers: { found: () => {} } });
    b.register('held', { handlers: { found: () => {} } });
    b.register('deaf');
    const src = b.register('src');
    const receipt = await src.notify('found', { url: 'u' });
    await settle();
    expect(Object.keys(receipt).sort()).toEqual(['delivered', 'denied', 'failed', 'id', 'pending']);
    expect(receipt.id).toEqual(expect.any(String));
    expect([...receipt.delivered].sort()).toEqual(['one', 'two']);
    expect(receipt.denied).toEqual(['vault']);
    expect(receipt.pending).toEqual(['held']);
    expect(receipt.failed).toEqual(['deaf']);
    expect(got.map((e) => e.to).sort()).toEqual(['one', 'two']);
    expect(got.every((e) => e.type === 'notify' && e.from === 'src' && e.intent === 'found')).toBe(true);
    expect(got[0]).not.toBe(got[1]);
  });

  it('a listed notify goes only to the listed ids; an unknown listed id is in `failed`', async () => {
    const b = bus({ policies: [...OPEN] });
    const got: string[] = [];
    b.register('one', { handlers: { n: (_p, ctx) => void got.push(ctx.message.to) } });
    b.register('two', { handlers: { n: (_p, ctx) => void got.push(ctx.message.to) } });
    const src = b.register('src');
    const receipt = await src.notify('n', 1, { to: ['two', 'ghost'] });
    await settle();
    expect(receipt.delivered).toEqual(['two']);
    expect(receipt.failed).toEqual(['ghost']);
    expect(got).toEqual(['two']);
  });

  it('refuses an empty or malformed `to` list with INVALID_ARGUMENT', async () => {
    const { research } = pair();
    for (const to of [[], ['bad id'], ['*'], [5]]) {
      expect((await refusal(research.notify('n', 1, { to } as never))).code).toBe('INVALID_ARGUMENT');
    }
  });
});

describe('Agent#reply(): "answers a pending ask/delegate from outside its handler; the handler\'s return value is then ignored"', () => {
  it('delivers the outside reply and ignores the return value: no second reply is recorded or emitted', async () => {
    const b = bus({ policies: [...OPEN] });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const writer = b.register('writer', {
      handlers: {
        x: async (_p, ctx) => {
          queueMicrotask(() => void writer.reply(ctx.message.id, 'from outside'));
          await gate;
          return 'from handler';
        },
      },
    });
    const research = b.register('research');
    const dead: Array<{ envelope: Envelope; reason: string }> = [];
    b.events.on('message:dead', (e) => dead.push(e));
    const answer = research.ask('writer', 'x', {});
    await expect(answer).resolves.toBe('from outside');
    release();
    await settle();
    expect(dead).toEqual([]);
    await b.flush();
    expect(b.getMessageLog({ type: 'reply' }).map((e) => e.outcome)).toEqual(['delivered']);
  });

  it('"A reply by anyone but the addressee, to an unknown, settled or expired message, or a second one, rejects the replier with INVALID_REPLY and is audited"', async () => {
    vi.useFakeTimers();
    const b = bus({ policies: [...OPEN] });
    const ids: string[] = [];
    const writer = b.register('writer', { concurrency: 2, handlers: { x: (_p, ctx) => (ids.push(ctx.message.id), hang(_p, ctx)) } });
    const research = b.register('research');
    const other = b.register('other');
    const pending = research.ask('writer', 'x', {}, { timeoutMs: 1000 });
    pending.catch(() => {});
    await vi.advanceTimersByTimeAsync(0);
    const id = ids[0]!;
    expect((await refusal(other.reply(id, 'impostor'))).code).toBe('INVALID_REPLY');
    expect((await refusal(research.reply(id, 'the asker itself'))).code).toBe('INVALID_REPLY');
    expect((await refusal(writer.reply('no-such-id', 1))).code).toBe('INVALID_REPLY');
    await writer.reply(id, 'first');
    await expect(pending).resolves.toBe('first');
    expect((await refusal(writer.reply(id, 'second'))).code).toBe('INVALID_REPLY');
    // expired
    const late = research.ask('writer', 'x', {}, { timeoutMs: 1000 });
    late.catch(() => {});
    await vi.advanceTimersByTimeAsync(1000);
    const timedOut = await refusal(late);
    expect(timedOut.code).toBe('TIMEOUT');
    expect(ids[1]).toBe(timedOut.messageId);
    expect((await refusal(writer.reply(ids[1]!, 'too late'))).code).toBe('INVALID_REPLY');
    await b.flush();
    const refused = b.getMessageLog({ type: 'reply', decision: 'denied' });
    expect(refused).toHaveLength(5);
    expect(refused.every((e) => e.reason !== undefined)).toBe(true);
  });

  it('"Replies need no policy rule", and a notify cannot be replied to (INVALID_REPLY)', async () => {
    const b = bus({ policies: [{ from: 'research', to: 'writer', allow: ['ask', 'notify'] }] });
    let notifyId: string | undefined;
    const writer = b.register('writer', { handlers: { x: () => 'answer', n: (_p, ctx) => void (notifyId = ctx.message.id) } });
    const research = b.register('research');
    await expect(research.ask('writer', 'x', 1)).resolves.toBe('answer');
    await research.notify('n', 1, { to: ['writer'] });
    await settle();
    expect(notifyId).toEqual(expect.any(String));
    expect((await refusal(writer.reply(notifyId!, 'hi'))).code).toBe('INVALID_REPLY');
  });

  it('send({ type: "reply", inReplyTo, payload }) is the same as reply()', async () => {
    const b = bus({ policies: [...OPEN] });
    const writer = b.register('writer', {
      handlers: {
        x: (p, ctx) => {
          void writer.send({ type: 'reply', inReplyTo: ctx.message.id, payload: { echo: p } });
          return hang(p, ctx);
        },
      },
    });
    await expect(b.register('research').ask('writer', 'x', 7)).resolves.toEqual({ echo: 7 });
  });
});

describe('Send options: "timeoutMs, signal (AbortSignal), priority"', () => {
  it('refuses a bad timeoutMs, priority or signal with INVALID_ARGUMENT naming the value', async () => {
    const { research } = pair({ x: () => 1 });
    for (const [opts, named] of [
      [{ timeoutMs: 0 }, '0'],
      [{ timeoutMs: -1 }, '-1'],
      [{ timeoutMs: Number.NaN }, 'NaN'],
      [{ priority: 'urgent' }, 'urgent'],
      [{ signal: {} }, 'signal'],
      [{ timeOutMs: 5 }, 'timeOutMs'],
    ] as const) {
      const e = await refusal(research.ask('writer', 'x', 1, opts as never));
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(e.message).toContain(named);
    }
  });

  it('an already-aborted signal is CANCELLED before anything is delivered', async () => {
    const handler = vi.fn(() => 1);
    const { research } = pair({ x: handler });
    const e = await refusal(research.ask('writer', 'x', 1, { signal: AbortSignal.abort('changed my mind') }));
    expect(e.code).toBe('CANCELLED');
    await settle();
    expect(handler).not.toHaveBeenCalled();
  });

  it('aborting the signal later rejects CANCELLED and aborts the handler\'s ctx.signal', async () => {
    let handlerSignal: AbortSignal | undefined;
    const { research } = pair({ x: (p, ctx: { signal: AbortSignal }) => ((handlerSignal = ctx.signal), hang(p, ctx)) });
    const controller = new AbortController();
    const p = research.ask('writer', 'x', 1, { signal: controller.signal });
    await settle();
    controller.abort('stop');
    const e = await refusal(p);
    expect(e.code).toBe('CANCELLED');
    expect(handlerSignal?.aborted).toBe(true);
  });
});

describe('Job (delegate): onProgress and cancel(reason)', () => {
  it('"ctx.progress(fraction, note?) reaches the delegator" as { fraction, note }', async () => {
    const { research } = pair({
      x: (_p, ctx: { progress(f: number, n?: string): void }) => {
        ctx.progress(0.25, 'a quarter');
        ctx.progress(1);
        return 'done';
      },
    });
    const seen: unknown[] = [];
    const job = research.delegate('writer', 'x', {});
    job.onProgress((p) => seen.push(p));
    await expect(job).resolves.toBe('done');
    expect(seen).toEqual([{ fraction: 0.25, note: 'a quarter' }, { fraction: 1 }]);
  });

  it('job.cancel(reason) rejects CANCELLED carrying the reason and aborts the handler', async () => {
    let handlerSignal: AbortSignal | undefined;
    const { research } = pair({ x: (p, ctx: { signal: AbortSignal }) => ((handlerSignal = ctx.signal), hang(p, ctx)) });
    const job = research.delegate('writer', 'x', {});
    await settle();
    job.cancel('no longer needed');
    const e = await refusal(job);
    expect(e.code).toBe('CANCELLED');
    expect(e.reason ?? e.message).toContain('no longer needed');
    expect(handlerSignal?.aborted).toBe(true);
  });
});

describe('Handler ctx: "ctx.ask / ctx.delegate / ctx.notify send as this agent within the chain"', () => {
  it('same conversationId, causationId = this message, depth + 1, and a deadline no later than the one that remains', async () => {
    vi.useFakeTimers();
    const b = bus({ policies: [...OPEN] });
    const seen: Envelope[] = [];
    b.register('c', { handlers: { leaf: (_p, ctx) => (seen.push(ctx.message), 'leaf') } });
    b.register('b', {
      handlers: {
        mid: async (_p, ctx) => {
          seen.push(ctx.message);
          return ctx.ask('c', 'leaf', {}, { timeoutMs: 60_000 });
        },
      },
    });
    const a = b.register('a');
    await expect(a.ask('b', 'mid', {}, { timeoutMs: 5_000 })).resolves.toBe('leaf');
    const [mid, leaf] = seen as [Envelope, Envelope];
    expect(leaf.from).toBe('b');
    expect(leaf.conversationId).toBe(mid.conversationId);
    expect(leaf.causationId).toBe(mid.id);
    expect(leaf.depth).toBe(mid.depth + 1);
    expect(leaf.deadline).toBeLessThanOrEqual(mid.deadline!);
  });
});

describe('Agent#handle() / discover()', () => {
  it('handle() replaces one intent\'s handler; "*" is the fallback for intents without one', async () => {
    const { writer, research } = pair({ x: () => 'old' });
    writer.handle('x', () => 'new');
    writer.handle('*', (_p, ctx) => `fallback:${ctx.message.intent}`);
    await expect(research.ask('writer', 'x', {})).resolves.toBe('new');
    await expect(research.ask('writer', 'other', {})).resolves.toBe('fallback:other');
  });

  it('handle() refuses a non-function handler or a bad intent with INVALID_ARGUMENT', () => {
    const { writer } = pair();
    expect(() => writer.handle('x', 'nope' as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => writer.handle('' as never, (() => 1) as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('"discover(capability): ids with that capability this agent may ask or delegate to"', () => {
    const b = bus({ policies: [{ from: 'me', to: 'calc1', allow: ['ask'] }, { from: 'me', to: 'calc3', allow: ['notify'] }, { from: 'me', to: 'calc4', allow: ['delegate'] }] });
    for (const id of ['calc1', 'calc2', 'calc3', 'calc4']) b.register(id, { capabilities: ['calculation'] });
    b.register('other', { capabilities: ['drawing'] });
    const me = b.register('me', { capabilities: ['calculation'] });
    expect([...me.discover('calculation')].sort()).toEqual(['calc1', 'calc4']);
    expect(me.discover('nothing')).toEqual([]);
  });
});

describe('"A late or second reply returned by a handler is dropped, audited and emitted as message:dead"', () => {
  it('a handler returning after the deadline: the sender saw TIMEOUT, the return is audited late-reply and emitted', async () => {
    vi.useFakeTimers();
    const b = bus({ policies: [...OPEN] });
    let finish!: (v: string) => void;
    b.register('writer', { handlers: { x: () => new Promise<string>((r) => (finish = r)) } });
    const research = b.register('research');
    const dead: Array<{ envelope: Envelope; reason: string }> = [];
    b.events.on('message:dead', (e) => dead.push(e));
    const p = research.ask('writer', 'x', {}, { timeoutMs: 100 });
    p.catch(() => {});
    await vi.advanceTimersByTimeAsync(100);
    expect((await refusal(p)).code).toBe('TIMEOUT');
    finish('too late');
    await vi.advanceTimersByTimeAsync(0);
    await b.flush();
    expect(dead).toHaveLength(1);
    expect(dead[0]!.envelope.payload).toBe('too late');
    expect(dead[0]!.reason).toEqual(expect.any(String));
    expect(b.getMessageLog({ type: 'reply' })[0]!.outcome).toBe('late-reply');
  });
});
