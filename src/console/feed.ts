// The live feed: what happened on the bus, newest last, scrolled back by `offset` lines.
import { createElement as h, type ReactElement } from 'react';
import { Box } from 'ink';
import { Text } from './text.js';
import { cell, type FeedLine, type Tone } from './format.js';

/** Ink text props for a tone. */
export function toneProps(tone: Tone): { color?: string; dimColor?: boolean } {
  return tone === 'plain' ? {} : tone === 'dim' ? { dimColor: true } : { color: tone };
}

export interface FeedProps {
  /** The lines that pass the filter, oldest first. */
  readonly lines: readonly FeedLine[];
  /** Rows to fill, exactly. */
  readonly height: number;
  /** Columns available. */
  readonly width: number;
  /** Lines scrolled back from the newest (0 follows the feed). */
  readonly offset: number;
  /** The agent filter in force, said when nothing matches. */
  readonly filter?: string | undefined;
}

/** The feed window: `height` rows, the last of them a scroll marker when scrolled back. */
export function Feed({ lines, height, width, offset, filter }: FeedProps): ReactElement {
  const wide = width >= 70;
  const routeWidth = wide ? 20 : 18;
  const whatWidth = wide ? 17 : 14;
  const room = offset > 0 ? height - 1 : height;
  const end = lines.length - offset;
  const shown = lines.slice(Math.max(0, end - room), end);
  const rows = shown.map((line) =>
    h(
      Text,
      { key: line.key, wrap: 'truncate-end' },
      wide ? h(Text, { dimColor: true }, `${line.time}  `) : null,
      `${cell(line.route, routeWidth)} ${cell(line.what, whatWidth)} `,
      h(Text, toneProps(line.tone), line.status),
      line.detail !== undefined ? h(Text, { dimColor: true }, `  ${line.detail}`) : null,
    ),
  );
  if (rows.length === 0) {
    rows.push(h(Text, { key: 'empty', dimColor: true }, filter !== undefined ? `nothing about ${filter} yet (f to change the filter)` : 'waiting for messages…'));
  }
  const blank = Array.from({ length: Math.max(0, room - rows.length) }, (_, i) => h(Text, { key: `blank-${i}` }, ' '));
  const marker =
    offset > 0 ? h(Text, { key: 'marker', color: 'cyan', wrap: 'truncate-end' }, `↓ ${offset} newer line${offset === 1 ? '' : 's'} below · G follows the feed again`) : null;
  return h(Box, { flexDirection: 'column', height }, ...blank, ...rows, marker);
}
