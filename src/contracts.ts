import { BusError } from './errors.js';
import { RULE_TYPES, type RuleType } from './envelope.js';
import type { StandardSchemaV1 } from './standard-schema.js';

export type { StandardSchemaV1 } from './standard-schema.js';

/**
 * One typed intent: which message type carries it, and the schemas of what crosses.
 * A schema is any Standard Schema (zod 4, valibot, arktype, ...) that validates
 * synchronously.
 */
export interface ContractDef {
  readonly type: RuleType;
  /** Schema of the payload the sender sends. */
  readonly input: StandardSchemaV1;
  /** Schema of the reply (ask and delegate). Omitted: any plain JSON reply. */
  readonly output?: StandardSchemaV1;
}

/** A map from intent to its contract. */
export type Contracts = Readonly<Record<string, ContractDef>>;

/**
 * Declares typed intents. Schemas are any Standard Schema that validates synchronously:
 * zod 4 (types inferred as zod infers them), valibot, arktype and others. Pass the result as `new Orchestrator({ contracts })`: intents,
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
    if (!isSchema(def.input)) throw new BusError('INVALID_ARGUMENT', `contracts.${intent}.input must be a Standard Schema (zod 4, valibot, arktype, ...)`);
    if (def.output !== undefined && !isSchema(def.output)) {
      throw new BusError('INVALID_ARGUMENT', `contracts.${intent}.output must be a Standard Schema (zod 4, valibot, arktype, ...)`);
    }
    if (def.type === 'notify' && def.output !== undefined) {
      throw new BusError('INVALID_ARGUMENT', `contracts.${intent} is a notify: it has no reply, so no output schema`);
    }
  }
  return contracts;
}

function isSchema(value: unknown): value is StandardSchemaV1 {
  // Schema libraries make schemas callable (arktype) as well as plain objects.
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return false;
  const props = (value as Partial<StandardSchemaV1>)['~standard'];
  return typeof props === 'object' && props !== null && props.version === 1 && typeof props.validate === 'function';
}

/** The outcome of {@link validate}: the shape of zod's `safeParse`, so callers read it the same way. */
export type ValidationResult = { readonly success: true; readonly data: unknown } | { readonly success: false; readonly error: { readonly issues: readonly StandardSchemaV1.Issue[] } };

/**
 * Validates `value` against a contract schema, synchronously. The bus decides delivery in
 * the sender's call, so a schema that answers with a promise (an async refinement) cannot
 * be used: that is refused with INVALID_ARGUMENT naming `what`, and the promise is
 * observed so its outcome cannot surface as an unhandled rejection. A schema that throws is
 * refused the same way, with its error as `cause`.
 */
export function validate(schema: StandardSchemaV1, value: unknown, what: string): ValidationResult {
  let result: ReturnType<StandardSchemaV1.Props['validate']>;
  try {
    result = schema['~standard'].validate(value);
  } catch (cause) {
    throw new BusError('INVALID_ARGUMENT', `the schema of ${what} threw instead of validating: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
  if (typeof (result as { then?: unknown }).then === 'function') {
    (result as Promise<unknown>).then(undefined, () => undefined);
    throw new BusError('INVALID_ARGUMENT', `the schema of ${what} validates asynchronously; contract schemas must validate synchronously (drop async refinements)`);
  }
  const r = result as StandardSchemaV1.Result<unknown>;
  return r.issues ? { success: false, error: { issues: r.issues } } : { success: true, data: r.value };
}

/** Formats a validation failure (Standard Schema issues, or a zod error) as one line naming the paths. */
export function describeIssues(error: { readonly issues: readonly StandardSchemaV1.Issue[] }): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => `${pathOf(issue)}: ${issue.message}`)
    .join('; ');
}

function pathOf(issue: StandardSchemaV1.Issue): string {
  const path = issue.path ?? [];
  if (path.length === 0) return '(root)';
  return path.map((segment) => String(typeof segment === 'object' && segment !== null ? segment.key : segment)).join('.');
}

// ---- Type-level helpers: what each intent accepts and returns -------------------------

/** True when no contracts were given: everything is loosely typed. */
type IsLoose<C> = string extends keyof C ? true : false;

/** Intents whose contract is of message type `T`. */
export type IntentsOf<C extends Contracts, T extends RuleType> =
  IsLoose<C> extends true ? string : { [K in keyof C]: C[K]['type'] extends T ? K : never }[keyof C] & string;

/** What the sender passes for intent `K`. */
export type InputOf<C extends Contracts, K> =
  IsLoose<C> extends true ? unknown : K extends keyof C ? StandardSchemaV1.InferInput<C[K]['input']> : unknown;

/**
 * What the handler receives for intent `K`: the schema's input type, since contracts validate
 * but do not transform (the handler gets exactly the JSON that was sent and hashed, so a
 * `.default()` field the sender left out is absent, and a `.transform()` did not run).
 */
export type PayloadOf<C extends Contracts, K> =
  IsLoose<C> extends true ? unknown : K extends keyof C ? StandardSchemaV1.InferInput<C[K]['input']> : unknown;

/** What the handler returns, and the sender receives, for intent `K`: the output schema's input type (a reply is validated, not transformed). */
export type OutputOf<C extends Contracts, K> =
  IsLoose<C> extends true
    ? unknown
    : K extends keyof C
      ? C[K]['output'] extends StandardSchemaV1
        ? StandardSchemaV1.InferInput<C[K]['output']>
        : C[K]['type'] extends 'notify'
          ? void
          : unknown
      : unknown;

/** The loose default: any intent, any payload. */
export type AnyContracts = Record<string, ContractDef>;
