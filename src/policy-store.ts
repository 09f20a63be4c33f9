import type { Envelope, RuleType } from './envelope.js';
import { parseRules, PolicySet, type PolicyRule } from './policy.js';

/**
 * The rule set in force. Replacing it is atomic: a new set is validated in full before it
 * takes over, and each set gets the next version number, which every decision records.
 */
export class PolicyStore {
  current: PolicySet;

  constructor(rules: unknown) {
    this.current = new PolicySet(parseRules(rules), 1);
  }

  /** Validates and installs `rules`; throws (changing nothing) when they are invalid. */
  replace(rules: unknown): number {
    const parsed = parseRules(rules);
    this.current = new PolicySet(parsed, this.current.version + 1);
    return this.current.version;
  }

  /** Adds an allow rule for exactly this pair, type and intent (approvals' `always`). */
  allowExactly(envelope: Envelope): number {
    const rule: PolicyRule = { from: envelope.from, to: envelope.to, allow: [envelope.type as RuleType], intents: [envelope.intent] };
    return this.replace([...this.current.rules, rule]);
  }
}
