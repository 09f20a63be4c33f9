// How bad values and thrown values are put into error messages: short, safe, never a stack.

/** Longest error or reason text that crosses between agents. */
export const MAX_TEXT_LENGTH = 1000;

/** A short, safe description of a bad value for error messages (never throws, even on a revoked Proxy). */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
  if (value === null || typeof value !== 'object') return typeof value === 'function' ? 'a function' : String(value);
  try {
    return Array.isArray(value) ? 'an array' : 'an object';
  } catch {
    return 'a revoked proxy';
  }
}

/** The message of a thrown value, never its stack: only the message crosses agents. */
export function errorText(error: unknown): string {
  let text: string;
  try {
    text = error instanceof Error ? String(error.message) : typeof error === 'string' ? error : describe(error);
  } catch {
    text = 'a thrown value that could not be read'; // a getter or a revoked Proxy threw
  }
  return text.length > MAX_TEXT_LENGTH ? `${text.slice(0, MAX_TEXT_LENGTH)}…` : text;
}

/** "an ask", "a delegate", "a notify". */
export function article(type: string): string {
  return `${type === 'ask' ? 'an' : 'a'} ${type}`;
}

export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}
