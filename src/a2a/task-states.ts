// Which A2A task state a bus outcome ends in. One table, read by the server and documented
// in docs/a2a.md: refusals before any handler ran are `rejected`, failures after are `failed`.
import { TaskState } from '@a2a-js/sdk';
import type { ErrorCode } from '../errors.js';

/** Codes that mean the bus decided not to run the request. */
const REJECTED: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'POLICY_DENIED',
  'APPROVAL_REJECTED',
  'APPROVAL_EXPIRED',
  'APPROVAL_QUEUE_FULL',
  'RATE_LIMITED',
  'PAYLOAD_TOO_LARGE',
  'MAX_DEPTH',
  'INVALID_ARGUMENT',
]);

/** The final task state of a refusal or failure with `code`. */
export function finalStateOf(code: ErrorCode): TaskState {
  if (code === 'CANCELLED') return TaskState.TASK_STATE_CANCELED;
  if (REJECTED.has(code)) return TaskState.TASK_STATE_REJECTED;
  // HANDLER_FAILED, TIMEOUT, INVALID_PAYLOAD, NO_HANDLER, MAILBOX_FULL, UNKNOWN_AGENT, CLOSED,
  // AUDIT_UNAVAILABLE, TRANSPORT_UNAVAILABLE: the request was taken and did not finish.
  return TaskState.TASK_STATE_FAILED;
}

/** The name of a state as the A2A JSON carries it (`TASK_STATE_FAILED`). */
export function stateName(state: TaskState): string {
  return TaskState[state] ?? String(state);
}
