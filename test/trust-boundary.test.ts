// The trust boundary by construction: nothing an agent holds (its handle, a handler's ctx)
// reaches the bus's internals, and nothing a caller's getter does can undo a check.
import { afterEach, describe, expect, it } from 'vitest';
import { defineContracts, type HandlerContext } from '../src/index.js';
import type { Telemetry } from '../src/otel/index.js';
import { z } from 'zod';
import { closeBuses, makeBus, rejectionOf, settle } from './support/helpers.js';
import { LoopbackNetwork, recordingResponder } from './support/loopback.js';

afterEach(closeBuses);

/** Values whose insides are the platform's, not the bus's: the walk stops at them. */
function isPlatform(value: object): boolean {
  return value === Object.prototype || value === Function.prototype || value === Array.prototype || value === Promise.prototype || value instanceof AbortSignal;
}

/**
 * Everything reachable from `root` by reading properties (own, inherited, symbol and
 * non-enumerable; getters are called), to `maxDepth`. Returns every object found.
 */
function reachable(root: object, maxDepth = 6): Set<object> {
  const seen = new Set<object>();
  const visit = (value: unknown, depth: number): void => {
    if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return;
    if (seen.has(value) || depth > maxDepth) return;
    seen.add(value);
    if (isPlatform(value)) return;
    for (let o: object | null = value; o !== null && !isPlatform(o); o = Object.getPrototypeOf(o) as object | null) {
      if (o !== value) visit(o, depth + 1);
      for (const key of Reflect.ownKeys(o)) {
        let v: unknown;
        try {
          v = Reflect.get(o, key, value);
        } catch {
          continue; // a getter that refuses to run on this receiver
        }
        visit(v, depth + 1);
      }
    }
  };
  visit(root, 0);
  return seen;
}

/** True when `objects` holds something that looks like a bus internal. */
function internals(objects: Set<object>): string[] {
  const found: string[] = [];
  for (const o of objects) {
    if (o instanceof Map || o instanceof Set || o instanceof WeakMap) found.push(`a ${o.constructor.name}`);
    const name = (o as { constructor?: { name?: unknown } }).constructor?.name;
    if (typeof name === 'string' && /Pipeline|Router|Ledger|Journal|Deliveries|Approvals|PolicyStore|PolicySet|GroupCommit|Mailbox|PendingRequest|Delivery$|TokenBucket|Transport|Inbound|RemoteSends/.test(name) && o !== (o as { constructor?: { prototype?: unknown } }).constructor?.prototype) {
      found.push(name);
    }
    for (const key of ['router', 'pipeline', 'delivery', 'pending', 'registry', 'config', 'policy', 'record', 'resolve', 'reject', 'mailbox', 'responder', 'transport']) {
      if (Object.hasOwn(o, key)) found.push(`.${key}`);
    }
  }
  return found;
}

describe('faces with nothing behind them', () => {
  it('nothing reachable from a handler ctx leads to the bus internals', async () => {
    const bus = makeBus();
    let ctx: HandlerContext | undefined;
    bus.register('vault', { handlers: { open: (_p, c) => ((ctx = c), c.signal, 'ok') } });
    await bus.register('a').ask('vault', 'open', {});
    expect(ctx).toBeDefined();
    const found = reachable(ctx!);
    expect(found.size).toBeGreaterThan(3); // the walk did walk: the envelope, its payload, the prototype
    expect(internals(found)).toEqual([]);
  });

  it('nothing reachable from the ctx of a message from another node leads to the bus internals, and its envelope is frozen', async () => {
    const net = new LoopbackNetwork();
    const t1 = net.transport();
    makeBus({ node: 'n1', transport: t1 }).register('a');
    const n2 = makeBus({ node: 'n2', transport: net.transport() });
    let ctx: HandlerContext | undefined;
    n2.register('vault', { handlers: { open: (_p, c) => ((ctx = c), c.signal, 'ok') } });
    const r = recordingResponder();
    const inbound = { id: 'm-1', type: 'ask', from: 'a', fromNode: 'n1', to: 'vault', intent: 'open', payloadJson: '{"deep":{"list":[1,{"x":2}]}}', conversationId: 'c-1', priority: 'normal', depth: 0, budgetMs: 5000 } as const;
    t1.inject('n2', inbound, r);
    await settle(40);
    expect(r.replies).toEqual(['"ok"']);
    const envelope = ctx!.message as unknown as { payload: { deep: { list: unknown[] } } };
    expect(Object.isFrozen(envelope)).toBe(true);
    expect(Object.isFrozen(envelope.payload.deep.list[1])).toBe(true);
    const found = reachable(ctx!);
    expect(found.size).toBeGreaterThan(3);
    expect(internals(found)).toEqual([]);
  });

  it('nothing reachable from a handle (or a delegate job) leads to the bus internals', async () => {
    const bus = makeBus();
    bus.register('b', { handlers: { work: () => 1 } });
    const a = bus.register('a');
    const job = a.delegate('b', 'work', {});
    expect(internals(reachable(a))).toEqual([]);
    expect(internals(reachable(job))).toEqual([]);
    await job;
  });

  it('with telemetry on, nothing reachable from a handle, a job or a ctx leads to the telemetry or its tokens', async () => {
    const held = new Set<object>();
    const keep = <T extends object>(o: T): T => (held.add(o), o);
    const telemetry: Telemetry = keep({
      enabled: true,
      sendStarted: () => keep({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }),
      sendRefused: () => undefined,
      sendHeld: () => undefined,
      sendCommitted: () => undefined,
      sendSettled: () => undefined,
      handlerStarted: (_e, fn) => fn(keep({})),
      handlerEnded: () => undefined,
      commitTimed: () => undefined,
      mailboxDepth: () => undefined,
      agentRemoved: () => undefined,
      approvalsHeld: () => undefined,
    });
    const bus = makeBus({ telemetry });
    let ctx: HandlerContext | undefined;
    bus.register('b', { handlers: { work: (_p, c) => ((ctx = c), c.signal, 'ok') } });
    const a = bus.register('a');
    const job = a.delegate('b', 'work', {});
    const found = new Set([...reachable(a), ...reachable(job)]);
    await job;
    for (const o of reachable(ctx!)) found.add(o);
    expect(held.size).toBeGreaterThanOrEqual(3);
    expect([...held].filter((o) => found.has(o))).toEqual([]);
    expect(internals(found)).toEqual([]);
    expect((ctx!.message as { traceparent?: string }).traceparent).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  });

  it('a handler cannot send as another agent', async () => {
    const bus = makeBus({
      audit: { path: ':memory:' },
      policies: [
        { from: 'admin', to: 'vault', allow: ['ask'] },
        { from: '*', to: 'mallory', allow: ['ask'] },
      ],
    });
    let opened = false;
    bus.register('admin');
    bus.register('vault', { handlers: { open: () => ((opened = true), 'opened') } });
    bus.register('mallory', {
      handlers: {
        attack: async (_p, ctx) => {
          const c = ctx as unknown as Record<string, any>;
          // The attack from the issue: the router behind ctx, the registry behind the router.
          const router = c.router ?? c.pipeline ?? c.port;
          expect(router).toBeUndefined();
          // Asking as itself is refused by the policy.
          return (await rejectionOf(ctx.ask('vault', 'open', {}))).code;
        },
      },
    });
    await expect(bus.register('x').ask('mallory', 'attack', {})).resolves.toBe('POLICY_DENIED');
    expect(opened).toBe(false);
    expect(bus.getMessageLog({ agentId: 'vault' }).filter((e) => e.from === 'admin')).toEqual([]);
  });

  it('a handler cannot answer an asker past the audit log and the codec', async () => {
    const bus = makeBus();
    bus.register('b', {
      handlers: {
        q: (_p, ctx) => {
          const c = ctx as unknown as Record<string, any>;
          expect(c.delivery).toBeUndefined();
          return { through: 'the bus' };
        },
      },
    });
    await expect(bus.register('a').ask('b', 'q', {})).resolves.toEqual({ through: 'the bus' });
  });

  it('a handler cannot rewrite the policy', async () => {
    const bus = makeBus({ policies: [{ from: 'a', to: 'b', allow: ['ask'] }] });
    bus.register('b', {
      handlers: {
        q: (_p, ctx) => {
          const found = reachable(ctx);
          for (const o of found) expect(typeof (o as { replace?: unknown }).replace === 'function' && typeof (o as { current?: unknown }).current === 'object').toBe(false);
          return 'ok';
        },
      },
    });
    await bus.register('a').ask('b', 'q', {});
    expect(bus.policies()).toHaveLength(1);
  });
});

describe('frozen faces', () => {
  /** What a hostile handler tries: every way to put its own function where another face will call it. */
  const patchAttempts = (target: object, name: string, fn: unknown): string[] => {
    const took: string[] = [];
    const attempts: [string, () => void][] = [
      ['assign', () => ((target as Record<string, unknown>)[name] = fn)],
      ['defineProperty', () => Object.defineProperty(target, name, { value: fn })],
      [
        'delete',
        () => {
          // Deleting a property the object does not own changes nothing; only an own one counts.
          if (Object.hasOwn(target, name) && delete (target as Record<string, unknown>)[name]) return;
          throw new Error('nothing deleted');
        },
      ],
      ['setPrototypeOf', () => Object.setPrototypeOf(target, { [name]: fn })],
    ];
    for (const [how, attempt] of attempts) {
      try {
        attempt();
        took.push(how);
      } catch {
        // refused: a frozen object throws in strict code
      }
    }
    return took;
  };

  it("a handler cannot patch ask on the prototype every ctx shares to send as the next agent that asks", async () => {
    const bus = makeBus({
      policies: [
        { from: 'admin', to: 'vault', allow: ['ask'] },
        { from: 'admin', to: 'helper', allow: ['ask'] },
        { from: '*', to: 'mallory', allow: ['ask'] },
        { from: '*', to: 'admin', allow: ['ask'] },
      ],
    });
    let opened = false;
    bus.register('vault', { handlers: { open: () => ((opened = true), 'opened') } });
    bus.register('helper', { handlers: { q: () => 'helped' } });
    // A trusted agent whose handler asks its helper.
    bus.register('admin', { handlers: { work: (_p, ctx) => ctx.ask('helper', 'q', {}) } });
    let took: string[] = [];
    bus.register('mallory', {
      handlers: {
        attack: (_p, ctx) => {
          const proto = Object.getPrototypeOf(ctx) as Record<string, any>;
          const original = proto.ask as (...a: unknown[]) => unknown;
          const evil = function (this: unknown) {
            return original.call(this, 'vault', 'open', {});
          };
          took = [...patchAttempts(proto, 'ask', evil), ...patchAttempts(ctx, 'ask', evil), ...patchAttempts(original, 'call', evil)];
          return 'done';
        },
      },
    });
    const x = bus.register('x');
    await x.ask('mallory', 'attack', {});
    expect(took).toEqual([]);
    await expect(x.ask('admin', 'work', {})).resolves.toBe('helped');
    expect(opened).toBe(false);
    expect(bus.getMessageLog({ agentId: 'vault' })).toEqual([]);
  });

  it('a handler cannot patch the methods every handle shares, nor a handle or a delegate job it holds', async () => {
    const bus = makeBus({ policies: [{ from: '*', to: '*', allow: ['ask', 'delegate'] }] });
    bus.register('b', { handlers: { q: () => 'ok' } });
    const a = bus.register('a');
    const proto = Object.getPrototypeOf(a) as object;
    const evil = () => 'patched';
    expect(patchAttempts(proto, 'ask', evil)).toEqual([]);
    expect(patchAttempts(a, 'ask', evil)).toEqual([]);
    const id = Object.getOwnPropertyDescriptor(proto, 'id')!.get!;
    expect(patchAttempts(id, 'call', evil)).toEqual([]);
    expect(patchAttempts(proto.constructor, 'prototype', {})).toEqual([]);
    const job = a.delegate('b', 'q', {});
    expect(patchAttempts(job, 'cancel', evil)).toEqual([]);
    expect(patchAttempts(job.cancel, 'call', evil)).toEqual([]);
    await expect(job).resolves.toBe('ok');
    await expect(a.ask('b', 'q', {})).resolves.toBe('ok');
  });

  it('what crosses the transport seam (the inbound port, a sink) cannot be patched by one holder for all', async () => {
    const net = new LoopbackNetwork();
    const t1 = net.transport();
    const sinks: object[] = [];
    const send = t1.send.bind(t1);
    t1.send = (outbound, sink) => (sinks.push(sink), send(outbound, sink));
    const one = makeBus({ node: 'one', transport: t1, policies: [{ from: '*', to: '*', allow: ['ask'] }] });
    const two = makeBus({ node: 'two', transport: net.transport(), policies: [{ from: '*', to: '*', allow: ['ask'] }] });
    two.register('b', { handlers: { q: () => 'ok' } });
    const a = one.register('a');
    await Promise.all([one.ready(), two.ready()]);
    await expect(a.ask('b', 'q', {})).resolves.toBe('ok');
    expect(sinks).toHaveLength(1);
    const evil = () => undefined;
    expect(patchAttempts(Object.getPrototypeOf(sinks[0]) as object, 'reply', evil)).toEqual([]);
    for (const port of net.ports.values()) {
      expect(patchAttempts(port, 'receive', evil)).toEqual([]);
      expect(patchAttempts(port.receive, 'call', evil)).toEqual([]);
    }
  });
});

describe("a handler's return value", () => {
  it('has its then read exactly once', async () => {
    const bus = makeBus();
    let reads = 0;
    bus.register('b', {
      handlers: {
        q: () => ({
          get then() {
            reads++;
            // A getter that shows a second reader something else.
            return reads === 1 ? (resolve: (v: unknown) => void) => resolve('first') : (resolve: (v: unknown) => void) => resolve('second');
          },
        }),
      },
    });
    await expect(bus.register('a').ask('b', 'q', {})).resolves.toBe('first');
    expect(reads).toBe(1);
  });

  it('a thenable whose then throws fails the ask with HANDLER_FAILED', async () => {
    const bus = makeBus();
    bus.register('b', { handlers: { q: () => ({ then() { throw new Error('boom'); } }) } });
    const error = await rejectionOf(bus.register('a').ask('b', 'q', {}));
    expect(error.code).toBe('HANDLER_FAILED');
    expect(error.message).toContain('boom');
  });
});

describe('read once', () => {
  it('a send() message whose type flips from ask to notify is read once: with notify-only rules it gets no reply', async () => {
    const bus = makeBus({ policies: [{ from: 'a', to: 'b', allow: ['notify'] }] });
    bus.register('b', { handlers: { q: () => 'secret' } });
    const a = bus.register('a');
    let reads = 0;
    const message = { to: 'b', intent: 'q', payload: {}, get type() { return reads++ === 0 ? 'ask' : 'notify'; } };
    const error = await rejectionOf(a.send(message as never));
    expect(reads).toBe(1);
    expect(error.code).toBe('POLICY_DENIED');
  });

  it('a payload getter that unregisters the recipient cannot get the message delivered', async () => {
    const bus = makeBus();
    let ran = false;
    bus.register('b', { handlers: { q: () => ((ran = true), 1) } });
    const a = bus.register('a');
    const payload = { get x() { bus.unregister('b'); return 1; } };
    expect((await rejectionOf(a.ask('b', 'q', payload))).code).toBe('UNKNOWN_AGENT');
    await bus.onIdle();
    expect(ran).toBe(false);
  });

  it('a payload getter that closes the bus cannot get the message delivered after close', async () => {
    const bus = makeBus();
    let ran = false;
    bus.register('b', { handlers: { q: () => ((ran = true), 1) } });
    const a = bus.register('a');
    let closing: Promise<void> | undefined;
    const payload = { get x() { closing = bus.close(); return 1; } };
    expect((await rejectionOf(a.ask('b', 'q', payload))).code).toBe('CLOSED');
    await closing;
    expect(ran).toBe(false);
  });

  it('an options getter that closes the bus cannot get a notify delivered after close', async () => {
    const bus = makeBus();
    let ran = false;
    bus.register('b', { handlers: { n: () => void (ran = true) } });
    const a = bus.register('a');
    let closing: Promise<void> | undefined;
    const options = { get priority() { closing = bus.close(); return 'high' as const; } };
    expect((await rejectionOf(a.notify('n', {}, options))).code).toBe('CLOSED');
    await closing;
    expect(ran).toBe(false);
  });

  it('an options object is read once: a timeoutMs getter is called one time', async () => {
    const bus = makeBus();
    bus.register('b', { handlers: { q: () => 1 } });
    let reads = 0;
    await bus.register('a').ask('b', 'q', {}, { get timeoutMs() { reads++; return 1000; } });
    expect(reads).toBe(1);
  });

  it('the output contract validates the very copy that is delivered', async () => {
    const contracts = defineContracts({ quote: { type: 'ask', input: z.object({}), output: z.object({ price: z.number().max(100) }) } });
    const bus = makeBus({ contracts });
    let reads = 0;
    bus.register('b', { handlers: { quote: () => ({ get price() { return reads++ === 0 ? 5 : 1_000_000; } }) as { price: number } } });
    const result = await bus.register('a').ask('b', 'quote', {});
    expect(reads).toBe(1);
    expect(result).toEqual({ price: 5 });
  });
});

describe('unreadable return values', () => {
  const revoked = () => {
    const r = Proxy.revocable({}, {});
    r.revoke();
    return r.proxy;
  };
  const throwingThen = () => Object.defineProperty({}, 'then', { get() { throw new Error('no then for you'); } });

  for (const [name, make] of [['a revoked Proxy', revoked], ['an object whose then getter throws', throwingThen]] as const) {
    it(`a handler returning ${name} fails the ask with HANDLER_FAILED at once, leaving nothing tracked`, async () => {
      const bus = makeBus();
      const b = bus.register('b', { handlers: { q: () => make() } });
      const a = bus.register('a');
      const error = await rejectionOf(a.ask('b', 'q', {}, { timeoutMs: 60_000 }));
      expect(error.code).toBe('HANDLER_FAILED');
      await bus.onIdle();
      // Nothing is left in flight: b can be asked again and answers.
      b.handle('q', () => 'fine');
      await expect(a.ask('b', 'q', {})).resolves.toBe('fine');
    });
  }
});

describe('approve() reports only what is true', () => {
  it('approve() says staged, never delivered, when the log then refuses the row; the sender gets AUDIT_UNAVAILABLE', async () => {
    let failing = false;
    const rows: unknown[] = [];
    const log = {
      append(records: unknown[]) {
        if (failing) throw new Error('disk full');
        rows.push(...records);
      },
      query: () => [],
      verify: () => ({ ok: true, checked: 0 }),
      close: () => undefined,
    };
    const bus = makeBus({ audit: log as never, policies: [{ from: 'a', to: 'b', allow: ['ask'], requireApproval: true }] });
    bus.register('b', { handlers: { q: () => 1 } });
    const ask = bus.register('a').ask('b', 'q', {});
    await bus.flush();
    const [held] = bus.approvals.list();
    failing = true;
    const result = bus.approvals.approve(held!.id);
    expect(result).toEqual({ staged: true });
    expect((await rejectionOf(ask)).code).toBe('AUDIT_UNAVAILABLE');
  });
});
