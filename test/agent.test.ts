import { afterEach, describe, expect, it } from 'vitest';
import type { Envelope, HandlerContext } from '../src/index.js';
import { closeBuses, deferred, makeBus, rejectionOf, settle } from './support/helpers.js';

afterEach(closeBuses);

/** An error that cannot even say what it is: reading its message throws. */
class LazyError extends Error {
  override get message(): string {
    throw new Error('the message getter throws');
  }
}

function isDeepFrozen(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return true;
  if (!Object.isFrozen(value)) return false;
  return Object.values(value).every(isDeepFrozen);
}

describe('Agent#ask()', () => {
  it("resolves with the handler's return value", async () => {
    const bus = makeBus();
    bus.register('writer', { handlers: { clarify: (p) => ({ answer: `for ${(p as { q: string }).q}` }) } });
    const research = bus.register('research');
    await expect(research.ask('writer', 'clarify', { q: 'engineers' })).resolves.toEqual({ answer: 'for engineers' });
  });

  it('gives the sender a deep-frozen copy of the reply, not the object the handler returned', async () => {
    const bus = makeBus();
    const returned = { summary: 'v1', tags: ['a'], nested: { n: 1 } };
    bus.register('writer', { handlers: { summarize: () => returned } });
    const research = bus.register('research');
    const reply = (await research.ask('writer', 'summarize', {})) as typeof returned;
    expect(reply).toEqual({ summary: 'v1', tags: ['a'], nested: { n: 1 } });
    expect(reply).not.toBe(returned);
    expect(reply.nested).not.toBe(returned.nested);
    expect(isDeepFrozen(reply)).toBe(true);
    // Test modules run in strict mode: writing to a frozen object throws.
    expect(() => {
      reply.nested.n = 2;
    }).toThrow(TypeError);
    expect(() => {
      reply.tags.push('b');
    }).toThrow(TypeError);
    // The handler changing its own object afterwards does not reach the sender.
    returned.nested.n = 99;
    returned.tags.push('z');
    expect(reply).toEqual({ summary: 'v1', tags: ['a'], nested: { n: 1 } });
  });

  it("gives the handler a deep-frozen copy of the payload that the sender's later mutations do not reach", async () => {
    const bus = makeBus();
    const seen: unknown[] = [];
    let writeError: unknown;
    bus.register('writer', {
      handlers: {
        summarize: (payload) => {
          seen.push(payload);
          try {
            (payload as { doc: { title: string } }).doc.title = 'hacked';
          } catch (error) {
            writeError = error;
          }
          return (payload as { doc: { title: string } }).doc.title;
        },
      },
    });
    const research = bus.register('research');
    const sent = { doc: { title: 'original', pages: [1, 2] } };
    const reply = research.ask('writer', 'summarize', sent);
    // Mutate right after the send, before the handler runs (delivery waits for the audit commit).
    sent.doc.title = 'changed by sender';
    sent.doc.pages.push(3);
    await expect(reply).resolves.toBe('original');
    const received = seen[0] as typeof sent;
    expect(received).toEqual({ doc: { title: 'original', pages: [1, 2] } });
    expect(received).not.toBe(sent);
    expect(received.doc).not.toBe(sent.doc);
    expect(isDeepFrozen(received)).toBe(true);
    expect(writeError).toBeInstanceOf(TypeError);
  });

  it('rejects with NO_HANDLER when no handler takes the intent', async () => {
    const bus = makeBus();
    bus.register('writer', { handlers: { summarize: () => 'ok' } });
    const research = bus.register('research');
    const error = await rejectionOf(research.ask('writer', 'translate', {}));
    expect(error.code).toBe('NO_HANDLER');
  });

  it("falls back to the '*' handler for an intent without its own", async () => {
    const bus = makeBus();
    bus.register('writer', { handlers: { summarize: () => 'summary', '*': (_p, ctx) => `fallback:${ctx.message.intent}` } });
    const research = bus.register('research');
    await expect(research.ask('writer', 'translate', {})).resolves.toBe('fallback:translate');
    await expect(research.ask('writer', 'summarize', {})).resolves.toBe('summary');
  });

  it('rejects with UNKNOWN_AGENT for an unregistered recipient and SELF_MESSAGE for itself', async () => {
    const bus = makeBus();
    const research = bus.register('research', { handlers: { x: () => 1 } });
    expect((await rejectionOf(research.ask('nobody', 'x', {}))).code).toBe('UNKNOWN_AGENT');
    expect((await rejectionOf(research.ask('research', 'x', {}))).code).toBe('SELF_MESSAGE');
  });

  it('rejects with POLICY_DENIED when no rule allows the message (default deny)', async () => {
    const bus = makeBus({ policies: [] });
    let ran = false;
    bus.register('writer', { handlers: { x: () => (ran = true) } });
    const research = bus.register('research');
    expect((await rejectionOf(research.ask('writer', 'x', {}))).code).toBe('POLICY_DENIED');
    await settle();
    expect(ran).toBe(false);
  });

  describe('when the handler throws', () => {
    const secretStack = 'Error: disk on fire\n    at secretFrame (/srv/writer/internal.ts:13:37)';
    const failing = {
      sync: () => {
        throw Object.assign(new Error('disk on fire'), { stack: secretStack });
      },
      async: async () => {
        await Promise.resolve();
        throw Object.assign(new Error('disk on fire'), { stack: secretStack });
      },
    };

    for (const [kind, handler] of Object.entries(failing)) {
      it(`rejects the sender with HANDLER_FAILED carrying the message, not the stack (${kind} handler)`, async () => {
        const bus = makeBus();
        bus.register('writer', { handlers: { summarize: handler, ping: () => 'pong' } });
        const research = bus.register('research');
        const error = await rejectionOf(research.ask('writer', 'summarize', {}));
        expect(error.code).toBe('HANDLER_FAILED');
        expect(error.message).toContain('disk on fire');
        expect(error.message).not.toContain('secretFrame');
        expect(error.stack ?? '').not.toContain('secretFrame');
        expect(String((error.cause as Error | undefined)?.stack ?? '')).not.toContain('secretFrame');
        // The bus keeps working.
        await expect(research.ask('writer', 'ping', {})).resolves.toBe('pong');
      });
    }

    it('rejects with HANDLER_FAILED when the handler returns something that is not plain JSON', async () => {
      const bus = makeBus();
      bus.register('writer', { handlers: { summarize: () => ({ when: new Date(0) }) } });
      const research = bus.register('research');
      expect((await rejectionOf(research.ask('writer', 'summarize', {}))).code).toBe('HANDLER_FAILED');
    });

    for (const [name, thrown] of [
      ['an error whose message getter throws', () => new LazyError()],
      ['a revoked Proxy', () => {
        const { proxy, revoke } = Proxy.revocable({}, {});
        revoke();
        return proxy;
      }],
    ] as const) {
      it(`rejects the sender with HANDLER_FAILED and leaves the mailbox working when the thrown value is unreadable: ${name}`, async () => {
        const bus = makeBus();
        bus.register('w', {
          handlers: {
            bad: () => {
              throw thrown();
            },
            badAsync: async () => {
              throw thrown();
            },
            good: () => 'ok',
          },
        });
        const a = bus.register('a');
        await expect(a.ask('w', 'bad', {}, { timeoutMs: 2000 })).rejects.toMatchObject({ code: 'HANDLER_FAILED' });
        await expect(a.ask('w', 'badAsync', {}, { timeoutMs: 2000 })).rejects.toMatchObject({ code: 'HANDLER_FAILED' });
        await expect(a.ask('w', 'good', {}, { timeoutMs: 2000 })).resolves.toBe('ok');
      });
    }
  });
});

describe('Agent#send()', () => {
  it("refuses a spoofed from: nothing is delivered or logged as sent by 'other'", async () => {
    const bus = makeBus();
    const delivered: Envelope[] = [];
    bus.register('other');
    bus.register('writer', {
      handlers: {
        summarize: (_p, ctx) => {
          delivered.push(ctx.message);
          return 'ok';
        },
      },
    });
    const research = bus.register('research');
    const sent: Envelope[] = [];
    bus.events.on('message:sent', ({ envelope }) => sent.push(envelope));

    const spoofed = { from: 'other', to: 'writer', type: 'ask', intent: 'summarize', payload: {} } as unknown as Parameters<typeof research.send>[0];
    const error = await rejectionOf(research.send(spoofed));
    expect(error.code).toBe('INVALID_ARGUMENT');
    await settle();
    expect(delivered).toEqual([]);
    expect(sent).toEqual([]);
    expect(bus.getMessageLog({ limit: 1000 }).filter((e) => e.from === 'other')).toEqual([]);
  });

  it("accepts from equal to the handle's own id, and the envelope's from is the handle id", async () => {
    const bus = makeBus();
    const froms: string[] = [];
    bus.register('writer', {
      handlers: {
        summarize: (_p, ctx) => {
          froms.push(ctx.message.from);
          return 'ok';
        },
      },
    });
    const research = bus.register('research');
    const own = { from: 'research', to: 'writer', type: 'ask', intent: 'summarize', payload: {} } as unknown as Parameters<typeof research.send>[0];
    await expect(research.send(own)).resolves.toBe('ok');
    // A `from` smuggled into the options of ask or notify is refused as an unknown option.
    const options = { from: 'other', timeoutMs: 1000 } as unknown as { timeoutMs: number };
    await expect(research.ask('writer', 'summarize', {}, options)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('"from"') });
    await expect(research.notify('summarize', {}, { to: ['writer'], from: 'other' } as unknown as { to: string[] })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await settle();
    expect(froms).toEqual(['research']);
    expect(bus.getMessageLog({ limit: 1000 }).every((e) => e.from !== 'other')).toBe(true);
  });

  it('sends an ask, a delegate, a notify and a reply through the generic form', async () => {
    const bus = makeBus();
    const gate = deferred();
    let askId = '';
    const notified: unknown[] = [];
    const writer = bus.register('writer', {
      handlers: {
        summarize: (p) => ({ got: p }),
        slow: async (_p, ctx) => {
          askId = ctx.message.id;
          await gate.promise;
          return 'ignored';
        },
        found: (p) => void notified.push(p),
      },
    });
    const research = bus.register('research');
    await expect(research.send({ to: 'writer', type: 'ask', intent: 'summarize', payload: 1 })).resolves.toEqual({ got: 1 });
    await expect(research.send({ to: 'writer', type: 'delegate', intent: 'summarize', payload: 2, timeoutMs: 5000 })).resolves.toEqual({ got: 2 });
    const receipt = await research.send({ to: 'writer', type: 'notify', intent: 'found', payload: 3 });
    expect(receipt).toMatchObject({ delivered: ['writer'] });
    await settle();
    expect(notified).toEqual([3]);

    const slow = research.ask('writer', 'slow', {});
    await settle();
    await expect(writer.send({ type: 'reply', inReplyTo: askId, payload: 'explicit' })).resolves.toBeUndefined();
    await expect(slow).resolves.toBe('explicit');
    gate.resolve();
  });

  it('rejects an unknown type or an unknown key with INVALID_ARGUMENT', async () => {
    const bus = makeBus();
    bus.register('writer', { handlers: { x: () => 1 } });
    const research = bus.register('research');
    const badType = { to: 'writer', type: 'shout', intent: 'x' } as unknown as Parameters<typeof research.send>[0];
    expect((await rejectionOf(research.send(badType))).code).toBe('INVALID_ARGUMENT');
    const badKey = { to: 'writer', type: 'ask', intent: 'x', timeoutMS: 5 } as unknown as Parameters<typeof research.send>[0];
    const error = await rejectionOf(research.send(badKey));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain('timeoutMS');
  });
});

describe('sends never throw synchronously', () => {
  type Loose = (...args: unknown[]) => Promise<unknown>;
  const cases: [string, (h: Record<string, Loose>) => Promise<unknown>][] = [
    ['ask(123, …)', (h) => h.ask!(123, 'x', {})],
    ['ask(to, 42)', (h) => h.ask!('writer', 42, {})],
    ["ask(to, '')", (h) => h.ask!('writer', '', {})],
    ['ask(…, null options)', (h) => h.ask!('writer', 'x', {}, null)],
    ['ask(…, a bad priority)', (h) => h.ask!('writer', 'x', {}, { priority: 'urgent' })],
    ['ask(…, timeoutMs 0)', (h) => h.ask!('writer', 'x', {}, { timeoutMs: 0 })],
    ['ask(…, timeoutMs -1)', (h) => h.ask!('writer', 'x', {}, { timeoutMs: -1 })],
    ['ask(…, timeoutMs NaN)', (h) => h.ask!('writer', 'x', {}, { timeoutMs: Number.NaN })],
    ['ask(…, timeoutMs Infinity)', (h) => h.ask!('writer', 'x', {}, { timeoutMs: Number.POSITIVE_INFINITY })],
    ["ask(…, timeoutMs '100')", (h) => h.ask!('writer', 'x', {}, { timeoutMs: '100' })],
    ['ask(…, a signal that is not an AbortSignal)', (h) => h.ask!('writer', 'x', {}, { signal: { aborted: false } })],
    ['delegate(Symbol(), …)', (h) => h.delegate!(Symbol('to'), 'x', {})],
    ['notify(null, …)', (h) => h.notify!(null, {})],
    ['notify(…, { to: [] })', (h) => h.notify!('x', {}, { to: [] })],
    ["notify(…, { to: ['a b'] })", (h) => h.notify!('x', {}, { to: ['a b'] })],
    ['notify(…, a bad priority)', (h) => h.notify!('x', {}, { priority: 7 })],
    ['send(null)', (h) => h.send!(null)],
    ['send("ask")', (h) => h.send!('ask')],
    ['reply(42, …)', (h) => h.reply!(42, {})],
    ['ask(a revoked Proxy, …)', (h) => h.ask!(revoked(), 'x', {})],
    ['ask(to, a revoked Proxy)', (h) => h.ask!('writer', revoked(), {})],
    ['send(a revoked Proxy)', (h) => h.send!(revoked())],
  ];

  function revoked(): unknown {
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    return proxy;
  }

  for (const [name, call] of cases) {
    it(`${name} returns a promise rejected with INVALID_ARGUMENT`, async () => {
      const bus = makeBus({ limits: { rate: false } });
      bus.register('writer', { handlers: { x: () => 1 } });
      const research = bus.register('research') as unknown as Record<string, Loose>;
      let result: Promise<unknown> | undefined;
      expect(() => {
        result = call(research);
      }).not.toThrow();
      expect(result).toBeInstanceOf(Promise);
      const error = await rejectionOf(result!);
      expect(error.code).toBe('INVALID_ARGUMENT');
    });
  }
});

describe('Agent#delegate()', () => {
  it('reaches job.onProgress listeners with ctx.progress(fraction, note)', async () => {
    const bus = makeBus();
    const gate = deferred();
    bus.register('writer', {
      handlers: {
        summarize: async (_p, ctx) => {
          ctx.progress(0.5, 'half');
          await gate.promise;
          ctx.progress(1);
          return 'done';
        },
      },
    });
    const research = bus.register('research');
    const reports: unknown[] = [];
    const job = research.delegate('writer', 'summarize', {});
    expect(job.onProgress((p) => reports.push(p))).toBe(job);
    expect(typeof job.id).toBe('string');
    await settle();
    expect(reports).toEqual([{ fraction: 0.5, note: 'half' }]);
    gate.resolve();
    await expect(job).resolves.toBe('done');
    expect(reports).toEqual([{ fraction: 0.5, note: 'half' }, { fraction: 1 }]);
  });

  for (const bad of [1.5, -0.1, Number.NaN, '0.5']) {
    it(`makes ctx.progress(${typeof bad === 'string' ? `'${bad}'` : String(bad)}) throw inside the handler, so the job rejects with HANDLER_FAILED`, async () => {
      const bus = makeBus();
      let threw = false;
      bus.register('writer', {
        handlers: {
          summarize: (_p, ctx: HandlerContext) => {
            try {
              ctx.progress(bad as number);
            } catch (error) {
              threw = true;
              throw error;
            }
            return 'done';
          },
        },
      });
      const research = bus.register('research');
      const error = await rejectionOf(research.delegate('writer', 'summarize', {}));
      expect(threw).toBe(true);
      expect(error.code).toBe('HANDLER_FAILED');
    });
  }
});

describe('Agent#notify()', () => {
  it('broadcasts to every allowed agent with a handler and says who got it in the receipt', async () => {
    const bus = makeBus({
      policies: [
        { from: 'research', to: '*', allow: ['notify'] },
        { from: '*', to: 'vault', deny: ['notify'] },
      ],
    });
    const got = new Map<string, Envelope>();
    const handler = (_p: unknown, ctx: HandlerContext) => void got.set(ctx.agentId, ctx.message);
    bus.register('writer', { handlers: { found: handler } });
    bus.register('qa', { handlers: { found: handler } });
    bus.register('vault', { handlers: { found: handler } });
    bus.register('idle', { handlers: { other: handler } });
    const research = bus.register('research', { handlers: { found: handler } });

    const receipt = await research.notify('found', { url: 'https://example.com' });
    await settle();
    expect([...receipt.delivered].sort()).toEqual(['qa', 'writer']);
    expect(receipt.denied).toEqual(['vault']);
    expect(receipt.failed).toEqual(['idle']);
    expect(receipt.pending).toEqual([]);
    expect([...got.keys()].sort()).toEqual(['qa', 'writer']);
    for (const [id, envelope] of got) {
      expect(envelope.to).toBe(id);
      expect(envelope.from).toBe('research');
      expect(envelope.type).toBe('notify');
      expect(envelope.id).toBe(receipt.id);
      expect(envelope.payload).toEqual({ url: 'https://example.com' });
      expect(Object.isFrozen(envelope)).toBe(true);
    }
  });

  it('sends only to the listed recipients; an unknown listed id is reported as failed', async () => {
    const bus = makeBus();
    const got: string[] = [];
    const handler = (_p: unknown, ctx: HandlerContext) => void got.push(`${ctx.agentId}:${ctx.message.to}`);
    bus.register('writer', { handlers: { found: handler } });
    bus.register('qa', { handlers: { found: handler } });
    const research = bus.register('research');
    const receipt = await research.notify('found', {}, { to: ['writer', 'ghost'] });
    await settle();
    expect(receipt.delivered).toEqual(['writer']);
    expect(receipt.failed).toEqual(['ghost']);
    expect(receipt.denied).toEqual([]);
    expect(got).toEqual(['writer:writer']);
  });

  it('refuses to notify itself with SELF_MESSAGE', async () => {
    const bus = makeBus();
    const research = bus.register('research', { handlers: { found: () => undefined } });
    expect((await rejectionOf(research.notify('found', {}, { to: ['research'] }))).code).toBe('SELF_MESSAGE');
  });
});

describe('Agent#reply()', () => {
  async function setup() {
    const bus = makeBus();
    const gate = deferred();
    const ids: string[] = [];
    let returned = false;
    const writer = bus.register('writer', {
      handlers: {
        summarize: async (_p, ctx) => {
          ids.push(ctx.message.id);
          await gate.promise;
          returned = true;
          return 'from the handler';
        },
      },
    });
    const research = bus.register('research');
    const qa = bus.register('qa');
    const answer = research.ask('writer', 'summarize', {});
    await settle();
    expect(ids).toHaveLength(1);
    return { bus, gate, writer, research, qa, answer, id: ids[0]!, returned: () => returned };
  }

  it("answers the ask from outside the handler; the handler's return value is then ignored", async () => {
    const { bus, gate, writer, answer, id, returned } = await setup();
    const dead: unknown[] = [];
    bus.events.on('message:dead', (e) => dead.push(e));
    await expect(writer.reply(id, { explicit: true })).resolves.toBeUndefined();
    await expect(answer).resolves.toEqual({ explicit: true });
    gate.resolve();
    await settle();
    expect(returned()).toBe(true);
    expect(dead).toEqual([]);
  });

  it('rejects a reply by anyone but the addressee with INVALID_REPLY and audits it', async () => {
    const { bus, gate, qa, answer, id } = await setup();
    const error = await rejectionOf(qa.reply(id, 'forged'));
    expect(error.code).toBe('INVALID_REPLY');
    gate.resolve();
    await expect(answer).resolves.toBe('from the handler');
    const rows = bus.getMessageLog({ limit: 1000 }).filter((e) => e.type === 'reply' && e.decision === 'denied');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ from: 'qa', code: 'INVALID_REPLY', inReplyTo: id });
  });

  it('rejects a reply to an unknown id with INVALID_REPLY and audits it', async () => {
    const { bus, gate, writer, answer } = await setup();
    expect((await rejectionOf(writer.reply('no-such-message', 'x'))).code).toBe('INVALID_REPLY');
    gate.resolve();
    await answer;
    const rows = bus.getMessageLog({ limit: 1000 }).filter((e) => e.type === 'reply' && e.decision === 'denied');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ from: 'writer', code: 'INVALID_REPLY', inReplyTo: 'no-such-message' });
  });

  it('rejects a second reply with INVALID_REPLY and audits it', async () => {
    const { bus, gate, writer, answer, id } = await setup();
    await writer.reply(id, 'first');
    expect((await rejectionOf(writer.reply(id, 'second'))).code).toBe('INVALID_REPLY');
    await expect(answer).resolves.toBe('first');
    gate.resolve();
    await settle();
    const rows = bus.getMessageLog({ limit: 1000 }).filter((e) => e.type === 'reply' && e.decision === 'denied');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ code: 'INVALID_REPLY', inReplyTo: id });
  });

  it('rejects a reply to a message that was already answered by its handler', async () => {
    const { gate, writer, answer, id } = await setup();
    gate.resolve();
    await expect(answer).resolves.toBe('from the handler');
    expect((await rejectionOf(writer.reply(id, 'too late'))).code).toBe('INVALID_REPLY');
  });

  it('copies and freezes an explicit reply like any payload', async () => {
    const { gate, writer, answer, id } = await setup();
    const payload = { list: [1] };
    await writer.reply(id, payload);
    payload.list.push(2);
    const got = (await answer) as { list: number[] };
    expect(got).toEqual({ list: [1] });
    expect(Object.isFrozen(got.list)).toBe(true);
    gate.resolve();
  });

  it('refuses a reply to an ask that has not reached its recipient yet (its row is not committed)', async () => {
    let n = 0;
    const bus = makeBus({ ids: () => `m${n++}` });
    let ran = false;
    const w = bus.register('w', {
      handlers: {
        go: () => {
          ran = true;
          return 'from the handler';
        },
      },
    });
    const ask = bus.register('a').ask('w', 'go', {});
    const early = w.reply('m0', 'too early'); // same tick: the ask is only staged
    await expect(early).rejects.toMatchObject({ code: 'INVALID_REPLY' });
    await expect(ask).resolves.toBe('from the handler');
    expect(ran).toBe(true);
  });
});

describe('Agent#handle()', () => {
  it("adds or replaces one intent's handler", async () => {
    const bus = makeBus();
    const writer = bus.register('writer', { handlers: { summarize: () => 'v1' } });
    const research = bus.register('research');
    await expect(research.ask('writer', 'summarize', {})).resolves.toBe('v1');
    expect(writer.handle('summarize', () => 'v2')).toBe(writer);
    await expect(research.ask('writer', 'summarize', {})).resolves.toBe('v2');
    writer.handle('translate', () => 'new');
    await expect(research.ask('writer', 'translate', {})).resolves.toBe('new');
  });

  it('throws INVALID_ARGUMENT for a handler that is not a function', () => {
    const bus = makeBus();
    const writer = bus.register('writer');
    expect(() => writer.handle('x', 42 as unknown as () => void)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('intents named like Object.prototype members', () => {
  const names = ['constructor', 'toString', 'hasOwnProperty', 'valueOf', '__proto__'];

  it.each(names)('routes the intent %s through handle() like any other', async (intent) => {
    const bus = makeBus({ policies: [{ from: '*', to: '*', allow: ['ask'], intents: [intent] }] });
    const writer = bus.register('writer');
    writer.handle(intent, (_p, ctx) => `handled ${ctx.message.intent}`);
    const research = bus.register('research');
    await expect(research.ask('writer', intent, {})).resolves.toBe(`handled ${intent}`);
  });

  it.each(names)('routes the intent %s through the handlers map of register()', async (intent) => {
    const bus = makeBus();
    const handlers: Record<string, () => string> = {};
    // A computed own key, as a user gets from Object.fromEntries or JSON.
    Object.defineProperty(handlers, intent, { value: () => `handled ${intent}`, enumerable: true, writable: true, configurable: true });
    bus.register('writer', { handlers });
    const research = bus.register('research');
    await expect(research.ask('writer', intent, {})).resolves.toBe(`handled ${intent}`);
  });

  it.each(names)('refuses the intent %s with NO_HANDLER when the agent has no handler for it', async (intent) => {
    const bus = makeBus();
    bus.register('writer', { handlers: { other: () => 1 } });
    const research = bus.register('research');
    expect((await rejectionOf(research.ask('writer', intent, {}))).code).toBe('NO_HANDLER');
  });
});

describe('Agent#discover()', () => {
  it('lists only the agents with the capability that this agent may ask or delegate to', () => {
    const bus = makeBus({ policies: [{ from: 'research', to: 'calc', allow: ['ask'] }] });
    bus.register('calc', { capabilities: ['calculation'] });
    bus.register('calc2', { capabilities: ['calculation'] });
    bus.register('writer', { capabilities: ['writing'] });
    const research = bus.register('research');
    expect(research.discover('calculation')).toEqual(['calc']);
    expect(research.discover('writing')).toEqual([]);
  });
});
