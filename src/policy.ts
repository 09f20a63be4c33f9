/**
 * The policy engine: rules, their validation, and evaluation.
 *
 * Default deny. A matching `deny` anywhere wins; otherwise the most specific level with a
 * rule allowing the message decides; otherwise the message is denied. The decision never
 * depends on rule order. See docs/policies.md for the full story.
 */
import { z } from 'zod';
import { RULE_TYPES, type RuleType } from './envelope.js';
import { BusError } from './errors.js';
import { AGENT_ID_PATTERN } from './ids.js';
import { safeParseInput } from './options-schema.js';

/** One policy rule. Build rule sets with {@link parseRules}, which validates them. */
export interface PolicyRule {
  /** The sender: an agent id or `'*'` (any sender). */
  from: string;
  /** The recipient: an agent id or `'*'` (any recipient). */
  to: string;
  /** Types this rule allows. */
  allow?: readonly RuleType[];
  /** Types this rule denies. A matching deny beats every allow. */
  deny?: readonly RuleType[];
  /** When given, the rule (both its allow and deny parts) applies only to these intents. */
  intents?: readonly string[];
  /** Messages this rule allows are held for a human's approval. Only with `allow`. */
  requireApproval?: boolean;
  /** The allow part applies only when the sender's trust is at least this. Only with `allow`. */
  minTrust?: number;
  /**
   * The allow part applies only when the recipient's trust is at least this (its registered
   * `trust`; for another node's agent, the trust this node grants it in `remoteTrust`, 0
   * when unlisted). Only with `allow`. Across nodes both nodes check it, each with its own
   * registry.
   */
  minRecipientTrust?: number;
  /**
   * Messages this rule allows between nodes are sealed: encrypted for the recipient node
   * (payload, reply, progress notes, error text). The sending node seals them; a receiving
   * node whose deciding rule says so refuses one that arrived unsealed. Only with `allow`.
   */
  sealed?: boolean;
  /** A label shown in audit entries and `explain()` instead of the generated one. */
  name?: string;
}

/** What is being asked of the policy: may `from` send `type`/`intent` to `to`? */
export interface PolicyRequest {
  from: string;
  to: string;
  type: RuleType;
  intent: string;
  /** The sender's trust. @default 0 */
  trust?: number;
  /** The recipient's trust, for rules with `minRecipientTrust`. @default 0 */
  recipientTrust?: number;
}

/** The outcome of {@link PolicySet.evaluate}. Decisions are frozen and may be shared. */
export interface PolicyDecision {
  decision: 'allow' | 'deny' | 'approval';
  /**
   * The deciding rule: the deny rule that matched, or an allowing rule of the deciding
   * level (one with `requireApproval` when the decision is `'approval'`). Absent on a
   * default deny.
   */
  rule?: PolicyRule;
  /** `ruleLabel(rule)`, when there is a rule. */
  ruleLabel?: string;
  /** Human readable, e.g. `denied by rule '* -> vault deny:notify'`. */
  reason: string;
  /** The version of the rule set that decided. */
  policyVersion: number;
  /** True when an allowing rule of the deciding level says `sealed` (messages across nodes are encrypted). */
  sealed?: boolean;
}

/** A remark about a rule set that is valid but probably not what its author meant. */
export interface PolicyLint {
  /** The rule's position in the array given to {@link lintRules}. */
  ruleIndex: number;
  /**
   * `shadowed`: the part never changes a decision because another rule (or a deny)
   * already settles every message it matches. `never-matches`: the part can never apply.
   */
  kind: 'shadowed' | 'never-matches';
  message: string;
  /** Which part of the rule is concerned; absent when it is the whole rule. */
  part?: 'allow' | 'deny';
  /** The types of that part that are concerned. */
  types?: readonly RuleType[];
  /** The index of the rule that shadows this one, when there is one. */
  by?: number;
}

const WILDCARD = '*';
const RULE_KEYS = ['from', 'to', 'allow', 'deny', 'intents', 'requireApproval', 'minTrust', 'minRecipientTrust', 'sealed', 'name'] as const;
const MAX_TEXT = 128;

// ---------------------------------------------------------------------------------------
// Validation

/** A short description of a value for error messages (never dumps a whole object). */
function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (value === undefined) return 'undefined';
  return `${typeof value} ${String(value)}`;
}

/** A near miss for an unknown key: same letters ignoring case, or one edit away. */
function suggestKey(key: string): string | undefined {
  const lower = key.toLowerCase();
  for (const known of RULE_KEYS) {
    if (known.toLowerCase() === lower || editDistanceAtMostOne(lower, known.toLowerCase())) return known;
  }
  return undefined;
}

function editDistanceAtMostOne(a: string, b: string): boolean {
  if (Math.abs(a.length - b.length) > 1) return false;
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  if (a.length === b.length) return a.slice(i + 1) === b.slice(i + 1);
  return a.length > b.length ? a.slice(i + 1) === b.slice(i) : a.slice(i) === b.slice(i + 1);
}

/** Issues that compare keys of one rule; dropped when that rule has a plainer problem. */
const CROSS_FIELD = 'crossField';

const partySchema = z
  .string({ error: (iss) => (iss.input === undefined ? 'is required' : `expected an agent id or '*', got ${show(iss.input)}`) })
  .refine((v) => v === WILDCARD || AGENT_ID_PATTERN.test(v), {
    error: (iss) => {
      const v = String(iss.input);
      return v.includes(WILDCARD)
        ? `${show(v)}: '*' is only allowed alone, meaning any agent`
        : `${show(v)} is not an agent id (a letter or digit, then up to 127 of A-Z a-z 0-9 . _ : -) or '*'`;
    },
  });

const ruleTypeSchema = z.enum(RULE_TYPES, {
  error: (iss) =>
    iss.input === 'reply'
      ? `"reply" is not a rule type (replies need no rule)`
      : `${show(iss.input)} is not a rule type (expected "ask", "delegate" or "notify")`,
});

function noDuplicates(items: readonly string[], ctx: z.RefinementCtx<readonly string[]>): void {
  items.forEach((item, i) => {
    if (items.indexOf(item) !== i) ctx.addIssue({ code: 'custom', message: `${show(item)} is listed twice`, path: [i] });
  });
}

const typeListSchema = z
  .array(ruleTypeSchema, { error: (iss) => `expected an array of rule types, got ${show(iss.input)}` })
  .min(1, { error: 'must list at least one type' })
  .superRefine(noDuplicates);

const intentSchema = z
  .string({ error: (iss) => `expected an intent string, got ${show(iss.input)}` })
  .min(1, { error: 'an intent must not be empty' })
  .max(MAX_TEXT, { error: `an intent is at most ${MAX_TEXT} characters` })
  .refine((v) => v !== WILDCARD, { error: `'*' is not an intent; leave out "intents" to match every intent` });

const ruleSchema = z
  .strictObject(
    {
      from: partySchema,
      to: partySchema,
      allow: typeListSchema.optional(),
      deny: typeListSchema.optional(),
      intents: z
        .array(intentSchema, { error: (iss) => `expected an array of intents, got ${show(iss.input)}` })
        .min(1, { error: 'must list at least one intent (leave it out to match every intent)' })
        .superRefine(noDuplicates)
        .optional(),
      requireApproval: z.boolean({ error: (iss) => `expected true or false, got ${show(iss.input)}` }).optional(),
      minTrust: z.number({ error: (iss) => `expected a finite number, got ${show(iss.input)}` }).optional(),
      minRecipientTrust: z.number({ error: (iss) => `expected a finite number, got ${show(iss.input)}` }).optional(),
      sealed: z.boolean({ error: (iss) => `expected true or false, got ${show(iss.input)}` }).optional(),
      name: z
        .string({ error: (iss) => `expected a string, got ${show(iss.input)}` })
        .min(1, { error: 'must not be empty' })
        .max(MAX_TEXT, { error: `is at most ${MAX_TEXT} characters` })
        .optional(),
    },
    {
      error: (iss) => {
        if (iss.code === 'unrecognized_keys') {
          return iss.keys
            .map((key) => {
              const near = suggestKey(key);
              return `unknown key ${JSON.stringify(key)}${near === undefined ? '' : ` (did you mean "${near}"?)`}`;
            })
            .join(', ');
        }
        return `expected a rule object, got ${show(iss.input)}`;
      },
    },
  )
  .superRefine((rule, ctx) => {
    if (rule.allow === undefined && rule.deny === undefined) {
      ctx.addIssue({ code: 'custom', message: 'a rule needs "allow" or "deny"', params: { [CROSS_FIELD]: true } });
    }
    if (rule.allow === undefined) {
      for (const key of ['requireApproval', 'minTrust', 'minRecipientTrust', 'sealed'] as const) {
        if (rule[key] !== undefined) {
          ctx.addIssue({
            code: 'custom',
            message: `only applies to allowed types, and this rule has no "allow"`,
            path: [key],
            params: { [CROSS_FIELD]: true },
          });
        }
      }
    }
  });

const rulesSchema = z.array(ruleSchema, { error: (iss) => `expected an array of rules, got ${show(iss.input)}` });

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
}

const MAX_REPORTED = 5;

function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  // A rule with a plain problem (a typo, a bad type) also tends to fail the cross-field
  // checks; those would only be noise next to the real cause.
  const crossField = (i: z.core.$ZodIssue): boolean => i.code === 'custom' && i.params?.[CROSS_FIELD] === true;
  const plain = new Set(issues.filter((i) => !crossField(i)).map((i) => i.path[0]));
  const kept = issues.filter((i) => !crossField(i) || !plain.has(i.path[0]));
  const lines = kept.slice(0, MAX_REPORTED).map((i) => `policies${formatPath(i.path)}: ${i.message}`);
  if (kept.length > MAX_REPORTED) lines.push(`and ${kept.length - MAX_REPORTED} more`);
  return `invalid policy rules: ${lines.join('; ')}`;
}

function freezeList<T>(list: readonly T[] | undefined): readonly T[] | undefined {
  return list === undefined ? undefined : Object.freeze([...list]);
}

/**
 * Validates a rule set strictly and returns deep-frozen copies of its rules.
 *
 * Throws `BusError('INVALID_ARGUMENT')` naming every problem by position, e.g.
 * `policies[2]: unknown key "alow" (did you mean "allow"?)` or
 * `policies[0].allow[1]: "reply" is not a rule type (replies need no rule)`.
 *
 * @example
 * const rules = parseRules([{ from: 'research', to: 'writer', allow: ['delegate', 'notify'] }]);
 */
export function parseRules(input: unknown): PolicyRule[] {
  const result = safeParseInput(rulesSchema, input, 'policy rules');
  if (!result.success) throw new BusError('INVALID_ARGUMENT', formatIssues(result.error.issues));
  return result.data.map((r) => {
    // Built key by key so absent keys stay absent (exactOptionalPropertyTypes) and the
    // order is canonical.
    const rule: PolicyRule = { from: r.from, to: r.to };
    const allow = freezeList(r.allow);
    const deny = freezeList(r.deny);
    const intents = freezeList(r.intents);
    if (allow !== undefined) rule.allow = allow;
    if (deny !== undefined) rule.deny = deny;
    if (intents !== undefined) rule.intents = intents;
    if (r.requireApproval !== undefined) rule.requireApproval = r.requireApproval;
    // -0 and 0 gate identically; keep one spelling so equal rules compare equal.
    if (r.minTrust !== undefined) rule.minTrust = r.minTrust === 0 ? 0 : r.minTrust;
    if (r.minRecipientTrust !== undefined) rule.minRecipientTrust = r.minRecipientTrust === 0 ? 0 : r.minRecipientTrust;
    if (r.sealed !== undefined) rule.sealed = r.sealed;
    if (r.name !== undefined) rule.name = r.name;
    return Object.freeze(rule);
  });
}

/**
 * The rule's `name`, or else a compact description of it, e.g.
 * `research -> writer allow:delegate,notify intents:clarify approval minTrust:85`.
 */
export function ruleLabel(rule: PolicyRule): string {
  if (rule.name !== undefined) return rule.name;
  let label = `${rule.from} -> ${rule.to}`;
  if (rule.allow !== undefined) label += ` allow:${rule.allow.join(',')}`;
  if (rule.deny !== undefined) label += ` deny:${rule.deny.join(',')}`;
  if (rule.intents !== undefined) label += ` intents:${rule.intents.join(',')}`;
  if (rule.requireApproval === true) label += ' approval';
  if (rule.minTrust !== undefined) label += ` minTrust:${rule.minTrust}`;
  if (rule.minRecipientTrust !== undefined) label += ` minRecipientTrust:${rule.minRecipientTrust}`;
  if (rule.sealed === true) label += ' sealed';
  return label;
}

// ---------------------------------------------------------------------------------------
// Evaluation

/**
 * The canonical order among rules, used to pick the reported rule when several decide
 * together: by label, then by full content. Two rules that tie are identical in content,
 * so which one is reported cannot be told apart: shuffling the set never changes it.
 */
function canonicalKey(rule: PolicyRule): string {
  return JSON.stringify([
    ruleLabel(rule),
    rule.from,
    rule.to,
    rule.allow ?? null,
    rule.deny ?? null,
    rule.intents ?? null,
    rule.requireApproval ?? null,
    rule.minTrust ?? null,
    rule.minRecipientTrust ?? null,
    rule.sealed ?? null,
    rule.name ?? null,
  ]);
}

/**
 * The allowing rules of one level for one type, compiled for any trust: `gates` are the
 * distinct `minTrust` values ascending (-Infinity for ungated rules), and `decisions[i]`
 * is the decision for a trust in [gates[i], gates[i + 1]).
 *
 * When a rule of the group has `minRecipientTrust`, the group is a table instead:
 * `recipientGates` are the distinct recipient gates ascending, and `table[i][j]` is the
 * decision for a sender trust in [gates[i], gates[i + 1]) and a recipient trust in
 * [recipientGates[j], recipientGates[j + 1]), undefined where no rule of the group applies.
 */
interface AllowGroup {
  readonly gates: readonly number[];
  readonly decisions: readonly PolicyDecision[];
  readonly recipientGates?: readonly number[];
  readonly table?: readonly (readonly (PolicyDecision | undefined)[])[];
  /** The group's rules (table groups only): a default deny names the gate they missed. */
  readonly rules?: readonly PolicyRule[];
}

/** One level (a from/to pair, one intent or any intent) for one type. */
interface Slot {
  deny: PolicyDecision | undefined;
  allow: AllowGroup | undefined;
}

/** One from/to pair for one type: its intent-naming levels and its any-intent level. */
interface Cell {
  readonly any: Slot | undefined;
  readonly byIntent: ReadonlyMap<string, Slot> | undefined;
  readonly hasDeny: boolean;
}

type Index = ReadonlyMap<string, ReadonlyMap<string, ReadonlyMap<string, Cell>>>;

/** Where a rule sits while the index is built. */
interface SlotDraft {
  denies: PolicyRule[];
  allows: PolicyRule[];
}
interface CellDraft {
  any: SlotDraft | undefined;
  byIntent: Map<string, SlotDraft> | undefined;
}

function gateOf(rule: PolicyRule): number {
  return rule.minTrust ?? Number.NEGATIVE_INFINITY;
}

function recipientGateOf(rule: PolicyRule): number {
  return rule.minRecipientTrust ?? Number.NEGATIVE_INFINITY;
}

/** The index of the last gate at or below `trust`, -1 when none is. */
function lastReached(gates: readonly number[], trust: number): number {
  let i = -1;
  while (i + 1 < gates.length && (gates[i + 1] as number) <= trust) i++;
  return i;
}

function denyIn(cell: Cell | undefined, intent: string): PolicyDecision | undefined {
  if (cell === undefined || !cell.hasDeny) return undefined;
  return cell.byIntent?.get(intent)?.deny ?? cell.any?.deny;
}

function allowedBy(group: AllowGroup | undefined, trust: number, recipientTrust: number): PolicyDecision | undefined {
  if (group === undefined) return undefined;
  const { gates, decisions, table } = group;
  if (table !== undefined) {
    const i = lastReached(gates, trust);
    const j = lastReached(group.recipientGates!, recipientTrust);
    return i < 0 || j < 0 ? undefined : table[i]![j];
  }
  // Usually one gate; a linear walk beats a binary search at these sizes.
  let found: PolicyDecision | undefined;
  for (let i = 0; i < gates.length && (gates[i] as number) <= trust; i++) found = decisions[i];
  return found;
}

function allowIn(cell: Cell | undefined, intent: string, trust: number, recipientTrust: number): PolicyDecision | undefined {
  if (cell === undefined) return undefined;
  return allowedBy(cell.byIntent?.get(intent)?.allow, trust, recipientTrust) ?? allowedBy(cell.any?.allow, trust, recipientTrust);
}

/** A trust from the request: 0 when absent; NaN passes no gate (but ungated rules still apply). */
function trustOf(raw: number | undefined): number {
  const t = raw ?? 0;
  return t === t ? t : Number.NEGATIVE_INFINITY;
}

/**
 * An immutable, indexed rule set. `evaluate()` does a handful of Map lookups, whatever
 * the number of rules; decisions are precomputed and shared.
 *
 * @example
 * const set = new PolicySet(parseRules(rules), 1);
 * set.evaluate({ from: 'research', to: 'writer', type: 'delegate', intent: 'summarize' });
 * // { decision: 'allow', rule: {...}, ruleLabel: 'research -> writer allow:delegate,notify', ... }
 */
export class PolicySet {
  /** Recorded with every decision this set makes. */
  readonly version: number;
  /** The rules, as given (a frozen array). */
  readonly rules: readonly PolicyRule[];
  readonly #index: Index;
  readonly #keys = new Map<PolicyRule, string>();
  /** Whether any rule has a trust gate: only then can a default deny name one. */
  readonly #gated: boolean;

  /**
   * @param rules Rules from {@link parseRules}: they are not validated again, and must not
   *   change afterwards (parseRules returns frozen ones).
   * @param version The number recorded with every decision.
   */
  constructor(rules: readonly PolicyRule[], version: number) {
    this.version = version;
    this.rules = Object.freeze([...rules]);
    for (const rule of this.rules) if (!this.#keys.has(rule)) this.#keys.set(rule, canonicalKey(rule));
    this.#index = this.#build();
    this.#gated = this.rules.some((r) => r.minTrust !== undefined || r.minRecipientTrust !== undefined);
  }

  /** The decision for one message. Never throws; an unknown type is simply denied. */
  evaluate(req: PolicyRequest): PolicyDecision {
    const byFrom = this.#index.get(req.type);
    if (byFrom !== undefined) {
      const { to, intent } = req;
      const exact = byFrom.get(req.from);
      const star = byFrom.get(WILDCARD);
      // The four from/to pairs, most specific first; each holds two levels.
      const c0 = exact?.get(to);
      const c1 = exact?.get(WILDCARD);
      const c2 = star?.get(to);
      const c3 = star?.get(WILDCARD);
      const denied = denyIn(c0, intent) ?? denyIn(c1, intent) ?? denyIn(c2, intent) ?? denyIn(c3, intent);
      if (denied !== undefined) return denied;
      const trust = trustOf(req.trust);
      const rt = trustOf(req.recipientTrust);
      const allowed = allowIn(c0, intent, trust, rt) ?? allowIn(c1, intent, trust, rt) ?? allowIn(c2, intent, trust, rt) ?? allowIn(c3, intent, trust, rt);
      if (allowed !== undefined) return allowed;
    }
    return this.#defaultDeny(req);
  }

  #compare = (a: PolicyRule, b: PolicyRule): number => {
    const ka = this.#keys.get(a) as string;
    const kb = this.#keys.get(b) as string;
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  };

  #decision(decision: PolicyDecision['decision'], rule: PolicyRule, verb: string): PolicyDecision {
    const label = ruleLabel(rule);
    return Object.freeze({
      decision,
      rule,
      ruleLabel: label,
      reason: `${verb} by rule '${label}'`,
      policyVersion: this.version,
    });
  }

  #build(): Index {
    const drafts = new Map<string, Map<string, Map<string, CellDraft>>>();
    const slotFor = (type: string, rule: PolicyRule, intent: string | undefined): SlotDraft => {
      let byFrom = drafts.get(type);
      if (byFrom === undefined) drafts.set(type, (byFrom = new Map()));
      let byTo = byFrom.get(rule.from);
      if (byTo === undefined) byFrom.set(rule.from, (byTo = new Map()));
      let cell = byTo.get(rule.to);
      if (cell === undefined) byTo.set(rule.to, (cell = { any: undefined, byIntent: undefined }));
      if (intent === undefined) return (cell.any ??= { denies: [], allows: [] });
      cell.byIntent ??= new Map();
      let slot = cell.byIntent.get(intent);
      if (slot === undefined) cell.byIntent.set(intent, (slot = { denies: [], allows: [] }));
      return slot;
    };
    for (const rule of this.rules) {
      const intents: readonly (string | undefined)[] = rule.intents ?? [undefined];
      for (const intent of intents) {
        for (const type of rule.deny ?? []) slotFor(type, rule, intent).denies.push(rule);
        for (const type of rule.allow ?? []) slotFor(type, rule, intent).allows.push(rule);
      }
    }

    const index = new Map<string, Map<string, Map<string, Cell>>>();
    for (const [type, byFromDraft] of drafts) {
      const byFrom = new Map<string, Map<string, Cell>>();
      index.set(type, byFrom);
      for (const [from, byToDraft] of byFromDraft) {
        const byTo = new Map<string, Cell>();
        byFrom.set(from, byTo);
        for (const [to, draft] of byToDraft) {
          const any = draft.any === undefined ? undefined : this.#compileSlot(draft.any);
          let byIntent: Map<string, Slot> | undefined;
          let hasDeny = any?.deny !== undefined;
          if (draft.byIntent !== undefined) {
            byIntent = new Map();
            for (const [intent, slotDraft] of draft.byIntent) {
              const slot = this.#compileSlot(slotDraft);
              hasDeny ||= slot.deny !== undefined;
              byIntent.set(intent, slot);
            }
          }
          byTo.set(to, { any, byIntent, hasDeny });
        }
      }
    }
    return index;
  }

  #compileSlot(draft: SlotDraft): Slot {
    const denies = [...draft.denies].sort(this.#compare);
    return {
      deny: denies[0] === undefined ? undefined : this.#decision('deny', denies[0], 'denied'),
      allow: draft.allows.length === 0 ? undefined : this.#compileAllows(draft.allows),
    };
  }

  /**
   * For each trust threshold, the decision of the rules it admits: approval if any of
   * them asks for it (reporting the canonically first such rule), else allow (reporting
   * the canonically first rule).
   */
  #compileAllows(rules: readonly PolicyRule[]): AllowGroup {
    if (rules.some((r) => r.minRecipientTrust !== undefined)) return this.#compileTable(rules);
    const sorted = [...rules].sort((a, b) => gateOf(a) - gateOf(b) || this.#compare(a, b));
    const gates: number[] = [];
    const decisions: PolicyDecision[] = [];
    let first: PolicyRule | undefined;
    let firstApproval: PolicyRule | undefined;
    let sealed = false;
    sorted.forEach((rule, i) => {
      if (first === undefined || this.#compare(rule, first) < 0) first = rule;
      // Sealing, like approval, is required when any rule admitted at this trust asks for it.
      if (rule.sealed === true) sealed = true;
      if (rule.requireApproval === true && (firstApproval === undefined || this.#compare(rule, firstApproval) < 0)) {
        firstApproval = rule;
      }
      const next = sorted[i + 1];
      if (next !== undefined && gateOf(next) === gateOf(rule)) return;
      gates.push(gateOf(rule));
      const decided = firstApproval !== undefined ? this.#decision('approval', firstApproval, 'approval required') : this.#decision('allow', first, 'allowed');
      decisions.push(sealed ? Object.freeze({ ...decided, sealed: true }) : decided);
    });
    return { gates, decisions };
  }

  /**
   * A group with recipient gates: for each pair of a sender gate and a recipient gate, the
   * decision of the rules both reach (as in {@link #compileAllows}), or undefined.
   */
  #compileTable(rules: readonly PolicyRule[]): AllowGroup {
    const distinct = (gates: number[]): number[] => [...new Set(gates)].sort((a, b) => a - b);
    const gates = distinct(rules.map(gateOf));
    const recipientGates = distinct(rules.map(recipientGateOf));
    const sorted = [...rules].sort(this.#compare);
    const table = gates.map((g) =>
      recipientGates.map((rg) => {
        const applying = sorted.filter((r) => gateOf(r) <= g && recipientGateOf(r) <= rg);
        if (applying.length === 0) return undefined;
        const approval = applying.find((r) => r.requireApproval === true);
        const decided = approval !== undefined ? this.#decision('approval', approval, 'approval required') : this.#decision('allow', applying[0]!, 'allowed');
        return applying.some((r) => r.sealed === true) ? Object.freeze({ ...decided, sealed: true }) : decided;
      }),
    );
    return { gates, decisions: [], recipientGates, table, rules: sorted };
  }

  /** The slow path: say why nothing allowed it, naming a trust gate that was not reached. */
  #defaultDeny(req: PolicyRequest): PolicyDecision {
    const { from, to, type, intent } = req;
    let reason = `no rule allows ${from} -> ${to} ${type} '${intent}' (default deny)`;
    const byFrom = this.#gated ? this.#index.get(type) : undefined;
    if (byFrom === undefined) return { decision: 'deny', reason, policyVersion: this.version };
    const trust = req.trust ?? 0;
    const recipientTrust = req.recipientTrust ?? 0;
    const cells = [
      byFrom.get(from)?.get(to),
      byFrom.get(from)?.get(WILDCARD),
      byFrom.get(WILDCARD)?.get(to),
      byFrom.get(WILDCARD)?.get(WILDCARD),
    ];
    search: for (const cell of cells) {
      for (const group of [cell?.byIntent?.get(intent)?.allow, cell?.any?.allow]) {
        if (group?.rules !== undefined) {
          // Every rule of the group missed a gate (else it would have decided): name the first's.
          const rule = group.rules[0]!;
          const gate = gateOf(rule);
          const what = trust >= gate ? `recipient trust >= ${recipientGateOf(rule)}` : `trust >= ${gate}`;
          reason = `no rule allows ${from} -> ${to} ${type} '${intent}' at trust ${trust}, recipient trust ${recipientTrust} (default deny; rule '${ruleLabel(rule)}' needs ${what})`;
          break search;
        }
        const gate = group?.gates[0];
        if (gate !== undefined && !(trust >= gate)) {
          const rule = group?.decisions[0]?.rule;
          if (rule !== undefined) {
            reason = `no rule allows ${from} -> ${to} ${type} '${intent}' at trust ${trust} (default deny; rule '${ruleLabel(rule)}' needs trust >= ${gate})`;
          }
          break search;
        }
      }
    }
    return { decision: 'deny', reason, policyVersion: this.version };
  }
}

// ---------------------------------------------------------------------------------------
// Lint

function covers(outer: string, inner: string): boolean {
  return outer === WILDCARD || outer === inner;
}

/** True when `outer` applies to every intent `inner` applies to. */
function intentsCover(outer: readonly string[] | undefined, inner: readonly string[] | undefined): boolean {
  if (outer === undefined) return true;
  return inner !== undefined && inner.every((i) => outer.includes(i));
}

/** True when deny rule `d` denies `type` for every message rule `r` matches. */
function denyCovers(d: PolicyRule, r: PolicyRule, type: RuleType): boolean {
  return (
    d.deny?.includes(type) === true && covers(d.from, r.from) && covers(d.to, r.to) && intentsCover(d.intents, r.intents)
  );
}

/**
 * True when allow rule `s` sits at the same level as `r` and allows `type` (with approval
 * if `r` asks for it) for every message and trust `r` does.
 */
function allowCovers(s: PolicyRule, r: PolicyRule, type: RuleType): boolean {
  return (
    s.allow?.includes(type) === true &&
    s.from === r.from &&
    s.to === r.to &&
    (s.intents === undefined) === (r.intents === undefined) &&
    intentsCover(s.intents, r.intents) &&
    gateOf(s) <= gateOf(r) &&
    recipientGateOf(s) <= recipientGateOf(r) &&
    (r.requireApproval !== true || s.requireApproval === true)
  );
}

/**
 * Finds rules (or parts of rules) that can be deleted without changing any decision, and
 * rules that can never apply. Reports, sorted by rule index:
 * - `never-matches`, whole rule: `from` and `to` name the same agent (self-messages are
 *   refused before the policy is asked);
 * - `never-matches`, allow part: the rule denies the same types it allows;
 * - `shadowed`, allow part: a deny rule denies those types for every message it matches,
 *   or another rule of the same level already allows them for every message and trust
 *   (and asks for approval if this one does);
 * - `shadowed`, deny part: another deny rule already denies those types for every
 *   message this one matches.
 *
 * Of two rules that shadow each other (duplicates), only the later one is reported, so
 * deleting every reported part at once is safe.
 */
export function lintRules(rules: readonly PolicyRule[]): PolicyLint[] {
  const out: PolicyLint[] = [];
  const at = (j: number): string => `'${ruleLabel(rules[j] as PolicyRule)}' (policies[${j}])`;
  // "j settles everything i does": strictly, or as a duplicate that comes earlier.
  const beats = (j: number, i: number, cover: (a: PolicyRule, b: PolicyRule) => boolean): boolean => {
    const a = rules[j] as PolicyRule;
    const b = rules[i] as PolicyRule;
    return j !== i && cover(a, b) && (j < i || !cover(b, a));
  };
  const group = (
    i: number,
    kind: PolicyLint['kind'],
    part: 'allow' | 'deny',
    found: Map<number, RuleType[]>,
    say: (types: string, j: number) => string,
  ): void => {
    for (const [j, types] of found) {
      out.push({ ruleIndex: i, kind, part, types: Object.freeze(types), by: j, message: say(`${part}:${types.join(',')}`, j) });
    }
  };

  rules.forEach((rule, i) => {
    if (rule.from !== WILDCARD && rule.from === rule.to) {
      out.push({
        ruleIndex: i,
        kind: 'never-matches',
        message: `policies[${i}] '${ruleLabel(rule)}': from and to are the same agent, and messages to oneself are always refused`,
      });
      return;
    }

    const selfDenied: RuleType[] = [];
    const deniedBy = new Map<number, RuleType[]>();
    const coveredBy = new Map<number, RuleType[]>();
    for (const type of rule.allow ?? []) {
      if (rule.deny?.includes(type) === true) {
        selfDenied.push(type);
        continue;
      }
      const d = rules.findIndex((other) => denyCovers(other, rule, type));
      if (d !== -1) {
        push(deniedBy, d, type);
        continue;
      }
      const s = rules.findIndex((_, j) => beats(j, i, (a, b) => allowCovers(a, b, type)));
      if (s !== -1) push(coveredBy, s, type);
    }
    if (selfDenied.length > 0) {
      out.push({
        ruleIndex: i,
        kind: 'never-matches',
        part: 'allow',
        types: Object.freeze(selfDenied),
        message: `policies[${i}] '${ruleLabel(rule)}': allow:${selfDenied.join(',')} is also denied by the same rule, and a deny always wins`,
      });
    }
    group(i, 'shadowed', 'allow', deniedBy, (what, j) => `policies[${i}] '${ruleLabel(rule)}': ${what} never applies, because rule ${at(j)} denies it for every message this rule matches`);
    group(i, 'shadowed', 'allow', coveredBy, (what, j) => `policies[${i}] '${ruleLabel(rule)}': ${what} changes nothing, because rule ${at(j)} at the same level already allows it for every message and trust this rule does`);

    const redundant = new Map<number, RuleType[]>();
    for (const type of rule.deny ?? []) {
      const d = rules.findIndex((_, j) => beats(j, i, (a, b) => denyCovers(a, b, type)));
      if (d !== -1) push(redundant, d, type);
    }
    group(i, 'shadowed', 'deny', redundant, (what, j) => `policies[${i}] '${ruleLabel(rule)}': ${what} changes nothing, because rule ${at(j)} already denies it for every message this rule matches`);
  });
  return out;
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}
