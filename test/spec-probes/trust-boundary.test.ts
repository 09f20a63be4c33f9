// SPEC "The trust boundary": faces with nothing behind them, frozen prototypes and methods,
// every caller-supplied value read once, a bounded payload walk, and escaped text.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, escapeText, Orchestrator, type HandlerContext } from '../../src/index.js';
import { formatEntry, recordTranscript } from '../../src/testing/index.js';
import { bus, closeAll, dbPath, OPEN, refusal, removeDirs, settle } from './probe-kit.js';

afterEach(async () => {
  await closeAll();
  removeDirs();
});

async function captureCtx(): Promise<{ b: Orchestrator; handle: Agent; ctx: HandlerContext }> {
  const b = bus({ policies: [...OPEN] });
  let ctx!: HandlerContext;
  const handle = b.register('w', { handlers: { x: (_p, c) => void (ctx = c) } });
  await b.register('a').ask('w', 'x', 1);
  return { b, handle, ctx };
}

/** Every value reachable from `root` through own properties (string and symbol keys), prototypes and getters that do not throw. */
function reachable(root: object): Set<unknown> {
  const seen = new Set<unknown>();
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const v = stack.pop();
    if ((typeof v !== 'object' && typeof v !== 'function') || v === null || seen.has(v)) continue;
    if (v === Object.prototype || v === Function.prototype) continue;
    seen.add(v);
    stack.push(Object.getPrototypeOf(v));
    for (const key of Reflect.ownKeys(v)) {
      const d = Object.getOwnPropertyDescriptor(v, key);
      if (d === undefined) continue;
      if ('value' in d) stack.push(d.value);
    }
  }
  return seen;
}

describe('"A handle and a handler\'s ctx are faces with nothing behind them that a caller can reach at run time"', () => {
  it('a handle has no own properties; its JSON and inspect show only id and alive', async () => {
    const { handle } = await captureCtx();
    expect(Reflect.ownKeys(handle)).toEqual([]);
    expect(JSON.parse(JSON.stringify(handle))).toEqual({ id: 'w', alive: true });
    expect(inspect(handle, { showHidden: true, depth: 5 })).not.toMatch(/registry|router|policy|pending|record|port/i);
  });

  it('a ctx has no own properties leading anywhere; nothing reachable from handle or ctx is the bus, its approvals or its events', async () => {
    const { b, handle, ctx } = await captureCtx();
    expect(Reflect.ownKeys(ctx)).toEqual([]);
    for (const face of [handle, ctx]) {
      const r = reachable(face);
      expect(r.has(b)).toBe(false);
      expect(r.has(b.approvals)).toBe(false);
      expect(r.has(b.events)).toBe(false);
    }
  });
});

describe('"The faces\' prototypes and methods are frozen: a handler cannot patch a method that another agent\'s handle or ctx will call"', () => {
  it('handle, ctx, their prototypes and methods are frozen', async () => {
    const { handle, ctx } = await captureCtx();
    for (const o of [handle, ctx, Object.getPrototypeOf(handle), Object.getPrototypeOf(ctx), Agent.prototype, handle.ask, ctx.ask, ctx.progress, handle.notify]) {
      expect(Object.isFrozen(o)).toBe(true);
    }
  });

  it('a handler trying to patch ctx.ask on the prototype fails and the next agent\'s ctx still works', async () => {
    const b = bus({ policies: [...OPEN] });
    let patched: unknown;
    b.register('evil', {
      handlers: {
        x: (_p, ctx) => {
          try {
            (Object.getPrototypeOf(ctx) as { ask: unknown }).ask = () => Promise.resolve('hijacked');
            patched = 'patched';
          } catch (e) {
            patched = e;
          }
          return 1;
        },
      },
    });
    b.register('leaf', { handlers: { y: () => 'real' } });
    b.register('mid', { handlers: { z: (_p, ctx) => ctx.ask('leaf', 'y', {}) } });
    const a = b.register('a');
    await a.ask('evil', 'x', 1);
    expect(patched).toBeInstanceOf(TypeError);
    await expect(a.ask('mid', 'z', 1)).resolves.toBe('real');
  });

  it('the bus\'s events and approvals are frozen faces too: no emit, no clear, no emitter behind them', () => {
    const b = bus({ audit: false });
    for (const face of [b.events, b.approvals]) expect(Object.isFrozen(face)).toBe(true);
    expect(Object.keys(b.events).sort()).toEqual(['off', 'on']);
    expect((b.events as unknown as { emit?: unknown }).emit).toBeUndefined();
    expect((b.events as unknown as { clear?: unknown }).clear).toBeUndefined();
  });
});

describe('"Every caller-supplied value is read exactly once"', () => {
  it('a payload getter is read once: the recipient gets the value the checks saw', async () => {
    const b = bus({ policies: [...OPEN], limits: { maxPayloadBytes: 100 } });
    let got: unknown;
    b.register('w', { handlers: { x: (p) => void (got = p) } });
    let reads = 0;
    const payload = {
      get text() {
        reads++;
        return reads === 1 ? 'short' : 'x'.repeat(10_000);
      },
    };
    await b.register('a').ask('w', 'x', payload);
    expect(reads).toBe(1);
    expect(got).toEqual({ text: 'short' });
  });

  it('the message object of send() and the options are each read once per key', async () => {
    const b = bus({ policies: [...OPEN] });
    let got: unknown;
    b.register('w', { handlers: { x: (p, ctx) => void (got = [p, ctx.message.to, ctx.message.priority]) } });
    b.register('other', { handlers: { x: () => 'wrong one' } });
    const counts: Record<string, number> = {};
    const counted = <T extends object>(o: T, flip: Record<string, unknown>): T =>
      new Proxy(o, {
        get(target, key, receiver) {
          if (typeof key === 'string') {
            counts[key] = (counts[key] ?? 0) + 1;
            if (counts[key]! > 1 && key in flip) return flip[key];
          }
          return Reflect.get(target, key, receiver) as unknown;
        },
      });
    const message = counted({ to: 'w', type: 'ask' as const, intent: 'x', payload: { n: 1 }, priority: 'low' as const }, { to: 'other', priority: 'critical' });
    await b.register('a').send(message);
    expect(got).toEqual([{ n: 1 }, 'w', 'low']);
    for (const [key, n] of Object.entries(counts)) expect(n, key).toBeLessThanOrEqual(1);
  });

  it('a handler\'s return value with a getter is read once', async () => {
    const b = bus({ policies: [...OPEN] });
    let reads = 0;
    b.register('w', {
      handlers: {
        x: () => ({
          get v() {
            reads++;
            return reads;
          },
        }),
      },
    });
    await expect(b.register('a').ask('w', 'x', 1)).resolves.toEqual({ v: 1 });
    expect(reads).toBe(1);
  });

  it('a payload with a then() method (a thenable) is refused, never called', async () => {
    const b = bus({ policies: [...OPEN] });
    let called = false;
    b.register('w', { handlers: { x: () => 1 } });
    const e = await refusal(
      b.register('a').ask('w', 'x', {
        then() {
          called = true;
        },
      }),
    );
    expect(e.code).toBe('INVALID_PAYLOAD');
    expect(called).toBe(false);
  });

  it('a throwing getter or a revoked Proxy in a payload is INVALID_PAYLOAD, not a crash', async () => {
    const b = bus({ policies: [...OPEN] });
    b.register('w', { handlers: { x: () => 1 } });
    const a = b.register('a');
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    const throwing = {
      get boom(): never {
        throw new Error('gotcha');
      },
    };
    for (const p of [throwing, { p: proxy }, proxy]) expect((await refusal(a.ask('w', 'x', p))).code).toBe('INVALID_PAYLOAD');
  });
});

describe('hostile options: a getter or Proxy that throws is INVALID_ARGUMENT, and a getter is read once', () => {
  const trap = () => new Proxy({}, { get: () => { throw new Error('trap'); }, ownKeys: () => { throw new Error('trap'); }, getOwnPropertyDescriptor: () => { throw new Error('trap'); } });
  const throwing = <T>(key: string): T => Object.defineProperty({}, key, { enumerable: true, get: () => { throw new Error('getter'); } }) as T;

  it.each([
    ['new Orchestrator()', (b: Orchestrator) => new Orchestrator(throwing<never>('policies')) && b],
    ['register()', (b: Orchestrator) => b.register('x', throwing('handlers'))],
    ['register() with a Proxy', (b: Orchestrator) => b.register('y', trap() as never)],
    ['setPolicies()', (b: Orchestrator) => b.setPolicies(trap() as never)],
    ['explain()', (b: Orchestrator) => b.explain(trap() as never)],
    ['getMessageLog()', (b: Orchestrator) => b.getMessageLog(trap() as never)],
    ['approvals.approve()', (b: Orchestrator) => b.approvals.approve('id', trap() as never)],
    ['approvals.reject()', (b: Orchestrator) => b.approvals.reject('id', trap() as never)],
  ] as const)('%s refuses it with a BusError', (_what, call) => {
    const b = bus({ policies: [...OPEN] });
    let caught: unknown;
    try {
      call(b);
    } catch (e) {
      caught = e;
    }
    expect(caught).toMatchObject({ name: 'BusError', code: 'INVALID_ARGUMENT' });
    expect(b.agents()).toEqual([]);
  });

  it('register() reads `handlers` once: the map it checked is the map it keeps', async () => {
    const b = bus({ policies: [...OPEN] });
    let reads = 0;
    b.register('w', {
      get handlers() {
        reads++;
        return reads === 1 ? { x: () => 'first' } : { x: () => 'second' };
      },
    });
    expect(reads).toBe(1);
    await expect(b.register('a').ask('w', 'x', 1)).resolves.toBe('first');
  });
});

describe('"a payload walk stops as soon as it passes maxPayloadBytes, however its values are shared"', () => {
  it('a DAG that would expand to 2^40 leaves is refused PAYLOAD_TOO_LARGE at once', async () => {
    const b = bus({ policies: [...OPEN] });
    b.register('w', { handlers: { x: () => 1 } });
    let dag: unknown = 'leaf';
    for (let i = 0; i < 40; i++) dag = [dag, dag];
    const started = performance.now();
    expect((await refusal(b.register('a').ask('w', 'x', dag))).code).toBe('PAYLOAD_TOO_LARGE');
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('a deeply nested payload (100,000 levels) is refused with a BusError, not a stack overflow', async () => {
    const b = bus({ policies: [...OPEN], limits: { maxPayloadBytes: 10_000_000 } });
    b.register('w', { handlers: { x: () => 1 } });
    let deep: unknown = 0;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    const e = await refusal(b.register('a').ask('w', 'x', deep));
    expect(['INVALID_PAYLOAD', 'PAYLOAD_TOO_LARGE']).toContain(e.code);
  });
});

describe('"Text an agent controls … reaches a terminal or a page only escaped: no control, escape or bidirectional characters pass"', () => {
  const hostile = 'ok\u001b[2J\u001b]0;pwned\u0007\u202egnp.exe\r\nfake line\u0000';

  it('escapeText() leaves no control, escape or bidi character', () => {
    expect(escapeText(hostile)).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/);
    expect(escapeText('plain text, ünïcödé 😀')).toBe('plain text, ünïcödé 😀');
  });

  it('an intent with control or bidi characters is refused at the send', async () => {
    const b = bus({ policies: [...OPEN] });
    b.register('w', { handlers: { '*': () => 1 } });
    const a = b.register('a');
    for (const intent of ['x\u001b[31m', 'x\u202e', 'x\n']) expect((await refusal(a.ask('w', intent, 1))).code).toBe('INVALID_ARGUMENT');
  });

  it('a handler\'s error text with escapes is printed escaped by the testing kit\'s lines and by `switchboard log`', async () => {
    const path = dbPath();
    const b = new Orchestrator({ audit: { path }, policies: [...OPEN] });
    const t = recordTranscript(b);
    b.register('w', {
      handlers: {
        x: () => {
          throw new Error(hostile);
        },
      },
    });
    await refusal(b.register('a').ask('w', 'x', hostile));
    await settle();
    for (const entry of t.entries) expect(formatEntry(entry)).not.toMatch(/[\u0000-\u001f\u202e]/);
    await b.close();
    const cli = join(import.meta.dirname, '../../src/cli/main.ts');
    for (const args of [['log', path], ['log', path, '--json'], ['export', path, '--format', 'csv'], ['export', path]]) {
      const run = spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { encoding: 'utf8' });
      expect(run.status, args.join(' ')).toBe(0);
      expect(run.stdout.replace(/\r?\n/g, ''), args.join(' ')).not.toMatch(/[\u0000-\u001f\u202e]/);
    }
  }, 30_000);
});
