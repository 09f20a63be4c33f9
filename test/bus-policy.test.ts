/**
 * Policy and limits as seen through the Orchestrator: default deny, the seed scenario,
 * explain/setPolicies/versions, trust gates, hostile ids, payload size, rate limits and
 * the agent cap. Unit tests of PolicySet and TokenBucket live in policy.test.ts and
 * limits.test.ts; here everything goes through `register()` and a handle's sends.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { Orchestrator, isBusError, type Agent, type BusError, type OrchestratorOptions, type PolicyRule } from '../src/index.js';
import type { AnyContracts } from '../src/contracts.js';

let bus: Orchestrator | undefined;

function open(options: OrchestratorOptions<AnyContracts> = {}): Orchestrator {
  bus = new Orchestrator(options);
  return bus;
}

afterEach(async () => {
  await bus?.close();
  bus = undefined;
  vi.useRealTimers();
});

/** The rejection of a promise that must reject (fails the test if it resolves). */
async function refusal(promise: Promise<unknown>): Promise<BusError> {
  try {
    await promise;
  } catch (e) {
    if (isBusError(e)) return e;
    throw e;
  }
  throw new Error('expected the send to be refused, but it succeeded');
}

/** What a synchronous call threw (fails the test if it did not throw). */
function thrown(fn: () => unknown): BusError {
  try {
    fn();
  } catch (e) {
    if (isBusError(e)) return e;
    throw e;
  }
  throw new Error('expected a BusError to be thrown');
}

const echo = (payload: unknown): unknown => ({ got: payload });

const SEED: PolicyRule[] = [
  { from: 'research', to: 'writer', allow: ['delegate', 'notify'] },
  { from: 'writer', to: 'research', allow: ['ask'], intents: ['clarify'] },
  { from: 'qa', to: '*', allow: ['ask'] },
  { from: 'supervisor', to: '*', allow: ['ask', 'notify'] },
  { from: 'purchase', to: 'payment', allow: ['delegate'], requireApproval: true },
  { from: '*', to: 'vault', deny: ['notify'] },
];

describe('Orchestrator default deny', () => {
  it('refuses an ask with POLICY_DENIED when there are no rules, and audits it as denied', async () => {
    const b = open();
    const handler = vi.fn(echo);
    b.register('b', { handlers: { '*': handler } });
    const a = b.register('a');

    const e = await refusal(a.ask('b', 'hello', { x: 1 }));
    expect(e.code).toBe('POLICY_DENIED');
    expect(e.rule).toBeUndefined();
    expect(e.message).toContain('default deny');
    expect(handler).not.toHaveBeenCalled();

    const [entry] = b.getMessageLog();
    expect(entry).toMatchObject({ messageId: e.messageId, from: 'a', to: 'b', type: 'ask', intent: 'hello', decision: 'denied', code: 'POLICY_DENIED' });
  });

  it('refuses a delegate with POLICY_DENIED when there are no rules, and audits it as denied', async () => {
    const b = open();
    const handler = vi.fn(echo);
    b.register('b', { handlers: { '*': handler } });
    const a = b.register('a');

    const e = await refusal(a.delegate('b', 'work', {}));
    expect(e.code).toBe('POLICY_DENIED');
    expect(handler).not.toHaveBeenCalled();
    expect(b.getMessageLog()).toEqual([expect.objectContaining({ type: 'delegate', decision: 'denied', code: 'POLICY_DENIED' })]);
  });

  it('refuses every recipient of a notify with POLICY_DENIED when there are no rules, and audits each as denied', async () => {
    const b = open();
    const handler = vi.fn();
    b.register('b', { handlers: { '*': handler } });
    b.register('c', { handlers: { '*': handler } });
    const a = b.register('a');
    const denied: string[] = [];
    b.events.on('message:denied', ({ attempt, code }) => denied.push(`${attempt.to}:${code}`));

    const receipt = await a.notify('found', { url: 'x' });
    expect(receipt.delivered).toEqual([]);
    expect([...receipt.denied].sort()).toEqual(['b', 'c']);
    expect(denied.sort()).toEqual(['b:POLICY_DENIED', 'c:POLICY_DENIED']);
    await b.onIdle();
    expect(handler).not.toHaveBeenCalled();
    const log = b.getMessageLog();
    expect(log).toHaveLength(2);
    for (const entry of log) expect(entry).toMatchObject({ type: 'notify', decision: 'denied', code: 'POLICY_DENIED' });
  });
});

describe('Orchestrator with the seed policies', () => {
  /** Every seed agent, each answering any intent with an echo. */
  function seed(): { b: Orchestrator; agents: Record<string, Agent> } {
    const b = open({ policies: SEED });
    const agents: Record<string, Agent> = {};
    for (const id of ['research', 'writer', 'qa', 'supervisor', 'purchase', 'payment', 'vault']) agents[id] = b.register(id, { handlers: { '*': echo } });
    return { b, agents };
  }

  it('lets research delegate to writer and notify it, but not ask it', async () => {
    const b = open({ policies: SEED });
    b.register('writer', { handlers: { summarize: () => ({ summary: 'short' }), '*': echo } });
    const research = b.register('research');

    await expect(research.delegate('writer', 'summarize', { task: 't' })).resolves.toEqual({ summary: 'short' });
    const receipt = await research.notify('found', { url: 'u' }, { to: ['writer'] });
    expect(receipt.delivered).toEqual(['writer']);
    expect((await refusal(research.ask('writer', 'clarify', { q: '?' }))).code).toBe('POLICY_DENIED');
  });

  it('lets writer ask research only with intent clarify', async () => {
    const b = open({ policies: SEED });
    b.register('research', { handlers: { '*': () => 'answer' } });
    const writer = b.register('writer');

    await expect(writer.ask('research', 'clarify', { q: '?' })).resolves.toBe('answer');
    const e = await refusal(writer.ask('research', 'summarize', {}));
    expect(e.code).toBe('POLICY_DENIED');
    expect((await refusal(writer.delegate('research', 'clarify', {}))).code).toBe('POLICY_DENIED');
  });

  it('lets qa ask anyone, vault included, but not notify or delegate', async () => {
    const qa = seed().agents['qa']!;
    for (const to of ['research', 'writer', 'supervisor', 'purchase', 'payment', 'vault']) {
      await expect(qa.ask(to, 'check', { n: 1 })).resolves.toEqual({ got: { n: 1 } });
    }
    expect((await refusal(qa.delegate('writer', 'check', {}))).code).toBe('POLICY_DENIED');
    const receipt = await qa.notify('check', {}, { to: ['writer'] });
    expect(receipt.denied).toEqual(['writer']);
  });

  it('lets supervisor ask and notify everyone, except that nobody may notify vault', async () => {
    const { b, agents } = seed();
    const supervisor = agents['supervisor']!;

    await expect(supervisor.ask('vault', 'status', {})).resolves.toEqual({ got: {} });
    const receipt = await supervisor.notify('status', { ok: true });
    expect([...receipt.delivered].sort()).toEqual(['payment', 'purchase', 'qa', 'research', 'writer']);
    expect(receipt.denied).toEqual(['vault']);

    const vaultEntry = b.getMessageLog({ agentId: 'vault', type: 'notify' })[0];
    expect(vaultEntry).toMatchObject({ decision: 'denied', code: 'POLICY_DENIED', rule: '* -> vault deny:notify' });
  });

  it('refuses a notify to vault even when a *→* rule would allow it', async () => {
    const b = open({ policies: [...SEED, { from: '*', to: '*', allow: ['notify'] }] });
    b.register('vault', { handlers: { '*': echo } });
    const supervisor = b.register('supervisor');
    const research = b.register('research');

    expect((await supervisor.notify('status', {}, { to: ['vault'] })).denied).toEqual(['vault']);
    expect((await research.notify('found', {}, { to: ['vault'] })).denied).toEqual(['vault']);
    expect(b.explain({ from: 'supervisor', to: 'vault', type: 'notify', intent: 'status' })).toMatchObject({
      decision: 'deny',
      rule: { from: '*', to: 'vault', deny: ['notify'] },
    });
  });

  it('holds purchase→payment delegates for approval instead of delivering them', async () => {
    const b = open({ policies: SEED });
    const handler = vi.fn(echo);
    b.register('payment', { handlers: { pay: handler } });
    const purchase = b.register('purchase');

    const job = purchase.delegate('payment', 'pay', { amount: 5 });
    const settled = job.then(
      (v) => ({ v }),
      (e: unknown) => ({ e }),
    );
    await b.onIdle();
    expect(handler).not.toHaveBeenCalled();
    expect(b.approvals.list().map((a) => a.id)).toEqual([job.id]);
    expect(b.getMessageLog({ agentId: 'purchase' })[0]).toMatchObject({ decision: 'pending', rule: 'purchase -> payment allow:delegate approval' });

    b.approvals.approve(job.id, { by: 'ops' });
    expect(await settled).toEqual({ v: { got: { amount: 5 } } });
    expect(handler).toHaveBeenCalledTimes(1);
  });
});

describe('Orchestrator#explain()', () => {
  it('returns the decision, the deciding rule and the reason without sending or auditing anything', async () => {
    const b = open({ policies: SEED });
    const handler = vi.fn(echo);
    b.register('writer', { handlers: { '*': handler } });
    b.register('research');
    const sent = vi.fn();
    b.events.on('message:sent', sent);
    b.events.on('message:denied', sent);

    expect(b.explain({ from: 'research', to: 'writer', type: 'delegate', intent: 'summarize' })).toEqual({
      decision: 'allow',
      rule: SEED[0],
      reason: "allowed by rule 'research -> writer allow:delegate,notify'",
      policyVersion: 1,
    });
    expect(b.explain({ from: 'purchase', to: 'payment', type: 'delegate', intent: 'pay' })).toMatchObject({
      decision: 'approval',
      rule: SEED[4],
      reason: "approval required by rule 'purchase -> payment allow:delegate approval'",
    });
    const deny = b.explain({ from: 'research', to: 'writer', type: 'ask', intent: 'clarify' });
    expect(deny.decision).toBe('deny');
    expect(deny.rule).toBeUndefined();
    expect(deny.reason).toContain('default deny');

    await b.onIdle();
    expect(handler).not.toHaveBeenCalled();
    expect(sent).not.toHaveBeenCalled();
    expect(b.getMessageLog()).toEqual([]);
  });
});

describe('Orchestrator#setPolicies()', () => {
  it('throws INVALID_ARGUMENT for a bad set and leaves the old set in force', async () => {
    const b = open({ policies: [{ from: 'a', to: 'b', allow: ['ask'] }] });
    b.register('b', { handlers: { '*': echo } });
    const a = b.register('a');
    const before = b.policies();
    const version = b.policyVersion;

    const bad: unknown[] = [
      [{ from: 'a', to: 'b', allow: ['ask'] }, { from: 'a', to: 'b', alow: ['delegate'] }],
      [{ from: 'a', to: 'b', allow: [] }],
      [{ from: 'a*', to: 'b', allow: ['delegate'] }],
      [{ from: 'a', to: 'b', allow: ['reply'] }],
      [{ from: 'a', to: 'b', allow: ['delegate', 'teleport'] }],
      [{ from: 'a', to: 'b' }],
      'not an array',
    ];
    for (const rules of bad) {
      expect(thrown(() => b.setPolicies(rules as PolicyRule[])).code).toBe('INVALID_ARGUMENT');
      expect(b.policies()).toBe(before);
      expect(b.policyVersion).toBe(version);
    }

    await expect(a.ask('b', 'x', 1)).resolves.toEqual({ got: 1 });
    expect((await refusal(a.delegate('b', 'x', 1))).code).toBe('POLICY_DENIED');
    const versions = b.getMessageLog({ agentId: 'a' }).filter((e) => e.type !== 'reply').map((e) => e.policyVersion);
    expect(versions).toEqual([version, version]);
  });

  it('bumps policyVersion with each good set, and the audit log records the version each decision was made under', async () => {
    const b = open({ policies: [{ from: 'a', to: 'b', allow: ['ask'] }] });
    b.register('b', { handlers: { '*': echo } });
    const a = b.register('a');
    expect(b.policyVersion).toBe(1);

    await a.ask('b', 'one', {});
    expect(b.setPolicies([])).toBe(2);
    expect(b.policyVersion).toBe(2);
    expect(b.policies()).toEqual([]);
    await refusal(a.ask('b', 'two', {}));
    expect(b.setPolicies([{ from: '*', to: 'b', allow: ['ask'] }])).toBe(3);
    await a.ask('b', 'three', {});

    const asks = b
      .getMessageLog({ type: 'ask' })
      .map((e) => [e.intent, e.decision, e.policyVersion])
      .reverse();
    expect(asks).toEqual([
      ['one', 'allowed', 1],
      ['two', 'denied', 2],
      ['three', 'allowed', 3],
    ]);
  });
});

describe('Orchestrator trust (register options.trust and rule minTrust)', () => {
  it('lets only agents with trust ≥ 85 reach the sensitive agent', async () => {
    const b = open({ policies: [{ from: '*', to: 'vault', allow: ['ask'], minTrust: 85 }] });
    b.register('vault', { handlers: { '*': () => 'secret' } });
    const auditor = b.register('auditor', { trust: 90 });
    const edge = b.register('edge', { trust: 85 });
    const intern = b.register('intern', { trust: 84.9 });
    const nobody = b.register('nobody');

    await expect(auditor.ask('vault', 'read', {})).resolves.toBe('secret');
    await expect(edge.ask('vault', 'read', {})).resolves.toBe('secret');
    const low = await refusal(intern.ask('vault', 'read', {}));
    expect(low.code).toBe('POLICY_DENIED');
    expect(low.message).toContain('needs trust >= 85');
    expect((await refusal(nobody.ask('vault', 'read', {}))).code).toBe('POLICY_DENIED');

    expect(b.agents().find((x) => x.id === 'auditor')?.trust).toBe(90);
    expect(b.explain({ from: 'intern', to: 'vault', type: 'ask', intent: 'read' }).decision).toBe('deny');
    expect(b.explain({ from: 'auditor', to: 'vault', type: 'ask', intent: 'read' }).decision).toBe('allow');
  });

  it('lets a low-trust sender fall through to a broader rule that requires approval', async () => {
    const b = open({
      policies: [
        { from: '*', to: 'vault', allow: ['ask'], minTrust: 85 },
        { from: '*', to: '*', allow: ['ask'], requireApproval: true },
      ],
    });
    b.register('vault', { handlers: { '*': () => 'secret' } });
    const auditor = b.register('auditor', { trust: 99 });
    const intern = b.register('intern', { trust: 10 });

    await expect(auditor.ask('vault', 'read', {})).resolves.toBe('secret');
    const held = intern.ask('vault', 'read', {});
    held.catch(() => {});
    expect(b.approvals.list().map((a) => a.envelope.from)).toEqual(['intern']);
  });
});

describe('Orchestrator trust of the recipient (rule minRecipientTrust)', () => {
  it('lets a message through only to a recipient whose registered trust reaches the gate, and explain() says so', async () => {
    const b = open({ policies: [{ from: 'front', to: '*', allow: ['ask', 'notify'], minRecipientTrust: 50, name: 'front to trusted' }] });
    b.register('ledger', { trust: 50, handlers: { '*': () => 'ok' } });
    b.register('scratch', { trust: 49, handlers: { '*': () => 'ok' } });
    const front = b.register('front');

    await expect(front.ask('ledger', 'read', {})).resolves.toBe('ok');
    const low = await refusal(front.ask('scratch', 'read', {}));
    expect(low.code).toBe('POLICY_DENIED');
    expect(low.message).toContain('needs recipient trust >= 50');
    const receipt = await front.notify('news', {});
    expect(receipt).toMatchObject({ delivered: ['ledger'], denied: ['scratch'] });
    expect(b.explain({ from: 'front', to: 'scratch', type: 'ask', intent: 'read' }).decision).toBe('deny');
    expect(b.explain({ from: 'front', to: 'ledger', type: 'ask', intent: 'read' })).toMatchObject({ decision: 'allow', rule: { name: 'front to trusted' } });
  });
});

describe('Orchestrator#register() ids', () => {
  const hostile: [string, string][] = [
    ['leading space', ' writer'],
    ['trailing space', 'writer '],
    ['inner space', 'wri ter'],
    ['tab', 'writer\t'],
    ['newline', 'writer\n'],
    ['NUL', 'writer\u0000'],
    ['DEL control char', 'writer\u007f'],
    ['zero-width space', 'wri\u200bter'],
    ['Cyrillic look-alike і (U+0456)', 'wr\u0456ter'],
    ['Cyrillic look-alike а (U+0430)', '\u0430gent'],
    ['129 characters', 'a'.repeat(129)],
    ['the wildcard', '*'],
    ['empty', ''],
    ['leading underscore (__proto__)', '__proto__'],
    ['leading dot', '.hidden'],
    ['slash', 'a/b'],
  ];

  it.each(hostile)('refuses an id with %s with INVALID_ARGUMENT', (_what, id) => {
    const b = open();
    const e = thrown(() => b.register(id));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toContain('invalid agent id');
    expect(b.agents()).toEqual([]);
  });

  it('accepts an id of exactly 128 characters and the full id alphabet', () => {
    const b = open();
    expect(b.register('a'.repeat(128)).id).toHaveLength(128);
    expect(b.register('A0._:-z').id).toBe('A0._:-z');
  });

  it('does not let a Cyrillic look-alike rule reach the Latin agent', () => {
    const b = open();
    expect(thrown(() => b.setPolicies([{ from: 'wr\u0456ter', to: 'research', allow: ['ask'] }])).code).toBe('INVALID_ARGUMENT');
  });

  it.each(['constructor', 'toString', 'hasOwnProperty', 'valueOf', 'prototype', 'proto__'])(
    'works with the prototype name %s as an id, and rules naming it behave',
    async (id) => {
      const b = open({
        policies: [
          { from: id, to: 'other', allow: ['ask'], intents: [id] },
          { from: 'other', to: id, allow: ['delegate', 'ask'] },
          { from: '*', to: id, deny: ['notify'] },
        ],
      });
      const self = b.register(id, { handlers: { work: (p) => ({ at: id, p }) } });
      const other = b.register('other', { handlers: { '*': () => 'fallback' } });
      other.handle(id, () => 'by name');
      const stranger = b.register('stranger');
      expect(b.agents().map((x) => x.id)).toEqual([id, 'other', 'stranger']);
      expect(thrown(() => b.register(id)).code).toBe('DUPLICATE_AGENT');

      // The intent named like the id picks its own handler and its own intent-scoped rule.
      await expect(self.ask('other', id, {})).resolves.toBe('by name');
      expect((await refusal(self.ask('other', 'elsewise', {}))).code).toBe('POLICY_DENIED');
      await expect(other.delegate(id, 'work', 1)).resolves.toEqual({ at: id, p: 1 });
      // No inherited member is mistaken for a handler.
      expect((await refusal(other.ask(id, id, {}))).code).toBe('NO_HANDLER');
      expect((await refusal(stranger.ask(id, 'work', {}))).code).toBe('POLICY_DENIED');
      expect((await other.notify('n', {}, { to: [id] })).denied).toEqual([id]);
      expect(b.explain({ from: 'stranger', to: id, type: 'ask', intent: 'work' }).decision).toBe('deny');
      expect(b.getMessageLog({ agentId: id }).length).toBeGreaterThan(0);
    },
  );

  it.each(['constructor', 'toString', 'hasOwnProperty', '__proto__'])('accepts a handler for the intent %s in register options', async (intent) => {
    const b = open({ policies: [{ from: 'a', to: 'b', allow: ['ask'] }] });
    const handlers = Object.defineProperty({} as Record<string, (p: unknown) => unknown>, intent, {
      value: () => `handled ${intent}`,
      enumerable: true,
      writable: true,
      configurable: true,
    });
    b.register('b', { handlers });
    const a = b.register('a');
    await expect(a.ask('b', intent, {})).resolves.toBe(`handled ${intent}`);
  });

  it('routes a delegate to an agent named constructor and refuses notifies to it by rule', async () => {
    const b = open({ policies: [{ from: 'toString', to: 'constructor', allow: ['delegate', 'notify'] }, { from: '*', to: 'constructor', deny: ['notify'] }] });
    b.register('constructor', { handlers: { valueOf: (p: unknown) => ({ built: p }) } });
    const ts = b.register('toString');
    await expect(ts.delegate('constructor', 'valueOf', { n: 1 })).resolves.toEqual({ built: { n: 1 } });
    expect((await ts.notify('hasOwnProperty', {}, { to: ['constructor'] })).denied).toEqual(['constructor']);
    expect((await refusal(ts.ask('constructor', 'valueOf', {}))).code).toBe('POLICY_DENIED');
  });
});

describe('Orchestrator limits.maxPayloadBytes', () => {
  // '€' is 1 character but 3 UTF-8 bytes. JSON of 'ab' + 20 × '€' is 2 + 2 + 60 = 64 bytes.
  const exact = 'ab' + '€'.repeat(20);
  const over = 'abc' + '€'.repeat(20);

  it('accepts a multibyte payload whose JSON is exactly maxPayloadBytes UTF-8 bytes', async () => {
    expect(Buffer.byteLength(JSON.stringify(exact), 'utf8')).toBe(64);
    expect(JSON.stringify(exact).length).toBe(24);
    const b = open({ limits: { maxPayloadBytes: 64 }, policies: [{ from: 'a', to: 'b', allow: ['ask'] }] });
    b.register('b', { handlers: { '*': (p) => (typeof p === 'string' ? p.length : -1) } });
    const a = b.register('a');

    await expect(a.ask('b', 'measure', exact)).resolves.toBe(22);
    expect(b.getMessageLog({ type: 'ask' })[0]).toMatchObject({ decision: 'allowed', payloadBytes: 64 });
  });

  it('refuses one byte more with PAYLOAD_TOO_LARGE, though it is only 25 characters', async () => {
    expect(Buffer.byteLength(JSON.stringify(over), 'utf8')).toBe(65);
    const b = open({ limits: { maxPayloadBytes: 64 }, policies: [{ from: 'a', to: 'b', allow: ['ask'] }] });
    const handler = vi.fn();
    b.register('b', { handlers: { '*': handler } });
    const a = b.register('a');

    const e = await refusal(a.ask('b', 'measure', over));
    expect(e.code).toBe('PAYLOAD_TOO_LARGE');
    expect(e.message).toContain('65 bytes');
    expect(handler).not.toHaveBeenCalled();
    expect(b.getMessageLog()[0]).toMatchObject({ decision: 'denied', code: 'PAYLOAD_TOO_LARGE' });
  });

  it('measures an object payload the same way: exact passes, one more byte fails', async () => {
    // {"t":"…"} adds 8 bytes around the string: 8 + 2 + 18 × 3 = 64.
    const fits = { t: 'ab' + '€'.repeat(18) };
    const big = { t: 'abc' + '€'.repeat(18) };
    expect(Buffer.byteLength(JSON.stringify(fits))).toBe(64);
    const b = open({ limits: { maxPayloadBytes: 64 }, policies: [{ from: 'a', to: 'b', allow: ['ask'] }] });
    b.register('b', { handlers: { '*': () => 'ok' } });
    const a = b.register('a');
    await expect(a.ask('b', 'x', fits)).resolves.toBe('ok');
    expect((await refusal(a.ask('b', 'x', big))).code).toBe('PAYLOAD_TOO_LARGE');
  });
});

describe('Orchestrator rate limits', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(1_700_000_000_000);
  });

  function pair(options: OrchestratorOptions<AnyContracts> = {}) {
    const b = open({ policies: [{ from: '*', to: '*', allow: ['ask', 'delegate', 'notify'] }], ...options });
    b.register('b', { handlers: { '*': () => 'ok' } });
    return b;
  }

  it('admits a burst, then refuses with RATE_LIMITED and a retryAfterMs after which a send succeeds', async () => {
    const b = pair({ limits: { rate: { perSecond: 2, burst: 3 } } });
    const a = b.register('a');
    for (let i = 0; i < 3; i++) await expect(a.ask('b', 'x', i)).resolves.toBe('ok');

    const e = await refusal(a.ask('b', 'x', 3));
    expect(e.code).toBe('RATE_LIMITED');
    expect(e.retryAfterMs).toBe(500);
    expect(b.getMessageLog()[0]).toMatchObject({ decision: 'denied', code: 'RATE_LIMITED' });

    await vi.advanceTimersByTimeAsync(e.retryAfterMs! - 1);
    expect((await refusal(a.ask('b', 'x', 4))).code).toBe('RATE_LIMITED');
    await vi.advanceTimersByTimeAsync(1);
    await expect(a.ask('b', 'x', 5)).resolves.toBe('ok');
  });

  it('uses the default bucket of 10 per second with burst 10', async () => {
    const b = pair();
    const a = b.register('a');
    const results = await Promise.allSettled(Array.from({ length: 11 }, (_, i) => a.notify('n', i, { to: ['b'] })));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(10);
    const last = results[10];
    expect(last?.status === 'rejected' && isBusError(last.reason) && last.reason.code).toBe('RATE_LIMITED');
    expect(last?.status === 'rejected' && (last.reason as BusError).retryAfterMs).toBe(100);
  });

  it('never drives the bucket below empty: after many refusals, retryAfterMs later a send succeeds', async () => {
    const b = pair({ limits: { rate: { perSecond: 1, burst: 1 } } });
    const a = b.register('a');
    await a.ask('b', 'x', 0);
    let last: BusError | undefined;
    for (let i = 0; i < 20; i++) last = await refusal(a.ask('b', 'x', i));
    expect(last?.retryAfterMs).toBe(1000);
    await vi.advanceTimersByTimeAsync(1000);
    await expect(a.ask('b', 'x', 'again')).resolves.toBe('ok');
  });

  it('spends a token on a policy-denied send', async () => {
    const b = open({ policies: [{ from: 'a', to: 'b', allow: ['ask'] }], limits: { rate: { perSecond: 1, burst: 2 } } });
    b.register('b', { handlers: { '*': () => 'ok' } });
    const a = b.register('a');

    expect((await refusal(a.delegate('b', 'x', {}))).code).toBe('POLICY_DENIED');
    expect((await a.notify('x', {}, { to: ['b'] })).denied).toEqual(['b']);
    const e = await refusal(a.ask('b', 'x', {}));
    expect(e.code).toBe('RATE_LIMITED');
    expect(b.getMessageLog({ decision: 'denied' }).map((x) => x.code)).toEqual(['RATE_LIMITED', 'POLICY_DENIED', 'POLICY_DENIED']);
  });

  it('spends no token on a send refused before the rate check (payload size comes first)', async () => {
    const b = pair({ limits: { rate: { perSecond: 1, burst: 1 }, maxPayloadBytes: 8 } });
    const a = b.register('a');
    expect((await refusal(a.ask('b', 'x', 'this is far too long'))).code).toBe('PAYLOAD_TOO_LARGE');
    await expect(a.ask('b', 'x', 1)).resolves.toBe('ok');
    expect((await refusal(a.ask('b', 'x', 1))).code).toBe('RATE_LIMITED');
  });

  it('spends no tokens on replies: an agent limited to 1 per second answers many asks', async () => {
    const b = open({ policies: [{ from: 'asker', to: 'slow', allow: ['ask'] }], limits: { rate: false } });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const seen: string[] = [];
    const slow = b.register('slow', {
      rate: { perSecond: 1, burst: 1 },
      concurrency: Infinity,
      handlers: {
        sum: (p) => (p as number) + 1,
        later: async (_p, ctx) => {
          seen.push(ctx.message.id);
          await gate;
          return 'ignored';
        },
      },
    });
    const asker = b.register('asker');

    // Replies by returning from the handler.
    const answers = await Promise.all(Array.from({ length: 25 }, (_, i) => asker.ask('slow', 'sum', i)));
    expect(answers).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));

    // Explicit replies from outside the handler.
    const asks = Array.from({ length: 5 }, (_, i) => asker.ask('slow', 'later', i));
    await vi.advanceTimersByTimeAsync(0);
    expect(seen).toHaveLength(5);
    for (const [i, id] of seen.entries()) await slow.reply(id, `explicit ${i}`);
    await expect(Promise.all(asks)).resolves.toEqual([0, 1, 2, 3, 4].map((i) => `explicit ${i}`));
    release();

    // Its own bucket is still full: the first send passes the rate check (and is denied by policy), the second does not.
    expect((await refusal(slow.ask('asker', 'x', {}))).code).toBe('POLICY_DENIED');
    expect((await refusal(slow.ask('asker', 'x', {}))).code).toBe('RATE_LIMITED');
  });

  it('lets an agent registered with rate: false send without limit', async () => {
    const b = pair({ limits: { rate: { perSecond: 1, burst: 1 } } });
    const free = b.register('free', { rate: false });
    const capped = b.register('capped');
    const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => free.notify('n', i, { to: ['b'] })));
    expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
    await capped.notify('n', 0, { to: ['b'] });
    expect((await refusal(capped.notify('n', 1, { to: ['b'] }))).code).toBe('RATE_LIMITED');
  });

  it('gives an agent registered with its own rate that bucket instead of the default', async () => {
    const b = pair({ limits: { rate: { perSecond: 1, burst: 1 } } });
    const fast = b.register('fast', { rate: { perSecond: 100, burst: 5 } });
    for (let i = 0; i < 5; i++) await fast.notify('n', i, { to: ['b'] });
    const e = await refusal(fast.notify('n', 5, { to: ['b'] }));
    expect(e.code).toBe('RATE_LIMITED');
    expect(e.retryAfterMs).toBe(10);
    await vi.advanceTimersByTimeAsync(10);
    await fast.notify('n', 6, { to: ['b'] });
  });

  it('caps many senders together with limits.globalRate', async () => {
    const b = pair({ limits: { rate: { perSecond: 10, burst: 10 }, globalRate: { perSecond: 2, burst: 4 } } });
    const senders = Array.from({ length: 6 }, (_, i) => b.register(`s${i}`));
    const results = await Promise.allSettled(senders.map((s) => s.ask('b', 'x', s.id)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(4);
    const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as BusError] : []));
    expect(refused.map((e) => e.code)).toEqual(['RATE_LIMITED', 'RATE_LIMITED']);
    expect(refused[0]?.message).toContain('global');
    expect(refused[0]?.retryAfterMs).toBe(500);

    await vi.advanceTimersByTimeAsync(500);
    await expect(senders[5]!.ask('b', 'x', 'late')).resolves.toBe('ok');
    expect((await refusal(senders[4]!.ask('b', 'x', 'late'))).code).toBe('RATE_LIMITED');
  });

  it('never admits more than burst + perSecond·T/1000 sends over a window T (fake timers)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          perSecond: fc.integer({ min: 1, max: 50 }),
          burst: fc.integer({ min: 1, max: 10 }),
          gaps: fc.array(fc.integer({ min: 0, max: 400 }), { minLength: 1, maxLength: 60 }),
        }),
        async ({ perSecond, burst, gaps }) => {
          const b = new Orchestrator({
            policies: [{ from: 'a', to: 'b', allow: ['notify'] }],
            limits: { rate: { perSecond, burst } },
            audit: false,
          });
          try {
            b.register('b', { handlers: { '*': () => undefined } });
            const a = b.register('a');
            const start = Date.now();
            let accepted = 0;
            for (const gap of gaps) {
              await vi.advanceTimersByTimeAsync(gap);
              const r = await a.notify('n', 0, { to: ['b'] }).then(
                () => true,
                (e: unknown) => {
                  if (isBusError(e) && e.code === 'RATE_LIMITED') return false;
                  throw e;
                },
              );
              if (r) accepted++;
            }
            const T = Date.now() - start;
            expect(accepted).toBeLessThanOrEqual(burst + (perSecond * T) / 1000);
          } finally {
            await b.close();
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('Orchestrator rate limits on an injected clock', () => {
  it('never admits more than burst + perSecond·T/1000 sends at random times in a window T', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          perSecond: fc.double({ min: 0.5, max: 100, noNaN: true }),
          burst: fc.integer({ min: 1, max: 20 }),
          window: fc.integer({ min: 0, max: 10_000 }),
          // Offsets into the window; sorted below (the clock only moves forward).
          offsets: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 200 }),
        }),
        async ({ perSecond, burst, window, offsets }) => {
          let now = 1_700_000_000_000;
          const start = now;
          const b = new Orchestrator({
            policies: [{ from: 'a', to: '*', allow: ['ask', 'delegate', 'notify'] }],
            limits: { rate: { perSecond, burst } },
            clock: { now: () => now },
            audit: false,
          });
          try {
            b.register('b', { handlers: { '*': () => 'ok' } });
            b.register('c', { handlers: { '*': () => 'ok' } });
            const a = b.register('a');
            const times = offsets.map((o) => start + Math.floor(o * window)).sort((x, y) => x - y);
            let accepted = 0;
            for (const [i, t] of times.entries()) {
              now = t;
              // Mix types and recipients: the bucket is the sender's, whatever it sends.
              const send = i % 3 === 0 ? a.ask('b', 'x', i) : i % 3 === 1 ? a.delegate('c', 'y', i) : a.notify('z', i, { to: ['b'] });
              const ok = await (send as Promise<unknown>).then(
                () => true,
                (e: unknown) => {
                  if (isBusError(e) && e.code === 'RATE_LIMITED') return false;
                  throw e;
                },
              );
              if (ok) accepted++;
            }
            const T = (times.at(-1) ?? start) - start;
            expect(accepted).toBeLessThanOrEqual(burst + (perSecond * T) / 1000 + 1e-9);
          } finally {
            await b.close();
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('Orchestrator limits.maxAgents', () => {
  it('refuses to register beyond limits.maxAgents, and frees a place on unregister', () => {
    const b = open({ limits: { maxAgents: 3 } });
    b.register('a1');
    b.register('a2');
    b.register('a3');
    const e = thrown(() => b.register('a4'));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toContain('maxAgents');
    expect(b.agents().map((x) => x.id)).toEqual(['a1', 'a2', 'a3']);

    b.unregister('a2');
    expect(b.register('a4').id).toBe('a4');
    expect(thrown(() => b.register('a5')).code).toBe('INVALID_ARGUMENT');
  });
});
