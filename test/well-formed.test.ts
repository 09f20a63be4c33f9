import { afterEach, describe, expect, it } from 'vitest';
import { checkWellFormed } from '../src/pipeline/checks.js';
import { Orchestrator } from '../src/index.js';
import { closeBuses, makeBus, rejectionOf, thrownBy } from './support/helpers.js';

afterEach(closeBuses);

describe('lone surrogates in recorded text', () => {
  it('refuses an intent with a lone surrogate with INVALID_ARGUMENT naming the problem', async () => {
    const bus = makeBus();
    let ran = 0;
    bus.register('writer', { handlers: { '*': () => ran++ } });
    const research = bus.register('research');
    for (const intent of ['a\ud800', 'a\udfff', '\udc00b', 'x\ud83d']) {
      const error = await rejectionOf(research.ask('writer', intent, {}));
      expect(error.code).toBe('INVALID_ARGUMENT');
      expect(error.message).toContain('lone surrogate');
      expect(error.message).toContain('intent');
    }
    expect((await rejectionOf(research.notify('n\ud800', {}))).code).toBe('INVALID_ARGUMENT');
    expect((await rejectionOf(research.notify('n\udc00', {}, { to: ['writer'] }))).code).toBe('INVALID_ARGUMENT');
    expect(ran).toBe(0);
  });

  it('still accepts intents with well-formed surrogate pairs and never logs two intents alike', async () => {
    const bus = makeBus();
    bus.register('writer', { handlers: { '*': () => 'ok' } });
    const research = bus.register('research');
    await expect(research.ask('writer', 'say 😀', {})).resolves.toBe('ok');
    await rejectionOf(research.ask('writer', 'say \ud83d', {}));
    await rejectionOf(research.ask('writer', 'say \ude00', {}));
    const intents = bus.getMessageLog({ limit: 100 }).map((e) => e.intent);
    expect(intents).toContain('say 😀');
    // The refused ones are recorded escaped, so they stay distinct and nothing becomes U+FFFD.
    expect(intents).toContain(JSON.stringify('say \ud83d'));
    expect(intents).toContain(JSON.stringify('say \ude00'));
    expect(intents.filter((i) => i.includes('\ufffd'))).toEqual([]);
  });

  it('names the code unit and its index', () => {
    const error = thrownBy(() => checkWellFormed('ab\udc01', 'note'));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain('U+DC01');
    expect(error.message).toContain('index 2');
    expect(() => checkWellFormed('é€😀', 'note')).not.toThrow();
  });

  it('refuses an approval note, a rejection reason and a progress note with a lone surrogate', async () => {
    const bus = new Orchestrator({ policies: [{ from: 'purchase', to: 'payment', allow: ['delegate'], requireApproval: true }] });
    try {
      const notes: unknown[] = [];
      bus.register('payment', {
        handlers: {
          pay: (_p, ctx) => {
            try {
              ctx.progress(0.5, 'half\ud800');
            } catch (error) {
              notes.push((error as { code?: string }).code);
            }
            return 'paid';
          },
        },
      });
      const purchase = bus.register('purchase');
      const first = purchase.delegate('payment', 'pay', {});
      const second = purchase.delegate('payment', 'pay', {});
      await new Promise((r) => setImmediate(r));
      const [a, b] = bus.approvals.list();
      expect(thrownBy(() => bus.approvals.approve(a!.id, { note: 'ok\udfff' })).code).toBe('INVALID_ARGUMENT');
      expect(thrownBy(() => bus.approvals.reject(b!.id, { reason: 'no\ud800' })).code).toBe('INVALID_ARGUMENT');
      expect(thrownBy(() => bus.approvals.approve(a!.id, { by: 'al\ud800' })).code).toBe('INVALID_ARGUMENT');
      bus.approvals.approve(a!.id, { note: 'ok 😀' });
      bus.approvals.reject(b!.id, { reason: 'no' });
      await expect(first).resolves.toBe('paid');
      expect((await rejectionOf(second)).code).toBe('APPROVAL_REJECTED');
      expect(notes).toEqual(['INVALID_ARGUMENT']);
    } finally {
      await bus.close();
    }
  });
});
