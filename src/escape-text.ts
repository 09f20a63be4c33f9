/**
 * The one function that makes agent-controlled text safe to show on a terminal or a page.
 *
 * An intent, a reason, an error message or a payload string is the agent's: shown raw, an
 * ESC (or C1 CSI) starts an escape sequence that the operator's terminal runs (colours that
 * fake a status, OSC 8 hyperlinks, a cleared screen, a retitled window), and a
 * bidirectional control reorders what follows it (an intent that reads `approve` but is
 * not). {@link escapeText} shows each such character as visible text instead.
 */

// C0 controls, DEL, C1 controls; the bidirectional controls (LRM, RLM, ALM, the embeddings
// and overrides, the isolates); the line and paragraph separators, which break lines.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
// eslint-disable-next-line no-control-regex
const UNSAFE_ONE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/**
 * `text` with every control character (C0, DEL, C1: ESC and CSI included, so no escape
 * sequence survives), bidirectional control (U+061C, U+200E/F, U+202A–202E, U+2066–2069)
 * and line or paragraph separator (U+2028/9) shown as `\xHH` or `\uHHHH`. Everything else,
 * other scripts and emoji included, is unchanged.
 *
 * Self-contained (no outer names), so the web page runs this very function's source.
 *
 * @example
 * escapeText('\u001b]8;;https://evil.example\u0007click') // '\\x1b]8;;https://evil.example\\x07click'
 * escapeText('pay\u202Eyrev') // 'pay\\u202eyrev'
 */
export function escapeText(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** True when {@link escapeText} would change `text`: it holds a control, bidirectional or separator character. */
export function hasUnsafeText(text: string): boolean {
  return UNSAFE_ONE.test(text);
}

/**
 * JSON text (from `JSON.stringify`, which escapes C0 controls itself) with the other unsafe
 * characters of {@link escapeText} written as `\uXXXX` escapes: the same JSON value, so a
 * JSON line stays lossless, and nothing in it steers a terminal.
 */
export function escapeJson(json: string): string {
  return UNSAFE_ONE.test(json) ? json.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) : json;
}
