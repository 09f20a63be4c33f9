// Payloads and A2A parts, both ways: a message's parts become one payload, a reply becomes
// one artifact part. The same rule on both sides, so a round trip keeps the value.
import type { Part } from '@a2a-js/sdk';

/** Parts a message may carry at most; more is refused before anything is sent. */
export const MAX_PARTS = 64;

/** A value read from parts, or why it cannot be. */
export type PartsValue = { ok: true; value: unknown } | { ok: false; reason: string };

/**
 * The value of parts: one data part → its data, one text part → the string, several → an
 * array of their values. File (raw or url) parts are refused: the bus carries JSON.
 */
export function valueOfParts(parts: readonly Part[]): PartsValue {
  if (parts.length === 0) return { ok: false, reason: 'the message has no parts' };
  if (parts.length > MAX_PARTS) return { ok: false, reason: `the message has more than ${MAX_PARTS} parts` };
  const values: unknown[] = [];
  for (const part of parts) {
    const content = part.content;
    if (content?.$case === 'data') values.push(content.value ?? null);
    else if (content?.$case === 'text') values.push(content.value);
    else return { ok: false, reason: `a ${content?.$case ?? 'empty'} part cannot be carried: send data or text parts` };
  }
  return { ok: true, value: values.length === 1 ? values[0] : values };
}

/** The part of a reply: a string as a text part, anything else as a data part. */
export function partOf(value: unknown): Part {
  if (typeof value === 'string') return { content: { $case: 'text', value }, metadata: undefined, filename: '', mediaType: 'text/plain' };
  return { content: { $case: 'data', value }, metadata: undefined, filename: '', mediaType: 'application/json' };
}

/** A text part (status messages). */
export function textPart(text: string): Part {
  return partOf(text);
}
