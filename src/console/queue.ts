// The message queue: held messages (a window of them around the selection), the selected
// one marked.
import { createElement as h, type ReactElement } from 'react';
import { Box } from 'ink';
import { Text } from './text.js';
import type { PendingApproval } from '../approvals.js';
import { cell, expiresIn, pendingCount, routeOf, summarize } from './format.js';

export interface QueueProps {
  readonly pending: readonly PendingApproval[];
  readonly selected: number;
  readonly now: number;
  /** Rows to fill, at most. */
  readonly height: number;
  readonly width: number;
  readonly filter?: string | undefined;
}

export function Queue({ pending, selected, now, height, width, filter }: QueueProps): ReactElement {
  const wide = width >= 70;
  const title = h(
    Text,
    { wrap: 'truncate-end' },
    h(Text, { bold: true }, `message queue · ${pendingCount(pending.length)}${filter !== undefined ? ` about ${filter}` : ''}`),
    h(Text, { dimColor: true }, wide ? '   enter details · a approve · d deny' : ''),
  );
  if (pending.length === 0) return h(Box, { flexDirection: 'column', height }, title, h(Text, { dimColor: true }, '  nothing is waiting for you'));
  // Title, the two "more" lines, and two rows per item.
  const shown = Math.max(1, Math.floor((height - 3) / 2));
  const first = Math.max(0, Math.min(selected - Math.floor(shown / 2), pending.length - shown));
  const window = pending.slice(first, first + shown);
  const rows = window.map((a, at) => {
    const e = a.envelope;
    const mark = first + at === selected;
    return h(
      Box,
      { key: a.id, flexDirection: 'column' },
      h(
        Text,
        { wrap: 'truncate-end', inverse: mark },
        `${mark ? '›' : ' '} ${a.node !== undefined ? `${cell(a.node, 10)} ` : ''}${cell(routeOf(e), wide ? 22 : 18)} ${cell(`${e.type} ${e.intent}`, wide ? 19 : 14)} `,
        h(Text, { color: 'yellow' }, `expires in ${expiresIn(a.expiresAt, now)}`),
      ),
      h(Text, { wrap: 'truncate-end', dimColor: !mark }, `    ${summarize(e.payload, Math.max(20, width - 4))}`),
    );
  });
  const more = (n: number, where: string) => (n > 0 ? h(Text, { dimColor: true }, `  … ${n} more ${where}`) : null);
  return h(Box, { flexDirection: 'column', height }, title, more(first, 'above'), ...rows, more(pending.length - first - window.length, 'below'));
}
