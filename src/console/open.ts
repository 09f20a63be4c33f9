// Mounts the approval console on the terminal (stdin and stdout must be TTYs).
import { createElement as h } from 'react';
import { render } from 'ink';
import { BusError } from '../errors.js';
import type { OperatorBus } from '../operator/desk.js';
import { ApprovalConsole, type ApprovalConsoleProps, type ExitReason } from './approval-console.js';

/** Options of `openApprovalConsole()`. */
export interface ApprovalConsoleOptions extends Omit<ApprovalConsoleProps, 'bus' | 'onExit' | 'finished'> {
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
  /** Closes the console now. Idempotent. */
  close(): void;
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
export function openApprovalConsole(bus: OperatorBus, options: ApprovalConsoleOptions): ApprovalConsoleHandle {
  if (typeof options?.operator !== 'string' || options.operator.trim() === '' || options.operator.length > 256) {
    throw new BusError('INVALID_ARGUMENT', `openApprovalConsole(): operator must be a name of 1 to 256 characters, got ${JSON.stringify(options?.operator)}`);
  }
  if (typeof bus?.approvals?.list !== 'function' || typeof bus.events?.on !== 'function') {
    throw new BusError('INVALID_ARGUMENT', 'openApprovalConsole(): bus must be an Orchestrator (events and approvals)');
  }
  const { stdin, stdout, ...props } = options;
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
    },
  };
}
