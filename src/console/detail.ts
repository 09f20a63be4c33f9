// One held message in full: envelope, rule, deadline and the whole payload (scrolled when
// it is taller than the room), with the question being asked of the operator.
import { createElement as h, type ReactElement } from 'react';
import { Box } from 'ink';
import { Text } from './text.js';
import type { PendingApproval } from '../approvals.js';
import { clockTime, expiresIn, routeOf, toJson, wrapLines } from './format.js';

export interface DetailProps {
  readonly item: PendingApproval;
  /** Set when the item left the queue meanwhile: how it ended, or `no longer held`. */
  readonly gone?: string | undefined;
  readonly now: number;
  readonly height: number;
  readonly width: number;
  /** Payload lines scrolled past. */
  readonly scroll: number;
  /** The lines under the payload (the question, or the reason being typed). */
  readonly footer: readonly ReactElement[];
}

/** Payload lines of `item` at `width`. */
export function payloadLines(item: PendingApproval, width: number): string[] {
  return wrapLines(toJson(item.envelope.payload, 2), Math.max(10, width - 2));
}

/** How many payload lines fit beside the header and the footer. */
export function payloadRoom(height: number, footerRows: number): number {
  return Math.max(1, height - HEADER_ROWS - footerRows);
}

const HEADER_ROWS = 5;

export function Detail({ item, gone, now, height, width, scroll, footer }: DetailProps): ReactElement {
  const e = item.envelope;
  const lines = payloadLines(item, width);
  const room = payloadRoom(height, footer.length);
  const top = Math.max(0, Math.min(scroll, lines.length - room));
  const visible = lines.length > room ? lines.slice(top, top + room - 1) : lines;
  const below = lines.length - top - visible.length;
  const deadline = e.deadline ?? item.expiresAt;
  return h(
    Box,
    { flexDirection: 'column', height },
    h(Text, { wrap: 'truncate-end', bold: true }, `${item.node !== undefined ? `node ${item.node} · ` : ''}${routeOf(e)} · ${e.type} "${e.intent}" · priority ${e.priority}`),
    h(Text, { wrap: 'truncate-end' }, h(Text, { dimColor: true }, 'rule     '), item.rule ?? '(none)'),
    h(
      Text,
      { wrap: 'truncate-end' },
      h(Text, { dimColor: true }, 'deadline '),
      `${clockTime(deadline)} `,
      gone !== undefined ? h(Text, { color: 'red' }, gone) : h(Text, { color: 'yellow' }, `expires in ${expiresIn(item.expiresAt, now)}`),
      h(Text, { dimColor: true }, ` · held since ${clockTime(item.requestedAt)}${item.restored === true ? ' (restored)' : ''}`),
    ),
    h(Text, { wrap: 'truncate-end', dimColor: true }, `id ${item.id} · conversation ${e.conversationId} · depth ${e.depth}`),
    h(Text, { wrap: 'truncate-end', dimColor: true }, `payload · ${item.payloadBytes} bytes · sha256 ${item.payloadHash.slice(0, 16)}…${top > 0 ? ` · ${top} lines above` : ''}`),
    ...visible.map((line, i) => h(Text, { key: `p${top + i}`, wrap: 'truncate-end' }, `  ${line}`)),
    below > 0 ? h(Text, { key: 'more', color: 'cyan', wrap: 'truncate-end' }, `  … ${below} more lines: ↓/j scrolls`) : null,
    h(Box, { flexGrow: 1 }),
    ...footer,
  );
}
