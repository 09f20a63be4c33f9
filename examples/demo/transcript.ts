// Prints what happens on the bus as it happens: one compact line per event.
import { escapeText, type BusEventSource, type Envelope, type MessageLogEntry } from '../../src/index.js';

// Every agent-controlled string (ids, intents, reasons, payloads) is printed through escapeText:
// nothing an agent wrote steers the terminal. The transcript's own colours are added after.

/** ANSI styling, or none. Colours are only for a terminal, and never with NO_COLOR set. */
export interface Style {
  dim(text: string): string;
  bold(text: string): string;
  green(text: string): string;
  red(text: string): string;
  yellow(text: string): string;
  cyan(text: string): string;
}

export function makeStyle(color: boolean): Style {
  const paint = (open: number, close: number) => (text: string) => (color ? `\x1b[${open}m${text}\x1b[${close}m` : text);
  return { dim: paint(2, 22), bold: paint(1, 22), green: paint(32, 39), red: paint(31, 39), yellow: paint(33, 39), cyan: paint(36, 39) };
}

/** `12:00:00.123`, local time. */
export function timeOf(date: Date = new Date()): string {
  const two = (n: number) => String(n).padStart(2, '0');
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}.${String(date.getMilliseconds()).padStart(3, '0')}`;
}

const ROUTE_WIDTH = 22;
const WHAT_WIDTH = 19;

export class Transcript {
  constructor(
    private readonly out: (line: string) => void,
    readonly style: Style,
  ) {}

  /** A chapter title. */
  heading(title: string): void {
    this.out('');
    this.out(this.style.bold(`── ${title} `.padEnd(72, '─')));
  }

  /** What an agent (or the operator) says or sees, in its own words. */
  say(who: string, text: string): void {
    this.out(`${timeOf()}  ${this.style.cyan(`${escapeText(who)}:`)} ${escapeText(text)}`);
  }

  /** A line without a timestamp. */
  plain(text = ''): void {
    this.out(text);
  }

  /** Subscribes to every event the demo cares about. */
  watch(events: BusEventSource): void {
    const s = this.style;
    events.on('message:sent', ({ envelope }) => this.message(envelope, s.dim('· sent')));
    events.on('message:delivered', ({ envelope }) => this.message(envelope, s.green('✓ delivered')));
    events.on('message:replied', ({ envelope }) => this.message(envelope, s.green('↩ replied')));
    events.on('message:denied', ({ attempt, code, reason, rule }) =>
      this.route(attempt.from, attempt.to, `${attempt.type} ${attempt.intent}`, `${s.red(`✗ refused ${code}`)}  ${s.dim(escapeText(rule !== undefined ? `rule '${rule}'` : reason))}`),
    );
    events.on('message:expired', ({ envelope, code }) => this.message(envelope, s.yellow(`⌛ expired ${code}`)));
    events.on('message:failed', ({ envelope, code, reason }) => this.message(envelope, `${s.red(`✗ failed ${code}`)}  ${s.dim(escapeText(reason))}`));
    events.on('message:dead', ({ envelope, reason }) => this.message(envelope, `${s.red('☠ dead')}  ${s.dim(escapeText(reason))}`));
    events.on('approval:requested', ({ approval }) => {
      const e = approval.envelope;
      this.message(e, `${s.yellow('⏸ held for approval')}  ${s.dim(escapeText(`rule '${approval.rule ?? '?'}'`))}`);
    });
    events.on('approval:decided', ({ approval, decision, by, reason }) => {
      const text = escapeText(`${decision}${by !== undefined ? ` by ${by}` : ''}${reason !== undefined ? ` (${reason})` : ''}`);
      this.message(approval.envelope, decision === 'approved' ? s.green(`✓ ${text}`) : s.red(`✗ ${text}`));
    });
  }

  private message(e: Envelope, status: string): void {
    this.route(e.from, e.to, `${e.type} ${e.intent}`, status);
  }

  private route(from: string, to: string, what: string, status: string): void {
    this.out(`${timeOf()}  ${escapeText(`${from} → ${to}`).padEnd(ROUTE_WIDTH)} ${escapeText(what).padEnd(WHAT_WIDTH)} ${status}`);
  }

  /** The audit log as a table, oldest first. */
  table(entries: readonly MessageLogEntry[]): void {
    const header = ['#', 'from', 'to', 'type', 'intent', 'decision', 'outcome', 'approval', 'code'];
    const rows = entries.map((e, i) => [
      String(i + 1),
      e.from,
      e.to,
      e.type,
      e.intent,
      e.decision,
      e.outcome ?? '',
      e.approval === undefined ? '' : `${e.approval}${e.decidedBy !== undefined ? ` by ${e.decidedBy}` : ''}`,
      e.code ?? '',
    ].map(escapeText));
    const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
    const line = (cells: readonly string[]) => cells.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd();
    this.out(this.style.bold(line(header)));
    this.out(this.style.dim(widths.map((w) => '─'.repeat(w)).join('  ')));
    for (const row of rows) this.out(line(row));
  }
}
