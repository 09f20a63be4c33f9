// Mounts the approval console on the terminal (stdin and stdout must be TTYs).
import { createElement as h } from 'react';
import { render } from 'ink';
import { ApprovalConsole, type ApprovalConsoleProps, type ExitReason } from './ApprovalConsole.js';

export type OpenConsoleOptions = Omit<ApprovalConsoleProps, 'onExit' | 'finished'>;

export interface ConsoleHandle {
  /** Settles once the console is gone: `quit` (q or Ctrl-C) or `finished`. */
  readonly exited: Promise<ExitReason>;
  /** The host has nothing more to send: the console closes once nothing is pending. */
  finish(): void;
  /** Closes the console now. */
  close(): void;
}

/**
 * Renders the console below whatever the program prints: `console.log` lines go above it
 * while it is open (ink's patchConsole). Ctrl-C closes it like q does.
 */
export function openConsole(options: OpenConsoleOptions): ConsoleHandle {
  let reason: ExitReason = 'quit';
  let finished = false;
  let gone = false;
  const onExit = (why: ExitReason) => {
    reason = why;
    // Let the frame with the last decision render before the console goes.
    setImmediate(() => instance.unmount());
  };
  const element = () => h(ApprovalConsole, { ...options, onExit, finished });
  const instance = render(element(), { exitOnCtrlC: true, patchConsole: true });
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
