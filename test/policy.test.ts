import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import type { RuleType } from '../src/envelope.js';
import { RULE_TYPES } from '../src/envelope.js';
import { isBusError } from '../src/errors.js';
import { AGENT_ID_PATTERN, isAgentId } from '../src/ids.js';
import {
  PolicySet,
  lintRules,
  parseRules,
  ruleLabel,
  type PolicyDecision,
  type PolicyRequest,
  type PolicyRule,
} from '../src/policy.js';

const SEED = [
  { from: 'research', to: 'writer', allow: ['delegate', 'notify'] },
  { from: 'writer', to: 'research', allow: ['ask'], intents: ['clarify'] },
  { from: 'qa', to: '*', allow: ['ask'] },
  { from: 'supervisor', to: '*', allow: ['ask', 'notify'] },
  { from: 'purchase', to: 'payment', allow: ['delegate'], requireApproval: true },
  { from: '*', to: 'vault', deny: ['notify'] },
];

function policy(rules: unknown, version = 1): PolicySet {
  return new PolicySet(parseRules(rules), version);
}

function ask(set: PolicySet, from: string, to: string, type: RuleType, intent: string, trust?: number): PolicyDecision {
  return set.evaluate(trust === undefined ? { from, to, type, intent } : { from, to, type, intent, trust });
}

function refusal(input: unknown): string {
  try {
    parseRules(input);
  } catch (e) {
    if (isBusError(e) && e.code === 'INVALID_ARGUMENT') return e.message;
    throw e;
  }
  throw new Error(`parseRules accepted ${JSON.stringify(input)}`);
}

/** The eight levels as rule shapes for a request a -> b with intent 'x', most specific first. */
const LEVELS = [
  { name: 'A→B naming the intent', from: 'a', to: 'b', intents: ['x'] },
  { name: 'A→B', from: 'a', to: 'b' },
  { name: 'A→* naming the intent', from: 'a', to: '*', intents: ['x'] },
  { name: 'A→*', from: 'a', to: '*' },
  { name: '*→B naming the intent', from: '*', to: 'b', intents: ['x'] },
  { name: '*→B', from: '*', to: 'b' },
  { name: '*→* naming the intent', from: '*', to: '*', intents: ['x'] },
  { name: '*→*', from: '*', to: '*' },
] as const;

function at(level: (typeof LEVELS)[number], extra: Record<string, unknown>): Record<string, unknown> {
  const { name: _name, ...shape } = level;
  return { ...shape, ...extra };
}

describe('isAgentId()', () => {
  it('accepts ids and refuses the wildcard, empty strings and non-strings', () => {
    expect(['writer', 'a', 'A.b_c:d-9', 'constructor', 'toString', 'x'.repeat(128)].every(isAgentId)).toBe(true);
    expect(['*', '', '_x', '-x', 'a b', 'x'.repeat(129), '__proto__', 1, null].some(isAgentId)).toBe(false);
    expect(AGENT_ID_PATTERN.test('research')).toBe(true);
  });
});

describe('parseRules()', () => {
  it('returns deep-frozen copies that do not follow later changes to the input', () => {
    const input = [{ from: 'a', to: 'b', allow: ['ask'], intents: ['x'] }];
    const [rule] = parseRules(input);
    input[0]!.allow.push('notify');
    input[0]!.intents[0] = 'y';
    expect(rule).toEqual({ from: 'a', to: 'b', allow: ['ask'], intents: ['x'] });
    expect(Object.isFrozen(rule)).toBe(true);
    expect(Object.isFrozen(rule!.allow)).toBe(true);
    expect(Object.isFrozen(rule!.intents)).toBe(true);
  });

  it('accepts an empty rule set and the seed scenario, keeping absent keys absent', () => {
    expect(parseRules([])).toEqual([]);
    const rules = parseRules(SEED);
    expect(rules).toEqual(SEED);
    expect(Object.keys(rules[0]!)).toEqual(['from', 'to', 'allow']);
  });

  it('accepts prototype names as ids (where they are ids) and as intents', () => {
    const rules = parseRules([
      { from: 'constructor', to: 'toString', allow: ['ask'], intents: ['__proto__', 'hasOwnProperty', 'constructor'] },
    ]);
    expect(rules[0]!.intents).toEqual(['__proto__', 'hasOwnProperty', 'constructor']);
  });

  it.each<[string, unknown, string]>([
    ['a non-array', { from: 'a' }, 'policies: expected an array of rules, got an object'],
    ['a non-object rule', ['a -> b'], 'policies[0]: expected a rule object, got "a -> b"'],
    ['an unknown key, suggesting the near miss', [{ from: 'a', to: 'b', alow: ['ask'] }], 'policies[0]: unknown key "alow" (did you mean "allow"?)'],
    ['a __proto__ key', JSON.parse('[{"from":"a","to":"b","allow":["ask"],"__proto__":{}}]'), 'policies[0]: unknown key "__proto__"'],
    ['a missing from', [{ to: 'b', allow: ['ask'] }], 'policies[0].from: is required'],
    ['a bad id', [{ from: 'a', to: 'b c', allow: ['ask'] }], 'policies[0].to: "b c" is not an agent id'],
    ['an id that is not an id (__proto__)', [{ from: '__proto__', to: 'b', allow: ['ask'] }], 'policies[0].from: "__proto__" is not an agent id'],
    ['a * inside an id', [{ from: 'wri*', to: 'b', allow: ['ask'] }], `policies[0].from: "wri*": '*' is only allowed alone`],
    ['reply as a rule type', [{ from: 'a', to: 'b', allow: ['ask', 'reply'] }], 'policies[0].allow[1]: "reply" is not a rule type (replies need no rule)'],
    ['an unknown type', [{ from: 'a', to: 'b', deny: ['shout'] }], 'policies[0].deny[0]: "shout" is not a rule type'],
    ['a type given as a string', [{ from: 'a', to: 'b', allow: 'ask' }], 'policies[0].allow: expected an array of rule types, got "ask"'],
    ['an empty allow', [{ from: 'a', to: 'b', allow: [] }], 'policies[0].allow: must list at least one type'],
    ['a duplicate type', [{ from: 'a', to: 'b', allow: ['ask', 'notify', 'ask'] }], 'policies[0].allow[2]: "ask" is listed twice'],
    ['neither allow nor deny', [{ from: 'a', to: 'b' }], 'policies[0]: a rule needs "allow" or "deny"'],
    ['requireApproval without allow', [{ from: 'a', to: 'b', deny: ['ask'], requireApproval: true }], 'policies[0].requireApproval: only applies to allowed types'],
    ['minTrust without allow', [{ from: 'a', to: 'b', deny: ['ask'], minTrust: 5 }], 'policies[0].minTrust: only applies to allowed types'],
    ['a non-boolean requireApproval', [{ from: 'a', to: 'b', allow: ['ask'], requireApproval: 'yes' }], 'policies[0].requireApproval: expected true or false'],
    ['an infinite minTrust', [{ from: 'a', to: 'b', allow: ['ask'], minTrust: Number.POSITIVE_INFINITY }], 'policies[0].minTrust: expected a finite number'],
    ['a NaN minTrust', [{ from: 'a', to: 'b', allow: ['ask'], minTrust: Number.NaN }], 'policies[0].minTrust: expected a finite number'],
    ['minRecipientTrust without allow', [{ from: 'a', to: 'b', deny: ['ask'], minRecipientTrust: 5 }], 'policies[0].minRecipientTrust: only applies to allowed types'],
    ['an infinite minRecipientTrust', [{ from: 'a', to: 'b', allow: ['ask'], minRecipientTrust: Number.NEGATIVE_INFINITY }], 'policies[0].minRecipientTrust: expected a finite number'],
    ['a string minRecipientTrust', [{ from: 'a', to: 'b', allow: ['ask'], minRecipientTrust: '5' }], 'policies[0].minRecipientTrust: expected a finite number, got "5"'],
    ['a misspelt minRecipientTrust', [{ from: 'a', to: 'b', allow: ['ask'], minRecipientTrst: 5 }], 'policies[0]: unknown key "minRecipientTrst" (did you mean "minRecipientTrust"?)'],
    ['empty intents', [{ from: 'a', to: 'b', allow: ['ask'], intents: [] }], 'policies[0].intents: must list at least one intent'],
    ['an empty intent', [{ from: 'a', to: 'b', allow: ['ask'], intents: ['x', ''] }], 'policies[0].intents[1]: an intent must not be empty'],
    ['a too long intent', [{ from: 'a', to: 'b', allow: ['ask'], intents: ['x'.repeat(129)] }], 'policies[0].intents[0]: an intent is at most 128 characters'],
    ['a * intent', [{ from: 'a', to: 'b', allow: ['ask'], intents: ['*'] }], `policies[0].intents[0]: '*' is not an intent`],
    ['a duplicate intent', [{ from: 'a', to: 'b', allow: ['ask'], intents: ['x', 'x'] }], 'policies[0].intents[1]: "x" is listed twice'],
    ['an empty name', [{ from: 'a', to: 'b', allow: ['ask'], name: '' }], 'policies[0].name: must not be empty'],
    ['a later bad rule, by its index', [...SEED, { from: 'a', to: 'b', allow: ['notify'], intent: ['x'] }], 'policies[6]: unknown key "intent" (did you mean "intents"?)'],
  ])('refuses %s with a message naming it', (_what, input, message) => {
    expect(refusal(input)).toContain(message);
  });

  it('names every problem in one message, without noise from follow-on checks', () => {
    const message = refusal([{ from: 'a', to: 'b', alow: ['ask'] }, null]);
    expect(message).toBe(
      'invalid policy rules: policies[0]: unknown key "alow" (did you mean "allow"?); policies[1]: expected a rule object, got null',
    );
  });
});

describe('ruleLabel()', () => {
  it('prefers the name', () => {
    expect(ruleLabel({ from: 'a', to: 'b', allow: ['ask'], name: 'qa may ask' })).toBe('qa may ask');
  });

  it('describes every part of an unnamed rule compactly', () => {
    expect(
      ruleLabel({ from: 'research', to: 'writer', allow: ['delegate', 'notify'], intents: ['clarify'], requireApproval: true, minTrust: 85 }),
    ).toBe('research -> writer allow:delegate,notify intents:clarify approval minTrust:85');
    expect(ruleLabel({ from: '*', to: 'vault', deny: ['notify'] })).toBe('* -> vault deny:notify');
  });
});

describe('PolicySet#evaluate()', () => {
  it('denies every type by default, saying so', () => {
    const set = policy([]);
    for (const type of RULE_TYPES) {
      const d = ask(set, 'research', 'vault', type, 'x');
      expect(d).toEqual({
        decision: 'deny',
        reason: `no rule allows research -> vault ${type} 'x' (default deny)`,
        policyVersion: 1,
      });
    }
  });

  it('denies a type it does not know (replies are not policy business)', () => {
    const set = policy([{ from: '*', to: '*', allow: ['ask', 'delegate', 'notify'] }]);
    expect(set.evaluate({ from: 'a', to: 'b', type: 'reply' as RuleType, intent: 'x' }).decision).toBe('deny');
  });

  describe('on the seed scenario', () => {
    const set = policy([...SEED.slice(0, 2), { from: 'qa', to: '*', allow: ['ask'] }, ...SEED.slice(3)], 7);
    it.each<[string, string, RuleType, string, PolicyDecision['decision'], string | undefined]>([
      ['research', 'writer', 'delegate', 'summarize', 'allow', 'research -> writer allow:delegate,notify'],
      ['research', 'writer', 'notify', 'found', 'allow', 'research -> writer allow:delegate,notify'],
      ['research', 'writer', 'ask', 'clarify', 'deny', undefined],
      ['writer', 'research', 'ask', 'clarify', 'allow', 'writer -> research allow:ask intents:clarify'],
      ['writer', 'research', 'ask', 'summarize', 'deny', undefined],
      ['writer', 'research', 'delegate', 'clarify', 'deny', undefined],
      ['qa', 'writer', 'ask', 'check', 'allow', 'qa -> * allow:ask'],
      ['qa', 'vault', 'ask', 'check', 'allow', 'qa -> * allow:ask'],
      ['qa', 'writer', 'notify', 'check', 'deny', undefined],
      ['supervisor', 'research', 'notify', 'status', 'allow', 'supervisor -> * allow:ask,notify'],
      ['supervisor', 'vault', 'ask', 'status', 'allow', 'supervisor -> * allow:ask,notify'],
      ['supervisor', 'vault', 'notify', 'status', 'deny', '* -> vault deny:notify'],
      ['purchase', 'payment', 'delegate', 'pay', 'approval', 'purchase -> payment allow:delegate approval'],
      ['purchase', 'payment', 'ask', 'pay', 'deny', undefined],
      ['payment', 'purchase', 'delegate', 'pay', 'deny', undefined],
      ['research', 'vault', 'notify', 'found', 'deny', '* -> vault deny:notify'],
    ])('%s -> %s %s %s: %s', (from, to, type, intent, decision, label) => {
      const d = ask(set, from, to, type, intent);
      expect(d.decision).toBe(decision);
      expect(d.ruleLabel).toBe(label);
      expect(d.policyVersion).toBe(7);
      if (label !== undefined) expect(ruleLabel(d.rule!)).toBe(label);
    });

    it('explains a deny by rule and a default deny in words', () => {
      expect(ask(set, 'research', 'vault', 'notify', 'x').reason).toBe("denied by rule '* -> vault deny:notify'");
      expect(ask(set, 'research', 'vault', 'notify', 'x').rule).toEqual({ from: '*', to: 'vault', deny: ['notify'] });
      expect(ask(set, 'research', 'vault', 'ask', 'x').reason).toBe("no rule allows research -> vault ask 'x' (default deny)");
      expect(ask(set, 'purchase', 'payment', 'delegate', 'x').reason).toBe(
        "approval required by rule 'purchase -> payment allow:delegate approval'",
      );
    });
  });

  it('lets a deny at any level beat an allow at any level', () => {
    for (const denyLevel of LEVELS) {
      for (const allowLevel of LEVELS) {
        const set = policy([at(allowLevel, { allow: ['ask'] }), at(denyLevel, { deny: ['ask'] })]);
        const d = ask(set, 'a', 'b', 'ask', 'x');
        expect(d.decision, `deny at ${denyLevel.name}, allow at ${allowLevel.name}`).toBe('deny');
        expect(d.rule?.deny).toEqual(['ask']);
      }
    }
  });

  it('lets a deny at *→* beat an allow at A→B naming the intent, approval or not', () => {
    const set = policy([
      { from: 'a', to: 'b', allow: ['ask'], intents: ['x'], requireApproval: true },
      { from: '*', to: '*', deny: ['ask'] },
    ]);
    expect(ask(set, 'a', 'b', 'ask', 'x', 100).decision).toBe('deny');
  });

  it('reports the most specific matching deny', () => {
    const set = policy([
      { from: '*', to: '*', deny: ['ask'], name: 'global' },
      { from: 'a', to: '*', deny: ['ask'], intents: ['x'], name: 'a naming x' },
      { from: '*', to: 'b', deny: ['ask'], name: 'to b' },
    ]);
    expect(ask(set, 'a', 'b', 'ask', 'x').ruleLabel).toBe('a naming x');
    expect(ask(set, 'a', 'b', 'ask', 'y').ruleLabel).toBe('to b');
    expect(ask(set, 'c', 'd', 'ask', 'y').ruleLabel).toBe('global');
  });

  it('applies an intent-scoped allow only to its intents, and an intent-scoped deny only to its intents', () => {
    const set = policy([
      { from: 'a', to: 'b', allow: ['ask', 'notify'], intents: ['x', 'y'] },
      { from: 'a', to: '*', deny: ['notify'], intents: ['y'] },
    ]);
    expect(ask(set, 'a', 'b', 'ask', 'x').decision).toBe('allow');
    expect(ask(set, 'a', 'b', 'ask', 'y').decision).toBe('allow');
    expect(ask(set, 'a', 'b', 'ask', 'z').decision).toBe('deny');
    expect(ask(set, 'a', 'b', 'notify', 'x').decision).toBe('allow');
    expect(ask(set, 'a', 'b', 'notify', 'y').decision).toBe('deny');
  });

  it('lets the most specific allowing level decide approval, for every pair of levels', () => {
    LEVELS.forEach((specific, i) => {
      for (const general of LEVELS.slice(i + 1)) {
        const plainWins = policy([at(general, { allow: ['ask'], requireApproval: true }), at(specific, { allow: ['ask'] })]);
        expect(ask(plainWins, 'a', 'b', 'ask', 'x').decision, `${specific.name} over ${general.name}`).toBe('allow');
        const approvalWins = policy([at(general, { allow: ['ask'] }), at(specific, { allow: ['ask'], requireApproval: true })]);
        expect(ask(approvalWins, 'a', 'b', 'ask', 'x').decision, `${specific.name} over ${general.name}`).toBe('approval');
      }
    });
  });

  it('lets a plain A→B allow decide over an A→* rule asking for approval', () => {
    const set = policy([
      { from: 'a', to: '*', allow: ['delegate'], requireApproval: true },
      { from: 'a', to: 'b', allow: ['delegate'] },
    ]);
    expect(ask(set, 'a', 'b', 'delegate', 'x')).toMatchObject({ decision: 'allow', ruleLabel: 'a -> b allow:delegate' });
    expect(ask(set, 'a', 'c', 'delegate', 'x')).toMatchObject({ decision: 'approval', ruleLabel: 'a -> * allow:delegate approval' });
  });

  it('asks for approval when any allowing rule of the deciding level does, and reports that rule', () => {
    const set = policy([
      { from: 'a', to: 'b', allow: ['ask'], name: 'a plain' },
      { from: 'a', to: 'b', allow: ['ask', 'notify'], requireApproval: true, name: 'z approval' },
    ]);
    expect(ask(set, 'a', 'b', 'ask', 'x')).toMatchObject({ decision: 'approval', ruleLabel: 'z approval' });
    expect(ask(set, 'a', 'b', 'notify', 'x')).toMatchObject({ decision: 'approval', ruleLabel: 'z approval' });
  });

  it('skips a level whose only rules need approval for other types', () => {
    const set = policy([
      { from: 'a', to: 'b', allow: ['notify'], requireApproval: true },
      { from: '*', to: 'b', allow: ['ask'] },
    ]);
    expect(ask(set, 'a', 'b', 'ask', 'x')).toMatchObject({ decision: 'allow', ruleLabel: '* -> b allow:ask' });
  });

  describe('with minTrust', () => {
    const set = policy([
      { from: 'a', to: 'vault', allow: ['ask'], minTrust: 50 },
      { from: '*', to: 'vault', allow: ['ask'], requireApproval: true, minTrust: 10 },
    ]);

    it('applies an allow only when the sender reaches minTrust', () => {
      expect(ask(set, 'a', 'vault', 'ask', 'x', 50).decision).toBe('allow');
      expect(ask(set, 'a', 'vault', 'ask', 'x', 90).decision).toBe('allow');
    });

    it('falls through to a less specific level when the gate is not reached', () => {
      expect(ask(set, 'a', 'vault', 'ask', 'x', 49)).toMatchObject({ decision: 'approval', ruleLabel: '* -> vault allow:ask approval minTrust:10' });
    });

    it('takes trust 0 when none is given, and names the gate in a default deny', () => {
      const d = ask(set, 'a', 'vault', 'ask', 'x');
      expect(d.decision).toBe('deny');
      expect(d.reason).toBe(
        "no rule allows a -> vault ask 'x' at trust 0 (default deny; rule 'a -> vault allow:ask minTrust:50' needs trust >= 50)",
      );
    });

    it('lets a NaN trust through no gate', () => {
      expect(ask(set, 'a', 'vault', 'ask', 'x', Number.NaN).decision).toBe('deny');
      expect(ask(policy([{ from: 'a', to: 'b', allow: ['ask'] }]), 'a', 'b', 'ask', 'x', Number.NaN).decision).toBe('allow');
    });

    it('lets a rule with a lower gate decide for mid trust, and approval join once its gate is reached', () => {
      const mixed = policy([
        { from: 'a', to: 'b', allow: ['ask'], minTrust: -5 },
        { from: 'a', to: 'b', allow: ['ask'], requireApproval: true, minTrust: 20 },
      ]);
      expect(ask(mixed, 'a', 'b', 'ask', 'x', -10).decision).toBe('deny');
      expect(ask(mixed, 'a', 'b', 'ask', 'x', 0).decision).toBe('allow');
      expect(ask(mixed, 'a', 'b', 'ask', 'x', 20).decision).toBe('approval');
    });
  });

  describe('with minRecipientTrust', () => {
    const set = policy([
      { from: '*', to: 'vault', allow: ['ask'], minRecipientTrust: 80 },
      { from: 'a', to: '*', allow: ['ask'], minTrust: 10, minRecipientTrust: 20, requireApproval: true },
    ]);
    const at = (from: string, trust: number, recipientTrust: number | undefined) =>
      set.evaluate({ from, to: 'vault', type: 'ask', intent: 'x', trust, ...(recipientTrust === undefined ? {} : { recipientTrust }) });

    it('applies an allow only when the recipient reaches minRecipientTrust', () => {
      expect(at('b', 0, 80)).toMatchObject({ decision: 'allow', ruleLabel: '* -> vault allow:ask minRecipientTrust:80' });
      expect(at('b', 0, 79).decision).toBe('deny');
    });

    it('needs both gates of a rule with both, and falls through to a less specific level otherwise', () => {
      expect(at('a', 10, 20)).toMatchObject({ decision: 'approval', ruleLabel: 'a -> * allow:ask approval minTrust:10 minRecipientTrust:20' });
      expect(at('a', 9, 20).decision).toBe('deny');
      expect(at('a', 9, 90)).toMatchObject({ decision: 'allow', ruleLabel: '* -> vault allow:ask minRecipientTrust:80' });
    });

    it('takes recipient trust 0 when none is given, and names the recipient gate in a default deny', () => {
      expect(at('a', 10, undefined).reason).toBe(
        "no rule allows a -> vault ask 'x' at trust 10, recipient trust 0 (default deny; rule 'a -> * allow:ask approval minTrust:10 minRecipientTrust:20' needs recipient trust >= 20)",
      );
      expect(at('a', 0, undefined).reason).toContain('needs trust >= 10');
    });

    it('lets a NaN recipient trust through no recipient gate', () => {
      expect(at('b', 0, Number.NaN).decision).toBe('deny');
      const mixed = policy([
        { from: 'a', to: 'b', allow: ['ask'] },
        { from: 'a', to: 'b', allow: ['ask'], requireApproval: true, minRecipientTrust: 5 },
      ]);
      expect(mixed.evaluate({ from: 'a', to: 'b', type: 'ask', intent: 'x', recipientTrust: Number.NaN }).decision).toBe('allow');
      expect(mixed.evaluate({ from: 'a', to: 'b', type: 'ask', intent: 'x', recipientTrust: 5 }).decision).toBe('approval');
    });
  });

  it('is unbothered by prototype names as ids and intents', () => {
    const names = ['constructor', 'toString', 'hasOwnProperty', 'valueOf'];
    const empty = policy([]);
    for (const name of [...names, '__proto__']) {
      for (const type of RULE_TYPES) {
        expect(ask(empty, name, name, type, name).decision).toBe('deny');
      }
    }
    const set = policy([
      { from: 'constructor', to: 'toString', allow: ['ask'], intents: ['__proto__'] },
      { from: 'hasOwnProperty', to: '*', allow: ['notify'] },
      { from: '*', to: 'valueOf', deny: ['notify'], intents: ['constructor'] },
    ]);
    expect(ask(set, 'constructor', 'toString', 'ask', '__proto__').decision).toBe('allow');
    expect(ask(set, 'constructor', 'toString', 'ask', 'constructor').decision).toBe('deny');
    expect(ask(set, 'constructor', 'valueOf', 'ask', '__proto__').decision).toBe('deny');
    expect(ask(set, 'hasOwnProperty', 'valueOf', 'notify', 'toString').decision).toBe('allow');
    expect(ask(set, 'hasOwnProperty', 'valueOf', 'notify', 'constructor').decision).toBe('deny');
    expect(ask(set, 'toString', 'constructor', 'ask', 'hasOwnProperty').decision).toBe('deny');
  });

  it('returns frozen decisions carrying the set version', () => {
    const set = policy(SEED, 42);
    const d = ask(set, 'research', 'writer', 'notify', 'x');
    expect(Object.isFrozen(d)).toBe(true);
    expect(d.policyVersion).toBe(42);
    expect(set.version).toBe(42);
    expect(Object.isFrozen(set.rules)).toBe(true);
  });

  it('reports the canonically first of several deciding rules, whatever their order', () => {
    const rules = [
      { from: 'a', to: 'b', allow: ['ask'], name: 'same' },
      { from: 'a', to: 'b', allow: ['ask', 'notify'], name: 'same' },
      { from: 'a', to: 'b', allow: ['ask'], name: 'beta' },
    ];
    const expected = ask(policy(rules), 'a', 'b', 'ask', 'x');
    expect(expected.ruleLabel).toBe('beta');
    for (const order of [[2, 1, 0], [1, 0, 2], [1, 2, 0]]) {
      expect(ask(policy(order.map((i) => rules[i])), 'a', 'b', 'ask', 'x')).toEqual(expected);
    }
    const tie = [rules[1], rules[0]];
    expect(ask(policy(tie), 'a', 'b', 'ask', 'x').rule).toEqual(ask(policy([rules[0], rules[1]]), 'a', 'b', 'ask', 'x').rule);
  });
});

// ---------------------------------------------------------------------------------------
// Property: PolicySet agrees with a reference evaluator written straight from the rules as docs/policies.md states them.

const IDS = ['a', 'b', 'c', '*'] as const;
const INTENTS = ['x', 'y'] as const;

const ruleArb: fc.Arbitrary<PolicyRule> = fc
  .record(
    {
      from: fc.constantFrom(...IDS),
      to: fc.constantFrom(...IDS),
      allow: fc.subarray([...RULE_TYPES], { minLength: 1 }),
      deny: fc.subarray([...RULE_TYPES], { minLength: 1 }),
      intents: fc.subarray([...INTENTS], { minLength: 1 }),
      requireApproval: fc.boolean(),
      minTrust: fc.constantFrom(-1, 0, 10, 50),
      minRecipientTrust: fc.constantFrom(-1, 0, 10, 50),
      name: fc.constantFrom('n1', 'n2'),
    },
    { requiredKeys: ['from', 'to'] },
  )
  .map((r) => {
    const rule: PolicyRule = { ...r };
    if (rule.allow === undefined) {
      delete rule.requireApproval;
      delete rule.minTrust;
      delete rule.minRecipientTrust;
      if (rule.deny === undefined) rule.deny = ['notify'];
    }
    return rule;
  });

const requestArb: fc.Arbitrary<PolicyRequest> = fc.record(
  {
    from: fc.constantFrom('a', 'b', 'c', 'd'),
    to: fc.constantFrom('a', 'b', 'c', 'd'),
    type: fc.constantFrom(...RULE_TYPES),
    intent: fc.constantFrom('x', 'y', 'z'),
    trust: fc.constantFrom(-1, 0, 5, 10, 50, 100),
    recipientTrust: fc.constantFrom(-1, 0, 5, 10, 50, 100, Number.NaN),
  },
  { requiredKeys: ['from', 'to', 'type', 'intent'] },
);

interface Reference {
  decision: PolicyDecision['decision'];
  /** The rules that may be reported: matching denies of the most specific deny level, or the deciding level's allowing rules (with approval, when it asks for it). */
  candidates: PolicyRule[];
}

function reference(rules: readonly PolicyRule[], req: PolicyRequest): Reference {
  const trust = req.trust ?? 0;
  const recipientTrust = req.recipientTrust ?? 0;
  const levels: [boolean, boolean, boolean][] = [];
  for (const fromAny of [false, true]) for (const toAny of [false, true]) for (const anyIntent of [false, true]) levels.push([fromAny, toAny, anyIntent]);
  const atLevel = (r: PolicyRule, [fromAny, toAny, anyIntent]: [boolean, boolean, boolean]): boolean =>
    (fromAny ? r.from === '*' : r.from === req.from) &&
    (toAny ? r.to === '*' : r.to === req.to) &&
    (anyIntent ? r.intents === undefined : r.intents?.includes(req.intent) === true);
  // (1) a matching deny anywhere wins
  for (const level of levels) {
    const denies = rules.filter((r) => atLevel(r, level) && r.deny?.includes(req.type) === true);
    if (denies.length > 0) return { decision: 'deny', candidates: denies };
  }
  // (2) else the most specific level with a rule allowing it decides
  for (const level of levels) {
    const allows = rules.filter(
      (r) =>
        atLevel(r, level) &&
        r.allow?.includes(req.type) === true &&
        (r.minTrust === undefined || trust >= r.minTrust) &&
        (r.minRecipientTrust === undefined || recipientTrust >= r.minRecipientTrust),
    );
    if (allows.length > 0) {
      const approvals = allows.filter((r) => r.requireApproval === true);
      return approvals.length > 0 ? { decision: 'approval', candidates: approvals } : { decision: 'allow', candidates: allows };
    }
  }
  // (3) else deny
  return { decision: 'deny', candidates: [] };
}

function shuffle<T>(items: readonly T[], keys: readonly number[]): T[] {
  return items
    .map((item, i) => [item, keys[i % Math.max(keys.length, 1)] ?? 0, i] as const)
    .sort((p, q) => p[1] - q[1] || q[2] - p[2])
    .map(([item]) => item);
}

describe('PolicySet#evaluate() (properties)', () => {
  it('agrees with the reference evaluator, and no shuffle of the rules changes the decision or the reported rule', () => {
    fc.assert(
      fc.property(
        fc.array(ruleArb, { maxLength: 12 }),
        fc.array(requestArb, { minLength: 1, maxLength: 12 }),
        fc.array(fc.integer(), { minLength: 1, maxLength: 12 }),
        (input, requests, keys) => {
          const rules = parseRules(input);
          const set = new PolicySet(rules, 1);
          const shuffled = new PolicySet(shuffle(rules, keys), 1);
          for (const req of requests) {
            const got = set.evaluate(req);
            const want = reference(rules, req);
            expect(got.decision).toBe(want.decision);
            if (want.candidates.length === 0) expect(got.rule).toBeUndefined();
            else expect(want.candidates).toContain(got.rule);
            expect(shuffled.evaluate(req)).toEqual(got);
          }
        },
      ),
      { numRuns: 4000 },
    );
    // 4000 runs take ~8 s alone on 2 cores, over 20 s when the machine is shared.
  }, 60_000);

  it('never denies at a higher sender or recipient trust what it allows at a lower one', () => {
    const trusts = [-1, 0, 5, 10, 50, 100];
    fc.assert(
      fc.property(fc.array(ruleArb, { maxLength: 10 }), requestArb, (input, req) => {
        const set = new PolicySet(parseRules(input), 1);
        for (const t of trusts)
          for (const rt of trusts) {
            if (set.evaluate({ ...req, trust: t, recipientTrust: rt }).decision === 'deny') continue;
            for (const t2 of trusts.filter((x) => x >= t))
              for (const rt2 of trusts.filter((x) => x >= rt)) expect(set.evaluate({ ...req, trust: t2, recipientTrust: rt2 }).decision).not.toBe('deny');
          }
      }),
      { numRuns: 300 },
    );
  });
});

// ---------------------------------------------------------------------------------------

describe('lintRules()', () => {
  it('finds nothing to say about the seed scenario', () => {
    expect(lintRules(parseRules(SEED))).toEqual([]);
  });

  it('flags a rule from an agent to itself as never matching', () => {
    expect(lintRules(parseRules([{ from: 'a', to: 'a', allow: ['ask'] }]))).toMatchObject([
      { ruleIndex: 0, kind: 'never-matches' },
    ]);
  });

  it('flags types a rule both allows and denies', () => {
    const [lint] = lintRules(parseRules([{ from: 'a', to: 'b', allow: ['ask', 'notify'], deny: ['ask'] }]));
    expect(lint).toMatchObject({ ruleIndex: 0, kind: 'never-matches', part: 'allow', types: ['ask'] });
    expect(lint!.message).toContain('allow:ask is also denied by the same rule');
  });

  it('flags an allow that a broader deny always beats, naming the deny', () => {
    const lints = lintRules(
      parseRules([
        { from: 'research', to: 'vault', allow: ['notify', 'ask'], intents: ['x'] },
        { from: '*', to: 'vault', deny: ['notify'] },
      ]),
    );
    expect(lints).toMatchObject([{ ruleIndex: 0, kind: 'shadowed', part: 'allow', types: ['notify'], by: 1 }]);
    expect(lints[0]!.message).toContain(`'* -> vault deny:notify' (policies[1])`);
  });

  it('does not flag an allow that a deny only partly covers', () => {
    const rules = parseRules([
      { from: 'a', to: 'b', allow: ['notify'] },
      { from: '*', to: 'b', deny: ['notify'], intents: ['x'] },
      { from: '*', to: 'c', deny: ['notify'] },
    ]);
    expect(lintRules(rules)).toEqual([]);
  });

  it('flags an allow another rule of the same level already covers, and only the later of two duplicates', () => {
    const rules = parseRules([
      { from: 'a', to: 'b', allow: ['ask'] },
      { from: 'a', to: 'b', allow: ['ask'] },
      { from: 'a', to: 'c', allow: ['ask'], intents: ['x'], minTrust: 5 },
      { from: 'a', to: 'c', allow: ['ask', 'notify'], intents: ['x', 'y'] },
      { from: 'a', to: 'd', allow: ['ask'], requireApproval: true },
      { from: 'a', to: 'd', allow: ['ask'] },
    ]);
    expect(lintRules(rules)).toMatchObject([
      { ruleIndex: 1, kind: 'shadowed', part: 'allow', types: ['ask'], by: 0 },
      { ruleIndex: 2, kind: 'shadowed', part: 'allow', types: ['ask'], by: 3 },
      { ruleIndex: 5, kind: 'shadowed', part: 'allow', types: ['ask'], by: 4 },
    ]);
  });

  it('flags a deny that a broader deny already covers', () => {
    expect(
      lintRules(
        parseRules([
          { from: 'a', to: 'vault', deny: ['notify'], intents: ['x'] },
          { from: '*', to: 'vault', deny: ['notify', 'ask'] },
        ]),
      ),
    ).toMatchObject([{ ruleIndex: 0, kind: 'shadowed', part: 'deny', types: ['notify'], by: 1 }]);
  });

  it('only flags parts whose removal changes no decision (property)', () => {
    const requests: PolicyRequest[] = [];
    for (const from of ['a', 'b', 'c', 'd'])
      for (const to of ['a', 'b', 'c', 'd'])
        for (const type of RULE_TYPES)
          for (const intent of ['x', 'y', 'z'])
            for (const trust of [-1, 0, 10, 50]) for (const recipientTrust of [-1, 0, 10, 50]) requests.push({ from, to, type, intent, trust, recipientTrust });
    fc.assert(
      fc.property(fc.array(ruleArb, { maxLength: 10 }), (input) => {
        const rules = parseRules(input);
        const before = new PolicySet(rules, 1);
        const trimmed = rules.map((r) => ({ ...r, allow: [...(r.allow ?? [])], deny: [...(r.deny ?? [])] }));
        for (const lint of lintRules(rules)) {
          if (lint.part === undefined) continue;
          const rule = trimmed[lint.ruleIndex]!;
          rule[lint.part] = rule[lint.part].filter((t) => !lint.types!.includes(t));
        }
        const kept = trimmed
          .map(({ allow, deny, requireApproval, minTrust, minRecipientTrust, ...rest }): PolicyRule => ({
            ...rest,
            ...(allow.length > 0 ? { allow } : {}),
            ...(deny.length > 0 ? { deny } : {}),
            ...(allow.length > 0 && requireApproval !== undefined ? { requireApproval } : {}),
            ...(allow.length > 0 && minTrust !== undefined ? { minTrust } : {}),
            ...(allow.length > 0 && minRecipientTrust !== undefined ? { minRecipientTrust } : {}),
          }))
          .filter((r) => r.allow !== undefined || r.deny !== undefined);
        const after = new PolicySet(parseRules(kept), 1);
        const changed = requests.filter((req) => after.evaluate(req).decision !== before.evaluate(req).decision);
        expect(changed).toEqual([]);
      }),
      { numRuns: 1000 },
    );
  });
});
