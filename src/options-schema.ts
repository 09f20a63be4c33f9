// The one options convention of every factory (`new Orchestrator`, `natsTransport`,
// `approvalServer`, `openApprovalConsole`, `aiTools`, `mcpServer`, `mcpHandlers`,
// `SqliteAuditLog`): one options object, read once through a strict zod schema, so a
// misspelled key is an error that names it, and one wording for every refusal:
// `Invalid <factory> options: unknown key "limts"; limits.maxDepth: Too small: …`.
import { z } from 'zod';
import { BusError, toBusError } from './errors.js';

/**
 * Parses `input` with `schema` (a strict object schema) and returns the parsed copy, so
 * later changes to the caller's object change nothing. Every problem is one
 * `INVALID_ARGUMENT` naming each bad key; an object whose getters throw is refused the same
 * way, never a crash.
 *
 * @example
 * const schema = z.strictObject({ port: z.number().int().min(0).max(65535).optional() });
 * const o = parseOptions(schema, options ?? {}, 'approvalServer');
 */
export function parseOptions<S extends z.ZodType>(schema: S, input: unknown, factory: string): z.output<S> {
  let parsed: ReturnType<S['safeParse']>;
  try {
    parsed = schema.safeParse(input) as ReturnType<S['safeParse']>;
  } catch (error) {
    throw toBusError(error, 'INVALID_ARGUMENT', undefined, `Invalid ${factory} options: cannot read them: `);
  }
  if (!parsed.success) throw optionsError(factory, parsed.error);
  return parsed.data as z.output<S>;
}

/**
 * `schema.safeParse(value)` for a value a caller passed: a getter or a Proxy trap that throws
 * while it is read is an `INVALID_ARGUMENT` (`<what>: cannot read it: …`), never a raw error.
 */
export function safeParseInput<S extends z.ZodType>(schema: S, value: unknown, what: string): z.ZodSafeParseResult<z.output<S>> {
  try {
    return schema.safeParse(value) as z.ZodSafeParseResult<z.output<S>>;
  } catch (error) {
    throw toBusError(error, 'INVALID_ARGUMENT', undefined, `${what}: cannot read it: `);
  }
}

/** The refusal of a factory's options: `Invalid <factory> options: <issues>`. */
export function optionsError(factory: string, error: z.ZodError): BusError {
  return new BusError('INVALID_ARGUMENT', `Invalid ${factory} options: ${formatOptionIssues(error)}`);
}

/** One line per problem, naming the key: `unknown key "limts"`, `limits.maxDepth: …`. */
export function formatOptionIssues(error: z.ZodError): string {
  return error.issues.map((issue) => formatIssue(issue, [])).join('; ');
}

/** One issue as text; a union's issue is explained by its object branch, where a misspelled key shows. */
function formatIssue(issue: z.core.$ZodIssue, prefix: readonly PropertyKey[]): string {
  const path = [...prefix, ...issue.path];
  const at = path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => `"${at === '' ? k : `${at}.${k}`}"`).join(', ');
    return `unknown key ${keys}`;
  }
  if (issue.code === 'invalid_union') {
    // The branch that got furthest (an object branch with a nested problem) says the most.
    const branch = issue.errors.find((branchIssues) => branchIssues.some((i) => i.code === 'unrecognized_keys' || i.path.length > 0));
    if (branch !== undefined) return branch.map((i) => formatIssue(i, path)).join('; ');
  }
  return `${at === '' ? '(options)' : at}: ${issue.message}`;
}

/**
 * A schema for an object the factory calls into (an orchestrator, a stream): it must have
 * each of `methods` as a function. Kept by reference, not copied.
 */
export function objectWith<T>(what: string, ...methods: string[]): z.ZodType<T> {
  return z.custom<T>((value) => {
    if (typeof value !== 'object' || value === null) return false;
    for (const path of methods) {
      let v: unknown = value;
      for (const key of path.split('.')) v = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[key] : undefined;
      if (typeof v !== 'function') return false;
    }
    return true;
  }, `must be ${what}`);
}

/** A function option, kept by reference. */
export function fn<T extends (...args: never[]) => unknown>(): z.ZodType<T> {
  return z.custom<T>((value) => typeof value === 'function', 'must be a function');
}

/**
 * Checks a positional argument (the bus a factory serves) with `schema`:
 * `<factory>(): <name> must be …` as an `INVALID_ARGUMENT`.
 */
export function checkArgument<T>(schema: z.ZodType<T>, value: unknown, factory: string, name: string): T {
  let parsed: z.ZodSafeParseResult<T>;
  try {
    parsed = schema.safeParse(value);
  } catch (error) {
    throw toBusError(error, 'INVALID_ARGUMENT', undefined, `${factory}(): ${name} cannot be read: `);
  }
  if (!parsed.success) throw new BusError('INVALID_ARGUMENT', `${factory}(): ${name} ${parsed.error.issues[0]?.message ?? 'is invalid'}`);
  return parsed.data;
}
