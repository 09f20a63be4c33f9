import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { BusEventName, BusEvents } from '../src/index.js';
import { closeBuses, makeBus, rejectionOf, settle } from './support/helpers.js';

afterEach(closeBuses);

let warnings: ReturnType<typeof vi.spyOn>;
beforeEach(() => {
  // A throwing listener is reported as a process warning; keep the output clean and inspectable.
  warnings = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
});
afterEach(() => {
  warnings.mockRestore();
});

const ALL: BusEventName[] = [
  'message:sent',
  'message:delivered',
  'message:denied',
  'message:replied',
  'message:expired',
  'message:failed',
  'message:dead',
  'approval:requested',
  'approval:decided',
  'audit:error',
];

describe('Orchestrator#events', () => {
  it('fires message:sent, message:delivered and message:replied for an ask, in that order', async () => {
    const bus = makeBus();
    const seen: [string, unknown][] = [];
    for (const name of ['message:sent', 'message:delivered', 'message:replied'] as const) {
      bus.events.on(name, (e) => seen.push([name, e.envelope]));
    }
    bus.register('writer', { handlers: { clarify: () => ({ answer: 42 }) } });
    const research = bus.register('research');
    const job = research.delegate('writer', 'clarify', { q: 'x' });
    await expect(job).resolves.toEqual({ answer: 42 });
    expect(seen.map(([name]) => name)).toEqual(['message:sent', 'message:delivered', 'message:replied']);
    const [sent, delivered, replied] = seen.map(([, envelope]) => envelope);
    expect(sent).toMatchObject({ id: job.id, type: 'delegate', from: 'research', to: 'writer', intent: 'clarify', payload: { q: 'x' }, depth: 0 });
    expect(delivered).toBe(sent);
    expect(replied).toMatchObject({ type: 'reply', from: 'writer', to: 'research', inReplyTo: job.id, payload: { answer: 42 } });
    expect(Object.isFrozen(sent)).toBe(true);
    expect(Object.isFrozen(replied)).toBe(true);
  });

  it('fires message:denied with the code, the attempt and the deciding rule', async () => {
    const bus = makeBus({ policies: [{ from: '*', to: 'vault', deny: ['ask'], name: 'vault is closed' }] });
    const denied: BusEvents['message:denied'][] = [];
    bus.events.on('message:denied', (e) => denied.push(e));
    bus.register('vault', { handlers: { open: () => 1 } });
    const research = bus.register('research');
    await rejectionOf(research.ask('vault', 'open', {}));
    await rejectionOf(research.ask('nobody', 'open', {}));
    expect(denied).toHaveLength(2);
    expect(denied[0]).toMatchObject({ code: 'POLICY_DENIED', attempt: { type: 'ask', from: 'research', to: 'vault', intent: 'open' } });
    expect(denied[0]!.rule).toContain('vault is closed');
    expect(typeof denied[0]!.reason).toBe('string');
    expect(denied[1]).toMatchObject({ code: 'UNKNOWN_AGENT', attempt: { to: 'nobody' } });
  });

  it('fires message:failed with HANDLER_FAILED when a handler throws', async () => {
    const bus = makeBus();
    const failed: BusEvents['message:failed'][] = [];
    bus.events.on('message:failed', (e) => failed.push(e));
    bus.register('writer', {
      handlers: {
        x: () => {
          throw new Error('nope');
        },
      },
    });
    const research = bus.register('research');
    await rejectionOf(research.ask('writer', 'x', {}));
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ code: 'HANDLER_FAILED', envelope: { intent: 'x', to: 'writer' } });
    expect(failed[0]!.reason).toContain('nope');
  });

  it('fires message:sent and message:delivered once per notify recipient', async () => {
    const bus = makeBus();
    const delivered: string[] = [];
    bus.events.on('message:delivered', (e) => delivered.push(e.envelope.to));
    bus.register('a', { handlers: { found: () => undefined } });
    bus.register('b', { handlers: { found: () => undefined } });
    const research = bus.register('research');
    await research.notify('found', {});
    expect(delivered.sort()).toEqual(['a', 'b']);
  });

  it('keeps working when a listener throws: the ask still resolves', async () => {
    const bus = makeBus();
    for (const name of ALL) {
      bus.events.on(name, () => {
        throw new Error(`listener of ${name} broke`);
      });
    }
    const calls: string[] = [];
    bus.events.on('message:replied', () => calls.push('second listener'));
    bus.register('writer', { handlers: { x: () => 'ok' } });
    const research = bus.register('research');
    await expect(research.ask('writer', 'x', {})).resolves.toBe('ok');
    await expect(research.ask('writer', 'x', {})).resolves.toBe('ok');
    expect((await rejectionOf(research.ask('nobody', 'x', {}))).code).toBe('UNKNOWN_AGENT');
    expect(calls).toEqual(['second listener', 'second listener']);
    expect(warnings).toHaveBeenCalled();
    expect(String(warnings.mock.calls[0]![0])).toContain('broke');
  });

  it('stops calling a listener after off()', async () => {
    const bus = makeBus();
    const sent: string[] = [];
    const listener = (e: BusEvents['message:sent']) => sent.push(e.envelope.id);
    bus.events.on('message:sent', listener);
    bus.register('writer', { handlers: { x: () => 'ok' } });
    const research = bus.register('research');
    await research.ask('writer', 'x', {});
    bus.events.off('message:sent', listener);
    await research.ask('writer', 'x', {});
    await settle();
    expect(sent).toHaveLength(1);
  });

  it('off() of one listener leaves the others subscribed', async () => {
    const bus = makeBus();
    const calls: string[] = [];
    const first = () => calls.push('first');
    const second = () => calls.push('second');
    bus.events.on('message:delivered', first);
    bus.events.on('message:delivered', second);
    bus.events.off('message:delivered', first);
    bus.register('writer', { handlers: { x: () => 'ok' } });
    const research = bus.register('research');
    await research.ask('writer', 'x', {});
    expect(calls).toEqual(['second']);
  });
});

describe('Orchestrator#events: one listener and the next', () => {
  it('hands every listener a frozen event: one cannot change the code or reason the next one reads', async () => {
    const bus = makeBus({ policies: [{ from: '*', to: 'vault', deny: ['ask'], name: 'closed' }] });
    const read: string[] = [];
    bus.events.on('message:denied', (e) => {
      try {
        (e as { code: string }).code = 'RATE_LIMITED';
      } catch {
        // refused: the event is frozen
      }
    });
    bus.events.on('message:denied', (e) => read.push(e.code));
    bus.register('vault', { handlers: { open: () => 1 } });
    await rejectionOf(bus.register('research').ask('vault', 'open', {}));
    expect(read).toEqual(['POLICY_DENIED']);
  });

  it('reports a listener that throws with its message escaped, and survives a thrown value whose message getter throws', async () => {
    const bus = makeBus();
    bus.events.on('message:sent', () => {
      throw new Error('bad\u001b[2J\u202e');
    });
    bus.events.on('message:sent', () => {
      throw Object.defineProperty({}, 'message', { get: () => { throw new Error('gotcha'); } });
    });
    bus.register('writer', { handlers: { clarify: () => 1 } });
    await expect(bus.register('research').ask('writer', 'clarify', {})).resolves.toBe(1);
    const texts = (warnings.mock.calls as unknown[][]).map((c) => String(c[0]));
    expect(texts).toContain('agent-switchboard: a "message:sent" listener threw: bad\\x1b[2J\\u202e');
    for (const text of texts) expect(text).not.toMatch(/[\u0000-\u001f\u202e]/);
  });
});
