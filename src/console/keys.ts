// The console's keys: the help screen and the hint line, which shortens with the width.
import { createElement as h, type ReactElement } from 'react';
import { Box } from 'ink';
import { Text } from './text.js';

/** Every key, as the help screen lists it. */
export const KEYS: readonly (readonly [string, string])[] = [
  ['?', 'show or hide this help'],
  ['m / tab', 'open or close the message queue'],
  ['↑↓ j k', 'choose (queue) · scroll (feed, details); pgup pgdn g G'],
  ['enter / v', 'the selected message in full: payload, rule, deadline'],
  ['a', 'approve the selected message (asks first: y or a again)'],
  ['A', 'approve, and always allow this pair, type and intent'],
  ['d', 'deny the selected message, with a reason you type'],
  ['f', 'filter the feed and queue by agent (empty clears)'],
  ['esc', 'back to the feed, or cancel what is being asked'],
  ['q', 'quit (asks again while messages are held)'],
];

/** The hint line for `width` columns: the most useful keys that fit. */
export function hints(width: number): string {
  const all = ['? help', 'm queue', 'a approve', 'd deny', 'enter details', 'f filter', '↑↓ move', 'q quit'];
  const short = ['?', 'm', 'a', 'd', 'f', 'q'];
  const full = all.join(' · ');
  if (full.length <= width) return full;
  const mid = ['? help', 'm queue', 'a approve', 'd deny', 'q quit'].join(' · ');
  return mid.length <= width ? mid : `keys: ${short.join(' ')} (? explains)`;
}

export function Help({ height, width }: { height: number; width: number }): ReactElement {
  const keyWidth = width >= 70 ? 12 : 10;
  const rows = KEYS.slice(0, Math.max(0, height - 1)).map(([key, what]) =>
    h(Text, { key, wrap: 'truncate-end' }, h(Text, { bold: true, color: 'cyan' }, key.padEnd(keyWidth)), what),
  );
  return h(Box, { flexDirection: 'column', height }, h(Text, { bold: true }, 'keys (? or esc closes this)'), ...rows);
}
