// A refused reply is not free: it spends a token from the replier's bucket, so an agent with
// no rights cannot write refusal rows without bound.
import { describe, expect, it } from 'vitest';
import { Orchestrator, type Clock } from '../src/index.js';

function manualClock(): Clock & { advance(ms: number): void } {
  let t = 1_700_000_000_000;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
}

describe('Agent#reply() refused', () => {
  it('spends the replier\'s tokens: past its burst, refused replies are RATE_LIMITED until the bucket refills', async () => {
    const clock = manualClock();
    const bus = new Orchestrator({ clock, limits: { rate: { perSecond: 1, burst: 3 } } });
    const mallory = bus.register('mallory');
    const codes: (string | undefined)[] = [];
    for (let i = 0; i < 5; i++) codes.push(await codeOf(mallory.reply(`m-unknown-${i}`, { x: i })));
    expect(codes).toEqual(['INVALID_REPLY', 'INVALID_REPLY', 'INVALID_REPLY', 'RATE_LIMITED', 'RATE_LIMITED']);
    clock.advance(1_000);
    expect(await codeOf(mallory.reply('m-unknown-again', {}))).toBe('INVALID_REPLY');
    const refused = bus.getMessageLog({ agentId: 'mallory', limit: 10 });
    expect(refused.map((e) => e.reason ?? '').filter((r) => r.includes('RATE_LIMITED') || r.includes('too fast'))).toHaveLength(2);
    await bus.close();
  });

  it('leaves a valid reply free: an agent with an empty bucket can still answer its ask', async () => {
    const clock = manualClock();
    const bus = new Orchestrator({
      clock,
      policies: [{ from: 'asker', to: 'answerer', allow: ['ask'] }],
      limits: { rate: { perSecond: 1, burst: 1 } },
      timeouts: { closeMs: 10 },
    });
    let askId = '';
    let started!: () => void;
    const handlerStarted = new Promise<void>((r) => (started = r));
    const answerer = bus.register('answerer', {
      handlers: {
        q: (_p, ctx) => {
          askId = ctx.message.id;
          started();
          return new Promise(() => undefined); // answered from outside, below
        },
      },
    });
    const asker = bus.register('asker');
    expect(await codeOf(answerer.reply('m-nope', {}))).toBe('INVALID_REPLY'); // spends answerer's only token
    const answer = asker.ask('answerer', 'q', {});
    await handlerStarted;
    await answerer.reply(askId, { ok: true });
    await expect(answer).resolves.toEqual({ ok: true });
    await bus.close();
  });
});
