import type { z } from 'zod';
import { BusError } from './errors.js';
import { RULE_TYPES, type RuleType } from './envelope.js';

/** One typed intent: which message type carries it, and the schemas of what crosses. */
export interface ContractDef {
  readonly type: RuleType;
  /** Schema of the payload the sender sends. */
  readonly input: z.ZodType;
  /** Schema of the reply (ask and delegate). Omitted: any plain JSON reply. */
  readonly output?: z.ZodType;
}

/** A map from intent to its contract. */
export type Contracts = Readonly<Record<string, ContractDef>>;

/**
 * Declares typed intents. Pass the result as `new Orchestrator({ contracts })`: intents,
 * payloads, handler arguments and results are then inferred, and checked at run time
 * (bad input is the sender's INVALID_PAYLOAD, bad output the handler's HANDLER_FAILED).
 *
 * Contracts validate; they do not transform. The recipient gets exactly the JSON the
 * sender sent (the bytes that were hashed into the audit log), so avoid `.transform()`
 * and `.default()` in contract schemas.
 *
 * @example
 * const contracts = defineContracts({
 *   summarize: { type: 'delegate', input: z.object({ task: z.string() }), output: z.object({ summary: z.string() }) },
 *   found: { type: 'notify', input: z.object({ url: z.url() }) },
 * });
 */
export function defineContracts<const C extends Record<string, ContractDef>>(contracts: C): C {
  if (typeof contracts !== 'object' || contracts === null) {
    throw new BusError('INVALID_ARGUMENT', 'defineContracts() takes an object mapping intents to contracts');
  }
  for (const [intent, def] of Object.entries(contracts)) {
    if (intent === '' || intent === '*') throw new BusError('INVALID_ARGUMENT', `contract intent "${intent}" is not a valid intent`);
    if (typeof def !== 'object' || def === null) throw new BusError('INVALID_ARGUMENT', `contracts.${intent} must be an object`);
    if (!RULE_TYPES.includes(def.type)) {
      throw new BusError('INVALID_ARGUMENT', `contracts.${intent}.type must be one of ${RULE_TYPES.join(', ')}, got ${JSON.stringify(def.type)}`);
    }
    if (!isSchema(def.input)) throw new BusError('INVALID_ARGUMENT', `contracts.${intent}.input must be a zod schema`);
    if (def.output !== undefined && !isSchema(def.output)) throw new BusError('INVALID_ARGUMENT', `contracts.${intent}.output must be a zod schema`);
    if (def.type === 'notify' && def.output !== undefined) {
      throw new BusError('INVALID_ARGUMENT', `contracts.${intent} is a notify: it has no reply, so no output schema`);
    }
  }
  return contracts;
}

function isSchema(value: unknown): value is z.ZodType {
  return typeof value === 'object' && value !== null && typeof (value as { safeParse?: unknown }).safeParse === 'function';
}

/** Formats a zod failure as one line naming the paths. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`)
    .join('; ');
}

// ---- Type-level helpers: what each intent accepts and returns -------------------------

/** True when no contracts were given: everything is loosely typed. */
type IsLoose<C> = string extends keyof C ? true : false;

/** Intents whose contract is of message type `T`. */
export type IntentsOf<C extends Contracts, T extends RuleType> =
  IsLoose<C> extends true ? string : { [K in keyof C]: C[K]['type'] extends T ? K : never }[keyof C] & string;

/** What the sender passes for intent `K`. */
export type InputOf<C extends Contracts, K> =
  IsLoose<C> extends true ? unknown : K extends keyof C ? z.input<C[K]['input']> : unknown;

/** What the handler receives for intent `K`. */
export type PayloadOf<C extends Contracts, K> =
  IsLoose<C> extends true ? unknown : K extends keyof C ? z.output<C[K]['input']> : unknown;

/** What the handler returns, and the sender receives, for intent `K`. */
export type OutputOf<C extends Contracts, K> =
  IsLoose<C> extends true
    ? unknown
    : K extends keyof C
      ? C[K]['output'] extends z.ZodType
        ? z.output<C[K]['output']>
        : C[K]['type'] extends 'notify'
          ? void
          : unknown
      : unknown;

/** The loose default: any intent, any payload. */
export type AnyContracts = Record<string, ContractDef>;
