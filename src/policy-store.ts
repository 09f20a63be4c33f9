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

  /**
   * Approvals' `always`: from now on this pair, type and intent is allowed without a human.
   * Adds `from → to allow:[type] intents:[intent]`. That rule sits at the most specific
   * level, where an approval rule naming the same intent would still ask for approval (a
   * level asks if any of its allowing rules does), so such rules are split to leave this
   * type and intent out; everything else they allowed is unchanged.
   */
  allowExactly(envelope: Envelope): number {
    const type = envelope.type as RuleType;
    const { from, to, intent } = envelope;
    const rules: PolicyRule[] = [];
    for (const rule of this.current.rules) {
      const sameLevel = rule.from === from && rule.to === to && rule.intents?.includes(intent) === true;
      if (!(sameLevel && rule.requireApproval === true && rule.allow?.includes(type) === true)) {
        rules.push(rule);
        continue;
      }
      const otherIntents = rule.intents!.filter((i) => i !== intent);
      if (otherIntents.length > 0) rules.push({ ...rule, intents: otherIntents });
      const otherTypes = rule.allow!.filter((t) => t !== type);
      if (otherTypes.length > 0 || rule.deny !== undefined) {
        const { allow: _allow, requireApproval: _approval, minTrust: _trust, minRecipientTrust: _recipientTrust, ...rest } = rule;
        const gates = { ...(rule.minTrust !== undefined ? { minTrust: rule.minTrust } : {}), ...(rule.minRecipientTrust !== undefined ? { minRecipientTrust: rule.minRecipientTrust } : {}) };
        rules.push({ ...rest, intents: [intent], ...(otherTypes.length > 0 ? { allow: otherTypes, requireApproval: true, ...gates } : {}) });
      }
    }
    rules.push({ from, to, allow: [type], intents: [intent] });
    return this.replace(rules);
  }
}
