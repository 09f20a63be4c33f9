// The approval console: a live feed of the bus, the queue of held messages, each one in full
// before it is approved, a typed reason for a denial, a filter by agent and a help screen.
// Every key answers in every view, on the status line at least. Uses only the bus's public
// API (through ApprovalDesk): events.on/off and approvals.list/approve/reject.
import { createElement as h, useCallback, useEffect, useRef, useState, type ReactElement } from 'react';
import { Box, useInput, useWindowSize, type Key } from 'ink';
import { Text } from './text.js';
import type { PendingApproval } from '../approvals.js';
import { answerText, outcomeText, type DeskAnswer, type OperatorBus } from '../operator/desk.js';
import { Detail, payloadLines, payloadRoom } from './detail.js';
import { Feed } from './feed.js';
import { describeHeld, matchesAgent, pendingCount, routeOf, summarize } from './format.js';
import { useDesk, useFeed, useNow, usePending } from './hooks.js';
import { Help, hints } from './keys.js';
import { Queue } from './queue.js';

/** Why the console asked to close: the operator quit, or the host said it is finished and nothing is pending. */
export type ExitReason = 'quit' | 'finished';

export interface ApprovalConsoleProps {
  /** An `Orchestrator` (or anything with its `events` and `approvals`). */
  readonly bus: OperatorBus;
  /** Recorded as `decidedBy` in the audit log. */
  readonly operator: string;
  /** Called once, when the console wants to close; the host unmounts it. */
  readonly onExit?: (reason: ExitReason) => void;
  /** The host has nothing more to send: exit as soon as nothing is pending. */
  readonly finished?: boolean;
  /** Width in columns. @default the terminal's */
  readonly columns?: number;
  /** Height in rows. @default the terminal's, less one */
  readonly rows?: number;
  /** Feed lines kept for scrolling back. @default 500 */
  readonly history?: number;
  /** The reason recorded when a denial's reason is left empty. @default 'denied in console' */
  readonly denyReason?: string;
}

type View = 'feed' | 'queue' | 'detail' | 'help';
type Prompt =
  | { readonly kind: 'confirm'; readonly always: boolean }
  | { readonly kind: 'reason'; readonly text: string }
  | { readonly kind: 'filter'; readonly text: string }
  | { readonly kind: 'quit' };
type Color = 'green' | 'red' | 'yellow' | 'cyan';

interface State {
  readonly view: View;
  /** Where esc goes from the detail and help views. */
  readonly back: 'feed' | 'queue';
  readonly prompt?: Prompt | undefined;
  readonly selected: number;
  /** The message the detail view shows (kept when it leaves the queue). */
  readonly target?: PendingApproval | undefined;
  readonly feedOffset: number;
  readonly detailScroll: number;
  readonly filter?: string | undefined;
  readonly status?: { readonly text: string; readonly color: Color } | undefined;
}

/** Longest reason or filter text a prompt takes (the bus takes reasons up to 1000). */
const MAX_TYPED = 1000;
/** Rows the frame spends outside the body: border (2), header, status line, key hints. */
const CHROME_ROWS = 5;

export function ApprovalConsole(props: ApprovalConsoleProps): ReactElement {
  const { bus, operator, onExit, finished = false, history = 500, denyReason = 'denied in console' } = props;
  const size = useWindowSize();
  const columns = Math.max(40, props.columns ?? size.columns);
  const rows = Math.max(12, props.rows ?? size.rows - 1);
  const width = columns - 4;
  const bodyRows = rows - CHROME_ROWS;

  const desk = useDesk(bus);
  const lines = useFeed(bus.events, history);
  const [pending] = usePending(bus);
  const now = useNow(pending.length > 0);
  const [state, setState] = useState<State>({ view: 'feed', back: 'feed', selected: 0, feedOffset: 0, detailScroll: 0 });

  const visible = pending.filter((a) => matchesAgent([a.envelope.from, a.envelope.to], state.filter));
  const feed = lines.filter((line) => matchesAgent(line.agents, state.filter));
  const index = Math.min(state.selected, Math.max(0, visible.length - 1));
  const targetHeld = state.target !== undefined && pending.some((a) => a.id === state.target!.id);

  // The key handler is subscribed once and reads the latest render's values from here, so a
  // key pressed right after a re-render never sees the previous state.
  const latest = useRef({ state, visible, feed, index, targetHeld, pending, bodyRows, width, operator, denyReason, onExit, exited: false });
  Object.assign(latest.current, { state, visible, feed, index, targetHeld, pending, bodyRows, width, operator, denyReason, onExit });
  const update = useCallback((patch: Partial<State>) => {
    const next = { ...latest.current.state, ...patch };
    latest.current.state = next;
    setState(next);
  }, []);
  const say = useCallback((text: string, color: Color = 'cyan') => update({ status: { text, color } }), [update]);

  const exit = useCallback((reason: ExitReason) => {
    if (latest.current.exited) return;
    latest.current.exited = true;
    latest.current.onExit?.(reason);
  }, []);
  useEffect(() => {
    if (finished && pending.length === 0) exit('finished');
  }, [finished, pending.length, exit]);

  const decide = useCallback(
    (item: PendingApproval, approve: boolean, options: { always?: boolean; reason?: string }) => {
      const { operator, state } = latest.current;
      const what = describeHeld(item);
      update({ prompt: undefined, view: state.back, status: { text: `${approve ? 'approving' : 'denying'} ${what}…`, color: 'yellow' } });
      const request = approve
        ? ({ approve: true, by: operator, note: 'approved in console', ...(options.always === true ? { always: true } : {}) } as const)
        : ({ approve: false, by: operator, reason: options.reason ?? latest.current.denyReason } as const);
      void desk.decide(item.id, request).then((answer: DeskAnswer) => {
        if (latest.current.exited) return;
        say(...describeAnswer(answer, what, operator, request));
      });
    },
    [desk, update, say],
  );

  const onKey = useCallback(
    (input: string, key: Key) => {
      const { state, visible, feed, index, targetHeld, pending, bodyRows, width } = latest.current;
      const prompt = state.prompt;
      const selectedItem = visible[index];

      // Typed text: the reason for a denial, or the agent filter.
      if (prompt?.kind === 'reason' || prompt?.kind === 'filter') {
        if (key.escape) return update({ prompt: undefined, status: { text: prompt.kind === 'reason' ? 'denial cancelled: nothing was decided' : 'filter unchanged', color: 'cyan' } });
        if (key.return) {
          const text = prompt.text.trim();
          if (prompt.kind === 'filter') {
            return update({ prompt: undefined, filter: text === '' ? undefined : text, selected: 0, feedOffset: 0, status: { text: text === '' ? 'filter cleared: every agent' : `showing only messages to or from ${text}`, color: 'cyan' } });
          }
          if (state.target === undefined) return update({ prompt: undefined });
          return decide(state.target, false, { reason: text === '' ? latest.current.denyReason : text });
        }
        if (key.backspace || key.delete) return update({ prompt: { ...prompt, text: prompt.text.slice(0, -1) } });
        if (key.ctrl || key.meta || key.tab || key.upArrow || key.downArrow || key.leftArrow || key.rightArrow) return undefined;
        const typed = prompt.text + input.replace(/[\u0000-\u001f\u007f]/g, '');
        if (typed.length > MAX_TYPED) return say(`at most ${MAX_TYPED} characters`, 'red');
        return update({ prompt: { ...prompt, text: typed } });
      }

      if (prompt?.kind === 'quit') {
        if (input === 'q') return exit('quit');
        return update({ prompt: undefined, status: { text: 'still here: nothing was closed', color: 'cyan' } });
      }

      if (prompt?.kind === 'confirm' && state.target !== undefined) {
        if (input === 'y' || input === 'a') return decide(state.target, true, { always: prompt.always });
        if (input === 'A') return decide(state.target, true, { always: true });
        if (input === 'n' || key.escape) return update({ prompt: undefined, view: state.back, status: { text: 'approval cancelled: nothing was decided', color: 'cyan' } });
        // Any other key leaves the question and does what it says.
        update({ prompt: undefined });
      }

      const openDetail = (item: PendingApproval | undefined, next: Prompt | undefined, verb: string) => {
        if (item === undefined) return say(pending.length === 0 ? `nothing to ${verb}: no message is held` : `nothing to ${verb} about ${state.filter} (f changes the filter)`, 'yellow');
        const back = state.view === 'queue' || state.view === 'feed' ? state.view : state.back;
        return update({ view: 'detail', back, target: item, detailScroll: 0, prompt: next, status: undefined });
      };
      // In the detail view, a decision is about the message shown there.
      const subject = state.view === 'detail' && targetHeld ? state.target : selectedItem;

      if (key.ctrl && input === 'c') return exit('quit');
      if (input === 'q') {
        if (pending.length === 0) return exit('quit');
        return update({ prompt: { kind: 'quit' }, status: { text: `${pendingCount(pending.length)} still held: q again quits (closing the bus cancels them), any other key stays`, color: 'yellow' } });
      }
      if (input === '?') return state.view === 'help' ? update({ view: state.back, status: undefined }) : update({ view: 'help', back: state.view === 'queue' ? 'queue' : state.view === 'detail' ? state.back : 'feed', status: undefined });
      if (input === 'm' || key.tab) {
        const toQueue = state.view !== 'queue';
        return update({ view: toQueue ? 'queue' : 'feed', back: toQueue ? 'queue' : 'feed', status: { text: toQueue ? 'message queue: ↑↓ choose · enter details · a approve · d deny' : 'live feed', color: 'cyan' } });
      }
      if (input === 'f') return update({ prompt: { kind: 'filter', text: state.filter ?? '' }, status: undefined });
      if (input === 'a') return openDetail(subject, { kind: 'confirm', always: false }, 'approve');
      if (input === 'A') return openDetail(subject, { kind: 'confirm', always: true }, 'approve');
      if (input === 'd') return openDetail(subject, { kind: 'reason', text: '' }, 'deny');
      if (key.return || input === 'v') return openDetail(subject, undefined, 'show');
      if (key.escape) {
        if (state.view === 'detail' || state.view === 'help') return update({ view: state.back, status: undefined });
        if (state.view === 'queue') return update({ view: 'feed', back: 'feed', status: { text: 'live feed', color: 'cyan' } });
        return say(state.feedOffset > 0 ? 'following the feed again' : 'this is the live feed: ? shows the keys', 'cyan'), update({ feedOffset: 0 });
      }

      const up = key.upArrow || input === 'k';
      const down = key.downArrow || input === 'j';
      const page = key.pageUp ? -1 : key.pageDown ? 1 : 0;
      const top = input === 'g' || key.home;
      const bottom = input === 'G' || key.end;
      if (up || down || page !== 0 || top || bottom) {
        if (state.view === 'queue') {
          if (visible.length === 0) return say('the queue is empty', 'yellow');
          const rowsPer = Math.max(1, Math.floor((bodyRows - 3) / 2));
          const to = top ? 0 : bottom ? visible.length - 1 : index + (up ? -1 : down ? 1 : page * rowsPer);
          return update({ selected: Math.max(0, Math.min(visible.length - 1, to)), status: undefined });
        }
        if (state.view === 'detail' && state.target !== undefined) {
          const footerRows = 2;
          const max = Math.max(0, payloadLines(state.target, width).length - payloadRoom(bodyRows, footerRows) + 1);
          const room = payloadRoom(bodyRows, footerRows);
          const to = top ? 0 : bottom ? max : state.detailScroll + (up ? -1 : down ? 1 : page * room);
          return update({ detailScroll: Math.max(0, Math.min(max, to)) });
        }
        if (state.view === 'feed') {
          const room = bodyRows - 1;
          const max = Math.max(0, feed.length - room + 1);
          const to = top ? max : bottom ? 0 : state.feedOffset + (up ? 1 : down ? -1 : -page * room);
          const offset = Math.max(0, Math.min(max, to));
          return update({ feedOffset: offset, status: offset === 0 ? { text: 'following the feed', color: 'cyan' } : undefined });
        }
        return say('nothing scrolls here: esc goes back', 'cyan');
      }
      const name = input === ' ' ? 'space' : input === '' ? 'that key' : `'${input}'`;
      return say(`${name} does nothing here: ? shows the keys`, 'yellow');
    },
    [exit, decide, update, say],
  );
  useInput(onKey);

  const selected = visible[index];
  const badge =
    pending.length > 0 ? h(Text, { color: 'black', backgroundColor: 'yellow' }, ` ⏸ ${pending.length} pending `) : h(Text, { dimColor: true }, 'nothing pending');
  const header = h(
    Text,
    { wrap: 'truncate-end' },
    h(Text, { bold: true }, columns >= 80 ? 'agent-switchboard · approvals' : 'approvals'),
    h(Text, { dimColor: true }, ` · ${operator} · `),
    badge,
    state.filter !== undefined ? h(Text, { color: 'cyan' }, ` · agent ${state.filter}`) : null,
  );

  let body: ReactElement;
  if (state.view === 'help') body = h(Help, { height: bodyRows, width });
  else if (state.view === 'queue') body = h(Queue, { pending: visible, selected: index, now, height: bodyRows, width, filter: state.filter });
  else if (state.view === 'detail' && state.target !== undefined) {
    const gone = targetHeld ? undefined : goneText(desk.recent(), state.target.id);
    body = h(Detail, { item: state.target, gone, now, height: bodyRows, width, scroll: state.detailScroll, footer: detailFooter(state, operator, gone) });
  } else {
    const notification =
      selected === undefined
        ? null
        : h(
            Text,
            { key: 'note', color: 'yellow', wrap: 'truncate-end' },
            `⏸ ${pendingCount(visible.length)} · a approve · d deny · enter details · ${routeOf(selected.envelope)} ${selected.envelope.intent} ${summarize(selected.envelope.payload, 80)}`,
          );
    body = h(
      Box,
      { flexDirection: 'column', height: bodyRows },
      h(Feed, { lines: feed, height: bodyRows - (notification === null ? 0 : 1), width, offset: Math.min(state.feedOffset, feed.length), filter: state.filter }),
      notification,
    );
  }

  const prompt = state.prompt;
  const statusLine =
    prompt?.kind === 'filter'
      ? h(Text, { wrap: 'truncate-start', color: 'cyan' }, `filter by agent (enter applies, empty clears, esc cancels): ${prompt.text}▌`)
      : state.status !== undefined
        ? h(Text, { wrap: 'truncate-end', color: state.status.color }, state.status.text)
        : h(Text, { dimColor: true }, ' ');
  return h(
    Box,
    { flexDirection: 'column', width: columns, height: rows, borderStyle: 'round', borderColor: pending.length > 0 ? 'yellow' : 'gray', paddingX: 1 },
    header,
    body,
    statusLine,
    h(Text, { dimColor: true, wrap: 'truncate-end' }, hints(width)),
  );
}

/** The two lines under the detail view's payload: the question asked, or what can be done. */
function detailFooter(state: State, operator: string, gone: string | undefined): ReactElement[] {
  const prompt = state.prompt;
  const line = (key: string, text: string, props: Record<string, unknown> = {}) => h(Text, { key, wrap: 'truncate-end', ...props }, text);
  if (gone !== undefined) return [line('f1', `this message is no longer held (${gone})`, { color: 'red' }), line('f2', 'esc goes back', { dimColor: true })];
  if (prompt?.kind === 'confirm') {
    const e = state.target!.envelope;
    return [
      line('f1', prompt.always ? `Approve as ${operator}, and always allow ${e.from} → ${e.to} ${e.type} "${e.intent}"?` : `Approve this ${e.type} as ${operator}?`, { bold: true, color: 'yellow' }),
      line('f2', prompt.always ? 'y or a: yes, and always · n or esc: no' : 'y or a: approve once · A: approve and always allow · n or esc: no', { color: 'yellow' }),
    ];
  }
  if (prompt?.kind === 'reason') {
    return [line('f1', `Deny as ${operator}: type a reason, enter denies, esc cancels`, { bold: true, color: 'red' }), h(Text, { key: 'f2', wrap: 'truncate-start' }, `> ${prompt.text}▌`)];
  }
  return [line('f1', 'a approve · A approve and always allow · d deny with a reason', { color: 'yellow' }), line('f2', 'esc back · ↑↓ scroll the payload', { dimColor: true })];
}

/** How an item that left the queue ended, as far as the desk saw. */
function goneText(recent: readonly { id: string; decision: string; by?: string }[], id: string): string {
  const found = recent.find((r) => r.id === id);
  return found !== undefined ? outcomeText(found as Parameters<typeof outcomeText>[0]) : 'no longer held';
}

/** The status line for a desk answer: what happened first, then which message. */
function describeAnswer(answer: DeskAnswer, what: string, operator: string, request: { approve: boolean; reason?: string; always?: boolean }): [string, Color] {
  if (answer.status === 'decided') {
    if (answer.decision === 'rejected') return [`✗ denied by ${operator} (${request.reason ?? ''}) · ${what}`, 'red'];
    if (answer.delivered === false) return [`approved by ${operator}, but not delivered: ${answer.code ?? ''} ${answer.reason ?? ''} · ${what}`, 'yellow'];
    const always = request.always === true ? ', always allowed from now on' : '';
    const how = answer.delivered === true ? 'delivered' : answer.staged === true ? 'staged for delivery' : 'recorded';
    return [`✓ approved by ${operator}${always}: ${how} · ${what}`, 'green'];
  }
  return [`could not decide: ${answerText(answer)} · ${what}`, 'red'];
}
