import { afterEach, describe, expect, it, vi } from 'vitest';
import type { BusEvents, Envelope } from '../src/index.js';
import { closeBuses, deferred, hang, makeBus, rejectionOf, settle } from './support/helpers.js';

afterEach(closeBuses);

describe('ask and delegate deadlines', () => {
  it('rejects with TIMEOUT (and timeoutMs) once the deadline passes, not a millisecond before', async () => {
    vi.useFakeTimers();
    const bus = makeBus();
    bus.register('writer', { handlers: { slow: (_p, ctx) => hang(ctx) } });
    const research = bus.register('research');
    let settled = false;
    const caught = rejectionOf(research.ask('writer', 'slow', {}, { timeoutMs: 1000 })).finally(() => (settled = true));
    await vi.advanceTimersByTimeAsync(999);
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    const error = await caught;
    expect(error.code).toBe('TIMEOUT');
    expect(error.timeoutMs).toBe(1000);
    expect(typeof error.messageId).toBe('string');
  });

  it('points the TIMEOUT stack at the call site in the caller with diagnostics.callSites', async () => {
    vi.useFakeTimers();
    const bus = makeBus({ diagnostics: { callSites: true } });
    bus.register('writer', { handlers: { slow: (_p, ctx) => hang(ctx) } });
    const research = bus.register('research');
    const caught = rejectionOf(research.ask('writer', 'slow', {}, { timeoutMs: 50 }));
    await vi.advanceTimersByTimeAsync(50);
    const error = await caught;
    expect(error.code).toBe('TIMEOUT');
    expect(error.stack).toContain('deadlines.test.ts');
    expect(error.stack?.split('\n')[0]).toBe(`BusError: ${error.message}`);
  });

  it('names the ask, recipient, intent and deadline in the TIMEOUT message without call sites', async () => {
    vi.useFakeTimers();
    const bus = makeBus();
    bus.register('writer', { handlers: { slow: (_p, ctx) => hang(ctx) } });
    const caught = rejectionOf(bus.register('research').ask('writer', 'slow', {}, { timeoutMs: 50 }));
    await vi.advanceTimersByTimeAsync(50);
    const error = await caught;
    expect(error.message).toBe('ask to writer ("slow") got no reply within 50ms');
    expect(error.stack).not.toContain('deadlines.test.ts');
  });

  it('uses timeouts.askMs and timeouts.delegateMs when the send gives no timeoutMs', async () => {
    vi.useFakeTimers();
    const bus = makeBus({ timeouts: { askMs: 200, delegateMs: 500 } });
    bus.register('writer', { handlers: { slow: (_p, ctx) => hang(ctx) } });
    const research = bus.register('research');
    const ask = rejectionOf(research.ask('writer', 'slow', {}));
    const job = rejectionOf(research.delegate('writer', 'slow', {}));
    await vi.advanceTimersByTimeAsync(200);
    expect((await ask).timeoutMs).toBe(200);
    await vi.advanceTimersByTimeAsync(300);
    expect((await job).timeoutMs).toBe(500);
  });

  it("aborts the handler's ctx.signal when the deadline passes", async () => {
    vi.useFakeTimers();
    const bus = makeBus();
    let signal: AbortSignal | undefined;
    bus.register('writer', {
      handlers: {
        slow: (_p, ctx) => {
          signal = ctx.signal;
          return hang(ctx);
        },
      },
    });
    const research = bus.register('research');
    const caught = rejectionOf(research.ask('writer', 'slow', {}, { timeoutMs: 100 }));
    await vi.advanceTimersByTimeAsync(50);
    expect(signal?.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(50);
    await caught;
    expect(signal?.aborted).toBe(true);
    expect(signal?.reason).toMatchObject({ code: 'TIMEOUT' });
  });

  it("drops the handler's late return: emitted as message:dead and audited as a late-reply", async () => {
    vi.useFakeTimers();
    const bus = makeBus();
    const release = deferred<{ late: boolean }>();
    let askId = '';
    bus.register('writer', {
      handlers: {
        slow: (_p, ctx) => {
          askId = ctx.message.id;
          return release.promise;
        },
      },
    });
    const research = bus.register('research');
    const dead: BusEvents['message:dead'][] = [];
    const expired: BusEvents['message:expired'][] = [];
    bus.events.on('message:dead', (e) => dead.push(e));
    bus.events.on('message:expired', (e) => expired.push(e));
    const caught = rejectionOf(research.ask('writer', 'slow', {}, { timeoutMs: 100 }));
    await vi.advanceTimersByTimeAsync(100);
    expect((await caught).code).toBe('TIMEOUT');
    expect(expired).toHaveLength(1);
    expect(expired[0]).toMatchObject({ code: 'TIMEOUT', envelope: { id: askId } });

    release.resolve({ late: true });
    await settle();
    expect(dead).toHaveLength(1);
    expect(dead[0]!.envelope).toMatchObject({ type: 'reply', from: 'writer', to: 'research', inReplyTo: askId, payload: { late: true } });

    const log = bus.getMessageLog({ limit: 100 });
    expect(log.find((e) => e.messageId === askId)).toMatchObject({ outcome: 'expired', code: 'TIMEOUT' });
    expect(log.find((e) => e.type === 'reply' && e.inReplyTo === askId)).toMatchObject({ outcome: 'late-reply', from: 'writer' });
  });

  it('rejects an explicit reply after expiry with INVALID_REPLY', async () => {
    vi.useFakeTimers();
    const bus = makeBus();
    let askId = '';
    const writer = bus.register('writer', {
      handlers: {
        slow: (_p, ctx) => {
          askId = ctx.message.id;
          return hang(ctx);
        },
      },
    });
    const research = bus.register('research');
    const caught = rejectionOf(research.ask('writer', 'slow', {}, { timeoutMs: 100 }));
    await vi.advanceTimersByTimeAsync(100);
    await caught;
    expect((await rejectionOf(writer.reply(askId, 'late'))).code).toBe('INVALID_REPLY');
    const rows = bus.getMessageLog({ limit: 100 }).filter((e) => e.type === 'reply');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ decision: 'denied', code: 'INVALID_REPLY', inReplyTo: askId });
  });

  it('never runs a queued message whose deadline passed while it waited', async () => {
    vi.useFakeTimers();
    const bus = makeBus();
    const gate = deferred();
    const ran: string[] = [];
    bus.register('writer', {
      handlers: {
        work: async (p) => {
          ran.push(p as string);
          if (p === 'first') await gate.promise;
          return p;
        },
      },
    });
    const research = bus.register('research');
    const first = research.ask('writer', 'work', 'first', { timeoutMs: 10_000 });
    const second = rejectionOf(research.ask('writer', 'work', 'second', { timeoutMs: 100 }));
    await vi.advanceTimersByTimeAsync(100);
    expect((await second).code).toBe('TIMEOUT');
    gate.resolve();
    await expect(first).resolves.toBe('first');
    await settle();
    expect(ran).toEqual(['first']);
  });

  it('leaves no timer once every request is answered', async () => {
    vi.useFakeTimers();
    const bus = makeBus();
    bus.register('writer', { handlers: { quick: () => 'ok' } });
    const research = bus.register('research');
    await Promise.all([research.ask('writer', 'quick', {}, { timeoutMs: 100 }), research.ask('writer', 'quick', {}, { timeoutMs: 5000 })]);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('chained sends from a handler (ctx.ask)', () => {
  it('carry the conversationId, causationId = the parent, depth + 1, and a deadline no later than the parent', async () => {
    vi.useFakeTimers();
    const bus = makeBus();
    const seen: Envelope[] = [];
    bus.register('b', {
      handlers: {
        inner: (_p, ctx) => {
          seen.push(ctx.message);
          return 'inner';
        },
      },
    });
    bus.register('a', {
      handlers: {
        outer: async (_p, ctx) => {
          seen.push(ctx.message);
          const long = await ctx.ask('b', 'inner', {}, { timeoutMs: 60_000 });
          const short = await ctx.ask('b', 'inner', {}, { timeoutMs: 10 });
          return [long, short];
        },
      },
    });
    const x = bus.register('x');
    await expect(x.ask('a', 'outer', {}, { timeoutMs: 1000 })).resolves.toEqual(['inner', 'inner']);
    const [outer, long, short] = seen;
    expect(outer).toMatchObject({ depth: 0, conversationId: outer!.id });
    expect(outer!.causationId).toBeUndefined();
    for (const child of [long!, short!]) {
      expect(child.conversationId).toBe(outer!.conversationId);
      expect(child.causationId).toBe(outer!.id);
      expect(child.depth).toBe(1);
      expect(child.deadline).toBeLessThanOrEqual(outer!.deadline!);
    }
    // A longer timeout is capped at what remains of the parent's; a shorter one is kept.
    expect(long!.deadline).toBe(outer!.deadline);
    expect(short!.deadline).toBe(short!.ts + 10);
  });

  it('ctx.notify and ctx.delegate carry the chain too', async () => {
    const bus = makeBus();
    const seen: Envelope[] = [];
    const record = (_p: unknown, ctx: { message: Envelope }) => void seen.push(ctx.message);
    bus.register('b', { handlers: { told: record, work: record } });
    bus.register('a', {
      handlers: {
        outer: async (_p, ctx) => {
          seen.push(ctx.message);
          await ctx.notify('told', {}, { to: ['b'] });
          await ctx.delegate('b', 'work', {});
          return 'done';
        },
      },
    });
    const x = bus.register('x');
    await expect(x.ask('a', 'outer', {})).resolves.toBe('done');
    await settle();
    const [outer, told, work] = seen;
    for (const child of [told!, work!]) {
      expect(child).toMatchObject({ from: 'a', conversationId: outer!.conversationId, causationId: outer!.id, depth: 1 });
    }
    expect(work!.deadline).toBeLessThanOrEqual(outer!.deadline!);
  });

  it("time out with the parent's deadline when they asked for more", async () => {
    vi.useFakeTimers();
    const bus = makeBus();
    let innerError: unknown;
    bus.register('b', { handlers: { never: (_p, ctx) => hang(ctx) } });
    bus.register('a', {
      handlers: {
        outer: async (_p, ctx) => {
          try {
            return await ctx.ask('b', 'never', {}, { timeoutMs: 60_000 });
          } catch (error) {
            innerError = error;
            throw error;
          }
        },
      },
    });
    const x = bus.register('x');
    const outer = rejectionOf(x.ask('a', 'outer', {}, { timeoutMs: 500 }));
    await vi.advanceTimersByTimeAsync(500);
    expect((await outer).code).toBe('TIMEOUT');
    expect(innerError).toMatchObject({ code: 'TIMEOUT' });
    expect((innerError as { timeoutMs: number }).timeoutMs).toBeLessThanOrEqual(500);
  });
});

describe('cancellation', () => {
  it("job.cancel(reason) rejects with CANCELLED and aborts the handler's signal", async () => {
    const bus = makeBus();
    let signal: AbortSignal | undefined;
    bus.register('writer', {
      handlers: {
        work: (_p, ctx) => {
          signal = ctx.signal;
          return hang(ctx);
        },
      },
    });
    const research = bus.register('research');
    const job = research.delegate('writer', 'work', {});
    await settle();
    expect(signal?.aborted).toBe(false);
    job.cancel('why');
    const error = await rejectionOf(job);
    expect(error.code).toBe('CANCELLED');
    expect(error.reason).toBe('why');
    expect(error.message).toContain('why');
    expect(signal?.aborted).toBe(true);
    const entry = bus.getMessageLog({ limit: 10 }).find((e) => e.messageId === job.id);
    expect(entry).toMatchObject({ outcome: 'cancelled', code: 'CANCELLED' });
  });

  it('job.cancel() on a queued job keeps its handler from ever running', async () => {
    const bus = makeBus();
    const gate = deferred();
    const ran: string[] = [];
    bus.register('writer', {
      handlers: {
        work: async (p) => {
          ran.push(p as string);
          await gate.promise;
          return p;
        },
      },
    });
    const research = bus.register('research');
    const first = research.delegate('writer', 'work', 'first');
    const second = research.delegate('writer', 'work', 'second');
    await settle();
    second.cancel();
    expect((await rejectionOf(second)).code).toBe('CANCELLED');
    gate.resolve();
    await expect(first).resolves.toBe('first');
    await settle();
    expect(ran).toEqual(['first']);
  });

  it("aborting the signal passed as options.signal rejects with CANCELLED and aborts the handler's signal", async () => {
    const bus = makeBus();
    let signal: AbortSignal | undefined;
    bus.register('writer', {
      handlers: {
        work: (_p, ctx) => {
          signal = ctx.signal;
          return hang(ctx);
        },
      },
    });
    const research = bus.register('research');
    const controller = new AbortController();
    const answer = research.ask('writer', 'work', {}, { signal: controller.signal });
    await settle();
    controller.abort('user left');
    const error = await rejectionOf(answer);
    expect(error.code).toBe('CANCELLED');
    expect(error.message).toContain('user left');
    expect(signal?.aborted).toBe(true);
  });

  it('refuses at once with CANCELLED when the signal is already aborted, and nothing is delivered', async () => {
    const bus = makeBus();
    let ran = false;
    bus.register('writer', { handlers: { work: () => (ran = true) } });
    const research = bus.register('research');
    const error = await rejectionOf(research.ask('writer', 'work', {}, { signal: AbortSignal.abort('too late') }));
    expect(error.code).toBe('CANCELLED');
    await settle();
    expect(ran).toBe(false);
    const [entry] = bus.getMessageLog({ limit: 10 });
    expect(entry).toMatchObject({ decision: 'denied', code: 'CANCELLED', from: 'research', to: 'writer' });
  });

  it('cancel after the job settled changes nothing', async () => {
    const bus = makeBus();
    bus.register('writer', { handlers: { work: () => 'done' } });
    const research = bus.register('research');
    const job = research.delegate('writer', 'work', {});
    await expect(job).resolves.toBe('done');
    job.cancel('late');
    await expect(job).resolves.toBe('done');
    expect(bus.getMessageLog({ limit: 10 }).find((e) => e.messageId === job.id)).toMatchObject({ outcome: 'replied' });
  });
});

describe('DeadlineQueue', () => {
  it('arms its timer at most 2^31-1 ms ahead, so a far deadline neither overflows nor spins', async () => {
    vi.useFakeTimers();
    const { DeadlineQueue } = await import('../src/deadlines.js');
    const expired: number[] = [];
    const queue = new DeadlineQueue<{ deadline: number; heapIndex: number }>({ now: () => Date.now() }, (item) => expired.push(item.deadline));
    const far = Date.now() + 3_000_000_000; // beyond what setTimeout takes
    queue.add({ deadline: far, heapIndex: -1 });
    await vi.advanceTimersByTimeAsync(1000);
    expect(expired).toEqual([]);
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(3_000_000_000);
    expect(expired).toEqual([far]);
    expect(vi.getTimerCount()).toBe(0);
  });
});
