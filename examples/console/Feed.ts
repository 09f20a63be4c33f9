// The live feed: the last few things that happened on the bus.
import { createElement as h, type ReactElement } from 'react';
import { Box, Text } from 'ink';
import type { FeedLine, Tone } from './format.js';

const ROUTE_WIDTH = 22;
const WHAT_WIDTH = 19;

/** Ink text props for a tone. */
export function toneProps(tone: Tone): { color?: string; dimColor?: boolean } {
  return tone === 'plain' ? {} : tone === 'dim' ? { dimColor: true } : { color: tone };
}

export function Feed({ lines, height }: { lines: readonly FeedLine[]; height: number }): ReactElement {
  const rows = lines.map((line) =>
    h(
      Text,
      { key: line.key, wrap: 'truncate-end' },
      h(Text, { dimColor: true }, `${line.time}  `),
      `${line.route.padEnd(ROUTE_WIDTH)} ${line.what.padEnd(WHAT_WIDTH)} `,
      h(Text, toneProps(line.tone), line.status),
      line.detail !== undefined ? h(Text, { dimColor: true }, `  ${line.detail}`) : null,
    ),
  );
  if (rows.length === 0) rows.push(h(Text, { key: 'empty', dimColor: true }, 'waiting for messages…'));
  const blank = Array.from({ length: Math.max(0, height - rows.length) }, (_, i) => h(Text, { key: `blank-${i}` }, ' '));
  return h(Box, { flexDirection: 'column' }, ...rows, ...blank);
}
