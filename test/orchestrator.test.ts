import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SqliteAuditLog } from '../src/index.js';
import { closeBuses, deferred, hang, makeBus, rejectionOf, settle, thrownBy } from './support/helpers.js';

afterEach(closeBuses);

describe('Orchestrator#register()', () => {
  it('returns a handle with the id, listed by agents() with its capabilities and trust', () => {
    const bus = makeBus();
    const writer = bus.register('writer', { capabilities: ['writing'], trust: 5 });
    bus.register('research');
    expect(writer.id).toBe('writer');
    expect(writer.alive).toBe(true);
    expect(bus.agents()).toEqual([
      { id: 'writer', capabilities: ['writing'], trust: 5 },
      { id: 'research', capabilities: [], trust: 0 },
    ]);
  });

  it('hands out no other agent\'s handle: agents() is a frozen list of plain info', () => {
    const bus = makeBus();
    bus.register('writer', { handlers: { x: () => 1 } });
    const list = bus.agents();
    expect(Object.isFrozen(list)).toBe(true);
    expect(Object.isFrozen(list[0])).toBe(true);
    expect(Object.keys(list[0]!).sort()).toEqual(['capabilities', 'id', 'trust']);
    expect(JSON.parse(JSON.stringify(bus.register('research')))).toEqual({ id: 'research', alive: true });
  });
});

describe('Orchestrator#unregister()', () => {
  it("kills the old handle for good: all of its sends reject with UNKNOWN_AGENT", async () => {
    const bus = makeBus();
    const writer = bus.register('writer', { handlers: { x: () => 1 } });
    const research = bus.register('research', { handlers: { x: () => 1 } });
    expect(bus.unregister('writer')).toBe(true);
    expect(writer.alive).toBe(false);
    expect((await rejectionOf(writer.ask('research', 'x', {}))).code).toBe('UNKNOWN_AGENT');
    expect((await rejectionOf(writer.delegate('research', 'x', {}))).code).toBe('UNKNOWN_AGENT');
    expect((await rejectionOf(writer.notify('x', {}))).code).toBe('UNKNOWN_AGENT');
    expect((await rejectionOf(writer.reply('m1', {}))).code).toBe('UNKNOWN_AGENT');
    expect((await rejectionOf(writer.send({ to: 'research', type: 'ask', intent: 'x' }))).code).toBe('UNKNOWN_AGENT');
    expect(thrownBy(() => writer.handle('y', () => 2)).code).toBe('UNKNOWN_AGENT');
    expect((await rejectionOf(research.ask('writer', 'x', {}))).code).toBe('UNKNOWN_AGENT');
  });

  it('gives a re-registered id a new working handle while the old one stays dead', async () => {
    const bus = makeBus();
    const old = bus.register('writer', { handlers: { x: () => 'old' } });
    const research = bus.register('research', { handlers: { x: (_p, ctx) => `hi ${ctx.message.from}` } });
    bus.unregister('writer');
    const fresh = bus.register('writer', { handlers: { x: () => 'new' } });
    expect(fresh).not.toBe(old);
    expect(fresh.alive).toBe(true);
    expect(old.alive).toBe(false);
    await expect(research.ask('writer', 'x', {})).resolves.toBe('new');
    await expect(fresh.ask('research', 'x', {})).resolves.toBe('hi writer');
    expect((await rejectionOf(old.ask('research', 'x', {}))).code).toBe('UNKNOWN_AGENT');
    expect(thrownBy(() => old.handle('x', () => 'resurrected')).code).toBe('UNKNOWN_AGENT');
    await expect(research.ask('writer', 'x', {})).resolves.toBe('new');
  });

  it('fails pending asks to it with UNKNOWN_AGENT, running and queued, and aborts the running handler', async () => {
    const bus = makeBus();
    let signal: AbortSignal | undefined;
    const ran: string[] = [];
    bus.register('writer', {
      handlers: {
        work: (p, ctx) => {
          ran.push(p as string);
          signal = ctx.signal;
          return hang(ctx);
        },
      },
    });
    const research = bus.register('research');
    const running = rejectionOf(research.ask('writer', 'work', 'running'));
    const queued = rejectionOf(research.delegate('writer', 'work', 'queued'));
    await settle();
    bus.unregister('writer');
    const [a, b] = await Promise.all([running, queued]);
    expect(a.code).toBe('UNKNOWN_AGENT');
    expect(b.code).toBe('UNKNOWN_AGENT');
    expect(signal?.aborted).toBe(true);
    await settle();
    expect(ran).toEqual(['running']);
  });

  it('cancels its own pending asks with CANCELLED', async () => {
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
    const pending = rejectionOf(research.ask('writer', 'work', {}));
    await settle();
    bus.unregister('research');
    const error = await pending;
    expect(error.code).toBe('CANCELLED');
    expect(signal?.aborted).toBe(true);
  });

  it('returns false for an id that is not registered', () => {
    const bus = makeBus();
    expect(bus.unregister('nobody')).toBe(false);
  });

  it('records a notify withdrawn in the same tick (recipient unregistered) as failed, not delivered', async () => {
    const bus = makeBus();
    bus.register('x', { handlers: { hi: () => undefined } });
    const receipt = bus.register('a').notify('hi', {}, { to: ['x'] });
    bus.unregister('x');
    expect((await receipt).failed).toEqual(['x']);
    expect(bus.getMessageLog({ agentId: 'x' })[0]).toMatchObject({ outcome: 'failed', code: 'UNKNOWN_AGENT' });
  });
});

describe('Orchestrator#close()', () => {
  it('rejects pending asks with CLOSED and later sends with CLOSED', async () => {
    const bus = makeBus();
    bus.register('writer', { handlers: { work: (_p, ctx) => hang(ctx), quick: () => 'ok' } });
    const research = bus.register('research');
    const running = rejectionOf(research.ask('writer', 'work', 1));
    const queued = rejectionOf(research.ask('writer', 'work', 2));
    await settle();
    await bus.close();
    expect((await running).code).toBe('CLOSED');
    expect((await queued).code).toBe('CLOSED');
    expect((await rejectionOf(research.ask('writer', 'quick', {}))).code).toBe('CLOSED');
    expect((await rejectionOf(research.notify('quick', {}))).code).toBe('CLOSED');
    expect(thrownBy(() => bus.register('late')).code).toBe('CLOSED');
  });

  it("aborts running handlers' signals", async () => {
    const bus = makeBus();
    const signals: AbortSignal[] = [];
    bus.register('writer', {
      concurrency: 2,
      handlers: {
        work: (_p, ctx) => {
          signals.push(ctx.signal);
          return hang(ctx);
        },
        found: (_p, ctx) => {
          signals.push(ctx.signal);
          return hang(ctx);
        },
      },
    });
    const research = bus.register('research');
    const asked = rejectionOf(research.ask('writer', 'work', {}));
    await research.notify('found', {});
    await settle();
    expect(signals).toHaveLength(2);
    await bus.close();
    await asked;
    expect(signals.map((s) => s.aborted)).toEqual([true, true]);
  });

  it('leaves no timer behind, even with deadlines pending and a handler that ignores its signal', async () => {
    vi.useFakeTimers();
    const bus = makeBus({ timeouts: { closeMs: 50 } });
    let signal: AbortSignal | undefined;
    bus.register('writer', {
      handlers: {
        stubborn: (_p, ctx) => {
          signal = ctx.signal;
          return new Promise(() => {}); // never settles, never looks at the signal
        },
      },
    });
    const research = bus.register('research');
    const asks = [
      rejectionOf(research.ask('writer', 'stubborn', {}, { timeoutMs: 10_000 })),
      rejectionOf(research.delegate('writer', 'stubborn', {}, { timeoutMs: 20_000 })),
    ];
    await settle();
    expect(vi.getTimerCount()).toBeGreaterThan(0);
    let closed = false;
    const closing = bus.close().then(() => (closed = true));
    for (const ask of asks) expect((await ask).code).toBe('CLOSED');
    expect(signal?.aborted).toBe(true);
    await vi.advanceTimersByTimeAsync(49);
    expect(closed).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await closing;
    expect(closed).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('does not wait out closeMs when the handlers stop on their signal', async () => {
    vi.useFakeTimers();
    const bus = makeBus({ timeouts: { closeMs: 60_000 } });
    bus.register('writer', { handlers: { work: (_p, ctx) => hang(ctx) } });
    const research = bus.register('research');
    const asked = rejectionOf(research.ask('writer', 'work', {}));
    await settle();
    let closed = false;
    const closing = bus.close().then(() => (closed = true));
    await settle();
    expect(closed).toBe(true);
    await closing;
    await asked;
    expect(vi.getTimerCount()).toBe(0);
  });

  it('leaves no timer behind on an idle bus', async () => {
    vi.useFakeTimers();
    const bus = makeBus();
    bus.register('writer', { handlers: { x: () => 1 } });
    const research = bus.register('research');
    await research.ask('writer', 'x', {});
    await bus.close();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('cancels asks held for approval with CLOSED', async () => {
    const bus = makeBus({ policies: [{ from: 'research', to: 'payment', allow: ['ask'], requireApproval: true }] });
    bus.register('payment', { handlers: { pay: () => 'paid' } });
    const research = bus.register('research');
    const held = rejectionOf(research.ask('payment', 'pay', {}));
    await settle();
    expect(bus.approvals.list()).toHaveLength(1);
    await bus.close();
    expect((await held).code).toBe('CLOSED');
  });

  it('is idempotent', async () => {
    const bus = makeBus();
    const research = bus.register('research');
    const first = bus.close();
    const second = bus.close();
    await expect(first).resolves.toBeUndefined();
    await expect(second).resolves.toBeUndefined();
    await expect(bus.close()).resolves.toBeUndefined();
    expect((await rejectionOf(research.notify('x', {}))).code).toBe('CLOSED');
  });

  it('writes every audit row, the CLOSED outcomes included, before closing the database', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchboard-close-'));
    try {
      const path = join(dir, 'audit.db');
      const bus = makeBus({ audit: { path } });
      const gate = deferred();
      bus.register('writer', { handlers: { work: (_p, ctx) => hang(ctx), quick: () => gate.promise.then(() => 'ok') } });
      const research = bus.register('research');
      const pending = rejectionOf(research.ask('writer', 'work', {}));
      await settle();
      await bus.close();
      const error = await pending;
      const log = new SqliteAuditLog({ path });
      try {
        const entry = log.query({ limit: 10 }).find((e) => e.messageId === error.messageId);
        expect(entry).toMatchObject({ from: 'research', to: 'writer', outcome: 'cancelled', code: 'CLOSED' });
      } finally {
        log.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Orchestrator#close() and handlers answered early', () => {
  it('aborts the signal of a handler whose ask was already answered through reply(), without waiting closeMs', async () => {
    vi.useFakeTimers();
    const bus = makeBus({ timeouts: { closeMs: 60_000 } });
    let aborted = false;
    let messageId = '';
    const writer = bus.register('writer', {
      handlers: {
        work: (_p, ctx) => {
          messageId = ctx.message.id;
          return new Promise((resolve) =>
            ctx.signal.addEventListener('abort', () => {
              aborted = true;
              resolve('too late');
            }),
          );
        },
      },
    });
    const asked = bus.register('research').ask('writer', 'work', {});
    await settle();
    await writer.reply(messageId, 'early');
    await expect(asked).resolves.toBe('early');
    let closed = false;
    void bus.close().then(() => (closed = true));
    await settle();
    // No fake time advanced: close() finished because the handler was aborted, not timed out.
    expect(aborted).toBe(true);
    expect(closed).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });
});
