// The message queue: held messages (a window of them around the selection), the selected
// one marked and detailed.
import { createElement as h, type ReactElement } from 'react';
import { Box, Text } from 'ink';
import type { PendingApproval } from '../../src/index.js';
import { expiresIn, pendingCount, routeOf, summarize } from './format.js';

export interface QueueProps {
  readonly pending: readonly PendingApproval[];
  readonly selected: number;
  readonly now: number;
  /** Items shown at once; the window follows the selection. @default 5 */
  readonly rows?: number;
}

export function Queue({ pending, selected, now, rows: shown = 5 }: QueueProps): ReactElement {
  const title = h(
    Text,
    { wrap: 'truncate-end' },
    h(Text, { bold: true }, `message queue · ${pendingCount(pending.length)}`),
    h(Text, { dimColor: true }, '   ↑↓/j k select · a approve · d deny · m/esc close'),
  );
  if (pending.length === 0) return h(Box, { flexDirection: 'column' }, title, h(Text, { dimColor: true }, '  nothing is waiting for you'));
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
        `${mark ? '›' : ' '} ${routeOf(e).padEnd(22)} ${`${e.type} ${e.intent}`.padEnd(19)} `,
        h(Text, { color: 'yellow' }, `expires in ${expiresIn(a.expiresAt, now)}`),
      ),
      h(Text, { wrap: 'truncate-end', dimColor: !mark }, `    ${summarize(e.payload, 120)}`),
    );
  });
  const chosen = pending[selected];
  const detail =
    chosen === undefined
      ? null
      : h(
          Text,
          { dimColor: true, wrap: 'truncate-end' },
          `  selected: id ${chosen.id} · rule '${chosen.rule ?? '?'}' · ${chosen.payloadBytes} bytes · priority ${chosen.envelope.priority}`,
        );
  const more = (n: number, where: string) => (n > 0 ? h(Text, { dimColor: true }, `  … ${n} more ${where}`) : null);
  return h(Box, { flexDirection: 'column' }, title, more(first, 'above'), ...rows, more(pending.length - first - window.length, 'below'), detail);
}
