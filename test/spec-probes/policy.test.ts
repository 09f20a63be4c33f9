// SPEC "Policy": default deny, deny wins, the eight levels of specificity, approval at the
// deciding level, minTrust, and rule-set validation; probed through explain() and real sends.
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { PolicyRule } from '../../src/index.js';
import { bus, closeAll, refusal } from './probe-kit.js';

afterEach(closeAll);

function decide(rules: PolicyRule[], q: { from?: string; to?: string; type?: 'ask' | 'delegate' | 'notify'; intent?: string } = {}, trust?: Record<string, number>) {
  const b = bus({ audit: false, policies: rules });
  for (const [id, t] of Object.entries(trust ?? {})) b.register(id, { trust: t });
  return b.explain({ from: q.from ?? 'A', to: q.to ?? 'B', type: q.type ?? 'ask', intent: q.intent ?? 'x' });
}

describe('"Default deny"', () => {
  it('no matching rule: deny with no rule named and a reason', () => {
    const d = decide([{ from: 'A', to: 'C', allow: ['ask'] }]);
    expect(d.decision).toBe('deny');
    expect(d.rule).toBeUndefined();
    expect(d.reason).toMatch(/\S/);
  });
});

describe('"(1) a matching deny anywhere wins"', () => {
  it('a *→* deny beats an A→B allow naming the intent', () => {
    const d = decide([
      { from: 'A', to: 'B', allow: ['ask'], intents: ['x'] },
      { from: '*', to: '*', deny: ['ask'] },
    ]);
    expect(d.decision).toBe('deny');
    expect(d.rule).toMatchObject({ from: '*', to: '*' });
  });

  it('a deny limited to intents denies only those intents', () => {
    const rules: PolicyRule[] = [
      { from: 'A', to: 'B', allow: ['ask'] },
      { from: '*', to: 'B', deny: ['ask'], intents: ['secret'] },
    ];
    expect(decide(rules, { intent: 'secret' }).decision).toBe('deny');
    expect(decide(rules, { intent: 'public' }).decision).toBe('allow');
  });

  it('a deny of another type does not deny this one', () => {
    expect(decide([{ from: 'A', to: 'B', allow: ['ask'] }, { from: '*', to: 'B', deny: ['notify'] }]).decision).toBe('allow');
  });

  it('a denied send is POLICY_DENIED with `rule` on the error naming the deny rule', async () => {
    const b = bus({ policies: [{ from: 'A', to: 'B', allow: ['ask'] }, { from: '*', to: 'B', deny: ['ask'], name: 'nobody asks B' }] });
    b.register('B', { handlers: { x: () => 1 } });
    const e = await refusal(b.register('A').ask('B', 'x', 1));
    expect(e.code).toBe('POLICY_DENIED');
    expect(e.rule).toBe('nobody asks B');
  });
});

describe('"(2) else the most specific level with a rule allowing the type and intent decides"', () => {
  // Each level, with an approval flag, against the next less specific one without: the more
  // specific one decides, so the decision is "approval".
  const levels: Array<[string, PolicyRule]> = [
    ['A→B naming the intent', { from: 'A', to: 'B', allow: ['ask'], intents: ['x'] }],
    ['A→B', { from: 'A', to: 'B', allow: ['ask'] }],
    ['A→* naming the intent', { from: 'A', to: '*', allow: ['ask'], intents: ['x'] }],
    ['A→*', { from: 'A', to: '*', allow: ['ask'] }],
    ['*→B naming the intent', { from: '*', to: 'B', allow: ['ask'], intents: ['x'] }],
    ['*→B', { from: '*', to: 'B', allow: ['ask'] }],
    ['*→* naming the intent', { from: '*', to: '*', allow: ['ask'], intents: ['x'] }],
    ['*→*', { from: '*', to: '*', allow: ['ask'] }],
  ];
  for (let i = 0; i < levels.length - 1; i++) {
    const [more, moreRule] = levels[i]!;
    const [less, lessRule] = levels[i + 1]!;
    it(`${more} decides over ${less}`, () => {
      expect(decide([lessRule, { ...moreRule, requireApproval: true }]).decision).toBe('approval');
      expect(decide([{ ...lessRule, requireApproval: true }, moreRule]).decision).toBe('allow');
    });
  }

  it('a level whose rules allow other intents or types does not decide: the next level does', () => {
    const d = decide([
      { from: 'A', to: 'B', allow: ['ask'], intents: ['other'] },
      { from: 'A', to: 'B', allow: ['notify'] },
      { from: '*', to: '*', allow: ['ask'], requireApproval: true },
    ]);
    expect(d.decision).toBe('approval');
  });

  it('"The deciding level asks for approval if any of its allowing rules does"', () => {
    const d = decide([
      { from: 'A', to: 'B', allow: ['ask'] },
      { from: 'A', to: 'B', allow: ['ask', 'delegate'], requireApproval: true },
    ]);
    expect(d.decision).toBe('approval');
  });

  it('is independent of rule order (every permutation gives the same decision)', () => {
    const pool: PolicyRule[] = [
      { from: 'A', to: 'B', allow: ['ask'], intents: ['x'] },
      { from: 'A', to: '*', allow: ['ask', 'notify'], requireApproval: true },
      { from: '*', to: 'B', deny: ['delegate'] },
      { from: '*', to: '*', allow: ['delegate'], intents: ['y'] },
      { from: 'A', to: 'B', allow: ['notify'], minTrust: 2 },
      { from: '*', to: 'B', allow: ['notify'], intents: ['y'], requireApproval: true },
    ];
    const questions = fc.record({
      type: fc.constantFrom('ask' as const, 'delegate' as const, 'notify' as const),
      intent: fc.constantFrom('x', 'y', 'z'),
      trust: fc.constantFrom(0, 2),
    });
    fc.assert(
      fc.property(fc.shuffledSubarray(pool, { minLength: 1 }), questions, (rules, q) => {
        const forward = decide(rules, q, { A: q.trust }).decision;
        const backward = decide([...rules].reverse(), q, { A: q.trust }).decision;
        return forward === backward;
      }),
      { numRuns: 60 },
    );
  });
});

describe('"minTrust (a rule applies only when the sender\'s trust reaches it) gates allow rules"', () => {
  const rules: PolicyRule[] = [
    { from: 'A', to: 'B', allow: ['ask'], minTrust: 5 },
    { from: '*', to: 'B', allow: ['ask'], requireApproval: true },
  ];
  it('below minTrust the rule does not apply and a less specific level decides', () => {
    expect(decide(rules, {}, { A: 4 }).decision).toBe('approval');
  });
  it('at minTrust exactly the rule applies', () => {
    expect(decide(rules, {}, { A: 5 }).decision).toBe('allow');
  });
  it('an unregistered sender has trust 0', () => {
    expect(decide([{ from: 'A', to: 'B', allow: ['ask'], minTrust: 1 }]).decision).toBe('deny');
  });
  it('applies to real sends: a trusted sender gets through, an untrusted one is POLICY_DENIED', async () => {
    const b = bus({ policies: [{ from: '*', to: 'B', allow: ['ask'], minTrust: 3 }] });
    b.register('B', { handlers: { x: () => 'ok' } });
    await expect(b.register('hi', { trust: 3 }).ask('B', 'x', 1)).resolves.toBe('ok');
    expect((await refusal(b.register('lo', { trust: 2 }).ask('B', 'x', 1))).code).toBe('POLICY_DENIED');
  });
});

describe('"Rule sets are validated (unknown types, empty allow, * in the wrong place, unknown keys)"', () => {
  const bad: Array<[string, unknown]> = [
    ['reply as a rule type', { from: 'A', to: 'B', allow: ['reply'] }],
    ['an unknown type', { from: 'A', to: 'B', allow: ['shout'] }],
    ['an empty allow', { from: 'A', to: 'B', allow: [] }],
    ['neither allow nor deny', { from: 'A', to: 'B' }],
    ['a * inside an id', { from: 'A*', to: 'B', allow: ['ask'] }],
    ['a * as an intent', { from: 'A', to: 'B', allow: ['ask'], intents: ['*'] }],
    ['an empty intents list', { from: 'A', to: 'B', allow: ['ask'], intents: [] }],
    ['an unknown key', { from: 'A', to: 'B', allow: ['ask'], requireAproval: true }],
    ['a bad id', { from: 'a b', to: 'B', allow: ['ask'] }],
    ['a missing from', { to: 'B', allow: ['ask'] }],
    ['a non-number minTrust', { from: 'A', to: 'B', allow: ['ask'], minTrust: '5' }],
    ['a NaN minTrust', { from: 'A', to: 'B', allow: ['ask'], minTrust: Number.NaN }],
    ['requireApproval on a deny-only rule', { from: 'A', to: 'B', deny: ['ask'], requireApproval: true }],
    ['a rule that is not an object', 'allow everything'],
  ];
  it.each(bad)('refuses %s with INVALID_ARGUMENT, at construction and in setPolicies (which then changes nothing)', (_what, rule) => {
    expect(() => bus({ audit: false, policies: [rule as PolicyRule] })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    const b = bus({ audit: false, policies: [{ from: 'A', to: 'B', allow: ['ask'] }] });
    const v = b.policyVersion;
    expect(() => b.setPolicies([{ from: 'A', to: 'B', allow: ['notify'] }, rule as PolicyRule])).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(b.policyVersion).toBe(v);
    expect(b.explain({ from: 'A', to: 'B', type: 'notify', intent: 'x' }).decision).toBe('deny');
  });

  it('names the bad rule\'s place and key in the message', () => {
    expect(() => bus({ audit: false, policies: [{ from: 'A', to: 'B', allow: ['ask'] }, { from: 'A', to: 'B', allow: ['shout' as 'ask'] }] })).toThrow(/1|second/);
    expect(() => bus({ audit: false, policies: [{ from: 'A', to: 'B', allow: ['ask'], requireAproval: true } as PolicyRule] })).toThrow(/requireAproval/);
  });

  it('refuses a policies value that is not an array', () => {
    expect(() => bus({ audit: false, policies: { from: 'A' } as never })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    const b = bus({ audit: false });
    expect(() => b.setPolicies('x' as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
