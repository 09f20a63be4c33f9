/**
 * An agent id: a letter or digit, then up to 127 letters, digits, `.`, `_`, `:` or `-`.
 * `*` never matches: it is the wildcard in policy rules, not an id.
 */
export const AGENT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/**
 * True when `value` is a string that is a valid agent id.
 *
 * @example
 * isAgentId('writer') // true
 * isAgentId('*')      // false
 */
export function isAgentId(value: unknown): value is string {
  return typeof value === 'string' && AGENT_ID_PATTERN.test(value);
}
