// Mounts the approval console on the terminal (stdin and stdout must be TTYs).
import { userInfo } from 'node:os';
import { createElement as h } from 'react';
import { render } from 'ink';
import { z } from 'zod';
import { checkOperatorBus, type OperatorBus } from '../operator/desk.js';
import { objectWith, parseOptions } from '../options-schema.js';
import { ApprovalConsole, type ApprovalConsoleProps, type ExitReason } from './approval-console.js';

/** Options of `openApprovalConsole()`. */
export interface ApprovalConsoleOptions extends Omit<ApprovalConsoleProps, 'bus' | 'onExit' | 'finished' | 'operator'> {
  /** Recorded as `decidedBy` in the audit log (1 to 256 characters). @default the operating system's user name */
  readonly operator?: string;
  /** Where it reads keys. @default process.stdin */
  readonly stdin?: NodeJS.ReadStream;
  /** Where it draws. @default process.stdout */
  readonly stdout?: NodeJS.WriteStream;
}

/** An open console. */
export interface ApprovalConsoleHandle {
  /** Settles once the console is gone: `quit` (q, or Ctrl-C) or `finished`. */
  readonly exited: Promise<ExitReason>;
  /** The host has nothing more to send: the console closes once nothing is pending. */
  finish(): void;
  /** Closes the console now; resolves once it is gone. Idempotent. */
  close(): Promise<void>;
}

const optionsSchema = z.strictObject({
  operator: z.string().min(1).max(256).refine((name) => name.trim() !== '', 'must not be blank').optional(),
  columns: z.number().int().min(1).max(10_000).optional(),
  rows: z.number().int().min(1).max(10_000).optional(),
  history: z.number().int().min(1).max(1_000_000).optional(),
  denyReason: z.string().max(1000).optional(),
  stdin: objectWith<NodeJS.ReadStream>('a readable stream', 'on').optional(),
  stdout: objectWith<NodeJS.WriteStream>('a writable stream', 'write').optional(),
});

/** A fleet's queue (`fleetApprovals`) names its operator: the id every node records. */
function fleetOperator(bus: OperatorBus): string | undefined {
  const op = (bus as { readonly operator?: unknown }).operator;
  return typeof op === 'string' && op !== '' ? op : undefined;
}

/** Who is at the terminal; a fixed name when the system cannot say. */
function osUser(): string {
  try {
    return userInfo().username || 'console';
  } catch {
    return 'console';
  }
}

/**
 * Opens the approval console on the terminal: a live feed of `bus`, its held messages, and
 * keys to approve (after a confirmation showing the whole message) or deny them (with a
 * typed reason) as `operator`. `console.log` output goes above it while it is open.
 * Needs `ink` and `react` (optional peer dependencies).
 *
 * @example
 * const ui = openApprovalConsole(bus, { operator: 'alice' });
 * await ui.exited; // the operator pressed q
 * await bus.close();
 */
export function openApprovalConsole(bus: OperatorBus, options: ApprovalConsoleOptions = {}): ApprovalConsoleHandle {
  const { stdin, stdout, operator, ...rest } = parseOptions(optionsSchema, options, 'openApprovalConsole');
  checkOperatorBus(bus, 'openApprovalConsole');
  const props = { ...stripUndefined(rest), operator: operator ?? fleetOperator(bus) ?? osUser() };
  let reason: ExitReason = 'quit';
  let finished = false;
  let gone = false;
  const onExit = (why: ExitReason) => {
    reason = why;
    // Let the frame with the last decision render before the console goes.
    setImmediate(() => instance.unmount());
  };
  const element = () => h(ApprovalConsole, { ...props, bus, onExit, finished });
  const instance = render(element(), { exitOnCtrlC: true, patchConsole: true, ...(stdin !== undefined ? { stdin } : {}), ...(stdout !== undefined ? { stdout } : {}) });
  const ended = (): ExitReason => ((gone = true), reason);
  const exited = instance.waitUntilExit().then(ended, ended);
  return {
    exited,
    finish() {
      // Re-rendering an unmounted ink app would mount it again (and hold stdin open).
      if (gone || finished) return;
      finished = true;
      instance.rerender(element());
    },
    close() {
      if (!gone) instance.unmount();
      return exited.then(() => undefined);
    },
  };
}

/** The keys that are set, so `exactOptionalPropertyTypes` props carry no `undefined`. */
function stripUndefined<T extends object>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
}
