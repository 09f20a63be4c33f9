import type { BusError } from '../errors.js';
import type { CommitInfo, RunToken, SendToken, Telemetry } from '../telemetry-port.js';
import type { Draft } from './draft.js';
import type { PendingRequest } from './records.js';

// Where the pipeline meets its telemetry for a send: start it (and stamp its traceparent on
// the draft, so every envelope built from the draft carries it), and end an ask or delegate
// the right way. Nothing here runs when the telemetry is off: no draft, no token, no closure.

/**
 * Starts the send's telemetry (undefined when it is off) and stamps the token's
 * `traceparent` on `draft`. `within` is the run of the handler whose ctx sends.
 */
export function startSend(telemetry: Telemetry, draft: Draft, depth: number, within: RunToken | undefined): SendToken | undefined {
  if (!telemetry.enabled) return undefined;
  const { id, type, from, to, intent, conversationId } = draft;
  const token = telemetry.sendStarted(Object.freeze({ id, type, from, to, intent, conversationId, depth }), within);
  draft.traceparent = token.traceparent;
  return token;
}

/** What a notify's destination is called: `*` for everyone, else its recipients (a few). */
export function notifyDestination(listed: readonly string[] | undefined): string {
  if (listed === undefined) return '*';
  const joined = listed.join(',');
  return joined.length <= 256 ? joined : `${listed.length} agents`;
}

/** The refusal's details for the telemetry: its rule, and for a notify its one recipient. */
export function refusalInfo(error: BusError, recipient?: string): { rule?: string; recipient?: string } | undefined {
  if (error.rule === undefined && recipient === undefined) return undefined;
  return { ...(error.rule !== undefined ? { rule: error.rule } : {}), ...(recipient !== undefined ? { recipient } : {}) };
}

/** How a send let through by the policy is reported once committed. */
export function commitInfo(decision: CommitInfo['decision'], rule: string | undefined, policyVersion: number | undefined): CommitInfo {
  return Object.freeze({ decision, rule, policyVersion });
}

/**
 * An ask or delegate ended: its reply arrived (no `error`), or it failed. One whose attempt
 * was never committed and sent on (rejected or expired while held, refused by the re-check
 * on approval, its row refused by the log) is a refusal with that code; one that was (to a
 * local mailbox, or to another node, whose answer then counts as a failure), or was
 * cancelled or closed, settles with its code.
 */
export function requestEnded(telemetry: Telemetry, p: PendingRequest, error?: BusError): void {
  const token = p.trace;
  if (token === undefined) return;
  if (error === undefined) telemetry.sendSettled(token);
  else if (!p.committed && error.code !== 'CANCELLED' && error.code !== 'CLOSED') telemetry.sendRefused(token, error.code, refusalInfo(error));
  else telemetry.sendSettled(token, error.code);
}
