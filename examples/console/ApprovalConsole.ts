// The approval console: a live feed of the bus, held messages as notifications, and the
// message queue (m) where the operator approves (a) or denies (d) the selected one.
// Uses only the bus's public API: events.on/off and approvals.list/approve/reject.
import { createElement as h, useCallback, useEffect, useRef, useState, type ReactElement } from 'react';
import { Box, Text, useInput, type Key } from 'ink';
import { Feed } from './Feed.js';
import { Queue } from './Queue.js';
import { useFeed, useNow, usePending, type ConsoleBus } from './hooks.js';
import { describeHeld, pendingCount, routeOf } from './format.js';

/** Why the console asked to close: the operator pressed q, or the host said it is finished and nothing is pending. */
export type ExitReason = 'quit' | 'finished';

export interface ApprovalConsoleProps {
  /** An `Orchestrator` (or anything with its `events` and `approvals`). */
  readonly bus: ConsoleBus;
  /** Recorded as `decidedBy` in the audit log. */
  readonly operator: string;
  /** Called once, when the console wants to close; the host unmounts it. */
  readonly onExit?: (reason: ExitReason) => void;
  /** The host has nothing more to send: exit as soon as nothing is pending. */
  readonly finished?: boolean;
  /** Lines of live feed. @default 10 */
  readonly feedLines?: number;
  /** The reason given with a denial. @default 'denied in console' */
  readonly denyReason?: string;
}

interface Status {
  readonly text: string;
  readonly color: 'green' | 'red' | 'yellow';
}

export function ApprovalConsole({ bus, operator, onExit, finished = false, feedLines = 10, denyReason = 'denied in console' }: ApprovalConsoleProps): ReactElement {
  const lines = useFeed(bus.events, feedLines);
  const [pending, refresh] = usePending(bus);
  const [queueOpen, setQueueOpen] = useState(false);
  const [selected, setSelected] = useState(0);
  const [status, setStatus] = useState<Status | undefined>(undefined);
  const now = useNow(pending.length > 0);
  const index = Math.min(selected, Math.max(0, pending.length - 1));

  // The key handler is subscribed once and reads the latest render's values from here, so a
  // key pressed right after a re-render never sees the previous state.
  const latest = useRef({ pending, index, queueOpen, bus, operator, denyReason, onExit, exited: false });
  Object.assign(latest.current, { pending, index, queueOpen, bus, operator, denyReason, onExit });

  const exit = useCallback((reason: ExitReason) => {
    if (latest.current.exited) return;
    latest.current.exited = true;
    latest.current.onExit?.(reason);
  }, []);
  useEffect(() => {
    if (finished && pending.length === 0) exit('finished');
  }, [finished, pending.length, exit]);

  const decide = useCallback(
    (approve: boolean) => {
      const { pending, index, bus, operator, denyReason } = latest.current;
      const item = pending[index];
      if (item === undefined) return;
      try {
        if (approve) {
          const result = bus.approvals.approve(item.id, { by: operator, note: 'approved in console' });
          setStatus(
            // Staged, not yet delivered: the feed shows "delivered" once the audit row is committed.
            result.staged
              ? { text: `✓ approved ${describeHeld(item)} by ${operator}: on its way`, color: 'green' }
              : { text: `approved ${describeHeld(item)} by ${operator}, but not delivered: ${result.code} ${result.reason}`, color: 'yellow' },
          );
        } else {
          bus.approvals.reject(item.id, { by: operator, reason: denyReason });
          setStatus({ text: `✗ denied ${describeHeld(item)} by ${operator} (${denyReason})`, color: 'red' });
        }
      } catch (error) {
        setStatus({ text: `could not decide ${describeHeld(item)}: ${(error as Error).message}`, color: 'red' });
      }
      refresh();
    },
    [refresh],
  );

  const onKey = useCallback(
    (input: string, key: Key) => {
      const { pending, index, queueOpen } = latest.current;
      if (input === 'q') return exit('quit');
      const open = (value: boolean) => setQueueOpen((latest.current.queueOpen = value));
      const select = (value: number) => setSelected((latest.current.index = value));
      if (input === 'm') return open(!queueOpen);
      if (!queueOpen) return undefined;
      if (key.escape) return open(false);
      if (key.upArrow || input === 'k') return select(Math.max(0, index - 1));
      if (key.downArrow || input === 'j') return select(Math.min(Math.max(0, pending.length - 1), index + 1));
      if (input === 'a') return decide(true);
      if (input === 'd') return decide(false);
      return undefined;
    },
    [exit, decide],
  );
  useInput(onKey);

  const newest = pending[pending.length - 1];
  const header = h(
    Text,
    { wrap: 'truncate-end' },
    h(Text, { bold: true }, 'agent-switchboard · approval console'),
    h(Text, { dimColor: true }, ` · operator ${operator} · `),
    pending.length > 0 ? h(Text, { color: 'black', backgroundColor: 'yellow' }, ` ⏸ ${pending.length} pending `) : h(Text, { dimColor: true }, 'nothing pending'),
    h(Text, { dimColor: true }, `   m queue · q quit`),
  );
  const notification =
    newest === undefined || queueOpen
      ? null
      : h(
          Text,
          { color: 'yellow', wrap: 'truncate-end' },
          `⏸ ${pendingCount(pending.length)}: press m to open the message queue · newest ${routeOf(newest.envelope)} ${newest.envelope.type} ${newest.envelope.intent}`,
        );
  return h(
    Box,
    { flexDirection: 'column', borderStyle: 'round', borderColor: pending.length > 0 ? 'yellow' : 'gray', paddingX: 1 },
    header,
    h(Feed, { lines, height: feedLines }),
    notification,
    queueOpen ? h(Queue, { pending, selected: index, now }) : null,
    status !== undefined ? h(Text, { color: status.color, wrap: 'truncate-end' }, status.text) : null,
  );
}
