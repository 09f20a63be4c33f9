import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineContracts, isBusError, type ErrorCode, type HandlerContext } from '../src/index.js';
import { closeBuses, deferred, makeBus, rejectionOf, settle } from './support/helpers.js';

afterEach(closeBuses);

/** Counts handlers running at once. */
function tracker() {
  let active = 0;
  let max = 0;
  return {
    enter() {
      active++;
      max = Math.max(max, active);
    },
    exit() {
      active--;
    },
    get active() {
      return active;
    },
    get max() {
      return max;
    },
  };
}

describe('mailbox concurrency', () => {
  for (const concurrency of [1, 3]) {
    it(`runs at most ${concurrency} handler(s) at once with concurrency ${concurrency}`, async () => {
      const bus = makeBus();
      const gate = deferred();
      const t = tracker();
      bus.register('writer', {
        concurrency,
        handlers: {
          work: async (p) => {
            t.enter();
            await gate.promise;
            t.exit();
            return p;
          },
        },
      });
      const research = bus.register('research');
      const asks = [1, 2, 3, 4, 5, 6].map((n) => research.ask('writer', 'work', n));
      await settle();
      expect(t.active).toBe(concurrency);
      gate.resolve();
      await expect(Promise.all(asks)).resolves.toEqual([1, 2, 3, 4, 5, 6]);
      expect(t.max).toBe(concurrency);
    });
  }

  it('defaults to one handler at a time', async () => {
    const bus = makeBus();
    const t = tracker();
    bus.register('writer', {
      handlers: {
        work: async () => {
          t.enter();
          await new Promise((resolve) => setTimeout(resolve, 1));
          t.exit();
        },
      },
    });
    const research = bus.register('research');
    await Promise.all([1, 2, 3].map((n) => research.ask('writer', 'work', n)));
    expect(t.max).toBe(1);
  });
});

describe('mailbox order', () => {
  it("runs a queued 'critical' message before earlier-queued lower ones, then by arrival", async () => {
    const bus = makeBus();
    const gate = deferred();
    const order: string[] = [];
    bus.register('writer', {
      handlers: {
        work: async (p) => {
          order.push(p as string);
          if (p === 'block') await gate.promise;
          return p;
        },
      },
    });
    const research = bus.register('research');
    const asks = [
      research.ask('writer', 'work', 'block'),
      research.ask('writer', 'work', 'low-1', { priority: 'low' }),
      research.ask('writer', 'work', 'normal-1'),
      research.ask('writer', 'work', 'low-2', { priority: 'low' }),
      research.ask('writer', 'work', 'high-1', { priority: 'high' }),
      research.ask('writer', 'work', 'critical-1', { priority: 'critical' }),
      research.ask('writer', 'work', 'normal-2', { priority: 'normal' }),
    ];
    await settle();
    expect(order).toEqual(['block']);
    gate.resolve();
    await Promise.all(asks);
    expect(order).toEqual(['block', 'critical-1', 'high-1', 'normal-1', 'normal-2', 'low-1', 'low-2']);
  });

  it('gives every message its priority in the envelope', async () => {
    const bus = makeBus();
    const seen: string[] = [];
    bus.register('writer', { handlers: { work: (_p, ctx) => void seen.push(ctx.message.priority) } });
    const research = bus.register('research');
    await research.ask('writer', 'work', {});
    await research.ask('writer', 'work', {}, { priority: 'critical' });
    expect(seen).toEqual(['normal', 'critical']);
  });
});

describe('mailbox bound (maxQueue)', () => {
  it('refuses with MAILBOX_FULL beyond maxQueue, naming the queue state, and accepts again once drained', async () => {
    const bus = makeBus();
    const gate = deferred();
    let ran = 0;
    bus.register('writer', {
      maxQueue: 1,
      handlers: {
        work: async () => {
          ran++;
          await gate.promise;
          return 'ok';
        },
      },
    });
    const research = bus.register('research');
    const running = research.ask('writer', 'work', 1);
    await settle();
    const queued = research.ask('writer', 'work', 2);
    const error = await rejectionOf(research.ask('writer', 'work', 3));
    expect(error.code).toBe('MAILBOX_FULL');
    expect(error.message).toMatch(/1 running/);
    expect(error.message).toMatch(/1 waiting/);
    expect(error.message).toMatch(/maxQueue 1/);
    expect(error.agentId).toBe('writer');
    gate.resolve();
    await expect(Promise.all([running, queued])).resolves.toEqual(['ok', 'ok']);
    await expect(research.ask('writer', 'work', 4)).resolves.toBe('ok');
    expect(ran).toBe(3);
    // The policy allowed it; the delivery failed: the log says so rather than blaming the policy.
    const refused = bus.getMessageLog({ limit: 100 }).filter((e) => e.code !== undefined);
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ decision: 'allowed', outcome: 'failed', code: 'MAILBOX_FULL' });
  });

  it('with maxQueue 0 takes only what can run at once', async () => {
    const bus = makeBus();
    const gate = deferred();
    bus.register('writer', { maxQueue: 0, concurrency: 2, handlers: { work: () => gate.promise.then(() => 'ok') } });
    const research = bus.register('research');
    const a = research.ask('writer', 'work', 1);
    const b = research.ask('writer', 'work', 2);
    expect((await rejectionOf(research.ask('writer', 'work', 3))).code).toBe('MAILBOX_FULL');
    gate.resolve();
    await expect(Promise.all([a, b])).resolves.toEqual(['ok', 'ok']);
  });

  it('counts a notify against the bound and reports it as failed in the receipt', async () => {
    const bus = makeBus();
    const gate = deferred();
    bus.register('writer', { maxQueue: 0, handlers: { work: () => gate.promise, found: () => undefined } });
    const research = bus.register('research');
    const busy = research.ask('writer', 'work', 1);
    const receipt = await research.notify('found', {}, { to: ['writer'] });
    expect(receipt.failed).toEqual(['writer']);
    expect(receipt.delivered).toEqual([]);
    gate.resolve();
    await busy;
  });
});

describe('call-chain reentrancy', () => {
  it('lets A→B→A inside one chain complete with concurrency 1', async () => {
    const bus = makeBus();
    bus.register('a', {
      concurrency: 1,
      handlers: {
        start: async (_p, ctx) => `a got: ${String(await ctx.ask('b', 'mid', {}))}`,
        back: () => 'from a',
      },
    });
    bus.register('b', { concurrency: 1, handlers: { mid: async (_p, ctx) => `b got: ${String(await ctx.ask('a', 'back', {}))}` } });
    const x = bus.register('x');
    await expect(x.ask('a', 'start', {}, { timeoutMs: 1000 })).resolves.toBe('a got: b got: from a');
  });

  it('still serializes two independent outside asks to a busy agent', async () => {
    const bus = makeBus();
    const gate = deferred();
    const t = tracker();
    bus.register('a', {
      handlers: {
        work: async () => {
          t.enter();
          await gate.promise;
          t.exit();
          return 'ok';
        },
      },
    });
    const x = bus.register('x');
    const y = bus.register('y');
    const both = Promise.all([x.ask('a', 'work', {}), y.ask('a', 'work', {})]);
    await settle();
    expect(t.active).toBe(1);
    gate.resolve();
    await both;
    expect(t.max).toBe(1);
  });

  it('does not let a queued outside message run beside the busy handler once a reentrant call finishes', async () => {
    const bus = makeBus();
    let startRunning = false;
    let overlapped: boolean | undefined;
    bus.register('a', {
      concurrency: 1,
      handlers: {
        start: async (_p, ctx) => {
          startRunning = true;
          const got = await ctx.ask('b', 'mid', {});
          startRunning = false;
          return got;
        },
        back: () => 'from a',
        other: () => {
          overlapped = startRunning;
          return 'other';
        },
      },
    });
    bus.register('b', { handlers: { mid: (_p, ctx) => ctx.ask('a', 'back', {}) } });
    const x = bus.register('x');
    const y = bus.register('y');
    // y's ask arrives while a is busy with x's chain: it must wait for 'start' to finish.
    const results = await Promise.all([x.ask('a', 'start', {}), y.ask('a', 'other', {})]);
    expect(results).toEqual(['from a', 'other']);
    expect(overlapped).toBe(false);
  });
});

describe('limits.maxDepth', () => {
  function pingPong(maxDepth: number | undefined) {
    const bus = makeBus(maxDepth === undefined ? {} : { limits: { maxDepth } });
    const depths: number[] = [];
    const codes: ErrorCode[] = [];
    const handler = (other: string) => async (_p: unknown, ctx: HandlerContext) => {
      depths.push(ctx.message.depth);
      try {
        return await ctx.ask(other, 'ping', {});
      } catch (error) {
        if (isBusError(error)) codes.push(error.code);
        throw error;
      }
    };
    bus.register('a', { handlers: { ping: handler('b') } });
    bus.register('b', { handlers: { ping: handler('a') } });
    const x = bus.register('x');
    return { bus, depths, codes, x };
  }

  it('stops a ping-pong chain with MAX_DEPTH at the configured depth', async () => {
    const { bus, depths, codes, x } = pingPong(3);
    const error = await rejectionOf(x.ask('a', 'ping', {}));
    expect(depths).toEqual([0, 1, 2, 3]);
    expect(codes[0]).toBe('MAX_DEPTH');
    expect(error.code).toBe('HANDLER_FAILED');
    const refused = bus.getMessageLog({ limit: 100 }).filter((e) => e.code === 'MAX_DEPTH');
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ decision: 'denied', from: 'b', to: 'a' });
  });

  it('allows chains of depth 8 by default and refuses the ninth hop', async () => {
    const { depths, codes, x } = pingPong(undefined);
    await rejectionOf(x.ask('a', 'ping', {}));
    expect(depths).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(codes[0]).toBe('MAX_DEPTH');
  });

  it('with maxDepth 0 refuses any send from inside a handler', async () => {
    const { depths, codes, x } = pingPong(0);
    await rejectionOf(x.ask('a', 'ping', {}));
    expect(depths).toEqual([0]);
    expect(codes).toEqual(['MAX_DEPTH']);
  });
});

describe('order of checks for a send', () => {
  it('reports CLOSED before anything else', async () => {
    const bus = makeBus({ limits: { maxPayloadBytes: 10 } });
    const research = bus.register('research');
    await bus.close();
    expect((await rejectionOf(research.ask('nobody', '', 'x'.repeat(100)))).code).toBe('CLOSED');
  });

  it('checks arguments before size: an oversized payload to an unknown agent gives UNKNOWN_AGENT', async () => {
    const bus = makeBus({ limits: { maxPayloadBytes: 10 } });
    const research = bus.register('research');
    expect((await rejectionOf(research.ask('nobody', 'x', 'x'.repeat(100)))).code).toBe('UNKNOWN_AGENT');
  });

  it('checks the intent before size, and plain JSON and size in one walk that stops at the limit', async () => {
    const bus = makeBus({ limits: { maxPayloadBytes: 10 } });
    bus.register('writer', { handlers: { x: () => 1 } });
    const research = bus.register('research');
    expect((await rejectionOf(research.ask('writer', '', 'x'.repeat(100)))).code).toBe('INVALID_ARGUMENT');
    // What the walk reads before the limit is checked for plain JSON; nothing past it is read.
    expect((await rejectionOf(research.ask('writer', 'x', { fn: () => 1, big: 'x'.repeat(100) }))).code).toBe('INVALID_PAYLOAD');
    expect((await rejectionOf(research.ask('writer', 'x', { big: 'x'.repeat(100), fn: () => 1 }))).code).toBe('PAYLOAD_TOO_LARGE');
    expect((await rejectionOf(research.ask('writer', 'x', { big: 'x'.repeat(100) }))).code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('checks size before the contract: a payload both too large and off its contract is PAYLOAD_TOO_LARGE, and the schema never runs', async () => {
    let schemaRuns = 0;
    const contracts = defineContracts({
      x: { type: 'ask', input: z.unknown().refine(() => (schemaRuns++, false), 'never valid'), output: z.unknown() },
    });
    const bus = makeBus({ contracts, limits: { maxPayloadBytes: 10 } });
    bus.register('writer', { handlers: { x: () => 1 } });
    const research = bus.register('research');
    expect((await rejectionOf(research.ask('writer', 'x', 'x'.repeat(100)))).code).toBe('PAYLOAD_TOO_LARGE');
    // The message-type half of the contract comes after the walk too.
    expect((await rejectionOf(research.notify('x', 'x'.repeat(100), { to: ['writer'] }))).code).toBe('PAYLOAD_TOO_LARGE');
    expect(schemaRuns).toBe(0);
    expect((await rejectionOf(research.ask('writer', 'x', 'small'))).code).toBe('INVALID_PAYLOAD');
    expect(schemaRuns).toBe(1);
  });

  it('checks the contract before the rate: an off-contract send is INVALID_PAYLOAD and spends no token', async () => {
    const contracts = defineContracts({ x: { type: 'ask', input: z.object({ n: z.number() }), output: z.unknown() } });
    const bus = makeBus({ contracts, limits: { rate: { perSecond: 1, burst: 1 } } });
    bus.register('writer', { handlers: { x: () => 1 } });
    const research = bus.register('research');
    expect((await rejectionOf(research.ask('writer', 'x', { n: 'one' }))).code).toBe('INVALID_PAYLOAD');
    await expect(research.ask('writer', 'x', { n: 1 })).resolves.toBe(1); // the bucket's one token was still there
    expect((await rejectionOf(research.ask('writer', 'x', { n: 'two' }))).code).toBe('INVALID_PAYLOAD');
    expect((await rejectionOf(research.ask('writer', 'x', { n: 2 }))).code).toBe('RATE_LIMITED');
  });

  it("reads a notify's recipients before its intent: a bad to-list is refused first", async () => {
    const bus = makeBus();
    const research = bus.register('research');
    expect((await rejectionOf(research.notify('', {}, { to: ['research'] }))).code).toBe('SELF_MESSAGE');
    expect((await rejectionOf(research.notify('', {}, { to: ['writer'] }))).code).toBe('INVALID_ARGUMENT');
  });

  it('checks size before the rate: an oversized send with an empty bucket gives PAYLOAD_TOO_LARGE', async () => {
    const bus = makeBus({ limits: { maxPayloadBytes: 10, rate: { perSecond: 1, burst: 1 } } });
    bus.register('writer', { handlers: { x: () => 1 } });
    const research = bus.register('research');
    await research.ask('writer', 'x', {});
    expect((await rejectionOf(research.ask('writer', 'x', 'x'.repeat(100)))).code).toBe('PAYLOAD_TOO_LARGE');
    expect((await rejectionOf(research.ask('writer', 'x', {}))).code).toBe('RATE_LIMITED');
  });

  it('checks the rate before the policy: a send that policy would deny gives RATE_LIMITED once the bucket is empty', async () => {
    const bus = makeBus({ policies: [], limits: { rate: { perSecond: 1, burst: 1 } } });
    bus.register('writer', { handlers: { x: () => 1 } });
    const research = bus.register('research');
    expect((await rejectionOf(research.ask('writer', 'x', {}))).code).toBe('POLICY_DENIED');
    const error = await rejectionOf(research.ask('writer', 'x', {}));
    expect(error.code).toBe('RATE_LIMITED');
    expect(error.retryAfterMs).toBeGreaterThan(0);
    expect(error.retryAfterMs).toBeLessThanOrEqual(1000);
  });

  it('spends a token on a send the policy denies', async () => {
    vi.useFakeTimers();
    const bus = makeBus({
      policies: [{ from: 'research', to: 'writer', allow: ['ask'] }],
      limits: { rate: { perSecond: 1, burst: 2 } },
    });
    bus.register('writer', { handlers: { x: () => 'ok' } });
    bus.register('vault', { handlers: { x: () => 'ok' } });
    const research = bus.register('research');
    expect((await rejectionOf(research.ask('vault', 'x', {}))).code).toBe('POLICY_DENIED');
    expect((await rejectionOf(research.ask('vault', 'x', {}))).code).toBe('POLICY_DENIED');
    const limited = await rejectionOf(research.ask('writer', 'x', {}));
    expect(limited.code).toBe('RATE_LIMITED');
    await vi.advanceTimersByTimeAsync(limited.retryAfterMs!);
    await expect(research.ask('writer', 'x', {})).resolves.toBe('ok');
  });

  it('checks the policy before delivery: a denied send to an agent without a handler gives POLICY_DENIED', async () => {
    const bus = makeBus({ policies: [] });
    bus.register('writer');
    const research = bus.register('research');
    expect((await rejectionOf(research.ask('writer', 'x', {}))).code).toBe('POLICY_DENIED');
  });

  it('charges replies nothing: a rate-limited agent can still answer', async () => {
    const bus = makeBus({ limits: { rate: false } });
    const writer = bus.register('writer', { rate: { perSecond: 1, burst: 1 }, handlers: { x: () => 'ok' } });
    bus.register('qa', { handlers: { found: () => undefined } });
    const research = bus.register('research');
    await writer.notify('found', {}, { to: ['qa'] });
    expect((await rejectionOf(writer.notify('found', {}, { to: ['qa'] }))).code).toBe('RATE_LIMITED');
    await expect(Promise.all([1, 2, 3].map(() => research.ask('writer', 'x', {})))).resolves.toEqual(['ok', 'ok', 'ok']);
  });

  it('audits every refusal with its code', async () => {
    const bus = makeBus({ policies: [], limits: { maxPayloadBytes: 10, rate: { perSecond: 1, burst: 1 } } });
    bus.register('writer', { handlers: { x: () => 1 } });
    const research = bus.register('research');
    await rejectionOf(research.ask('nobody', 'x', {}));
    await rejectionOf(research.ask('writer', 'x', 'x'.repeat(100)));
    await rejectionOf(research.ask('writer', 'x', {}));
    await rejectionOf(research.ask('writer', 'x', {}));
    const codes = bus.getMessageLog({ limit: 100 }).map((e) => [e.decision, e.code]);
    expect(codes).toEqual([
      ['denied', 'RATE_LIMITED'],
      ['denied', 'POLICY_DENIED'],
      ['denied', 'PAYLOAD_TOO_LARGE'],
      ['denied', 'UNKNOWN_AGENT'],
    ]);
  });
});

describe('reentrancy and a full mailbox', () => {
  it('lets A→B→A in one chain in even when A allows no waiting messages (maxQueue 0)', async () => {
    const bus = makeBus();
    bus.register('a', {
      maxQueue: 0,
      handlers: {
        start: (_p, ctx) => ctx.ask('b', 'middle', {}),
        back: () => 'back in a',
      },
    });
    bus.register('b', { handlers: { middle: (_p, ctx) => ctx.ask('a', 'back', {}) } });
    const outside = bus.register('outside');
    await expect(outside.ask('a', 'start', {})).resolves.toBe('back in a');
  });
});

describe('event order', () => {
  it('emits message:delivered before anything the handler does', async () => {
    const bus = makeBus();
    const seen: string[] = [];
    bus.events.on('message:delivered', ({ envelope }) => seen.push(`delivered ${envelope.intent}`));
    bus.events.on('message:sent', ({ envelope }) => seen.push(`sent ${envelope.intent}`));
    bus.register('b', { handlers: { inner: () => 'ok' } });
    bus.register('a', {
      handlers: {
        outer: (_p, ctx) => {
          seen.push('handler outer starts');
          return ctx.ask('b', 'inner', {});
        },
      },
    });
    await bus.register('c').ask('a', 'outer', {});
    expect(seen.slice(0, 4)).toEqual(['sent outer', 'delivered outer', 'handler outer starts', 'sent inner']);
  });
});
